"""Indexing in a child process: same library as indexing in-process, a native crash costs one
file and not the run, cancel stops cleanly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from material import tiny_model_file

from sheetaudio_gui.config import ModelDims
from sheetaudio_gui.core.errors import Cancelled
from sheetaudio_gui.core.index import Library
from sheetaudio_gui.core.indexer import CRASH_TEST_ENV, index_in_process
from sheetaudio_gui.core.jobs import CancelToken, run_to_end
from sheetaudio_gui.core.models import load_model

SR = 22050
TINY = ModelDims(cnn_channels=(4, 4, 8, 8), gru_hidden=16)  # library-sized rows, fast


def chirp(path: Path, seconds: float, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f = rng.uniform(200, 400) * (1 + 0.5 * t / seconds)
    sf.write(path, (0.3 * np.sin(2 * np.pi * np.cumsum(f) / SR)).astype(np.float32), SR)
    return path


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_file(tmp_path_factory.mktemp("model"), TINY)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("audio")
    return [chirp(folder / f"take {i} é.flac", 6.0 + i, seed=i) for i in range(4)]


def documents(folder: Path, model_file: Path) -> dict[str, str]:
    with Library(folder, load_model(model_file)) as lib:
        assert lib.check() == []
        return {d.path.name: d.state for d in lib.documents()}


def test_a_child_process_indexes_what_an_in_process_add_indexes(tmp_path, model_file, recordings):
    report = run_to_end(index_in_process(tmp_path / "lib", model_file, recordings))
    assert sorted(report.added) == sorted(recordings)
    with Library(tmp_path / "ref", load_model(model_file)) as lib:
        run_to_end(lib.add(recordings))
    assert documents(tmp_path / "lib", model_file) == documents(tmp_path / "ref", model_file)


def test_a_file_that_crashes_the_indexer_is_reported_and_the_others_are_indexed(
    tmp_path, model_file, recordings, monkeypatch
):
    monkeypatch.setenv(CRASH_TEST_ENV, recordings[1].name)  # the child aborts on this file
    report = run_to_end(index_in_process(tmp_path / "lib", model_file, [recordings[0].parent]))
    (failed, why), *rest = report.failed
    assert rest == [] and failed == recordings[1] and "crashed the indexer" in why
    states = documents(tmp_path / "lib", model_file)
    assert all(states[p.name] == "indexed" for p in recordings if p != recordings[1])
    assert states.get(recordings[1].name, "pending") == "pending"  # never marked indexed


def test_cancel_stops_the_child_and_keeps_what_was_committed(tmp_path, model_file, recordings):
    token = CancelToken()
    job = index_in_process(tmp_path / "lib", model_file, recordings, cancel=token)
    with pytest.raises(Cancelled):
        for progress in job:
            if progress.message.startswith("indexed"):
                token.cancel()
    states = documents(tmp_path / "lib", model_file)
    assert "indexed" in states.values()
    report = run_to_end(index_in_process(tmp_path / "lib", model_file, recordings))
    assert len(report.added) + len(report.skipped) == len(recordings)
