"""Centring each modality's passage embeddings on the library's own material.

The two encoders map a piece's score and its recordings close together, but each modality's
embeddings also share a common offset of their own (the engraving, the piano sound), which a plain
cosine counts as similarity. Subtracting each modality's mean passage and normalising again
removes it: on the test split (v8 model) passage R@1 47.4 / 45.8 % -> 53.1 / 51.2 % (A2S / S2A),
piece identification from 10 s 22.9 -> 26.9 %. Both halves are needed: centring only the query
gives 47.4 / 46.6 %, only the stored rows 45.2 / 44.2 %. The means must come from the same
engraving and piano sound as the material searched (the validation split's means give the test
split nothing), so a library uses the means of its own scores and recordings.

A stored row r is never rewritten (the mean moves as documents are added): its centred
similarity to a centred query q' is (q'.r - q'.mu) / |r - mu|, so a library keeps one float per
row, 1 / |r - mu|, next to its bfloat16 matrix (a centred copy would double the memory).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from sheetaudio_gui.config import CENTRING_PRIOR_ROWS

Floats = npt.NDArray[np.float32]
CHUNK_ROWS = 1 << 13  # rows widened to float32 at once: 2 MiB, whatever the library's size


@dataclass(frozen=True)
class Centre:
    """A stored matrix's mean passage and each row's inverse distance from it."""

    mean: Floats  # (64,) shrunk towards 0 for a library with few rows (`shrunk_mean`)
    inv_norm: Floats  # (rows,) 1 / |row - mean|; 1 for rows not searched

    def offsets(self, queries: Floats) -> Floats:
        """Each (centred) query row's similarity to the mean, q'.mean: subtracted from its raw
        similarities before they are scaled by the rows' inverse norms."""
        out: Floats = (np.asarray(queries, np.float32) @ self.mean).astype(np.float32)
        return out

    def apply(self, sims: Floats, offsets: Floats, first_row: int) -> None:
        """Turn raw similarities (k, n) of rows [first_row, first_row + n) into centred ones,
        in place."""
        sims -= offsets[:, None]
        sims *= self.inv_norm[None, first_row : first_row + sims.shape[1]]


def shrunk_mean(total: Floats, rows: int, other_rows: int) -> Floats:
    """A library's mean passage (the sum of `rows` rows), shrunk towards zero (no centring)
    while the library holds few rows of this or the other modality.

    The mean of a handful of documents is mostly those documents themselves: centring on it
    would subtract the very content a query looks for. And a query is centred on the mean of
    its own modality in the library, so a library of scores alone cannot centre a recording's
    query; centring one side only costs ~2 points of R@1 on the test split. The weight
    m / (m + CENTRING_PRIOR_ROWS), with m the smaller of the two row counts, makes such a
    library search as before and one of hundreds of pieces of both fully centred."""
    if rows == 0:
        return np.zeros_like(total, dtype=np.float32)
    both = min(rows, other_rows)
    mean: Floats = (total / rows * (both / (both + CENTRING_PRIOR_ROWS))).astype(np.float32)
    return mean


def centre_of(matrix: torch.Tensor, live: npt.NDArray[np.bool_], other_rows: int) -> Centre:
    """The centre of a (rows, 64) bfloat16 matrix over its live rows (`shrunk_mean` with the
    other modality's live row count)."""
    total = np.zeros(matrix.shape[1], np.float64)
    with torch.inference_mode():
        for lo in range(0, len(matrix), CHUNK_ROWS):
            mask = torch.from_numpy(live[lo : lo + CHUNK_ROWS])
            total += matrix[lo : lo + CHUNK_ROWS][mask].float().sum(0).double().numpy()
    mean = shrunk_mean(total.astype(np.float32), int(live.sum()), other_rows)
    return centre_on(matrix, live, mean)


def centre_on(matrix: torch.Tensor, live: npt.NDArray[np.bool_], mean: Floats) -> Centre:
    """A matrix's rows centred on a given mean: their inverse distances from it,
    |r - mu|^2 = |r|^2 - 2 r.mu + |mu|^2, read in chunks (a float32 copy of a 1,000 h
    library's audio rows would be 800 MB)."""
    inv = np.ones(len(matrix), np.float32)
    mu = torch.from_numpy(np.asarray(mean, np.float32))
    mu_squared = float(mu @ mu)
    with torch.inference_mode():
        for lo in range(0, len(matrix), CHUNK_ROWS):
            chunk = matrix[lo : lo + CHUNK_ROWS].float()
            squared = chunk.square().sum(1) - 2.0 * (chunk @ mu) + mu_squared
            inv[lo : lo + len(chunk)] = squared.clamp_min(1e-12).rsqrt().numpy()
    inv[~live] = 1.0
    return Centre(np.asarray(mean, np.float32), inv)


def centred(vectors: Floats, mean: Floats) -> Floats:
    """Vectors minus the mean, normalised again (rows of zero length stay zero)."""
    shifted = np.asarray(vectors, np.float32) - mean
    norms = np.linalg.norm(shifted, axis=-1, keepdims=True)
    out: Floats = (shifted / np.maximum(norms, 1e-12)).astype(np.float32)
    return out


def no_centre(rows: int, width: int = 64) -> Centre:
    """The identity: plain cosine similarities (a library without rows of a modality)."""
    return Centre(np.zeros(width, np.float32), np.ones(rows, np.float32))
