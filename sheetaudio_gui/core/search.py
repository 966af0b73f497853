"""Cross-modal search over a library: audio -> score systems, score regions -> recording spans.

A query becomes one or more 64-d passage embeddings (an audio excerpt: passages of about one
system's length every 1.8 s, or the excerpt as a whole when shorter; a page: one per system; a
rectangle: the systems it touches, cut to its x-range). Every query row is compared with every
passage of the other modality (for scores: systems and the reading windows that run on across
system ends) by brute force (cosine similarity = dot product of unit vectors,
bfloat16 matmul in chunks).

Ranking: a document's score is the mean over query rows of that row's best similarity within the
document (piece identification: every part of the query should find itself somewhere in the
piece); within a document, the regions (systems) or spans are ranked by their own similarity.
A query of several systems (a page) is played in reading order, one system after the other: the
best recordings are re-scored along the best path through their passages whose start times never
decrease and where each passage begins near where the previous one ended (a leap costs), and that
path is the first span returned. Likewise an audio query of several passages re-scores the best
scores along systems in reading order; a short one (up to ~36 s) against windows of several
lengths, plus the best path of its 1 s audio snippets along the score's sheet snippets.
Every similarity is centred (`core.centring`): each modality's passages are compared after
subtracting the library's mean passage of that modality (queries: of their own modality), which
removes the offset that every score (every recording) shares.
Scores stay cosine similarities in [-1, 1] (of the centred vectors), so they compare across
queries of one library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt
import torch

from sheetaudio_gui.config import (
    PATH_GAP_CAP,
    PATH_GAP_SCALE_S,
    PATH_GAP_WEIGHT,
    QUERY_PASSAGE_HOP_SNIPPETS,
    QUERY_PASSAGE_SNIPPETS,
    RESCORE_MAX_QUERY_SNIPPETS,
    RESCORE_QUERY_SNIPPETS,
    SEARCH_CHUNK_ROWS,
    SEARCH_REGIONS_PER_HIT,
    SEARCH_RERANK_DOCUMENTS,
    SEARCH_SIMILARITY_FLOATS,
    SEARCH_SPANS_PER_HIT,
    SNIPPET_PATH_MAX_STEP,
    SNIPPET_PATH_WEIGHT,
    SPAN_MERGE_GAP_S,
)
from sheetaudio_gui.core.align import cosine_similarity, match_x_range
from sheetaudio_gui.core.centring import Centre, centred, penalties_of
from sheetaudio_gui.core.encode import (
    AudioEncoding,
    SystemEncoding,
    encode_audio,
    encode_box,
    encode_page,
    passages_of_lengths,
    rescore_window_centres,
    rescore_windows,
)
from sheetaudio_gui.core.errors import FileProblem, SheetAudioError
from sheetaudio_gui.core.index import Library, ScoreRows, bf16_tensor, from_bf16_bits
from sheetaudio_gui.core.score import Box

Floats = npt.NDArray[np.float32]


@dataclass(frozen=True)
class ScoreRegion:
    page: int  # 0-based
    system: int  # 0-based on the page, top to bottom
    box: Box  # the system's box, page units
    score: float  # cosine similarity
    x_range: tuple[float, float] | None  # where inside the system the query plays (page units)


@dataclass(frozen=True)
class ScoreHit:
    document: Path
    score: float
    regions: list[ScoreRegion]  # best first


@dataclass(frozen=True)
class TimeSpan:
    start_s: float
    end_s: float
    score: float


@dataclass(frozen=True)
class AudioHit:
    document: Path
    score: float
    spans: list[TimeSpan]  # best first


H = TypeVar("H", ScoreHit, AudioHit)


@dataclass(frozen=True)
class Results(Generic[H]):
    query: Floats  # (k, 64) the query's passage embeddings, centred as the search compared them
    hits: list[H]  # best first


@dataclass(frozen=True)
class PassageMap:
    """Every searchable passage of the library, for a 2-D plot."""

    embeddings: Floats  # (N, 64) centred on their modality's mean, as the search compares them
    documents: list[Path]  # distinct documents; `document` indexes this list
    document: npt.NDArray[np.int64]  # (N,) index into `documents`
    kind: npt.NDArray[np.str_]  # (N,) "score" or "audio"
    ref: Floats  # (N, 2): (page, system) for scores, (start_s, end_s) for audio


# --- similarity ----------------------------------------------------------------------------------


def _per_document_max(
    matrix: torch.Tensor, ranges: dict[int, tuple[int, int]], queries: Floats, centre: Centre
) -> tuple[npt.NDArray[np.int64], Floats]:
    """Best similarity of each query row within each document.

    (rows, 64) bfloat16, document id -> (first row, rows), (k, 64) -> (docs,) ids, (k, docs).
    The matrix is read in chunks of SEARCH_CHUNK_ROWS rows: a bfloat16 matmul fills a small
    float32 block (queries in groups so that it stays under SEARCH_SIMILARITY_FLOATS), and a
    document's rows being contiguous, one `np.maximum.reduceat` per chunk reduces the block to
    the documents it touches. Similarities are centred (`core.centring`): the queries are
    centred rows, `centre` is the matrix's. A (k, all rows) array would be 60 MB for a page
    query over 1,000 h: fresh memory whose page faults alone cost ~100 ms per query.
    """
    k = len(queries)
    if not ranges or k == 0:
        return np.zeros(0, np.int64), np.zeros((k, 0), np.float32)
    items = sorted(ranges.items(), key=lambda item: item[1][0])
    ids = np.array([d for d, _ in items], dtype=np.int64)
    starts = np.array([r[0] for _, r in items], dtype=np.int64)
    ends = starts + np.array([r[1] for _, r in items], dtype=np.int64)
    rows = int(ends.max())
    out = np.full((k, len(ids)), -np.inf, np.float32)
    group = max(1, SEARCH_SIMILARITY_FLOATS // SEARCH_CHUNK_ROWS)
    offsets = centre.offsets(queries)
    with torch.inference_mode():
        for g in range(0, k, group):
            q = torch.from_numpy(np.ascontiguousarray(queries[g : g + group], dtype=np.float32))
            qb = q.to(torch.bfloat16)
            block = np.empty((len(q), min(SEARCH_CHUNK_ROWS, rows)), np.float32)
            for lo in range(0, rows, SEARCH_CHUNK_ROWS):
                hi = min(lo + SEARCH_CHUNK_ROWS, rows)
                first = int(np.searchsorted(ends, lo, side="right"))  # documents touching
                last = int(np.searchsorted(starts, hi, side="left"))  # [lo, hi)
                if first >= last:
                    continue
                sims = block[:, : hi - lo]
                # (k, 64) @ (64, chunk) lands in the output's layout; torch's copy widens the
                # bfloat16 results in parallel: 2.7x faster than (chunk, 64) @ (64, k) + numpy
                torch.from_numpy(sims).copy_(qb @ matrix[lo:hi].T)
                centre.apply(sims, offsets[g : g + group], lo)
                seg_start = np.maximum(starts[first:last], lo) - lo
                seg_end = np.minimum(ends[first:last], hi) - lo
                bounds = np.unique(np.concatenate([seg_start, seg_end]))
                bounds = bounds[bounds < hi - lo]
                best = np.maximum.reduceat(sims, bounds, axis=1)[
                    :, np.searchsorted(bounds, seg_start)
                ]
                np.maximum(out[g : g + group, first:last], best, out=out[g : g + group, first:last])
    return ids, out


def _rows_similarity(
    matrix: torch.Tensor, start: int, count: int, queries: Floats, centre: Centre
) -> Floats:
    """Centred similarity of the (centred) query rows to matrix rows [start, start + count):
    (k, count) float32.

    Plain numpy (bfloat16 bits shifted into float32): for a few thousand rows torch's thread pool
    costs more than the arithmetic, tens of ms on a busy machine.
    """
    rows = from_bf16_bits(matrix[start : start + count].view(torch.int16).numpy().view(np.uint16))
    out: Floats = (np.asarray(queries, dtype=np.float32) @ rows.T).astype(np.float32, copy=False)
    centre.apply(out, centre.offsets(queries), start)
    return out


# --- audio -> score ------------------------------------------------------------------------------


def search_audio(library: Library, samples: Floats, top_k: int = 10) -> Results[ScoreHit]:
    """A mono 22.05 kHz buffer (e.g. the microphone) -> ranked scores with system boxes."""
    from sheetaudio_gui.core.audio import log_spectrogram

    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1 or len(samples) == 0:
        raise SheetAudioError("the audio query is empty; record or select a few seconds")
    encoding = encode_audio(  # cut as core.encode.query_passage_plan: whole only when short
        library.model,
        log_spectrogram(samples),
        lengths=(QUERY_PASSAGE_SNIPPETS,),
        hops=(QUERY_PASSAGE_HOP_SNIPPETS,),
    )
    return search_with_audio_encoding(library, encoding, top_k)


def search_audio_file(
    library: Library, path: Path, start_s: float = 0.0, end_s: float | None = None, top_k: int = 10
) -> Results[ScoreHit]:
    """A recording, or a time range of it -> ranked scores with system boxes."""
    from sheetaudio_gui.core.audio import load_audio

    samples = load_audio(path, start_s, end_s)
    if len(samples) == 0:
        raise FileProblem(path, f"no audio between {start_s} s and {end_s} s; check the range")
    return search_audio(library, samples, top_k)


def search_with_audio_encoding(
    library: Library, encoding: AudioEncoding, top_k: int = 10
) -> Results[ScoreHit]:
    """Rank the library's scores for an encoded audio query (its passages are the query rows)."""
    queries = encoding.passages
    hits = rank_scores(library, queries, top_k, encoding.snippets)
    refined = []
    for hit in hits:  # where inside the best system the query plays (short queries only)
        regions = list(hit.regions)
        if regions:
            regions[0] = _with_x_range(library, hit.document, regions[0], encoding)
        refined.append(ScoreHit(hit.document, hit.score, regions))
    return Results(centred(queries, library.audio_rows().centre.mean), refined)


