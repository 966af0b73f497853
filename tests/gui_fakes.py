"""An in-memory stand-in for the core's Library and search functions (same signatures as the API
contract), so the GUI tests run before, and independently of, the real index. Scores are read and
their systems detected by the real `core.score`; embeddings are seeded from the file name.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from sheetaudio_gui.core.errors import Cancelled, FileProblem
from sheetaudio_gui.core.jobs import CancelToken, Progress
from sheetaudio_gui.gui.services import CoreServices

AUDIO_SUFFIXES = {".flac", ".wav", ".ogg", ".mp3"}
SCORE_SUFFIXES = {".pdf", ".png", ".jpg", ".tif", ".tiff"}
SECONDS_PER_DOCUMENT = 0.05  # fake work per document, so that cancelling has something to stop


def _vector(seed: str, n: int = 1) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(seed.encode()))
    v = rng.standard_normal((n, 64)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@dataclass(frozen=True)
class SystemEncoding:
    page: int
    index: int
    box: tuple[float, float, float, float]
    window_x: np.ndarray
    snippets: np.ndarray
    passage: np.ndarray


@dataclass(frozen=True)
class AudioEncoding:
    snippet_start_s: np.ndarray
    snippets: np.ndarray
    passage_spans: np.ndarray
    passages: np.ndarray


@dataclass(frozen=True)
class Document:
    id: int
    path: Path
    kind: str
    state: str
    error: str | None
    pages: int | None
    systems: int | None
    duration_s: float | None


@dataclass
class AddReport:
    added: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


@dataclass(frozen=True)
class ScoreRegion:
    page: int
    system: int
    box: tuple[float, float, float, float]
    score: float
    x_range: tuple[float, float] | None = None


@dataclass(frozen=True)
class ScoreHit:
    document: Path
    score: float
    regions: list[ScoreRegion]


@dataclass(frozen=True)
class TimeSpan:
    start_s: float
    end_s: float
    score: float


@dataclass(frozen=True)
class AudioHit:
    document: Path
    score: float
    spans: list[TimeSpan]


@dataclass(frozen=True)
class Results:
    query: np.ndarray
    hits: list[Any]


@dataclass(frozen=True)
class PassageMap:
    embeddings: np.ndarray
    documents: list[Path]
    document: np.ndarray
    kind: np.ndarray
    ref: np.ndarray


class FakeLibrary:
    """Documents live in a class-level store per folder, as rows live in one SQLite file."""

    stores: ClassVar[dict[Path, dict[Path, tuple[Document, Any]]]] = {}

    def __init__(self, folder: Path | None = None, model: Any = None) -> None:
        self.folder = Path(folder or ".")
        self.model = model
        self.store = FakeLibrary.stores.setdefault(self.folder, {})

    def documents(self, kind: str | None = None) -> list[Document]:
        docs = [d for d, _ in self.store.values()]
        return [d for d in docs if kind is None or d.kind == kind]

    def add(self, paths: Any, cancel: CancelToken | None = None) -> Any:
        files: list[Path] = []
        for p in map(Path, paths):
            files.extend(sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p])
        report = AddReport()
        for i, path in enumerate(files):
            if cancel is not None and cancel.cancelled:
                raise Cancelled("cancelled by the user")
            yield Progress(i, len(files), f"indexing {path.name}")
            time.sleep(SECONDS_PER_DOCUMENT)
            try:
                self.store[path] = self._index(path, len(self.store) + 1)
                report.added.append(path)
            except FileProblem as problem:
                report.failed.append((path, str(problem)))
                doc = Document(
                    len(self.store) + 1, path, "score", "failed", str(problem), None, None, None
                )
                self.store[path] = (doc, None)
        yield Progress(len(files), len(files), "done")
        return report

    def _index(self, path: Path, doc_id: int) -> tuple[Document, Any]:
        if path.suffix.lower() in AUDIO_SUFFIXES:
            from sheetaudio_gui.core.audio import audio_info

            duration = audio_info(path).duration_s
            starts = np.arange(0.0, max(duration - 1.0, 0.0) + 1e-6, 0.9, dtype=np.float32)
            spans = np.array([[s, min(s + 2.0, duration)] for s in starts], np.float32)
            enc = AudioEncoding(
                starts,
                _vector(path.name + "s", len(starts))[:, :32],
                spans,
                _vector(path.name, len(spans)),
            )
            return Document(doc_id, path, "audio", "indexed", None, None, None, duration), enc
        from sheetaudio_gui.core.score import detect_systems, open_score, systems_in_units

        systems = []
        with open_score(path) as score:
            pages = score.page_count
            for page in score.pages():
                found = systems_in_units(detect_systems(page.image), page)
                for k, s in enumerate(found):
                    n = max(1, int((s.box[2] - s.box[0]) // 40))
                    xs = np.linspace(s.box[0] + 20, s.box[2] - 20, n).astype(np.float32)
                    systems.append(
                        SystemEncoding(
                            page.index,
                            k,
                            s.box,
                            xs,
                            _vector(f"{path.name}{page.index}{k}s", n)[:, :32],
                            _vector(f"{path.name}{page.index}{k}")[0],
                        )
                    )
        doc = Document(doc_id, path, "score", "indexed", None, pages, len(systems), None)
        return doc, systems

    def rescan(self, cancel: CancelToken | None = None) -> Any:
        report = yield from self.add(list(self.store), cancel)
        return report

    def remove(self, path: Path) -> bool:
        return self.store.pop(Path(path), None) is not None

    def systems(self, path: Path) -> list[SystemEncoding]:
        doc, enc = self.store[Path(path)]
        if doc.kind != "score":
            raise KeyError(path)
        return list(enc)

    def audio(self, path: Path) -> AudioEncoding:
        doc, enc = self.store[Path(path)]
        if doc.kind != "audio":
            raise KeyError(path)
        return enc

    def close(self) -> None:
        pass

    def __enter__(self) -> FakeLibrary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def search_score(
    library: FakeLibrary,
    path: Path,
    page: int,
    system: int | None = None,
    box: Any = None,
    top_k: int = 10,
) -> Results:
    hits = []
    for doc in library.documents("audio"):
        if doc.state != "indexed":
            continue
        end = min(2.5, doc.duration_s or 0.0)
        hits.append(AudioHit(doc.path, 0.8, [TimeSpan(0.5, end, 0.8)]))
    return Results(_vector(f"{path}{page}{system}"), hits[:top_k])


def search_audio_file(
    library: FakeLibrary,
    path: Path,
    start_s: float = 0.0,
    end_s: float | None = None,
    top_k: int = 10,
) -> Results:
    return search_audio(library, np.zeros(1, np.float32), top_k)


def search_audio(library: FakeLibrary, samples: Any, top_k: int = 10) -> Results:
    hits = []
    for doc in library.documents("score"):
        if doc.state != "indexed":
            continue
        systems = library.systems(doc.path)
        chosen = systems[1] if len(systems) > 1 else systems[0]
        hits.append(
            ScoreHit(doc.path, 0.7, [ScoreRegion(chosen.page, chosen.index, chosen.box, 0.7, None)])
        )
    return Results(_vector("audio query"), hits[:top_k])


def passage_map(library: FakeLibrary) -> PassageMap:
    emb, docs, kinds, refs = [], [], [], []
    for doc, enc in library.store.values():
        if doc.state != "indexed":
            continue
        if doc.kind == "score":
            for s in enc:
                emb.append(s.passage)
                docs.append(doc.path)
                kinds.append("score")
                refs.append((s.page, s.index))
        else:
            for span, p in zip(enc.passage_spans, enc.passages, strict=True):
                emb.append(p)
                docs.append(doc.path)
                kinds.append("audio")
                refs.append((float(span[0]), float(span[1])))
    distinct = sorted(set(docs), key=str)
    return PassageMap(
        np.array(emb, np.float32).reshape(-1, 64),
        distinct,
        np.array([distinct.index(d) for d in docs], np.int64),
        np.array(kinds),
        np.array(refs, np.float32).reshape(-1, 2),
    )


@dataclass(frozen=True)
class Alignment:
    path: np.ndarray
    similarity: np.ndarray
    systems: list[SystemEncoding]
    duration_s: float

    def time_at(self, page: int, system: int, x: float) -> float:
        return 0.0

    def position_at(self, time_s: float) -> tuple[int, int, float]:
        """Linear: the whole recording sweeps the first system from left to right."""
        s = self.systems[0]
        frac = min(max(time_s / max(self.duration_s, 1e-6), 0.0), 1.0)
        return s.page, s.index, s.box[0] + frac * (s.box[2] - s.box[0])


def align(systems: list[SystemEncoding], audio: AudioEncoding) -> Alignment:
    sheet = np.concatenate([s.snippets for s in systems])
    sim = sheet @ audio.snippets.T
    n, m = sim.shape
    path = np.stack(
        [np.linspace(0, n - 1, max(n, m)).round(), np.linspace(0, m - 1, max(n, m)).round()], axis=1
    ).astype(np.int64)
    duration = float(audio.snippet_start_s[-1] + 1.0) if len(audio.snippet_start_s) else 1.0
    return Alignment(path, sim.astype(np.float32), systems, duration)


def fake_services() -> CoreServices:
    def encode_score(model: Any, path: Path) -> list[Any]:
        lib = FakeLibrary(Path("/nonexistent-fake"))
        return lib._index(Path(path), 0)[1]

    def encode_samples(model: Any, samples: Any) -> AudioEncoding:
        n = max(1, len(samples) // 22050)
        starts = np.arange(n, dtype=np.float32)
        return AudioEncoding(
            starts,
            _vector("take", n)[:, :32],
            np.stack([starts, starts + 1], 1),
            _vector("take p", n),
        )

    return CoreServices(
        load_model=lambda path: object(),
        open_library=lambda folder, model: FakeLibrary(folder, model),
        search_audio=search_audio,
        search_audio_file=search_audio_file,
        search_score=search_score,
        passage_map=passage_map,
        align=align,
        encode_score=encode_score,
        encode_samples=encode_samples,
    )
