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

Hubs. Some rows are close to many rows of the other modality (a busy texture, a common cadence)
and come first for queries that are not theirs. Each stored row therefore also carries a penalty:
HUB_WEIGHT times the mean of its HUB_NEIGHBOURS best centred similarities to a reference sample
of the other modality's rows in the library (the cross-domain similarity local scaling of Lample
et al., 2018, on the stored side; the query's own term is the same for every row and is left
out). A row near everything pays more than a row near only its partner. Measured on passage
pairs (v8): validation R@1 70.5 / 70.0 % -> 78.0 / 78.0 %; test (adapted) 56.7 / 55.1 % ->
64.5 / 64.2 %; with the query's whole piece left out of the reference, as for a recording of a
piece the library does not hold, 63.7 / 63.2 %, so the gain is not the query finding itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from sheetaudio_gui.config import (
    CENTRING_PRIOR_ROWS,
    HUB_NEIGHBOURS,
    HUB_REFERENCE_ROWS,
    HUB_WEIGHT,
)

Floats = npt.NDArray[np.float32]
CHUNK_ROWS = 1 << 13  # rows widened to float32 at once: 2 MiB, whatever the library's size
HUB_CHUNK_ROWS = 1 << 10  # rows x reference similarities at once: 16 MiB at 4,096 reference rows


@dataclass(frozen=True)
class Centre:
    """A stored matrix's mean passage and each row's inverse distance from it."""

    mean: Floats  # (64,) shrunk towards 0 for a library with few rows (`shrunk_mean`)
    inv_norm: Floats  # (rows,) 1 / |row - mean|; 1 for rows not searched
    penalty: Floats | None = None  # (rows,) hub penalty (`hub_penalties`) subtracted; 0 if None

    def offsets(self, queries: Floats) -> Floats:
        """Each (centred) query row's similarity to the mean, q'.mean: subtracted from its raw
        similarities before they are scaled by the rows' inverse norms."""
        out: Floats = (np.asarray(queries, np.float32) @ self.mean).astype(np.float32)
        return out

    def apply(self, sims: Floats, offsets: Floats, first_row: int) -> None:
        """Turn raw similarities (k, n) of rows [first_row, first_row + n) into centred ones
        less each row's hub penalty, in place."""
        sims -= offsets[:, None]
        sims *= self.inv_norm[None, first_row : first_row + sims.shape[1]]
        if self.penalty is not None:
            sims -= self.penalty[None, first_row : first_row + sims.shape[1]]

    def with_penalty(self, penalty: Floats) -> Centre:
        return Centre(self.mean, self.inv_norm, penalty)


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
    mean: Floats = (total / rows * shrinkage(rows, other_rows)).astype(np.float32)
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


def shrinkage(rows: int, other_rows: int) -> float:
    """m / (m + CENTRING_PRIOR_ROWS), m the smaller row count: how far a library's own
    statistics are trusted (`shrunk_mean`)."""
    both = min(rows, other_rows)
    return both / (both + CENTRING_PRIOR_ROWS) if both > 0 else 0.0


def hub_weight(rows: int, other_rows: int) -> float:
    """HUB_WEIGHT shrunk like the means: a library of a few documents has too small a reference
    to say which of its rows are hubs, and in a library of one piece every row's nearest other
    row is its own partner."""
    return HUB_WEIGHT * shrinkage(rows, other_rows)


def reference_sample(
    matrix: torch.Tensor, live: npt.NDArray[np.bool_], centre: Centre, seed: int = 0
) -> Floats:
    """Up to HUB_REFERENCE_ROWS live rows of a (rows, 64) matrix, drawn at random (fixed seed:
    a library searches the same way each time it is opened), centred as the search centres them:
    the sample a row of the other modality measures its hubness against."""
    rows = reference_rows(live, seed)
    sample = matrix[torch.from_numpy(rows)].float().numpy()
    return centred(sample, centre.mean)


def reference_rows(live: npt.NDArray[np.bool_], seed: int = 0) -> npt.NDArray[np.int64]:
    """Which rows make the reference sample: all live rows up to HUB_REFERENCE_ROWS, else that
    many drawn at random (sorted)."""
    rows = np.flatnonzero(live)
    if len(rows) > HUB_REFERENCE_ROWS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, HUB_REFERENCE_ROWS, replace=False))
    return rows


def penalties_of(centred_rows: Floats, reference: Floats, weight: float) -> Floats:
    """Hub penalties of rows already centred: weight x the mean of each row's HUB_NEIGHBOURS
    best similarities to the (centred) reference rows. Zeros without a reference."""
    out = np.zeros(len(centred_rows), np.float32)
    k = min(HUB_NEIGHBOURS, len(reference))
    if k == 0 or weight == 0.0 or len(centred_rows) == 0:
        return out
    ref = torch.from_numpy(np.ascontiguousarray(reference, np.float32)).T
    with torch.inference_mode():
        for lo in range(0, len(centred_rows), HUB_CHUNK_ROWS):
            rows = torch.from_numpy(np.ascontiguousarray(centred_rows[lo : lo + HUB_CHUNK_ROWS]))
            best = (rows @ ref).topk(k, dim=1).values.mean(dim=1)
            out[lo : lo + len(rows)] = best.numpy() * weight
    return out


def hub_penalties(
    matrix: torch.Tensor,
    live: npt.NDArray[np.bool_],
    centre: Centre,
    reference: Floats,
    weight: float,
) -> Floats:
    """`penalties_of` for a stored (rows, 64) bfloat16 matrix, centred chunk by chunk with its
    centre (bfloat16 products: 3.1 M rows of a 1,000 h library against 4,096 reference rows take
    ~17 s on 2 cores, float32 ~27 s); rows not searched get 0."""
    out = np.zeros(len(matrix), np.float32)
    k = min(HUB_NEIGHBOURS, len(reference))
    if k == 0 or weight == 0.0 or not live.any():
        return out
    ref = torch.from_numpy(np.ascontiguousarray(reference, np.float32))
    ref_b = ref.T.to(torch.bfloat16).contiguous()
    ref_offsets = ref @ torch.from_numpy(np.asarray(centre.mean, np.float32))  # mu . ref_j
    with torch.inference_mode():
        for lo in range(0, len(matrix), HUB_CHUNK_ROWS):
            hi = min(lo + HUB_CHUNK_ROWS, len(matrix))
            sims = (matrix[lo:hi] @ ref_b).float()  # raw r . ref_j
            sims -= ref_offsets[None, :]
            sims *= torch.from_numpy(centre.inv_norm[lo:hi])[:, None]
            out[lo:hi] = sims.topk(k, dim=1).values.mean(dim=1).numpy() * weight
    out[~live] = 0.0
    return out


def no_centre(rows: int, width: int = 64) -> Centre:
    """The identity: plain cosine similarities (a library without rows of a modality)."""
    return Centre(np.zeros(width, np.float32), np.ones(rows, np.float32))
