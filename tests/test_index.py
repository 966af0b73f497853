"""The library index: adding, skipping, re-embedding, removing, crash safety, threads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sheetaudio_gui.core.errors import Cancelled, SheetAudioError
from sheetaudio_gui.core.index import Library, from_bf16_bits, to_bf16_bits
from sheetaudio_gui.core.jobs import CancelToken, run_to_end
from sheetaudio_gui.core.models import LoadedModel, PassageModel, load_model, save_model

SR = 22050


def tune(path: Path, seconds: float, seed: int) -> Path:
    """A melody of random sine notes (0.25-0.6 s each): different for every seed."""
    rng = np.random.default_rng(seed)
    parts = []
    total = 0
    while total < seconds * SR:
        n = int(rng.uniform(0.25, 0.6) * SR)
        f = 220.0 * 2 ** (rng.integers(0, 24) / 12)
        t = np.arange(n) / SR
        parts.append(0.3 * np.sin(2 * np.pi * f * t) * np.exp(-3 * t))
        total += n
    sf.write(path, np.concatenate(parts)[: int(seconds * SR)].astype(np.float32), SR)
    return path


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "m.pt"
    save_model(PassageModel(), path)
    return path


@pytest.fixture(scope="module")
def model(model_file: Path) -> LoadedModel:
    return load_model(model_file)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("audio")
    return [tune(folder / f"tune{i}.flac", 20.0 + 5 * i, seed=i) for i in range(3)]


def test_bfloat16_storage_round_trips_within_its_precision():
    x = np.random.default_rng(0).normal(size=(100, 64)).astype(np.float32)
    back = from_bf16_bits(to_bf16_bits(x))
    assert np.allclose(back, x, rtol=2**-8, atol=0)


def test_adding_indexes_scores_and_audio_and_skips_unchanged_files(
    tmp_path, model, recordings, engraved_pdf
):
    with Library(tmp_path / "lib", model) as lib:
        report = run_to_end(lib.add([engraved_pdf, recordings[0].parent]))
        assert sorted(report.added) == sorted([engraved_pdf, *recordings])
        assert not report.failed
        docs = {d.path: d for d in lib.documents()}
        assert all(d.state == "indexed" for d in docs.values())
        assert docs[engraved_pdf].pages == 2 and docs[engraved_pdf].systems >= 2
        assert docs[recordings[1]].duration_s == pytest.approx(25.0, abs=0.06)
        assert lib.check() == []
        again = run_to_end(lib.add([engraved_pdf, recordings[0].parent]))
        assert again.added == [] and sorted(again.skipped) == sorted([engraved_pdf, *recordings])


def test_stored_embeddings_equal_fresh_ones_to_bfloat16_precision(tmp_path, model, recordings):
    from sheetaudio_gui.core.audio import file_spectrogram
    from sheetaudio_gui.core.encode import encode_audio

    with Library(tmp_path / "lib", model) as lib:
        run_to_end(lib.add([recordings[0]]))
        stored = lib.audio(recordings[0])
    fresh = encode_audio(model, file_spectrogram(recordings[0]))
    assert stored.passages.shape == fresh.passages.shape
    assert np.allclose(stored.passages, fresh.passages, atol=1e-2)
    assert np.array_equal(stored.passage_spans, fresh.passage_spans)
    assert np.allclose(stored.snippet_start_s, fresh.snippet_start_s)


def test_touched_file_with_same_content_is_skipped_and_changed_one_reembedded(
    tmp_path, model, recordings
):
    copy = tmp_path / "copy.flac"
    copy.write_bytes(recordings[0].read_bytes())
    with Library(tmp_path / "lib", model) as lib:
        run_to_end(lib.add([copy]))
        os.utime(copy, ns=(time.time_ns(), time.time_ns() + 10**9))
        assert run_to_end(lib.add([copy])).skipped == [copy]
        tune(copy, 12.0, seed=7)
        report = run_to_end(lib.add([copy]))
        assert report.added == [copy]
        assert lib.documents()[0].duration_s == pytest.approx(12.0, abs=0.06)
        assert lib.check() == []


def test_a_new_model_marks_documents_pending_and_reembeds_them(tmp_path, model, recordings):
    with Library(tmp_path / "lib", model) as lib:
        run_to_end(lib.add([recordings[0]]))
    torch.manual_seed(1)
    save_model(PassageModel(), tmp_path / "m2.pt")
    other = load_model(tmp_path / "m2.pt")
    assert other.model_id != model.model_id
    with Library(tmp_path / "lib", other) as lib:
        assert [d.state for d in lib.documents()] == ["pending"]
        assert run_to_end(lib.add([recordings[0]])).added == [recordings[0]]
        assert [d.state for d in lib.documents()] == ["indexed"]
        assert lib.check() == []


def test_scores_cut_another_way_are_embedded_again_and_recordings_kept(
    tmp_path, model, recordings, engraved_pdf, monkeypatch
):
    """A score's stored id covers the model's weights and how systems are found and strips cut
    (config); a recording's only the weights, so a new detector does not re-embed hours of audio."""
    import sheetaudio_gui.core.index as index_module

    with Library(tmp_path / "lib", model) as lib:
        run_to_end(lib.add([engraved_pdf, recordings[0]]))
    monkeypatch.setattr(index_module, "SHEET_CUT_VERSION", index_module.SHEET_CUT_VERSION + 1)
    with Library(tmp_path / "lib", model) as lib:
        state = {d.path: d.state for d in lib.documents()}
        assert state == {engraved_pdf: "pending", recordings[0]: "indexed"}
        report = run_to_end(lib.add([engraved_pdf, recordings[0]]))
        assert report.added == [engraved_pdf] and report.skipped == [recordings[0]]
        assert [d.state for d in lib.documents()] == ["indexed", "indexed"]
        assert lib.check() == []


