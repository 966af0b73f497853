"""Library fault tolerance: SIGKILL at random points, damaged files and their repair, read-only
folders and full disks.

A tiny random model (4-8 CNN channels) keeps every indexing run to a fraction of a second, so a
kill test can kill the indexer many times. The killed indexers are children forked from a server
process that has already imported torch and loaded the model (a fresh interpreter per kill would
spend seconds on imports); one kill goes through the real `sheetaudio library add` command.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from material import TINY, melody, tiny_model_file

from sheetaudio_gui.core import index
from sheetaudio_gui.core.errors import IndexCorrupt
from sheetaudio_gui.core.index import Library, LibraryBusy, LibraryNotWritable
from sheetaudio_gui.core.jobs import run_to_end
from sheetaudio_gui.core.models import LoadedModel, load_model

SR = 22050
DEMO_PDF = Path(__file__).resolve().parents[1] / "resources" / "demo" / "Chorale_BWV_263.pdf"


def one_page_score(path: Path) -> Path:
    """The first page of a demo chorale (an engraved vector PDF with three systems)."""
    import pymupdf

    with pymupdf.open(DEMO_PDF) as src:
        out = pymupdf.open()
        out.insert_pdf(src, from_page=0, to_page=0)
        out.save(path)
        out.close()
    return path


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_file(tmp_path_factory.mktemp("model"), TINY)


@pytest.fixture(scope="module")
def model(model_file: Path) -> LoadedModel:
    torch.set_num_threads(1)
    return load_model(model_file)


@pytest.fixture(scope="module")
def music(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with one score page and three short recordings."""
    folder = tmp_path_factory.mktemp("music")
    one_page_score(folder / "chorale.pdf")
    for i in range(3):
        melody(folder / f"t{i}.wav", 5.0 + i, seed=i)
    return folder


def snapshot(lib: Library) -> dict[str, Any]:
    """Everything a user can get out of a library, per document (row positions left out)."""
    out: dict[str, Any] = {}
    for d in lib.documents():
        entry: dict[str, Any] = {
            "kind": d.kind,
            "state": d.state,
            "pages": d.pages,
            "systems": d.systems,
            "duration_s": d.duration_s,
        }
        if d.state == "indexed" and d.kind == "score":
            entry["embeddings"] = [
                (s.page, s.index, s.box, s.passage, s.snippets, s.window_x)
                for s in lib.systems(d.path)
            ]
        elif d.state == "indexed":
            a = lib.audio(d.path)
            entry["embeddings"] = [(a.passages, a.passage_spans, a.snippets)]
        out[str(d.path)] = entry
    return out