Source = tuple[torch.Tensor, dict[int, tuple[int, int]], Centre]  # matrix, ranges, its centre
Windows = tuple[Floats, Floats]  # a score's centred re-scoring windows and their hub penalties


def _best_per_document(
    sources: Sequence[Source], queries: Floats
) -> tuple[npt.NDArray[np.int64], Floats]:
    """`_per_document_max` over several matrices (e.g. a score's systems and its reading
    windows): each query row's best similarity within each document over all of them."""
    parts = [
        _per_document_max(m, ranges, queries, centre) for m, ranges, centre in sources if ranges
    ]
    if not parts:
        return np.zeros(0, np.int64), np.zeros((len(queries), 0), np.float32)
    if len(parts) == 1:
        return parts[0]
    ids = np.unique(np.concatenate([part_ids for part_ids, _ in parts]))
    best = np.full((len(queries), len(ids)), -np.inf, np.float32)
    for part_ids, part_best in parts:
        columns = np.searchsorted(ids, part_ids)
        best[:, columns] = np.maximum(best[:, columns], part_best)
    return ids, best


def _rank_documents(
    library: Library,
    sources: Sequence[Source],
    queries: Floats,
    top_k: int,
) -> tuple[Any, Any, Any, Any] | None:
    """Documents ordered by the mean over queries of their best passage similarity: (document
    ids, top-k order into them, per-document scores, paths by id); None when nothing matches."""
    if len(queries) == 0:
        return None
    ids, best = _best_per_document(sources, queries)
    if len(ids) == 0:
        return None
    doc_scores = best.mean(axis=0)
    order = np.argsort(-doc_scores, kind="stable")[:top_k]
    paths = library.paths([int(ids[d]) for d in order])
    return ids, order, doc_scores, paths


