"""`sheetaudio-gui` / `python -m sheetaudio_gui`: the QApplication, settings and first start.

On the first start (no library yet) the default library is created and the demo material in
`DEMO_DIR` (score PDFs and FLAC recordings) is indexed in the background, so every feature can be
tried at once. The model loads in a worker: the window is usable before torch has even imported.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication

from sheetaudio_gui import __version__, config
from sheetaudio_gui.gui.collector import collect_in_gui_thread
from sheetaudio_gui.gui.main_window import SCORE_SUFFIXES, MainWindow
from sheetaudio_gui.gui.services import CoreServices, default_library_dir
from sheetaudio_gui.gui.session import Session

logger = logging.getLogger(__name__)

DEMO_DIR = Path(__file__).resolve().parents[2] / "resources" / "demo"  # repo/resources/demo
ORGANISATION = "sheetaudio"
LOG_FILE = "sheetaudio.log"  # in platformdirs.user_log_dir (e.g. ~/.local/state/sheetaudio/log)
LOG_FILE_BYTES = 1_000_000  # rotated at this size, two old files kept


def make_settings(path: Path | None = None) -> QSettings:
    """The user's settings, or an INI file at `path` (tests, benchmarks)."""
    if path is not None:
        return QSettings(str(path), QSettings.Format.IniFormat)
    return QSettings(ORGANISATION, config.APP_NAME)


def library_is_new(folder: Path) -> bool:
    """True when the folder holds no library yet (first start)."""
    return not folder.exists() or not any(folder.iterdir())


def build_window(
    library_dir: Path | None = None,
    model_path: Path | None = None,
    settings: QSettings | None = None,
    services: CoreServices | None = None,
    demo_dir: Path | None = DEMO_DIR,
    **window_options: object,
) -> MainWindow:
    """Window + session, model loading started, demo indexing queued on a new library."""
    app = QApplication.instance()
    if app is not None:  # workers must never run the garbage collector (see gui/collector.py)
        collect_in_gui_thread(app)
    settings = settings or make_settings()
    if library_dir is None:
        stored = settings.value("library/location")
        library_dir = Path(str(stored)) if stored else default_library_dir()
    first_start = library_is_new(library_dir)
    library_dir.mkdir(parents=True, exist_ok=True)
    session = Session(library_dir, model_path, services)
    window = MainWindow(session, settings, **window_options)  # type: ignore[arg-type]
    session.load_model_in_background()
    if first_start and demo_dir is not None and demo_dir.is_dir() and any(demo_dir.iterdir()):
        window.statusBar().showMessage("First start: indexing the demo library in the background…")
        session.when_model_ready(lambda: _index_demo(window, demo_dir))
    return window


def _index_demo(window: MainWindow, demo_dir: Path) -> None:
    """Index the demo material, then open its first score so that a new user sees music at once."""
    job = window.library_pane.add([demo_dir])
    if job is None:
        return

    def ready(report: object) -> None:
        added = sorted(Path(p) for p in getattr(report, "added", []))
        scores = [p for p in added if p.suffix.lower() in SCORE_SUFFIXES]
        if scores and window.score_view.path is None:  # the user has not opened anything yet
            window.open_path(scores[0])  # its status message says what to click
        else:
            window.statusBar().showMessage(
                "Demo library ready: open a score (Ctrl+O) or pick one in the library."
            )

    job.finished.connect(ready)


def _log_to_file() -> None:
    """Also keep a log (INFO and up, 3 x 1 MB) in the per-user log folder, for bug reports."""
    import logging.handlers

    import platformdirs

    try:
        folder = Path(platformdirs.user_log_dir(config.APP_NAME))
        folder.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            folder / LOG_FILE, maxBytes=LOG_FILE_BYTES, backupCount=2, encoding="utf-8"
        )
    except OSError as error:  # a read-only home must not stop the application
        logger.warning("no log file: %s", error)
        return
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for terminal in root.handlers:  # the terminal keeps the level asked for (-v or not)
        if terminal.level == logging.NOTSET:
            terminal.setLevel(root.level)
    root.addHandler(handler)
    root.setLevel(min(root.level, logging.INFO))


def main(argv: Sequence[str] | None = None) -> int:
    started = time.perf_counter()
    multiprocessing.freeze_support()  # a frozen (PyInstaller) app starts its indexer child here
    parser = argparse.ArgumentParser(prog="sheetaudio-gui", description=__doc__)
    parser.add_argument("--library", type=Path, help="library folder (default: per-user data)")
    parser.add_argument("--model", type=Path, help="model weights (default: the shipped model)")
    parser.add_argument("--open", type=Path, help="a score or recording to open")
    parser.add_argument(
        "file", nargs="?", type=Path, help="a score or recording to open (as from a file manager)"
    )
    parser.add_argument("--no-demo", action="store_true", help="do not index the demo library")
    parser.add_argument("-v", "--verbose", action="store_true")
    args, qt_args = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    _log_to_file()
    app = QApplication.instance() or QApplication([sys.argv[0], *qt_args])
    app.setApplicationName(config.APP_NAME)
    app.setOrganizationName(ORGANISATION)
    app.setApplicationVersion(__version__)
    window = build_window(args.library, args.model, demo_dir=None if args.no_demo else DEMO_DIR)
    window.show()
    if args.open or args.file:
        window.open_path(args.open or args.file)
    QTimer.singleShot(
        0, lambda: logger.info("window usable after %.2f s", time.perf_counter() - started)
    )
    return int(app.exec())
