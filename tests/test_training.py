"""Training machinery: batches cut exactly what inference cuts, the loss ranks, runs resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from material import tiny_model_file

from sheetaudio_gui.config import ModelDims
from sheetaudio_gui.core import snippets
from sheetaudio_gui.core.models import load_model
from sheetaudio_gui.training.bank import BANK_STRIP_HEIGHT, BANK_STRIP_PAD_PX, Bank
from sheetaudio_gui.training.batches import (
    BankTensors,
    audio_windows,
    sample_passages,
    sheet_windows,
)
from sheetaudio_gui.training.evaluate import (
    embed_rows,
    evaluation_rows,
    metrics_from_ranks,
    ranks,
)
from sheetaudio_gui.training.train import (
    infonce_loss,
    ranking_loss,
    stage_config,
    train_on_banks,
)

TINY = ModelDims(cnn_channels=(4, 4, 8, 8), snippet_dim=8, gru_hidden=8, passage_dim=8)


def synthetic_bank(systems: int = 12, seed: int = 0) -> Bank:
    """Random strips and spectrograms with one passage per system and a few notes each."""
    rng = np.random.default_rng(seed)
    widths = rng.integers(60, 400, size=systems)
    strips = rng.integers(0, 256, size=(BANK_STRIP_HEIGHT, int(widths.sum())), dtype=np.uint8)
    offsets = np.concatenate([[0], np.cumsum(widths)[:-1]])
    frames = rng.integers(30, 160, size=systems)
    specs = rng.random((92, int(frames.sum()))).astype(np.float16)
    f_off = np.concatenate([[0], np.cumsum(frames)[:-1]])
    table = np.stack([offsets, widths, np.arange(systems)], axis=1).astype(np.int64)
    perfs = np.stack([f_off, frames, np.arange(systems)], axis=1).astype(np.int64)
    passages = np.stack([np.arange(systems), np.arange(systems), np.zeros(systems), frames], 1)
    notes = np.stack([np.arange(systems), widths // 2, np.arange(systems), frames // 2], 1)
    return Bank(
        strips=strips,
        systems=table,
        specs=specs,
        perfs=perfs,
        passages=passages.astype(np.int64),
        notes=notes.astype(np.int64),
        meta={"pieces": [f"p{i}" for i in range(systems)]},
    )


def test_unaugmented_sheet_windows_equal_the_inference_windows():
    bank = synthetic_bank()
    bt = BankTensors.from_bank(bank)
    gen = torch.Generator().manual_seed(0)
    windows, lengths = sheet_windows(bt, torch.tensor([3, 5]), gen, augment=False)
    start = 0
    for system, n in zip((3, 5), lengths.tolist(), strict=True):
        off, width, _ = bank.systems[system]
        band = bank.strips[BANK_STRIP_PAD_PX : BANK_STRIP_PAD_PX + 80, off : off + width]
        expected = snippets.sheet_windows(np.ascontiguousarray(band))
        assert n == len(expected)
        got = windows[start : start + n, 0].numpy()
        assert np.allclose(got, 1.0 - expected / 255.0, atol=1e-4)
        start += n


def test_unaugmented_audio_windows_equal_the_inference_windows():
    bank = synthetic_bank()
    bt = BankTensors.from_bank(bank)
    gen = torch.Generator().manual_seed(0)
    windows, lengths = audio_windows(
        bt, torch.tensor([2]), torch.tensor([5]), torch.tensor([70]), gen, augment=False
    )
    off, frames, _ = bank.perfs[2]
    spec = bank.specs[:, off : off + frames].astype(np.float32)[:, 5:70]
    expected = snippets.audio_windows(spec)
    assert int(lengths[0]) == len(expected)
    assert np.allclose(windows[:, 0].numpy(), expected, atol=1e-3)


def test_augmented_windows_keep_shapes_and_value_range():
    bt = BankTensors.from_bank(synthetic_bank())
    gen = torch.Generator().manual_seed(1)
    sw, sl = sheet_windows(bt, torch.arange(6), gen, augment=True)
    aw, al = audio_windows(
        bt, torch.arange(6), torch.zeros(6, dtype=torch.long), bt.perfs[:6, 1], gen, True
    )
    assert sw.shape == (int(sl.sum()), 1, 80, 90) and float(sw.min()) >= 0 and float(sw.max()) <= 1
    assert aw.shape == (int(al.sum()), 1, 92, 20) and torch.isfinite(aw).all()


def test_domain_randomisation_varies_stroke_weight_and_width_but_keeps_the_value_range():
    bt = BankTensors.from_bank(synthetic_bank())
    systems = torch.arange(12).repeat(8)  # the same systems many times: spread of the ink
    plain, plain_lengths = sheet_windows(
        bt, systems, torch.Generator().manual_seed(2), augment=True
    )
    varied, lengths = sheet_windows(
        bt, systems, torch.Generator().manual_seed(2), augment=True, domain=True
    )
    assert varied.shape == (int(lengths.sum()), 1, 80, 90)
    assert float(varied.min()) >= 0 and float(varied.max()) <= 1
    ink = varied.mean(dim=(1, 2, 3))
    assert float(ink.std()) > float(plain.mean(dim=(1, 2, 3)).std())  # bolder and thinner ink
    # wider and narrower glyphs: one system is cut into more different window counts
    assert spread_per_system(lengths, systems) > spread_per_system(plain_lengths, systems)
    aw, al = audio_windows(
        bt,
        torch.arange(6),
        torch.zeros(6, dtype=torch.long),
        bt.perfs[:6, 1],
        torch.Generator().manual_seed(3),
        True,
        domain=True,
    )
    assert aw.shape == (int(al.sum()), 1, 92, 20) and torch.isfinite(aw).all()


def spread_per_system(lengths: torch.Tensor, systems: torch.Tensor) -> int:
    """Distinct window counts per system, summed over the systems."""
    return sum(len(set(lengths[systems == k].tolist())) for k in systems.unique())


def test_infonce_prefers_the_true_partner_in_both_directions():
    eye = torch.eye(4)
    swapped = eye[[1, 0, 2, 3]]
    assert float(infonce_loss(eye, eye, 0.05)) < 1e-6
    assert float(infonce_loss(eye, swapped, 0.05)) > 5.0
    with pytest.raises(ValueError, match="unknown loss"):
        stage_config("gru", 1, "cpu", seed=0, loss="bogus")


def test_piece_grouped_batches_hold_distinct_systems_in_groups_of_one_piece():
    """--per-piece G: hard negatives come from the same piece, never the same system twice."""
    bank = synthetic_bank(30)
    bank.systems[:, 2] = np.arange(30) // 5  # 6 pieces of 5 systems
    extra = bank.passages[:10].copy()  # second performances: two passage rows for some systems
    bank.passages = np.concatenate([bank.passages, extra])
    bt = BankTensors.from_bank(bank)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        rows = sample_passages(bt, 12, gen, per_piece=3)
        systems = bt.passages[rows, 0]
        pieces = bt.systems[systems, 2]
        assert len(rows) == 12 and len(set(systems.tolist())) == 12
        assert sorted(np.bincount(pieces.numpy()).tolist())[-4:] == [3, 3, 3, 3]
    random_rows = sample_passages(bt, 12, gen)  # default: systems drawn at random
    assert len(set(bt.passages[random_rows, 0].tolist())) == len(random_rows)


def test_a_stage_can_start_from_given_weights_instead_of_the_previous_stage(tmp_path):
    """Training goes on on another machine from the shipped weights, without the run folder."""
    bt = BankTensors.from_bank(synthetic_bank(16))
    bv = BankTensors.from_bank(synthetic_bank(8, seed=1))
    init = tiny_model_file(tmp_path, TINY)
    cfg = stage_config(
        "finetune", 2, "cpu", seed=0, batch=4, eval_every=100, init=str(init), loss="infonce"
    )
    for _ in train_on_banks(bt, bv, tmp_path / "run", cfg):  # no gru/best.pt in this run
        pass
    state = torch.load(tmp_path / "run" / "finetune" / "last.pt", weights_only=True)
    assert state["step"] == 2 and tuple(state["dims"]["cnn_channels"]) == TINY.cnn_channels
    assert state["config"]["init"] == str(init) and state["config"]["loss"] == "infonce"


def test_a_stage_turns_its_starting_model_into_a_mean_summary_and_resumes_with_it(tmp_path):
    bt = BankTensors.from_bank(synthetic_bank(16))
    bv = BankTensors.from_bank(synthetic_bank(8, seed=1))
    init = tiny_model_file(tmp_path, TINY)  # summary: the last state
    for steps in (2, 3):  # the second call resumes from last.pt, whose weights have the mean's
        cfg = stage_config(
            "finetune",
            steps,
            "cpu",
            seed=0,
            batch=4,
            eval_every=100,
            checkpoint_every=1,
            init=str(init),
            summary="last+mean",
        )
        for _ in train_on_banks(bt, bv, tmp_path / "run", cfg):
            pass
    state = torch.load(tmp_path / "run" / "finetune" / "last.pt", weights_only=True)
    assert state["step"] == 3 and state["dims"]["summary"] == "last+mean"
    assert "sheet_gru.project_mean.weight" in state["model"]
    assert load_model(tmp_path / "run" / "finetune" / "best.pt").model.dims.summary == "last+mean"


def test_ranking_loss_is_zero_for_perfect_pairs_and_positive_for_swapped_ones():
    eye = torch.eye(4)
    assert float(ranking_loss(eye, eye, margin=0.3)) == pytest.approx(0.0)
    swapped = eye[[1, 0, 2, 3]]
    assert float(ranking_loss(eye, swapped, margin=0.3)) > 1.0


def test_ranks_and_metrics_follow_the_papers_definitions():
    sheet = torch.eye(3)
    audio = torch.tensor([[1.0, 0, 0], [0.9, 0.1, 0], [0, 0, 1]])  # query 1 prefers item 0
    r = ranks(audio, sheet)
    assert r.tolist() == [1, 2, 1]
    m = metrics_from_ranks(r)
    assert m["R@1"] == pytest.approx(200 / 3)
    assert m["MRR"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert m["MR"] == 1


def test_moved_ends_change_only_the_audio_side_the_same_way_for_every_model():
    from sheetaudio_gui.core.models import PassageModel

    bt = BankTensors.from_bank(synthetic_bank(12))
    rows = evaluation_rows(bt)
    model = PassageModel(TINY).eval()
    sheet, audio = embed_rows(model, bt, rows)
    moved_sheet, moved = embed_rows(model, bt, rows, moved_ends=0.2)
    again = embed_rows(model, bt, rows, moved_ends=0.2)[1]
    assert torch.equal(sheet, moved_sheet)
    assert torch.equal(moved, again)  # fixed draws: models are compared on the same passages
    assert not torch.allclose(audio, moved)
    assert torch.equal(audio, embed_rows(model, bt, rows, moved_ends=0.0)[1])


def test_a_killed_run_resumes_to_the_same_weights_as_an_uninterrupted_one(tmp_path):
    bt = BankTensors.from_bank(synthetic_bank(16))
    bv = BankTensors.from_bank(synthetic_bank(8, seed=1))

    def run(folder, stop_after=None):
        cfg = stage_config("snippet", 4, "cpu", seed=3, batch=4, eval_every=100, checkpoint_every=1)
        torch.manual_seed(0)
        for progress in train_on_banks(bt, bv, folder, cfg, TINY):
            if progress.done == stop_after:
                break  # the process dies here; only what is on disk survives
        return torch.load(folder / "snippet" / "last.pt", weights_only=True)["model"]

    whole = run(tmp_path / "a")
    run(tmp_path / "b", stop_after=2)
    resumed = run(tmp_path / "b")
    for key in whole:
        assert torch.allclose(whole[key].float(), resumed[key].float(), atol=1e-6), key
    assert (tmp_path / "b" / "snippet" / "best.pt").is_file()


def test_a_resumed_stage_keeps_the_network_sizes_it_started_with(tmp_path):
    bt = BankTensors.from_bank(synthetic_bank(16))
    bv = BankTensors.from_bank(synthetic_bank(8, seed=1))
    first = stage_config("snippet", 2, "cpu", seed=3, batch=4, eval_every=100, checkpoint_every=1)
    for _ in train_on_banks(bt, bv, tmp_path, first, TINY):
        pass
    more = stage_config("snippet", 3, "cpu", seed=3, batch=4, eval_every=100, checkpoint_every=1)
    for _ in train_on_banks(bt, bv, tmp_path, more, dims=None):  # resumed without saying the sizes
        pass
    state = torch.load(tmp_path / "snippet" / "last.pt", weights_only=True)
    assert state["step"] == 3 and tuple(state["dims"]["cnn_channels"]) == TINY.cnn_channels
    assert state["trained_s"] > 0