def rank_scores(
    library: Library, queries: Floats, top_k: int = 10, snippets: Floats | None = None
) -> list[ScoreHit]:
    """Score documents for (k, 64) query passages (in time order), each with its best systems.

    Candidates are a score's systems and its reading windows (`encode.reading_windows`: snippets
    read on across system ends, where an excerpt that straddles two systems finds itself); a
    window counts for the system that holds its centre. The best SEARCH_RERANK_DOCUMENTS by these
    independent matches are then re-scored: a short query whose audio `snippets` are given
    (up to RESCORE_MAX_QUERY_SNIPPETS) against windows of several lengths (`rescore_match`) plus
    its snippets' path along the score's snippets (`with_snippet_paths`);
    several query passages (an excerpt longer than that) along systems and windows in reading
    order (`ordered_match`).
    """
    rows = library.score_rows()
    audio_mean = library.audio_rows().centre.mean  # the query's modality in this library
    queries = centred(queries, audio_mean)
    rescore = snippets is not None and 0 < len(snippets) <= RESCORE_MAX_QUERY_SNIPPETS
    ordered = len(queries) > 1 and not rescore
    candidates = max(top_k, SEARCH_RERANK_DOCUMENTS) if ordered or rescore else top_k
    sources = [
        (rows.passages, rows.ranges, rows.centre),
        (rows.reading, rows.reading_ranges, rows.reading_centre),
    ]
    ranked = _rank_documents(library, sources, queries, candidates)
    if ranked is None:
        return []
    ids, order, doc_scores, paths = ranked
    query_runs: list[Floats] = []
    if rescore and snippets is not None:
        hops = (QUERY_PASSAGE_HOP_SNIPPETS,) * len(RESCORE_QUERY_SNIPPETS)
        runs = passages_of_lengths(
            library.model, snippets, RESCORE_QUERY_SNIPPETS, hops, sheet=False
        )
        query_runs = [centred(run, audio_mean) for run in runs]
    doc_ids = [int(ids[d]) for d in order]
    scores = [float(doc_scores[d]) for d in order]
    sims_of: dict[int, tuple[Floats, npt.NDArray[np.float64]]] = {}
    if ordered:
        for k, doc_id in enumerate(doc_ids):
            sims_of[doc_id] = _document_sims(rows, doc_id, queries)
            scores[k] = ordered_match(*sims_of[doc_id])[0]
    windows_of: dict[int, Windows] = {}
    if rescore and snippets is not None:
        scores, windows_of = _rescored(library, rows, query_runs, doc_ids, paths, scores)
        kept = [k for k, d in enumerate(doc_ids) if d in windows_of]  # else removed meanwhile
        sheets = [library.score_snippet_rows(doc_ids[k]) for k in kept]
        joined = with_snippet_paths([scores[k] for k in kept], snippets, sheets)
        for k, value in zip(kept, joined, strict=True):
            scores[k] = value
    ranking = sorted(zip(scores, doc_ids, strict=True), key=lambda item: -item[0])  # stable
    hits = []
    for score, doc_id in ranking[:top_k]:  # regions only for what is returned
        start, count = rows.ranges.get(doc_id, (0, 0))
        placed = _rescore_sims(library, doc_id, windows_of.get(doc_id), query_runs, count)
        sims, at = placed or sims_of.get(doc_id) or _document_sims(rows, doc_id, queries)
        best = np.full(count, -np.inf, np.float32)  # a window counts for its centre system
        np.maximum.at(best, np.minimum(at.astype(np.int64), count - 1), sims.max(axis=0))
        top = np.argsort(-best, kind="stable")[:SEARCH_REGIONS_PER_HIT]
        regions = [
            ScoreRegion(
                page=int(rows.page[start + t]),
                system=int(rows.system[start + t]),
                box=_box(rows.box[start + t]),
                score=float(best[t]),
                x_range=None,
            )
            for t in top
        ]
        hits.append(ScoreHit(paths[doc_id], score, regions))
    return hits


