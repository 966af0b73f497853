"""Run the core's long jobs in Qt threads: the job stays plain Python, the worker speaks signals.

A job here is `work(cancel) -> value | Job[value]`: when it returns a generator, the worker drives
it, forwards each `Progress` as a signal (at most every `PROGRESS_INTERVAL_S`, so a fast job cannot
flood the GUI thread) and emits the generator's return value. Work that needs the index opens its
own `Library` inside the thread (`library_work`): SQLite connections belong to one thread.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, ClassVar

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from sheetaudio_gui.core.errors import Cancelled
from sheetaudio_gui.core.jobs import CancelToken, Progress
from sheetaudio_gui.gui.services import CoreServices

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.03  # progress signals are sent at most this often, s
WORKER_NICE = 10  # Unix nice value of worker threads (the GUI thread keeps 0)

Work = Callable[[CancelToken], Any]


def lower_thread_priority() -> None:
    """Make the calling (worker) thread nicer than the GUI thread, so that on a busy machine the
    scheduler runs the event loop first (Linux: per-thread nice; elsewhere nothing)."""
    if not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), WORKER_NICE))
    except OSError as error:
        logger.debug("cannot lower worker priority: %s", error)


class JobWorker(QObject):
    """Lives in a QThread; `run` calls the work and reports through signals."""

    progress = Signal(int, int, str, float)  # done, total, message, part (`core.jobs.Progress`)
    finished = Signal(object)  # the result
    failed = Signal(object)  # the exception
    cancelled = Signal()
    done = Signal()  # after any of the three above: the thread may quit

    def __init__(self, work: Work, cancel: CancelToken) -> None:
        super().__init__()
        self._work = work
        self._cancel = cancel

    @Slot()
    def run(self) -> None:
        lower_thread_priority()
        try:
            result = self._work(self._cancel)
            if inspect.isgenerator(result):
                result = self._drive(result)
            self.finished.emit(result)
        except Cancelled:
            self.cancelled.emit()
        except Exception as error:  # every failure goes to the GUI, which shows it
            logger.exception("background job failed")
            self.failed.emit(error)
        finally:
            self.done.emit()

    def _drive(self, job: Generator[Progress, None, Any]) -> Any:
        last = 0.0
        while True:
            try:
                step = next(job)
            except StopIteration as stop:
                return stop.value
            now = time.monotonic()
            if isinstance(step, Progress) and (
                now - last >= PROGRESS_INTERVAL_S or step.done >= step.total > 0
            ):
                last = now
                self.progress.emit(step.done, step.total, step.message, step.part)


class JobHandle(QObject):
    """A job seen from the GUI thread: signals re-emitted there, a cancel token, its thread.

    Create it in the GUI thread, connect to its signals, then `start()`. Callbacks connected to
    these signals always run in the GUI thread (the worker's signals reach this object queued).
    """

    progress = Signal(int, int, str, float)
    finished = Signal(object)
    failed = Signal(object)
    cancelled = Signal()

    _running: ClassVar[set[JobHandle]] = set()  # handles whose thread runs (keeps them alive)
    _live: ClassVar[set[JobHandle]] = set()  # handles whose result is not delivered yet

    def __init__(self, work: Work, name: str = "job") -> None:
        super().__init__()
        self.name = name
        self.discarded = False  # set at exit: results that arrive later go nowhere
        self.token = CancelToken()
        self.thread = QThread()
        self.thread.setObjectName(name)
        self.worker = JobWorker(work, self.token)
        self.worker.moveToThread(self.thread)
        self.thread.started.connect(self.worker.run)
        self.worker.progress.connect(self._on_progress)
        self.worker.finished.connect(self._on_finished)
        self.worker.failed.connect(self._on_failed)
        self.worker.cancelled.connect(self._on_cancelled)
        # direct: quit() is thread-safe, and a queued call would wait for a GUI thread that may
        # itself be waiting for this thread (at exit)
        self.worker.done.connect(self.thread.quit, Qt.ConnectionType.DirectConnection)
        self.thread.finished.connect(self._forget)

    @Slot(int, int, str, float)
    def _on_progress(self, done: int, total: int, message: str, part: float) -> None:
        if not self.discarded:
            self.progress.emit(done, total, message, part)

    @Slot(object)
    def _on_finished(self, result: object) -> None:
        self._deliver(self.finished, result)

    @Slot(object)
    def _on_failed(self, error: object) -> None:
        self._deliver(self.failed, error)

    @Slot()
    def _on_cancelled(self) -> None:
        self._deliver(self.cancelled)

    def _deliver(self, signal: Any, *args: object) -> None:
        JobHandle._live.discard(self)
        if not self.discarded:
            signal.emit(*args)

    def start(self) -> JobHandle:
        JobHandle._running.add(self)
        JobHandle._live.add(self)
        self.thread.start()
        return self

    def cancel(self) -> None:
        self.token.cancel()

    def is_running(self) -> bool:
        return bool(self.thread.isRunning())

    def wait(self, ms: int = 30_000) -> bool:
        return bool(self.thread.wait(ms))

    @Slot()
    def _forget(self) -> None:
        JobHandle._running.discard(self)

    @classmethod
    def discard_all(cls, ms: int = 10_000) -> None:
        """At window close: stop every job, wait for its thread, and drop results still queued
        (their receivers are about to be deleted)."""
        for handle in list(cls._live | cls._running):
            handle.discarded = True
            handle.cancel()
        for handle in list(cls._running):
            handle.wait(ms)
        cls._live.clear()


def library_work(
    services: CoreServices,
    folder: Path,
    model: Any,
    task: Callable[[Any, CancelToken], Any],
) -> Work:
    """Work that opens its own Library in the worker thread, runs `task(library, cancel)` (value or
    job) and closes the library after the job has finished."""

    def work(cancel: CancelToken) -> Generator[Progress, None, Any]:
        library = services.open_library(folder, model)
        try:
            result = task(library, cancel)
            if inspect.isgenerator(result):
                result = yield from result
            return result
        finally:
            library.close()

    return work