def test_removing_documents_compacts_matrices_and_keeps_the_rest_intact(
    tmp_path, model, recordings
):
    with Library(tmp_path / "lib", model) as lib:
        run_to_end(lib.add(recordings))
        keep = lib.audio(recordings[2])
        assert lib.remove(recordings[0]) and lib.remove(recordings[1])
        assert not lib.remove(recordings[1])
        assert [d.path for d in lib.documents()] == [recordings[2]]
        after = lib.audio(recordings[2])
        assert np.array_equal(after.passages, keep.passages)
        assert lib.check() == []
        files = list((tmp_path / "lib" / "embeddings").iterdir())
        assert all(".0." not in f.name for f in files if f.name.startswith("audio")), files


def test_rescan_drops_deleted_files_and_finds_new_ones(tmp_path, model):
    folder = tmp_path / "music"
    folder.mkdir()
    a = tune(folder / "a.wav", 6.0, seed=1)
    with Library(tmp_path / "lib", model) as lib:
        run_to_end(lib.add([folder]))
        a.unlink()
        b = tune(folder / "b.wav", 6.0, seed=2)
        report = run_to_end(lib.rescan())
        assert report.removed == [a] and report.added == [b]
        assert [d.path for d in lib.documents()] == [b]


def test_unreadable_files_are_reported_and_recorded_as_failed(tmp_path, model):
    bad = tmp_path / "broken.flac"
    bad.write_bytes(b"not audio at all" * 10)
    with Library(tmp_path / "lib", model) as lib:
        report = run_to_end(lib.add([bad, tmp_path / "missing.pdf"]))
        assert [p for p, _ in report.failed] == [tmp_path / "missing.pdf", bad]
        (doc,) = lib.documents()
        assert doc.state == "failed" and "broken.flac" in (doc.error or "")


def test_cancel_stops_between_documents_and_keeps_what_was_committed(tmp_path, model, recordings):
    token = CancelToken()
    with Library(tmp_path / "lib", model) as lib:
        job = lib.add(recordings, token)
        with pytest.raises(Cancelled):
            for progress in job:
                if progress.message.startswith("indexed"):
                    token.cancel()
        states = sorted(d.state for d in lib.documents())
        assert states == ["indexed", "pending", "pending"]
        assert lib.check() == []
        report = run_to_end(lib.add(recordings))
        assert len(report.added) == 2 and len(report.skipped) == 1


def test_a_score_is_embedded_page_by_page_as_it_is_decoded_with_the_same_result(
    tmp_path, model, engraved_pdf
):
    """The helper renders and detects page k + 1 while page k is embedded; progress names each
    page; what is stored equals embedding all the score's systems at once."""
    from sheetaudio_gui.core.encode import cut_systems, embed_cuts
    from sheetaudio_gui.core.score import detect_systems, open_score

    with Library(tmp_path / "lib", model) as lib:
        steps = list(lib.add([engraved_pdf]))
        stored = lib.systems(engraved_pdf)
    pages = [p for p in steps if p.message.startswith(f"{engraved_pdf.name}: page")]
    assert pages and pages[-1].message == f"{engraved_pdf.name}: page 2 of 2"
    # a bar moves within the file: half of it after page 1 of 2, all of it after page 2
    assert [p.part for p in pages][-1] == 1.0 and all(p.fraction <= 1.0 for p in pages)
    assert {p.part for p in pages} <= {0.5, 1.0} and pages[-1].done == 0
    with open_score(engraved_pdf) as doc:
        cuts = [
            cut
            for k in range(doc.page_count)
            for cut in cut_systems(doc.page(k), detect_systems(doc.page(k).image))
        ]
    fresh = embed_cuts(model, cuts)
    assert [(s.page, s.index) for s in stored] == [(s.page, s.index) for s in fresh]
    assert np.allclose(
        np.stack([s.passage for s in stored]), np.stack([s.passage for s in fresh]), atol=1e-2
    )


