"""Search both ways. With an untrained model only exact matches are meaningful, so the ranking
tests query with inputs identical to indexed material; the rest checks the machinery and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pymupdf
import pytest
import torch

from sheetaudio_gui.cli import main
from sheetaudio_gui.config import (
    AUDIO_SNIPPET_FRAMES,
    AUDIO_SNIPPET_HOP_FRAMES,
    QUERY_PASSAGE_HOP_SNIPPETS,
    QUERY_PASSAGE_SNIPPETS,
    RESCORE_MAX_QUERY_SNIPPETS,
    SNIPPET_PATH_WEIGHT,
)
from sheetaudio_gui.core.audio import file_spectrogram
from sheetaudio_gui.core.centring import centre_of, centred, hub_weight, penalties_of
from sheetaudio_gui.core.encode import (
    AudioEncoding,
    ReadingWindows,
    SystemEncoding,
    encode_audio,
    encode_page,
    passage_seconds,
    query_passage_plan,
    reading_windows,
    rescore_windows,
)
from sheetaudio_gui.core.index import Library
from sheetaudio_gui.core.jobs import run_to_end
from sheetaudio_gui.core.models import LoadedModel, PassageModel, load_model, save_model
from sheetaudio_gui.core.score import open_score
from sheetaudio_gui.core.search import (
    contiguous_match,
    ordered_match,
    passage_map,
    rank_recordings,
    rank_scores,
    rescore_match,
    rescore_matches,
    search_audio_file,
    search_score,
    snippet_path_match,
    snippet_path_matches,
    with_snippet_paths,
)

SR = 22050


def tune(path: Path, seconds: float, seed: int) -> Path:
    """A melody of random decaying sine notes, different for every seed."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    starts = np.cumsum(rng.integers(int(0.25 * SR), int(0.6 * SR), size=n // int(0.25 * SR)))
    signal = np.zeros(n, np.float32)
    for a, b in zip(np.concatenate([[0], starts]), starts, strict=False):
        if a >= n:
            break
        t = np.arange(min(b, n) - a) / SR
        f = 220.0 * 2 ** (rng.integers(0, 24) / 12)
        signal[a : a + len(t)] = 0.3 * np.sin(2 * np.pi * f * t) * np.exp(-3 * t)
    sf.write(path, signal, SR)
    return path


def calibrated(model: PassageModel, pdf: Path, recordings: list[Path]) -> PassageModel:
    """Random weights with batch-norm statistics measured on the test's own inputs.

    At plain initialisation every layer shrinks its input, so all embeddings collapse onto the
    biases (cosine 1.000 between any two passages) and no ranking could be tested; normalising
    each layer's activations (data-dependent initialisation) keeps different inputs apart.
    """
    from sheetaudio_gui.core.encode import cut_systems
    from sheetaudio_gui.core.models import audio_input, sheet_input
    from sheetaudio_gui.core.score import detect_systems
    from sheetaudio_gui.core.snippets import audio_windows

    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the one calibration batch
    with open_score(pdf) as doc:
        pages = list(doc.pages())
    sheet = np.concatenate(
        [c.windows for p in pages for c in cut_systems(p, detect_systems(p.image))]
    )
    audio = np.concatenate([audio_windows(file_spectrogram(r)) for r in recordings])
    model.train()
    with torch.no_grad():
        model.sheet_snippets(sheet_input(sheet))
        model.audio_snippets(audio_input(audio))
    return model.eval()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, engraved_pdf: Path):
    folder = tmp_path_factory.mktemp("search")
    # a near-duplicate score: page 2 of the PDF scanned at another resolution
    with pymupdf.open(engraved_pdf) as pdf:
        pdf[1].get_pixmap(dpi=200, colorspace=pymupdf.csGRAY).save(folder / "scan.png")
    tunes = [tune(folder / f"tune{i}.flac", 24.0 + 4 * i, seed=20 + i) for i in range(3)]
    torch.manual_seed(0)
    save_model(calibrated(PassageModel(), engraved_pdf, tunes), folder / "m.pt")
    model = load_model(folder / "m.pt")
    with Library(folder / "lib", model) as lib:
        report = run_to_end(lib.add([engraved_pdf, folder / "scan.png", *tunes]))
        assert not report.failed
    return folder, model, engraved_pdf, tunes


