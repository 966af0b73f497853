"""Drive a core job from the terminal: a progress bar on stderr, Ctrl-C sets the cancel token."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import TypeVar

from sheetaudio_gui.core.jobs import CancelToken, Job, Progress

T = TypeVar("T")


def run_with_progress(
    make_job: Callable[[CancelToken], Job[T]], *, quiet: bool = False, label: str = ""
) -> T:
    """Run `make_job(token)` to its end, drawing a bar; the first Ctrl-C cancels cleanly.

    The job sees the cancel at its next step and raises `Cancelled` after leaving its work
    consistent; a second Ctrl-C interrupts at once.
    """
    token = CancelToken()
    previous = signal.getsignal(signal.SIGINT)

    def on_interrupt(signum: int, frame: FrameType | None) -> None:
        if token.cancelled:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        token.cancel()
        sys.stderr.write("\ncancelling after the current step (Ctrl-C again to abort)...\n")

    signal.signal(signal.SIGINT, on_interrupt)
    bar = _Bar(sys.stderr.isatty() and not quiet, label)
    job = make_job(token)
    try:
        while True:
            try:
                progress = next(job)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            bar.show(progress)
    finally:
        bar.close()
        signal.signal(signal.SIGINT, previous)


class _Bar:
    """A one-line bar on a terminal; on a pipe, a line every few seconds."""

    def __init__(self, interactive: bool, label: str) -> None:
        self.interactive = interactive
        self.label = label
        self.last = 0.0
        self.drawn = False

    def show(self, p: Progress) -> None:
        now = time.monotonic()
        if now - self.last < (0.1 if self.interactive else 5.0):
            return
        self.last = now
        count = f"{p.done}/{p.total}" if p.total else f"{p.done}"
        if self.interactive:
            filled = int(30 * p.fraction)
            text = f"\r{self.label}[{'#' * filled}{'.' * (30 - filled)}] {count} {p.message}"
            sys.stderr.write(text[:160].ljust(100))
            self.drawn = True
        else:
            sys.stderr.write(f"{self.label}{count} {p.message}\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")
