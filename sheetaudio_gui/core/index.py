"""The library: a folder of SQLite metadata and memory-mapped embedding matrices.

```
FOLDER/library.sqlite                    documents, pages, systems, row ranges, folders (WAL mode)
FOLDER/embeddings/<matrix>.<gen>.bin     append-only matrices of fixed-width rows
```
Matrices: `score_passages` (one 64-d row per system), `score_snippets` (32-d per sheet window),
`score_window_x` (window centre, page units), `score_reading` (64-d per window of consecutive
snippets read on across system ends) with `score_reading_at` (where its centre lies: system
ordinal + fraction), `score_rescore` (64-d per window of several lengths, read only to re-score
the best scores for a short audio query: `encode.rescore_windows`), `audio_passages` (64-d per
sliding passage), `audio_spans` (start_s, end_s per passage), `audio_snippets` (32-d per 1 s
snippet). Embeddings are stored as bfloat16 (16-bit floats with float32's range: half the bytes
of float32, like float16, but multiplied natively by current CPUs: on the development machine a
bfloat16 matmul over 3 M rows took a quarter of the time of float16), positions as float32.

Crash safety: a document is written in one SQLite transaction that holds the write lock
(`BEGIN IMMEDIATE`). Inside it, the document's rows are written to each matrix at the matrix's
committed end and fsynced, then the row ranges and the new ends are recorded, then the transaction
commits. A kill before the commit leaves bytes past the committed end, which nothing references and
the next writer overwrites; a kill after it leaves a complete document. Removed documents leave
dead rows; when more than half of a matrix is dead it is rewritten into a new generation file
under the same lock and the old file is deleted after the commit.

Threads and processes: one `Library` per thread (each has its own SQLite connection); writers
(threads or processes, e.g. the GUI and the CLI) wait for each other through SQLite's busy timeout
and get `LibraryBusy` if it runs out. Readers take one SQLite read snapshot (WAL) per search and
read only rows the snapshot's metadata points to: committed rows of a matrix file are never
rewritten, so an append in progress cannot tear them. A compaction replaces a file; a reader whose
snapshot still names the old, just deleted file waits a moment and retries ("library busy").

Damage: every document's rows carry a CRC-32 per matrix (`ranges.crc`), verified once per mapped
file; a short, missing or altered matrix file or an unreadable database raises `IndexCorrupt`
with the advice to run `sheetaudio library repair`. `documents.json` (written atomically, under the
write lock, whenever the set of documents changes) keeps the list of documents for a repair when
the database itself is lost. Read-only folders and full disks raise `LibraryNotWritable` naming
the folder; the failed transaction is rolled back, so the library stays as it was.
"""

from __future__ import annotations

import concurrent.futures
import errno
import hashlib
import json
import logging
import os
import queue
import sqlite3
import threading
import time
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt
import torch

from sheetaudio_gui.config import (
    ADAPT_WINDOWS,
    APP_NAME,
    AUDIO_SNIPPET_HOP_FRAMES,
    CENTRING_PRIOR_ROWS,
    FRAMES_PER_SECOND,
    HASH_BLOCK_BYTES,
    HUB_NEIGHBOURS,
    HUB_REFERENCE_ROWS,
    HUB_WEIGHT,
    LIBRARY_ADAPTED_MODEL_FILE,
    LIBRARY_COMPACT_DEAD_FRACTION,
    LIBRARY_DAMAGED_SUFFIX,
    LIBRARY_DB_FILE,
    LIBRARY_DOCUMENT_LIST_FILE,
    LIBRARY_EMBEDDINGS_DIR,
    LIBRARY_HUB_CACHE_FILE,
    LIBRARY_READ_RETRIES,
    LIBRARY_READ_RETRY_WAIT_S,
    LIBRARY_SCHEMA_VERSION,
    MODEL_ENV,
    MODEL_FILE,
    MODELS_DIR,
    SHEET_CUT_VERSION,
    SQLITE_BUSY_TIMEOUT_S,
)
from sheetaudio_gui.core.centring import (
    Centre,
    centre_of,
    centre_on,
    hub_penalties,
    hub_weight,
    reference_sample,
)
from sheetaudio_gui.core.encode import (
    AudioEncoding,
    ReadingWindows,
    SystemCut,
    SystemEncoding,
    cut_systems,
    embed_cuts,
    encode_audio,
    reading_windows,
    rescore_windows,
)
from sheetaudio_gui.core.errors import Cancelled, FileProblem, IndexCorrupt, SheetAudioError
from sheetaudio_gui.core.jobs import CancelToken, Job, Progress
from sheetaudio_gui.core.models import LoadedModel, load_model, save_model
from sheetaudio_gui.core.score import SCORE_SUFFIXES, Box

log = logging.getLogger(__name__)

T = TypeVar("T")
Floats = npt.NDArray[np.float32]
Kind = Literal["score", "audio"]
State = Literal["indexed", "pending", "failed"]


# --- default places ------------------------------------------------------------------------------


class LibraryNotWritable(SheetAudioError):
    """The library folder is read-only or its disk is full; nothing was changed."""


class LibraryBusy(SheetAudioError):
    """Another program held the library's write lock for longer than the busy timeout."""


_NOT_WRITABLE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


def _not_writable(folder: Path, full: bool, detail: object) -> LibraryNotWritable:
    if full:
        return LibraryNotWritable(
            f"{folder}: the disk holding the library is full ({detail}); free some space and"
            " try again (nothing was changed)"
        )
    return LibraryNotWritable(
        f"{folder}: the library folder is read-only ({detail}); make it writable or choose"
        " another library folder (nothing was changed)"
    )


def _sqlite_error(folder: Path, error: sqlite3.Error) -> SheetAudioError | None:
    """The error for people behind an SQLite error (None: a programming error, re-raise it)."""
    name = getattr(error, "sqlite_errorname", "")
    if name in ("SQLITE_BUSY", "SQLITE_LOCKED") or "locked" in str(error):
        return LibraryBusy(
            f"{folder}: another program (the sheetaudio window or command line) is writing to"
            f" the library and did not finish within {SQLITE_BUSY_TIMEOUT_S:g} s; try again"
        )
    if name == "SQLITE_FULL" or "disk is full" in str(error):
        return _not_writable(folder, True, error)
    if name.startswith("SQLITE_READONLY") or name == "SQLITE_CANTOPEN":
        return _not_writable(folder, False, error)
    if name in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or name.startswith("SQLITE_IOERR"):
        return IndexCorrupt(
            f"{folder / LIBRARY_DB_FILE}: the library database is damaged ({error}); run "
            f"`sheetaudio library repair --library {folder}` (the list of documents is kept)"
        )
    return None


def _enable_wal(db: sqlite3.Connection) -> None:
    """Switch to write-ahead logging, waiting for other programs up to the busy timeout.

    The switch needs the database to itself, and SQLite can refuse it at once ("database is
    locked") instead of waiting on the connection's busy timeout: seen when two indexers and a
    searcher open a new library together. So it is retried here.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _write_rows(path: Path, offset: int, data: bytes) -> None:
    """Write `data` at byte `offset` of `path` (created if missing) and fsync it."""
    with open(path, "ab"):
        pass
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _write_atomically(path: Path, text: str) -> None:
    """Replace `path` by `text` so that a reader (or a crash) sees the old or the new file."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def default_library_dir() -> Path:
    """platformdirs' user data folder for sheetaudio, / "library"."""
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME)) / "library"


def default_model_path() -> Path:
    """$SHEETAUDIO_MODEL if set, else the shipped weights in `models/`."""
    env = os.environ.get(MODEL_ENV)
    return Path(env) if env else MODELS_DIR / MODEL_FILE


def _audio_suffixes() -> frozenset[str]:
    import soundfile

    names = {f".{k.lower()}" for k in soundfile.available_formats()}
    return frozenset(names | {".aif", ".oga", ".opus", ".wave"})


AUDIO_SUFFIXES = _audio_suffixes()


def file_kind(path: Path) -> Kind | None:
    """Kind of document by file suffix: "score", "audio", or None for anything else."""
    suffix = path.suffix.lower()
    if suffix in SCORE_SUFFIXES:
        return "score"
    if suffix in AUDIO_SUFFIXES:
        return "audio"
    return None


def hash_file(path: Path) -> str:
    """SHA-256 of the file's content (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()


# --- bfloat16 storage ----------------------------------------------------------------------------


def to_bf16_bits(x: npt.ArrayLike) -> npt.NDArray[np.uint16]:
    """float array -> the same shape of bfloat16 bit patterns (round to nearest even)."""
    t = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32)).to(torch.bfloat16)
    out: npt.NDArray[np.uint16] = t.view(torch.int16).numpy().view(np.uint16)
    return out


ROW_TABLE_BATCH = 10_000  # system rows read from SQLite at once when the row tables are built


def _live(rows: int, ranges: dict[int, tuple[int, int]]) -> npt.NDArray[np.bool_]:
    """Which of a matrix's rows belong to a searchable document."""
    live = np.zeros(rows, bool)
    for start, count in ranges.values():
        live[start : start + count] = True
    return live


def _with_hub_penalties(score: ScoreRows, audio: AudioRows) -> tuple[ScoreRows, AudioRows]:
    """Both modalities' rows with their hub penalties (`core.centring`): score rows measured
    against a sample of the audio rows, audio rows against a sample of the score systems."""
    score_live, audio_live = score.doc >= 0, audio.doc >= 0
    weight = hub_weight(int(score_live.sum()), int(audio_live.sum()))
    if weight == 0.0:  # a library without one of the modalities: nothing to measure against
        return score, audio
    audio_ref = reference_sample(audio.passages, audio_live, audio.centre)
    score_ref = reference_sample(score.passages, score_live, score.centre)
    reading_live = _live(len(score.reading), score.reading_ranges)
    score = replace(
        score,
        centre=score.centre.with_penalty(
            hub_penalties(score.passages, score_live, score.centre, audio_ref, weight)
        ),
        reading_centre=score.reading_centre.with_penalty(
            hub_penalties(score.reading, reading_live, score.reading_centre, audio_ref, weight)
        ),
        hub_reference=audio_ref,
        hub_weight=weight,
    )
    audio = replace(
        audio,
        centre=audio.centre.with_penalty(
            hub_penalties(audio.passages, audio_live, audio.centre, score_ref, weight)
        ),
    )
    return score, audio