def _document_sims(
    rows: ScoreRows, doc_id: int, queries: Floats
) -> tuple[Floats, npt.NDArray[np.float64]]:
    """Similarity of the query rows to a score's systems and reading windows, and where each
    lies in reading order (system ordinal, + fraction for a window's centre)."""
    start, count = rows.ranges.get(doc_id, (0, 0))
    sims = _rows_similarity(rows.passages, start, count, queries, rows.centre)  # (k, systems)
    at = np.arange(count, dtype=np.float64)
    w_start, w_count = rows.reading_ranges.get(doc_id, (0, 0))
    if w_count:
        w_sims = _rows_similarity(rows.reading, w_start, w_count, queries, rows.reading_centre)
        w_at = np.asarray(rows.reading_at[w_start : w_start + w_count], dtype=np.float64)
        sims = np.concatenate([sims, w_sims], axis=1)
        at = np.concatenate([at, w_at])
    return sims, at


def _rescored(
    library: Library,
    rows: ScoreRows,
    query_runs: list[Floats],
    doc_ids: list[int],
    paths: dict[int, Path],
    scores: list[float],
) -> tuple[list[float], dict[int, Windows]]:
    """The documents' re-scored values (`rescore_matches`) and the windows they were scored
    on with their hub penalties; a document removed since the first stage keeps its first-stage
    score."""
    # the windows are centred on the reading windows' mean: the nearest kind of row held in
    # memory (the re-scoring matrix, ~13 rows per system, is read a score at a time); their
    # own mean did no better on the validation library (10 s: piece first 42.1 vs 43.5 %)
    mean = rows.reading_centre.mean
    found = [_rescore_windows(library, d, paths[d], mean) for d in doc_ids]
    windows = [
        None if w is None else (w, _rescore_penalties(rows, d, w))
        for d, w in zip(doc_ids, found, strict=True)
    ]
    present = [w for w in windows if w is not None]
    values = iter(rescore_matches(query_runs, [w for w, _ in present], [p for _, p in present]))
    rescored = [
        next(values) if w is not None else old for w, old in zip(windows, scores, strict=True)
    ]
    kept = {d: w for d, w in zip(doc_ids, windows, strict=True) if w is not None}
    return rescored, kept


def snippet_path_match(
    audio: Floats, sheet: Floats, max_step: int = SNIPPET_PATH_MAX_STEP
) -> float:
    """How well an audio excerpt's snippets (time order) follow a score's sheet snippets
    (reading order): the best mean cosine over paths that give each audio snippet a sheet
    snippet 0 to `max_step` after the previous one's, starting anywhere in the score.

    Several audio snippets may share a sheet snippet (a bar of slow music lasts seconds), and no
    step goes back, so look-alike snippets scattered over a score cannot line up the way the
    played passage does. Exact dynamic programme, O(len(audio) x len(sheet) x max_step);
    -1 when either side is empty.
    """
    return snippet_path_matches(audio, [sheet], max_step)[0]


def snippet_path_matches(
    audio: Floats, sheets: Sequence[Floats], max_step: int = SNIPPET_PATH_MAX_STEP
) -> list[float]:
    """`snippet_path_match` for several scores at once: their snippets side by side with
    `max_step` impassable columns between neighbours, so one dynamic programme over all of them
    (fifty small ones cost more in numpy calls than in arithmetic)."""
    out = [-1.0] * len(sheets)
    have = [k for k, sheet in enumerate(sheets) if len(sheet)]
    if len(audio) == 0 or not have:
        return out
    sizes = np.array([len(sheets[k]) for k in have], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes + max_step)[:-1]])  # each score's first column
    columns = np.concatenate([s + np.arange(n) for s, n in zip(starts, sizes, strict=True)])
    sims = np.full((len(audio), int(starts[-1] + sizes[-1])), -np.inf, np.float32)
    sims[:, columns] = cosine_similarity(audio, np.concatenate([sheets[k] for k in have]))
    best = sims[0].copy()  # best path value ending at each column
    for row in sims[1:]:
        reach = best.copy()  # stay on the same sheet snippet
        for step in range(1, max_step + 1):
            np.maximum(reach[step:], best[:-step], out=reach[step:])
        best = row + reach
    values = np.maximum.reduceat(best, starts) / len(audio)  # a score's gap columns are -inf
    for k, value in zip(have, values, strict=True):
        out[k] = float(value)
    return out


def with_snippet_paths(
    values: Sequence[float], audio: Floats, sheets: Sequence[Floats]
) -> list[float]:
    """A short query's re-scored `values` for scores joined with its snippets' paths along the
    scores' (`snippet_path_matches`): each mean weighted 1 : SNIPPET_PATH_WEIGHT, so a score
    stays a cosine in [-1, 1] that compares across queries."""
    paths = snippet_path_matches(audio, sheets)
    w = SNIPPET_PATH_WEIGHT
    return [(v + w * path) / (1.0 + w) for v, path in zip(values, paths, strict=True)]


