"""Aligned passage crops: the sheet stretch and the frames that play it stay together."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from test_training import synthetic_bank

from sheetaudio_gui.config import AUDIO_SNIPPET_FRAMES
from sheetaudio_gui.core import snippets
from sheetaudio_gui.training.bank import BANK_STRIP_PAD_PX, Bank
from sheetaudio_gui.training.batches import BankTensors, sheet_windows
from sheetaudio_gui.training.crops import LOOSE_SHIFT, across_rows, crop_index, crop_rows, loosen


def evenly_played(bank: Bank, backwards: set[int] = frozenset()) -> Bank:
    """Forty noteheads per system, spread evenly in x and in time over the system's play;
    systems in `backwards` are played right to left (like a repeat inside the system)."""
    notes = []
    for system, (_, width, _) in enumerate(bank.systems):
        frames = int(bank.perfs[system, 1])
        for j in range(40):
            x = (j + 0.5) * width / 40
            frame = (j + 0.5) * frames / 40
            if system in backwards:
                x = width - x
            notes.append((system, int(x), system, int(frame)))
    return dataclasses.replace(bank, notes=np.asarray(notes, dtype=np.int64))


def wide_bank() -> Bank:
    """Systems wide enough (900-1400 px) for crops of up to 10 windows."""
    bank = synthetic_bank(12)
    rng = np.random.default_rng(5)
    widths = rng.integers(900, 1400, size=12)
    offsets = np.concatenate([[0], np.cumsum(widths)[:-1]])
    strips = rng.integers(0, 256, size=(bank.strips.shape[0], int(widths.sum())), dtype=np.uint8)
    systems = np.stack([offsets, widths, np.arange(12)], axis=1).astype(np.int64)
    frames = rng.integers(300, 500, size=12)
    specs = rng.random((92, int(frames.sum()))).astype(np.float16)
    f_off = np.concatenate([[0], np.cumsum(frames)[:-1]])
    perfs = np.stack([f_off, frames, np.arange(12)], axis=1).astype(np.int64)
    passages = np.stack([np.arange(12), np.arange(12), np.zeros(12), frames], 1).astype(np.int64)
    return dataclasses.replace(
        bank, strips=strips, systems=systems, specs=specs, perfs=perfs, passages=passages
    )


def test_a_crop_gets_the_frames_in_which_its_stretch_of_the_system_is_played():
    bank = evenly_played(wide_bank())
    bt = BankTensors.from_bank(bank)
    rows = torch.arange(12).repeat(4)
    x0, x1, f0, f1 = crop_rows(bt, crop_index(bt), rows, 1.0, torch.Generator().manual_seed(0))
    widths = torch.from_numpy(bank.systems[rows.numpy(), 1]).float()
    frames = torch.from_numpy(bank.perfs[rows.numpy(), 1]).float()
    assert bool(((x1 - x0) < widths).all())  # every row became a crop
    assert bool((x0 >= 0).all()) and bool((x1 <= widths).all())
    expected0, expected1 = x0 / widths * frames, x1 / widths * frames
    assert float((f0 - expected0).abs().max()) <= 3  # frames: notehead positions are ints
    assert float((f1 - expected1).abs().max()) <= 3
    windows = torch.round((x1 - x0 - 90) / 81) + 1
    assert set(windows.long().tolist()) <= set(range(3, 11))


def test_without_crops_or_with_a_repeat_inside_the_system_the_whole_play_is_kept():
    bank = evenly_played(wide_bank(), backwards={0, 1, 2})
    bt = BankTensors.from_bank(bank)
    index = crop_index(bt)
    rows = torch.arange(12)
    x0, x1, f0, f1 = crop_rows(bt, index, rows, 0.0, torch.Generator().manual_seed(0))
    assert f0.tolist() == bank.passages[:, 2].tolist()
    assert x0.tolist() == [0.0] * 12 and x1.tolist() == bank.systems[:, 1].astype(float).tolist()
    assert f1.tolist() == bank.passages[:, 3].tolist()
    x0, x1, _, _ = crop_rows(bt, index, rows, 1.0, torch.Generator().manual_seed(0))
    whole = (x0 == 0) & (x1 == torch.from_numpy(bank.systems[:, 1]).float())
    assert whole[:3].all() and not whole[3:].any()


def test_a_cropped_system_is_cut_into_the_windows_inference_would_cut_from_that_stretch():
    bank = wide_bank()
    bt = BankTensors.from_bank(bank)
    x0, x1 = torch.tensor([162.0, 0.0]), torch.tensor([162.0 + 333, 495.0])
    windows, lengths = sheet_windows(
        bt, torch.tensor([4, 7]), torch.Generator(), augment=False, x_range=(x0, x1)
    )
    start = 0
    for system, a, b, n in zip((4, 7), x0.long(), x1.long(), lengths.tolist(), strict=True):
        off = int(bank.systems[system, 0])
        band = bank.strips[BANK_STRIP_PAD_PX : BANK_STRIP_PAD_PX + 80, off + a : off + b]
        expected = snippets.sheet_windows(np.ascontiguousarray(band))
        assert n == len(expected)
        got = windows[start : start + n, 0].numpy()
        # inside the stretch the pixels agree; the last window may see ink beyond its end
        inside = min(90, int(b - a) - (n - 1) * 81)
        assert np.allclose(got[:-1], 1.0 - expected[:-1] / 255.0, atol=1e-4)
        assert np.allclose(got[-1, :, :inside], 1.0 - expected[-1, :, :inside] / 255.0, atol=1e-4)
        start += n


def read_on_bank() -> Bank:
    """Three pieces of 2-3 wide systems, each played once straight through, evenly (forty
    noteheads per system); piece C's performance repeats its first system before going on.

    systems 0 1 2 (piece A, performance 0), 3 4 (piece B, performance 1),
    5 6 (piece C, performance 2: plays 5, 5 again, then 6)."""
    bank = wide_bank()
    pieces = [0, 0, 0, 1, 1, 2, 2]
    systems = bank.systems[:7].copy()
    systems[:, 2] = pieces
    plays = {0: [0, 1, 2], 1: [3, 4], 2: [5, 5, 6]}
    frames_per_system = 300
    perfs, passages, notes, offset = [], [], [], 0
    for perf, order in plays.items():
        total = frames_per_system * len(order)
        perfs.append((offset, total, pieces[order[0]]))
        for k, system in enumerate(order):
            f0 = k * frames_per_system
            passages.append((system, perf, f0, f0 + frames_per_system))
            width = int(systems[system, 1])
            for j in range(40):
                x = (j + 0.5) * width / 40
                notes.append((system, int(x), perf, int(f0 + (j + 0.5) * frames_per_system / 40)))
        offset += total
    specs = np.random.default_rng(3).random((92, offset)).astype(np.float16)
    return dataclasses.replace(
        bank,
        systems=systems,
        specs=specs,
        perfs=np.asarray(perfs, dtype=np.int64),
        passages=np.asarray(passages, dtype=np.int64),
        notes=np.asarray(notes, dtype=np.int64),
    )


def test_a_play_is_followed_by_the_next_systems_play_only_when_it_comes_right_after_it():
    bt = BankTensors.from_bank(read_on_bank())
    # rows: 0-2 piece A, 3-4 piece B, 5 = first play of 5, 6 = its repeat, 7 = system 6
    assert crop_index(bt).following.tolist() == [1, 2, -1, 4, -1, -1, 7, -1]


def test_a_pair_across_a_system_end_gets_the_frames_from_its_tail_to_the_next_systems_head():
    bank = read_on_bank()
    bt = BankTensors.from_bank(bank)
    rows = torch.tensor([0, 1, 3, 6] * 5)
    cut = across_rows(bt, crop_index(bt), rows, 1.0, torch.Generator().manual_seed(0))
    assert bool(cut.use.all())
    widths = torch.from_numpy(bank.systems[:, 1]).float()
    first = torch.from_numpy(bank.passages[rows.numpy(), 0])
    second = torch.from_numpy(bank.passages[cut.next_row.numpy(), 0])
    assert (second == first + 1).all()
    start = torch.from_numpy(bank.passages[rows.numpy(), 2]).float()
    # evenly played: x maps linearly to the frames of each system's play (300 frames)
    expected0 = start + cut.x0 / widths[first] * 300
    expected1 = start + 300 + cut.x1 / widths[second] * 300
    assert float((cut.f0 - expected0).abs().max()) <= 10
    assert float((cut.f1 - expected1).abs().max()) <= 10
    tail = torch.round((widths[first] - cut.x0 - 90) / 81) + 1
    head = torch.round((cut.x1 - 90) / 81) + 1
    assert bool((tail >= 1).all() and (head >= 1).all())
    assert set((tail + head).long().tolist()) <= set(range(4, 11))


def test_pairs_that_share_a_system_are_no_negatives_of_each_other():
    from sheetaudio_gui.training.train import _across_segments

    bank = read_on_bank()
    bt = BankTensors.from_bank(bank)
    picked = torch.tensor([0, 1, 3])  # systems 0, 1, 3; the first is cut across 0 -> 1
    rows = bt.passages[picked]
    cut = across_rows(bt, crop_index(bt), picked, 1.0, torch.Generator().manual_seed(1))
    cut = dataclasses.replace(cut, use=torch.tensor([True, False, False]))
    x0, x1 = torch.zeros(3), torch.from_numpy(bank.systems[[0, 1, 3], 1]).float()
    segments, (sx0, sx1), lengths_of, exclude = _across_segments(bt, rows, cut, x0, x1)
    assert segments.tolist() == [0, 1, 1, 3]  # the pair across 0 -> 1 is two segments in a row
    assert sx0[1] == 0.0 and sx1[1] == cut.x1[0]
    assert lengths_of(torch.tensor([2, 3, 5, 6])).tolist() == [5, 5, 6]
    assert exclude.tolist() == [[False, True, False], [True, False, False], [False, False, False]]


def test_excluded_negatives_do_not_count_in_either_loss():
    from sheetaudio_gui.training.train import infonce_loss, ranking_loss

    a = torch.randn(4, 8)
    b = torch.randn(4, 8)
    everything = ~torch.eye(4, dtype=torch.bool)
    assert float(infonce_loss(a, b, 0.05, everything)) == 0.0
    assert float(ranking_loss(a, b, 0.5, everything)) == 0.0
    assert float(infonce_loss(a, b, 0.05)) > 0.0


def test_loosened_pairs_move_each_audio_end_by_at_most_a_quarter_of_their_length():
    f0 = torch.tensor([0, 100, 400, 1000] * 50)
    f1 = torch.tensor([200, 180, 1200, 1021] * 50)
    g0, g1 = loosen(f0, f1, 1.0, torch.Generator().manual_seed(0))
    length = (f1 - f0).float()
    assert bool((g0 >= 0).all()) and bool((g1 - g0 >= AUDIO_SNIPPET_FRAMES).all())
    moved0, moved1 = (g0 - f0).abs().float(), (g1 - f1).abs().float()
    assert bool((moved0 <= LOOSE_SHIFT * length + 0.5).all())
    long = g1 - g0 > AUDIO_SNIPPET_FRAMES  # (the shortest pairs may be held at one snippet)
    assert bool((moved1[long] <= LOOSE_SHIFT * length[long] + 0.5).all())
    assert float((moved0 > 0).float().mean()) > 0.8  # ends move (short ones may round to 0)
    assert bool((g0 < f0).any()) and bool((g0 > f0).any()) and bool((g1 > f1).any())


def test_pairs_not_drawn_for_loosening_keep_their_ends():
    f0, f1 = torch.arange(0, 1000, 10), torch.arange(0, 1000, 10) + 200
    g0, g1 = loosen(f0, f1, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(g0, f0) and torch.equal(g1, f1)
    g0, g1 = loosen(f0, f1, 0.5, torch.Generator().manual_seed(0))
    kept = (g0 == f0) & (g1 == f1)
    assert 0.3 < float(kept.float().mean()) < 0.7


@pytest.mark.parametrize(
    ("option", "bank"),
    [
        ("crops", lambda: evenly_played(wide_bank())),
        ("across", read_on_bank),
        ("loose", lambda: evenly_played(wide_bank())),
    ],
)
def test_a_stage_trains_on_crops_on_pairs_across_system_ends_and_on_loosened_pairs(
    tmp_path, option, bank
):
    from test_training import TINY

    from sheetaudio_gui.training.train import stage_config, train_on_banks

    bt = BankTensors.from_bank(bank())
    bv = BankTensors.from_bank(synthetic_bank(8, seed=1))
    snippet = stage_config("snippet", 1, "cpu", seed=0, batch=4, eval_every=100)
    for _ in train_on_banks(bt, bv, tmp_path, snippet, TINY):
        pass
    cfg = stage_config("gru", 2, "cpu", seed=0, batch=4, eval_every=100, **{option: 1.0})
    for _ in train_on_banks(bt, bv, tmp_path, cfg):
        pass
    state = torch.load(tmp_path / "gru" / "last.pt", weights_only=True)
    assert state["step"] == 2 and state["config"][option] == 1.0
