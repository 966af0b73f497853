"""Aligning a score's sheet windows with a recording's audio snippets by dynamic time warping.

Both sides are sequences of 32-d snippet embeddings in one shared space (the snippet CNNs are
trained so that a sheet window and the audio it sounds like lie close). The cost of pairing sheet
window i with audio snippet j is 1 - cosine similarity; DTW with steps (1, 1), (1, 0), (0, 1)
finds the monotonic path of least total cost from the first to the last window and snippet. That
path is the page-position <-> time map: the highlight of a hit and the score-following cursor.

The accumulated cost is computed one sheet row at a time: with t[j] = c[i, j] + min(D[i-1, j-1],
D[i-1, j]), the horizontal steps make D[i, j] = C[j] + min_{k <= j}(t[k] - C[k]) where C is the
row's cumulative cost, so each row is a handful of vectorised numpy operations (n rows x m
columns in O(n) Python steps).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sheetaudio_gui.core.encode import SNIPPET_S, AudioEncoding, SystemEncoding

Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Alignment:
    """A monotonic map between the sheet windows of a score (reading order) and audio snippets."""

    path: Ints  # (L, 2) monotonic (sheet window index over the systems in reading order, snippet)
    similarity: Floats  # (n_sheet_windows, n_audio_snippets) cosine similarity, for the plot
    window_page: npt.NDArray[np.int32]  # (n_sheet_windows,) page of each window
    window_system: npt.NDArray[np.int32]  # (n_sheet_windows,) system on that page
    window_x: Floats  # (n_sheet_windows,) x-centre of each window, page units
    snippet_start_s: Floats  # (n_audio_snippets,)

    def time_at(self, page: int, system: int, x: float) -> float:
        """Score position -> seconds: interpolated between the times of neighbouring windows."""
        mine = np.nonzero((self.window_page == page) & (self.window_system == system))[0]
        if len(mine) == 0:
            raise ValueError(f"page {page} system {system} is not part of this alignment")
        times = self._window_times()[mine]
        return float(np.interp(x, self.window_x[mine], times))

    def position_at(self, time_s: float) -> tuple[int, int, float]:
        """Seconds -> (page, system, x) for the cursor, interpolated within a system."""
        times = self._window_times()
        i = int(np.searchsorted(times, time_s, side="right")) - 1
        i = min(max(i, 0), len(times) - 1)
        page, system = int(self.window_page[i]), int(self.window_system[i])
        x = float(self.window_x[i])
        nxt = i + 1
        if (
            nxt < len(times)
            and self.window_page[nxt] == page
            and self.window_system[nxt] == system
            and times[nxt] > times[i]
        ):
            f = min(max((time_s - times[i]) / (times[nxt] - times[i]), 0.0), 1.0)
            x += f * float(self.window_x[nxt] - self.window_x[i])
        return page, system, x

    def _window_times(self) -> npt.NDArray[np.float64]:
        """Mean centre time of the snippets each window is paired with: (n_sheet_windows,)."""
        n = len(self.window_x)
        centre = self.snippet_start_s.astype(np.float64) + SNIPPET_S / 2
        sums = np.bincount(self.path[:, 0], weights=centre[self.path[:, 1]], minlength=n)
        counts = np.bincount(self.path[:, 0], minlength=n)
        out: npt.NDArray[np.float64] = sums / np.maximum(counts, 1)
        return np.maximum.accumulate(out)  # monotonic even where a window got no snippet


def cosine_similarity(a: Floats, b: Floats) -> Floats:
    """(n, d), (m, d) -> (n, m) cosine similarity (zero vectors give 0)."""
    an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    out: Floats = (an @ bn.T).astype(np.float32)
    return out


def dtw_path(cost: npt.NDArray[np.floating], free_columns: bool = False) -> Ints:
    """Least-cost monotonic path through (n, m) `cost` with steps (1,1), (1,0), (0,1): (L, 2).

    With `free_columns` the path may start at any column of row 0 and end at any column of the
    last row (subsequence DTW: the rows are found somewhere inside the columns).
    """
    n, m = cost.shape
    if n == 0 or m == 0:
        return np.zeros((0, 2), np.int64)
    c = cost.astype(np.float64)
    acc = np.empty((n, m), np.float64)
    acc[0] = c[0] if free_columns else np.cumsum(c[0])
    for i in range(1, n):
        prev = acc[i - 1]
        t = c[i].copy()
        best = prev.copy()
        best[1:] = np.minimum(prev[1:], prev[:-1])
        t += best
        cum = np.cumsum(c[i])
        acc[i] = cum + np.minimum.accumulate(t - cum)
    i, j = n - 1, int(np.argmin(acc[-1])) if free_columns else m - 1
    path = [(i, j)]
    while i > 0 or j > 0:
        if i == 0:
            if free_columns:
                break
            j -= 1
        elif j == 0:
            i -= 1
        else:
            options = (acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1])
            k = int(np.argmin(options))
            if k == 0:
                i, j = i - 1, j - 1
            elif k == 1:
                i -= 1
            else:
                j -= 1
        path.append((i, j))
    return np.array(path[::-1], dtype=np.int64)


def align(systems: Sequence[SystemEncoding], audio: AudioEncoding) -> Alignment:
    """DTW between the score's sheet windows (systems in reading order) and a recording."""
    if not systems or len(audio.snippets) == 0:
        raise ValueError("alignment needs at least one system and one audio snippet")
    sheet = np.concatenate([s.snippets for s in systems]).astype(np.float32)
    page = np.concatenate([np.full(len(s.snippets), s.page, np.int32) for s in systems])
    system = np.concatenate([np.full(len(s.snippets), s.index, np.int32) for s in systems])
    xs = np.concatenate([s.window_x for s in systems]).astype(np.float32)
    similarity = cosine_similarity(sheet, audio.snippets.astype(np.float32))
    path = dtw_path(1.0 - similarity)
    return Alignment(path, similarity, page, system, xs, audio.snippet_start_s.astype(np.float32))


def match_x_range(system: SystemEncoding, query_snippets: Floats) -> tuple[float, float, float]:
    """Where inside `system` a short audio query plays: (x0, x1, mean similarity), page units.

    Subsequence DTW: every query snippet is matched, the system's windows only between a free
    start and end. The range reaches half a window beyond the first and last matched centres.
    """
    similarity = cosine_similarity(query_snippets.astype(np.float32), system.snippets)
    path = dtw_path(1.0 - similarity, free_columns=True)
    first, last = int(path[0, 1]), int(path[-1, 1])
    xs = system.window_x
    half = float(xs[1] - xs[0]) / 2 if len(xs) > 1 else 0.0
    x0 = max(float(xs[first]) - half, system.box[0])
    x1 = min(float(xs[last]) + half, system.box[2])
    score = float(similarity[path[:, 0], path[:, 1]].mean())
    return x0, x1, score