def test_an_indexed_system_finds_its_own_score_and_box_first(setup):
    folder, model, pdf, _ = setup
    with open_score(pdf) as doc:
        page = doc.page(1)
    systems = encode_page(model, page)
    assert systems
    with Library(folder / "lib", model) as lib:
        for s in systems:
            hits = rank_scores(lib, s.passage[None], top_k=5)
            assert hits[0].document == pdf
            best = hits[0].regions[0]
            assert (best.page, best.system) == (1, s.index)
            assert best.box == pytest.approx(s.box, abs=0.01)
            assert best.score == pytest.approx(1.0, abs=0.01)
            assert hits[0].score >= hits[1].score


def test_indexing_a_score_stores_the_windows_that_rescore_short_audio_queries(setup):
    folder, model, pdf, _ = setup
    with Library(folder / "lib", model) as lib:
        doc = next(d.id for d in lib.documents("score") if d.path == pdf)
        expected = rescore_windows(model, lib.systems(pdf))
        assert lib.rescore_rows(doc) == pytest.approx(expected, abs=1e-2)  # (bfloat16)
        assert lib.check() == []


def test_an_excerpt_of_an_indexed_recording_finds_it_with_the_excerpts_span(setup):
    folder, model, _, tunes = setup
    spec = file_spectrogram(tunes[1])
    first, length = 8, 9  # snippets: an indexed passage of 9 snippets starts at snippet 8
    f0 = first * AUDIO_SNIPPET_HOP_FRAMES
    f1 = f0 + (length - 1) * AUDIO_SNIPPET_HOP_FRAMES + AUDIO_SNIPPET_FRAMES
    excerpt = encode_audio(model, spec[:, f0:f1])
    query = excerpt.passages[np.argmax(np.diff(excerpt.passage_spans, axis=1)[:, 0])]
    with Library(folder / "lib", model) as lib:
        hits = rank_recordings(lib, query[None], top_k=3)
    assert hits[0].document == tunes[1]
    span = hits[0].spans[0]
    assert span.start_s == pytest.approx(first * 0.9, abs=1e-3)
    assert span.end_s == pytest.approx(first * 0.9 + passage_seconds(length), abs=1e-3)
    assert span.score == pytest.approx(1.0, abs=0.01)


def test_an_audio_query_ranks_with_system_length_passages_or_as_a_whole_when_shorter(setup):
    """Score rows are whole systems, so a query is compared in passages of about one system."""
    _, model, _, tunes = setup
    spec = file_spectrogram(tunes[2])
    for n in (1, 4, QUERY_PASSAGE_SNIPPETS - 1, QUERY_PASSAGE_SNIPPETS, 20, 31):
        length, starts = query_passage_plan(n)
        frames = (n - 1) * AUDIO_SNIPPET_HOP_FRAMES + AUDIO_SNIPPET_FRAMES
        encoding = encode_audio(  # what search_audio does with a query of n snippets
            model,
            spec[:, :frames],
            lengths=(QUERY_PASSAGE_SNIPPETS,),
            hops=(QUERY_PASSAGE_HOP_SNIPPETS,),
        )
        assert length == min(n, QUERY_PASSAGE_SNIPPETS)
        assert starts[0] == 0 and starts[-1] == n - length  # the whole query is covered
        assert np.all(np.diff(starts) <= QUERY_PASSAGE_HOP_SNIPPETS)
        assert len(encoding.passages) == len(starts)
        assert encoding.passage_spans[:, 0] == pytest.approx(starts * 0.9, abs=1e-4)


def test_audio_query_returns_ranked_scores_with_boxes_on_their_pages(setup):
    folder, model, pdf, tunes = setup
    with Library(folder / "lib", model) as lib:
        results = search_audio_file(lib, tunes[0], 3.0, 13.0, top_k=1)
        assert len(results.hits) == 1
        results = search_audio_file(lib, tunes[0], 3.0, 13.0)
        size = lib.page_size(pdf, 0)
    assert results.query.shape == (1, 64)  # 10 s = 11 snippets: one system-length passage
    with Library(folder / "lib", model) as lib:  # 20 s: several passages, in reading order
        longer = search_audio_file(lib, tunes[0], 2.0, 22.0)
    assert len(longer.query) > 1
    assert [h.score for h in longer.hits] == sorted((h.score for h in longer.hits), reverse=True)
    assert all(-1 <= h.score <= 1 and h.regions for h in longer.hits)
    assert np.allclose(np.linalg.norm(results.query, axis=1), 1.0, atol=1e-4)
    assert {h.document for h in results.hits} == {pdf, folder / "scan.png"}
    scores = [h.score for h in results.hits]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
    assert size is not None
    for region in next(h for h in results.hits if h.document == pdf).regions:
        x0, y0, x1, y1 = region.box
        assert 0 <= x0 < x1 <= size[0] and 0 <= y0 < y1 <= size[1]
        if region.x_range is not None:
            assert x0 <= region.x_range[0] < region.x_range[1] <= x1


