"""Turning score pages and spectrograms into embeddings with a loaded model.

Sheet side: the page's staff systems are detected, cut into 80x90 windows, every window of the page
goes through the sheet CNN in one batch, and the GRU summarises each system (one passage per
system, as in training). Audio side: the whole spectrogram is cut into 1 s snippets on one grid
(hop 0.9 s, as inside a training passage) and embedded once; passages of several durations are
then read off that grid by the GRU, all passages of one duration in one batch (no re-embedding of
overlapping snippets). Identical input gives identical embeddings, so the index and a query made
from the same pixels or samples agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from sheetaudio_gui.config import (
    AUDIO_PASSAGE_HOP_SNIPPETS,
    AUDIO_PASSAGE_SNIPPETS,
    AUDIO_SNIPPET_FRAMES,
    AUDIO_SNIPPET_HOP_FRAMES,
    ENCODE_BATCH_PASSAGES,
    ENCODE_BATCH_WINDOWS,
    FRAMES_PER_SECOND,
    QUERY_PASSAGE_HOP_SNIPPETS,
    QUERY_PASSAGE_SNIPPETS,
    RESCORE_WINDOW_HOPS,
    RESCORE_WINDOW_SNIPPETS,
    SCORE_WINDOW_HOP_SNIPPETS,
    SCORE_WINDOW_SNIPPETS,
    SHEET_SNIPPET_HOP_PX,
    SHEET_SNIPPET_WIDTH_PX,
    SPEC_BINS,
)
from sheetaudio_gui.core.models import LoadedModel, audio_input, sheet_input
from sheetaudio_gui.core.score import Box, Page, System, detect_systems
from sheetaudio_gui.core.snippets import audio_windows, sheet_windows, system_strip

Floats = npt.NDArray[np.float32]

SNIPPET_HOP_S = AUDIO_SNIPPET_HOP_FRAMES / FRAMES_PER_SECOND  # 0.9 s between snippet starts
SNIPPET_S = AUDIO_SNIPPET_FRAMES / FRAMES_PER_SECOND  # 1 s per snippet


def passage_seconds(snippets: int) -> float:
    """Duration covered by a passage of `snippets` consecutive grid snippets, s."""
    return ((snippets - 1) * AUDIO_SNIPPET_HOP_FRAMES + AUDIO_SNIPPET_FRAMES) / FRAMES_PER_SECOND


@dataclass(frozen=True)
class SystemEncoding:
    """One staff system (or the part of it inside a query rectangle) as the model sees it."""

    page: int  # 0-based page
    index: int  # 0-based system on the page, top to bottom (over all detected systems)
    box: Box  # (x0, y0, x1, y1) in page units; for `encode_box` cut to the rectangle's x-range
    window_x: Floats  # (n,) x-centre of each 80x90 sheet window, page units
    snippets: Floats  # (n, 32) snippet embeddings
    passage: Floats  # (64,) L2-normalised passage embedding


@dataclass(frozen=True)
class AudioEncoding:
    """A recording (or excerpt) as the model sees it; times relative to its first sample."""

    snippet_start_s: Floats  # (n,) start time of each 1 s snippet (grid hop 0.9 s)
    snippets: Floats  # (n, 32)
    passage_spans: Floats  # (m, 2) start_s, end_s of each sliding passage (several durations)
    passages: Floats  # (m, 64) L2-normalised

    @property
    def duration_s(self) -> float:
        """End of the last snippet, s (at most 1 s more than the audio: padding)."""
        return float(self.snippet_start_s[-1]) + SNIPPET_S if len(self.snippet_start_s) else 0.0


# --- sheet ---------------------------------------------------------------------------------------


def encode_page(model: LoadedModel, page: Page) -> list[SystemEncoding]:
    """Detect the page's systems and embed each: one SystemEncoding per system, top to bottom."""
    systems = detect_systems(page.image)
    return encode_systems(model, page, systems)


