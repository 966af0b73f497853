"""GUI benchmarks: startup to a usable window, and the longest GUI-thread stall while indexing.

    .venv/bin/python benchmarks/bench_gui.py [--pieces 4] [--screenshots docs]

Startup: wall time from spawning `python -m`-like child process to the first event-loop turn after
`window.show()` (library exists, model loads in the background: first-run indexing excluded).
Stall: a QTimer ticks every 10 ms on the GUI thread while the real core indexes pieces of the
synthetic corpus (page PNGs bound into one PDF per piece + its FLAC); the longest gap between ticks
minus 10 ms is the longest stall. The shipped model is used (or `--model`); a random-init model
(torch.manual_seed(0)) stands in when none is shipped. The material is held-out test pieces.
`--screenshots DIR` also saves the window in its main states as PNGs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CORPUS = Path(os.environ.get("SHEETAUDIO_CORPUS", "/work/corpus")) / "pieces"
TICK_MS = 10  # responsiveness probe interval, ms
STARTUP_RUNS = 3  # startup is measured this many times (median and max reported)

CHILD = r"""
import os, sys, time
sys.path.insert(0, {repo!r})
from pathlib import Path
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
app = QApplication([])
from sheetaudio_gui.gui.app import build_window, make_settings
win = build_window(Path({lib!r}), Path({model!r}), make_settings(Path({ini!r})), demo_dir=None)
win.show()
def usable():
    print("USABLE", time.time(), flush=True)
    app.quit()