HUB_CACHE_KEYS = ("systems", "reading", "audio", "reference", "weight", "rescore")
RESCORE_PENALTY_CHUNK_ROWS = 1 << 15  # re-scoring windows read from the file at once: 4 MiB


def _hub_arrays(score: ScoreRows, audio: AudioRows) -> dict[str, npt.NDArray[Any]]:
    """What `_penalised_by` needs to give plain rows the penalties of `_with_hub_penalties`."""
    none = np.zeros(0, np.float32)
    return {
        "systems": none if score.centre.penalty is None else score.centre.penalty,
        "reading": none if score.reading_centre.penalty is None else score.reading_centre.penalty,
        "audio": none if audio.centre.penalty is None else audio.centre.penalty,
        "reference": score.hub_reference,
        "weight": np.array(score.hub_weight, np.float64),
        "rescore": none if score.rescore_penalty is None else score.rescore_penalty,
    }


def _penalised_by(
    score: ScoreRows, audio: AudioRows, arrays: dict[str, npt.NDArray[Any]]
) -> tuple[ScoreRows, AudioRows]:
    """Plain rows with penalties read back (`_hub_arrays`); none where none were measured."""
    weight = float(arrays["weight"])
    if weight == 0.0:
        return score, audio
    lengths = (len(score.passages), len(score.reading), len(audio.passages))
    if tuple(len(arrays[k]) for k in ("systems", "reading", "audio")) != lengths:
        raise ValueError("hub penalties of other matrices")
    score = replace(
        score,
        centre=score.centre.with_penalty(np.asarray(arrays["systems"], np.float32)),
        reading_centre=score.reading_centre.with_penalty(np.asarray(arrays["reading"], np.float32)),
        hub_reference=np.asarray(arrays["reference"], np.float32),
        hub_weight=weight,
        rescore_penalty=np.asarray(arrays["rescore"], np.float32)
        if len(arrays["rescore"])
        else None,
    )
    audio = replace(
        audio, centre=audio.centre.with_penalty(np.asarray(arrays["audio"], np.float32))
    )
    return score, audio


def bf16_tensor(bits: npt.NDArray[np.uint16]) -> torch.Tensor:
    """bfloat16 bit patterns (numpy, may be a memmap) -> a bfloat16 tensor sharing the memory."""
    with warnings.catch_warnings():  # read-only memory maps: the tensor is never written
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(bits.view(np.int16)).view(torch.bfloat16)


