"""The desktop application through its real flows: index, query both ways, open a result with its
highlight, play with a cursor, cancel, bad files, missing model. Qt runs offscreen; audio output is
a fake stream whose callback the test drives. The core is the real one when it exists (else the
in-memory fake of tests/gui_fakes.py with the same signatures)."""

from __future__ import annotations

import gc
import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.gui

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QDockWidget  # noqa: E402

from sheetaudio_gui.config import SAMPLE_RATE_HZ  # noqa: E402
from sheetaudio_gui.gui.app import build_window, make_settings  # noqa: E402
from sheetaudio_gui.gui.player import Player  # noqa: E402
from sheetaudio_gui.gui.services import real_services  # noqa: E402
from sheetaudio_gui.gui.workers import JobHandle  # noqa: E402

JOB_TIMEOUT_MS = 60_000


def core_is_complete() -> bool:
    return all(
        importlib.util.find_spec(f"sheetaudio_gui.core.{m}") is not None
        for m in ("index", "search", "align", "encode")
    )


class FakeStream:
    """Stands in for a sounddevice OutputStream: remembers the callback, counts starts/stops."""

    def __init__(self, samplerate: int, callback) -> None:
        self.samplerate = samplerate
        self.callback = callback
        self.started = 0
        self.stopped = 0
        self.closed = False

    def start(self) -> None:
        self.started += 1

    def stop(self) -> None:
        self.stopped += 1

    def close(self) -> None:
        self.closed = True

    def pull(self, frames: int) -> np.ndarray:
        """What the device would get next: (frames,)."""
        out = np.full((frames, 1), np.nan, np.float32)
        self.callback(out, frames, None, None)
        return out[:, 0]


class StreamMaker:
    def __init__(self) -> None:
        self.streams: list[FakeStream] = []

    def __call__(self, samplerate: int, callback) -> FakeStream:
        self.streams.append(FakeStream(samplerate, callback))
        return self.streams[-1]


def no_device(samplerate: int, callback):
    raise OSError("PortAudio: no default output device")


@pytest.fixture(scope="session")
def model_file(tmp_path_factory) -> Path:
    import torch

    from sheetaudio_gui.core.models import PassageModel, save_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "random.pt"
    save_model(PassageModel(), path)
    return path


@pytest.fixture
def services():
    """The real core; SHEETAUDIO_GUI_FAKE_CORE=1 runs the same tests on tests/gui_fakes.py."""
    if core_is_complete() and not os.environ.get("SHEETAUDIO_GUI_FAKE_CORE"):
        return real_services()
    from gui_fakes import fake_services

    return fake_services()


@pytest.fixture
def streams() -> StreamMaker:
    return StreamMaker()


@pytest.fixture
def window(qtbot, tmp_path, model_file, services, streams):
    # Collect the previous tests' windows and jobs now, while no worker thread runs: a collection
    # that starts while a worker builds torch modules crashed once (SIGSEGV inside the GC).
    gc.collect()
    win = build_window(
        library_dir=tmp_path / "library",
        model_path=model_file,
        settings=make_settings(tmp_path / "settings.ini"),
        services=services,
        demo_dir=None,
        stream_factory=streams,
    )
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.session.model is not None, timeout=JOB_TIMEOUT_MS)
    yield win
    win.close()
    JobHandle.discard_all()  # every worker thread has ended before the next collection
    gc.collect()


def index(qtbot, win, paths) -> object:
    with qtbot.waitSignal(win.library_pane.indexingFinished, timeout=JOB_TIMEOUT_MS) as blocker:
        win.library_pane.add(paths)
    # the listing asked for after indexing (not one asked for while it ran) is shown
    qtbot.waitUntil(win.library_pane.listing_is_current, timeout=JOB_TIMEOUT_MS)
    return blocker.args[0]


def wait_job(qtbot, win, name: str) -> None:
    handle = win.jobs[name]
    qtbot.waitUntil(lambda: not handle.is_running(), timeout=JOB_TIMEOUT_MS)
    qtbot.wait(20)  # let the queued finished signal arrive


# --- window ---------------------------------------------------------------------------------------


