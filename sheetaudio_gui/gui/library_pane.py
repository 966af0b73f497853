"""The library: scores and recordings with their indexing state, add/remove/rescan, drag and drop.

Indexing runs in a worker over the core's `Library.add` job: a progress bar, a Cancel button, and a
list of the files that failed and why (a bad file is reported and skipped, the rest is indexed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from sheetaudio_gui.gui.session import Session
from sheetaudio_gui.gui.workers import JobHandle

logger = logging.getLogger(__name__)

ROLE = Qt.ItemDataRole.UserRole
STATE_MARK = {"indexed": "✓ indexed", "pending": "… pending", "failed": "✗ failed"}
LIST_REFRESH_S = 1.0  # while indexing, the document list is reloaded at most this often
PROGRESS_STEPS_PER_FILE = 1000  # the bar counts thousandths of a file (`Progress.part`)
ADAPT_TIP = (
    "This library is now large enough to adapt the model to it (Library → Adapt the model to "
    "this library): on engravings and piano sounds unlike the training material, the right "
    "passage then comes first more often."
)


def local_paths(event: QDropEvent | QDragEnterEvent) -> list[Path]:
    mime = event.mimeData()
    if not mime.hasUrls():
        return []
    return [Path(u.toLocalFile()) for u in mime.urls() if u.isLocalFile()]


class LibraryPane(QWidget):
    """Shows `Library.documents()`; a double-click on a document emits `openRequested`."""

    openRequested = Signal(object, str)
    indexingFinished = Signal(object)  # the AddReport (or None after a cancel)
    documentsShown = Signal()  # the list now shows the index's documents

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.job: JobHandle | None = None
        self._mode = "add"  # what the running (or last) job does: add, rescan, adapt, unadapt
        self.documents: list[Any] = []
        self.last_report: Any = None
        self._generation = 0
        self.shown_generation = -1
        self._listed_at, self._listed_at_done = 0.0, -1  # last reload of the list while indexing
        self.setAcceptDrops(True)

        self.tree = QTreeWidget()
        self.tree.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.tree.setHeaderLabels(["Document", "State", "Size"])
        self.tree.setRootIsDecorated(True)
        self.tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.tree.header().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.header().setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.setSelectionMode(QTreeWidget.SelectionMode.ExtendedSelection)
        self.tree.itemDoubleClicked.connect(self._double_clicked)
        self.scores = QTreeWidgetItem(["Scores"])
        self.recordings = QTreeWidgetItem(["Recordings"])
        self.tree.addTopLevelItems([self.scores, self.recordings])

        self.add_files_button = QPushButton("Add files…")
        self.add_folder_button = QPushButton("Add folder…")
        self.remove_button = QPushButton("Remove")
        self.rescan_button = QPushButton("Rescan")
        self.add_files_button.setToolTip("Add score PDFs/images or recordings (or drop them here)")
        self.add_folder_button.setToolTip("Add every score and recording in a folder")
        self.remove_button.setToolTip("Forget the selected documents (files stay on disk)")
        self.rescan_button.setToolTip("Re-index changed files and drop deleted ones")
        self.add_files_button.clicked.connect(self._add_files_dialog)
        self.add_folder_button.clicked.connect(self._add_folder_dialog)
        self.remove_button.clicked.connect(self.remove_selected)
        self.rescan_button.clicked.connect(self.rescan)

        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setFormat("%p %")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop indexing after the current file")
        self.cancel_button.clicked.connect(self.cancel)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.errors_label = QLabel("Files that could not be indexed:")
        self.errors = QListWidget()
        self.errors.setMaximumHeight(90)
        self.errors.setWordWrap(True)

        buttons = QHBoxLayout()
        for b in (
            self.add_files_button,
            self.add_folder_button,
            self.remove_button,
            self.rescan_button,
        ):
            buttons.addWidget(b)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.tree, 1)
        layout.addLayout(buttons)
        layout.addLayout(progress_row)
        layout.addWidget(self.status)
        layout.addWidget(self.errors_label)
        layout.addWidget(self.errors)
        self._set_busy(False)
        self._show_errors([])

    # --- documents ----------------------------------------------------------------------------
    def refresh(self) -> JobHandle | None:
        """Reload the document list from the index (in a worker)."""
        if self.session.model is None:
            return None
        self._generation += 1
        generation = self._generation
        handle = self.session.run_library(lambda lib, cancel: lib.documents(), "documents")
        # an older listing that finishes late must not overwrite a newer one
        handle.finished.connect(lambda docs: self._listed(docs, generation))
        handle.failed.connect(lambda e: self.status.setText(f"Cannot read the library: {e}"))
        return handle

    def _listed(self, documents: Sequence[Any], generation: int) -> None:
        if generation == self._generation:  # the newest listing asked for
            self.shown_generation = generation
            self.show_documents(documents)

    def listing_is_current(self) -> bool:
        """Whether the list shows the answer to the latest reload (tests wait for this)."""
        return self.shown_generation == self._generation

    def show_documents(self, documents: Sequence[Any]) -> None:
        self.documents = list(documents)
        for parent in (self.scores, self.recordings):
            parent.takeChildren()
        for doc in self.documents:
            if doc.kind == "score":
                size = f"{doc.pages or '?'} p, {doc.systems or 0} sys"
            else:
                size = f"{doc.duration_s or 0:.0f} s"
            item = QTreeWidgetItem(
                [Path(doc.path).name, STATE_MARK.get(doc.state, doc.state), size]
            )
            item.setToolTip(0, str(doc.path))
            if doc.error:
                item.setToolTip(1, doc.error)
            item.setData(0, ROLE, doc)
            (self.scores if doc.kind == "score" else self.recordings).addChild(item)
        n_scores, n_audio = self.scores.childCount(), self.recordings.childCount()
        self.scores.setText(0, f"Scores ({n_scores})")
        self.recordings.setText(0, f"Recordings ({n_audio})")
        self.scores.setExpanded(True)
        self.recordings.setExpanded(True)
        failed = [
            (Path(d.path), d.error or "failed") for d in self.documents if d.state == "failed"
        ]
        if failed and not self.errors.count():
            self._show_errors(failed)
        self.documentsShown.emit()

    def selected_documents(self) -> list[Any]:
        return [i.data(0, ROLE) for i in self.tree.selectedItems() if i.data(0, ROLE) is not None]

    # --- indexing -------------------------------------------------------------------------------
    def add(self, paths: Sequence[Path]) -> JobHandle | None:
        """Index files/folders in the background (waits for the model if it is still loading)."""
        paths = [Path(p) for p in paths]
        if not paths:
            return None
        if self.job is not None and self.job.is_running():
            self.status.setText("Indexing is running; add the files again when it has finished.")
            return None
        if self.session.model is None:
            if self.session.model_problem:
                self.status.setText(f"Cannot index: {self.session.model_problem}")
                return None
            self.status.setText("Waiting for the model to load…")
            self.session.when_model_ready(lambda: self.add(paths))
            return None
        return self._start(
            lambda lib, cancel: lib.add(paths, cancel), f"Indexing {len(paths)} item(s)", paths
        )

    def rescan(self) -> JobHandle | None:
        if self.session.model is None or (self.job is not None and self.job.is_running()):
            return None
        return self._start(
            lambda lib, cancel: lib.rescan(cancel), "Rescanning the library", mode="rescan"
        )

    def adapt(self, undo: bool = False) -> JobHandle | None:
        """Adapt the model to this library's material (or go back to the base model), then
        re-embed every document: `Library.adapt` / `unadapt`."""
        if self.session.model is None or (self.job is not None and self.job.is_running()):
            return None
        if undo:
            return self._start(
                lambda lib, cancel: lib.unadapt(cancel),
                "Going back to the base model",
                None,
                mode="unadapt",
            )
        return self._start(
            lambda lib, cancel: lib.adapt(cancel),
            "Adapting the model to the library",
            None,
            mode="adapt",
        )

    def remove_selected(self) -> None:
        docs = self.selected_documents()
        if not docs or self.session.model is None:
            return
        paths = [Path(d.path) for d in docs]
        handle = self.session.run_library(
            lambda lib, cancel: [lib.remove(p) for p in paths], "remove"
        )
        handle.finished.connect(lambda _: self._changed())

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.status.setText("Cancelling after the current page or file…")

    def _start(
        self, task: Any, text: str, paths: list[Path] | None = None, mode: str = "add"
    ) -> JobHandle:
        """Index with `task(library, cancel)` in a worker thread, or - with the real core - in a
        child process (`core.indexer`): the window never waits for the indexer's GIL, and a file
        that crashes a native decoder costs that file, not the application."""
        self._set_busy(True)
        self._mode = mode
        self.status.setText(text + "…")
        self._show_errors([])
        self.progress.setRange(0, 0)
        index_files = self.session.services.index_files
        if index_files is not None:
            folder, model_path, todo = self.session.library_dir, self.session.model_path, paths
            job = self.session.run(
                lambda cancel: index_files(folder, model_path, list(todo or []), cancel, mode),
                "index",
            )
        else:
            job = self.session.run_library(task, "index")
        job.progress.connect(self._progress)
        job.finished.connect(self._finished)
        job.failed.connect(self._failed)
        job.cancelled.connect(self._cancelled)
        self.job = job
        return job

    def _progress(self, done: int, total: int, message: str, part: float = 0.0) -> None:
        if total > 0:  # in thousandths of a file: a long score's pages move the bar
            self.progress.setRange(0, total * PROGRESS_STEPS_PER_FILE)
            self.progress.setValue(round((done + min(part, 1.0)) * PROGRESS_STEPS_PER_FILE))
        self.status.setText(message)
        now = time.monotonic()
        if done != self._listed_at_done and now - self._listed_at >= LIST_REFRESH_S:
            self._listed_at, self._listed_at_done = now, done
            self.refresh()  # committed files appear (and pending ones show as such) while indexing

    def _finished(self, report: Any) -> None:
        self._set_busy(False)
        self.last_report = report
        failed = list(getattr(report, "failed", []))
        added = len(getattr(report, "added", []))
        skipped = len(getattr(report, "skipped", []))
        done = "re-embedded" if self._mode in ("adapt", "unadapt") else "indexed"
        text = f"{done.capitalize()} {added} file(s)"
        if self._mode == "adapt":
            text = f"Adapted the model to this library; {done} {added} file(s)"
        if skipped:
            text += f", {skipped} unchanged"
        if failed:
            text += f", {len(failed)} failed (see below)"
        self.status.setText(text + ".")
        self._show_errors(failed)
        self._changed()
        if self._mode in ("add", "rescan"):
            advice = self.session.run_library(
                lambda lib, cancel: lib.adaptation_advised(), "advice"
            )
            advice.finished.connect(lambda advised: self._advise(advised, text + "."))
        self.indexingFinished.emit(report)

    def _advise(self, advised: bool, shown: str) -> None:
        """Suggest adapting the model once the library is large enough (`adaptation_advised`),
        below the indexing summary it belongs to."""
        if advised and self.status.text() == shown:
            self.status.setText(f"{shown}\nTip: {ADAPT_TIP}")

    def _failed(self, error: object) -> None:
        self._set_busy(False)
        what = {"adapt": "Adaptation", "unadapt": "Going back to the base model"}
        self.status.setText(f"{what.get(self._mode, 'Indexing')} stopped: {error}")
        self._changed()
        self.indexingFinished.emit(None)

    def _cancelled(self) -> None:
        self._set_busy(False)
        self.status.setText("Indexing cancelled; the files indexed so far are kept.")
        self._changed()
        self.indexingFinished.emit(None)

    def _changed(self) -> None:
        self.refresh()
        self.session.library_changed.emit()

    def _set_busy(self, busy: bool) -> None:
        self.progress.setVisible(busy)
        self.cancel_button.setVisible(busy)
        for b in (
            self.add_files_button,
            self.add_folder_button,
            self.remove_button,
            self.rescan_button,
        ):
            b.setEnabled(not busy)

    def _show_errors(self, failed: Sequence[tuple[Path, str]]) -> None:
        self.errors.clear()
        for path, reason in failed:
            reason_text = str(reason)
            text = reason_text if str(path) in reason_text else f"{Path(path).name}: {reason_text}"
            self.errors.addItem(text)
            self.errors.item(self.errors.count() - 1).setToolTip(reason_text)
        self.errors.setVisible(bool(failed))
        self.errors_label.setVisible(bool(failed))

    # --- dialogs and drops ----------------------------------------------------------------------
    def _add_files_dialog(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(
            self,
            "Add scores or recordings",
            "",
            "Scores and recordings (*.pdf *.png *.jpg *.jpeg *.tif *.tiff *.flac *.wav *.mp3 "
            "*.ogg *.m4a *.aiff);;All files (*)",
        )
        self.add([Path(f) for f in files])

    def _add_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of scores and recordings")
        if folder:
            self.add([Path(folder)])

    def _double_clicked(self, item: QTreeWidgetItem, column: int) -> None:
        doc = item.data(0, ROLE)
        if doc is not None and doc.state == "indexed":
            self.openRequested.emit(Path(doc.path), doc.kind)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if local_paths(event):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = local_paths(event)
        if paths:
            event.acceptProposedAction()
            self.add(paths)