def from_bf16_bits(bits: npt.NDArray[np.uint16]) -> Floats:
    """bfloat16 bits -> float32 (exact: the bits shifted into the high half). Plain numpy: for a
    few thousand rows torch's thread pool costs more than the arithmetic on a busy machine."""
    out: Floats = (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
    return out


@dataclass(frozen=True)
class MatrixSpec:
    columns: int
    dtype: type[np.generic]  # storage dtype: uint16 = bfloat16 bits


MATRICES: dict[str, MatrixSpec] = {
    "score_passages": MatrixSpec(64, np.uint16),
    "score_snippets": MatrixSpec(32, np.uint16),
    "score_window_x": MatrixSpec(1, np.float32),
    "score_reading": MatrixSpec(64, np.uint16),  # windows read on across system ends
    "score_reading_at": MatrixSpec(1, np.float32),  # their centres: system ordinal + fraction
    "score_rescore": MatrixSpec(64, np.uint16),  # windows of several lengths (re-scoring only)
    "audio_passages": MatrixSpec(64, np.uint16),
    "audio_spans": MatrixSpec(2, np.float32),
    "audio_snippets": MatrixSpec(32, np.uint16),
}
SCORE_MATRICES = (
    "score_passages",
    "score_snippets",
    "score_window_x",
    "score_reading",
    "score_reading_at",
    "score_rescore",
)
AUDIO_MATRICES = ("audio_passages", "audio_spans", "audio_snippets")


def _row_bytes(name: str) -> int:
    spec = MATRICES[name]
    return spec.columns * np.dtype(spec.dtype).itemsize


# --- public records ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Document:
    id: int
    path: Path
    kind: Kind
    state: State  # "pending": found but not (yet, or not with the current model) embedded
    error: str | None
    pages: int | None
    systems: int | None
    duration_s: float | None


@dataclass
class AddReport:
    added: list[Path] = field(default_factory=list)  # newly indexed or re-embedded
    skipped: list[Path] = field(default_factory=list)  # unchanged
    removed: list[Path] = field(default_factory=list)  # deleted from disk (rescan)
    failed: list[tuple[Path, str]] = field(default_factory=list)  # path, reason for people


@dataclass
class RepairReport:
    database_rebuilt: bool = False  # the SQLite file was unreadable and made anew
    moved_aside: list[Path] = field(default_factory=list)  # damaged files kept for inspection
    damaged: list[Path] = field(default_factory=list)  # documents whose embeddings were bad
    indexing: AddReport = field(default_factory=AddReport)  # the re-indexing of those
    problems_after: list[str] = field(default_factory=list)  # `check()` after the repair


@dataclass(frozen=True)
class ScoreRows:
    """The searchable system passages of the current model: row-aligned arrays."""

    passages: torch.Tensor  # (rows, 64) bfloat16 over the memory map (dead rows included)
    doc: npt.NDArray[np.int64]  # (rows,) document id, -1 for rows not to be searched
    page: npt.NDArray[np.int32]  # (rows,)
    system: npt.NDArray[np.int32]  # (rows,) index on the page
    box: Floats  # (rows, 4) page units
    ranges: dict[int, tuple[int, int]]  # document id -> (first row, row count)
    reading: torch.Tensor  # (windows, 64) bfloat16: `encode.reading_windows` of every score
    reading_at: Floats  # (windows,) system ordinal + fraction of each window's centre
    reading_ranges: dict[int, tuple[int, int]]  # document id -> (first window row, count)
    centre: Centre  # of `passages` (systems), over the live rows (`core.centring`)
    reading_centre: Centre  # of `reading`
    # the audio rows' reference sample and the weight the rows' hub penalties were measured
    # with: windows cut at query time (`encode.rescore_windows`) are penalised the same way
    hub_reference: Floats = field(default_factory=lambda: np.zeros((0, 64), np.float32))
    hub_weight: float = 0.0
    # the stored re-scoring windows (`encode.rescore_windows`, read a score at a time): each
    # document's rows, and every row's hub penalty (None: not measured)
    rescore_ranges: dict[int, tuple[int, int]] = field(default_factory=dict)
    rescore_penalty: Floats | None = None
    # document id -> hub penalties of windows cut at query time (scores indexed before windows
    # were stored); rows of a new library state start empty
    rescore_penalties: dict[int, Floats] = field(default_factory=dict)


@dataclass(frozen=True)
class AudioRows:
    passages: torch.Tensor  # (rows, 64) bfloat16
    doc: npt.NDArray[np.int64]  # (rows,) document id, -1 for rows not to be searched
    spans: Floats  # (rows, 2) start_s, end_s (memory map)
    ranges: dict[int, tuple[int, int]]  # document id -> (first row, row count)
    centre: Centre  # of `passages`, over the live rows (`core.centring`)


SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents(
    id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL,
    error TEXT, size INTEGER, mtime_ns INTEGER, sha256 TEXT, model_id TEXT,
    pages INTEGER, systems INTEGER, duration_s REAL, indexed_at REAL);
CREATE TABLE IF NOT EXISTS pages(
    doc INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE, page INTEGER NOT NULL,
    width REAL, height REAL, units TEXT, PRIMARY KEY(doc, page));
CREATE TABLE IF NOT EXISTS systems(
    doc INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE, ordinal INTEGER NOT NULL,
    page INTEGER NOT NULL, idx INTEGER NOT NULL, x0 REAL, y0 REAL, x1 REAL, y1 REAL,
    snippet_offset INTEGER NOT NULL, snippet_count INTEGER NOT NULL, PRIMARY KEY(doc, ordinal));
CREATE TABLE IF NOT EXISTS ranges(
    doc INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE, matrix TEXT NOT NULL,
    start INTEGER NOT NULL, count INTEGER NOT NULL, crc INTEGER, PRIMARY KEY(doc, matrix));
CREATE TABLE IF NOT EXISTS matrices(
    name TEXT PRIMARY KEY, file TEXT NOT NULL, rows INTEGER NOT NULL, live INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS roots(path TEXT PRIMARY KEY);
"""


# --- the library ---------------------------------------------------------------------------------


class Library:
    """An index of score and audio documents; one object per thread; a context manager."""

    def __init__(self, folder: Path | None = None, model: LoadedModel | None = None) -> None:
        self.folder = Path(folder) if folder is not None else default_library_dir()
        self._base_model = model  # as given; None: the default model, loaded when needed
        self._model: LoadedModel | None = None  # the base, or the library's adaptation of it
        self._adapted_stamp: tuple[int, int] | None = None  # the adapted file's mtime, size
        self.db_path = self.folder / LIBRARY_DB_FILE
        self._local_version = 0
        self._seen: tuple[int, int] | None = None
        self._score_rows: ScoreRows | None = None
        self._audio_rows: AudioRows | None = None
        self._maps: dict[str, tuple[str, int, np.memmap[Any, Any] | None]] = {}
        self._verified: dict[str, tuple[str, set[tuple[int, int]]]] = {}  # name -> file, ranges
        self._snapshot_paths: dict[int, Path] = {}  # ids of the cached rows -> paths
        self._list_changed = False  # the set of documents changed in this write transaction
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / LIBRARY_EMBEDDINGS_DIR).mkdir(exist_ok=True)
        except OSError as error:
            raise _not_writable(
                self.folder, error.errno in _FULL_ERRNOS, error.strerror or error
            ) from error
        self._db = sqlite3.connect(
            self.db_path,
            timeout=SQLITE_BUSY_TIMEOUT_S,
            isolation_level=None,  # explicit BEGIN/COMMIT only
            check_same_thread=False,  # created in one thread, used in another is fine
        )
        try:
            try:
                _enable_wal(self._db)
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute("PRAGMA foreign_keys=ON")
            except sqlite3.Error as error:
                raise self._person_error(error) from error
            self._setup()
        except BaseException:
            self._db.close()
            raise

    def _person_error(self, error: sqlite3.Error) -> SheetAudioError:
        """An SQLite error as an error for people (unknown ones: the database is damaged)."""
        return _sqlite_error(self.folder, error) or IndexCorrupt(
            f"{self.db_path}: the library database cannot be read ({error}); run "
            f"`sheetaudio library repair --library {self.folder}` (the list of documents is kept)"
        )

    # --- context manager and model ---
    def __enter__(self) -> Library:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._score_rows = self._audio_rows = None
        self._maps.clear()
        self._db.close()

    @property
    def model(self) -> LoadedModel:
        """The model embeddings are made with: the library's adaptation of the base model
        (`core.adapt`, the file LIBRARY_ADAPTED_MODEL_FILE) when it has one made from this
        base, else the base (given, or loaded from `default_model_path()`)."""
        if self._model is None or self._adaptation_changed():
            self._model = self._adapted_or_base()
        return self._model

    @model.setter
    def model(self, value: LoadedModel) -> None:
        """Set the base model (the library's adaptation of it, if any, is used)."""
        self._base_model = value
        self._model = None
        self._score_rows = self._audio_rows = None

    @property
    def base_model(self) -> LoadedModel:
        if self._base_model is None:
            self._base_model = load_model(default_model_path())
        return self._base_model

    @property
    def adapted_model_path(self) -> Path:
        return self.folder / LIBRARY_ADAPTED_MODEL_FILE

    def _adapted_or_base(self) -> LoadedModel:
        base = self.base_model
        path = self.adapted_model_path
        try:
            stat = path.stat()
        except OSError:
            self._adapted_stamp = None
            return base
        self._adapted_stamp = (stat.st_mtime_ns, stat.st_size)
        try:
            adapted = load_model(path)
        except SheetAudioError as error:
            log.warning("ignoring the library's adapted model: %s", error)
            return base
        if adapted.info.get("adapted_from") != base.model_id:
            log.info("the library's adapted model was made from another model; not used")
            return base
        return adapted

    def _adaptation_changed(self) -> bool:
        """Whether the adapted model file appeared, changed or went since the model was read
        (another program adapted the library): the model is then read again."""
        if self._model is None:
            return False
        try:
            stat = self.adapted_model_path.stat()
            stamp: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            stamp = None
        if stamp == self._adapted_stamp:
            return False
        self._model = None
        self._score_rows = self._audio_rows = None  # rows of the model it replaces
        return True

    def made_by(self, kind: str) -> str:
        """What makes a document's embeddings: the model's weights, and for scores how systems
        are found and strips cut (`SHEET_CUT_VERSION`). Stored per document; documents made
        otherwise are embedded again (a new way of cutting scores leaves recordings as they are)."""
        if kind == "score":
            return f"{self.model.model_id}.cut{SHEET_CUT_VERSION}"
        return self.model.model_id

    def _made_now(self) -> tuple[str, str]:
        """The ids of current score and audio documents, for `d.model_id IN (?, ?)`."""
        return self.made_by("score"), self.made_by("audio")

    # --- schema and transactions ---
    def _setup(self) -> None:
        with self._write():
            for statement in SCHEMA.strip().split(";"):
                if statement.strip():
                    self._db.execute(statement)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                self._db.execute(
                    "INSERT INTO meta VALUES('schema', ?)", (str(LIBRARY_SCHEMA_VERSION),)
                )
            elif int(row[0]) != LIBRARY_SCHEMA_VERSION:
                raise IndexCorrupt(
                    f"{self.db_path}: library format {row[0]}, this version reads "
                    f"{LIBRARY_SCHEMA_VERSION}; make a new library (another --library folder)"
                )
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(ranges)").fetchall()}
            if "crc" not in columns:  # libraries made before checksums: their rows go unchecked
                self._db.execute("ALTER TABLE ranges ADD COLUMN crc INTEGER")
            self._db.execute("INSERT OR IGNORE INTO meta VALUES('documents_version', '0')")
            unknown = sorted(set(self._matrix_rows()) - set(MATRICES))
            if unknown:  # written by a newer version: this one could not keep those rows right
                raise SheetAudioError(
                    f"{self.folder}: this library was written by a newer sheetaudio (it holds "
                    f"{', '.join(unknown)}); open it with that version, or make a new library"
                )
            for name in MATRICES:
                self._db.execute(
                    "INSERT OR IGNORE INTO matrices VALUES(?, ?, 0, 0)", (name, f"{name}.0.bin")
                )
            self._collect_garbage()
            if self._document_list_version() != self._documents_version():
                self._list_changed = True  # a crash before the last list was written: write it

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction holding SQLite's write lock (other writers wait).

        A read-only folder, a full disk or a lock held too long roll the transaction back and
        raise `LibraryNotWritable` / `LibraryBusy`; the library stays as it was.
        """
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            raise self._person_error(error) from error
        self._list_changed = False
        try:
            yield
            if self._list_changed:
                self._db.execute(
                    "UPDATE meta SET value = CAST(value AS INTEGER) + 1 "
                    "WHERE key = 'documents_version'"
                )
                self._save_document_list()
            self._db.execute("COMMIT")
        except BaseException as error:
            self._rollback()
            if isinstance(error, OSError) and error.errno in _NOT_WRITABLE_ERRNOS:
                raise _not_writable(
                    self.folder, error.errno in _FULL_ERRNOS, error.strerror or error
                ) from error
            if isinstance(error, sqlite3.Error):
                person = _sqlite_error(self.folder, error)
                if person is not None:
                    raise person from error
            raise
        finally:
            self._list_changed = False
        self._local_version += 1

    def _rollback(self) -> None:
        if not self._db.in_transaction:
            return
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error as error:  # SQLite rolls back by itself when it cannot write
            log.warning("%s: rollback failed (%s)", self.db_path, error)

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """One read snapshot (WAL): every query inside sees the same committed state."""
        if self._db.in_transaction:  # already inside a snapshot or a write
            yield
            return
        try:
            self._db.execute("BEGIN")
        except sqlite3.Error as error:
            raise self._person_error(error) from error
        try:
            yield
        finally:
            if self._db.in_transaction:
                self._db.execute("COMMIT")  # read only: just ends the snapshot

    def _read(self, read: Callable[[], T]) -> T:
        """`read()` in a read snapshot; retried when a matrix file vanished under the snapshot
        (a writer compacted it meanwhile); database errors become errors for people."""
        missing: FileNotFoundError | None = None
        for _ in range(LIBRARY_READ_RETRIES):
            nested = self._db.in_transaction
            try:
                with self._reading():
                    return read()
            except FileNotFoundError as error:
                if nested:
                    raise
                missing = error
                self._maps.clear()
                current = {f for f, _ in self._matrix_rows().values()}  # a fresh look
                if Path(str(error.filename)).name in current:
                    break  # not replaced: lost
                log.info("library busy (%s was replaced), retrying", error.filename)
                time.sleep(LIBRARY_READ_RETRY_WAIT_S)
            except sqlite3.Error as error:
                raise self._person_error(error) from error
        assert missing is not None
        raise IndexCorrupt(
            f"{missing.filename}: an embeddings file the library needs is missing; run "
            f"`sheetaudio library repair --library {self.folder}`"
        )

    # --- the list of documents, kept beside the database for repairs ---
    def _documents_version(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'documents_version'").fetchone()
        return int(row[0]) if row is not None else 0

    def _document_list_version(self) -> int | None:
        listed = read_document_list(self.folder)
        return int(listed.get("version", -1)) if listed is not None else None

    def _save_document_list(self) -> None:
        """Under the write lock: write the documents (path, kind) and folders of this transaction.

        Only when the set of documents changes (once per `add` of a batch, per removal), so it
        costs one small file write per job, not per document. A failure is logged, not raised:
        the database is the truth, the list only a spare copy for `repair`.
        """
        documents = [
            {"path": p, "kind": k}
            for p, k in self._db.execute("SELECT path, kind FROM documents ORDER BY path")
        ]
        roots = [r for (r,) in self._db.execute("SELECT path FROM roots ORDER BY path")]
        text = json.dumps(
            {"version": self._documents_version(), "documents": documents, "roots": roots},
            indent=0,
        )
        try:
            _write_atomically(self.folder / LIBRARY_DOCUMENT_LIST_FILE, text)
        except OSError as error:
            log.warning("%s: cannot write the list of documents (%s)", self.folder, error)

    def _collect_garbage(self) -> None:
        """Under the write lock: delete matrix files of old generations, cut uncommitted tails."""
        current = dict(self._db.execute("SELECT file, rows FROM matrices").fetchall())
        folder = self.folder / LIBRARY_EMBEDDINGS_DIR
        for entry in folder.iterdir():
            if entry.name not in current:
                try:
                    entry.unlink()
                    log.info("removed stale matrix file %s", entry)
                except OSError as error:  # e.g. still mapped on Windows: next time
                    log.info("cannot remove %s yet (%s)", entry, error)
        for entry in self.folder.glob(f"{LIBRARY_DOCUMENT_LIST_FILE}.tmp-*"):
            entry.unlink(missing_ok=True)  # a list write killed half-way (writes hold the lock)
        for name, (file, rows) in self._matrix_rows().items():
            path = folder / file
            size = rows * _row_bytes(name)
            if path.exists() and path.stat().st_size > size:
                with open(path, "r+b") as f:
                    f.truncate(size)
                log.info("cut uncommitted rows from %s", path)

    def _matrix_rows(self) -> dict[str, tuple[str, int]]:
        rows = self._db.execute("SELECT name, file, rows FROM matrices").fetchall()
        return {str(n): (str(f), int(r)) for n, f, r in rows}

    # --- documents ---
    def documents(self, kind: str | None = None) -> list[Document]:
        """Every document (of `kind` if given), ordered by path."""
        query = (
            "SELECT id, path, kind, state, error, pages, systems, duration_s, model_id "
            "FROM documents"
        )
        args: tuple[Any, ...] = ()
        if kind is not None:
            query += " WHERE kind = ?"
            args = (kind,)
        out = []
        known = self._model is not None or self._base_model is not None  # else: not loaded
        for id_, path, k, state, error, pages, systems, duration, mid in self._db.execute(
            query + " ORDER BY path", args
        ):
            if state == "indexed" and known and mid != self.made_by(k):
                state = "pending"  # embedded by another model: re-embedded at the next add
            out.append(Document(id_, Path(path), k, state, error, pages, systems, duration))
        return out

    def document(self, path: Path) -> Document | None:
        key = str(_resolve(path))
        return next((d for d in self.documents() if str(d.path) == key), None)

    def _doc_id(self, path: Path, kind: Kind) -> int:
        row = self._db.execute(
            "SELECT id, kind, state, model_id FROM documents WHERE path = ?", (str(_resolve(path)),)
        ).fetchone()
        if row is None:
            raise FileProblem(path, "is not in the library; add it with `sheetaudio library add`")
        if row[1] != kind:
            raise FileProblem(path, f"is a {row[1]} document, not {kind}")
        if row[2] != "indexed":
            raise FileProblem(path, f"is {row[2]} in the library; run `sheetaudio library rescan`")
        if row[3] != self.made_by(kind):
            raise FileProblem(
                path, "was indexed with another model; run `sheetaudio library rescan` to re-embed"
            )
        return int(row[0])

    def remove(self, path: Path) -> bool:
        """Forget a document (its rows become dead); True if it was in the library."""
        with self._write():
            removed = self._delete(str(_resolve(path)))
        if removed:
            self.compact()
        return removed

    def _delete(self, key: str, replacing: bool = False) -> bool:
        """In a write transaction: drop a document (its rows become dead); True if it was there.
        `replacing`: a new row for the same path follows, the list of documents stays."""
        row = self._db.execute("SELECT id FROM documents WHERE path = ?", (key,)).fetchone()
        if row is None:
            return False
        for matrix, count in self._db.execute(
            "SELECT matrix, count FROM ranges WHERE doc = ?", (row[0],)
        ).fetchall():
            self._db.execute("UPDATE matrices SET live = live - ? WHERE name = ?", (count, matrix))
        self._db.execute("DELETE FROM documents WHERE id = ?", (row[0],))
        self._list_changed |= not replacing
        return True

    # --- adding ---
    def add(self, paths: Sequence[Path], cancel: CancelToken | None = None) -> Job[AddReport]:
        """Index files and folders (recursively); unchanged files are skipped, changed or
        differently-embedded ones re-embedded. Yields Progress per document; cancellable between
        documents (raises Cancelled; what was committed stays)."""
        report = AddReport()
        files: list[Path] = []
        roots: list[str] = []
        for p in paths:
            path = _resolve(Path(p))
            if path.is_dir():
                roots.append(str(path))
                files.extend(_walk(path))
            elif path.is_file() and file_kind(path) is not None:
                files.append(path)
            elif not path.exists():
                report.failed.append((path, "not found; check the path"))
            else:
                report.failed.append(
                    (path, "not a score (PDF, PNG, JPEG, TIFF) or audio file the library reads")
                )
        with self._write():
            for root in roots:
                cursor = self._db.execute("INSERT OR IGNORE INTO roots VALUES(?)", (root,))
                self._list_changed |= cursor.rowcount > 0
        yield from self._index(list(dict.fromkeys(files)), report, cancel)
        return report

    def adapt(self, cancel: CancelToken | None = None, seed: int = 0) -> Job[AddReport]:
        """Adapt the base model to this library's material (`core.adapt`: batch-norm statistics
        of a sample of its score windows and audio snippets), keep it in the library folder,
        and re-embed every document with it. Cancelled or killed while re-embedding, the
        library resumes at the next add or rescan (documents of the old model are pending)."""
        from sheetaudio_gui.core.adapt import adapt_batch_norm, require_material, sample_windows

        base = self.base_model
        documents = [d for d in self.documents() if d.state != "failed"]
        scores = [d.path for d in documents if d.kind == "score"]
        recordings = [(d.path, d.duration_s or 0.0) for d in documents if d.kind == "audio"]
        require_material(*self.adaptation_material())  # before any file is read
        sample = yield from sample_windows(scores, recordings, cancel, seed)
        adapted = adapt_batch_norm(base.model, sample, seed)
        info = {
            "adapted_from": base.model_id,
            "score_windows": len(sample.sheet),
            "audio_snippets": len(sample.audio),
            "scores": sample.scores,
            "recordings": sample.recordings,
        }
        save_model(adapted, self.adapted_model_path, info)
        self._model = None  # read back: the file is what every other reader uses
        self._score_rows = self._audio_rows = None
        report = yield from self._reembed_all(cancel)
        return report

    def adaptation_material(self) -> tuple[int, int]:
        """Score windows and audio snippets the library holds, from the database alone."""

        def material() -> tuple[int, int]:
            windows = self._db.execute("SELECT COALESCE(SUM(snippet_count), 0) FROM systems")
            seconds = self._db.execute(
                "SELECT COALESCE(SUM(duration_s), 0) FROM documents "
                "WHERE kind = 'audio' AND state != 'failed'"
            )
            snippets = float(seconds.fetchone()[0]) * FRAMES_PER_SECOND / AUDIO_SNIPPET_HOP_FRAMES
            return int(windows.fetchone()[0]), int(snippets)

        return self._read(material)

    def adaptation_advised(self) -> bool:
        """Whether to suggest adapting the model: the library fills a whole adaptation sample of
        each kind and is not adapted yet. Adapting helps most where the engraving or the piano
        sound is unlike the training material and costs nothing measurable where it is alike
        (model card), but it re-embeds every document, so it is offered, not done."""
        if self.adapted_model_path.is_file():
            return False
        return min(self.adaptation_material()) >= ADAPT_WINDOWS

    def unadapt(self, cancel: CancelToken | None = None) -> Job[AddReport]:
        """Forget the library's adapted model and re-embed every document with the base."""
        self.adapted_model_path.unlink(missing_ok=True)
        self._model = None
        self._score_rows = self._audio_rows = None
        report = yield from self._reembed_all(cancel)
        return report

    def _reembed_all(self, cancel: CancelToken | None) -> Job[AddReport]:
        report = AddReport()
        files = [d.path for d in self.documents() if d.path.is_file()]
        yield from self._index(files, report, cancel)
        return report

    def rescan(self, cancel: CancelToken | None = None) -> Job[AddReport]:
        """Drop documents whose files are gone, index new files in the added folders, re-embed
        changed files and documents of another model."""
        report = AddReport()
        with self._write():
            for (key,) in self._db.execute("SELECT path FROM documents").fetchall():
                if not Path(key).is_file():
                    self._delete(key)
                    report.removed.append(Path(key))
        files = [Path(p) for (p,) in self._db.execute("SELECT path FROM documents").fetchall()]
        for (root,) in self._db.execute("SELECT path FROM roots").fetchall():
            if Path(root).is_dir():
                files.extend(_walk(Path(root)))
        yield from self._index(list(dict.fromkeys(files)), report, cancel)
        if report.removed:
            self.compact()
        return report

    def _index(
        self, files: list[Path], report: AddReport, cancel: CancelToken | None
    ) -> Iterator[Progress]:
        total = len(files)
        yield Progress(0, total, "checking files")
        todo: list[tuple[Path, Kind, os.stat_result]] = []
        for path in files:
            kind = file_kind(path)
            assert kind is not None
            try:
                stat = path.stat()
            except OSError as error:
                report.failed.append((path, f"cannot be read ({error.strerror})"))
                continue
            if self._unchanged(path, stat):
                report.skipped.append(path)
            else:
                todo.append((path, kind, stat))
        with self._write():  # known but not yet embedded: a killed run resumes from these
            for path, kind, stat in todo:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO documents(path, kind, state, size, mtime_ns) "
                    "VALUES(?, ?, 'pending', ?, ?)",
                    (str(path), kind, stat.st_size, stat.st_mtime_ns),
                )
                self._list_changed |= cursor.rowcount > 0
        done = total - len(todo)
        yield Progress(done, total, f"{len(todo)} file(s) to index")
        model = self.model
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="decode") as pool:
            # the helper decodes (render + detect, or spectrogram) while the caller embeds:
            # this file's pages as they come, then the next file while this one is finished
            def decode(k: int) -> tuple[_Decoding, concurrent.futures.Future[None]]:
                decoding = _Decoding(todo[k][0], todo[k][1])
                return decoding, pool.submit(_prepare, decoding)

            busy = [decode(0)] if todo else []  # this file's decoding and the next one's
            try:
                for i, (path, _, stat) in enumerate(todo):
                    if cancel is not None:
                        cancel.raise_if_cancelled()
                    if i + 1 < len(todo):
                        busy.append(decode(i + 1))
                    decoding, decoded = busy[0]
                    yield from self._index_one(
                        decoding, decoded, stat, model, report, cancel, (done, total)
                    )
                    decoding.abandoned.set()  # read to the end, skipped or failed: let go
                    decoded.result()
                    busy.pop(0)
                    done += 1
                    yield Progress(done, total, f"indexed {path.name}")
            finally:  # cancelled, or the library's own error: the helper stops at its next page
                for decoding, decoded in busy:
                    decoding.abandoned.set()
                    decoded.cancel()

    def _index_one(
        self,
        decoding: _Decoding,
        decoded: concurrent.futures.Future[None],
        stat: os.stat_result,
        model: LoadedModel,
        report: AddReport,
        cancel: CancelToken | None,
        files: tuple[int, int],
    ) -> Iterator[Progress]:
        """Embed one file as the helper decodes it and write it in one transaction; or record
        why it failed, or skip it when its content is already indexed."""
        path, kind = decoding.path, decoding.kind
        done, total = files
        while not decoding.hashed.wait(0.1):
            if cancel is not None:
                cancel.raise_if_cancelled()
        digest = decoding.sha256
        if digest is not None and self._same_content(path, digest, stat):
            report.skipped.append(path)  # the caller lets the helper go
            return
        try:
            encodings: list[SystemEncoding] = []
            pages = 0
            for batch in decoding.pages():  # a score's pages, embedded while the next is cut
                if cancel is not None:
                    cancel.raise_if_cancelled()
                encodings.extend(embed_cuts(model, [cut for page in batch for cut in page]))
                pages += len(batch)
                message = f"{path.name}: page {pages} of {decoding.page_count}"
                yield Progress(done, total, message, pages / max(decoding.page_count, 1))
            decoded.result()  # a failure of the helper's own (a bug) stops here, unwritten
            if cancel is not None:  # nothing is written once the user has cancelled
                cancel.raise_if_cancelled()
            if decoding.error is not None:
                self._commit_failure(path, kind, stat, digest, decoding.error)
                report.failed.append((path, decoding.error))
                return
            if kind == "score":
                reading = reading_windows(model, encodings)
                rescore = rescore_windows(model, encodings)
                self.write_score(
                    path, stat, digest, decoding.page_sizes, encodings, reading, rescore
                )
            else:
                assert decoding.spectrogram is not None
                encoding = encode_audio(model, decoding.spectrogram)
                duration_s = decoding.spectrogram.shape[1] / FRAMES_PER_SECOND
                self.write_audio(path, stat, digest, duration_s, encoding)
            report.added.append(path)
        except (Cancelled, LibraryNotWritable, LibraryBusy, IndexCorrupt):
            raise  # the user's wish, or the library's problem, not this document's: stop
        except SheetAudioError as error:
            self._commit_failure(path, kind, stat, digest, str(error))
            report.failed.append((path, str(error)))

    def _unchanged(self, path: Path, stat: os.stat_result) -> bool:
        row = self._db.execute(
            "SELECT size, mtime_ns, state, model_id, kind FROM documents WHERE path = ?",
            (str(path),),
        ).fetchone()
        if row is None or row[2] == "pending":
            return False
        same_file = row[0] == stat.st_size and row[1] == stat.st_mtime_ns
        return bool(same_file and (row[2] == "failed" or row[3] == self.made_by(row[4])))

    def _same_content(self, path: Path, digest: str, stat: os.stat_result) -> bool:
        """Touched but identical content, embedded by this model: record the new mtime, skip."""
        row = self._db.execute(
            "SELECT sha256, state, model_id, kind FROM documents WHERE path = ?", (str(path),)
        ).fetchone()
        if row is None or row[0] != digest or row[1] != "indexed" or row[2] != self.made_by(row[3]):
            return False
        with self._write():
            self._db.execute(
                "UPDATE documents SET size = ?, mtime_ns = ? WHERE path = ?",
                (stat.st_size, stat.st_mtime_ns, str(path)),
            )
        return True

    def _commit_failure(
        self, path: Path, kind: Kind, stat: os.stat_result, digest: str | None, error: str
    ) -> None:
        log.warning("%s", error)
        with self._write():
            known = self._delete(str(path), replacing=True)
            self._db.execute(
                "INSERT INTO documents(path, kind, state, error, size, mtime_ns, sha256, model_id,"
                " indexed_at) VALUES(?, ?, 'failed', ?, ?, ?, ?, ?, ?)",
                (
                    str(path),
                    kind,
                    error,
                    stat.st_size,
                    stat.st_mtime_ns,
                    digest,
                    self.made_by(kind),
                    time.time(),
                ),
            )
            self._list_changed |= not known

    def write_score(
        self,
        path: Path,
        stat: os.stat_result | None,
        digest: str | None,
        page_sizes: Sequence[tuple[float, float, str]],
        systems: Sequence[SystemEncoding],
        reading: ReadingWindows | None = None,
        rescore: Floats | None = None,
    ) -> None:
        """Record a score's embeddings (systems in reading order, the windows read on across
        their ends, the re-scoring windows) in one transaction.

        Public for benchmarks and tools that make embeddings themselves.
        """
        counts = [len(s.snippets) for s in systems]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        arrays = {
            "score_passages": np.stack([s.passage for s in systems]) if systems else None,
            "score_snippets": np.concatenate([s.snippets for s in systems]) if systems else None,
            "score_window_x": np.concatenate([s.window_x for s in systems])[:, None]
            if systems
            else None,
            "score_reading": reading.passages if reading is not None and len(reading.at) else None,
            "score_reading_at": reading.at[:, None]
            if reading is not None and len(reading.at)
            else None,
            "score_rescore": rescore if rescore is not None and len(rescore) else None,
        }
        with self._write():
            doc = self._new_document(path, "score", stat, digest)
            self._db.execute(
                "UPDATE documents SET pages = ?, systems = ? WHERE id = ?",
                (len(page_sizes), len(systems), doc),
            )
            self._db.executemany(
                "INSERT INTO pages VALUES(?, ?, ?, ?, ?)",
                [(doc, i, w, h, u) for i, (w, h, u) in enumerate(page_sizes)],
            )
            self._db.executemany(
                "INSERT INTO systems VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (doc, k, s.page, s.index, *map(float, s.box), int(offsets[k]), counts[k])
                    for k, s in enumerate(systems)
                ],
            )
            self._append(doc, arrays)

    def write_audio(
        self,
        path: Path,
        stat: os.stat_result | None,
        digest: str | None,
        duration_s: float,
        encoding: AudioEncoding,
    ) -> None:
        """Record a recording's embeddings in one transaction (public for benchmarks)."""
        arrays = {
            "audio_passages": encoding.passages,
            "audio_spans": encoding.passage_spans,
            "audio_snippets": encoding.snippets,
        }
        with self._write():
            doc = self._new_document(path, "audio", stat, digest)
            self._db.execute("UPDATE documents SET duration_s = ? WHERE id = ?", (duration_s, doc))
            self._append(doc, {k: (v if len(v) else None) for k, v in arrays.items()})

    def _new_document(
        self, path: Path, kind: Kind, stat: os.stat_result | None, digest: str | None
    ) -> int:
        key = str(_resolve(path))
        known = self._delete(key, replacing=True)
        cursor = self._db.execute(
            "INSERT INTO documents(path, kind, state, size, mtime_ns, sha256, model_id, indexed_at)"
            " VALUES(?, ?, 'indexed', ?, ?, ?, ?, ?)",
            (
                key,
                kind,
                stat.st_size if stat else None,
                stat.st_mtime_ns if stat else None,
                digest,
                self.made_by(kind),
                time.time(),
            ),
        )
        assert cursor.lastrowid is not None
        self._list_changed |= not known  # a re-embedded document leaves the list as it was
        return int(cursor.lastrowid)

    def _append(self, doc: int, arrays: dict[str, npt.NDArray[Any] | None]) -> None:
        """Inside a write transaction: write rows at each matrix's end, fsync, record ranges."""
        ends = self._matrix_rows()
        folder = self.folder / LIBRARY_EMBEDDINGS_DIR
        for name, values in arrays.items():
            if values is None:
                continue
            spec = MATRICES[name]
            columns = values.shape[-1] if values.ndim > 1 else 1
            if columns != spec.columns:
                raise SheetAudioError(
                    f"{self.folder}: the model makes {columns}-d rows for {name}, the library"
                    f" stores {spec.columns}-d rows; use a model with the standard sizes"
                )
            data = to_bf16_bits(values) if spec.dtype == np.uint16 else values.astype(spec.dtype)
            data = np.ascontiguousarray(data.reshape(-1, spec.columns))
            file, start = ends[name]
            raw = data.tobytes()
            _write_rows(folder / file, start * _row_bytes(name), raw)
            n = len(data)
            self._db.execute(
                "INSERT INTO ranges VALUES(?, ?, ?, ?, ?)",
                (doc, name, start, n, zlib.crc32(raw)),
            )
            self._db.execute(
                "UPDATE matrices SET rows = rows + ?, live = live + ? WHERE name = ?",
                (n, n, name),
            )

    # --- compaction ---
    def compact(self, force: bool = False) -> bool:
        """Rewrite matrices whose dead share exceeds the threshold; True if any was rewritten."""
        stats = self._db.execute("SELECT name, rows, live FROM matrices").fetchall()
        due = [
            n
            for n, rows, live in stats
            if rows > 0 and (force or (rows - live) / rows > LIBRARY_COMPACT_DEAD_FRACTION)
        ]
        if not due:
            return False
        folder = self.folder / LIBRARY_EMBEDDINGS_DIR
        old_files = []
        with self._write():
            for name in due:
                file = self._matrix_rows()[name][0]
                generation = int(file.split(".")[-2]) + 1
                new_file = f"{name}.{generation}.bin"
                row_bytes = _row_bytes(name)
                ranges = self._db.execute(
                    "SELECT doc, start, count FROM ranges WHERE matrix = ? ORDER BY start", (name,)
                ).fetchall()
                position = 0
                if not ranges and not (folder / file).exists():  # lost file, nothing live in it
                    (folder / file).touch()
                with open(folder / file, "rb") as src, open(folder / new_file, "wb") as dst:
                    for doc, start, count in ranges:
                        src.seek(start * row_bytes)
                        dst.write(src.read(count * row_bytes))
                        self._db.execute(
                            "UPDATE ranges SET start = ? WHERE doc = ? AND matrix = ?",
                            (position, doc, name),
                        )
                        position += count
                    dst.flush()
                    os.fsync(dst.fileno())
                self._db.execute(
                    "UPDATE matrices SET file = ?, rows = ?, live = ? WHERE name = ?",
                    (new_file, position, position, name),
                )
                old_files.append(folder / file)
        self._maps.clear()
        for path in old_files:
            try:
                path.unlink()
            except OSError as error:  # mapped elsewhere (Windows): removed at the next open
                log.info("cannot remove %s yet (%s)", path, error)
        return True

    # --- reading embeddings ---
    def _map(self, name: str) -> npt.NDArray[Any]:
        """The committed rows of a matrix as a read-only memory map: (rows, columns).

        Call inside a read snapshot. The file must hold the committed rows, and each document's
        rows must match their checksum (checked once per file and range): else IndexCorrupt.
        """
        file, rows = self._matrix_rows()[name]
        cached = self._maps.get(name)
        if cached is not None and cached[0] == file and cached[1] == rows:
            mm = cached[2]
        else:
            spec = MATRICES[name]
            mm = None
            path = self.folder / LIBRARY_EMBEDDINGS_DIR / file
            if rows > 0:
                size = path.stat().st_size  # FileNotFoundError: replaced meanwhile, or lost
                if size < rows * _row_bytes(name):
                    raise IndexCorrupt(
                        f"{path}: {size} bytes, but the library needs {rows} rows of "
                        f"{_row_bytes(name)} bytes (the file was cut short); run "
                        f"`sheetaudio library repair --library {self.folder}`"
                    )
                mm = np.memmap(path, dtype=spec.dtype, mode="r", shape=(rows, spec.columns))
            self._verify(name, file, mm)
            self._maps[name] = (file, rows, mm)
        if mm is None:
            return np.zeros((0, MATRICES[name].columns), MATRICES[name].dtype)
        return mm

    def _verify(self, name: str, file: str, mm: npt.NDArray[Any] | None) -> None:
        """Compare every document's rows of matrix `name` with their stored CRC-32 (new ranges
        only). The bytes are read from the file, not through the memory map: a search touches
        only the passage rows, and checking must not keep every snippet page of a 1,000-hour
        library resident in the process."""
        done_file, done = self._verified.get(name, ("", set()))
        if done_file != file:
            done = set()
        rows = 0 if mm is None else len(mm)
        row_bytes = _row_bytes(name)
        todo = [
            r
            for r in self._db.execute(
                "SELECT doc, start, count, crc FROM ranges WHERE matrix = ? ORDER BY start", (name,)
            ).fetchall()
            if (r[1], r[2]) not in done
        ]
        if not todo:
            self._verified[name] = (file, done)
            return
        with open(self.folder / LIBRARY_EMBEDDINGS_DIR / file, "rb") as f:
            for doc, start, count, crc in todo:
                intact = start + count <= rows
                if intact and crc is not None:
                    f.seek(start * row_bytes)
                    intact = zlib.crc32(f.read(count * row_bytes)) == crc
                if not intact:
                    row = self._db.execute(
                        "SELECT path FROM documents WHERE id = ?", (doc,)
                    ).fetchone()
                    raise IndexCorrupt(
                        f"{self.folder / LIBRARY_EMBEDDINGS_DIR / file}: the stored rows of "
                        f"{row[0] if row else doc} are damaged; run "
                        f"`sheetaudio library repair --library {self.folder}`"
                    )
                done.add((start, count))
        self._verified[name] = (file, done)

    def _range(self, doc: int, matrix: str) -> tuple[int, int]:
        row = self._db.execute(
            "SELECT start, count FROM ranges WHERE doc = ? AND matrix = ?", (doc, matrix)
        ).fetchone()
        return (int(row[0]), int(row[1])) if row is not None else (0, 0)

    def systems(self, path: Path) -> list[SystemEncoding]:
        """The stored systems of an indexed score, in reading order."""
        return self._read(lambda: self._systems(path))

    def _systems(self, path: Path) -> list[SystemEncoding]:
        doc = self._doc_id(path, "score")
        p0, _ = self._range(doc, "score_passages")
        s0, _ = self._range(doc, "score_snippets")
        passages = self._map("score_passages")
        snippets = self._map("score_snippets")
        xs = self._map("score_window_x")
        out = []
        for ordinal, page, idx, x0, y0, x1, y1, off, count in self._db.execute(
            "SELECT ordinal, page, idx, x0, y0, x1, y1, snippet_offset, snippet_count "
            "FROM systems WHERE doc = ? ORDER BY ordinal",
            (doc,),
        ).fetchall():
            lo = s0 + off
            out.append(
                SystemEncoding(
                    page=int(page),
                    index=int(idx),
                    box=(float(x0), float(y0), float(x1), float(y1)),
                    window_x=np.array(xs[lo : lo + count, 0], dtype=np.float32),
                    snippets=from_bf16_bits(snippets[lo : lo + count]),
                    passage=from_bf16_bits(passages[p0 + ordinal]),
                )
            )
        return out

    def snippet_counts(self, doc: int) -> npt.NDArray[np.int64]:
        """Sheet snippets of each of a score's systems, in reading order (the search places
        its re-scoring windows with them)."""
        rows = self._read(
            lambda: self._db.execute(
                "SELECT snippet_count FROM systems WHERE doc = ? ORDER BY ordinal", (doc,)
            ).fetchall()
        )
        return np.array([r[0] for r in rows], dtype=np.int64)

    def rescore_rows(self, doc: int) -> Floats:
        """A score's re-scoring windows (`encode.rescore_windows`) as float32: (m, 64), or
        (0, 64) for a score indexed before they existed.

        Read from the file, not through the memory map: the few scores a query re-scores need
        not stay in the process's memory (a long session would otherwise map them all in).
        """
        return self._read(lambda: self._rescore_rows(doc))

    def score_snippet_rows(self, doc: int) -> Floats:
        """A score's sheet snippets in reading order as float32: (n, 32). Read from the file as
        `rescore_rows` is (the search follows a query's snippets along a few scores)."""
        return self._read(lambda: self._document_rows(doc, "score_snippets"))

    def _rescore_rows(self, doc: int) -> Floats:
        return self._document_rows(doc, "score_rescore")

    def _document_rows(self, doc: int, name: str) -> Floats:
        start, count = self._range(doc, name)
        if count == 0:
            return np.zeros((0, MATRICES[name].columns), np.float32)
        file, rows = self._matrix_rows()[name]
        width = _row_bytes(name)
        path = self.folder / LIBRARY_EMBEDDINGS_DIR / file
        with path.open("rb") as f:  # FileNotFoundError: replaced meanwhile (`_read` retries)
            f.seek(start * width)
            data = f.read(count * width)
        if start + count > rows or len(data) != count * width:
            raise IndexCorrupt(
                f"{path}: the rows of document {doc} are missing (the file was cut short); run "
                f"`sheetaudio library repair --library {self.folder}`"
            )
        bits = np.frombuffer(data, np.uint16).reshape(count, MATRICES[name].columns)
        return from_bf16_bits(bits)

    def audio(self, path: Path) -> AudioEncoding:
        """The stored snippets and passages of an indexed recording."""
        return self._read(lambda: self._audio(path))

    def _audio(self, path: Path) -> AudioEncoding:
        doc = self._doc_id(path, "audio")
        s0, sn = self._range(doc, "audio_snippets")
        p0, pn = self._range(doc, "audio_passages")
        from sheetaudio_gui.core.encode import SNIPPET_HOP_S

        return AudioEncoding(
            snippet_start_s=(np.arange(sn) * SNIPPET_HOP_S).astype(np.float32),
            snippets=from_bf16_bits(self._map("audio_snippets")[s0 : s0 + sn]),
            passage_spans=np.array(self._map("audio_spans")[p0 : p0 + pn], dtype=np.float32),
            passages=from_bf16_bits(self._map("audio_passages")[p0 : p0 + pn]),
        )

    def page_size(self, path: Path, page: int) -> tuple[float, float, str] | None:
        row = self._db.execute(
            "SELECT p.width, p.height, p.units FROM pages p JOIN documents d ON d.id = p.doc "
            "WHERE d.path = ? AND p.page = ?",
            (str(_resolve(path)), page),
        ).fetchone()
        return (float(row[0]), float(row[1]), str(row[2])) if row else None

    def paths(self, ids: Sequence[int] | None = None) -> dict[int, Path]:
        """Document id -> path (of the given ids only, if given).

        Ids of the cached search rows stay resolvable after another program removed their
        document, so a search that began before the removal finishes with the old paths.
        """
        if ids is None:
            rows = self._db.execute("SELECT id, path FROM documents").fetchall()
        else:
            marks = ",".join("?" * len(ids))
            rows = self._db.execute(
                f"SELECT id, path FROM documents WHERE id IN ({marks})", tuple(ids)
            ).fetchall()
        out = {int(i): Path(p) for i, p in rows}
        for i in ids or ():
            if i not in out and i in self._snapshot_paths:
                out[i] = self._snapshot_paths[i]
        return out

    def _changed(self) -> bool:
        """Whether anything was committed (here or by another connection) since the last look,
        or the library's adapted model changed."""
        version = int(self._db.execute("PRAGMA data_version").fetchone()[0])
        now = (version, self._local_version)
        changed = now != self._seen
        self._seen = now
        return self._adaptation_changed() or changed

    def _remember_paths(self) -> None:
        """Keep the paths of every document seen in cached rows, also of earlier snapshots: a
        search may hold one modality's rows from before a reload that the other's triggered."""
        self._snapshot_paths.update(
            {int(i): Path(p) for i, p in self._db.execute("SELECT id, path FROM documents")}
        )

    def prepare_search(self) -> None:
        """Build what the first search would: both modalities' rows, and their hub penalties
        measured and kept in the folder for every reader (seconds for a large library)."""
        self._read(self._rows_now)

    def score_rows(self) -> ScoreRows:
        """Row-aligned arrays over all system passages of the current model (cached)."""
        return self._read(self._score_rows_now)

    def _score_rows_now(self) -> ScoreRows:
        return self._rows_now()[0]

    def _audio_rows_now(self) -> AudioRows:
        return self._rows_now()[1]

    def _rows_now(self) -> tuple[ScoreRows, AudioRows]:
        """Both modalities' rows, built together: each row's hub penalty is measured against
        a sample of the other modality's rows (`core.centring.hub_penalties`)."""
        if self._changed():
            self._score_rows = self._audio_rows = None
        if self._score_rows is None or self._audio_rows is None:
            score, audio = self._plain_score_rows(), self._plain_audio_rows()
            self._score_rows, self._audio_rows = self._hub_penalised(score, audio)
        return self._score_rows, self._audio_rows

    def _hub_penalised(self, score: ScoreRows, audio: AudioRows) -> tuple[ScoreRows, AudioRows]:
        """`_with_hub_penalties` (and the re-scoring windows' penalties), kept in the library
        folder for the library's state: measuring them takes ~37 s at 1,000 h, reading them back
        (with the rows) 1.4 s. The state is the model and every row range with its checksum, so
        any add, removal, re-embedding or compaction (here or in another process) measures them
        anew; a folder that cannot be written to just measures them each time."""
        path = self.folder / LIBRARY_HUB_CACHE_FILE
        state = self._hub_state()
        try:
            with np.load(path, allow_pickle=False) as cached:
                if str(cached["state"]) == state:
                    return _penalised_by(score, audio, {k: cached[k] for k in HUB_CACHE_KEYS})
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            pass  # none yet, another state, or unreadable: measure
        score, audio = _with_hub_penalties(score, audio)
        score = replace(score, rescore_penalty=self._rescore_hub_penalties(score))
        arrays = _hub_arrays(score, audio)
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}.npz")
        try:
            np.savez(tmp, state=np.array(state), **arrays)  # type: ignore[arg-type]
            os.replace(tmp, path)
        except OSError as error:
            tmp.unlink(missing_ok=True)
            log.info("hub penalties not kept in %s: %s", self.folder, error)
        return score, audio

    def _rescore_hub_penalties(self, score: ScoreRows) -> Floats | None:
        """Hub penalties of every stored re-scoring window, centred on the reading windows' mean
        as the search centres them. Read from the file a chunk at a time, not mapped: the
        1,000 h library's 400 MB of windows would otherwise count as the process's memory."""
        name = "score_rescore"
        matrix = self._matrix_rows().get(name)
        if score.hub_weight == 0.0 or matrix is None or matrix[1] == 0:
            return None  # (a matrix without rows may have no file yet)
        file, rows = matrix
        live = _live(rows, score.rescore_ranges)
        width, columns = _row_bytes(name), MATRICES[name].columns
        out = np.zeros(rows, np.float32)
        with (self.folder / LIBRARY_EMBEDDINGS_DIR / file).open("rb") as f:
            for lo in range(0, rows, RESCORE_PENALTY_CHUNK_ROWS):
                hi = min(lo + RESCORE_PENALTY_CHUNK_ROWS, rows)
                bits = np.frombuffer(f.read((hi - lo) * width), np.uint16)
                if len(bits) != (hi - lo) * columns:
                    raise IndexCorrupt(f"{f.name}: the file was cut short; run `library repair`")
                chunk = bf16_tensor(bits.reshape(hi - lo, columns))
                centre = centre_on(chunk, live[lo:hi], score.reading_centre.mean)
                out[lo:hi] = hub_penalties(
                    chunk, live[lo:hi], centre, score.hub_reference, score.hub_weight
                )
        return out

    def _hub_state(self) -> str:
        """A digest of what the hub penalties depend on (see `_hub_penalised`)."""
        ranges = self._db.execute(
            "SELECT r.matrix, r.doc, r.start, r.count, r.crc FROM ranges r "
            "JOIN documents d ON d.id = r.doc WHERE d.state = 'indexed' AND d.model_id IN (?, ?) "
            "ORDER BY r.matrix, r.start",
            self._made_now(),
        ).fetchall()
        settings = [HUB_NEIGHBOURS, HUB_WEIGHT, HUB_REFERENCE_ROWS, CENTRING_PRIOR_ROWS]
        text = json.dumps([self._made_now(), settings, ranges])
        return hashlib.sha256(text.encode()).hexdigest()

    def _plain_score_rows(self) -> ScoreRows:
        """The score rows, centred, without hub penalties."""
        for name in SCORE_MATRICES:  # damage anywhere in the modality shows before a search
            self._map(name)
        mm = self._map("score_passages")
        n = len(mm)
        doc = np.full(n, -1, np.int64)
        page = np.zeros(n, np.int32)
        system = np.zeros(n, np.int32)
        box = np.zeros((n, 4), np.float32)
        cursor = self._db.execute(
            "SELECT s.doc, r.start + s.ordinal, s.page, s.idx, s.x0, s.y0, s.x1, s.y1 "
            "FROM systems s JOIN ranges r ON r.doc = s.doc AND r.matrix = 'score_passages' "
            "JOIN documents d ON d.id = s.doc WHERE d.state = 'indexed' AND d.model_id = ?",
            (self.made_by("score"),),
        )
        # in batches: 250,000 systems fetched at once are ~90 MB of Python tuples, on top of
        # a memory that already holds the other modality's rows
        while rows := cursor.fetchmany(ROW_TABLE_BATCH):
            table = np.array(rows, dtype=np.float64)
            at = table[:, 1].astype(np.int64)
            doc[at] = table[:, 0].astype(np.int64)
            page[at] = table[:, 2].astype(np.int32)
            system[at] = table[:, 3].astype(np.int32)
            box[at] = table[:, 4:8].astype(np.float32)
        self._remember_paths()
        passages = bf16_tensor(np.asarray(mm))
        reading = bf16_tensor(np.asarray(self._map("score_reading")))
        reading_ranges = self._ranges("score_reading")
        audio_rows = self._searchable_rows("audio_passages")  # the centres' other modality
        return ScoreRows(
            passages,
            doc,
            page,
            system,
            box,
            self._ranges("score_passages"),
            reading,
            np.asarray(self._map("score_reading_at"))[:, 0],
            reading_ranges,
            centre_of(passages, doc >= 0, audio_rows),
            centre_of(reading, _live(len(reading), reading_ranges), audio_rows),
            rescore_ranges=self._ranges("score_rescore"),
        )

    def audio_rows(self) -> AudioRows:
        """Row-aligned arrays over all audio passages of the current model (cached)."""
        return self._read(self._audio_rows_now)

    def _plain_audio_rows(self) -> AudioRows:
        """The audio rows, centred, without hub penalties."""
        for name in AUDIO_MATRICES:
            self._map(name)
        mm = self._map("audio_passages")
        doc = np.full(len(mm), -1, np.int64)
        ranges = self._ranges("audio_passages")
        for d, (start, count) in ranges.items():
            doc[start : start + count] = d
        spans = self._map("audio_spans")
        self._remember_paths()
        passages = bf16_tensor(np.asarray(mm))
        return AudioRows(
            passages,
            doc,
            np.asarray(spans),
            ranges,
            centre_of(passages, doc >= 0, self._searchable_rows("score_passages")),
        )

    def _searchable_rows(self, matrix: str) -> int:
        """Rows of `matrix` that belong to searchable documents of the current model."""
        return sum(count for _, count in self._ranges(matrix).values())

    def _ranges(self, matrix: str) -> dict[int, tuple[int, int]]:
        """Document id -> (first row, rows) in `matrix`, for documents of the current model."""
        return {
            int(d): (int(start), int(count))
            for d, start, count in self._db.execute(
                "SELECT r.doc, r.start, r.count FROM ranges r JOIN documents d ON d.id = r.doc "
                "WHERE r.matrix = ? AND d.state = 'indexed' AND d.model_id IN (?, ?)",
                (matrix, *self._made_now()),
            )
        }

    # --- integrity ---
    def check(self) -> list[str]:
        """Problems found in the library (empty: consistent)."""
        return self._read(self._check)

    def _check(self) -> list[str]:
        problems: list[str] = []
        result = self._db.execute("PRAGMA integrity_check").fetchone()[0]
        if result != "ok":
            problems.append(f"SQLite integrity check: {result}")
        for name, doc_path in self._damaged_ranges():
            problems.append(f"{name}: the stored rows of {doc_path} are damaged or missing")
        folder = self.folder / LIBRARY_EMBEDDINGS_DIR
        matrices = self._matrix_rows()
        for name, (file, rows) in matrices.items():
            path = folder / file
            size = path.stat().st_size if path.exists() else None
            if size is None and rows > 0:
                problems.append(f"{path}: missing, the index needs {rows} rows")
            elif size is not None and size < rows * _row_bytes(name):
                problems.append(f"{path}: {size} bytes, the index needs {rows} rows")
            ranges = self._db.execute(
                "SELECT doc, start, count FROM ranges WHERE matrix = ? ORDER BY start", (name,)
            ).fetchall()
            end = 0
            live = 0
            for doc, start, count in ranges:
                if start < end:
                    problems.append(f"{name}: rows of document {doc} overlap another document")
                if start + count > rows:
                    problems.append(f"{name}: rows of document {doc} lie past the matrix end")
                end = max(end, start + count)
                live += count
            stored_live = self._db.execute(
                "SELECT live FROM matrices WHERE name = ?", (name,)
            ).fetchone()[0]
            if stored_live != live:
                problems.append(f"{name}: {stored_live} live rows recorded, ranges hold {live}")
        for doc, kind, path, systems in self._db.execute(
            "SELECT id, kind, path, systems FROM documents WHERE state = 'indexed'"
        ).fetchall():
            have = {
                m: c
                for m, c in self._db.execute(
                    "SELECT matrix, count FROM ranges WHERE doc = ?", (doc,)
                ).fetchall()
            }
            if kind == "score":
                n_sys = self._db.execute(
                    "SELECT COUNT(*), COALESCE(SUM(snippet_count), 0) FROM systems WHERE doc = ?",
                    (doc,),
                ).fetchone()
                if n_sys[0] != (systems or 0) or have.get("score_passages", 0) != n_sys[0]:
                    problems.append(f"{path}: system rows do not match its systems")
                if (
                    have.get("score_snippets", 0) != n_sys[1]
                    or have.get("score_window_x", 0) != n_sys[1]
                ):
                    problems.append(f"{path}: snippet rows do not match its systems")
                if have.get("score_reading", 0) != have.get("score_reading_at", 0):
                    problems.append(f"{path}: reading windows and their places differ")
            else:
                if have.get("audio_passages", 0) != have.get("audio_spans", 0):
                    problems.append(f"{path}: passage and span rows differ")
                if have.get("audio_snippets", 0) == 0:
                    problems.append(f"{path}: no audio snippets")
        if not problems:  # embeddings must be unit vectors (a torn write would show here)
            for name in ("score_passages", "score_reading", "score_rescore", "audio_passages"):
                t = bf16_tensor(np.asarray(self._map(name))).float()
                live_rows = self._live_rows(name)
                norms = t[torch.from_numpy(live_rows)].norm(dim=1) if len(live_rows) else None
                if norms is not None and bool(((norms - 1).abs() > 0.02).any()):
                    problems.append(f"{name}: some stored passages are not unit vectors")
        return problems

    def _damaged_ranges(self) -> list[tuple[str, str]]:
        """(matrix, document path) of every document range whose bytes are missing, cut off or
        differ from their checksum; reads the files directly (no memory map of a short file)."""
        damaged: list[tuple[str, str]] = []
        folder = self.folder / LIBRARY_EMBEDDINGS_DIR
        for name, (file, _) in self._matrix_rows().items():
            row_bytes = _row_bytes(name)
            ranges = self._db.execute(
                "SELECT d.path, r.start, r.count, r.crc FROM ranges r "
                "JOIN documents d ON d.id = r.doc WHERE r.matrix = ? ORDER BY r.start",
                (name,),
            ).fetchall()
            if not ranges:
                continue
            path_of = folder / file
            if not path_of.exists():
                damaged.extend((name, str(path)) for path, _, _, _ in ranges)
                continue
            with open(path_of, "rb") as f:
                for path, start, count, crc in ranges:
                    f.seek(start * row_bytes)
                    raw = f.read(count * row_bytes)
                    if len(raw) < count * row_bytes or (crc is not None and zlib.crc32(raw) != crc):
                        damaged.append((name, str(path)))
        return damaged

    # --- damage and repair ---
    @classmethod
    def check_folder(cls, folder: Path | None = None) -> list[str]:
        """`check()` of a library whose database may not even open: the problems found (an
        unreadable database is one of them, not an exception)."""
        try:
            library = cls(folder)
        except IndexCorrupt as error:
            return [str(error)]
        with library:
            return library.check()

    @classmethod
    def repair(
        cls,
        folder: Path | None = None,
        model: LoadedModel | None = None,
        cancel: CancelToken | None = None,
    ) -> Job[RepairReport]:
        """Rebuild what is damaged, keeping the list of documents; yields Progress.

        A database that SQLite cannot read (or whose integrity check fails) is moved aside and
        made anew from `documents.json` plus whatever rows of the old one still read; then every
        document is re-indexed. With a sound database, the documents whose stored rows are
        missing, cut off or fail their checksum are forgotten, the matrices rewritten without
        them, and the documents re-indexed. Files that are gone stay in the list as pending.
        """
        folder = Path(folder) if folder is not None else default_library_dir()
        report = RepairReport()
        yield Progress(0, 0, "checking the library database")
        db_path = folder / LIBRARY_DB_FILE
        problem = _database_problem(folder)
        listed: dict[str, str] = {}
        roots: set[str] = set()
        if problem is not None:
            log.warning("%s: %s; making it anew", db_path, problem)
            listed, roots = _salvage_document_list(folder)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            for suffix in ("", "-wal", "-shm"):
                source = folder / f"{LIBRARY_DB_FILE}{suffix}"
                if source.exists():
                    target = source.with_name(f"{source.name}{LIBRARY_DAMAGED_SUFFIX}-{stamp}")
                    os.replace(source, target)
                    report.moved_aside.append(target)
            report.database_rebuilt = True
        with cls(folder, model) as library:
            if report.database_rebuilt:
                with library._write():
                    for key, kind in sorted(listed.items()):
                        library._db.execute(
                            "INSERT OR IGNORE INTO documents(path, kind, state) "
                            "VALUES(?, ?, 'pending')",
                            (key, kind),
                        )
                    for root in sorted(roots):
                        library._db.execute("INSERT OR IGNORE INTO roots VALUES(?)", (root,))
                    library._list_changed = True
            else:
                yield Progress(0, 0, "checking the stored embeddings")
                damaged = sorted({p for _, p in library._read(library._damaged_ranges)})
                if damaged:
                    with library._write():
                        for key in damaged:
                            kind = library._db.execute(
                                "SELECT kind FROM documents WHERE path = ?", (key,)
                            ).fetchone()[0]
                            library._delete(key, replacing=True)
                            library._db.execute(
                                "INSERT INTO documents(path, kind, state) VALUES(?, ?, 'pending')",
                                (key, kind),
                            )
                    library.compact(force=True)  # new files with only the intact rows
                    report.damaged = [Path(p) for p in damaged]
            todo = [
                Path(p)
                for (p,) in library._db.execute(
                    "SELECT path FROM documents WHERE state = 'pending' ORDER BY path"
                ).fetchall()
                if file_kind(Path(p)) is not None
            ]
            yield from library._index(todo, report.indexing, cancel)
            report.problems_after = library.check()
        return report

    def _live_rows(self, name: str) -> npt.NDArray[np.int64]:
        parts = [
            np.arange(s, s + c, dtype=np.int64)
            for s, c in self._db.execute(
                "SELECT start, count FROM ranges WHERE matrix = ?", (name,)
            ).fetchall()
        ]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)


