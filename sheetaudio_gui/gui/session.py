"""What the panes share: the core services, the library folder, the loaded model, running jobs.

The model loads in a worker at startup (importing torch takes about a second); jobs that need it
wait for `model_ready`. Each job opens its own Library in its own thread (`library_work`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from sheetaudio_gui.core.jobs import CancelToken
from sheetaudio_gui.gui.services import CoreServices, default_model_path, real_services
from sheetaudio_gui.gui.workers import JobHandle, library_work

logger = logging.getLogger(__name__)


class Session(QObject):
    """The application's state outside the widgets."""

    model_ready = Signal()
    model_failed = Signal(str)  # a message for people
    library_changed = Signal()  # documents were added, removed or re-indexed
    busy_changed = Signal(str)  # status text of the latest job ("" when idle)

    def __init__(
        self,
        library_dir: Path,
        model_path: Path | None = None,
        services: CoreServices | None = None,
    ) -> None:
        super().__init__()
        self.services = services or real_services()
        self.library_dir = Path(library_dir)
        self.model_path = Path(model_path) if model_path else default_model_path()
        self.model: Any = None
        self.model_problem: str | None = None
        self._waiting: list[Callable[[], None]] = []

    # --- model ------------------------------------------------------------------------------
    def load_model_in_background(self) -> JobHandle:
        """Import torch and load the weights off the GUI thread."""
        path = self.model_path

        def work(cancel: CancelToken) -> Any:
            import torch

            torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))  # one core for the GUI
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path}: the model file is missing. Reinstall sheetaudio, or set "
                    f"SHEETAUDIO_MODEL to a weights file; searching is off until then."
                )
            return self.services.load_model(path)

        handle = JobHandle(work, "load model")
        handle.finished.connect(self._model_loaded)
        handle.failed.connect(self._model_error)
        return handle.start()

    def set_model(self, model: Any) -> None:
        self._model_loaded(model)

    def _model_loaded(self, model: Any) -> None:
        self.model = model
        self.model_problem = None
        logger.info("model ready: %s", getattr(model, "model_id", "?"))
        self.model_ready.emit()
        waiting, self._waiting = self._waiting, []
        for action in waiting:
            action()

    def _model_error(self, error: object) -> None:
        self.model_problem = str(error)
        self.model_failed.emit(self.model_problem)

    def when_model_ready(self, action: Callable[[], None]) -> None:
        """Run `action` now if the model is loaded, else as soon as it is."""
        if self.model is not None:
            action()
        elif self.model_problem is None:
            self._waiting.append(action)

    # --- jobs -------------------------------------------------------------------------------
    def run_library(self, task: Callable[[Any, CancelToken], Any], name: str = "job") -> JobHandle:
        """A started job that runs `task(library, cancel)` with a Library of its own thread.

        Connect to the handle's signals right after this returns: results arrive queued, after
        control is back in the event loop.
        """
        work = library_work(self.services, self.library_dir, self.model, task)
        return JobHandle(work, name).start()

    def run(self, work: Callable[[CancelToken], Any], name: str = "job") -> JobHandle:
        """A started job without the library (e.g. reading a file)."""
        return JobHandle(work, name).start()
