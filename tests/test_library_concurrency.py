"""Several programs on one library folder at once (the GUI indexing while the CLI searches, two
indexers): nobody raises, nobody waits forever, nothing is corrupted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from material import melody

from sheetaudio_gui.config import ModelDims
from sheetaudio_gui.core.index import Library
from sheetaudio_gui.core.models import PassageModel, load_model, save_model

SR = 22050
DEMO_PDF = Path(__file__).resolve().parents[1] / "resources" / "demo" / "Chorale_BWV_263.pdf"
BUSY_S = 4.0  # how long the programs work on the library at the same time, s
MIN_OPS = 6  # ... and at least this many operations each (a loaded machine is slow)
TIMEOUT_S = 120.0  # a program still running after this counts as deadlocked, s

WRITER = r"""
import json, random, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from sheetaudio_gui.core.index import Library
from sheetaudio_gui.core.jobs import run_to_end
from sheetaudio_gui.core.models import load_model

library_dir, model_file, seconds, least, seed = sys.argv[1:6]
files = [Path(p) for p in sys.argv[6:]]
model = load_model(model_file)
rng = random.Random(int(seed))
print("ready", flush=True)
sys.stdin.readline()
counts = {"added": 0, "removed": 0, "compactions": 0}
with Library(Path(library_dir), model) as lib:
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline or counts["added"] + counts["removed"] < int(least):
        path = rng.choice(files)
        if lib.document(path) is not None:
            assert lib.remove(path)
            counts["removed"] += 1
            if rng.random() < 0.3:
                counts["compactions"] += lib.compact(force=True)
        else:
            report = run_to_end(lib.add([path]))
            assert report.added == [path], report
            counts["added"] += 1
    mine = {str(f) for f in files}
    counts["present"] = sorted(str(d.path) for d in lib.documents() if str(d.path) in mine)
print(json.dumps(counts), flush=True)
"""

READER = r"""
import json, logging, sys, time
from pathlib import Path
import numpy as np
import torch
torch.set_num_threads(1)
from sheetaudio_gui.core.errors import FileProblem
from sheetaudio_gui.core.index import Library
from sheetaudio_gui.core.models import load_model
from sheetaudio_gui.core.search import rank_recordings, rank_scores, search_audio_file

library_dir, model_file, seconds, least, query = sys.argv[1:6]
known = set(sys.argv[6:])
model = load_model(model_file)
print("ready", flush=True)
sys.stdin.readline()
counts = {"listings": 0, "searches": 0, "reads": 0, "gone_while_reading": 0, "hits": 0}
counts["busy_retries"] = 0

class CountRetries(logging.Handler):
    def emit(self, record):
        counts["busy_retries"] += "library busy" in record.getMessage()

logging.getLogger("sheetaudio_gui.core.index").addHandler(CountRetries())
logging.getLogger("sheetaudio_gui.core.index").setLevel(logging.INFO)
rng = np.random.default_rng(0)
with Library(Path(library_dir), model) as lib:
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline or counts["listings"] < int(least):
        docs = lib.documents()
        counts["listings"] += 1
        assert {str(d.path) for d in docs} <= known
        q = rng.normal(size=(3, 64)).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        hits = rank_recordings(lib, q, 10) + rank_scores(lib, q, 10)
        hits += search_audio_file(lib, Path(query), 0.0, 3.0, 10).hits
        counts["searches"] += 3
        counts["hits"] += len(hits)
        assert {str(h.document) for h in hits} <= known
        for d in docs:
            if d.state != "indexed":
                continue
            try:
                if d.kind == "audio":
                    a = lib.audio(d.path)
                    assert len(a.passages) == len(a.passage_spans) > 0
                    norms = np.linalg.norm(a.passages, axis=1)
                else:
                    norms = np.array([np.linalg.norm(s.passage) for s in lib.systems(d.path)])
                assert len(norms) > 0 and np.abs(norms - 1).max() < 0.02, d.path
                counts["reads"] += 1
            except FileProblem as error:  # removed between the listing and the read
                assert "not in the library" in str(error) or " is pending" in str(error), error
                counts["gone_while_reading"] += 1
print(json.dumps(counts), flush=True)
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], list[Path]]:
    """A tiny model, and the files of two writers (disjoint)."""
    import pymupdf

    folder = tmp_path_factory.mktemp("concurrency")
    torch.manual_seed(0)
    save_model(PassageModel(ModelDims(cnn_channels=(4, 4, 8, 8), gru_hidden=8)), folder / "m.pt")
    with pymupdf.open(DEMO_PDF) as src:
        out = pymupdf.open()
        out.insert_pdf(src, from_page=0, to_page=0)
        out.save(folder / "chorale.pdf")
        out.close()
    first = [folder / "chorale.pdf", *(melody(folder / f"a{i}.wav", 4.0, i) for i in range(2))]
    second = [melody(folder / f"b{i}.wav", 3.0 + i, 10 + i) for i in range(3)]
    return folder / "m.pt", first, second


def start(script: str, *args: object) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
    return proc


def test_two_indexers_and_a_searcher_share_a_library_without_errors_or_deadlock(tmp_path, setup):
    model_file, first, second = setup
    library_dir = tmp_path / "lib"
    every = [str(p) for p in first + second]
    procs = {
        "writer A": start(WRITER, library_dir, model_file, BUSY_S, MIN_OPS, 1, *first),
        "writer B": start(WRITER, library_dir, model_file, BUSY_S, MIN_OPS, 2, *second),
        "reader": start(READER, library_dir, model_file, BUSY_S, MIN_OPS, second[2], *every),
    }
    for proc in procs.values():  # all imported and ready: go at once
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = {}
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            for p in procs.values():
                p.kill()
            pytest.fail(f"{name} did not finish within {TIMEOUT_S} s: a deadlock")
        assert proc.returncode == 0, f"{name} failed:\n{err}"
        results[name] = json.loads(out.strip().splitlines()[-1])
    a, b, reader = results["writer A"], results["writer B"], results["reader"]
    print("concurrency:", json.dumps(results))
    assert a["added"] + a["removed"] >= MIN_OPS and b["added"] + b["removed"] >= MIN_OPS
    assert reader["listings"] >= MIN_OPS and reader["searches"] >= 3 * MIN_OPS
    with Library(library_dir, load_model(model_file)) as lib:
        assert lib.check() == []
        assert sorted(str(d.path) for d in lib.documents()) == sorted(a["present"] + b["present"])
        assert all(d.state == "indexed" for d in lib.documents())