# --- damage: the database and the list of documents --------------------------------------------


def read_document_list(folder: Path) -> dict[str, Any] | None:
    """The spare list of documents (`documents.json`) of a library folder; None if unreadable."""
    path = folder / LIBRARY_DOCUMENT_LIST_FILE
    try:
        listed = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        log.info("%s: no list of documents (%s)", path, error)
        return None
    return listed if isinstance(listed, dict) else None


def _database_problem(folder: Path) -> str | None:
    """Why the library database cannot be used (None: it can, or there is none to rebuild)."""
    path = folder / LIBRARY_DB_FILE
    if not path.exists():
        return "missing" if (folder / LIBRARY_DOCUMENT_LIST_FILE).exists() else None
    try:
        db = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S)
        try:
            result = str(db.execute("PRAGMA integrity_check").fetchone()[0])
            db.execute("SELECT COUNT(*) FROM documents").fetchone()
        finally:
            db.close()
    except sqlite3.Error as error:
        person = _sqlite_error(folder, error)
        if isinstance(person, (LibraryBusy, LibraryNotWritable)):
            raise person from error
        return str(error)
    return None if result == "ok" else result


def _salvage_document_list(folder: Path) -> tuple[dict[str, str], set[str]]:
    """Path -> kind of every document, and the added folders, from `documents.json` and from
    whatever rows of a damaged database SQLite can still read."""
    documents: dict[str, str] = {}
    roots: set[str] = set()
    listed = read_document_list(folder)
    if listed is not None:
        for entry in listed.get("documents", []):
            if isinstance(entry, dict) and entry.get("kind") in ("score", "audio"):
                documents[str(entry["path"])] = str(entry["kind"])
        roots.update(str(r) for r in listed.get("roots", []))
    uri = (folder / LIBRARY_DB_FILE).resolve().as_uri() + "?mode=ro"
    for query, into in (
        ("SELECT path, kind FROM documents", True),
        ("SELECT path FROM roots", False),
    ):
        try:
            db = sqlite3.connect(uri, uri=True)
            try:
                for row in db.execute(query):
                    if into and row[1] in ("score", "audio"):
                        documents.setdefault(str(row[0]), str(row[1]))
                    elif not into:
                        roots.add(str(row[0]))
            finally:
                db.close()
        except sqlite3.Error as error:  # partly or wholly unreadable: keep what came out
            log.info("%s: %s", folder / LIBRARY_DB_FILE, error)
    return documents, roots


