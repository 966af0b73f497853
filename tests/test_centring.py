"""Centring each modality on the library's own mean passage (`core.centring`): the search's
similarities are cosines of centred vectors, computed without rewriting the stored rows."""

from __future__ import annotations

import numpy as np
import pytest

from sheetaudio_gui.config import CENTRING_PRIOR_ROWS, HUB_NEIGHBOURS, HUB_WEIGHT
from sheetaudio_gui.core.centring import (
    centre_of,
    centred,
    hub_penalties,
    hub_weight,
    penalties_of,
    reference_rows,
    shrunk_mean,
)
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


# --- hub penalties ------------------------------------------------------------------------------


def test_a_hub_penalty_is_the_weighted_mean_of_a_rows_best_similarities_to_the_reference():
    rows, reference = unit_rows(30, seed=4), unit_rows(50, seed=5)
    best = np.sort(rows @ reference.T, axis=1)[:, -HUB_NEIGHBOURS:]
    assert penalties_of(rows, reference, 0.6) == pytest.approx(0.6 * best.mean(axis=1), abs=1e-5)
    assert not penalties_of(rows, reference[:0], 0.6).any()  # nothing to measure against


def test_stored_rows_are_penalised_as_their_centred_vectors_would_be_and_the_search_subtracts_it():
    bits = to_bf16_bits(unit_rows(40, seed=6, offset=1.0))
    live = np.ones(40, bool)
    live[5:8] = False
    centre = centre_of(bf16_tensor(bits), live, other_rows=10**6)
    reference = centred(unit_rows(100, seed=7, offset=-1.0), np.full(64, 0.02, np.float32))
    penalty = hub_penalties(bf16_tensor(bits), live, centre, reference, 0.75)
    rows = centred(from_bf16_bits(bits), centre.mean)
    assert penalty[live] == pytest.approx(penalties_of(rows, reference, 0.75)[live], abs=0.02)
    assert not penalty[~live].any()  # rows of removed documents are never searched
    queries = centred(unit_rows(3, seed=8), np.zeros(64, np.float32))
    sims = (queries @ from_bf16_bits(bits).T).astype(np.float32)
    centre.with_penalty(penalty).apply(sims, centre.offsets(queries), first_row=0)
    assert sims[:, live] == pytest.approx((queries @ rows.T - penalty)[:, live], abs=1e-4)


def test_the_penalty_weighs_little_in_a_small_library_and_nothing_without_the_other_modality():
    assert hub_weight(10, 10) < 0.01 * HUB_WEIGHT
    assert hub_weight(10**6, 10**6) == pytest.approx(HUB_WEIGHT, rel=0.01)
    assert hub_weight(5000, 0) == hub_weight(0, 5000) == 0.0


def test_the_reference_is_every_live_row_or_a_fixed_random_sample_of_them():
    live = np.zeros(10_000, bool)
    live[::2] = True
    small = reference_rows(live[:100])
    assert small.tolist() == list(range(0, 100, 2))
    big = reference_rows(live)
    assert live[big].all() and len(np.unique(big)) == len(big) < live.sum()
    assert (reference_rows(live) == big).all()  # the same each time a library is opened


def test_penalising_hubs_lets_each_query_find_its_own_row_instead_of_a_row_near_everything():
    """Recordings and systems in clusters (pieces of one style); a few stored rows lie at a
    cluster's centre, close to every recording of it, and come first for many queries under the
    plain cosine. Such a row is near many rows of the other modality, a true partner near one."""
    rng = np.random.default_rng(8)
    n, styles = 1000, 20
    centres = unit_rows(styles, seed=9)
    style = rng.integers(0, styles, n)
    content = unit_rows(n, seed=10)
    noise = rng.standard_normal((2, n, 64)).astype(np.float32) * 0.1
    none = np.zeros(64, np.float32)
    audio = centred(centres[style] + 0.8 * content + noise[0], none)
    scores = centred(centres[style] + 0.8 * content + noise[1], none)
    hubs = centred(centres + rng.standard_normal((styles, 64)).astype(np.float32) * 0.04, none)
    stored = np.concatenate([scores, hubs])
    sims = audio @ stored.T
    penalty = penalties_of(stored, audio, HUB_WEIGHT)
    assert penalty[n:].mean() > penalty[:n].mean()
    plain = np.mean(sims.argmax(axis=1) == np.arange(n))
    found = np.mean((sims - penalty).argmax(axis=1) == np.arange(n))
    assert plain < 0.93 and found > 0.97