def _rescore_penalties(rows: ScoreRows, doc_id: int, windows: Floats) -> Floats:
    """A score's re-scoring windows' hub penalties: measured with the rows for stored windows,
    else (windows cut at query time) once per library state."""
    start, count = rows.rescore_ranges.get(doc_id, (0, 0))
    stored = rows.rescore_penalty
    if stored is not None and count == len(windows) and start + count <= len(stored):
        return stored[start : start + count]
    penalty = rows.rescore_penalties.get(doc_id)
    if penalty is None or len(penalty) != len(windows):
        penalty = penalties_of(windows, rows.hub_reference, rows.hub_weight)
        rows.rescore_penalties[doc_id] = penalty
    return penalty


def _rescore_sims(
    library: Library, doc_id: int, windows: Windows | None, query_runs: list[Floats], systems: int
) -> tuple[Floats, Floats] | None:
    """Similarity of the re-scored query passages to a score's re-scoring windows and where
    each window lies (system ordinal + fraction): the windows that gave the score its value
    place the excerpt. None when the windows do not follow the score's stored systems (an
    older plan), so the first stage's systems and reading windows place it instead."""
    parts = [q for q in query_runs if len(q)]
    if windows is None or not len(windows[0]) or not parts:
        return None
    rows, penalty = windows
    counts = library.snippet_counts(doc_id)
    at = rescore_window_centres(counts)
    if len(counts) != systems or len(at) != len(rows):
        return None
    return np.concatenate(parts) @ rows.T - penalty[None, :], at


def _rescore_windows(library: Library, doc_id: int, path: Path, mean: Floats) -> Floats | None:
    """A score's re-scoring windows (`encode.rescore_windows`), centred on `mean`: stored with
    the score, or cut from its stored snippets when it was indexed before they existed; None
    when it is gone."""
    windows = library.rescore_rows(doc_id)
    if not len(windows):
        try:
            windows = rescore_windows(library.model, library.systems(path))
        except SheetAudioError:  # removed since the first stage
            return None
    return centred(windows, mean)


def rescore_matches(
    query: Sequence[Floats],
    windows: Sequence[Floats],
    penalties: Sequence[Floats] | None = None,
) -> list[float]:
    """`rescore_match` for several scores at once: one matrix product per query length over all
    their windows (fifty small products cost more in thread hand-offs than in arithmetic).
    `penalties`: each score's windows' hub penalties (`core.centring.penalties_of`), subtracted
    from their similarities."""
    sizes = np.array([len(w) for w in windows], dtype=np.int64)
    out = np.full(len(windows), -1.0)
    have = np.flatnonzero(sizes > 0)
    parts = [q for q in query if len(q)]
    if len(have) == 0 or not parts:
        return out.tolist()
    stacked = np.concatenate([windows[int(k)] for k in have])
    penalty = (
        np.concatenate([penalties[int(k)] for k in have])
        if penalties is not None
        else np.zeros(len(stacked), np.float32)
    )
    starts = np.concatenate([[0], np.cumsum(sizes[have])[:-1]])
    per_length = [
        np.maximum.reduceat(q @ stacked.T - penalty[None, :], starts, axis=1).mean(axis=0)
        for q in parts
    ]  # each: (documents with windows,) mean over the length's passages of their best window
    out[have] = np.mean(per_length, axis=0)
    return [float(v) for v in out]


def rescore_match(query: Sequence[Floats], windows: Floats, penalty: Floats | None = None) -> float:
    """A short audio query against one score: for each query passage length, the mean over its
    passages of each one's best window; then the mean over lengths (cosines, less each
    window's hub `penalty` when given).

    Every part of the excerpt must find itself in the score, at whatever window length fits its
    tempo; the library's piece identification and the evaluation's both use this. -1 for a
    score without windows."""
    return rescore_matches(query, [windows], None if penalty is None else [penalty])[0]


def _with_x_range(
    library: Library, document: Path, region: ScoreRegion, encoding: AudioEncoding
) -> ScoreRegion:
    """Add the matching x-range when the query is shorter than the system it found."""
    try:
        systems = library.systems(document)
    except SheetAudioError:
        return region
    system = next((s for s in systems if s.page == region.page and s.index == region.system), None)
    if system is None or len(encoding.snippets) >= len(system.snippets) or len(system.snippets) < 2:
        return region
    x0, x1, _ = match_x_range(system, encoding.snippets)
    return ScoreRegion(region.page, region.system, region.box, region.score, (x0, x1))


# --- score -> audio ------------------------------------------------------------------------------