# --- decoding (runs in a helper thread) ----------------------------------------------------------


class _Decoding:
    """One file decoded in the helper thread without the model, handed over as it goes: a
    score page by page (its systems' windows), so that the caller embeds one page while the
    helper renders and detects the next; a recording as its spectrogram, whole."""

    def __init__(self, path: Path, kind: Kind) -> None:
        self.path, self.kind = path, kind
        self.sha256: str | None = None
        self.error: str | None = None
        self.page_sizes: list[tuple[float, float, str]] = []
        self.page_count = 0
        self.spectrogram: Floats | None = None
        self.hashed = threading.Event()  # sha256 (or error) known
        self.abandoned = threading.Event()  # the caller wants no more pages
        self._pages: queue.SimpleQueue[list[SystemCut] | None] = queue.SimpleQueue()  # None: end

    def put_page(self, cuts: list[SystemCut]) -> None:
        self._pages.put(cuts)

    def finish(self) -> None:
        self.hashed.set()
        self._pages.put(None)

    def pages(self) -> Iterator[list[list[SystemCut]]]:
        """Each page's systems' windows, in batches of the pages decoded since the last one
        was taken (the CNN runs on bigger batches), until the file ends or fails (`error`)."""
        while True:
            batch = [self._pages.get()]
            while batch[-1] is not None and not self._pages.empty():  # one reader: no race
                batch.append(self._pages.get())
            pages = [page for page in batch if page is not None]
            if pages:
                yield pages
            if batch[-1] is None:
                return


