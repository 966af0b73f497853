"""Query latency and memory for libraries from 10 h to 1,000 h of audio and 50,000 pages.

    python benchmarks/bench_search.py [--hours 10 100 1000] [--keep DIR]

Libraries are written through `Library.write_audio` / `Library.write_score` (the same transaction
and matrix code as indexing) with synthetic embeddings: independent Gaussian vectors, L2-normalised
(passages) or not (snippets). Brute-force search costs the same whatever the values, so random
vectors measure the real latency. Sizes: recordings of 20 min; 50 pages per 1 h of audio
(1,000 h <-> 50,000 pages), 10 pages per score, 5 systems per page, 6 sheet windows per system
(5.6 in the test split written out as a library by `sheetaudio eval-library`) and the score's
reading windows over them (`encode.reading_windows`: 8 snippets every 3, ~2 per page), and the
windows that re-score short audio queries (`encode.rescore_windows`: 3-8 snippets, ~13 per
system; read only for the best 50 scores of a query of up to 40 snippets). Each
size is measured in a fresh process: open the library, run each query kind 5 times (after one
warm-up query that builds the row tables), report the median and the peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sheetaudio_gui.config import (
    AUDIO_PASSAGE_HOP_SNIPPETS,
    AUDIO_PASSAGE_SNIPPETS,
    LIBRARY_HUB_CACHE_FILE,
    RESCORE_WINDOW_HOPS,
    RESCORE_WINDOW_SNIPPETS,
    SCORE_WINDOW_HOP_SNIPPETS,
    SCORE_WINDOW_SNIPPETS,
)
from sheetaudio_gui.core.encode import (
    SNIPPET_HOP_S,
    AudioEncoding,
    ReadingWindows,
    SystemEncoding,
    passage_starts,
    query_passage_plan,
)
from sheetaudio_gui.core.index import Library
from sheetaudio_gui.core.models import LoadedModel, PassageModel

RECORDING_S = 1200.0
PAGES_PER_HOUR = 50
PAGES_PER_SCORE = 10
SYSTEMS_PER_PAGE = 5
WINDOWS_PER_SYSTEM = 6


def unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def fake_model() -> LoadedModel:
    return LoadedModel(PassageModel(), "synthetic")


def build(folder: Path, hours: float, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    n_snip = int(RECORDING_S / SNIPPET_HOP_S)
    spans = []
    for m, h in zip(AUDIO_PASSAGE_SNIPPETS, AUDIO_PASSAGE_HOP_SNIPPETS, strict=True):
        starts = np.arange(0, n_snip - m + 1, h) * SNIPPET_HOP_S
        spans.append(np.stack([starts, starts + (m - 1) * SNIPPET_HOP_S + 1.0], axis=1))
    span = np.concatenate(spans).astype(np.float32)
    with Library(folder, fake_model()) as lib:
        have = {d.path.name for d in lib.documents()}
        for r in range(int(hours * 3600 / RECORDING_S)):
            name = f"rec{r:05d}.flac"
            if name in have:
                continue
            enc = AudioEncoding(
                (np.arange(n_snip) * SNIPPET_HOP_S).astype(np.float32),
                rng.standard_normal((n_snip, 32), dtype=np.float32),
                span,
                unit(rng, len(span), 64),
            )
            lib.write_audio(folder / "audio" / name, None, None, RECORDING_S, enc)
        xs = np.arange(WINDOWS_PER_SYSTEM, dtype=np.float32) * 80 + 40
        n_windows = PAGES_PER_SCORE * SYSTEMS_PER_PAGE * WINDOWS_PER_SYSTEM
        reading_starts = passage_starts(n_windows, SCORE_WINDOW_SNIPPETS, SCORE_WINDOW_HOP_SNIPPETS)
        reading_at = (reading_starts + SCORE_WINDOW_SNIPPETS / 2) / WINDOWS_PER_SYSTEM
        n_rescore = sum(
            len(passage_starts(n_windows, length, hop))
            for length, hop in zip(RESCORE_WINDOW_SNIPPETS, RESCORE_WINDOW_HOPS, strict=True)
        )
        for s in range(int(hours * PAGES_PER_HOUR / PAGES_PER_SCORE)):
            name = f"score{s:05d}.pdf"
            if name in have:
                continue
            n = PAGES_PER_SCORE * SYSTEMS_PER_PAGE
            passages = unit(rng, n, 64)
            snippets = rng.standard_normal((n * WINDOWS_PER_SYSTEM, 32), dtype=np.float32)
            systems = [
                SystemEncoding(
                    k // SYSTEMS_PER_PAGE,
                    k % SYSTEMS_PER_PAGE,
                    (30.0, 100.0 + 140 * (k % SYSTEMS_PER_PAGE), 560.0, 180.0 + 140 * (k % 5)),
                    xs,
                    snippets[k * WINDOWS_PER_SYSTEM : (k + 1) * WINDOWS_PER_SYSTEM],
                    passages[k],
                )
                for k in range(n)
            ]
            sizes = [(595.0, 842.0, "pt")] * PAGES_PER_SCORE
            reading = ReadingWindows(
                reading_at.astype(np.float32), unit(rng, len(reading_starts), 64)
            )
            rescore = unit(rng, n_rescore, 64)
            lib.write_score(folder / "scores" / name, None, None, sizes, systems, reading, rescore)


def measure(folder: Path) -> dict[str, float]:
    from sheetaudio_gui.core.search import rank_recordings, rank_scores

    rng = np.random.default_rng(1)
    out: dict[str, float] = {}
    start = time.perf_counter()
    lib = Library(folder, fake_model())
    out["open_s"] = time.perf_counter() - start
    # the rows and their hub penalties: measured once per library state, in another process
    # (as the indexer does after each job), read back by every later reader of that state
    (folder / LIBRARY_HUB_CACHE_FILE).unlink(missing_ok=True)
    run = subprocess.run(
        [sys.executable, __file__, "--prepare", str(folder)],
        capture_output=True,
        text=True,
        check=True,
    )
    out.update(json.loads(run.stdout.strip().splitlines()[-1]))
    start = time.perf_counter()
    lib.prepare_search()
    out["prepare search, penalties read back_s"] = time.perf_counter() - start
    rows_10s = len(query_passage_plan(11)[1])  # 10 s = 11 snippets, cut as search_audio cuts
    rows_30s = len(query_passage_plan(33)[1])
    excerpt_10s = rng.standard_normal((11, 32), dtype=np.float32)  # its snippets: re-scored
    excerpt_30s = rng.standard_normal((33, 32), dtype=np.float32)
    queries: dict[str, tuple[Callable[..., Any], np.ndarray, dict[str, Any]]] = {
        "score->audio, page (5 systems)": (rank_recordings, unit(rng, SYSTEMS_PER_PAGE, 64), {}),
        "score->audio, system": (rank_recordings, unit(rng, 1, 64), {}),
        f"audio->score, 10 s excerpt ({rows_10s} rows, re-scored)": (
            rank_scores,
            unit(rng, rows_10s, 64),
            {"snippets": excerpt_10s},
        ),
        f"audio->score, 30 s excerpt ({rows_30s} rows, re-scored)": (
            rank_scores,
            unit(rng, rows_30s, 64),
            {"snippets": excerpt_30s},
        ),
    }
    for label, (fn, q, extra) in queries.items():
        start = time.perf_counter()
        fn(lib, q, 10, **extra)  # first query of its kind (the rows are ready)
        out[f"first {label}_ms"] = (time.perf_counter() - start) * 1000
        times = []
        for _ in range(5):
            start = time.perf_counter()
            fn(lib, unit(rng, len(q), 64), 10, **extra)
            times.append(time.perf_counter() - start)
        out[f"{label}_ms"] = float(np.median(times)) * 1000
    out["audio_rows"] = float(len(lib.audio_rows().doc))
    out["system_rows"] = float(len(lib.score_rows().doc))
    out["reading_window_rows"] = float(len(lib.score_rows().reading_at))
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "RssAnon", "RssFile")):
                key, value = line.split(":")
                out[f"{key}_mb"] = int(value.split()[0]) / 1024
    return out


def prepare(folder: Path) -> dict[str, float]:
    """What the indexer does after a job: rows and hub penalties measured and kept."""
    with Library(folder, fake_model()) as lib:
        start = time.perf_counter()
        lib.prepare_search()
        seconds = time.perf_counter() - start
    return {
        "prepare search, hub penalties measured_s": seconds,
        "prepare search, hub penalties measured: peak_rss_mb": resource.getrusage(
            resource.RUSAGE_SELF
        ).ru_maxrss
        / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hours", type=float, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--keep", type=Path, help="build the libraries here (default: temp)")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:
        print(json.dumps(prepare(args.prepare)))
        return
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    print("command:", shlex.join([sys.executable, *sys.argv]))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-search-"))
    previous = None
    for hours in args.hours:
        folder = root / f"lib-{hours:g}h"
        start = time.perf_counter()
        build(folder, hours)
        built = time.perf_counter() - start
        run = subprocess.run(
            [sys.executable, __file__, "--measure", str(folder)],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(run.stdout.strip().splitlines()[-1])
        disk = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20
        pages = hours * PAGES_PER_HOUR
        print(f"\n{hours:g} h audio, {pages:.0f} pages: built in {built:.0f} s, {disk:.0f} MiB")
        for key, value in result.items():
            growth = ""
            if previous and key in previous and previous[key] > 0 and key.endswith("_ms"):
                growth = f"  (x{value / previous[key]:.1f} vs previous size)"
            print(f"  {key:48s} {value:10.1f}{growth}")
        previous = result


if __name__ == "__main__":
    main()