def score_query(
    library: Library,
    path: Path,
    page: int,
    system: int | None = None,
    box: Box | None = None,
) -> list[SystemEncoding]:
    """The query systems of a page, one system, or a rectangle of a page (page units)."""
    from sheetaudio_gui.core.score import open_score

    with open_score(path) as doc:
        if not 0 <= page < doc.page_count:
            raise FileProblem(path, f"has no page {page} (pages are 0 to {doc.page_count - 1})")
        image = doc.page(page)
    if box is not None:
        systems = encode_box(library.model, image, box)
        if not systems:
            raise FileProblem(path, f"no staff system inside {box} on page {page}; draw around one")
        return systems
    systems = encode_page(library.model, image)
    if not systems:
        raise FileProblem(path, f"no staff systems found on page {page}")
    if system is not None:
        chosen = [s for s in systems if s.index == system]
        if not chosen:
            raise FileProblem(
                path, f"page {page} has systems 0 to {len(systems) - 1}, not {system}"
            )
        return chosen
    return systems


def search_score(
    library: Library,
    path: Path,
    page: int,
    system: int | None = None,
    box: Box | None = None,
    top_k: int = 10,
) -> Results[AudioHit]:
    """A page (its systems combined), one system, or a rectangle -> ranked recordings with spans."""
    systems = score_query(library, path, page, system, box)
    queries = np.stack([s.passage for s in systems]).astype(np.float32)
    hits = rank_recordings(library, queries, top_k)
    return Results(centred(queries, library.score_rows().centre.mean), hits)


def rank_recordings(library: Library, queries: Floats, top_k: int = 10) -> list[AudioHit]:
    """Recordings for (k, 64) query passages (systems in reading order), each with time spans.

    One system: recordings by its best passage. Several: the best SEARCH_RERANK_DOCUMENTS by
    independent matches are re-scored along the best path of passages that follow one another
    in time as the systems follow in reading order (`contiguous_match`), whose extent is the
    first span.
    """
    rows = library.audio_rows()
    queries = centred(queries, library.score_rows().centre.mean)
    ordered = len(queries) > 1
    candidates = max(top_k, SEARCH_RERANK_DOCUMENTS) if ordered else top_k
    sources = [(rows.passages, rows.ranges, rows.centre)]
    ranked = _rank_documents(library, sources, queries, candidates)
    if ranked is None:
        return []
    ids, order, doc_scores, paths = ranked
    scored = []  # (score, document id, sims, spans, steps)
    for d in order:
        doc_id = int(ids[d])
        start, count = rows.ranges[doc_id]
        sims = _rows_similarity(rows.passages, start, count, queries, rows.centre)  # (k, rows)
        spans = np.asarray(rows.spans[start : start + count], dtype=np.float64)
        score = float(doc_scores[d])
        steps = None
        if ordered:
            steps = _steps(spans, PATH_GAP_WEIGHT, PATH_GAP_SCALE_S, PATH_GAP_CAP)
            score = _contiguous_match(sims, steps, with_path=False)[0]
        scored.append((score, doc_id, sims, spans, steps))
    scored.sort(key=lambda item: -item[0])  # stable: ties keep the independent order
    hits = []
    for score, doc_id, sims, spans, steps in scored[:top_k]:  # spans only for what is returned
        found = _spans(sims, spans)
        if steps is not None:
            path = _contiguous_match(sims, steps, with_path=True)[1]
            first = TimeSpan(float(spans[path, 0].min()), float(spans[path, 1].max()), score)
            others = [s for s in found if s.end_s <= first.start_s or s.start_s >= first.end_s]
            found = [first, *others][:SEARCH_SPANS_PER_HIT]
        hits.append(AudioHit(paths[doc_id], score, found))
    return hits


def ordered_match(sims: Floats, positions: npt.NDArray[np.float64]) -> tuple[float, list[int]]:
    """Best assignment of query rows, in order, to candidates whose positions never decrease.

    sims (k, m): similarity of each query row to each candidate; positions (m,): where each
    candidate lies (a passage's start time). Returns the mean similarity along the best path and
    the candidate chosen for each row. Dynamic programming over the candidates sorted by position:
    O(k m). Several rows may share a candidate (a short passage can hold two short systems).
    """
    k, m = sims.shape
    if k == 0 or m == 0:
        raise ValueError("ordered_match needs at least one query row and one candidate")
    order = np.argsort(positions, kind="stable")
    s = np.asarray(sims, dtype=np.float64)[:, order]
    sorted_positions = np.asarray(positions)[order]
    last_tie = np.searchsorted(sorted_positions, sorted_positions, side="right") - 1
    index = np.arange(m)
    back = np.zeros((k, m), np.int64)
    total = s[0].copy()
    for i in range(1, k):
        prefix = np.maximum.accumulate(total)  # best path ending at or before each candidate
        arg = np.maximum.accumulate(np.where(total >= prefix, index, 0))
        back[i] = arg[last_tie]  # candidates at the same position count as "before"
        total = s[i] + prefix[last_tie]
    j = int(np.argmax(total))
    path = [j]
    for i in range(k - 1, 0, -1):
        j = int(back[i, j])
        path.append(j)
    chosen = [int(order[c]) for c in reversed(path)]
    return float(total.max() / k), chosen


