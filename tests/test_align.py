"""DTW alignment between sheet windows and audio snippets: exact paths on constructed inputs."""

from __future__ import annotations

import numpy as np
import pytest

from sheetaudio_gui.core.align import align, dtw_path, match_x_range
from sheetaudio_gui.core.encode import SNIPPET_HOP_S, AudioEncoding, SystemEncoding


def unit_rows(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, 32)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def system(page: int, index: int, snippets: np.ndarray, x0: float = 100.0) -> SystemEncoding:
    xs = (x0 + 40.0 * np.arange(len(snippets))).astype(np.float32)
    box = (x0 - 20, 50.0 * index, float(xs[-1]) + 20, 50.0 * index + 40)
    return SystemEncoding(page, index, box, xs, snippets, np.zeros(64, np.float32))


def recording(snippets: np.ndarray) -> AudioEncoding:
    starts = (np.arange(len(snippets)) * SNIPPET_HOP_S).astype(np.float32)
    return AudioEncoding(starts, snippets, np.zeros((0, 2), np.float32), np.zeros((0, 64)))


def test_dtw_follows_the_zero_cost_diagonal_of_an_identity_cost():
    cost = 1.0 - np.eye(6)
    path = dtw_path(cost)
    assert path.tolist() == [[i, i] for i in range(6)]


def test_dtw_path_is_monotonic_and_spans_both_sequences():
    cost = np.random.default_rng(1).random((30, 50))
    path = dtw_path(cost)
    assert path[0].tolist() == [0, 0] and path[-1].tolist() == [29, 49]
    steps = np.diff(path, axis=0)
    assert (steps >= 0).all() and (steps.sum(axis=1) >= 1).all() and (steps <= 1).all()


def test_alignment_recovers_a_recording_that_plays_each_window_twice_in_the_second_system():
    windows = unit_rows(20)
    first, second = windows[:10], windows[10:]
    # audio: system 0 at one snippet per window, system 1 at two snippets per window (slower)
    audio = np.concatenate([first, np.repeat(second, 2, axis=0)])
    result = align([system(0, 0, first), system(0, 1, second)], recording(audio))
    assert result.similarity.shape == (20, 30)
    for w in range(10):  # window w of system 0 sounds in snippet w
        t = result.time_at(0, 0, 100.0 + 40.0 * w)
        assert t == pytest.approx(w * SNIPPET_HOP_S + 0.5, abs=1e-3)
    for w in range(10):  # window w of system 1 sounds in snippets 10 + 2w and 11 + 2w
        t = result.time_at(0, 1, 100.0 + 40.0 * w)
        assert t == pytest.approx((10 + 2 * w + 0.5) * SNIPPET_HOP_S + 0.5, abs=1e-3)
    page, sys_index, x = result.position_at((14 + 0.5) * SNIPPET_HOP_S + 0.5)
    assert (page, sys_index) == (0, 1) and x == pytest.approx(100.0 + 40.0 * 2, abs=1e-3)


def test_query_inside_a_system_is_located_on_its_x_range():
    windows = unit_rows(20, seed=3)
    s = system(0, 0, windows)
    x0, x1, score = match_x_range(s, windows[6:11])
    assert x0 == pytest.approx(100.0 + 40 * 6 - 20) and x1 == pytest.approx(100.0 + 40 * 10 + 20)
    assert score == pytest.approx(1.0, abs=1e-5)