@pytest.mark.parametrize("how", ["page", "system", "box"])
def test_score_query_returns_recordings_with_spans_inside_them(setup, how):
    folder, model, pdf, tunes = setup
    with open_score(pdf) as doc:
        page = doc.page(0)
    systems = encode_page(model, page)
    box = None
    if how == "box":  # the left half of the first system
        x0, y0, x1, y1 = systems[0].box
        box = (x0, y0 - 5, (x0 + x1) / 2, y1 + 5)
    with Library(folder / "lib", model) as lib:
        results = search_score(lib, pdf, 0, 0 if how == "system" else None, box)
    expected = {"page": len(systems), "system": 1, "box": 1}[how]
    assert results.query.shape == (expected, 64)
    assert sorted(h.document for h in results.hits) == sorted(tunes)
    assert [h.score for h in results.hits] == sorted((h.score for h in results.hits), reverse=True)
    for hit in results.hits:
        duration = 24.0 + 4 * tunes.index(hit.document)
        assert hit.spans
        for span in hit.spans:
            assert 0 <= span.start_s < span.end_s <= duration + 1e-3


def test_passage_map_lists_every_searchable_passage(setup):
    folder, model, _, _ = setup
    with Library(folder / "lib", model) as lib:
        pm = passage_map(lib)
        n_sys = sum(d.systems or 0 for d in lib.documents("score"))
        rows = lib.score_rows()
        stored = rows.passages[torch.from_numpy(np.flatnonzero(rows.doc >= 0))].float().numpy()
        as_searched = centred(stored, rows.centre.mean)  # the map shows what the search compares
    assert pm.embeddings[pm.kind == "score"] == pytest.approx(as_searched, abs=1e-5)
    assert pm.embeddings.shape[1] == 64
    assert (pm.kind == "score").sum() == n_sys
    assert len(pm.document) == len(pm.kind) == len(pm.ref) == len(pm.embeddings)
    assert len(pm.documents) == 5


def test_cli_query_prints_the_documented_json(setup, capsys):
    folder, _, pdf, tunes = setup
    common = ["--library", str(folder / "lib"), "--model", str(folder / "m.pt"), "--json"]
    assert main(["query", *common, "--audio", str(tunes[2]), "--start", "2", "--end", "12"]) == 0
    out = json.loads(capsys.readouterr().out)
    hit = out["results"][0]
    assert set(hit) == {"document", "kind", "score", "regions"} and hit["kind"] == "score"
    assert set(hit["regions"][0]) == {"page", "box"} and len(hit["regions"][0]["box"]) == 4
    assert main(["query", *common, "--score", str(pdf), "--page", "0", "--system", "0"]) == 0
    out = json.loads(capsys.readouterr().out)
    hit = out["results"][0]
    assert set(hit) == {"document", "kind", "score", "spans"} and hit["kind"] == "audio"
    assert set(hit["spans"][0]) == {"start_s", "end_s"}
    assert main(["library", "list", "--library", str(folder / "lib"), "--json"]) == 0
    docs = json.loads(capsys.readouterr().out)["documents"]
    assert {d["state"] for d in docs} == {"indexed"} and len(docs) == 5
    assert main(["align", *common, "--score", str(pdf), "--audio", str(tunes[0])]) == 0
    points = json.loads(capsys.readouterr().out)["points"]
    times = [p["time_s"] for p in points]
    assert times == sorted(times) and {p["page"] for p in points} == {0, 1}


def test_ordered_match_follows_reading_order_and_equals_exhaustive_search():
    """A page's systems are played in order: a better but out-of-order match must not win."""
    sims = np.array(
        [
            [0.9, 0.1, 0.1, 0.95],  # system 0 fits passage 0 (and, out of order, passage 3)
            [0.1, 0.8, 0.1, 0.1],
            [0.1, 0.1, 0.7, 0.1],
        ]
    )
    positions = np.array([0.0, 5.0, 10.0, 15.0])
    score, path = ordered_match(sims, positions)
    assert path == [0, 1, 2] and score == pytest.approx((0.9 + 0.8 + 0.7) / 3)
    score, path = ordered_match(sims[:, ::-1], positions[::-1])  # candidate order is irrelevant
    assert [3 - c for c in path] == [0, 1, 2]

    import itertools

    rng = np.random.default_rng(0)
    for _ in range(50):
        k, m = int(rng.integers(1, 4)), int(rng.integers(1, 7))
        sims = rng.normal(size=(k, m))
        positions = rng.integers(0, 4, size=m).astype(float)  # ties allowed
        score, path = ordered_match(sims, positions)
        best = max(
            sum(sims[i, c] for i, c in enumerate(p)) / k
            for p in itertools.product(range(m), repeat=k)
            if all(positions[a] <= positions[b] for a, b in itertools.pairwise(p))
        )
        assert score == pytest.approx(best)
        assert sum(sims[i, c] for i, c in enumerate(path)) / k == pytest.approx(score)
        assert all(positions[a] <= positions[b] for a, b in itertools.pairwise(path))
    with pytest.raises(ValueError):
        ordered_match(np.zeros((0, 3)), np.zeros(3))