@dataclass(frozen=True)
class _Steps:
    """How the passages of one recording may follow one another (`contiguous_match`).

    A step a -> b (start_a <= start_b) costs c x |start_b - end_a| (c = weight / scale_s) up to
    the leap's cost. Predecessors that end before b starts pay c x (start_b - end_a): the best of
    them is a prefix maximum of (total + c x end) over passages sorted by end, less c x start_b
    (one that ends more than a leap's reach earlier scores below the leap, so need not be
    excluded). Only predecessors still sounding at b's start, ending within the reach after it,
    need a table: ~half the passages within reach, so the table is half as wide.
    """

    order: npt.NDArray[np.int64]  # passages sorted by start
    last_tie: npt.NDArray[np.int64]  # (m,) in that order: a may precede b iff a <= last_tie[b]
    by_end: npt.NDArray[np.int64]  # (m,) start-order indices sorted by end
    end_term: Floats  # (m,) c x end, in end order
    ended: npt.NDArray[np.int64]  # (m,) passages (in end order) ending at or before b's start
    start_term: Floats  # (m,) c x start_b
    near: npt.NDArray[np.int64]  # (m, w) passages sounding at b's start, ending within reach
    cost: Floats  # (m, w) their step costs; inf where they may not precede b
    leap: float  # the cost of any longer step


def _steps(spans: npt.NDArray[np.float64], weight: float, scale_s: float, cap: float) -> _Steps:
    order = np.argsort(spans[:, 0], kind="stable")
    start = np.asarray(spans[order, 0], dtype=np.float64)
    end = np.asarray(spans[order, 1], dtype=np.float64)
    m = len(order)
    per_s = weight / scale_s
    last_tie = np.searchsorted(start, start, side="right") - 1
    by_end = np.argsort(end, kind="stable")
    end_sorted = end[by_end]
    ended = np.searchsorted(end_sorted, start, side="right")
    lo = ended  # the rest end after b's start, and matter only within the reach
    hi = np.searchsorted(end_sorted, start + cap * scale_s, side="right")
    width = max(int((hi - lo).max()), 1)
    slot = lo[:, None] + np.arange(width)[None, :]
    near = by_end[np.minimum(slot, m - 1)]
    cost = (per_s * (end[near] - start[:, None])).astype(np.float32)
    cost[(slot >= hi[:, None]) | (start[near] > start[:, None])] = np.inf
    return _Steps(
        order,
        last_tie,
        by_end,
        (per_s * end_sorted).astype(np.float32),
        ended,
        (per_s * start).astype(np.float32),
        near,
        cost,
        weight * cap,
    )


def contiguous_match(
    sims: Floats,
    spans: npt.NDArray[np.float64],
    weight: float = PATH_GAP_WEIGHT,
    scale_s: float = PATH_GAP_SCALE_S,
    cap: float = PATH_GAP_CAP,
    with_path: bool = True,
) -> tuple[float, list[int]]:
    """`ordered_match` for systems played one after the other: each system's passage should
    begin where the previous system's passage ended.

    sims (k, m): similarity of each query row (system, in reading order) to each passage; spans
    (m, 2): each passage's start and end (s). A step from passage a to passage b (start_b >=
    start_a) costs weight x min(|start_b - end_a| / scale_s, cap): a path that leaps through a
    recording, picking each system's best look-alike wherever it lies, pays for every leap
    (repeats and cuts pay at most `cap` once). Returns (mean over rows of similarity less the
    costs along the best path, the passage chosen for each row; [] without `with_path`).

    Dynamic programming over passages sorted by start: a step into b comes from the best path
    so far at the leap's full cost (a prefix maximum, as in `ordered_match`), from a passage
    that ended before b began (a prefix maximum over passages sorted by end, `_Steps`), or from
    one still sounding when b begins (a window of ~20 passages): O(k m w), not O(k m^2), so an
    hour-long recording costs no more per passage than a short one.
    """
    if sims.shape[0] == 0 or sims.shape[1] == 0:
        raise ValueError("contiguous_match needs at least one query row and one candidate")
    return _contiguous_match(sims, _steps(spans, weight, scale_s, cap), with_path)


def _contiguous_match(sims: Floats, steps: _Steps, with_path: bool) -> tuple[float, list[int]]:
    """`contiguous_match` with its recording's steps made once (a page's best recordings are
    matched twice: for their value, then the few returned for their path)."""
    k, m = sims.shape
    s = np.asarray(sims, dtype=np.float32)[:, steps.order]
    rows = np.arange(m)
    back = np.zeros((k, m), np.int64) if with_path else None
    total = s[0].copy()
    ended_best = np.full(m + 1, -np.inf, np.float32)  # [0]: no passage has ended yet
    for i in range(1, k):
        prefix = np.maximum.accumulate(total)  # best path ending at or before each passage
        leap = prefix[steps.last_tie] - steps.leap
        by_end = total[steps.by_end] + steps.end_term
        np.maximum.accumulate(by_end, out=ended_best[1:])
        before = ended_best[steps.ended] - steps.start_term
        local = total[steps.near]
        local -= steps.cost
        if back is None:
            total = s[i] + np.maximum(np.maximum(local.max(axis=1), before), leap)
            continue
        local_arg = np.argmax(local, axis=1)
        step = local[rows, local_arg]
        prefix_arg = np.maximum.accumulate(np.where(total >= prefix, rows, 0))
        before_arg = np.maximum.accumulate(np.where(by_end >= ended_best[1:], rows, 0))
        came = np.where(step >= leap, steps.near[rows, local_arg], prefix_arg[steps.last_tie])
        best = np.maximum(step, leap)
        ended_before = before > best
        back[i] = np.where(ended_before, steps.by_end[before_arg[steps.ended - 1]], came)
        total = s[i] + np.where(ended_before, before, best)
    score = float(total.max() / k)
    if back is None:
        return score, []
    j = int(np.argmax(total))
    path = [j]
    for i in range(k - 1, 0, -1):
        j = int(back[i, j])
        path.append(j)
    return score, [int(steps.order[c]) for c in reversed(path)]