def encode_box(model: LoadedModel, page: Page, box: Box) -> list[SystemEncoding]:
    """Embed the systems that overlap `box` (page units), each cut to the box's x-range.

    A rectangle that touches no system gives []. System indices are those of the whole page.
    """
    bx0, by0, bx1, by1 = (
        min(box[0], box[2]),
        min(box[1], box[3]),
        max(box[0], box[2]),
        max(box[1], box[3]),
    )
    ppu = page.px_per_unit
    systems = detect_systems(page.image)
    chosen: list[int] = []
    cuts: list[tuple[float, float]] = []
    for i, system in enumerate(systems):
        sx0, sy0, sx1, sy1 = system.box
        x0, x1 = max(sx0, bx0 * ppu), min(sx1, bx1 * ppu)
        if sy1 >= by0 * ppu and sy0 <= by1 * ppu and x1 - x0 >= 2 * system.staff_space:
            chosen.append(i)
            cuts.append((x0, x1))
    return encode_systems(model, page, systems, chosen, cuts)


@dataclass(frozen=True)
class SystemCut:
    """A system's windows ready for the CNN (made without the model, e.g. in a decoding thread)."""

    page: int
    index: int
    box: Box  # page units
    window_x: Floats  # (n,) window centres, page units
    windows: npt.NDArray[np.uint8]  # (n, 80, 90)


def encode_systems(
    model: LoadedModel,
    page: Page,
    systems: Sequence[System],
    which: Sequence[int] | None = None,
    x_cuts: Sequence[tuple[float, float]] | None = None,
) -> list[SystemEncoding]:
    """Embed `systems` (boxes in page pixels, as `detect_systems` gives them) of `page`.

    `which` picks system indices (default: all) and `x_cuts` optionally narrows each picked system
    to a pixel x-range (then no margin is added around it).
    """
    return embed_cuts(model, cut_systems(page, systems, which, x_cuts))


def cut_systems(
    page: Page,
    systems: Sequence[System],
    which: Sequence[int] | None = None,
    x_cuts: Sequence[tuple[float, float]] | None = None,
) -> list[SystemCut]:
    """Strips and 80x90 windows of the picked systems, with each window's x-centre in page units."""
    indices = list(range(len(systems))) if which is None else list(which)
    ppu = page.px_per_unit
    out: list[SystemCut] = []
    for k, i in enumerate(indices):
        system = systems[i]
        x0, y0, x1, y1 = system.box
        margin_spaces = 1.0
        if x_cuts is not None:
            x0, x1 = x_cuts[k]
            margin_spaces = 0.0
        space = system.staff_space
        strip = system_strip(
            page.image,
            (x0, y0, x1, y1),
            space,
            margin_spaces,
            skew_deg=system.skew_deg,
            pivot_x=(system.box[0] + system.box[2]) / 2,
        )
        win = sheet_windows(strip)
        left = math.floor(x0 - margin_spaces * space)
        right = math.ceil(x1 + margin_spaces * space)
        sx = strip.shape[1] / max(right - left, 1)  # strip px per page px (as resized)
        starts = np.arange(len(win), dtype=np.float64) * SHEET_SNIPPET_HOP_PX
        centre_px = left + np.minimum(starts + SHEET_SNIPPET_WIDTH_PX / 2, strip.shape[1]) / sx
        out.append(
            SystemCut(
                page=page.index,
                index=i,
                box=(x0 / ppu, y0 / ppu, x1 / ppu, y1 / ppu),
                window_x=(centre_px / ppu).astype(np.float32),
                windows=win,
            )
        )
    return out


def embed_cuts(model: LoadedModel, cuts: Sequence[SystemCut]) -> list[SystemEncoding]:
    """All windows of `cuts` through the sheet CNN in shared batches, then one padded GRU run."""
    if not cuts:
        return []
    counts = [len(c.windows) for c in cuts]
    snippets = _sheet_snippets(model, np.concatenate([c.windows for c in cuts]))
    passages = _passages_of_sequences(model, snippets, counts, sheet=True)
    out: list[SystemEncoding] = []
    offset = 0
    for k, cut in enumerate(cuts):
        n = counts[k]
        out.append(
            SystemEncoding(
                page=cut.page,
                index=cut.index,
                box=cut.box,
                window_x=cut.window_x,
                snippets=snippets[offset : offset + n],
                passage=passages[k],
            )
        )
        offset += n
    return out