def test_window_has_the_promised_shortcuts_and_panes(window):
    keys = {a.text(): a.shortcut().toString() for a in window.actions()}
    assert keys["Play"] == "Space"
    assert keys["Stop"] == "Esc"
    assert keys["&Open…"] == "Ctrl+O"
    assert keys["Go to &query"] == "Ctrl+F"
    assert keys["&Help"] == "F1"
    titles = {d.windowTitle() for d in window.findChildren(QDockWidget)}
    assert {"Library", "Results", "Plots"} <= titles


def test_window_geometry_and_recent_files_survive_a_restart(
    qtbot, tmp_path, model_file, services, sine_flac
):
    settings_path = tmp_path / "s.ini"
    first = build_window(
        tmp_path / "lib",
        model_file,
        make_settings(settings_path),
        services,
        demo_dir=None,
        stream_factory=StreamMaker(),
    )
    qtbot.addWidget(first)
    first.show()
    first.findChild(QDockWidget, "dock-Plots").hide()
    first._remember(sine_flac)
    first.close()
    second = build_window(
        tmp_path / "lib",
        model_file,
        make_settings(settings_path),
        services,
        demo_dir=None,
        stream_factory=StreamMaker(),
    )
    qtbot.addWidget(second)
    second.show()
    assert not second.findChild(QDockWidget, "dock-Plots").isVisible()
    assert second.findChild(QDockWidget, "dock-Library").isVisible()
    assert second.recent_files()[0] == str(sine_flac)


# --- library --------------------------------------------------------------------------------------


def test_adding_a_score_and_a_recording_indexes_both(qtbot, window, engraved_pdf, sine_flac):
    report = index(qtbot, window, [engraved_pdf, sine_flac])
    assert sorted(p.name for p in report.added) == ["chorale.pdf", "tone.flac"]
    states = {Path(d.path).name: d.state for d in window.library_pane.documents}
    assert states == {"chorale.pdf": "indexed", "tone.flac": "indexed"}
    assert window.library_pane.scores.childCount() == 1
    assert window.library_pane.recordings.childCount() == 1


def test_adapting_a_library_too_small_says_why_and_keeps_every_document(
    qtbot, window, engraved_pdf, sine_flac
):
    """The Library menu's adaptation (core.adapt) needs a few hundred windows of each kind."""
    index(qtbot, window, [engraved_pdf, sine_flac])
    with qtbot.waitSignal(window.library_pane.indexingFinished, timeout=JOB_TIMEOUT_MS) as b:
        window.adapt_action.trigger()
    assert b.args[0] is None  # stopped
    text = window.library_pane.status.text()
    assert text.startswith("Adaptation stopped:") and "too little material" in text
    qtbot.waitUntil(window.library_pane.listing_is_current, timeout=JOB_TIMEOUT_MS)
    assert {d.state for d in window.library_pane.documents} == {"indexed"}
    assert not (window.session.library_dir / "adapted-model.pt").exists()


def test_a_library_large_enough_to_adapt_to_suggests_it_after_indexing(
    qtbot, window, engraved_pdf, sine_flac, monkeypatch
):
    from sheetaudio_gui.core import index as core_index

    monkeypatch.setattr(core_index, "ADAPT_WINDOWS", 1)  # any library with both kinds
    index(qtbot, window, [engraved_pdf, sine_flac])
    status = window.library_pane.status
    qtbot.waitUntil(lambda: "Tip:" in status.text(), timeout=JOB_TIMEOUT_MS)
    summary, tip = status.text().split("\n")
    assert summary.startswith("Indexed 2 file(s)")
    assert "Library → Adapt the model to this library" in tip


def test_a_bad_file_is_listed_with_its_reason_and_the_rest_is_indexed(
    qtbot, window, tmp_path, engraved_pdf, sine_flac
):
    bad = tmp_path / "broken.pdf"
    bad.write_bytes(b"this is not a PDF at all")
    report = index(qtbot, window, [bad, sine_flac])
    assert [p.name for p in report.added] == ["tone.flac"]
    assert window.library_pane.errors.count() == 1
    assert "broken.pdf" in window.library_pane.errors.item(0).text()
    assert window.library_pane.errors.isVisible()


