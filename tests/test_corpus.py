"""The synthetic aligned corpus: one small corpus built once (2 workers), checked on real values.

Sources: two Bach chorales from the music21 corpus and one small piece written here with a repeat,
first/second endings, a tie across a barline, a chord, a triplet and a grace note; plus one broken
source that must be dropped and listed. The seed is chosen so that the groups fall into train and
test, so the held-out font and soundfont are exercised.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from sheetaudio_gui import config
from sheetaudio_gui.core.errors import Cancelled
from sheetaudio_gui.core.jobs import CancelToken, Progress, run_to_end
from sheetaudio_gui.training import corpus
from sheetaudio_gui.training import corpus_format as fmt

music21 = pytest.importorskip("music21")
pytest.importorskip("verovio")
pytest.importorskip("fluidsynth")

CHORALES = ("bach/bwv66.6", "bach/bwv269")
BROKEN_ID = "broken-source"
# The small piece: measure -> notes (pitch or chord, quarter lengths); measures 1-2 are repeated,
# measure 3 is the first ending, measure 4 the second; the last note of 5 is tied into 6.
REPEATED_MEASURES = (1, 2)


def _small_piece_xml() -> str:
    m21 = music21
    part = m21.stream.Part()
    part.insert(0, m21.instrument.Piano())
    measures = []
    for number in range(1, 7):
        m = m21.stream.Measure(number=number)
        if number == 1:
            m.append(m21.meter.TimeSignature("4/4"))
            m.append([m21.note.Note(p, quarterLength=1) for p in ("C4", "D4", "E4", "F4")])
        elif number == 2:
            m.append(m21.chord.Chord(["C4", "E4", "G4"], quarterLength=2))
            for p in ("A4", "B4", "C5"):
                n = m21.note.Note(p, quarterLength=1 / 3)
                m.append(n)
            m.append(m21.note.Note("E5", quarterLength=1).getGrace())
            m.append(m21.note.Note("D5", quarterLength=1))
        elif number in (3, 4):
            m.append(m21.note.Note("G4" if number == 3 else "C4", quarterLength=4))
        elif number == 5:
            m.append(m21.note.Note("E4", quarterLength=2))
            tied = m21.note.Note("G4", quarterLength=2)
            tied.tie = m21.tie.Tie("start")
            m.append(tied)
        else:
            tail = m21.note.Note("G4", quarterLength=2)
            tail.tie = m21.tie.Tie("stop")
            m.append([tail, m21.note.Note("C4", quarterLength=2)])
        measures.append(m)
        part.append(m)
    measures[0].leftBarline = m21.bar.Repeat(direction="start")
    measures[2].rightBarline = m21.bar.Repeat(direction="end")
    part.insert(0, m21.spanner.RepeatBracket(measures[2], number=1))
    part.insert(0, m21.spanner.RepeatBracket(measures[3], number=2))
    score = m21.stream.Score([part])
    score.insert(0, m21.metadata.Metadata(title="Small repeat", composer="Test"))
    return Path(score.write("musicxml")).read_text(encoding="utf-8")


def _sources() -> list[Any]:
    pieces = []
    for name in CHORALES:
        xml = Path(music21.corpus.parse(name).write("musicxml")).read_text(encoding="utf-8")
        pieces.append(_source(name.replace("/", "-"), name, xml))
    pieces.append(_source("small-repeat", "small-repeat", _small_piece_xml()))
    pieces.append(_source(BROKEN_ID, BROKEN_ID, "<not music"))
    return pieces


def _source(piece_id: str, group: str, data: str) -> Any:
    return SimpleNamespace(
        piece_id=piece_id,
        group=group,
        origin="test",
        title=piece_id,
        composer="Bach",
        data=data,
        data_format="musicxml",
        license="public domain",
        has_lyrics=False,
    )


def _seed_with_train_and_test(groups: list[str]) -> int:
    for seed in range(1000):
        splits = [corpus.split_for_group(seed, g) for g in groups]
        if splits[-1] == "test" and "train" in splits[:-1]:
            return seed
    raise AssertionError("no seed puts the groups into train and test")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    sources = _sources()
    good = [s.group for s in sources if s.piece_id != BROKEN_ID]
    seed = _seed_with_train_and_test(good)
    out = tmp_path_factory.mktemp("corpus")
    manifest = run_to_end(
        corpus.build_corpus(out, len(sources), seed, workers=2, sources=lambda s, n: sources)
    )
    pieces = {p.id: p for p in fmt.iter_pieces(out)}
    return {"out": out, "seed": seed, "sources": sources, "manifest": manifest, "pieces": pieces}


def _spectral_flux(spec: np.ndarray) -> np.ndarray:
    """(bins, frames) -> (frames,): summed positive change of each frame over the previous one."""
    rise = np.maximum(np.diff(spec.astype(np.float64), axis=1), 0.0).sum(axis=0)
    return np.concatenate([[0.0], rise])


def _peak_flux(flux: np.ndarray, frames: np.ndarray) -> float:
    """Mean over `frames` of the largest flux within one frame of each (onsets are +-25 ms)."""
    near = np.stack([flux[np.clip(frames + d, 0, len(flux) - 1)] for d in (-1, 0, 1)])
    return float(near.max(axis=0).mean())


def test_every_good_source_is_built_and_the_broken_one_is_listed_as_dropped(
    built: dict[str, Any],
) -> None:
    assert set(built["pieces"]) == {"bach-bwv66.6", "bach-bwv269", "small-repeat"}
    dropped = built["manifest"]["dropped"]
    assert [d["id"] for d in dropped] == [BROKEN_ID]
    assert dropped[0]["reason"]


def test_every_notehead_is_struck_inside_the_audio_or_continues_a_tie(
    built: dict[str, Any],
) -> None:
    for piece in built["pieces"].values():
        drawn = {n.id for p in piece.pages for n in p.noteheads}
        for perf in piece.performances:
            assert set(perf.notehead_onsets) | set(piece.tied_noteheads) == drawn
            assert not set(perf.notehead_onsets) & set(piece.tied_noteheads)
            onsets = np.concatenate([np.asarray(v) for v in perf.notehead_onsets.values()])
            assert onsets.min() > 0.0
            assert onsets.max() < perf.duration_s


def test_spectral_flux_rises_at_listed_onsets_more_than_at_random_times(
    built: dict[str, Any],
) -> None:
    rng = np.random.default_rng(0)
    for piece in built["pieces"].values():
        for k, perf in enumerate(piece.performances):
            flux = _spectral_flux(piece.spectrogram(k))
            onsets = np.unique(
                np.concatenate([np.asarray(v) for v in perf.notehead_onsets.values()])
            )
            at = np.round(onsets * config.FRAMES_PER_SECOND).astype(int)
            random = rng.integers(2, len(flux) - 2, size=2000)

            assert _peak_flux(flux, at) > 1.5 * _peak_flux(flux, random), (piece.id, perf.id)


def test_system_passages_are_ordered_and_tile_the_audio_from_first_onset_to_last_note(
    built: dict[str, Any],
) -> None:
    for piece in built["pieces"].values():
        for perf in piece.performances:
            assert len(perf.system_spans) == len(piece.systems)
            plays = sorted(
                (start, end, system)
                for system, spans in enumerate(perf.system_spans)
                for start, end in spans
            )
            assert all(spans for spans in perf.system_spans), "every system is played"
            first_onset = min(min(v) for v in perf.notehead_onsets.values())
            assert plays[0][0] == pytest.approx(first_onset)
            for (_, end, _), (start, _, _) in itertools.pairwise(plays):
                assert end == pytest.approx(start)
            assert all(end > start for start, end, _ in plays)
            last_onset = max(max(v) for v in perf.notehead_onsets.values())
            assert last_onset < plays[-1][1] <= perf.duration_s
            if not any(len(s) > 1 for s in perf.system_spans):  # no repeats: reading order
                assert [system for _, _, system in plays] == list(range(len(piece.systems)))


def test_repeated_measures_sound_twice_and_endings_once(built: dict[str, Any]) -> None:
    piece = built["pieces"]["small-repeat"]
    perf = piece.performances[0]
    counts = sorted(len(v) for v in perf.notehead_onsets.values())
    # measures 1-2: 4 + (3 chord + 3 triplet + grace + 1) = 12 noteheads, each played twice;
    # the endings (2), measure 5 (2) and the untied note of 6 (1) once.
    assert counts.count(2) == 12
    assert counts.count(1) == 5
    assert len(piece.tied_noteheads) == 1
    total_plays = sum(len(s) for s in perf.system_spans)
    assert total_plays > len(piece.systems)  # the system with the repeat is played twice


def test_tied_notes_have_one_onset_and_their_continuation_none(built: dict[str, Any]) -> None:
    chorale = built["pieces"]["bach-bwv66.6"]
    assert chorale.tied_noteheads, "bwv66.6 has ties"
    for perf in chorale.performances:
        assert all(len(v) == 1 for v in perf.notehead_onsets.values())
        assert not set(chorale.tied_noteheads) & set(perf.notehead_onsets)


def test_manifest_counts_match_the_files(built: dict[str, Any]) -> None:
    manifest = built["manifest"]
    on_disk = json.loads((built["out"] / fmt.MANIFEST_FILE).read_text())
    assert on_disk["splits"] == manifest["splits"]
    for split, counts in manifest["splits"].items():
        pieces = [p for p in built["pieces"].values() if p.split == split]
        assert counts["pieces"] == len(pieces)
        assert counts["pages"] == sum(len(p.pages) for p in pieces)
        assert counts["systems"] == sum(len(p.systems) for p in pieces)
        assert counts["noteheads"] == sum(len(pg.noteheads) for p in pieces for pg in p.pages)
        assert counts["audio_seconds"] == pytest.approx(
            sum(r.duration_s for p in pieces for r in p.performances), abs=0.02
        )
        for p in pieces:
            for page in p.pages:
                assert (p.directory / page.png).is_file()
            for r in p.performances:
                audio = p.directory / r.audio
                assert audio.is_file()
                assert r.spectrogram is not None
                spec = np.load(p.directory / r.spectrogram)
                assert spec.dtype == np.float16
                assert spec.shape[0] == config.SPEC_BINS
                assert abs(spec.shape[1] - r.duration_s * config.FRAMES_PER_SECOND) <= 2
    assert manifest["seed"] == built["seed"]
    soundfonts = manifest["versions"]["soundfonts"]
    assert all(len(s["sha256"]) == 64 for s in soundfonts.values())


def test_test_split_uses_only_the_held_out_font_and_soundfont(built: dict[str, Any]) -> None:
    splits = {p.split for p in built["pieces"].values()}
    assert {"train", "test"} <= splits
    for piece in built["pieces"].values():
        soundfonts = {r.soundfont for r in piece.performances}
        if piece.split == "test":
            assert piece.music_font == config.CORPUS_MUSIC_FONT_TEST
            assert soundfonts == {config.CORPUS_SOUNDFONT_TEST}
        else:
            assert piece.music_font != config.CORPUS_MUSIC_FONT_TEST
            assert config.CORPUS_SOUNDFONT_TEST not in soundfonts


def test_pages_have_staff_spacing_near_target_and_noteheads_inside_their_systems(
    built: dict[str, Any],
) -> None:
    lo, hi = config.CORPUS_STAFF_SPACE_PX
    jitter = config.CORPUS_STAFF_SPACE_JITTER
    for piece in built["pieces"].values():
        for page in piece.pages:
            image = piece.page_image(page.index)
            assert image.shape == (page.height_px, page.width_px)
            for system in page.systems:
                for staff in system.staves:
                    space = float(np.diff(staff.lines_y).mean())
                    assert lo * (1 - jitter) * 0.97 < space < hi * (1 + jitter) * 1.03
            for note in page.noteheads:
                x0, y0, x1, y1 = page.systems[note.system].box
                cx, cy = (note.box[0] + note.box[2]) / 2, (note.box[1] + note.box[3]) / 2
                assert x0 <= cx <= x1
                # ledger-line notes stick out of the staff box by a few staff spaces
                assert y0 - 60 <= cy <= y1 + 60
                bx0, by0, bx1, by1 = (int(round(c)) for c in note.box)
                assert image[by0:by1, bx0:bx1].min() < 100, "a notehead box holds ink"


def test_rerun_skips_finished_pieces(built: dict[str, Any]) -> None:
    out = built["out"]
    before = {p: p.stat().st_mtime_ns for p in out.glob("pieces/*/piece.json")}
    sources = built["sources"]
    job = corpus.build_corpus(
        out, len(sources), built["seed"], workers=2, sources=lambda s, n: sources
    )
    first = next(job)
    assert first == Progress(len(sources), len(sources), first.message)
    manifest = run_to_end(job)
    assert manifest["build"]["pieces_built_this_run"] == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("pieces/*/piece.json")} == before
    assert manifest["splits"] == built["manifest"]["splits"]


def test_same_seed_builds_the_same_piece_json(built: dict[str, Any], tmp_path: Path) -> None:
    source = next(s for s in built["sources"] if s.piece_id == "bach-bwv269")
    run_to_end(
        corpus.build_corpus(tmp_path, 1, built["seed"], workers=1, sources=lambda s, n: [source])
    )
    name = fmt.piece_dirname(source.piece_id)
    again = (tmp_path / "pieces" / name / "piece.json").read_bytes()
    assert again == (built["out"] / "pieces" / name / "piece.json").read_bytes()


def test_a_cancelled_build_stops_and_leaves_no_half_pieces(
    built: dict[str, Any], tmp_path: Path
) -> None:
    token = CancelToken()
    sources = built["sources"][:2]
    job = corpus.build_corpus(
        tmp_path, 2, built["seed"], workers=1, token=token, sources=lambda s, n: sources
    )
    next(job)
    token.cancel()
    with pytest.raises(Cancelled):
        run_to_end(job)
    assert not list((tmp_path / "pieces").glob(".tmp-*"))
    assert not (tmp_path / fmt.MANIFEST_FILE).exists()


def test_splits_follow_the_configured_fractions_by_group() -> None:
    groups = [f"group{i}" for i in range(4000)]
    splits = [corpus.split_for_group(7, g) for g in groups]
    for name, fraction in config.CORPUS_SPLIT_FRACTIONS:
        assert splits.count(name) / len(groups) == pytest.approx(fraction, abs=0.025)
    assert splits == [corpus.split_for_group(7, g) for g in groups]


def test_show_draws_page_above_spectrogram_with_coloured_noteheads(
    built: dict[str, Any], tmp_path: Path
) -> None:
    from sheetaudio_gui.cli import main

    png = tmp_path / "show.png"
    assert main(["corpus", "show", str(built["out"]), "small-repeat", "--png", str(png)]) == 0
    import pymupdf

    pix = pymupdf.Pixmap(str(png))
    piece = built["pieces"]["small-repeat"]
    assert pix.width == piece.pages[0].width_px
    assert pix.height > piece.pages[0].height_px + config.SPEC_BINS


def test_the_corpus_identity_ignores_how_the_build_ran_but_not_what_it_made(tmp_path: Path) -> None:
    from sheetaudio_gui.training.bank import manifest_hash

    def write(folder: str, manifest: dict[str, Any]) -> Path:
        path = tmp_path / folder
        path.mkdir()
        (path / fmt.MANIFEST_FILE).write_text(json.dumps(manifest))
        return path

    made = {"seed": 0, "splits": {"test": {"pieces": 219}}}
    here = write("a", {**made, "build": {"wall_seconds": 2160}, "command": "build --out /a"})
    there = write("b", {**made, "build": {"wall_seconds": 476}, "command": "build --out /b"})
    other = write("c", {**made, "splits": {"test": {"pieces": 218}}})
    assert manifest_hash(here) == manifest_hash(there) != manifest_hash(other)
    assert manifest_hash(tmp_path / "empty") == "none"


def test_music_that_an_earlier_split_holds_is_left_out_of_a_later_one(
    built: dict[str, Any], tmp_path: Path
) -> None:
    """A movement that a source collection holds twice (under two mass numbers) must not put
    training music into the test split, nor count one test piece's twin as another piece."""
    import shutil

    copy = tmp_path / "corpus"
    shutil.copytree(built["out"], copy)
    train = next(p for p in built["pieces"].values() if p.split == "train")
    test = next(p for p in built["pieces"].values() if p.split == "test")
    for source, twin_id in ((train, "zz-twin-of-train"), (test, "zz-twin-of-test")):
        twin = copy / fmt.PIECES_DIR / twin_id
        shutil.copytree(source.directory, twin)
        data = json.loads((twin / fmt.PIECE_FILE).read_text())
        data.update(id=twin_id, group=twin_id, split="test")
        (twin / fmt.PIECE_FILE).write_text(json.dumps(data))
    in_test = [p.id for p in fmt.iter_pieces(copy, "test")]
    assert "zz-twin-of-train" in in_test and "zz-twin-of-test" in in_test
    distinct = [p.id for p in fmt.split_pieces(copy, "test")]
    assert distinct == [i for i in in_test if not i.startswith("zz-twin")]
    assert test.id in distinct
    assert [p.id for p in fmt.split_pieces(copy, "train")] == [
        p.id for p in fmt.iter_pieces(copy, "train")
    ]


def test_an_evaluation_library_folder_holds_its_split_and_nothing_else(
    built: dict[str, Any], tmp_path: Path
) -> None:
    """`eval-library` indexes whole folders, so a file an earlier run left there (a piece since
    left out) would be searched as a distractor: writing the split deletes it."""
    from sheetaudio_gui.commands.library import write_split_library

    out = tmp_path / "evallib"
    (out / "scores").mkdir(parents=True)
    stale = out / "scores" / "left-out-piece.pdf"
    stale.write_bytes(b"%PDF-1.4 not a piece of this split")
    pieces = write_split_library(built["out"], out, "test")
    assert [pc["id"] for pc in pieces] == [p.id for p in fmt.split_pieces(built["out"], "test")]
    assert not stale.exists()
    assert sorted((out / "scores").iterdir()) == sorted(pc["pdf"] for pc in pieces)
    audio = sorted(p["path"] for pc in pieces for p in pc["performances"])
    assert sorted((out / "audio").iterdir()) == audio