def _sheet_snippets(model: LoadedModel, windows: npt.NDArray[np.uint8]) -> Floats:
    """(n, 80, 90) uint8 windows -> (n, 32) float32 snippet embeddings, in CNN batches."""
    parts = []
    with torch.inference_mode():
        for lo in range(0, len(windows), ENCODE_BATCH_WINDOWS):
            x = sheet_input(windows[lo : lo + ENCODE_BATCH_WINDOWS])
            parts.append(model.model.sheet_snippets(x))
    out: Floats = torch.cat(parts).numpy().astype(np.float32, copy=False)
    return out


def _passages_of_sequences(
    model: LoadedModel, snippets: Floats, counts: Sequence[int], sheet: bool
) -> Floats:
    """Consecutive runs of `snippets` ((sum counts, 32)) -> (len(counts), 64) passages."""
    steps = max(counts)
    padded = np.zeros((len(counts), steps, snippets.shape[1]), np.float32)
    offset = 0
    for k, n in enumerate(counts):
        padded[k, :n] = snippets[offset : offset + n]
        offset += n
    lengths = torch.as_tensor(counts, dtype=torch.int64)
    with torch.inference_mode():
        x = torch.from_numpy(padded)
        if sheet:
            result = model.model.sheet_passages(x, lengths)
        else:
            result = model.model.audio_passages(x, lengths)
    out: Floats = result.numpy().astype(np.float32, copy=False)
    return out


def length_plans(
    n: int, lengths: Sequence[int], hops: Sequence[int]
) -> list[tuple[int, npt.NDArray[np.int64]]]:
    """How `n` snippets are cut into passages of each (length, hop): (passage size, starts) per
    length, one passage over all of them when there are fewer (`passage_starts`)."""
    plans = []
    for length, hop in zip(lengths, hops, strict=True):
        size = min(length, n)
        plans.append((size, passage_starts(n, size, hop)))
    return plans


def passages_of_lengths(
    model: LoadedModel,
    snippets: Floats,
    lengths: Sequence[int],
    hops: Sequence[int],
    sheet: bool,
) -> list[Floats]:
    """For each (length, hop), passages of that many consecutive snippets every `hop` (one over
    the whole sequence when it is shorter): -> one (m, 64) array of unit vectors per length."""
    n = len(snippets)
    if n == 0:
        return [np.zeros((0, model.model.dims.passage_dim), np.float32) for _ in lengths]
    plans = length_plans(n, lengths, hops)
    runs = np.concatenate([snippets[s : s + size] for size, starts in plans for s in starts])
    counts = [size for size, starts in plans for _ in starts]
    passages = _passages_of_sequences(model, runs.astype(np.float32, copy=False), counts, sheet)
    bounds = np.cumsum([0] + [len(starts) for _, starts in plans])
    return [passages[bounds[k] : bounds[k + 1]] for k in range(len(plans))]


def rescore_windows(model: LoadedModel, systems: Sequence[SystemEncoding]) -> Floats:
    """A score's sheet snippets in reading order cut into windows of every length of
    config.RESCORE_WINDOW_SNIPPETS: -> (m, 64) unit vectors, stored by the library so that the
    re-scoring of a short audio query (`search.rescore_match`) needs no GRU at query time."""
    if not systems:
        return np.zeros((0, model.model.dims.passage_dim), np.float32)
    snippets = np.concatenate([s.snippets for s in systems]).astype(np.float32, copy=False)
    windows = passages_of_lengths(
        model, snippets, RESCORE_WINDOW_SNIPPETS, RESCORE_WINDOW_HOPS, sheet=True
    )
    return np.concatenate(windows)


def rescore_window_centres(counts: npt.NDArray[np.int64]) -> Floats:
    """Where each of `rescore_windows`' rows lies, from the systems' snippet counts: the system
    ordinal + fraction of that system at the window's centre (as `ReadingWindows.at`)."""
    n = int(counts.sum())
    if n == 0:
        return np.zeros(0, np.float32)
    plans = length_plans(n, RESCORE_WINDOW_SNIPPETS, RESCORE_WINDOW_HOPS)
    centres = np.concatenate([starts + size / 2.0 for size, starts in plans])
    return _system_positions(counts, centres)


def _system_positions(counts: npt.NDArray[np.int64], centre: Floats) -> Floats:
    """Snippet positions from a score's first snippet -> system ordinal + fraction of it."""
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    ordinal = np.searchsorted(first, np.floor(centre), side="right") - 1
    ordinal = np.minimum(ordinal, len(counts) - 1)
    at = ordinal + (centre - first[ordinal]) / np.maximum(counts[ordinal], 1)
    return np.asarray(at, dtype=np.float32)