def test_cancel_stops_indexing_and_keeps_what_was_done(qtbot, window, tmp_path, sine_flac):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(8):
        shutil.copy(sine_flac, folder / f"tone{i}.flac")
    pane = window.library_pane
    with qtbot.waitSignal(pane.indexingFinished, timeout=JOB_TIMEOUT_MS) as blocker:
        job = pane.add([folder])
        job.progress.connect(lambda *a: pane.cancel())
    assert blocker.args[0] is None  # cancelled: no report
    qtbot.waitUntil(pane.listing_is_current, timeout=JOB_TIMEOUT_MS)
    assert "cancelled" in pane.status.text()
    assert pane.add_files_button.isEnabled()
    indexed = [d for d in pane.documents if d.state == "indexed"]
    assert len(indexed) < 8


def test_the_bar_moves_within_a_long_score_as_its_pages_are_indexed(window):
    pane = window.library_pane
    pane._progress(1, 2, "long.pdf: page 30 of 60", 0.5)  # the second of two files, half done
    assert pane.progress.value() / pane.progress.maximum() == pytest.approx(0.75)
    assert pane.status.text() == "long.pdf: page 30 of 60"


# --- queries and results --------------------------------------------------------------------------


def open_score(qtbot, win, path: Path) -> None:
    win.open_path(path)
    wait_job(qtbot, win, "open score")
    qtbot.waitUntil(lambda: win.score_view.path == path, timeout=JOB_TIMEOUT_MS)
    wait_job(qtbot, win, "systems")
    qtbot.waitUntil(lambda: bool(win.score_view.systems.get(0)), timeout=JOB_TIMEOUT_MS)


def test_audio_query_opens_the_found_page_with_the_region_highlighted_at_its_box(
    qtbot, window, engraved_pdf, sine_flac
):
    index(qtbot, window, [engraved_pdf, sine_flac])
    window.open_path(sine_flac)
    wait_job(qtbot, window, "open audio")
    qtbot.waitUntil(lambda: window.audio_view.samples.size > 0, timeout=JOB_TIMEOUT_MS)
    window.audio_view.select(0.5, 2.5)
    window.audio_view.find_button.click()
    wait_job(qtbot, window, "query")
    hits = window.results.hits
    assert hits and Path(hits[0].document) == engraved_pdf
    region = hits[0].regions[0]
    window.results_pane.choose(0, 0)
    qtbot.waitUntil(lambda: bool(window.score_view.highlight_items), timeout=JOB_TIMEOUT_MS)
    assert window.score_view.page_index == region.page
    item = window.score_view.highlight_items[0]
    drawn = item.mapRectToScene(item.rect())
    assert drawn.getCoords() == pytest.approx(tuple(region.box), abs=1e-3)
    wait_job(qtbot, window, "align")
    assert window.alignment is not None