def test_a_page_played_straight_through_beats_look_alikes_scattered_over_a_recording():
    """Systems follow one another: passages that join up win over slightly better ones that
    lie far apart, and the path found is the one that joins up."""
    spans = np.array([[0.0, 8.0], [8.0, 16.0], [16.0, 24.0], [40.0, 48.0], [90.0, 98.0]])
    joined = np.array(
        [
            [0.60, 0.10, 0.10, 0.10, 0.10],
            [0.10, 0.60, 0.10, 0.10, 0.10],
            [0.10, 0.10, 0.60, 0.10, 0.10],
        ]
    )
    scattered = np.array(  # each system's best look-alike, in order but far apart
        [
            [0.65, 0.10, 0.10, 0.10, 0.10],
            [0.10, 0.10, 0.10, 0.65, 0.10],
            [0.10, 0.10, 0.10, 0.10, 0.65],
        ]
    )
    assert ordered_match(scattered, spans[:, 0])[0] > ordered_match(joined, spans[:, 0])[0]
    joined_score, path = contiguous_match(joined, spans)
    assert path == [0, 1, 2] and joined_score == pytest.approx(0.60)  # no gaps: no cost
    assert contiguous_match(scattered, spans)[0] < joined_score


def _path_value(sims: np.ndarray, spans: np.ndarray, path: tuple[int, ...], *costs: float) -> float:
    """A path's mean similarity less its steps' costs, as `contiguous_match` defines them."""
    import itertools

    weight, scale, cap = costs
    cost = sum(
        weight * min(abs(spans[b, 0] - spans[a, 1]) / scale, cap)
        for a, b in itertools.pairwise(path)
    )
    return (sum(sims[i, c] for i, c in enumerate(path)) - cost) / len(sims)


def test_contiguous_match_equals_exhaustive_search_over_paths():
    import itertools

    weight, scale, cap = 0.1, 4.0, 3.0
    rng = np.random.default_rng(1)
    for _ in range(100):
        k, m = int(rng.integers(1, 4)), int(rng.integers(1, 9))
        # ties allowed; a recording long enough for steps beyond the reach of a leap (12 s)
        starts = rng.integers(0, 20, size=m).astype(float) * 2.0
        spans = np.stack([starts, starts + rng.choice([4.5, 8.1, 14.4], size=m)], axis=1)
        sims = rng.normal(size=(k, m))
        score, path = contiguous_match(sims, spans, weight, scale, cap)
        best = max(
            _path_value(sims, spans, p, weight, scale, cap)
            for p in itertools.product(range(m), repeat=k)
            if all(spans[a, 0] <= spans[b, 0] for a, b in itertools.pairwise(p))
        )
        assert score == pytest.approx(best, abs=1e-6)  # float32 sums
        found = _path_value(sims, spans, tuple(path), weight, scale, cap)
        assert found == pytest.approx(score, abs=1e-6)
    with pytest.raises(ValueError):
        contiguous_match(np.zeros((0, 3)), np.zeros((3, 2)))


# --- reading windows: sheet passages that run on across system ends --------------------------


def fixed_systems(counts: list[int], seed: int = 0) -> list[SystemEncoding]:
    """Systems of random snippets and passages, two per page, in reading order."""
    rng = np.random.default_rng(seed)
    out = []
    for k, n in enumerate(counts):
        passage = rng.standard_normal(64).astype(np.float32)
        out.append(
            SystemEncoding(
                page=k // 2,
                index=k % 2,
                box=(10.0, 100.0 + 200 * (k % 2), 500.0, 250.0 + 200 * (k % 2)),
                window_x=np.linspace(20, 480, n).astype(np.float32),
                snippets=rng.standard_normal((n, 32)).astype(np.float32),
                passage=passage / np.linalg.norm(passage),
            )
        )
    return out


