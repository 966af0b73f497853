"""The retrieval protocol of the papers: rank every query against all candidates of the other side.

One pair per system (its first play in its first performance); for each query the rank of its own
partner among all candidates gives R@1, R@10, R@25, the mean reciprocal rank (MRR) and the median
rank (MR), in both directions: audio -> sheet (A2S) and sheet -> audio (S2A).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from sheetaudio_gui.config import AUDIO_SNIPPET_FRAMES
from sheetaudio_gui.core.models import PassageModel
from sheetaudio_gui.training.batches import BankTensors, audio_windows, pad_sequences, sheet_windows

Summary = Literal[
    "gru", "mean"
]  # GRU passage encoder, or the mean of snippet embeddings (baseline)
EVAL_CHUNK = 64  # passages embedded at once


def ranks(
    queries: torch.Tensor, candidates: torch.Tensor, penalty: torch.Tensor | None = None
) -> torch.Tensor:
    """1-based rank of candidate i for query i under cosine similarity: (n, d), (n, d) -> (n,).
    `penalty`: each candidate's hub penalty, subtracted from its similarities (as a library
    does: `core.centring`)."""
    q = F.normalize(queries.float(), dim=1)
    c = F.normalize(candidates.float(), dim=1)
    sim = q @ c.T
    if penalty is not None:
        sim = sim - penalty.float()[None, :]
    own = sim.diag()[:, None]
    return (sim > own).sum(dim=1) + 1


def metrics_from_ranks(r: torch.Tensor) -> dict[str, float]:
    rf = r.double()
    return {
        "R@1": float((r <= 1).double().mean() * 100),
        "R@10": float((r <= 10).double().mean() * 100),
        "R@25": float((r <= 25).double().mean() * 100),
        "MRR": float((1.0 / rf).mean()),
        "MR": float(rf.median()),
    }


def both_directions(
    sheet: torch.Tensor,
    audio: torch.Tensor,
    penalties: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics for audio -> sheet and sheet -> audio from paired embeddings (row i with row i);
    `penalties`: the sheet and the audio rows' hub penalties as candidates."""
    sheet_penalty, audio_penalty = penalties if penalties is not None else (None, None)
    return {
        "A2S": metrics_from_ranks(ranks(audio, sheet, sheet_penalty)),
        "S2A": metrics_from_ranks(ranks(sheet, audio, audio_penalty)),
        "pairs": {"n": float(len(sheet))},
    }


def evaluation_rows(bt: BankTensors, limit: int | None = None, seed: int = 0) -> torch.Tensor:
    """One passage row per system: the first listed (first performance, first play).

    With `limit`, a fixed random subset of systems (the same for a seed), for quick validation.
    """
    systems = bt.passages[:, 0].cpu().numpy()
    _, first = np.unique(systems, return_index=True)
    rows = np.sort(first)
    if limit is not None and limit < len(rows):
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=limit, replace=False))
    return torch.from_numpy(rows)


@torch.inference_mode()
def embed_rows(
    model: PassageModel,
    bt: BankTensors,
    rows: torch.Tensor,
    summary: Summary = "gru",
    moved_ends: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sheet and audio passage embeddings of bank passage rows: -> (n, d), (n, d).

    With `moved_ends`, each end of every audio passage moves by a uniform random share of its
    length up to that much, either way (the same draws for every model): partners that no longer
    begin and end together, as in a library.
    """
    gen = torch.Generator().manual_seed(0)
    f0, f1 = _audio_ends(bt, rows, moved_ends)
    sheets, audios = [], []
    for chunk, c0, c1 in zip(
        torch.split(rows, EVAL_CHUNK),
        torch.split(f0, EVAL_CHUNK),
        torch.split(f1, EVAL_CHUNK),
        strict=True,
    ):
        p = bt.passages[chunk.to(bt.device)]
        sw, sl = sheet_windows(bt, p[:, 0], gen, augment=False)
        aw, al = audio_windows(bt, p[:, 1], c0, c1, gen, augment=False)
        se, ae = model.sheet_snippets(sw), model.audio_snippets(aw)
        if summary == "gru":
            sheets.append(model.sheet_passages(pad_sequences(se, sl), sl))
            audios.append(model.audio_passages(pad_sequences(ae, al), al))
        else:
            sheets.append(_mean_of_snippets(se, sl))
            audios.append(_mean_of_snippets(ae, al))
    return torch.cat(sheets).cpu(), torch.cat(audios).cpu()


def _audio_ends(
    bt: BankTensors, rows: torch.Tensor, moved: float, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame ranges of the rows' audio, each end moved by up to `moved` of the length."""
    p = bt.passages[rows.to(bt.device)].cpu()
    f0, f1 = p[:, 2], p[:, 3]
    if moved <= 0:
        return f0, f1
    shift = torch.from_numpy(np.random.default_rng(seed).uniform(-moved, moved, (len(p), 2)))
    length = (f1 - f0).double()
    g0 = (f0 + (shift[:, 0] * length).round().long()).clamp(min=0)
    g1 = f1 + (shift[:, 1] * length).round().long()
    return g0, torch.maximum(g1, g0 + AUDIO_SNIPPET_FRAMES)


def _mean_of_snippets(flat: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The snippet baseline's passage: mean of L2-normalised snippet embeddings, normalised."""
    parts = torch.split(F.normalize(flat, dim=1), lengths.tolist())
    return F.normalize(torch.stack([p.mean(0) for p in parts]), dim=1)


def evaluate_bank(
    model: PassageModel,
    bt: BankTensors,
    summary: Summary = "gru",
    limit: int | None = None,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """The papers' table row for one model on one bank (test split: limit None = all systems)."""
    was_training = model.training
    model.eval()
    try:
        sheet, audio = embed_rows(model, bt, evaluation_rows(bt, limit, seed), summary)
    finally:
        model.train(was_training)
    return both_directions(sheet, audio)