def test_cancel_in_the_middle_of_a_score_leaves_it_pending_and_resumable(
    tmp_path, model, engraved_pdf
):
    token = CancelToken()
    with Library(tmp_path / "lib", model) as lib:
        with pytest.raises(Cancelled):
            for progress in lib.add([engraved_pdf], token):
                if ": page " in progress.message:  # page 1 (or both, if decoded by then)
                    token.cancel()
        assert [d.state for d in lib.documents()] == ["pending"]
        assert lib.check() == []
        assert run_to_end(lib.add([engraved_pdf])).added == [engraved_pdf]


def test_a_decoder_that_breaks_midway_through_a_score_writes_nothing_of_it(
    tmp_path, model, engraved_pdf, monkeypatch
):
    """An unexpected error in the helper (a bug, not a bad file) stops the job before the
    pages decoded so far are written as if they were the whole score."""
    from sheetaudio_gui.core import score

    detect = score.detect_systems
    calls = []

    def breaks_on_page_two(image):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("decoder bug")
        return detect(image)

    monkeypatch.setattr(score, "detect_systems", breaks_on_page_two)
    with Library(tmp_path / "lib", model) as lib:
        with pytest.raises(RuntimeError, match="decoder bug"):
            run_to_end(lib.add([engraved_pdf]))
        assert [d.state for d in lib.documents()] == ["pending"]
        assert lib.check() == []


def test_two_threads_with_their_own_library_objects_index_at_once(tmp_path, model, recordings):
    errors: list[BaseException] = []

    def work(paths: list[Path]) -> None:
        try:
            with Library(tmp_path / "lib", model) as lib:
                run_to_end(lib.add(paths))
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [
        threading.Thread(target=work, args=([recordings[0], recordings[2]],)),
        threading.Thread(target=work, args=([recordings[1]],)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Library(tmp_path / "lib", model) as lib:
        assert len(lib.documents()) == 3 and lib.check() == []
        assert len(lib.audio(recordings[1]).passages) > 0


def test_bytes_past_the_committed_end_are_ignored_and_overwritten(tmp_path, model, recordings):
    with Library(tmp_path / "lib", model) as lib:
        run_to_end(lib.add([recordings[0]]))
    for f in (tmp_path / "lib" / "embeddings").iterdir():  # a writer killed mid-append
        with open(f, "ab") as out:
            out.write(b"\x7f" * 1000)
    with Library(tmp_path / "lib", model) as lib:
        assert lib.check() == []
        run_to_end(lib.add([recordings[1]]))
        assert lib.check() == []
        assert np.abs(np.linalg.norm(lib.audio(recordings[1]).passages, axis=1) - 1).max() < 0.02


KILL_SCRIPT = """
import sys
from pathlib import Path
from sheetaudio_gui.core.index import Library
from sheetaudio_gui.core.jobs import run_to_end
from sheetaudio_gui.core.models import load_model
lib = Library(Path(sys.argv[1]), load_model(sys.argv[2]))
print("ready", flush=True)
run_to_end(lib.add([Path(p) for p in sys.argv[3:]]))
"""


@pytest.mark.parametrize(
    "delays", [(0.8,), pytest.param((0.2, 0.6, 1.0, 1.4, 1.8), marks=pytest.mark.slow)]
)
def test_sigkill_during_indexing_leaves_a_library_that_opens_and_resumes(
    tmp_path, model_file, model, delays
):
    folder = tmp_path / "music"
    folder.mkdir()
    files = [tune(folder / f"t{i}.wav", 15.0, seed=10 + i) for i in range(6)]
    for delay in delays:
        proc = subprocess.Popen(
            [sys.executable, "-c", KILL_SCRIPT, str(tmp_path / "lib"), str(model_file)]
            + [str(f) for f in files],
            stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None
        proc.stdout.readline()  # imports done, library open
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with Library(tmp_path / "lib", model) as lib:
            assert lib.check() == []
            for doc in lib.documents():
                if doc.state == "indexed":
                    assert len(lib.audio(doc.path).passages) > 0
    with Library(tmp_path / "lib", model) as lib:
        report = run_to_end(lib.add(files))
        assert len(report.added) + len(report.skipped) == len(files)
        assert all(d.state == "indexed" for d in lib.documents())
        assert lib.check() == []


def test_a_library_written_by_a_newer_version_is_refused_with_advice_not_damaged(tmp_path, model):
    import sqlite3

    with Library(tmp_path / "lib", model):
        pass
    db = sqlite3.connect(tmp_path / "lib" / "library.sqlite")
    with db:
        db.execute("INSERT INTO matrices VALUES('score_future', 'score_future.0.bin', 7, 7)")
    db.close()
    with pytest.raises(SheetAudioError, match=r"newer sheetaudio.*score_future"):
        Library(tmp_path / "lib", model)
    db = sqlite3.connect(tmp_path / "lib" / "library.sqlite")
    assert db.execute("SELECT rows FROM matrices WHERE name = 'score_future'").fetchone() == (7,)
    db.close()
