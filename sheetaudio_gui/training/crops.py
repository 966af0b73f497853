"""Aligned passage crops: a random stretch of a staff system and the audio frames that play it.

Trained on whole systems only, the GRUs learn to summarise passages that begin at a system's left
edge (clef, key signature) and end at its right edge; a library query - 10 s of a recording, a
rectangle on a page - begins and ends anywhere. A crop is cut by x on the sheet and mapped to
frames through the bank's notehead <-> onset alignment (`notes`), so that both sides still hold the
same music. `train --crops P` replaces that share of each batch's pairs by crops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from sheetaudio_gui.config import (
    AUDIO_SNIPPET_FRAMES,
    SHEET_SNIPPET_HOP_PX,
    SHEET_SNIPPET_WIDTH_PX,
)
from sheetaudio_gui.training.batches import BankTensors

CROP_WINDOWS = (3, 10)  # sheet windows per crop, drawn uniformly up to one less than the system
ACROSS_WINDOWS = (4, 10)  # sheet windows of a pair cut across a system end (both systems' parts)
LOOSE_SHIFT = 0.25  # a loosened pair's audio ends each move by up to this share of its length
FOLLOW_GAP_FRAMES = 20  # a next system's play starting within 1 s of this one's end follows it
MIN_CROP_NOTES = 4  # a system play with fewer aligned noteheads is never cropped
BACKWARD_JUMP = 0.25  # a play whose onsets jump back by this share of the width (a repeat
# inside the system) has no monotonic x -> time map: it is never cropped

Ints = npt.NDArray[np.int64]


@dataclass(frozen=True)
class CropIndex:
    """For every passage row of a bank, the noteheads struck during that play of its system."""

    notes: Ints  # (n, 4) the bank's notes (system, x, performance, frame), sorted by play and time
    start: Ints  # (n_passages,) first row in `notes` of the passage's noteheads
    stop: Ints  # (n_passages,) end row
    # (n_passages,) the passage row in which the same performance plays the piece's next system
    # right after this one (reading on across the system end), or -1 (last system, a repeat)
    following: Ints


def crop_index(bt: BankTensors) -> CropIndex:
    """Sort the notes by (system, performance, frame) once; each passage is then one slice."""
    notes = bt.notes.cpu().numpy().astype(np.int64)
    passages = bt.passages.cpu().numpy().astype(np.int64)
    n_perfs = max(int(bt.perfs.shape[0]), 1)
    big = int(max(notes[:, 3].max(initial=0), passages[:, 3].max(initial=0))) + 1
    key = (notes[:, 0] * n_perfs + notes[:, 2]) * big + notes[:, 3]
    order = np.argsort(key, kind="stable")
    key = key[order]
    play = (passages[:, 0] * n_perfs + passages[:, 1]) * big
    start = np.searchsorted(key, play + passages[:, 2], side="left")
    stop = np.searchsorted(key, play + passages[:, 3], side="left")
    following = _following_plays(passages, bt.systems[:, 2].cpu().numpy().astype(np.int64))
    return CropIndex(notes[order], start.astype(np.int64), stop.astype(np.int64), following)


def _following_plays(passages: Ints, piece_of_system: Ints) -> Ints:
    """For each passage row, the row of the next system's play that starts within
    FOLLOW_GAP_FRAMES of its end in the same performance, or -1."""
    starts: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for row, (system, perf, f0, _) in enumerate(passages.tolist()):
        starts.setdefault((system, perf), []).append((f0, row))
    out = np.full(len(passages), -1, dtype=np.int64)
    n_systems = len(piece_of_system)
    for row, (system, perf, _, f1) in enumerate(passages.tolist()):
        nxt = system + 1
        if nxt >= n_systems or piece_of_system[nxt] != piece_of_system[system]:
            continue
        near = [(abs(f0 - f1), r) for f0, r in starts.get((nxt, perf), [])]
        if near and min(near)[0] <= FOLLOW_GAP_FRAMES:
            out[row] = min(near)[1]
    return out


def _playable(index: CropIndex, row: int, width: float) -> bool:
    """Enough noteheads, played left to right (no repeat inside the system): the play has a
    monotonic x -> time map."""
    struck = index.notes[index.start[row] : index.stop[row]]
    if len(struck) < MIN_CROP_NOTES:
        return False
    xs = struck[:, 1].astype(np.float64)  # in time order
    return not np.any(np.diff(xs) < -BACKWARD_JUMP * width)


def _x_to_frame(
    index: CropIndex, row: int, f0: int, f1: int, width: float, x: float | npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """The frames at which strip positions x of a passage row are played (noteheads' x ->
    onset, made monotonic; the system's ends -> the play's ends)."""
    struck = index.notes[index.start[row] : index.stop[row]]
    xs = struck[:, 1].astype(np.float64)
    by_x = np.argsort(xs, kind="stable")
    px = np.concatenate([[0.0], xs[by_x], [width]])
    pf = np.maximum.accumulate(np.concatenate([[f0], struck[by_x, 3].astype(np.float64), [f1]]))
    return np.asarray(np.interp(x, px, pf), dtype=np.float64)


def crop_rows(
    bt: BankTensors, index: CropIndex, rows: torch.Tensor, fraction: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sheet x-range and frame range for each passage row: -> x0, x1, f0, f1 (each (batch,)).

    About `fraction` of the rows become crops of CROP_WINDOWS sheet windows; the others (and
    rows that cannot be cropped) keep the whole system and its whole play.
    """
    picked = bt.passages[rows.to(bt.device)]
    passages = picked.cpu().numpy().astype(np.int64)
    widths = bt.systems[picked[:, 0], 1].cpu().numpy().astype(np.float64)
    draws = torch.rand(len(rows), 3, generator=gen).numpy()
    lo, hi = CROP_WINDOWS
    out = np.zeros((len(rows), 4), dtype=np.float64)
    for i, ((_, _, f0, f1), width, (use, length_u, place_u)) in enumerate(
        zip(passages, widths, draws, strict=True)
    ):
        out[i] = (0.0, width, f0, f1)
        fits = int((width - SHEET_SNIPPET_WIDTH_PX) // SHEET_SNIPPET_HOP_PX)  # whole system - 1
        top = min(hi, fits)
        if use >= fraction or top < lo:
            continue
        windows = lo + int(length_u * (top - lo + 1))
        crop_w = (windows - 1) * SHEET_SNIPPET_HOP_PX + SHEET_SNIPPET_WIDTH_PX
        row = int(rows[i])
        if not _playable(index, row, width):
            continue
        x0 = place_u * (width - crop_w)
        g0, g1 = _x_to_frame(index, row, int(f0), int(f1), width, np.array([x0, x0 + crop_w]))
        if g1 - g0 < AUDIO_SNIPPET_FRAMES:
            continue
        out[i] = (x0, x0 + crop_w, np.floor(g0), np.ceil(g1))
    t = torch.from_numpy(out)
    return t[:, 0].float(), t[:, 1].float(), t[:, 2].long(), t[:, 3].long()


@dataclass(frozen=True)
class Across:
    """Pairs cut across a system end: the tail of the row's system from x0, the head of the next
    system up to x1, and the frames [f0, f1) that play them (only where `use`)."""

    use: torch.Tensor  # (batch,) bool
    next_row: torch.Tensor  # (batch,) passage row of the next system's play (-1 where not used)
    x0: torch.Tensor  # (batch,) float, strip px in the row's system
    x1: torch.Tensor  # (batch,) float, strip px in the next system
    f0: torch.Tensor  # (batch,) int64
    f1: torch.Tensor  # (batch,) int64


def across_rows(
    bt: BankTensors, index: CropIndex, rows: torch.Tensor, fraction: float, gen: torch.Generator
) -> Across:
    """Cut about `fraction` of the passage rows across the end of their system.

    A library reads a score on across system and page ends (reading windows) and a 10 s excerpt
    usually spans two systems; pairs cut only within systems never show the model such a
    passage. Here ACROSS_WINDOWS sheet windows are split between the tail of the system and the
    head of the next one, and the frames come from the notehead <-> onset alignment of both
    plays. Rows without a following play (last system, a repeat) stay as they are.
    """
    passages = bt.passages.cpu().numpy().astype(np.int64)
    widths = bt.systems[:, 1].cpu().numpy().astype(np.float64)
    draws = torch.rand(len(rows), 3, generator=gen).numpy()
    lo, hi = ACROSS_WINDOWS
    n = len(rows)
    use = np.zeros(n, dtype=bool)
    out = np.zeros((n, 5), dtype=np.float64)  # next_row, x0, x1, f0, f1
    out[:, 0] = -1
    for i, (row, (pick, length_u, split_u)) in enumerate(zip(rows.tolist(), draws, strict=True)):
        nxt = int(index.following[row])
        if pick >= fraction or nxt < 0:
            continue
        s, _, f0, f1 = passages[row]
        t, _, g0, g1 = passages[nxt]
        w_s, w_t = widths[s], widths[t]
        if not (_playable(index, row, w_s) and _playable(index, nxt, w_t)):
            continue
        fits_s = 1 + int(max(w_s - SHEET_SNIPPET_WIDTH_PX, 0) // SHEET_SNIPPET_HOP_PX)
        fits_t = 1 + int(max(w_t - SHEET_SNIPPET_WIDTH_PX, 0) // SHEET_SNIPPET_HOP_PX)
        total = min(lo + int(length_u * (hi - lo + 1)), fits_s + fits_t)
        if total < 2:
            continue
        tail = min(max(1, int(round(split_u * total))), total - 1, fits_s)
        head = min(total - tail, fits_t)
        x0 = max(w_s - ((tail - 1) * SHEET_SNIPPET_HOP_PX + SHEET_SNIPPET_WIDTH_PX), 0.0)
        x1 = min((head - 1) * SHEET_SNIPPET_HOP_PX + SHEET_SNIPPET_WIDTH_PX, w_t)
        a = float(_x_to_frame(index, row, int(f0), int(f1), w_s, x0))
        b = float(_x_to_frame(index, nxt, int(g0), int(g1), w_t, x1))
        if b - a < AUDIO_SNIPPET_FRAMES:
            continue
        use[i] = True
        out[i] = (nxt, x0, x1, np.floor(a), np.ceil(b))
    t_out = torch.from_numpy(out)
    return Across(
        torch.from_numpy(use),
        t_out[:, 0].long(),
        t_out[:, 1].float(),
        t_out[:, 2].float(),
        t_out[:, 3].long(),
        t_out[:, 4].long(),
    )


def loosen(
    f0: torch.Tensor, f1: torch.Tensor, fraction: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move both audio ends of about `fraction` of the pairs, each by up to LOOSE_SHIFT of the
    pair's length, either way: -> f0, f1.

    A library never matches exact partners: a 10 s excerpt meets reading windows that begin and
    end elsewhere in the music, a system meets sliding audio passages. Trained on exact pairs
    only, the GRUs learned their ends: moving both ends of the validation pairs by 10 % of their
    length (into the neighbouring music or out of the system) took R@1 from 68.8 % to 48 %, by
    25 % to 12-24 % (v7 step 300). A loosened pair still shares most of its music with its
    partner, so it stays the positive; at least one audio snippet is kept.
    """
    n = len(f0)
    draws = torch.rand(n, 3, generator=gen)
    use = draws[:, 0] < fraction
    length = (f1 - f0).float()
    shift0 = ((draws[:, 1] * 2 - 1) * LOOSE_SHIFT * length).round().long()
    shift1 = ((draws[:, 2] * 2 - 1) * LOOSE_SHIFT * length).round().long()
    g0 = torch.where(use, f0 + shift0, f0).clamp(min=0)
    g1 = torch.where(use, f1 + shift1, f1)
    return g0, torch.maximum(g1, g0 + AUDIO_SNIPPET_FRAMES)