def test_reading_windows_read_on_across_system_ends_and_know_where_their_centre_lies():
    model = LoadedModel(PassageModel().eval(), "m")
    systems = fixed_systems([5, 4, 6])  # snippets 0-4 | 5-8 | 9-14
    windows = reading_windows(model, systems, length=8, hop=3)
    # starts 0, 3, 6 and the last moved to end on the last snippet (7); centres 4, 7, 10, 11
    assert windows.at.tolist() == pytest.approx([4 / 5, 1 + 2 / 4, 2 + 1 / 6, 2 + 2 / 6])
    everything = np.concatenate([s.snippets for s in systems])
    with torch.inference_mode():
        second = model.model.sheet_passages(
            torch.from_numpy(everything[3:11])[None], torch.tensor([8])
        )  # snippets 3-10: the end of system 0, all of system 1, the start of system 2
    assert windows.passages[1] == pytest.approx(second[0].numpy(), abs=1e-5)
    assert np.linalg.norm(windows.passages, axis=1) == pytest.approx(1.0, abs=1e-5)


def test_a_score_shorter_than_a_window_is_one_window_over_all_of_it():
    model = LoadedModel(PassageModel().eval(), "m")
    windows = reading_windows(model, fixed_systems([2, 3]), length=8, hop=3)
    assert windows.at.tolist() == pytest.approx([1 + 0.5 / 3])  # centre 2.5: system 1


def library_of(
    folder: Path,
    scores: dict[str, tuple[list[SystemEncoding], ReadingWindows | None]],
    rescoring: LoadedModel | None = None,
):
    """A library of these scores; with `rescoring`, their re-scoring windows made by it."""
    lib = Library(folder, LoadedModel(PassageModel(), "m"))
    for name, (systems, windows) in scores.items():
        pages = 1 + max(s.page for s in systems)
        rescore = rescore_windows(rescoring, systems) if rescoring else None
        lib.write_score(
            folder / name, None, None, [(595.0, 842.0, "pt")] * pages, systems, windows, rescore
        )
    return lib


def unit_rows(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, 64)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_an_excerpt_that_only_a_reading_window_matches_finds_its_score_and_centre_system(
    tmp_path,
):
    straddling = unit_rows(3, seed=1)  # windows of score a: centres in systems 0, 1 and 2
    windows = ReadingWindows(np.array([0.8, 1.5, 2.3], np.float32), straddling)
    scores = {
        "a.pdf": (fixed_systems([5, 4, 6], seed=2), windows),
        "b.pdf": (fixed_systems([5, 5, 5], seed=3), None),  # indexed without reading windows
    }
    with library_of(tmp_path / "lib", scores) as lib:
        assert lib.check() == []
        hits = rank_scores(lib, straddling[1][None], top_k=2)
        assert [h.document.name for h in hits] == ["a.pdf", "b.pdf"]
        assert hits[0].score == pytest.approx(1.0, abs=0.01)
        best = hits[0].regions[0]
        assert (best.page, best.system) == (0, 1)  # centre 1.5: system ordinal 1
        assert len({(r.page, r.system) for r in hits[0].regions}) == len(hits[0].regions)
        # a longer excerpt: its passages in time order along the windows in reading order
        hits = rank_scores(lib, straddling[[0, 2]], top_k=2)
        assert hits[0].document.name == "a.pdf"
        assert hits[0].score == pytest.approx(1.0, abs=0.01)
        # the wrong order cannot follow reading order: its score is lower
        backwards = rank_scores(lib, straddling[[2, 0]], top_k=1)[0]
        assert backwards.document.name == "a.pdf" and backwards.score < 0.9


def recording_rows(passages: np.ndarray) -> AudioEncoding:
    """A recording whose sliding passages are these rows (one every 2 s)."""
    n = len(passages)
    starts = np.arange(n, dtype=np.float32) * 2.0
    return AudioEncoding(
        starts,
        np.zeros((n, 32), np.float32),
        np.stack([starts, starts + 8.0], axis=1),
        passages.astype(np.float32),
    )


def test_each_modalitys_rows_are_penalised_against_the_other_modalitys_rows(tmp_path):
    systems = fixed_systems([5, 4, 6, 5], seed=4)
    with library_of(tmp_path / "lib", {"a.pdf": (systems, None)}) as lib:
        assert lib.score_rows().centre.penalty is None  # no recordings: nothing to measure
        lib.write_audio(tmp_path / "r.wav", None, None, 60.0, recording_rows(unit_rows(30, 5)))
        score, audio = lib.score_rows(), lib.audio_rows()
        assert score.centre.penalty is not None and audio.centre.penalty is not None
        weight = hub_weight(4, 30)
        assert score.hub_weight == pytest.approx(weight)
        stored_audio = centred(unit_rows(30, 5), audio.centre.mean)  # every row: a small library
        stored_systems = centred(np.stack([s.passage for s in systems]), score.centre.mean)
        expected = penalties_of(stored_systems, stored_audio, weight)
        assert score.centre.penalty == pytest.approx(expected, abs=1e-3)
        expected = penalties_of(stored_audio, stored_systems, weight)
        assert audio.centre.penalty == pytest.approx(expected, abs=1e-3)


