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
    return CropIndex(notes[order], start.astype(np.int64), stop.astype(np.int64))


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
        struck = index.notes[index.start[int(rows[i])] : index.stop[int(rows[i])]]
        if len(struck) < MIN_CROP_NOTES:
            continue
        xs = struck[:, 1].astype(np.float64)  # in time order
        if np.any(np.diff(xs) < -BACKWARD_JUMP * width):
            continue
        by_x = np.argsort(xs, kind="stable")
        px = np.concatenate([[0.0], xs[by_x], [width]])
        pf = np.maximum.accumulate(np.concatenate([[f0], struck[by_x, 3].astype(np.float64), [f1]]))
        x0 = place_u * (width - crop_w)
        g0, g1 = np.interp([x0, x0 + crop_w], px, pf)
        if g1 - g0 < AUDIO_SNIPPET_FRAMES:
            continue
        out[i] = (x0, x0 + crop_w, np.floor(g0), np.ceil(g1))
    t = torch.from_numpy(out)
    return t[:, 0].float(), t[:, 1].float(), t[:, 2].long(), t[:, 3].long()
