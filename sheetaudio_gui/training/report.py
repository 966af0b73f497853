"""The evaluation report of `sheetaudio eval`: the papers' tables on our held-out test split.

Everything here runs on the **test** split only (held-out pieces, held-out soundfont and music
font); nothing is computed on training or validation pieces.

- passage retrieval: one pair per test system, every query ranked against all test passages of
  the other modality (A2S, S2A: R@1, R@10, R@25, MRR, MR) for each model row and for the chroma
  oracle (score MIDI vs audio);
- snippet retrieval: 2,000 notehead-centred sheet windows vs onset-centred audio windows (2018);
- piece identification: a 10 s audio excerpt ranks all test pieces, cut into query passages as
  the library's audio search cuts it (core.encode.query_passage_plan); one page ranks all test
  pieces against sliding audio passages;
- robustness: the passage table again on degraded pages (scan, phone photo; systems found by the
  app's detector) and audio (tempo x0.7 and x1.3, room reverb and noise), and on pairs whose
  audio ends are moved by up to MOVED_ENDS of their length (a library's partners never begin and
  end together).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from sheetaudio_gui.config import (
    ADAPT_WINDOWS,
    AUDIO_SNIPPET_FRAMES,
    AUDIO_SNIPPET_HOP_FRAMES,
    FRAMES_PER_SECOND,
    QUERY_PASSAGE_HOP_SNIPPETS,
    RESCORE_MAX_QUERY_SNIPPETS,
    RESCORE_QUERY_SNIPPETS,
    RESCORE_WINDOW_HOPS,
    RESCORE_WINDOW_SNIPPETS,
    SEARCH_RERANK_DOCUMENTS,
)
from sheetaudio_gui.core.adapt import AdaptationSample, adapt_batch_norm
from sheetaudio_gui.core.centring import (
    centred,
    hub_weight,
    penalties_of,
    reference_rows,
    shrunk_mean,
)
from sheetaudio_gui.core.encode import (
    indexed_passage_plan,
    length_plans,
    passage_spans,
    query_passage_plan,
    reading_window_plan,
)
from sheetaudio_gui.core.errors import SheetAudioError
from sheetaudio_gui.core.jobs import Job, Progress
from sheetaudio_gui.core.models import PassageModel
from sheetaudio_gui.core.search import contiguous_match, rescore_match, with_snippet_paths
from sheetaudio_gui.training import augment, chroma
from sheetaudio_gui.training.bank import PAGE_VARIANT_VERSION, Variant, ensure_bank, manifest_hash
from sheetaudio_gui.training.batches import (
    BankTensors,
    audio_windows,
    pad_sequences,
    sheet_windows,
)
from sheetaudio_gui.training.corpus_format import iter_pieces
from sheetaudio_gui.training.evaluate import (
    Summary,
    both_directions,
    embed_rows,
    evaluation_rows,
)

log = logging.getLogger(__name__)

SNIPPET_PAIRS = 2000  # the 2018 protocol's snippet-level test size
EXCERPT_SNIPPETS = 11  # 10 s of audio: 1 + (200 - 20) / 18 snippet windows
EXCERPTS_PER_PERFORMANCE = 2
# Version of the piece-identification procedure: rows of earlier reports are carried only when it
# matches. 6: as 5, and an excerpt's re-scored value adds its snippets' path along the piece's
# sheet snippets (search.snippet_path_match), as the library re-scores short queries. 5: as 4,
# and a page's path through a recording pays for leaps between systems
# (search.contiguous_match), as the library re-scores pages. 4: as 3, and the best
# SEARCH_RERANK_DOCUMENTS pieces for an excerpt are re-scored against windows of several lengths
# (search.rescore_match), as the library re-scores short queries. 3: as 2, an excerpt is also
# matched against the score's reading windows, and a page against the library's sliding audio
# passages (config.AUDIO_PASSAGE_*), as in the library.
# 2: excerpts cut as the library's audio search cuts them, pages re-scored in reading order.
# 1: 5-snippet sub-passages voted with the whole excerpt; pages by independent matches.
PIECE_ID_METHOD = 6
# Robustness row "moved-ends": each end of every audio passage moves by up to this share of its
# length. A library's reading windows of 8 snippets start every 3 and an excerpt starts anywhere,
# so the nearest window is off by up to 1.5 of 8 snippets at each end (about 20 %).
MOVED_ENDS = 0.2
MOVED_NOTE = (
    f"moved-ends: each end of the audio passages moved by up to {MOVED_ENDS:.0%} of their length"
)
EMBED_CHUNK = 512  # snippet windows per forward pass


@dataclass
class ModelRow:
    """One row of the table: a model and how it summarises a passage."""

    name: str
    model: PassageModel
    summary: Summary
    # each modality centred on the mean of its own test material, as the library centres its
    # search on its own scores and recordings (core.centring)
    centred: bool = False
    # the CNNs' batch-norm statistics measured on the split's own windows first, as a library
    # holding the split would adapt to it (core.adapt, `sheetaudio library adapt`)
    adapted: bool = False


Page = npt.NDArray[np.uint8]


def _variants() -> list[Variant]:
    def scan(image: Page, rng: np.random.Generator) -> tuple[Page, npt.NDArray[np.float64]]:
        return augment.scan_with_geometry(image, rng)

    def phone(image: Page, rng: np.random.Generator) -> tuple[Page, npt.NDArray[np.float64]]:
        return augment.phone_photo_with_geometry(image, rng)

    def room(audio: npt.NDArray[np.float32], rng: np.random.Generator) -> npt.NDArray[np.float32]:
        return augment.degrade_recording(audio, rng)

    return [
        Variant("scan", page=scan, seed=1),
        Variant("phone-photo", page=phone, seed=2),
        Variant("tempo-0.7", tempo=0.7),
        Variant("tempo-1.3", tempo=1.3),
        Variant("reverb-noise", audio=room, seed=3),
    ]


# --- embeddings --------------------------------------------------------------------------------


def _summarise(
    model: PassageModel, flat: torch.Tensor, lengths: torch.Tensor, side: str, summary: Summary
) -> torch.Tensor:
    """Snippet embeddings (sum lengths, 32) -> passage embeddings (batch, d), unit length."""
    if summary == "mean":
        parts = torch.split(F.normalize(flat, dim=1), lengths.tolist())
        return F.normalize(torch.stack([p.mean(0) for p in parts]), dim=1)
    padded = pad_sequences(flat, lengths)
    out = (
        model.sheet_passages(padded, lengths)
        if side == "sheet"
        else model.audio_passages(padded, lengths)
    )
    return F.normalize(out, dim=1)


@torch.inference_mode()
def _system_snippets(model: PassageModel, bt: BankTensors) -> list[torch.Tensor]:
    """Every system of the bank through the sheet CNN: one (windows, 32) tensor per system."""
    gen = torch.Generator().manual_seed(0)
    out: list[torch.Tensor] = []
    for chunk in torch.split(torch.arange(len(bt.systems)), 64):
        sw, sl = sheet_windows(bt, chunk, gen, augment=False)
        out += list(torch.split(model.sheet_snippets(sw), sl.tolist()))
    return out


@torch.inference_mode()
def _system_passages(
    model: PassageModel, per_system: list[torch.Tensor], summary: Summary
) -> torch.Tensor:
    """Every system as a sheet passage: -> (n_systems, d)."""
    out = []
    for lo in range(0, len(per_system), 64):
        part = per_system[lo : lo + 64]
        lengths = torch.tensor([len(t) for t in part])
        out.append(_summarise(model, torch.cat(part), lengths, "sheet", summary))
    return torch.cat(out)


@torch.inference_mode()
def _reading_windows(
    model: PassageModel,
    per_system: list[torch.Tensor],
    system_piece: npt.NDArray[np.int64],
    summary: Summary,
) -> tuple[torch.Tensor, npt.NDArray[np.int64]]:
    """Every piece's sheet snippets read on across system ends, cut as the library cuts them
    (`core.encode.reading_windows`): -> (windows, d), (windows,) piece of each."""
    out, owner = [], []
    for piece in np.unique(system_piece):
        snippets = torch.cat([per_system[g] for g in np.flatnonzero(system_piece == piece)])
        size, starts = reading_window_plan(len(snippets))
        runs = torch.cat([snippets[s : s + size] for s in starts.tolist()])
        out.append(_summarise(model, runs, torch.full((len(starts),), size), "sheet", summary))
        owner += [int(piece)] * len(starts)
    return torch.cat(out), np.asarray(owner, dtype=np.int64)


@torch.inference_mode()
def _performance_snippets(model: PassageModel, bt: BankTensors, perf: int) -> torch.Tensor:
    """All 1 s audio windows of a performance (hop 18 frames): -> (n, 32)."""
    offset, frames = int(bt.perfs[perf, 0]), int(bt.perfs[perf, 1])
    spec = bt.specs[:, offset : offset + max(frames, AUDIO_SNIPPET_FRAMES)].float()
    if spec.shape[1] < AUDIO_SNIPPET_FRAMES:
        spec = F.pad(spec, (0, AUDIO_SNIPPET_FRAMES - spec.shape[1]))
    windows = spec.unfold(1, AUDIO_SNIPPET_FRAMES, AUDIO_SNIPPET_HOP_FRAMES).permute(1, 0, 2)
    windows = windows[:, None].contiguous()
    return torch.cat([model.audio_snippets(c) for c in torch.split(windows, EMBED_CHUNK)])


@torch.inference_mode()
def _runs(
    model: PassageModel, snippets: torch.Tensor, starts: list[int], length: int, summary: Summary
) -> torch.Tensor:
    """Audio passages made of `length` consecutive snippets from each start: -> (len(starts), d)."""
    if not starts:
        return torch.zeros(0, model.dims.passage_dim)
    n = snippets.shape[0]
    seqs = [snippets[s : min(s + length, n)] for s in starts]
    lengths = torch.tensor([len(q) for q in seqs])
    return _summarise(model, torch.cat(seqs), lengths, "audio", summary)


@torch.inference_mode()
def _passages_of_lengths(
    model: PassageModel,
    snippets: torch.Tensor,
    lengths: tuple[int, ...],
    hops: tuple[int, ...],
    side: str,
    summary: Summary,
) -> list[npt.NDArray[np.float32]]:
    """`core.encode.passages_of_lengths` with the evaluation's summary (GRU or snippet mean)."""
    out = []
    for size, starts in length_plans(snippets.shape[0], lengths, hops):
        seqs = [snippets[s : s + size] for s in starts.tolist()]
        lens = torch.full((len(seqs),), size)
        out.append(_summarise(model, torch.cat(seqs), lens, side, summary).numpy())
    return out