QTimer.singleShot(0, usable)
app.exec()
os._exit(0)
"""


def make_material(folder: Path, pieces: int) -> list[Path]:
    """One PDF (its page PNGs) and one FLAC per held-out test piece, the first `pieces` of at most
    3 pages (the training pieces would flatter the model in the screenshots)."""
    import pymupdf

    from sheetaudio_gui.training.corpus_format import iter_pieces

    folder.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    for piece in iter_pieces(CORPUS.parent, "test"):
        if not piece.performances or len(piece.pages) > 3:
            continue
        pdf = pymupdf.open()
        for page in piece.pages:
            img = pymupdf.open(piece.page_path(page.index))
            pdf.insert_pdf(pymupdf.open("pdf", img.convert_to_pdf()))
        pdf.save(folder / f"{piece.directory.name}.pdf")
        shutil.copy(piece.audio_path(0), folder / f"{piece.directory.name}.flac")
        out += [folder / f"{piece.directory.name}.pdf", folder / f"{piece.directory.name}.flac"]
        if len(out) >= 2 * pieces:
            break
    return out


def random_model(path: Path) -> Path:
    import torch

    from sheetaudio_gui.core.models import PassageModel, save_model

    torch.manual_seed(0)
    save_model(PassageModel(), path)
    return path


def measure_startup(model: Path, work: Path) -> list[float]:
    lib = work / "startup-lib"
    lib.mkdir(exist_ok=True)
    (lib / "placeholder").write_text("")  # an existing library: no first-run indexing
    times = []
    for run in range(STARTUP_RUNS):
        code = CHILD.format(
            repo=str(REPO), lib=str(lib), model=str(model), ini=str(work / f"startup{run}.ini")
        )
        start = time.time()
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
        )
        line = next(x for x in proc.stdout.splitlines() if x.startswith("USABLE"))
        times.append(float(line.split()[1]) - start)
    return times


def measure_stall(model: Path, material: list[Path], work: Path) -> dict[str, float]:
    from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from sheetaudio_gui.gui.app import build_window, make_settings

    app = QApplication.instance() or QApplication([])
    win = build_window(work / "stall-lib", model, make_settings(work / "stall.ini"), demo_dir=None)
    win.show()
    loop = QEventLoop()
    win.session.model_ready.connect(loop.quit)
    if win.session.model is None:
        loop.exec()
    gaps: list[float] = []
    clock = QElapsedTimer()
    clock.start()
    last = [clock.nsecsElapsed()]

    def tick() -> None:
        now = clock.nsecsElapsed()
        gaps.append((now - last[0]) / 1e6)
        last[0] = now

    timer = QTimer()
    timer.setInterval(TICK_MS)
    timer.timeout.connect(tick)
    done = QEventLoop()
    win.library_pane.indexingFinished.connect(lambda report: done.quit())
    started = time.perf_counter()
    timer.start()
    win.library_pane.add(material)
    done.exec()
    elapsed = time.perf_counter() - started
    timer.stop()
    report = win.library_pane.last_report
    win.close()
    app.processEvents()
    gaps_sorted = sorted(gaps)
    return {
        "indexing_s": round(elapsed, 2),
        "files": len(material),
        "indexed": len(getattr(report, "added", [])),
        "ticks": len(gaps),
        "longest_stall_ms": round(max(gaps) - TICK_MS, 1),
        "p99_gap_ms": round(gaps_sorted[int(0.99 * (len(gaps) - 1))], 1),
        "median_gap_ms": round(gaps_sorted[len(gaps) // 2], 1),
    }


def screenshots(model: Path, material: list[Path], work: Path, out: Path) -> list[Path]:
    """The window after indexing, a sheet->audio query with playback, an audio->sheet query."""
    from PySide6.QtCore import QEventLoop, QTimer

    from sheetaudio_gui.gui.app import build_window, make_settings

    def wait(ms: int) -> None:
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    def until(cond, timeout_s: float = 120) -> None:
        end = time.time() + timeout_s
        while not cond() and time.time() < end:
            wait(50)

    streams = []

    class QuietStream:
        def __init__(self, rate, callback):
            self.callback = callback
            streams.append(self)

        def start(self): ...
        def stop(self): ...
        def close(self): ...

    lib = work / "stall-lib"  # already indexed by measure_stall
    win = build_window(
        lib, model, make_settings(work / "shots.ini"), demo_dir=None, stream_factory=QuietStream
    )
    win.resize(1440, 900)
    win.show()
    until(lambda: win.session.model is not None)
    until(lambda: len(win.library_pane.documents) > 0 and len(win.plot_view.map_rows) > 0)
    score = next(p for p in material if p.suffix == ".pdf")
    win.open_path(score)
    until(lambda: win.score_view.path == score and bool(win.score_view.systems.get(0)))
    win.score_view.query_system(1 if len(win.score_view.systems[0]) > 1 else 0)
    until(
        lambda: (
            getattr(win, "results", None) is not None
            and win.results_pane.tree.topLevelItemCount() > 0
        )
    )
    win.results_pane.choose(0, 0)
    until(lambda: win.player.state == "playing" and win.alignment is not None)
    import numpy as np

    buf = np.zeros((1024, 1), np.float32)
    for _ in range(60):
        streams[-1].callback(buf, 1024, None, None)
    win.player._poll()
    win.tabs.setCurrentWidget(win.score_view)
    wait(300)
    paths = []
    out.mkdir(parents=True, exist_ok=True)
    path = out / "screenshot_main.png"
    win.grab().save(str(path))
    paths.append(path)
    # audio -> sheet
    audio = next(p for p in material if p.suffix == ".flac" and p.stem != score.stem)
    win.player.stop()
    win.open_path(audio)
    until(lambda: win.audio_view.path == audio)
    win.audio_view.select(10.0, 20.0)
    win.results = None
    win.audio_view.find_button.click()
    until(lambda: getattr(win, "results", None) is not None)
    win.tabs.setCurrentIndex(1)
    win.plot_view.setCurrentIndex(1)
    wait(300)
    path = out / "screenshot_audio_query.png"
    win.grab().save(str(path))
    paths.append(path)
    win.results_pane.choose(0, 0)
    until(lambda: bool(win.score_view.highlight_items) and win.alignment is not None)
    win.plot_view.setCurrentIndex(0)
    wait(300)
    path = out / "screenshot_result_highlight.png"
    win.grab().save(str(path))
    paths.append(path)
    win.close()
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pieces", type=int, default=4, help="corpus pieces to index")
    parser.add_argument("--screenshots", type=Path, help="save screenshots into this folder")
    parser.add_argument("--json", type=Path, help="write the numbers here")
    parser.add_argument("--model", type=Path, help="weights (default: the shipped model if any)")
    args = parser.parse_args()
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    work = Path(tempfile.mkdtemp(prefix="bench-gui-"))
    from sheetaudio_gui.config import MODEL_FILE, MODELS_DIR

    shipped = MODELS_DIR / MODEL_FILE
    model = args.model or (shipped if shipped.is_file() else random_model(work / "random.pt"))
    material = make_material(work / "material", args.pieces)
    startup = measure_startup(model, work)
    stall = measure_stall(model, material, work)
    result = {
        "command": " ".join(sys.argv),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, {platform.python_version()}",
        "qpa": os.environ.get("QT_QPA_PLATFORM"),
        "startup_s": [round(t, 2) for t in startup],
        "startup_median_s": round(sorted(startup)[len(startup) // 2], 2),
        **stall,
    }
    if args.screenshots:
        result["screenshots"] = [
            str(p) for p in screenshots(model, material, work, args.screenshots)
        ]
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    _ = app
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