def reading_window_plan(
    n: int, length: int = SCORE_WINDOW_SNIPPETS, hop: int = SCORE_WINDOW_HOP_SNIPPETS
) -> tuple[int, npt.NDArray[np.int64]]:
    """How `n` sheet snippets of a score are cut into reading windows: (window length, starts);
    one window over all of them when there are fewer than `length` (the evaluation follows this)."""
    size = min(length, n)
    return size, passage_starts(n, size, hop)


@dataclass(frozen=True)
class ReadingWindows:
    """A score's sheet snippets read on across system ends, cut into overlapping windows."""

    at: Floats  # (m,) where each window's centre lies: system ordinal + fraction of that system
    passages: Floats  # (m, 64) L2-normalised


def reading_windows(
    model: LoadedModel,
    systems: Sequence[SystemEncoding],
    length: int = SCORE_WINDOW_SNIPPETS,
    hop: int = SCORE_WINDOW_HOP_SNIPPETS,
) -> ReadingWindows:
    """Windows of `length` consecutive snippets every `hop` over all systems in reading order.

    An audio excerpt starts and ends anywhere, most often in one system and ends in the next;
    these windows give it a sheet passage that covers the same music. A score with fewer snippets
    than `length` gets one window over all of them. `at` places each window for the search's
    reading-order matching and for finding the system it mostly shows.
    """
    counts = np.array([len(s.snippets) for s in systems], dtype=np.int64)
    n = int(counts.sum())
    if n == 0:
        return ReadingWindows(
            np.zeros(0, np.float32), np.zeros((0, model.model.dims.passage_dim), np.float32)
        )
    snippets = np.concatenate([s.snippets for s in systems]).astype(np.float32, copy=False)
    size, starts = reading_window_plan(n, length, hop)
    at = _system_positions(counts, starts + size / 2.0)  # centres, in snippets
    runs = np.stack([snippets[s : s + size] for s in starts])
    passages = _passages_of_sequences(
        model, runs.reshape(-1, snippets.shape[1]), [size] * len(starts), sheet=True
    )
    return ReadingWindows(at, passages)


# --- audio ---------------------------------------------------------------------------------------


def audio_snippets(model: LoadedModel, spectrogram: Floats) -> Floats:
    """(92, frames) -> (n, 32): 1 s snippets on the 0.9 s grid, the last one zero-padded."""
    windows = audio_windows(spectrogram, AUDIO_SNIPPET_HOP_FRAMES)
    parts = []
    with torch.inference_mode():
        for lo in range(0, len(windows), ENCODE_BATCH_WINDOWS):
            parts.append(
                model.model.audio_snippets(audio_input(windows[lo : lo + ENCODE_BATCH_WINDOWS]))
            )
    out: Floats = torch.cat(parts).numpy().astype(np.float32, copy=False)
    return out


def passage_starts(n: int, length: int, hop: int) -> npt.NDArray[np.int64]:
    """First snippet of each passage of `length` snippets every `hop` over `n` snippets.

    The last passage is moved to end on the last snippet so the recording's end is covered;
    a recording shorter than the passage gives no passage of that length.
    """
    if n < length:
        return np.zeros(0, np.int64)
    starts = np.arange(0, n - length + 1, hop, dtype=np.int64)
    if starts[-1] != n - length:
        starts = np.append(starts, n - length)
    return starts


def query_passage_plan(n: int) -> tuple[int, npt.NDArray[np.int64]]:
    """How an audio query of `n` snippets is cut to rank scores: (passage length, starts).

    Passages of about one system's length (config.QUERY_PASSAGE_SNIPPETS), or the whole query when
    it is shorter; `search_audio` and the evaluation's piece identification both follow this.
    """
    if n < QUERY_PASSAGE_SNIPPETS:
        return n, np.zeros(1 if n > 0 else 0, np.int64)
    length, hop = QUERY_PASSAGE_SNIPPETS, QUERY_PASSAGE_HOP_SNIPPETS
    return length, passage_starts(n, length, hop)