def test_hub_penalties_are_kept_for_the_librarys_state_and_measured_again_after_a_change(
    tmp_path, monkeypatch
):
    from sheetaudio_gui.core import index

    folder = tmp_path / "lib"
    systems = fixed_systems([5, 4, 6], seed=4)
    windows_by = LoadedModel(PassageModel().eval(), "m")
    with library_of(folder, {"a.pdf": (systems, None)}, rescoring=windows_by) as lib:
        lib.write_audio(tmp_path / "r.wav", None, None, 60.0, recording_rows(unit_rows(30, 5)))
        first = lib.audio_rows().centre.penalty
        score = lib.score_rows()  # the stored re-scoring windows are penalised as the search
        doc, (start, count) = next(iter(score.rescore_ranges.items()))  # centres them
        windows = centred(lib.rescore_rows(doc), score.reading_centre.mean)
        expected = penalties_of(windows, score.hub_reference, score.hub_weight)
        assert score.rescore_penalty is not None and count == len(windows) > 0
        assert score.rescore_penalty[start : start + count] == pytest.approx(expected, abs=1e-3)
    assert (folder / "hub-penalties.npz").is_file()
    measured = []
    real = index._with_hub_penalties
    monkeypatch.setattr(index, "_with_hub_penalties", lambda *a: measured.append(1) or real(*a))
    with Library(folder, LoadedModel(PassageModel(), "m")) as lib:  # opened again: read back
        assert lib.audio_rows().centre.penalty == pytest.approx(first)
        assert lib.score_rows().hub_weight > 0 and measured == []
        lib.write_audio(tmp_path / "s.wav", None, None, 60.0, recording_rows(unit_rows(30, 6)))
        changed = lib.audio_rows().centre.penalty  # another state: measured again
        assert measured == [1] and len(changed) == 60
    (folder / "hub-penalties.npz").write_bytes(b"damaged")
    with Library(folder, LoadedModel(PassageModel(), "m")) as lib:  # unreadable: measured
        assert lib.audio_rows().centre.penalty == pytest.approx(changed)


def test_a_score_without_reading_windows_is_still_found_by_its_systems(tmp_path):
    systems = fixed_systems([5, 4])
    with library_of(tmp_path / "lib", {"old.pdf": (systems, None)}) as lib:
        hits = rank_scores(lib, systems[1].passage[None], top_k=1)
        assert hits[0].document.name == "old.pdf"
        assert (hits[0].regions[0].page, hits[0].regions[0].system) == (0, 1)


# --- re-scoring short audio queries against windows of several lengths -------------------------


def test_a_rescored_query_is_the_mean_over_lengths_of_each_passages_best_window():
    windows = np.eye(4, dtype=np.float32)
    eight = np.eye(4, dtype=np.float32)[[0, 1]]  # both passages find an identical window: 1
    eleven = np.array([[0.6, 0.8, 0, 0]], np.float32)  # its best window: 0.8
    assert rescore_match([eight, eleven], windows) == pytest.approx((1.0 + 0.8) / 2)
    assert rescore_match([eight], np.zeros((0, 4), np.float32)) == -1.0  # a score without snippets


def mirrored_model() -> LoadedModel:
    """A model whose audio passage encoder is its sheet passage encoder: audio snippets equal to
    a score's sheet snippets then summarise to exactly that score's passages."""
    model = PassageModel().eval()
    model.audio_gru.load_state_dict(model.sheet_gru.state_dict())
    return LoadedModel(model, "m")  # the id the test libraries are written with


