"""The main window: library on the left, score and audio in the middle, results on the right,
plots below; menus, toolbar, status bar and shortcuts. It wires the panes to the core through
the Session's workers and never does long work on the GUI thread.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QByteArray, QSettings, Qt
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from sheetaudio_gui.config import AUDIO_SNIPPET_HOP_FRAMES, FRAMES_PER_SECOND, SAMPLE_RATE_HZ
from sheetaudio_gui.gui.audio_view import AudioView
from sheetaudio_gui.gui.dialogs import HELP_TEXT, TextDialog, about_markdown
from sheetaudio_gui.gui.export import format_time
from sheetaudio_gui.gui.library_pane import LibraryPane, local_paths
from sheetaudio_gui.gui.player import Player, StreamFactory
from sheetaudio_gui.gui.plot_view import PlotView
from sheetaudio_gui.gui.recorder import InputFactory, Recorder, RecorderPanel
from sheetaudio_gui.gui.results_pane import ResultsPane
from sheetaudio_gui.gui.score_view import ScoreView
from sheetaudio_gui.gui.session import Session
from sheetaudio_gui.gui.workers import JobHandle

logger = logging.getLogger(__name__)

SCORE_SUFFIXES = {
    ".pdf",
    ".png",
    ".jpg",
    ".jpeg",
    ".tif",
    ".tiff",
    ".bmp",
    ".gif",
    ".pnm",
    ".pgm",
    ".ppm",
}  # what the score viewer opens (the core's list, without Qt)
MAX_RECENT_FILES = 10  # entries in File > Open Recent
TOP_K = 10  # results per query
STATUS_MESSAGE_MS = 6000  # transient status bar messages, ms
SNIPPET_STEP_S = AUDIO_SNIPPET_HOP_FRAMES / FRAMES_PER_SECOND  # audio snippet hop in the index, s


class MainWindow(QMainWindow):
    def __init__(
        self,
        session: Session,
        settings: QSettings,
        stream_factory: StreamFactory | None = None,
        input_factory: InputFactory | None = None,
    ) -> None:
        super().__init__()
        self.session = session
        self.settings = settings
        self.setWindowTitle("sheetaudio — find recordings from scores and scores from recordings")
        self.setAcceptDrops(True)
        self.jobs: dict[str, JobHandle] = {}  # latest job per purpose (a new one supersedes)
        self.query: dict[str, Any] = {}  # what the latest query was
        self.alignment: Any = None
        self.aligned_systems: dict[tuple[int, int], tuple[float, float, float, float]] = {}
        self.aligned_score: Path | None = None
        self.audio_samples: Any = None  # microphone take, (samples,)

        # --- panes ------------------------------------------------------------------------
        self.score_view = ScoreView()
        self.audio_view = AudioView()
        self.recorder = Recorder(input_factory)
        self.recorder_panel = RecorderPanel(self.recorder)
        audio_page = QWidget()
        audio_layout = QVBoxLayout(audio_page)
        audio_layout.setContentsMargins(0, 0, 0, 0)
        audio_layout.addWidget(self.audio_view, 1)
        audio_layout.addWidget(self.recorder_panel)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.score_view, "Score")
        self.tabs.addTab(audio_page, "Recording")
        self.setCentralWidget(self.tabs)

        self.library_pane = LibraryPane(session)
        self.results_pane = ResultsPane()
        self.plot_view = PlotView()
        self.player = Player(stream_factory)
        self._dock("Library", self.library_pane, Qt.DockWidgetArea.LeftDockWidgetArea)
        self._dock("Results", self.results_pane, Qt.DockWidgetArea.RightDockWidgetArea)
        self._dock("Plots", self.plot_view, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)

        # --- status bar ---------------------------------------------------------------------
        self.model_label = QLabel("Loading the model…")
        self.audio_label = QLabel("")
        self.position_label = QLabel("")
        self.statusBar().addPermanentWidget(self.position_label)
        self.statusBar().addPermanentWidget(self.audio_label)
        self.statusBar().addPermanentWidget(self.model_label)

        self._make_actions()
        self._connect()
        self._restore()

    # --- construction ---------------------------------------------------------------------------
    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock-{title}")
        dock.setWidget(widget)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QDockWidget.DockWidgetFeature.DockWidgetFloatable
            | QDockWidget.DockWidgetFeature.DockWidgetClosable
        )
        self.addDockWidget(area, dock)
        return dock

    def _action(self, text: str, slot: Any, shortcut: Any = None, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.setToolTip(
            f"{tip or text} ({QKeySequence(shortcut).toString()})" if shortcut else tip or text
        )
        action.setStatusTip(tip or text)
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _make_actions(self) -> None:
        a = self._action
        self.open_action = a(
            "&Open…",
            self.open_dialog,
            QKeySequence.StandardKey.Open,
            "Open a score or a recording to query with",
        )
        self.add_action = a(
            "&Add to library…",
            self.library_pane._add_files_dialog,
            None,
            "Index scores or recordings",
        )
        self.add_folder_action = a("Add &folder to library…", self.library_pane._add_folder_dialog)
        self.rescan_action = a("&Rescan library", self.library_pane.rescan)
        self.adapt_action = a(
            "A&dapt the model to this library",
            self.library_pane.adapt,
            None,
            "Re-measure the networks' statistics on this library's scores and recordings and "
            "re-embed them (helps with engravings and pianos unlike the training's)",
        )
        self.unadapt_action = a(
            "Use the &base model again", lambda: self.library_pane.adapt(undo=True)
        )
        self.library_location_action = a("Library &location…", self.choose_library_dir)
        self.export_action = a(
            "&Export results…",
            self.results_pane.export_dialog,
            None,
            "Save the results as CSV or JSON",
        )
        self.copy_action = a(
            "&Copy result reference",
            self.results_pane.copy_reference,
            QKeySequence.StandardKey.Copy,
        )
        self.quit_action = a("&Quit", self.close, QKeySequence.StandardKey.Quit)
        self.play_action = a("Play", self.toggle_play, Qt.Key.Key_Space, "Play / pause")
        self.stop_action = a("Stop", self.stop, Qt.Key.Key_Escape, "Stop playback")
        self.loop_action = a(
            "Loop passage", self._loop_toggled, "Ctrl+L", "Repeat the chosen passage"
        )
        self.loop_action.setCheckable(True)
        self.loop_action.setChecked(True)
        self.find_action = a(
            "Go to &query",
            self.focus_query,
            QKeySequence.StandardKey.Find,
            "Go to the score page or audio region to query with",
        )
        self.record_action = a(
            "&Record query", self.toggle_record, "Ctrl+R", "Record a query from the microphone"
        )
        self.help_action = a("&Help", self.show_help, QKeySequence.StandardKey.HelpContents)
        self.about_action = a("&About sheetaudio", self.show_about)

        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addAction(self.open_action)
        self.recent_menu = file_menu.addMenu("Open &Recent")
        file_menu.addSeparator()
        file_menu.addAction(self.export_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        edit_menu = menu.addMenu("&Edit")
        edit_menu.addAction(self.copy_action)
        edit_menu.addAction(self.find_action)
        lib_menu = menu.addMenu("&Library")
        for action in (
            self.add_action,
            self.add_folder_action,
            self.rescan_action,
            self.adapt_action,
            self.unadapt_action,
            self.library_location_action,
        ):
            lib_menu.addAction(action)
        play_menu = menu.addMenu("&Playback")
        for action in (self.play_action, self.stop_action, self.loop_action, self.record_action):
            play_menu.addAction(action)
        view_menu = menu.addMenu("&View")
        for dock in self.findChildren(QDockWidget):
            view_menu.addAction(dock.toggleViewAction())
        help_menu = menu.addMenu("&Help")
        help_menu.addAction(self.help_action)
        help_menu.addAction(self.about_action)

        bar = self.addToolBar("Main")
        bar.setObjectName("toolbar-main")
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        for action in (self.open_action, self.add_action):
            bar.addAction(action)
        bar.addSeparator()
        for action in (self.play_action, self.stop_action, self.loop_action):
            bar.addAction(action)
        bar.addSeparator()
        bar.addAction(self.export_action)
        bar.addAction(self.help_action)
        self._update_recent_menu()

    def _connect(self) -> None:
        s = self.session
        s.model_ready.connect(self._model_ready)
        s.model_failed.connect(self._model_failed)
        s.library_changed.connect(self.refresh_map)
        self.score_view.queryRequested.connect(self.query_score)
        self.audio_view.queryRequested.connect(self.query_audio)
        self.audio_view.seekRequested.connect(self.player.seek)
        self.results_pane.chosen.connect(self.open_result)
        self.library_pane.openRequested.connect(lambda p, kind: self.open_path(p))
        self.plot_view.passageChosen.connect(self.open_passage)
        self.player.stateChanged.connect(self._player_state)
        self.player.positionChanged.connect(self._player_position)
        self.player.problem_found.connect(self._audio_problem)
        self.recorder.recorded.connect(self._recorded)

    def _restore(self) -> None:
        geometry = self.settings.value("window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:
            self.resize(1440, 900)
        state = self.settings.value("window/state")
        if isinstance(state, QByteArray) and not state.isEmpty():
            self.restoreState(state)
        else:
            docks = {d.windowTitle(): d for d in self.findChildren(QDockWidget)}
            self.resizeDocks(
                [docks["Library"], docks["Results"]], [330, 330], Qt.Orientation.Horizontal
            )
            self.resizeDocks([docks["Plots"]], [250], Qt.Orientation.Vertical)

    # --- model and library ------------------------------------------------------------------------
    def _model_ready(self) -> None:
        model = self.session.model
        self.model_label.setText(f"Model {getattr(model, 'model_id', '')[:8]} ready")
        self.model_label.setToolTip(str(self.session.model_path))
        self.library_pane.refresh()
        self.refresh_map()

    def _model_failed(self, message: str) -> None:
        self.model_label.setText("⚠ No model: searching is off")
        self.model_label.setStyleSheet("color: #b00;")
        self.model_label.setToolTip(message)
        self.statusBar().showMessage(message)
        box = QMessageBox(
            QMessageBox.Icon.Warning,
            "Model not available",
            message,
            QMessageBox.StandardButton.Ok,
            self,
        )
        box.setInformativeText("You can still open and look at scores and recordings.")
        box.setModal(False)
        box.open()
        self.model_dialog = box

    def refresh_map(self) -> None:
        if self.session.model is None:
            return
        handle = self.session.run_library(
            lambda lib, cancel: self.session.services.passage_map(lib), "passage map"
        )
        handle.finished.connect(self.plot_view.show_map)
        handle.failed.connect(lambda e: logger.warning("passage map: %s", e))
        self.jobs["map"] = handle

    def choose_library_dir(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Library folder", str(self.session.library_dir)
        )
        if folder:
            self.set_library_dir(Path(folder))

    def set_library_dir(self, folder: Path) -> None:
        self.session.library_dir = Path(folder)
        self.settings.setValue("library/location", str(folder))
        self.library_pane.refresh()
        self.refresh_map()

    # --- opening files ----------------------------------------------------------------------------
    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Open a score or a recording",
            "",
            "Scores and recordings (*.pdf *.png *.jpg *.jpeg *.tif *.tiff *.flac *.wav *.mp3 "
            "*.ogg *.m4a *.aiff);;All files (*)",
        )
        if path:
            self.open_path(Path(path))

    def open_path(self, path: Path, page: int = 0) -> JobHandle:
        path = Path(path)
        self._remember(path)
        if path.suffix.lower() in SCORE_SUFFIXES:
            return self.open_score(path, page)
        return self.open_audio(path)

    def open_score(
        self, path: Path, page: int = 0, then: Any = None, on_systems: Any = None
    ) -> JobHandle:
        """Render the pages in a worker, show them, then fetch the systems to click on."""
        self.statusBar().showMessage(f"Opening {path.name}…")

        def work(cancel: Any) -> Any:
            from sheetaudio_gui.core.jobs import Progress
            from sheetaudio_gui.core.score import open_score

            with open_score(path) as doc:
                pages = []
                for i in range(doc.page_count):
                    cancel.raise_if_cancelled()
                    pages.append(doc.page(i))
                    yield Progress(i + 1, doc.page_count, f"rendering page {i + 1}")
            return pages

        def shown(pages: Any) -> None:
            self.score_view.set_document(path, pages, page)
            self.tabs.setCurrentWidget(self.score_view)
            self.statusBar().showMessage(
                f"{path.name}: {len(pages)} page(s). Click a system, drag "
                "a rectangle, or query the whole page.",
                STATUS_MESSAGE_MS,
            )
            self._load_systems(path, pages, on_systems)
            if then is not None:
                then()

        handle = self.session.run(work, "open score")
        handle.finished.connect(shown)
        handle.failed.connect(lambda e: self._error("Cannot open the score", e))
        self.jobs["open score"] = handle
        return handle

    def _load_systems(self, path: Path, pages: list[Any], then: Any = None) -> None:
        """Systems from the index when the score is indexed, else detected on the pages."""
        services, model = self.session.services, self.session.model

        def from_index(lib: Any, cancel: Any) -> dict[int, list[Any]]:
            try:
                encodings = lib.systems(path)
            except Exception:  # not in the library: detect them
                encodings = None
            if encodings:
                boxes: dict[int, list[Any]] = {}
                for enc in encodings:
                    boxes.setdefault(enc.page, []).append(enc.box)
                return boxes
            return detect(cancel)

        def detect(cancel: Any) -> dict[int, list[Any]]:
            from sheetaudio_gui.core.score import detect_systems, systems_in_units

            out = {}
            for page in pages:
                cancel.raise_if_cancelled()
                found = systems_in_units(detect_systems(page.image), page)
                out[page.index] = [s.box for s in found]
            return out

        handle = (
            self.session.run_library(from_index, "systems")
            if model is not None
            else self.session.run(detect, "systems")
        )

        def shown(boxes: dict[int, list[Any]]) -> None:
            if self.score_view.path == path:
                self.score_view.set_systems(boxes)
                if then is not None:
                    then()

        handle.finished.connect(shown)
        handle.failed.connect(lambda e: logger.warning("systems of %s: %s", path, e))
        self.jobs["systems"] = handle
        _ = services

    def open_audio(
        self, path: Path, span: tuple[float, float] | None = None, play: bool = False
    ) -> JobHandle:
        """Decode the file and its spectrogram in a worker; show it and load it in the player."""
        self.statusBar().showMessage(f"Opening {path.name}…")

        def work(cancel: Any) -> Any:
            from sheetaudio_gui.core.audio import load_audio, log_spectrogram

            samples = load_audio(path)
            cancel.raise_if_cancelled()
            return samples, log_spectrogram(samples)

        def shown(result: Any) -> None:
            samples, spectrogram = result
            self.audio_samples = None
            self.audio_view.set_audio(path, samples, spectrogram)
            self.player.load(samples, span[0] if span else 0.0)
            if span is not None:
                self.audio_view.show_span(*span)
                self.audio_view.select(*span)
                self.player.set_loop(span[0], span[1], self.loop_action.isChecked())
                if play:
                    self.player.play()
            else:
                self.tabs.setCurrentIndex(1)
            self.statusBar().showMessage(
                f"{path.name}: {len(samples) / SAMPLE_RATE_HZ:.1f} s. Drag the blue region over a "
                "passage and press Find.",
                STATUS_MESSAGE_MS,
            )

        handle = self.session.run(work, "open audio")
        handle.finished.connect(shown)
        handle.failed.connect(lambda e: self._error("Cannot open the recording", e))
        self.jobs["open audio"] = handle
        return handle

    # --- queries ----------------------------------------------------------------------------------
    def _need_model(self) -> bool:
        if self.session.model is not None:
            return True
        text = self.session.model_problem or "The model is still loading; try again in a moment."
        self.statusBar().showMessage(text, STATUS_MESSAGE_MS)
        return False

    def query_score(self, path: Path, page: int, system: int | None, box: Any) -> JobHandle | None:
        """Sheet -> audio: search the recordings for a page, a system or a rectangle."""
        if not self._need_model():
            return None
        what = (
            f"system {system + 1}"
            if system is not None
            else "the selected region"
            if box is not None
            else "the whole page"
        )
        text = f"{Path(path).name}, page {page + 1}: {what}"
        self.query = {
            "kind": "score",
            "path": Path(path),
            "page": page,
            "system": system,
            "box": box,
            "text": text,
        }
        self.results_pane.show_busy(f"Searching the recordings for {text}…")
        search = self.session.services.search_score
        handle = self.session.run_library(
            lambda lib, cancel: search(lib, path, page, system=system, box=box, top_k=TOP_K),
            "query",
        )
        handle.finished.connect(lambda results: self._show_results(results, text))
        handle.failed.connect(lambda e: self._query_failed(e))
        self.jobs["query"] = handle
        return handle

    def query_audio(self, path: Path | None, start_s: float, end_s: float) -> JobHandle | None:
        """Audio -> sheet: search the scores for a region of a file or of the microphone take."""
        if not self._need_model():
            return None
        services = self.session.services
        name = Path(path).name if path else "microphone take"
        text = f"{name} {format_time(start_s)}–{format_time(end_s)}"
        self.query = {
            "kind": "audio",
            "path": Path(path) if path else None,
            "start_s": start_s,
            "end_s": end_s,
            "text": text,
        }
        self.results_pane.show_busy(f"Searching the scores for {text}…")
        if path is None:
            take = self.audio_samples[int(start_s * SAMPLE_RATE_HZ) : int(end_s * SAMPLE_RATE_HZ)]
            handle = self.session.run_library(
                lambda lib, cancel: services.search_audio(lib, take, top_k=TOP_K), "query"
            )
        else:
            handle = self.session.run_library(
                lambda lib, cancel: services.search_audio_file(
                    lib, path, start_s, end_s, top_k=TOP_K
                ),
                "query",
            )
        handle.finished.connect(lambda results: self._show_results(results, text))
        handle.failed.connect(lambda e: self._query_failed(e))
        self.jobs["query"] = handle
        return handle

    def _show_results(self, results: Any, text: str) -> None:
        self.results = results
        self.results_pane.show_results(results, text)
        self.plot_view.mark_query(results.query, [h.document for h in results.hits])
        n = len(results.hits)
        self.statusBar().showMessage(f"{n} result(s) for {text}", STATUS_MESSAGE_MS)
        if n:
            self.results_pane.tree.setCurrentItem(self.results_pane.tree.topLevelItem(0))

    def _query_failed(self, error: object) -> None:
        self.results_pane.show_busy(f"The search failed: {error}")
        self._error("The search failed", error)

    # --- results ----------------------------------------------------------------------------------
    def open_result(self, hit: Any, part: Any) -> None:
        """A score region: show the page with the region highlighted and align the query audio.
        A time span: load the recording at the span, loop it, and align it with the query score."""
        if hasattr(part, "page"):
            self._open_score_result(Path(hit.document), part)
        else:
            self._open_audio_result(Path(hit.document), part)

    def _open_score_result(self, path: Path, region: Any) -> None:
        def show() -> None:
            self.score_view.highlight(region.page, [region.box])
            self.tabs.setCurrentWidget(self.score_view)
            self._align(path, self.query.get("path"), audio_is_query=True)

        if self.score_view.path == path and self.score_view.pages:
            show()
        else:
            self.open_score(path, region.page, then=show)

    def _open_audio_result(self, path: Path, span: Any) -> None:
        self.audio_view.show_span(span.start_s, span.end_s)
        self.open_audio(path, (span.start_s, span.end_s), play=True)
        query_score = self.query.get("path") if self.query.get("kind") == "score" else None
        if query_score is not None:
            self._align(query_score, path, audio_is_query=False)

    def _align(self, score: Path, audio: Path | None, audio_is_query: bool) -> None:
        """Align score systems with audio snippets in a worker; then the cursor follows playback."""
        self.alignment = None
        self.score_view.hide_cursor()
        services, model = self.session.services, self.session.model
        take = self.audio_samples if audio is None else None

        def task(lib: Any, cancel: Any) -> Any:
            try:
                systems = lib.systems(score)
            except Exception:  # not indexed: encode it now
                systems = services.encode_score(model, score)
            if take is not None:
                audio_enc = services.encode_samples(model, take)
            else:
                try:
                    audio_enc = lib.audio(audio)
                except Exception:
                    from sheetaudio_gui.core.audio import load_audio

                    audio_enc = services.encode_samples(model, load_audio(audio))
            return systems, services.align(systems, audio_enc)

        def aligned(result: Any) -> None:
            systems, alignment = result
            self.alignment = alignment
            self.aligned_score = score
            self.aligned_systems = {(s.page, s.index): s.box for s in systems}
            name = audio.name if audio else "microphone take"
            self.plot_view.show_alignment(
                alignment, SNIPPET_STEP_S, f"{score.name} (x) against {name} (y); line: alignment"
            )
            if audio_is_query and self.audio_view.samples.size:
                a, b = self.audio_view.selected_region()
                self.player.set_loop(a, b, self.loop_action.isChecked())
                self.player.seek(a)

        handle = self.session.run_library(task, "align")
        handle.finished.connect(aligned)
        handle.failed.connect(lambda e: logger.warning("alignment failed: %s", e))
        self.jobs["align"] = handle

    def open_passage(self, path: Path, kind: str, ref: Any) -> None:
        """A click in the passage map: open that system or that time span."""
        if kind == "score":
            page, system = int(ref[0]), int(ref[1])

            def show() -> None:
                boxes = self.score_view.systems.get(page, [])
                if system < len(boxes):
                    self.score_view.highlight(page, [boxes[system]])

            if self.score_view.path == path:
                self.score_view.show_page(page)
                show()
            else:
                self.open_score(path, page, on_systems=show)
        else:
            self.open_audio(path, (float(ref[0]), float(ref[1])))
            self.tabs.setCurrentIndex(1)

    # --- playback ---------------------------------------------------------------------------------
    def toggle_play(self) -> None:
        if not self.player.toggle() and self.player.duration_s == 0:
            self.statusBar().showMessage(
                "Nothing to play: open a recording or choose a result.", STATUS_MESSAGE_MS
            )

    def stop(self) -> None:
        self.player.stop()
        if self.recorder.recording:
            self.recorder.stop()

    def _loop_toggled(self, on: bool) -> None:
        self.player.set_looping(on)

    def _player_state(self, state: str) -> None:
        self.play_action.setText("Pause" if state == "playing" else "Play")
        if state == "stopped":
            self.score_view.hide_cursor()

    def _player_position(self, time_s: float) -> None:
        self.audio_view.set_cursor(time_s)
        self.position_label.setText(
            f"{format_time(time_s)} / {format_time(self.player.duration_s)}"
        )
        if self.alignment is None or self.score_view.path != self.aligned_score:
            return
        try:
            page, system, x = self.alignment.position_at(time_s)
        except Exception as error:  # a position outside the aligned range
            logger.debug("no score position at %.2f s: %s", time_s, error)
            return
        box = self.aligned_systems.get((page, system))
        if box is not None:
            self.score_view.set_cursor(page, box, x)

    def _audio_problem(self, message: str) -> None:
        self.audio_label.setText("⚠ no audio output")
        self.audio_label.setToolTip(message)
        self.statusBar().showMessage(message, STATUS_MESSAGE_MS * 2)

    def toggle_record(self) -> None:
        self.tabs.setCurrentIndex(1)
        self.recorder_panel.record_button.toggle()

    def _recorded(self, samples: Any) -> None:
        if len(samples) == 0:
            return
        self.audio_samples = np.asarray(samples, np.float32)
        self.audio_view.set_audio(None, self.audio_samples, None, title="microphone take")
        self.audio_view.select(0.0, len(samples) / SAMPLE_RATE_HZ)
        self.player.load(self.audio_samples)

    # --- misc -------------------------------------------------------------------------------------
    def focus_query(self) -> None:
        if self.tabs.currentWidget() is self.score_view:
            self.score_view.view.setFocus()
            self.statusBar().showMessage(
                "Click a system or drag a rectangle on the page.", STATUS_MESSAGE_MS
            )
        else:
            self.audio_view.find_button.setFocus()
            self.statusBar().showMessage(
                "Drag the blue region, then press Find.", STATUS_MESSAGE_MS
            )

    def show_help(self) -> None:
        self.help_dialog = TextDialog("sheetaudio help", HELP_TEXT, self)
        self.help_dialog.show()

    def show_about(self) -> None:
        text = about_markdown(self.session.model, self.session.model_path)
        self.about_dialog = TextDialog("About sheetaudio", text, self)
        self.about_dialog.show()

    def _error(self, title: str, error: object) -> None:
        self.statusBar().showMessage(f"{title}: {error}", STATUS_MESSAGE_MS * 2)
        box = QMessageBox(
            QMessageBox.Icon.Warning, title, str(error), QMessageBox.StandardButton.Ok, self
        )
        box.setModal(False)
        box.open()
        self.error_dialog = box

    def _remember(self, path: Path) -> None:
        recent = [p for p in self.recent_files() if p != str(path)]
        self.settings.setValue("files/recent", [str(path), *recent][:MAX_RECENT_FILES])
        self._update_recent_menu()

    def recent_files(self) -> list[str]:
        value = self.settings.value("files/recent", [])
        if isinstance(value, str):
            return [value]
        return [str(v) for v in (value or [])]

    def _update_recent_menu(self) -> None:
        self.recent_menu.clear()
        for p in self.recent_files():
            action = self.recent_menu.addAction(Path(p).name)
            action.setToolTip(p)
            action.triggered.connect(lambda checked=False, p=p: self.open_path(Path(p)))
        self.recent_menu.setEnabled(bool(self.recent_files()))

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if local_paths(event):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        """A file dropped on the viewers opens it as a query (the library pane indexes drops)."""
        paths = [p for p in local_paths(event) if p.is_file()]
        if paths:
            event.acceptProposedAction()
            self.open_path(paths[0])

    def closeEvent(self, event: QCloseEvent) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        self.player.close()
        if self.recorder.recording:
            self.recorder.stop()
        JobHandle.discard_all()
        super().closeEvent(event)