# --- tables ------------------------------------------------------------------------------------


def passage_table(rows: list[ModelRow], bt: BankTensors, moved_ends: float = 0.0) -> dict[str, Any]:
    """The papers' passage table: one pair per system, all test passages as candidates (with
    `moved_ends`, the audio passages' ends moved: evaluate.embed_rows)."""
    eval_rows = evaluation_rows(bt)
    table: dict[str, Any] = {}
    for row in rows:
        row.model.eval()
        sheet, audio = embed_rows(row.model, bt, eval_rows, row.summary, moved_ends)
        penalties = None
        if row.centred:
            sheet, audio, penalties = _centred_pair(sheet, audio)
        table[row.name] = both_directions(sheet, audio, penalties)
    return table


def _split_sample(bt: BankTensors, windows: int = ADAPT_WINDOWS, seed: int = 0) -> AdaptationSample:
    """What `Library.adapt` samples from a library holding the split: about `windows` score
    windows and as many audio snippets, from systems (and their plays) in random order."""
    gen = torch.Generator().manual_seed(seed)
    rows = evaluation_rows(bt)
    sheet: list[torch.Tensor] = []
    audio: list[torch.Tensor] = []
    for chunk in torch.split(rows[torch.randperm(len(rows), generator=gen)], 64):
        p = bt.passages[chunk.to(bt.device)]
        sheet.append(sheet_windows(bt, p[:, 0], gen, augment=False)[0].cpu())
        audio.append(audio_windows(bt, p[:, 1], p[:, 2], p[:, 3], gen, augment=False)[0].cpu())
        if min(sum(len(t) for t in sheet), sum(len(t) for t in audio)) >= windows:
            break
    ink = torch.cat(sheet)[:windows, 0]
    paper = ((1.0 - ink) * 255.0).round().clamp(0, 255).to(torch.uint8)  # the windows' pixels
    return AdaptationSample(paper.numpy(), torch.cat(audio)[:windows, 0].numpy(), 0, 0)


