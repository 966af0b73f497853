"""Errors for people: each message names the file and says what to do.

The CLI prints `str(error)` on one line and exits with status 2; the GUI shows it in a dialog.
"""

from __future__ import annotations

from pathlib import Path


class SheetAudioError(Exception):
    """Base of every error the user can do something about."""


class FileProblem(SheetAudioError):
    """A problem with one input file; the message starts with the file's path."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class UnreadableScore(FileProblem):
    """A score file (PDF or image) that cannot be opened or rendered."""


class UnreadableAudio(FileProblem):
    """An audio file that cannot be decoded."""


class IndexCorrupt(SheetAudioError):
    """The library index is damaged; `sheetaudio library repair` rebuilds it."""


class Cancelled(SheetAudioError):
    """A long job stopped because its cancel token was set."""
