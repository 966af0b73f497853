"""Long work as plain generators: they yield progress and honour a cancel token.

The GUI runs such a generator in a QThread worker, the CLI draws a terminal progress bar, tests just
iterate. Nothing here knows about Qt.
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from dataclasses import dataclass
from typing import TypeVar

from sheetaudio_gui.core.errors import Cancelled

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """`done` of `total` steps finished (total 0 = unknown); `message` says what happens now;
    `part` how far the current step is (0-1: a long score's pages), so a bar moves within it."""

    done: int
    total: int
    message: str = ""
    part: float = 0.0

    @property
    def fraction(self) -> float:
        return min(1.0, (self.done + self.part) / self.total) if self.total > 0 else 0.0


class CancelToken:
    """Set from any thread; a job checks it between steps and stops cleanly."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled by the user")


Job = Generator[Progress, None, T]
"""A generator that yields Progress and returns its result (via StopIteration.value)."""


def run_to_end(job: Job[T]) -> T:
    """Drive a job without showing progress; returns its result."""
    while True:
        try:
            next(job)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