@pytest.mark.parametrize("stored", [True, False], ids=["windows stored", "indexed before them"])
def test_a_short_excerpt_is_rescored_against_windows_of_several_lengths(tmp_path, stored):
    systems = fixed_systems([5, 4, 6], seed=2)  # snippets 0-4 | 5-8 | 9-14
    scores = {"a.pdf": (systems, None), "b.pdf": (fixed_systems([5, 5, 5], seed=3), None)}
    everything = np.concatenate([s.snippets for s in systems])
    excerpt = everything[3:11]  # 8 snippets across all three systems: no system row matches it
    mirrored = mirrored_model()
    with library_of(tmp_path / "lib", scores, mirrored if stored else None) as lib:
        lib.model = mirrored
        assert all((len(lib.rescore_rows(d.id)) > 0) == stored for d in lib.documents("score"))
        query = unit_rows(1, seed=9)  # first-stage rows that match nothing in particular
        plain = rank_scores(lib, query, top_k=2)
        hits = rank_scores(lib, query, top_k=2, snippets=excerpt)
        assert hits[0].document.name == "a.pdf"
        # the 8-snippet window from snippet 3 (windows of 8 start every 3) is the excerpt itself
        assert hits[0].score == pytest.approx(1.0, abs=2e-3)  # (bfloat16 storage)
        assert all(h.score < 0.99 for h in plain)  # without its snippets: first-stage scores
        assert hits[1].score < 0.99
        # a query longer than RESCORE_MAX_QUERY_SNIPPETS is matched in reading order instead
        long = np.concatenate([everything] * 3)[: RESCORE_MAX_QUERY_SNIPPETS + 1]
        assert len(long) == RESCORE_MAX_QUERY_SNIPPETS + 1
        ordered = rank_scores(lib, unit_rows(2, seed=4), top_k=2, snippets=long)
        in_order = rank_scores(lib, unit_rows(2, seed=4), top_k=2)
        assert [h.score for h in ordered] == [h.score for h in in_order]


@pytest.mark.parametrize("stored", [True, False], ids=["windows stored", "indexed before them"])
def test_a_rescored_excerpt_is_placed_by_the_windows_that_matched_it(tmp_path, stored):
    systems = fixed_systems([5, 4, 6], seed=2)  # snippets 0-4 | 5-8 | 9-14
    everything = np.concatenate([s.snippets for s in systems])
    mirrored = mirrored_model()
    with library_of(
        tmp_path / "lib", {"a.pdf": (systems, None)}, mirrored if stored else None
    ) as lib:
        lib.model = mirrored
        rows = lib.score_rows()
        start, _ = rows.ranges[lib.documents("score")[0].id]
        third = rows.passages[start + 2 : start + 3].float().numpy()  # the last system's row
        first_stage = rank_scores(lib, third, top_k=1)[0].regions
        assert (first_stage[0].page, first_stage[0].system) == (1, 0)  # two systems a page
        # the 4-snippet window from snippet 4 is the excerpt; its centre (6) lies in system 1
        placed = rank_scores(lib, third, top_k=1, snippets=everything[4:8])[0].regions
        assert (placed[0].page, placed[0].system) == (0, 1)
        assert placed[0].score == pytest.approx(1.0, abs=2e-3)
        assert len(placed) == 3  # every system keeps a place


@pytest.mark.parametrize("chunk", [5, 7, 64, 10_000])
def test_best_similarity_per_document_equals_brute_force_across_chunk_ends(monkeypatch, chunk):
    from sheetaudio_gui.core import search
    from sheetaudio_gui.core.index import bf16_tensor, from_bf16_bits, to_bf16_bits

    monkeypatch.setattr(search, "SEARCH_CHUNK_ROWS", chunk)
    monkeypatch.setattr(search, "SEARCH_SIMILARITY_FLOATS", 2 * chunk)  # query rows in groups
    bits = to_bf16_bits(unit_rows(60, seed=4))
    ranges = {7: (0, 4), 3: (4, 9), 9: (20, 1), 5: (21, 30), 1: (55, 5)}  # rows 13-19: dead
    queries = unit_rows(5, seed=5)
    live = np.zeros(60, bool)
    for start, count in ranges.values():
        live[start : start + count] = True
    centre = centre_of(bf16_tensor(bits), live, other_rows=10**6)  # a mean of 56 rows
    assert np.linalg.norm(centre.mean) > 0
    penalty = np.random.default_rng(6).uniform(0.0, 0.3, 60).astype(np.float32)
    centre = centre.with_penalty(penalty)  # each row's hub penalty
    ids, best = search._per_document_max(bf16_tensor(bits), ranges, queries, centre)
    rows = centred(from_bf16_bits(bits), centre.mean)  # what the search compares with
    for column, doc in enumerate(ids):
        start, count = ranges[int(doc)]
        expected = (queries @ rows[start : start + count].T - penalty[start : start + count]).max(
            axis=1
        )
        assert best[:, column] == pytest.approx(expected, abs=0.02)
    assert sorted(ids.tolist()) == sorted(ranges)