def test_score_query_of_a_system_finds_the_recording_and_plays_its_span_with_a_score_cursor(
    qtbot, window, streams, engraved_pdf, sine_flac
):
    index(qtbot, window, [engraved_pdf, sine_flac])
    open_score(qtbot, window, engraved_pdf)
    box = window.score_view.systems[0][0]
    # a click in the middle of the first system queries it
    window.score_view._clicked((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    assert window.query["system"] == 0
    wait_job(qtbot, window, "query")
    hit = window.results.hits[0]
    assert Path(hit.document) == sine_flac
    span = hit.spans[0]
    window.results_pane.choose(0, 0)
    wait_job(qtbot, window, "open audio")
    wait_job(qtbot, window, "align")
    qtbot.waitUntil(lambda: window.player.state == "playing", timeout=JOB_TIMEOUT_MS)
    assert window.player.position_s == pytest.approx(span.start_s, abs=1e-3)
    stream = streams.streams[-1]
    first = stream.pull(1024)
    expected = window.audio_view.samples[round(span.start_s * SAMPLE_RATE_HZ) :][:1024]
    np.testing.assert_allclose(first, expected, atol=1e-6)
    window.player._poll()  # the ~30 Hz position timer, now
    qtbot.waitUntil(
        lambda: (
            window.score_view.cursor_item is not None and window.score_view.cursor_item.isVisible()
        ),
        timeout=5000,
    )
    line = window.score_view.cursor_item.line()
    page, system, x = window.alignment.position_at(window.player.position_s)
    sys_box = window.aligned_systems[(page, system)]
    assert line.x1() == pytest.approx(x)
    assert sys_box[1] - 7 <= line.y1() <= sys_box[1]


def test_whole_page_and_rectangle_queries_carry_their_region(
    qtbot, window, engraved_pdf, sine_flac
):
    index(qtbot, window, [engraved_pdf, sine_flac])
    open_score(qtbot, window, engraved_pdf)
    window.score_view.whole_page.click()
    assert window.query["system"] is None and window.query["box"] is None
    wait_job(qtbot, window, "query")
    window.score_view._dragged(50.0, 60.0, 300.0, 200.0)
    assert window.query["box"] == (50.0, 60.0, 300.0, 200.0)
    sel = window.score_view.selection_item
    assert sel.rect().getCoords() == pytest.approx((50.0, 60.0, 300.0, 200.0))
    wait_job(qtbot, window, "query")
    assert window.results_pane.tree.topLevelItemCount() == len(window.results.hits)
    first = window.results_pane.tree.topLevelItem(0)  # the file name gets the whole row
    assert first.isFirstColumnSpanned() and "tone.flac" in first.text(0)


def test_results_export_to_csv_and_json_with_pages_and_spans(
    qtbot, window, tmp_path, engraved_pdf, sine_flac
):
    import csv
    import json

    index(qtbot, window, [engraved_pdf, sine_flac])
    window.query_audio(sine_flac, 0.0, 2.0)
    wait_job(qtbot, window, "query")
    rows = list(csv.DictReader(window.results_pane.export_to(tmp_path / "r.csv").open()))
    assert rows[0]["document"] == str(engraved_pdf) and rows[0]["kind"] == "score"
    assert int(rows[0]["page"]) >= 1 and len(rows[0]["box"].split()) == 4
    data = json.loads(window.results_pane.export_to(tmp_path / "r.json").read_text())
    assert data["results"][0]["rank"] == 1
    window.results_pane.choose(0, 0)
    assert window.results_pane.copy_reference().startswith("chorale.pdf, p. ")


def test_passage_map_shows_the_library_and_a_click_opens_the_passage(
    qtbot, window, engraved_pdf, sine_flac
):
    index(qtbot, window, [engraved_pdf, sine_flac])
    qtbot.waitUntil(lambda: len(window.plot_view.map_rows) > 0, timeout=JOB_TIMEOUT_MS)
    kinds = {k for _, k, _ in window.plot_view.map_rows}
    assert kinds == {"score", "audio"}
    row = next(i for i, r in enumerate(window.plot_view.map_rows) if r[1] == "score")
    window.plot_view.choose_map_row(row)
    wait_job(qtbot, window, "open score")
    qtbot.waitUntil(lambda: window.score_view.path == engraved_pdf, timeout=JOB_TIMEOUT_MS)


# --- playback -------------------------------------------------------------------------------------


def test_player_goes_stopped_playing_paused_and_copies_the_right_samples(qtbot):
    maker = StreamMaker()
    player = Player(maker)
    ramp = np.arange(SAMPLE_RATE_HZ, dtype=np.float32) / SAMPLE_RATE_HZ  # 1 s
    player.load(ramp)
    assert player.state == "stopped"
    assert player.play() and player.state == "playing"
    stream = maker.streams[0]
    np.testing.assert_array_equal(stream.pull(100), ramp[:100])
    player.pause()
    assert player.state == "paused" and stream.stopped == 1
    assert player.position_s == pytest.approx(100 / SAMPLE_RATE_HZ)
    player.toggle()
    np.testing.assert_array_equal(stream.pull(10), ramp[100:110])
    player.seek(0.5)
    np.testing.assert_array_equal(stream.pull(5), ramp[11025:11030])
    player.stop()
    assert player.state == "stopped" and player.position_s == 0.0
    assert len(maker.streams) == 1  # one stream, reused


def test_loop_wraps_inside_the_passage_and_the_end_stops_playback(qtbot):
    maker = StreamMaker()
    player = Player(maker)
    ramp = np.arange(1000, dtype=np.float32)
    player.load(ramp)
    player.set_loop(100 / SAMPLE_RATE_HZ, 200 / SAMPLE_RATE_HZ)
    player.seek(190 / SAMPLE_RATE_HZ)
    player.play()
    out = maker.streams[0].pull(20)
    np.testing.assert_array_equal(out, np.r_[ramp[190:200], ramp[100:110]])
    player.set_looping(False)
    player.seek(990 / SAMPLE_RATE_HZ)
    out = maker.streams[0].pull(20)
    np.testing.assert_array_equal(out, np.r_[ramp[990:1000], np.zeros(10)])
    player._poll()
    assert player.state == "stopped"


def test_without_an_audio_device_the_player_says_so_and_the_app_carries_on(
    qtbot, tmp_path, model_file, services
):
    win = build_window(
        tmp_path / "lib",
        model_file,
        make_settings(tmp_path / "s.ini"),
        services,
        demo_dir=None,
        stream_factory=no_device,
    )
    qtbot.addWidget(win)
    win.player.load(np.zeros(1000, np.float32))
    win.toggle_play()
    assert win.player.state == "stopped" and not win.player.available
    assert "no audio output" in win.audio_label.text()
    assert "No audio output device" in win.player.problem


def test_a_missing_model_is_reported_and_the_window_stays_usable(
    qtbot, tmp_path, services, engraved_pdf
):
    win = build_window(
        tmp_path / "lib",
        tmp_path / "missing.pt",
        make_settings(tmp_path / "s.ini"),
        services,
        demo_dir=None,
        stream_factory=StreamMaker(),
    )
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.session.model_problem is not None, timeout=JOB_TIMEOUT_MS)
    assert "No model" in win.model_label.text()
    assert "missing.pt" in win.model_dialog.text()
    open_score(qtbot, win, engraved_pdf)  # viewing still works (systems detected, not indexed)
    assert win.query_score(engraved_pdf, 0, 0, None) is None
    assert "model file is missing" in win.statusBar().currentMessage()


def test_first_start_indexes_the_demo_folder_and_opens_its_first_score(
    qtbot, tmp_path, model_file, services, sine_flac, engraved_pdf
):
    demo = tmp_path / "demo"
    demo.mkdir()
    shutil.copy(sine_flac, demo / "demo.flac")
    shutil.copy(engraved_pdf, demo / "demo.pdf")
    win = build_window(
        tmp_path / "new-lib",
        model_file,
        make_settings(tmp_path / "s.ini"),
        services,
        demo_dir=demo,
        stream_factory=StreamMaker(),
    )
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.library_pane.indexingFinished, timeout=JOB_TIMEOUT_MS) as blocker:
        pass
    assert sorted(p.name for p in blocker.args[0].added) == ["demo.flac", "demo.pdf"]
    qtbot.waitUntil(lambda: win.score_view.path == demo / "demo.pdf", timeout=JOB_TIMEOUT_MS)
    qtbot.waitUntil(lambda: "Click a system" in win.statusBar().currentMessage())


def test_space_toggles_playback(qtbot, window):
    window.player.load(np.zeros(SAMPLE_RATE_HZ, np.float32))
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert window.player.state == "playing"
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert window.player.state == "paused"
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert window.player.state == "stopped"


def test_cycles_are_collected_in_the_gui_thread_and_never_in_a_worker(qtbot, window):
    import threading

    assert not gc.isenabled()  # automatic collection would run in whichever thread allocates
    finalised_in: list[str] = []

    class Cycle:
        def __init__(self) -> None:
            self.me = self

        def __del__(self) -> None:
            finalised_in.append(threading.current_thread().name)

    for _ in range(100):
        Cycle()

    def allocate() -> None:  # far past every threshold: a worker that builds a model or indexes
        junk = [[i] for i in range(200_000)]
        del junk

    worker = threading.Thread(target=allocate, name="worker")
    worker.start()
    worker.join()
    assert finalised_in == []  # the worker did not collect
    # the worker freed what it allocated; new objects that stay alive make a collection due
    alive = [[] for _ in range(gc.get_threshold()[0] + 1)]
    qtbot.waitUntil(lambda: len(finalised_in) == 100, timeout=5_000)
    del alive
    assert set(finalised_in) == {threading.main_thread().name}
