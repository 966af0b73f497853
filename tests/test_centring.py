"""Centring each modality on the library's own mean passage (`core.centring`): the search's
similarities are cosines of centred vectors, computed without rewriting the stored rows."""

from __future__ import annotations

import numpy as np
import pytest

from sheetaudio_gui.config import CENTRING_PRIOR_ROWS
from sheetaudio_gui.core.centring import centre_of, centred, shrunk_mean
from sheetaudio_gui.core.index import bf16_tensor, from_bf16_bits, to_bf16_bits


def unit_rows(n: int, seed: int, offset: float = 0.0) -> np.ndarray:
    """Random unit rows sharing a common direction of weight `offset` (a modality's offset)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 64)).astype(np.float32) / 8.0
    x[:, 0] += offset
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_centred_similarities_are_cosines_of_the_centred_rows_without_copying_them():
    bits = to_bf16_bits(unit_rows(40, seed=1, offset=1.0))
    live = np.ones(40, bool)
    live[10:15] = False  # rows of removed documents do not count in the mean
    centre = centre_of(bf16_tensor(bits), live, other_rows=10**9)
    rows = from_bf16_bits(bits)
    raw_mean = rows[live].mean(axis=0)
    # the smaller of the two counts is this matrix's own 35 live rows
    expected_mean = raw_mean * 35 / (35 + CENTRING_PRIOR_ROWS)
    assert centre.mean == pytest.approx(expected_mean, abs=1e-4)
    queries = centred(unit_rows(3, seed=2, offset=-0.5), np.full(64, 0.01, np.float32))
    sims = (queries @ rows.T).astype(np.float32)
    centre.apply(sims, centre.offsets(queries), first_row=0)
    explicit = queries @ centred(rows, centre.mean).T
    assert sims[:, live] == pytest.approx(explicit[:, live], abs=1e-4)
    assert np.abs(sims[:, live]).max() <= 1.0 + 1e-4  # still cosines: comparable across queries


def test_a_small_library_is_barely_centred_and_a_large_one_almost_fully():
    total = np.full(64, 0.5, np.float32)  # the sum of `rows` rows
    few = shrunk_mean(total * 10, rows=10, other_rows=10)
    many = shrunk_mean(total * 10**6, rows=10**6, other_rows=10**6)
    assert np.linalg.norm(few) < 0.05 * np.linalg.norm(total)
    assert many == pytest.approx(total, rel=0.01)


def test_a_library_of_one_modality_is_not_centred():
    """A query is centred on its own modality's mean in the library: with no recordings an
    audio query cannot be, and centring the scores alone would cost accuracy."""
    assert not shrunk_mean(np.ones(64, np.float32) * 5000, rows=5000, other_rows=0).any()
    assert not shrunk_mean(np.zeros(64, np.float32), rows=0, other_rows=5000).any()


def test_centring_removes_a_shared_offset_that_hides_the_true_match():
    """Each modality with its own offset: under the plain cosine, stored rows whose content leans
    towards the query modality's offset become hubs that every query finds; centred, each query
    finds the row with its own content."""
    n = 2000
    rng = np.random.default_rng(3)
    content = rng.standard_normal((n, 64)).astype(np.float32)
    content /= np.linalg.norm(content, axis=1, keepdims=True)
    score_offset, audio_offset = np.zeros(64, np.float32), np.zeros(64, np.float32)
    score_offset[0], audio_offset[1] = 3.0, 3.0
    noise = rng.standard_normal((2, n, 64)).astype(np.float32) * 0.05
    none = np.zeros(64, np.float32)
    scores = centred(content + score_offset + noise[0], none)
    audio = centred(content + audio_offset + noise[1], none)
    stored = from_bf16_bits(to_bf16_bits(scores))
    plain = np.mean(np.argmax(audio @ stored.T, axis=1) == np.arange(n))
    s_centre = centre_of(bf16_tensor(to_bf16_bits(scores)), np.ones(n, bool), other_rows=n)
    queries = centred(audio, shrunk_mean(audio.sum(axis=0), rows=n, other_rows=n))
    sims = (queries @ stored.T).astype(np.float32)
    s_centre.apply(sims, s_centre.offsets(queries), first_row=0)
    found = np.mean(np.argmax(sims, axis=1) == np.arange(n))
    assert found > plain + 0.2