def _prepare(decoding: _Decoding) -> None:
    """Hash and decode one file (in the helper thread), handing pages over as they are cut."""
    path = decoding.path
    try:
        decoding.sha256 = hash_file(path)
        decoding.hashed.set()
        if decoding.kind == "score":
            from sheetaudio_gui.core.score import detect_systems, open_score

            with open_score(path) as doc:
                decoding.page_count = doc.page_count
                for index in range(doc.page_count):
                    if decoding.abandoned.is_set():
                        return
                    page = doc.page(index)
                    decoding.page_sizes.append((page.width, page.height, page.units))
                    decoding.put_page(cut_systems(page, detect_systems(page.image)))
        else:
            from sheetaudio_gui.core.audio import file_spectrogram

            decoding.spectrogram = file_spectrogram(path)
    except SheetAudioError as error:
        decoding.error = str(error)
    except OSError as error:
        decoding.error = f"{path}: cannot be read ({error}); check the file and its permissions"
    finally:
        decoding.finish()


def _walk(root: Path) -> list[Path]:
    """Score and audio files under `root`, recursively, in name order; hidden entries skipped."""
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            path = Path(folder) / name
            if not name.startswith(".") and file_kind(path) is not None:
                found.append(path)
    return found


def _resolve(path: Path) -> Path:
    return Path(os.path.abspath(path))


__all__ = [
    "AUDIO_SUFFIXES",
    "AddReport",
    "Box",
    "Document",
    "IndexCorrupt",
    "Library",
    "LibraryBusy",
    "LibraryNotWritable",
    "RepairReport",
    "default_library_dir",
    "default_model_path",
    "read_document_list",
]
