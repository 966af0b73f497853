"""Index in a child process: `Library.add` / `rescan` run by another Python interpreter.

Why a process and not a thread: decoding a page (MuPDF) or a recording holds the GIL in places,
and a thread that holds it freezes the window's event loop; a child process cannot. And a file
that crashes native code (a malformed PDF can take MuPDF down) costs that one file, not the
application: the child is restarted on the remaining files and the file is recorded as failed.

The child opens the same library folder; the library is safe for several processes (SQLite WAL,
append-only matrices), so the parent's own Library handle sees each document as it is committed.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from sheetaudio_gui.core.errors import Cancelled, SheetAudioError
from sheetaudio_gui.core.jobs import CancelToken, Job, Progress

log = logging.getLogger(__name__)

CHILD_NICE = 10  # the indexer yields the CPU to the window's thread on a busy machine
POLL_S = 0.05  # how often the parent looks for messages, cancel requests and a dead child, s
CANCEL_GRACE_S = 10.0  # a child that has not stopped this long after a cancel is killed, s
CRASH_TEST_ENV = "SHEETAUDIO_INDEXER_CRASH_ON"  # tests only: the child aborts on this file name
MAX_CHILDREN = 50  # a run gives up after this many crashed children


class _EventToken(CancelToken):
    """A cancel token backed by a multiprocessing event (set by the parent)."""

    def __init__(self, event: Any) -> None:
        super().__init__()
        self._event = event


def _child(
    folder: str,
    model_path: str,
    paths: list[str],
    mode: str,
    conn: Connection,
    stop: Any,
    threads: int,
) -> None:
    """The child's whole life: index, report each step, send the report or the error, exit.

    `mode`: "add" (Library.add of `paths`), "rescan", "adapt" / "unadapt" (Library.adapt /
    unadapt: the model adapted to the library, or the base again, and every document
    re-embedded), or "careful" (`paths` are files, added one by one with a ("file", path)
    message before each, so that a crash names its file).
    """
    with contextlib.suppress(OSError):
        os.nice(CHILD_NICE)
    import torch

    from sheetaudio_gui.core import index
    from sheetaudio_gui.core.index import AddReport, Library
    from sheetaudio_gui.core.models import load_model

    torch.set_num_threads(threads)
    crash_on = os.environ.get(CRASH_TEST_ENV)
    if crash_on:  # tests: decoding this file dies the way a native library crash would
        prepare = index._prepare

        def crashing_prepare(decoding: Any) -> Any:
            if decoding.path.name == crash_on:
                os.abort()
            return prepare(decoding)

        index._prepare = crashing_prepare
    token = _EventToken(stop)
    try:
        with Library(Path(folder), load_model(model_path)) as library:
            if mode == "careful":
                report = AddReport()
                for i, name in enumerate(paths):
                    conn.send(("file", name))
                    part = yield_to(conn, library.add([Path(name)], token), i, len(paths))
                    report.added += part.added
                    report.skipped += part.skipped
                    report.failed += part.failed
            elif mode == "rescan":
                report = yield_to(conn, library.rescan(token))
            elif mode == "adapt":
                report = yield_to(conn, library.adapt(token))
            elif mode == "unadapt":
                report = yield_to(conn, library.unadapt(token))
            else:
                job = library.add([Path(p) for p in paths], token)
                report = yield_to(conn, job)
            conn.send(("progress", 0, 0, "preparing the search", 0.0))
            library.prepare_search()  # here, not in the window's first query
            conn.send(("done", report))
    except Cancelled:
        conn.send(("cancelled",))
    except BaseException as error:  # everything reaches the parent as a message for people
        conn.send(("error", type(error).__name__, str(error)))
    finally:
        conn.close()


def yield_to(conn: Connection, job: Job[Any], offset: int = 0, files: int = 0) -> Any:
    """Drive `job` in the child, sending its progress to the parent; returns its value. In
    careful mode (`files` > 0) progress counts files: `offset` of `files` done."""
    while True:
        try:
            progress = next(job)
        except StopIteration as end:
            return end.value
        if files:
            conn.send(("progress", offset, files, progress.message, progress.part))
        else:
            conn.send(("progress", progress.done, progress.total, progress.message, progress.part))


def index_in_process(
    folder: Path,
    model_path: Path,
    paths: Sequence[Path] = (),
    cancel: CancelToken | None = None,
    mode: str = "add",
    threads: int = 1,
) -> Job[Any]:
    """`Library(folder).add(paths)` (or `.rescan()`, `.adapt()`, `.unadapt()`: `mode`) in a child
    process; yields its Progress and returns its AddReport. Cancel stops the child between
    documents (committed work stays).

    When the child dies (a native crash), `add` goes on carefully: the files are added one by one
    in a fresh child (those already committed are skipped as unchanged), a file that crashes it is
    listed in the report's `failed`, and the rest go on in another child.
    """
    ctx = mp.get_context("spawn")  # a clean interpreter: no Qt, no parent threads
    todo = [str(p) for p in paths]
    crashed: list[tuple[Path, str]] = []
    report: Any = None
    for _ in range(MAX_CHILDREN):
        outcome = yield from _run_child(ctx, folder, model_path, todo, mode, cancel, threads)
        kind = outcome[0]
        if kind == "done":
            report = outcome[1]
            break
        if kind == "cancelled":
            raise Cancelled("indexing cancelled by the user; what was indexed stays")
        if kind == "error":
            raise SheetAudioError(outcome[2])
        current, how = outcome[1], outcome[2]  # crashed
        if mode != "add" and mode != "careful":
            raise SheetAudioError(
                f"{folder}: the indexer crashed during the {mode} ({how}); add the folders again "
                "to find the file that crashes it"
            )
        if mode == "add":  # from now on one file at a time, so that a crash names its file
            mode, todo = "careful", _files(todo)
            log.warning("indexer crashed (%s); going on file by file", how)
            continue
        assert current is not None
        crashed.append((Path(current), f"reading this file crashed the indexer ({how})"))
        log.warning("indexer crashed on %s (%s); leaving it out", current, how)
        todo = todo[todo.index(current) + 1 :]
    else:
        raise SheetAudioError(f"{folder}: the indexer crashed {MAX_CHILDREN} times; stopped")
    report.failed += crashed
    return report


def _files(paths: list[str]) -> list[str]:
    """The score and audio files that `Library.add(paths)` would index, in its order."""
    from sheetaudio_gui.core.index import _walk, file_kind

    files: list[str] = []
    for p in paths:
        path = Path(os.path.abspath(p))
        if path.is_dir():
            files.extend(str(f) for f in _walk(path))
        elif file_kind(path) is not None:
            files.append(str(path))
    return list(dict.fromkeys(files))


def _run_child(
    ctx: Any,
    folder: Path,
    model_path: Path,
    paths: list[str],
    mode: str,
    cancel: CancelToken | None,
    threads: int,
) -> Job[tuple[Any, ...]]:
    """One child from start to end: yields its progress; returns ("done", report),
    ("cancelled",), ("error", type, message) or ("crashed", file being indexed or None, how)."""
    receive, send = ctx.Pipe(duplex=False)
    stop = ctx.Event()
    child = ctx.Process(
        target=_child,
        args=(str(folder), str(model_path), paths, mode, send, stop, threads),
        name="sheetaudio-indexer",
        daemon=True,
    )
    child.start()
    send.close()  # the parent keeps only the receiving end: EOF when the child is gone
    current: str | None = None
    cancel_sent = 0.0
    try:
        while True:
            if cancel is not None and cancel.cancelled:
                if not cancel_sent:
                    stop.set()
                    cancel_sent = time.monotonic()
                elif time.monotonic() - cancel_sent > CANCEL_GRACE_S:
                    child.kill()  # stuck in native code: the library is safe against kills
                    return ("cancelled",)
            if receive.poll(POLL_S):
                try:
                    message = receive.recv()
                except (EOFError, OSError):
                    break
                if message[0] == "progress":
                    yield Progress(*message[1:5])
                elif message[0] == "file":
                    current = message[1]
                else:
                    return tuple(message)
            elif not child.is_alive():
                break
        child.join(5)
        code = child.exitcode
        how = f"signal {signal.Signals(-code).name}" if code and code < 0 else f"exit code {code}"
        return ("crashed", current, how)
    finally:
        receive.close()
        if child.is_alive():
            child.kill()
        child.join(5)