def _spans(sims: Floats, spans: npt.NDArray[np.float64]) -> list[TimeSpan]:
    """Group the best passages of every query row into time spans of one recording.

    Each query row contributes its 3 best passages; passages that overlap or lie within
    `SPAN_MERGE_GAP_S` form one candidate span. A span's score is the sum over query rows of that
    row's best similarity inside it, divided by the number of rows (a page whose systems all land
    in one place beats one system's lucky hit); its extent is the union of those best passages.
    """
    k = sims.shape[0]
    per_row = min(3, sims.shape[1])
    best_rows = np.argsort(-sims, axis=1, kind="stable")[:, :per_row]
    candidates = sorted(
        {int(r) for r in best_rows.ravel()}, key=lambda r: (spans[r, 0], spans[r, 1])
    )
    position = {r: c for c, r in enumerate(candidates)}
    best_at = [position[r] for r in np.argmax(sims, axis=1).tolist()]  # each row's very best
    bounds: list[list[float]] = spans[candidates].tolist()
    # 15 candidates at most: plain Python on their similarities beats numpy's cost per call
    columns: list[list[float]] = sims[:, candidates].T.tolist()  # per candidate: (k,)
    clusters: list[list[int]] = []  # positions in `candidates`
    end = -np.inf
    for c, (first, last) in enumerate(bounds):
        if clusters and first <= end + SPAN_MERGE_GAP_S:
            clusters[-1].append(c)
            end = max(end, last)
        else:
            clusters.append([c])
            end = last
    out = []
    for members in clusters:
        best_of_row = [max(members, key=lambda c: columns[c][i]) for i in range(k)]
        score = sum(columns[best_of_row[i]][i] for i in range(k)) / k
        here = set(members)  # the rows whose very best passage is in here say where it is
        used = {best_of_row[i] for i in range(k) if best_at[i] in here}
        if not used:
            used = {max(members, key=lambda c: max(columns[c]))}
        start, stop = min(bounds[c][0] for c in used), max(bounds[c][1] for c in used)
        out.append(TimeSpan(start, stop, score))
    out.sort(key=lambda s: -s.score)
    return out[:SEARCH_SPANS_PER_HIT]


# --- the whole library ---------------------------------------------------------------------------


def passage_map(library: Library, limit: int | None = None, seed: int = 0) -> PassageMap:
    """Every searchable passage (at most `limit`, drawn at random) with its document and place."""
    score = library.score_rows()
    audio = library.audio_rows()
    s_rows = np.nonzero(score.doc >= 0)[0]
    a_rows = np.nonzero(audio.doc >= 0)[0]
    if limit is not None and len(s_rows) + len(a_rows) > limit:
        rng = np.random.default_rng(seed)
        share = limit / (len(s_rows) + len(a_rows))
        s_rows = np.sort(rng.choice(s_rows, int(len(s_rows) * share), replace=False))
        a_rows = np.sort(rng.choice(a_rows, int(len(a_rows) * share), replace=False))
    emb = []
    if len(s_rows):
        emb.append(
            centred(score.passages[torch.from_numpy(s_rows)].float().numpy(), score.centre.mean)
        )
    if len(a_rows):
        emb.append(
            centred(audio.passages[torch.from_numpy(a_rows)].float().numpy(), audio.centre.mean)
        )
    embeddings = np.concatenate(emb) if emb else np.zeros((0, 64), np.float32)
    doc_ids = np.concatenate([score.doc[s_rows], audio.doc[a_rows]])
    unique, index = np.unique(doc_ids, return_inverse=True)
    paths = library.paths()
    kind = np.array(["score"] * len(s_rows) + ["audio"] * len(a_rows), dtype=np.str_)
    ref = np.concatenate(
        [
            np.stack([score.page[s_rows], score.system[s_rows]], axis=1).astype(np.float32),
            np.asarray(audio.spans[a_rows], dtype=np.float32).reshape(-1, 2),
        ]
    )
    return PassageMap(
        embeddings.astype(np.float32),
        [paths[int(d)] for d in unique],
        index.astype(np.int64),
        kind,
        ref,
    )


def _box(values: Sequence[float] | Floats) -> Box:
    return (float(values[0]), float(values[1]), float(values[2]), float(values[3]))


__all__ = [
    "AudioHit",
    "PassageMap",
    "Results",
    "ScoreHit",
    "ScoreRegion",
    "TimeSpan",
    "bf16_tensor",
    "passage_map",
    "search_audio",
    "search_audio_file",
    "search_score",
]