def assert_same_library(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert sorted(got) == sorted(want)
    for path, w in want.items():
        g = got[path]
        assert {k: v for k, v in g.items() if k != "embeddings"} == {
            k: v for k, v in w.items() if k != "embeddings"
        }, path
        assert len(g.get("embeddings", [])) == len(w.get("embeddings", [])), path
        for gs, ws in zip(g.get("embeddings", []), w.get("embeddings", []), strict=True):
            for ga, wa in zip(gs, ws, strict=True):
                assert np.allclose(np.asarray(ga), np.asarray(wa), atol=1e-6), path


# --- SIGKILL ---------------------------------------------------------------------------------

KILL_SERVER = r"""
import os, signal, sys, time, traceback
from pathlib import Path
import torch
torch.set_num_threads(1)
from sheetaudio_gui.core.index import Library
from sheetaudio_gui.core.jobs import run_to_end
from sheetaudio_gui.core.models import load_model

model = load_model(sys.argv[1])
music = Path(sys.argv[2])

def work(library_dir):
    # index the folder, forget one recording (with a compaction), index it again
    with Library(library_dir, model) as lib:
        run_to_end(lib.add([music]))
        lib.remove(music / "t0.wav")
        lib.compact(force=True)
        run_to_end(lib.add([music / "t0.wav"]))

print("ready", flush=True)
for line in sys.stdin:
    library_dir, delay = line.rstrip("\n").split("\t")
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            work(Path(library_dir))
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    deadline = started + float(delay)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            print(f"finished {code} {time.monotonic() - started:.4f}", flush=True)
            break
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            print(f"killed {time.monotonic() - started:.4f}", flush=True)
            break
        time.sleep(0.001)
"""


def reference_library(folder: Path, model: LoadedModel, music: Path) -> dict[str, Any]:
    """The same work as the kill server's, uninterrupted, in this process."""
    with Library(folder, model) as lib:
        run_to_end(lib.add([music]))
        lib.remove(music / "t0.wav")
        lib.compact(force=True)
        run_to_end(lib.add([music / "t0.wav"]))
        assert lib.check() == []
        return snapshot(lib)


class KillServer:
    def __init__(self, model_file: Path, music: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", KILL_SERVER, str(model_file), str(music)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.readline() == "ready"

    def readline(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line, "the kill server died"
        return line

    def run(self, library_dir: Path, kill_after_s: float) -> tuple[bool, float]:
        """Index into `library_dir` in a forked child, SIGKILLed after `kill_after_s` unless it
        finished: (killed, seconds it ran)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{library_dir}\t{kill_after_s}\n")
        self.proc.stdin.flush()
        words = self.readline().split()
        if words[0] == "finished":
            assert words[1] == "0", "the indexer failed (see stderr)"
            return False, float(words[2])
        return True, float(words[1])

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def kill_many_times(
    tmp_path: Path, model_file: Path, model: LoadedModel, music: Path, kills: int, seed: int
) -> dict[str, int]:
    """Kill the indexer `kills` times at seeded random moments; after every kill the library
    opens, checks clean and lists; every finished run equals the uninterrupted reference."""
    want = reference_library(tmp_path / "reference", model, music)
    rng = random.Random(seed)
    server = KillServer(model_file, music)
    stats = {"kills": 0, "rounds": 0, "kills_with_partial_index": 0}
    try:
        killed, whole_s = server.run(tmp_path / "timing", 1e9)  # how long a whole run takes
        assert not killed
        with Library(tmp_path / "timing", model) as lib:
            assert_same_library(snapshot(lib), want)
        library_dir = tmp_path / "round0"
        while stats["kills"] < kills:
            killed, _ = server.run(library_dir, rng.uniform(0.0, 1.2 * whole_s))
            with Library(library_dir, model) as lib:  # opens, consistent, lists
                assert lib.check() == [], f"after kill {stats['kills']}"
                got = snapshot(lib)
            if killed:
                stats["kills"] += 1
                states = [d["state"] for d in got.values()]
                stats["kills_with_partial_index"] += 0 < states.count("indexed") < len(want)
            else:
                assert_same_library(got, want)
                stats["rounds"] += 1
                library_dir = tmp_path / f"round{stats['rounds']}"
        killed, _ = server.run(library_dir, 1e9)  # finish the interrupted round
        assert not killed
        with Library(library_dir, model) as lib:
            assert lib.check() == []
            assert_same_library(snapshot(lib), want)
    finally:
        server.close()
    return stats


def test_five_sigkills_at_random_moments_leave_a_library_that_resumes_to_the_same_index(
    tmp_path, model_file, model, music
):
    stats = kill_many_times(tmp_path, model_file, model, music, kills=5, seed=1)
    assert stats["kills"] == 5


@pytest.mark.slow
def test_sixty_sigkills_at_random_moments_leave_a_library_that_resumes_to_the_same_index(
    tmp_path, model_file, model, music
):
    stats = kill_many_times(tmp_path, model_file, model, music, kills=60, seed=2)
    print("kill statistics:", json.dumps(stats))
    assert stats["kills"] == 60
    assert stats["kills_with_partial_index"] >= 10  # the kills did land mid-indexing


def test_sigkilled_sheetaudio_library_add_command_resumes_to_the_same_index(
    tmp_path, model_file, model, music
):
    want = reference_library(tmp_path / "reference", model, music)
    library_dir = tmp_path / "lib"
    command = [sys.executable, "-m", "sheetaudio_gui.cli", "library", "add"]
    command += ["--library", str(library_dir), "--model", str(model_file), str(music)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600  # a deadlock guard: imports crawl on a busy machine
    while not (library_dir / "library.sqlite").exists() and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    time.sleep(random.Random(3).uniform(0.0, 0.15))  # the library is open: indexing runs
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    with Library(library_dir, model) as lib:
        assert lib.check() == []
        lib.documents()
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with Library(library_dir, model) as lib:  # the reference also removed and re-added t0:
        assert lib.check() == []  # the same documents and embeddings, other row positions
        assert_same_library(snapshot(lib), want)


# --- damage and repair -----------------------------------------------------------------------


def search_everything(lib: Library, music: Path) -> list[Any]:
    """An audio query and a score query: documents, scores, regions and spans."""
    from sheetaudio_gui.core.search import search_audio_file, search_score

    audio = search_audio_file(lib, music / "t1.wav", 0.5, 4.0, top_k=5)
    score = search_score(lib, music / "chorale.pdf", 0, top_k=5)
    return [
        [(str(h.document), round(h.score, 4), [(r.page, r.system) for r in h.regions])]
        for h in audio.hits
    ] + [
        [(str(h.document), round(h.score, 4), [(s.start_s, s.end_s) for s in h.spans])]
        for h in score.hits
    ]


def matrix_file(folder: Path, name: str) -> Path:
    (path,) = (folder / "embeddings").glob(f"{name}.*.bin")
    return path


def truncate_audio_passages(folder: Path) -> str:
    path = matrix_file(folder, "audio_passages")
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    return "audio"


def overwrite_middle_of_score_snippets(folder: Path) -> str:
    path = matrix_file(folder, "score_snippets")
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    path.write_bytes(bytes(data))
    return "score"


def delete_audio_spans(folder: Path) -> str:
    matrix_file(folder, "audio_spans").unlink()
    return "audio"


def corrupt_sqlite_header(folder: Path) -> str:
    with open(folder / "library.sqlite", "r+b") as f:
        f.write(b"this is no longer a database header" * 3)
    return "database"


@pytest.mark.parametrize(
    "damage",
    [
        truncate_audio_passages,
        overwrite_middle_of_score_snippets,
        delete_audio_spans,
        corrupt_sqlite_header,
    ],
)
def test_damage_is_detected_refused_with_advice_and_repaired_to_the_same_library(
    tmp_path, model, music, damage
):
    folder = tmp_path / "lib"
    with Library(folder, model) as lib:
        run_to_end(lib.add([music]))
        before = snapshot(lib)
        results = search_everything(lib, music)
    assert len(results) == 1 + 3  # the score found by audio, the three recordings by the page
    where = damage(folder)

    problems = Library.check_folder(folder)
    assert problems, "the damage went unnoticed"
    if where != "database":
        with Library(folder, model) as lib:
            assert lib.check() != []
    with (
        pytest.raises(IndexCorrupt, match="sheetaudio library repair") as raised,
        Library(folder, model) as lib,
    ):
        search_everything(lib, music)
    assert str(folder) in str(raised.value)

    report = run_to_end(Library.repair(folder, model))
    assert report.problems_after == []
    assert report.database_rebuilt == (where == "database")
    assert not report.indexing.failed
    with Library(folder, model) as lib:
        assert lib.check() == []
        assert_same_library(snapshot(lib), before)
        assert search_everything(lib, music) == results
        if where != "database":  # only the documents of the damaged modality were re-indexed
            assert report.damaged and {p.suffix for p in report.damaged} == (
                {".wav"} if where == "audio" else {".pdf"}
            )


def test_repair_cli_rebuilds_a_library_whose_database_header_is_gone(tmp_path, model_file, music):
    folder = tmp_path / "lib"
    with Library(folder, load_model(model_file)) as lib:
        run_to_end(lib.add([music]))
        want = sorted(str(d.path) for d in lib.documents())
    corrupt_sqlite_header(folder)
    cli = [sys.executable, "-m", "sheetaudio_gui.cli", "library"]
    check = subprocess.run(
        [*cli, "check", "--library", str(folder)], capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 1 and "library repair" in check.stdout
    repair = subprocess.run(
        [*cli, "repair", "--library", str(folder), "--model", str(model_file), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert repair.returncode == 0, repair.stderr
    out = json.loads(repair.stdout)
    assert out["database_rebuilt"] and out["problems_after"] == []
    assert sorted(out["indexing"]["added"]) == want
    assert any(".damaged-" in p for p in out["moved_aside"])
    with Library(folder, load_model(model_file)) as lib:
        assert sorted(str(d.path) for d in lib.documents()) == want
        assert all(d.state == "indexed" for d in lib.documents())


def test_repair_keeps_documents_whose_files_are_gone_in_the_list(tmp_path, model):
    music = tmp_path / "music"
    music.mkdir()
    keep = melody(music / "keep.wav", 4.0, seed=5)
    gone = melody(music / "gone.wav", 4.0, seed=6)
    with Library(tmp_path / "lib", model) as lib:
        run_to_end(lib.add([keep, gone]))
    gone.unlink()
    corrupt_sqlite_header(tmp_path / "lib")
    report = run_to_end(Library.repair(tmp_path / "lib", model))
    assert [p for p, _ in report.indexing.failed] == [gone]
    with Library(tmp_path / "lib", model) as lib:
        assert {d.path: d.state for d in lib.documents()} == {keep: "indexed", gone: "pending"}


def test_the_list_of_documents_beside_the_database_follows_adds_and_removes(tmp_path, model, music):
    with Library(tmp_path / "lib", model) as lib:
        run_to_end(lib.add([music]))
        lib.remove(music / "t1.wav")
        listed = index.read_document_list(tmp_path / "lib")
        assert listed is not None
        assert sorted(d["path"] for d in listed["documents"]) == sorted(
            str(d.path) for d in lib.documents()
        )
        assert listed["roots"] == [str(music)]
        version = listed["version"]
        run_to_end(lib.add([music / "t1.wav"]))
        lib.remove(music / "t1.wav")
        lib.remove(music / "t0.wav")
        listed = index.read_document_list(tmp_path / "lib")
        assert listed is not None and listed["version"] > version
        assert sorted(d["path"] for d in listed["documents"]) == sorted(
            str(music / n) for n in ("chorale.pdf", "t2.wav")
        )


def test_re_embedding_a_known_document_does_not_rewrite_the_list(tmp_path, model, music):
    with Library(tmp_path / "lib", model) as lib:
        run_to_end(lib.add([music / "t2.wav"]))
        stamp = (tmp_path / "lib" / "documents.json").stat().st_mtime_ns
        os.utime(music / "t2.wav")  # touched: hashed again, same content, skipped
        run_to_end(lib.add([music / "t2.wav"]))
        assert (tmp_path / "lib" / "documents.json").stat().st_mtime_ns == stamp


# --- read-only folders, full disks, busy libraries --------------------------------------------


def writes_are_refused(folder: Path) -> bool:
    try:
        (folder / ".probe").write_bytes(b"x")
    except OSError:
        return True
    (folder / ".probe").unlink()
    return False


def test_read_only_library_folder_is_refused_with_a_message_naming_it(tmp_path, model, music):
    folder = tmp_path / "lib"
    with Library(folder, model) as lib:
        run_to_end(lib.add([music / "t0.wav"]))
        before = snapshot(lib)
    for path in (folder / "embeddings", folder):
        path.chmod(0o500)
    try:
        if not writes_are_refused(folder):
            pytest.skip("running as root: chmod does not stop writes (simulated in the next test)")
        with (
            pytest.raises(LibraryNotWritable, match="read-only") as raised,
            Library(folder, model) as lib,
        ):
            run_to_end(lib.add([music / "t1.wav"]))
        assert str(folder) in str(raised.value)
    finally:
        for path in (folder, folder / "embeddings"):
            path.chmod(0o700)
    with Library(folder, model) as lib:
        assert lib.check() == []
        assert_same_library(snapshot(lib), before)


def test_read_only_files_refused_mid_add_leave_the_library_as_it_was(
    tmp_path, model, music, monkeypatch
):
    """As root chmod stops nothing, so the refusals are simulated where they would happen: the
    embeddings file (EACCES) and the database (SQLite's query_only: SQLITE_READONLY)."""
    folder = tmp_path / "lib"
    with Library(folder, model) as lib:
        run_to_end(lib.add([music / "t0.wav"]))
        before = snapshot(lib)

        def refuse(path: Path, offset: int, data: bytes) -> None:
            raise PermissionError(13, "Permission denied", str(path))

        with monkeypatch.context() as patch:
            patch.setattr(index, "_write_rows", refuse)
            with pytest.raises(LibraryNotWritable, match="read-only") as raised:
                run_to_end(lib.add([music / "t1.wav"]))
            assert str(folder) in str(raised.value)
        assert lib.check() == []
        lib._db.execute("PRAGMA query_only = ON")
        with pytest.raises(LibraryNotWritable, match="read-only") as raised:
            lib.remove(music / "t0.wav")
        assert str(folder) in str(raised.value)
        lib._db.execute("PRAGMA query_only = OFF")
    with Library(folder, model) as lib:
        assert lib.check() == []
        after = snapshot(lib)
        assert after.pop(str(music / "t1.wav"))["state"] == "pending"  # found, not indexed
        assert_same_library(after, before)
        run_to_end(lib.add([music / "t1.wav"]))  # writable again: indexing resumes
        assert lib.check() == [] and lib.documents()[-1].state == "indexed"


def test_full_disk_while_writing_embeddings_names_the_folder_and_changes_nothing(
    tmp_path, model, music, monkeypatch
):
    folder = tmp_path / "lib"
    with Library(folder, model) as lib:
        run_to_end(lib.add([music / "t0.wav"]))
        before = snapshot(lib)
        written: list[int] = []

        def fill_up(path: Path, offset: int, data: bytes) -> None:
            with open(path, "ab"), open(path, "r+b") as f:  # half lands, then the disk is full
                f.seek(offset)
                f.write(data[: len(data) // 2])
            written.append(len(data))
            raise OSError(28, "No space left on device", str(path))

        monkeypatch.setattr(index, "_write_rows", fill_up)
        with pytest.raises(LibraryNotWritable, match="full") as raised:
            run_to_end(lib.add([music / "chorale.pdf", music / "t2.wav"]))
        assert str(folder) in str(raised.value) and written
        monkeypatch.undo()
        assert lib.check() == []
        assert_same_library(
            {k: v for k, v in snapshot(lib).items() if v["state"] != "pending"}, before
        )
        run_to_end(lib.add([music / "chorale.pdf", music / "t2.wav"]))
        assert lib.check() == []
        assert all(d.state == "indexed" for d in lib.documents())


def test_full_database_names_the_folder_and_changes_nothing(tmp_path, model, music):
    folder = tmp_path / "lib"
    with Library(folder, model) as lib:
        run_to_end(lib.add([music / "t0.wav"]))
        before = snapshot(lib)
        pages = lib._db.execute("PRAGMA page_count").fetchone()[0]
        lib._db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite: "database or disk is full"
        folders = [tmp_path / f"{'long folder name ' * 6}{i}" for i in range(200)]
        for f in folders:  # their names need more database pages than there are left
            f.mkdir()
        with pytest.raises(LibraryNotWritable, match="full") as raised:
            run_to_end(lib.add([music, *folders]))
        assert str(folder) in str(raised.value)
    with Library(folder, model) as lib:
        assert lib.check() == []
        assert_same_library(snapshot(lib), before)
        assert run_to_end(lib.add([music, *folders])).added  # room again: it goes on


def test_a_writer_that_waits_too_long_for_the_lock_gets_a_clear_busy_message(
    tmp_path, model, music, monkeypatch
):
    folder = tmp_path / "lib"
    with Library(folder, model) as lib:
        run_to_end(lib.add([music / "t0.wav"]))
        other = sqlite3.connect(folder / "library.sqlite", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another program holds the write lock
        try:
            lib._db.execute("PRAGMA busy_timeout = 100")
            with pytest.raises(LibraryBusy, match="another program") as raised:
                lib.remove(music / "t0.wav")
            assert str(folder) in str(raised.value)
            assert lib.documents()[0].state == "indexed"  # readers are not blocked
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert lib.remove(music / "t0.wav") and lib.check() == []


def test_opening_a_damaged_database_raises_index_corrupt_not_a_sqlite_error(tmp_path, model):
    folder = tmp_path / "lib"
    Library(folder, model).close()
    corrupt_sqlite_header(folder)
    with pytest.raises(IndexCorrupt, match="repair --library"):
        Library(folder, model)
    shutil.rmtree(folder)