def indexed_passage_plan(
    n: int,
    lengths: Sequence[int] = AUDIO_PASSAGE_SNIPPETS,
    hops: Sequence[int] = AUDIO_PASSAGE_HOP_SNIPPETS,
) -> list[tuple[int, npt.NDArray[np.int64]]]:
    """(length, starts) of the sliding passages over `n` grid snippets: every length that fits,
    else one passage over all of them (none for n = 0). The evaluation follows this too."""
    plan = [
        (length, passage_starts(n, length, hop)) for length, hop in zip(lengths, hops, strict=True)
    ]
    plan = [(length, starts) for length, starts in plan if len(starts)]
    return plan or ([(n, np.zeros(1, np.int64))] if n > 0 else [])


def passage_spans(starts: npt.NDArray[np.int64], length: int, duration_s: float) -> Floats:
    """(start_s, end_s) of sliding passages of `length` grid snippets starting at `starts`, the
    end cut at the recording's end: -> (m, 2) float32, as the library stores them."""
    begin = starts.astype(np.float64) * SNIPPET_HOP_S
    end = np.minimum(begin + passage_seconds(length), max(duration_s, 0.0))
    return np.stack([begin, np.maximum(end, begin)], axis=1).astype(np.float32)


def audio_passages(
    model: LoadedModel,
    snippets: Floats,
    duration_s: float,
    lengths: Sequence[int] = AUDIO_PASSAGE_SNIPPETS,
    hops: Sequence[int] = AUDIO_PASSAGE_HOP_SNIPPETS,
) -> tuple[Floats, Floats]:
    """Sliding passages over grid snippets: (n, 32) -> spans (m, 2) s and embeddings (m, 64).

    For every passage length (snippets) the windows of that length are gathered with one strided
    view and summarised by the GRU in batches; all have the same length, so no padding is wasted.
    A recording (or query) shorter than every length gets one passage over all its snippets.
    """
    n = len(snippets)
    seq = torch.from_numpy(np.ascontiguousarray(snippets))
    spans: list[Floats] = []
    embeddings: list[Floats] = []

    def run(length: int, starts: npt.NDArray[np.int64]) -> None:
        if len(starts) == 0:
            return
        view = seq.unfold(0, length, 1).transpose(1, 2)  # (n - length + 1, length, 32)
        with torch.inference_mode():
            for lo in range(0, len(starts), ENCODE_BATCH_PASSAGES):
                idx = torch.from_numpy(starts[lo : lo + ENCODE_BATCH_PASSAGES])
                batch = view[idx]
                lens = torch.full((len(idx),), length, dtype=torch.int64)
                embeddings.append(model.model.audio_passages(batch, lens).numpy())
        spans.append(passage_spans(starts, length, duration_s))

    for length, starts in indexed_passage_plan(n, lengths, hops):
        run(length, starts)
    if not embeddings:
        return np.zeros((0, 2), np.float32), np.zeros((0, model.model.dims.passage_dim), np.float32)
    return np.concatenate(spans), np.concatenate(embeddings).astype(np.float32, copy=False)


def encode_audio(
    model: LoadedModel,
    spectrogram: Floats,
    lengths: Sequence[int] = AUDIO_PASSAGE_SNIPPETS,
    hops: Sequence[int] = AUDIO_PASSAGE_HOP_SNIPPETS,
) -> AudioEncoding:
    """Embed a (92, frames) spectrogram: grid snippets and sliding passages of every length.

    The index uses the defaults; a query passes its own `lengths` and `hops` (see
    `query_passage_plan`).
    """
    if spectrogram.ndim != 2 or spectrogram.shape[0] != SPEC_BINS:
        raise ValueError(f"expected a ({SPEC_BINS}, frames) spectrogram, got {spectrogram.shape}")
    duration_s = spectrogram.shape[1] / FRAMES_PER_SECOND
    if spectrogram.shape[1] == 0:
        return AudioEncoding(
            np.zeros(0, np.float32),
            np.zeros((0, model.model.dims.snippet_dim), np.float32),
            np.zeros((0, 2), np.float32),
            np.zeros((0, model.model.dims.passage_dim), np.float32),
        )
    snippets = audio_snippets(model, spectrogram)
    starts = (np.arange(len(snippets)) * SNIPPET_HOP_S).astype(np.float32)
    spans, passages = audio_passages(model, snippets, duration_s, lengths, hops)
    return AudioEncoding(starts, snippets, spans, passages)
