"""Aligned passage crops: the sheet stretch and the frames that play it stay together."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from test_training import synthetic_bank

from sheetaudio_gui.core import snippets
from sheetaudio_gui.training.bank import BANK_STRIP_PAD_PX, Bank
from sheetaudio_gui.training.batches import BankTensors, sheet_windows
from sheetaudio_gui.training.crops import crop_index, crop_rows


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


def test_a_stage_trains_on_crops(tmp_path):
    from test_training import TINY

    from sheetaudio_gui.training.train import stage_config, train_on_banks

    bt = BankTensors.from_bank(evenly_played(wide_bank()))
    bv = BankTensors.from_bank(synthetic_bank(8, seed=1))
    snippet = stage_config("snippet", 1, "cpu", seed=0, batch=4, eval_every=100)
    for _ in train_on_banks(bt, bv, tmp_path, snippet, TINY):
        pass
    cfg = stage_config("gru", 2, "cpu", seed=0, batch=4, eval_every=100, crops=1.0)
    for _ in train_on_banks(bt, bv, tmp_path, cfg):
        pass
    state = torch.load(tmp_path / "gru" / "last.pt", weights_only=True)
    assert state["step"] == 2 and state["config"]["crops"] == 1.0