def test_rescoring_many_scores_at_once_equals_one_at_a_time():
    query = [unit_rows(4, seed=1), unit_rows(2, seed=2), np.zeros((0, 64), np.float32)]
    windows = [unit_rows(n, seed=10 + n) for n in (5, 1, 0, 9)]  # one score without windows
    windows[2] = np.zeros((0, 64), np.float32)
    together = rescore_matches(query, windows)
    assert together == pytest.approx([rescore_match(query, w) for w in windows], abs=1e-6)
    assert together[2] == -1.0
    assert rescore_matches([], windows) == [-1.0] * 4
    penalties = [np.full(len(w), 0.1 * k, np.float32) for k, w in enumerate(windows)]
    penalised = rescore_matches(query, windows, penalties)
    expected = [rescore_match(query, w, p) for w, p in zip(windows, penalties, strict=True)]
    assert penalised == pytest.approx(expected, abs=1e-6)
    assert penalised[3] == pytest.approx(together[3] - 0.3, abs=1e-6)  # a constant shifts all


# --- the path of a short query's snippets along a score's snippets -----------------------------


def test_an_excerpt_follows_its_score_at_any_tempo_but_not_backwards_or_by_leaps():
    """Audio snippets may dwell on a sheet snippet (slow music) or skip one (fast), never go
    back: the score's own order matches perfectly, the same snippets reversed do not."""
    sheet = np.random.default_rng(0).standard_normal((8, 32)).astype(np.float32)
    slow = sheet[[2, 2, 3, 3, 3, 4, 5, 5]]  # every sheet snippet held for 2-3 audio snippets
    fast = sheet[[0, 2, 4, 6]]  # every other sheet snippet: steps of 2
    too_fast = sheet[[0, 3, 6]]  # steps of 3: more than SNIPPET_PATH_MAX_STEP
    assert snippet_path_match(slow, sheet) == pytest.approx(1.0)
    assert snippet_path_match(fast, sheet) == pytest.approx(1.0)
    assert snippet_path_match(too_fast, sheet) < 0.9
    assert snippet_path_match(slow, sheet[::-1]) < 0.9  # the same notes in another order
    assert snippet_path_match(slow[:0], sheet) == -1.0  # nothing to follow
    assert snippet_path_match(slow, sheet[:0]) == -1.0


def test_snippet_path_match_equals_exhaustive_search_over_paths():
    import itertools

    rng = np.random.default_rng(3)
    for _ in range(60):
        m, n, step = int(rng.integers(1, 5)), int(rng.integers(1, 7)), int(rng.integers(1, 3))
        audio = rng.standard_normal((m, 5)).astype(np.float32)
        sheet = rng.standard_normal((n, 5)).astype(np.float32)
        sims = (audio / np.linalg.norm(audio, axis=1, keepdims=True)) @ (
            sheet / np.linalg.norm(sheet, axis=1, keepdims=True)
        ).T
        best = max(
            np.mean([sims[j, c] for j, c in enumerate(path)])
            for path in itertools.product(range(n), repeat=m)
            if all(0 <= b - a <= step for a, b in itertools.pairwise(path))
        )
        assert snippet_path_match(audio, sheet, step) == pytest.approx(best, abs=1e-5)


def test_snippet_paths_of_many_scores_at_once_equal_one_at_a_time():
    """Side by side, no path runs from one score into the next."""
    rng = np.random.default_rng(5)
    audio = rng.standard_normal((6, 32)).astype(np.float32)
    sheets = [rng.standard_normal((n, 32)).astype(np.float32) for n in (7, 1, 0, 2, 12)]
    sheets.append(audio[:3].copy())  # holds the first half of the excerpt ...
    sheets.append(audio[3:].copy())  # ... and its neighbour the second: neither gets 1.0
    together = snippet_path_matches(audio, sheets)
    assert together == pytest.approx([snippet_path_match(audio, s) for s in sheets], abs=1e-6)
    assert together[2] == -1.0 and max(together) < 0.9
    assert snippet_path_matches(audio[:0], sheets) == [-1.0] * len(sheets)


def test_a_rescored_value_joined_with_the_snippet_path_stays_a_cosine():
    sheet = np.eye(3, dtype=np.float32)
    weight = SNIPPET_PATH_WEIGHT
    joined = with_snippet_paths([0.5, 1.0], sheet, [sheet, sheet])
    assert joined == pytest.approx([(0.5 + weight) / (1 + weight), 1.0])
    assert with_snippet_paths([-1.0], -sheet[:1], [sheet[:1]]) == pytest.approx([-1.0])