def _centred_pair(
    sheet: torch.Tensor, audio: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Both sides centred on their own (shrunk) means, and each side's hub penalties against a
    reference sample of the other, as a library of these passages would have them."""
    n = len(sheet)
    s, a = (
        centred(x, shrunk_mean(x.sum(axis=0), n, n))
        for x in (F.normalize(side.float(), dim=1).numpy() for side in (sheet, audio))
    )
    weight = hub_weight(n, n)
    live = np.ones(n, bool)
    sheet_penalty = penalties_of(s, a[reference_rows(live)], weight)
    audio_penalty = penalties_of(a, s[reference_rows(live)], weight)
    return (
        torch.from_numpy(s),
        torch.from_numpy(a),
        (torch.from_numpy(sheet_penalty), torch.from_numpy(audio_penalty)),
    )


def snippet_table(
    rows: list[ModelRow], bt: BankTensors, pairs: int = SNIPPET_PAIRS
) -> dict[str, Any]:
    """2018 protocol: notehead-centred sheet windows vs onset-centred audio windows."""
    rng = np.random.default_rng(0)
    picks = np.sort(rng.choice(len(bt.notes), size=min(pairs, len(bt.notes)), replace=False))
    notes = bt.notes[torch.from_numpy(picks)]
    gen = torch.Generator().manual_seed(0)
    table: dict[str, Any] = {}
    with torch.inference_mode():
        sw, _ = sheet_windows(bt, notes[:, 0], gen, augment=False, centre_x=notes[:, 1])
        half = AUDIO_SNIPPET_FRAMES // 2
        offsets = bt.perfs[notes[:, 2], 0]
        frames = bt.perfs[notes[:, 2], 1]
        start = (notes[:, 3] - half).clamp(min=0)
        start = torch.minimum(start, (frames - AUDIO_SNIPPET_FRAMES).clamp(min=0))
        idx = offsets[:, None] + start[:, None] + torch.arange(AUDIO_SNIPPET_FRAMES)[None, :]
        aw = bt.specs[:, idx].permute(1, 0, 2).float()[:, None].contiguous()
        for row in rows:
            row.model.eval()
            table[row.name] = both_directions(
                row.model.sheet_snippets(sw), row.model.audio_snippets(aw)
            )
    return table


def _rank_of(scores: dict[int, float], true_piece: int) -> int:
    """1 + the other pieces scoring >= the true one (all if absent): ties must not flatter."""
    own = scores.get(true_piece, -np.inf)
    return 1 + sum(1 for q, v in scores.items() if q != true_piece and v >= own)


def piece_identification(
    row: ModelRow, bt: BankTensors, system_pages: list[int], seed: int = 0
) -> dict[str, Any]:
    """Top-1/top-5 piece identification from 10 s audio excerpts and from single pages."""
    model = row.model.eval()
    rng = np.random.default_rng(seed)
    system_piece = bt.systems[:, 2].numpy()
    pieces = np.unique(system_piece)
    per_system = _system_snippets(model, bt)  # the sheet CNN runs once for both
    sheet = _system_passages(model, per_system, row.summary)  # (n_systems, d)
    reading, reading_piece = _reading_windows(model, per_system, system_piece, row.summary)
    candidate_piece = np.concatenate([system_piece, reading_piece])  # as the library matches
    perf_snippets = [_performance_snippets(model, bt, p) for p in range(len(bt.perfs))]
    # the library's audio passages: sliding windows of several lengths over every performance
    windows: list[torch.Tensor] = []
    window_piece: list[int] = []
    window_spans: list[npt.NDArray[np.float32]] = []  # start, end s: as the library stores them
    perf_columns = []  # each performance's windows are one contiguous block of columns
    for p, snippets in enumerate(perf_snippets):
        first = len(window_piece)
        duration_s = float(bt.perfs[p, 1]) / FRAMES_PER_SECOND
        for length, starts in indexed_passage_plan(snippets.shape[0]):  # as the library
            emb = _runs(model, snippets, starts.tolist(), length, row.summary)
            windows.append(emb)
            window_piece += [int(bt.perfs[p, 2])] * len(emb)
            window_spans.append(passage_spans(starts, length, duration_s))
        perf_columns.append(slice(first, len(window_piece)))
    audio = torch.cat(windows)
    wp = np.asarray(window_piece)
    span_of = np.concatenate(window_spans).astype(np.float64)
    centre = _LibraryCentring.of(sheet, reading, audio, row.centred)
    sheet, reading, audio = centre.sheet(sheet), centre.reading(reading), centre.audio(audio)
    centre.measure_hubs(sheet, audio)
    candidates = torch.cat([sheet, reading])
    candidate_penalty = np.concatenate(
        [centre.penalty(sheet, "audio"), centre.penalty(reading, "audio")]
    )
    audio_penalty = centre.penalty(audio, "sheet")
    # audio -> piece: each query passage of the excerpt adds its best similarity per piece, over
    # the piece's systems and reading windows; the best pieces are re-scored as the library
    # re-scores a short query (windows of several lengths: search.rescore_match, joined with
    # the path of its snippets along the piece's: search.with_snippet_paths)
    piece_snippets = {
        int(q): torch.cat([per_system[g] for g in np.flatnonzero(system_piece == q)])
        for q in pieces
    }
    rescore_windows = {
        int(q): centre.rescore(
            _passages_of_lengths(
                model,
                piece_snippets[int(q)],
                RESCORE_WINDOW_SNIPPETS,
                RESCORE_WINDOW_HOPS,
                "sheet",
                row.summary,
            )
        )
        for q in pieces
    }
    query_hops = (QUERY_PASSAGE_HOP_SNIPPETS,) * len(RESCORE_QUERY_SNIPPETS)
    audio_ranks = []
    for p, snippets in enumerate(perf_snippets):
        n = snippets.shape[0]
        for _ in range(EXCERPTS_PER_PERFORMANCE):
            s0 = int(rng.integers(0, max(1, n - EXCERPT_SNIPPETS + 1)))
            excerpt = snippets[s0 : s0 + EXCERPT_SNIPPETS]
            length, query_starts = query_passage_plan(len(excerpt))  # as the library's search
            emb = centre.audio(_runs(model, excerpt, query_starts.tolist(), length, row.summary))
            sim = (emb @ candidates.T).numpy() - candidate_penalty  # (subs, systems + windows)
            independent = _best_per_piece(sim, candidate_piece, pieces).sum(axis=0)
            scores = {int(q): float(v) for q, v in zip(pieces, independent, strict=True)}
            rerank = pieces[np.argsort(-independent, kind="stable")[:SEARCH_RERANK_DOCUMENTS]]
            truth = int(bt.perfs[p, 2])
            if len(excerpt) <= RESCORE_MAX_QUERY_SNIPPETS and truth in rerank:
                runs = _passages_of_lengths(
                    model, excerpt, RESCORE_QUERY_SNIPPETS, query_hops, "audio", row.summary
                )
                runs = [centre.audio(torch.from_numpy(r)).numpy() for r in runs]
                values = [rescore_match(runs, *rescore_windows[int(q)]) for q in rerank]
                sheets = [piece_snippets[int(q)].numpy() for q in rerank]
                joined = with_snippet_paths(values, excerpt.numpy(), sheets)
                scores = {int(q): v for q, v in zip(rerank, joined, strict=True)}
            audio_ranks.append(_rank_of(scores, truth))
    # page -> piece: each system of the page takes its best sliding audio passage per piece
    # (the library's rank_recordings: independent matches, then the best re-scored along
    # passages that follow one another as the systems do; a piece scores as its best performance)
    perf_piece = bt.perfs[:, 2].numpy()
    page_ranks = []
    for piece_no, groups in _pages_of(system_piece.tolist(), system_pages).items():
        for systems in groups:
            sim = (sheet[systems] @ audio.T).numpy() - audio_penalty
            independent = _best_per_piece(sim, wp, pieces).mean(axis=0)
            scores = {int(q): float(v) for q, v in zip(pieces, independent, strict=True)}
            rerank = pieces[np.argsort(-independent, kind="stable")[:SEARCH_RERANK_DOCUMENTS]]
            if len(systems) > 1 and piece_no in rerank:  # else its independent rank is > 50
                scores = {
                    int(q): max(
                        contiguous_match(
                            sim[:, perf_columns[p]], span_of[perf_columns[p]], with_path=False
                        )[0]
                        for p in np.flatnonzero(perf_piece == q)
                    )
                    for q in rerank
                }
            page_ranks.append(_rank_of(scores, piece_no))
    return {
        "pieces": len(pieces),
        "audio_10s": _top(audio_ranks),
        "page": _top(page_ranks),
    }


@dataclass
class _LibraryCentring:
    """The library's centring (core.centring, as `Library.score_rows` / `audio_rows` and the
    search apply it) mirrored on the test split's embeddings: each stored modality on its own
    mean, queries on their own modality's mean. Zero means (no centring) for plain rows."""

    systems: npt.NDArray[np.float32]
    reading_windows: npt.NDArray[np.float32]
    recordings: npt.NDArray[np.float32]
    weight: float = 0.0  # of the hub penalties (`core.centring`); 0 for plain rows
    references: dict[str, npt.NDArray[np.float32]] = field(default_factory=dict)

    @staticmethod
    def of(
        sheet: torch.Tensor, reading: torch.Tensor, audio: torch.Tensor, centred: bool
    ) -> _LibraryCentring:
        n_s, n_a = len(sheet), len(audio)
        if not centred:
            zero = np.zeros(sheet.shape[1], np.float32)
            return _LibraryCentring(zero, zero, zero)
        return _LibraryCentring(
            shrunk_mean(sheet.sum(0).numpy(), n_s, n_a),
            shrunk_mean(reading.sum(0).numpy(), len(reading), n_a),
            shrunk_mean(audio.sum(0).numpy(), n_a, n_s),
            hub_weight(n_s, n_a),
        )

    def sheet(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(centred(x.numpy(), self.systems))

    def reading(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(centred(x.numpy(), self.reading_windows))

    def audio(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(centred(x.numpy(), self.recordings))

    def measure_hubs(self, sheet: torch.Tensor, audio: torch.Tensor) -> None:
        """Reference samples of the (centred) systems and audio windows, as the library draws
        them (`core.centring.reference_rows`)."""
        for name, x in (("sheet", sheet), ("audio", audio)):
            self.references[name] = x.numpy()[reference_rows(np.ones(len(x), bool))]

    def penalty(self, rows: torch.Tensor, against: str) -> npt.NDArray[np.float32]:
        """Hub penalties of centred rows against the other modality's reference ("sheet" or
        "audio")."""
        return penalties_of(rows.numpy(), self.references[against], self.weight)

    def rescore(
        self, parts: list[npt.NDArray[np.float32]]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """A score's re-scoring windows (centred as the search centres them) and their hub
        penalties."""
        windows = centred(np.concatenate(parts), self.reading_windows)
        return windows, penalties_of(windows, self.references["audio"], self.weight)


def _best_per_piece(
    sim: npt.NDArray[np.float32], owner: npt.NDArray[np.int64], pieces: npt.NDArray[np.int64]
) -> npt.NDArray[np.float32]:
    """Each row's best similarity among the columns of each piece: (k, n) -> (k, len(pieces)).

    Columns are grouped by piece once (a stable sort) and reduced with `np.maximum.reduceat`,
    instead of one boolean mask over all columns per piece.
    """
    order = np.argsort(owner, kind="stable")
    sorted_owner = owner[order]
    starts = np.searchsorted(sorted_owner, pieces, side="left")
    if np.any(np.searchsorted(sorted_owner, pieces, side="right") == starts):
        raise ValueError("every piece needs at least one column")
    return np.maximum.reduceat(sim[:, order], starts, axis=1)


def _pages_of(system_piece: list[int], system_pages: list[int]) -> dict[int, list[list[int]]]:
    """Global system indices grouped by piece, then by page."""
    pages: dict[int, dict[int, list[int]]] = {}
    for g, (piece, page) in enumerate(zip(system_piece, system_pages, strict=True)):
        pages.setdefault(int(piece), {}).setdefault(int(page), []).append(g)
    return {piece: list(by_page.values()) for piece, by_page in pages.items()}


def _top(ranks: list[int]) -> dict[str, float]:
    r = np.asarray(ranks)
    return {
        "n": int(len(r)),
        "top1": float((r <= 1).mean() * 100) if len(r) else float("nan"),
        "top5": float((r <= 5).mean() * 100) if len(r) else float("nan"),
    }


def chroma_oracle_table(corpus: Path, bt: BankTensors, pieces: list[str]) -> dict[str, Any]:
    """The symbolic baseline on the same pairs as the model rows."""
    by_id = {p.id: p for p in iter_pieces(corpus, "test")}
    notes_of_system: list[list[tuple[int, float, float]]] = []
    for piece_id in pieces:
        piece = by_id[piece_id]
        system_of = piece.notehead_system()
        first: dict[str, tuple[int, float, float]] = {}
        for n in piece.score_notes:  # the first play of each notehead
            if n.note_id not in first or n.onset_s < first[n.note_id][1]:
                first[n.note_id] = (n.pitch, n.onset_s, n.offset_s)
        per_system: list[list[tuple[int, float, float]]] = [[] for _ in piece.systems]
        for note_id, note in first.items():
            g = system_of.get(note_id)
            if g is not None:
                per_system[g].append(note)
        notes_of_system += per_system
    rows = bt.passages[evaluation_rows(bt)]
    sheet, audio = [], []
    for g, perf, f0, f1 in rows.tolist():
        notes = notes_of_system[g]
        start = min((n[1] for n in notes), default=0.0)
        end = max((n[2] for n in notes), default=start + 1.0)
        sheet.append(chroma.passage_vector(chroma.score_chroma(notes, start, end)))
        offset = int(bt.perfs[perf, 0])
        spec = bt.specs[:, offset + f0 : offset + max(f1, f0 + 1)].float().numpy()
        audio.append(chroma.passage_vector(chroma.audio_chroma(spec)))
    return both_directions(torch.from_numpy(np.stack(sheet)), torch.from_numpy(np.stack(audio)))


# --- the whole report --------------------------------------------------------------------------


def evaluation_report(
    corpus: Path,
    rows: list[ModelRow],
    focus: set[str],
    split: str = "test",
    robustness: bool = True,
) -> Job[dict[str, Any]]:
    """All tables for `rows` on `split`; the rows named in `focus` (the best, the baseline)
    also get piece identification and the robustness table."""
    steps = 5 + (len(_variants()) + 1 if robustness else 0)
    yield Progress(0, steps, f"bank of the {split} split")
    bank = yield from ensure_bank(Path(corpus), split)
    bt = _tensors(bank)
    for row in rows:
        if row.adapted:
            row.model = adapt_batch_norm(row.model, _split_sample(bt))
    report: dict[str, Any] = {
        "split": split,
        "corpus": str(corpus),
        "corpus_manifest_hash": manifest_hash(Path(corpus)),
        "counts": bank.meta["counts"],
        "passage_pairs": int(len(evaluation_rows(bt))),
        "piece_identification_method": PIECE_ID_METHOD,
        "page_variant_version": PAGE_VARIANT_VERSION,
    }
    yield Progress(1, steps, "passage retrieval")
    report["passages"] = passage_table(rows, bt)
    yield Progress(2, steps, "chroma oracle")
    report["passages"]["chroma oracle (score MIDI vs audio)"] = chroma_oracle_table(
        Path(corpus), bt, bank.pieces
    )
    yield Progress(3, steps, "snippet retrieval")
    report["snippets"] = snippet_table(rows, bt)
    yield Progress(4, steps, "piece identification")
    focused = [r for r in rows if r.name in focus]
    system_pages = list(bank.meta["system_pages"])
    report["piece_identification"] = {
        r.name: piece_identification(r, bt, system_pages) for r in focused
    }
    report["robustness"] = {}
    if robustness:
        for k, variant in enumerate(_variants()):
            yield Progress(5 + k, steps, f"robustness: {variant.name}")
            vbank = yield from ensure_bank(Path(corpus), split, variant)
            vt = _tensors(vbank)
            table = passage_table(focused, vt)
            table["systems_missed_by_detector"] = vbank.meta.get("systems_missed_by_detector", 0)
            report["robustness"][variant.name] = table
        yield Progress(steps - 1, steps, "robustness: audio ends moved")
        report["robustness"]["moved-ends"] = passage_table(focused, bt, MOVED_ENDS)
    yield Progress(steps, steps, "done")
    return report


CARRIED_SUFFIX = " [earlier report]"


def carry_rows(report: dict[str, Any], previous: dict[str, Any]) -> dict[str, Any]:
    """`report` with the model rows of an earlier report on the same test material added first.

    Stage weights of an earlier run may be gone (another machine) while its numbers stand: rows
    are carried only when the split, the number of passage pairs and every count of the test
    material (pieces, systems, performances, passages, noteheads, audio seconds) are the same, and
    are marked as such. (Counts, not the manifest hash: reports made before the hash left out the
    build's timings carry a hash of those too.) Rows named like a new one and the (recomputed)
    chroma oracle are not carried, nor piece-identification rows measured by another procedure
    (PIECE_ID_METHOD; reports without the key used method 1), nor robustness rows of degraded
    pages detected and cut by another version of the pipeline (bank.PAGE_VARIANT_VERSION;
    reports without the key used version 2).
    """
    for key in ("split", "passage_pairs", "counts"):
        if previous.get(key) != report.get(key):
            raise SheetAudioError(
                f"the earlier report was made on other test material ({key}: "
                f"{previous.get(key)!r}, now {report.get(key)!r}); its rows cannot be compared"
            )
    names = [n for n in previous.get("rows", {}) if n not in report["rows"]]

    def mark(name: str) -> str:  # rows carried twice are marked once
        return name if name.endswith(CARRIED_SUFFIX) else name + CARRIED_SUFFIX

    def merged(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        first = {mark(n): old[n] for n in names if n in old}
        return {**first, **new}

    out = dict(report)
    out["passages"] = merged(previous["passages"], report["passages"])
    out["snippets"] = merged(previous["snippets"], report["snippets"])
    same_method = previous.get("piece_identification_method", 1) == report.get(
        "piece_identification_method", 1
    )
    out["piece_identification"] = merged(
        previous["piece_identification"] if same_method else {}, report["piece_identification"]
    )
    same_pages = previous.get("page_variant_version", 2) == report.get("page_variant_version", 2)
    page_variants = {v.name for v in _variants() if v.page is not None}

    def comparable(variant: str) -> bool:  # degraded pages cut another way are other material
        return same_pages or variant not in page_variants

    out["robustness"] = {
        variant: merged(
            previous.get("robustness", {}).get(variant, {}) if comparable(variant) else {}, table
        )
        for variant, table in report["robustness"].items()
    }
    out["rows"] = {**{mark(n): previous["rows"][n] for n in names}, **report["rows"]}
    return out


def _tensors(bank: Any) -> BankTensors:
    return BankTensors.from_bank(bank, "cpu")


def format_report(report: dict[str, Any]) -> Iterator[str]:
    """The tables as plain text lines."""
    head = f"{'':44} {'A2S R@1':>8} {'R@10':>6} {'R@25':>6} {'MRR':>6} {'MR':>5}  "
    head += f"{'S2A R@1':>8} {'R@10':>6} {'R@25':>6} {'MRR':>6} {'MR':>5}"

    def line(name: str, m: dict[str, Any]) -> str:
        a, s = m["A2S"], m["S2A"]
        return (
            f"{name[:44]:44} {a['R@1']:8.1f} {a['R@10']:6.1f} {a['R@25']:6.1f} {a['MRR']:6.3f} "
            f"{a['MR']:5.0f}  {s['R@1']:8.1f} {s['R@10']:6.1f} {s['R@25']:6.1f} "
            f"{s['MRR']:6.3f} {s['MR']:5.0f}"
        )

    yield f"split {report['split']}: {report['passage_pairs']} passage pairs, " + (
        f"{report['counts']['pieces']} pieces, corpus {report['corpus_manifest_hash']}"
    )
    yield ""
    yield "Passage retrieval (one pair per system, all test passages as candidates)"
    yield head
    for name, m in report["passages"].items():
        yield line(name, m)
    yield ""
    yield f"Snippet retrieval ({SNIPPET_PAIRS} pairs, 2018 protocol)"
    yield head
    for name, m in report["snippets"].items():
        yield line(name, m)
    yield ""
    yield "Piece identification (all test pieces ranked)"
    for name, m in report["piece_identification"].items():
        a, p = m["audio_10s"], m["page"]
        yield (
            f"{name[:44]:44} 10 s audio: top-1 {a['top1']:5.1f} % top-5 {a['top5']:5.1f} % "
            f"(n={a['n']}); one page: top-1 {p['top1']:5.1f} % top-5 {p['top5']:5.1f} % "
            f"(n={p['n']})"
        )
    if report["robustness"]:
        yield ""
        yield f"Robustness (passage retrieval on degraded test material; {MOVED_NOTE})"
        yield head
        for variant, table in report["robustness"].items():
            for name, m in table.items():
                if isinstance(m, dict):
                    yield line(f"{variant}: {name}", m)
            missed = table.get("systems_missed_by_detector", 0)
            if missed:
                yield f"  ({variant}: detector missed {missed} systems; cut at the true box)"


def markdown_report(report: dict[str, Any]) -> str:
    """The same tables as `format_report`, as Markdown (the model card, the About dialog)."""
    cols = ("R@1", "R@10", "R@25", "MRR", "MR")
    head = "| | " + " | ".join(f"A2S {c}" for c in cols) + " | "
    head += " | ".join(f"S2A {c}" for c in cols) + " |\n|---" + "|---:" * 10 + "|"

    def cells(m: dict[str, Any]) -> str:
        out = []
        for direction in ("A2S", "S2A"):
            d = m[direction]
            out += [f"{d['R@1']:.1f}", f"{d['R@10']:.1f}", f"{d['R@25']:.1f}"]
            out += [f"{d['MRR']:.3f}", f"{d['MR']:.0f}"]
        return " | ".join(out)

    lines = [
        f"Split **{report['split']}**: {report['passage_pairs']} passage pairs, "
        f"{report['counts']['pieces']} pieces, corpus manifest `{report['corpus_manifest_hash']}`."
        " R@k in %, MRR mean reciprocal rank, MR median rank; A2S: audio query → sheet"
        " candidates, S2A: sheet query → audio candidates.",
        "",
        "**Passage retrieval** (one pair per system, all test passages as candidates)",
        "",
        head,
    ]
    lines += [f"| {name} | {cells(m)} |" for name, m in report["passages"].items()]
    lines += ["", f"**Snippet retrieval** ({SNIPPET_PAIRS} pairs, 2018 protocol)", "", head]
    lines += [f"| {name} | {cells(m)} |" for name, m in report["snippets"].items()]
    lines += [
        "",
        "**Piece identification** (all test pieces ranked)",
        "",
        "| | 10 s audio top-1 | top-5 | n | one page top-1 | top-5 | n |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in report["piece_identification"].items():
        a, p = m["audio_10s"], m["page"]
        lines.append(
            f"| {name} | {a['top1']:.1f} | {a['top5']:.1f} | {a['n']} | {p['top1']:.1f} |"
            f" {p['top5']:.1f} | {p['n']} |"
        )
    if report["robustness"]:
        lines += ["", f"**Robustness** (passage retrieval on degraded test material; {MOVED_NOTE})"]
        lines += ["", head]
        notes = []
        for variant, table in report["robustness"].items():
            for name, m in table.items():
                if isinstance(m, dict):
                    lines.append(f"| {variant}: {name} | {cells(m)} |")
            missed = table.get("systems_missed_by_detector", 0)
            if missed:
                notes.append(f"{variant}: the detector missed {missed} systems (cut at true boxes)")
        if notes:
            lines += ["", "; ".join(notes) + "."]
    return "\n".join(lines) + "\n"
