"""Sampling training batches from a bank, with augmentation done in torch on the training device.

Everything a batch needs is cut from the bank tensors by index arithmetic and `grid_sample`, so
the same code feeds a 2-core CPU and a GPU without data-loader processes:

- sheet side: each system strip is rescaled by a random factor (0.95-1.05), shifted by
  up to +-5 page px (+-2.5 strip px, after halving) in both directions, cut into 80x90
  windows with hop 81, then blurred / noised / contrast-changed a little (scan-like);
- audio side: the passage's frame range gets its ends jittered (queries never start exactly at a
  system boundary), then gain, a smooth equaliser curve, a noise floor and a reverb-like temporal
  smear are applied to the magnitudes behind the log spectrogram (exact for gain and EQ, a cheap
  approximation for reverb and noise: the waveform-level versions live in `augment.py` and are
  used for the robustness evaluation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sheetaudio_gui.config import (
    AUDIO_SNIPPET_FRAMES,
    AUDIO_SNIPPET_HOP_FRAMES,
    SHEET_SNIPPET_HEIGHT_PX,
    SHEET_SNIPPET_HOP_PX,
    SHEET_SNIPPET_WIDTH_PX,
)
from sheetaudio_gui.training.bank import Bank

SCALE_RANGE = (0.95, 1.05)  # sheet rescaling factor
SHIFT_PX = 2.5  # max sheet shift in halved strip px (= 5 page px at the normalised spacing)
# Domain randomisation (train --augment domain): the test split's music font and soundfont are
# never seen in training, so vary what differs between fonts (glyph width, stroke weight) and
# between piano samples (spectral balance, register-wise partial strength) beyond the mild defaults.
STRETCH_X_RANGE = (0.88, 1.12)  # horizontal stretch on top of the scale (wider/narrower fonts)
STROKE_CHANGE = 0.7  # up to this share of a 3x3 dilation (bolder) or erosion (thinner) of the ink
EQ_DOMAIN_FACTOR = 2.0  # the smooth EQ curve's coefficients are scaled by this (about +-12 dB)
RIPPLE_DB = 4.0  # register-wise ripple over the bins: up to this many dB, 1-4 periods
BOUNDARY_JITTER_FRAMES = 6  # passage ends move by up to this many frames (0.3 s)
MAX_SHEET_WINDOWS = 24  # longest passage cut (sheet windows); longer systems are truncated
MAX_AUDIO_FRAMES = 24 * AUDIO_SNIPPET_HOP_FRAMES + AUDIO_SNIPPET_FRAMES  # likewise for audio


@dataclass
class BankTensors:
    """A bank's arrays as tensors on the training device."""

    strips: torch.Tensor  # (H, total_w) uint8
    systems: torch.Tensor  # (n, 3) int64: offset, width, piece
    specs: torch.Tensor  # (92, total_frames) float16
    perfs: torch.Tensor  # (n, 3) int64: offset, frames, piece
    passages: torch.Tensor  # (n, 4) int64: system, perf, f0, f1
    notes: torch.Tensor  # (n, 4) int64: system, x, perf, frame

    @staticmethod
    def from_bank(bank: Bank, device: torch.device | str = "cpu") -> BankTensors:
        def t(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(device)

        return BankTensors(
            t(bank.strips),
            t(bank.systems),
            t(bank.specs),
            t(bank.perfs),
            t(bank.passages),
            t(bank.notes),
        )

    @property
    def device(self) -> torch.device:
        return self.strips.device


def window_count(length: torch.Tensor, window: int, hop: int) -> torch.Tensor:
    """Windows covering `length` (as core.snippets.window_starts): at least one."""
    return torch.where(
        length <= window, 1, torch.div(length - window + hop - 1, hop, rounding_mode="floor") + 1
    )


def _uniform(
    n: int, lo: float, hi: float, gen: torch.Generator, device: torch.device
) -> torch.Tensor:
    return (torch.rand(n, generator=gen) * (hi - lo) + lo).to(device)


def sheet_windows(
    bt: BankTensors,
    system_ids: torch.Tensor,
    gen: torch.Generator,
    augment: bool,
    centre_x: torch.Tensor | None = None,
    domain: bool = False,
    x_range: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows of the given systems: -> (sum of lengths, 1, 80, 90) ink in [0, 1], (batch,) lengths.

    `domain` (with `augment`) adds the domain randomisation of fonts (stretch, stroke weight).

    With `centre_x` (strip px per system) one window centred there is cut per system instead
    (the snippet pairs of the 2018 baseline). With `x_range` ((batch,) first and end strip px)
    only that part of each system is cut (passage crops).
    """
    device = bt.device
    b = len(system_ids)
    rows = system_ids.to(device)
    offsets, widths = bt.systems[rows, 0], bt.systems[rows, 1]
    if augment:
        scale = _uniform(b, *SCALE_RANGE, gen, device)
        dx = _uniform(b, -SHIFT_PX, SHIFT_PX, gen, device)
        dy = _uniform(b, -SHIFT_PX, SHIFT_PX, gen, device)
        stretch = _uniform(b, *STRETCH_X_RANGE, gen, device) if domain else torch.ones_like(scale)
    else:
        scale = torch.ones(b, device=device)
        dx = torch.zeros(b, device=device)
        dy = torch.zeros(b, device=device)
        stretch = torch.ones(b, device=device)
    scale_x = scale * stretch
    if centre_x is None:
        x0 = torch.zeros(b, device=device) if x_range is None else x_range[0].to(device).float()
        x1 = widths.float() if x_range is None else x_range[1].to(device).float()
        lengths = window_count(
            ((x1 - x0) * scale_x).round().long(), SHEET_SNIPPET_WIDTH_PX, SHEET_SNIPPET_HOP_PX
        ).clamp(max=MAX_SHEET_WINDOWS)
        start_x = x0 * scale_x
    else:
        lengths = torch.ones(b, dtype=torch.long, device=device)
        start_x = centre_x.to(device).float() * scale_x - SHEET_SNIPPET_WIDTH_PX / 2
    n_max = int(lengths.max())
    height = bt.strips.shape[0]
    # source patch per system: its strip, padded to the widest (ink = 0 outside)
    w_max = int(widths.max())
    cols = offsets[:, None] + torch.arange(w_max, device=device)[None, :]
    valid = torch.arange(w_max, device=device)[None, :] < widths[:, None]
    cols = torch.where(valid, cols, 0)
    patch = 1.0 - bt.strips[:, cols].permute(1, 0, 2).float() / 255.0  # (b, H, w_max)
    patch = patch * valid[:, None, :]
    # output pixel centres in strip coordinates
    out_w = n_max * SHEET_SNIPPET_WIDTH_PX
    k = torch.arange(n_max, device=device).repeat_interleave(SHEET_SNIPPET_WIDTH_PX)
    c = torch.arange(SHEET_SNIPPET_WIDTH_PX, device=device).repeat(n_max)
    out_x = (k * SHEET_SNIPPET_HOP_PX + c).float() + 0.5  # (out_w,)
    out_y = torch.arange(SHEET_SNIPPET_HEIGHT_PX, device=device).float() + 0.5
    src_x = (out_x[None, :] + start_x[:, None]) / scale_x[:, None] + dx[:, None]  # (b, out_w)
    src_y = (
        (out_y[None, :] - SHEET_SNIPPET_HEIGHT_PX / 2) / scale[:, None] + height / 2 + dy[:, None]
    )
    gx = (src_x / w_max * 2 - 1)[:, None, :].expand(b, SHEET_SNIPPET_HEIGHT_PX, out_w)
    gy = (src_y / height * 2 - 1)[:, :, None].expand(b, SHEET_SNIPPET_HEIGHT_PX, out_w)
    grid = torch.stack([gx, gy], dim=-1)
    out = F.grid_sample(
        patch[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    windows = out.view(b, 1, SHEET_SNIPPET_HEIGHT_PX, n_max, SHEET_SNIPPET_WIDTH_PX).permute(
        0, 3, 1, 2, 4
    )
    keep = torch.arange(n_max, device=device)[None, :] < lengths[:, None]
    flat = windows[keep]  # (sum lengths, 1, 80, 90)
    if augment:
        if domain:
            flat = _change_strokes(flat, gen)
        flat = _degrade_sheet(flat, gen)
    return flat.contiguous(), lengths


def _change_strokes(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Bolder or thinner ink per window (n, 1, 80, 90): a random blend toward a 3x3 dilation or
    erosion, as between a heavy and a light music font."""
    n, device = x.shape[0], x.device
    amount = _uniform(n, -STROKE_CHANGE, STROKE_CHANGE, gen, device)[:, None, None, None]
    bold = F.max_pool2d(x, 3, stride=1, padding=1)
    thin = -F.max_pool2d(-x, 3, stride=1, padding=1)
    return torch.where(amount > 0, x + amount * (bold - x), x - amount * (thin - x))


def _degrade_sheet(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mild scan-like degradation of ink windows (n, 1, 80, 90): blur, contrast, noise."""
    n, device = x.shape[0], x.device
    sigma = _uniform(n, 0.0, 0.8, gen, device)
    kernel_x = torch.arange(-2, 3, device=device).float()
    weights = torch.exp(-(kernel_x[None, :] ** 2) / (2 * sigma[:, None].clamp_min(1e-3) ** 2))
    weights = weights / weights.sum(1, keepdim=True)  # (n, 5)
    padded = F.pad(x, (2, 2, 2, 2), mode="replicate")
    blurred = (
        (F.unfold(padded, (1, 5)).view(n, 5, -1) * weights[:, :, None]).sum(1).view(n, 1, 84, 90)
    )
    blurred = (
        (F.unfold(blurred, (5, 1)).view(n, 5, -1) * weights[:, :, None]).sum(1).view(n, 1, 80, 90)
    )
    contrast = _uniform(n, 0.7, 1.1, gen, device)[:, None, None, None]
    noise = _uniform(n, 0.0, 0.06, gen, device)[:, None, None, None]
    jitter = torch.randn(x.shape, generator=gen).to(device) * noise
    return (blurred * contrast + jitter).clamp(0, 1)


def audio_windows(
    bt: BankTensors,
    perf_ids: torch.Tensor,
    f0: torch.Tensor,
    f1: torch.Tensor,
    gen: torch.Generator,
    augment: bool,
    jitter: bool = True,
    domain: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame ranges [f0, f1) of performances -> (sum lengths, 1, 92, 20) windows, lengths.

    `domain` (with `augment`) adds the domain randomisation of piano sounds (EQ, ripple)."""
    device = bt.device
    b = len(perf_ids)
    perf_ids, f0, f1 = perf_ids.to(device), f0.to(device), f1.to(device)
    offsets, frames = bt.perfs[perf_ids, 0], bt.perfs[perf_ids, 1]
    if augment and jitter:
        j = BOUNDARY_JITTER_FRAMES
        f0 = f0 + torch.randint(-j, j + 1, (b,), generator=gen).to(device)
        f1 = f1 + torch.randint(-j, j + 1, (b,), generator=gen).to(device)
        f1 = torch.maximum(f1, f0 + AUDIO_SNIPPET_FRAMES)
    f0 = f0.clamp(min=0)
    f1 = torch.minimum(f1, frames)
    length = (f1 - f0).clamp(min=1, max=MAX_AUDIO_FRAMES)
    counts = window_count(length, AUDIO_SNIPPET_FRAMES, AUDIO_SNIPPET_HOP_FRAMES)
    span = int((counts.max() - 1) * AUDIO_SNIPPET_HOP_FRAMES + AUDIO_SNIPPET_FRAMES)
    t = torch.arange(span, device=device)[None, :]
    inside = t < length[:, None]
    idx = torch.where(inside, offsets[:, None] + f0[:, None] + t, 0)
    seg = bt.specs[:, idx].permute(1, 0, 2).float() * inside[:, None, :]  # (b, 92, span)
    if augment:
        seg = _degrade_spec(seg, gen, domain) * inside[:, None, :]
    windows = seg.unfold(2, AUDIO_SNIPPET_FRAMES, AUDIO_SNIPPET_HOP_FRAMES)  # (b, 92, n, 20)
    windows = windows.permute(0, 2, 1, 3)
    keep = torch.arange(windows.shape[1], device=device)[None, :] < counts[:, None]
    return windows[keep][:, None].contiguous(), counts


def _degrade_spec(seg: torch.Tensor, gen: torch.Generator, domain: bool = False) -> torch.Tensor:
    """Gain, smooth EQ, noise floor and temporal smear on log10(1+x) spectrogram segments;
    `domain`: a stronger EQ and a register-wise ripple (another piano's partial balance)."""
    b, bins, span = seg.shape
    device = seg.device
    mag = torch.pow(10.0, seg) - 1.0
    gain_db = _uniform(b, -12, 6, gen, device)[:, None]
    # smooth EQ: random cubic curve over the bins, +-6 dB
    pos = torch.linspace(-1, 1, bins, device=device)[None, :]
    coef = (torch.rand(b, 4, generator=gen).to(device) * 2 - 1) * torch.tensor(
        [3.0, 4.0, 3.0, 2.0], device=device
    )
    eq_db = coef[:, :1] + coef[:, 1:2] * pos + coef[:, 2:3] * pos**2 + coef[:, 3:4] * pos**3
    if domain:
        periods = _uniform(b, 1.0, 4.0, gen, device)[:, None]
        phase = _uniform(b, 0.0, 2 * math.pi, gen, device)[:, None]
        depth = _uniform(b, 0.0, RIPPLE_DB, gen, device)[:, None]
        eq_db = EQ_DOMAIN_FACTOR * eq_db + depth * torch.sin(math.pi * periods * pos + phase)
    mag = mag * torch.pow(10.0, (gain_db + eq_db) / 20.0)[:, :, None]
    # reverb-like smear: x'_t = x_t + r * sum_{k>0} d^k x_{t-k}
    decay = _uniform(b, 0.0, 0.7, gen, device)
    level = _uniform(b, 0.0, 0.5, gen, device)
    taps = torch.arange(1, 9, device=device).float()
    kernel = level[:, None] * decay[:, None] ** taps[None, :]  # (b, 8)
    padded = F.pad(mag, (8, 0))
    smear = sum(
        kernel[:, k - 1, None, None] * padded[:, :, 8 - k : 8 - k + span] for k in range(1, 9)
    )
    mag = mag + smear
    # noise floor relative to the segment's mean magnitude
    floor = _uniform(b, 0.0, 0.05, gen, device)[:, None, None] * mag.mean(dim=(1, 2), keepdim=True)
    mag = mag + floor * torch.rand(mag.shape, generator=gen).to(device)
    return torch.log10(1.0 + mag.clamp_min(0))


def pad_sequences(flat: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(sum lengths, d) -> (batch, max length, d), zero-padded, in order."""
    parts = torch.split(flat, lengths.tolist())
    return torch.nn.utils.rnn.pad_sequence(list(parts), batch_first=True)


def sample_passages(
    bt: BankTensors, batch: int, gen: torch.Generator, per_piece: int = 1
) -> torch.Tensor:
    """Rows of `passages` for a batch, from distinct systems (no false in-batch negatives).

    With `per_piece` > 1 the batch is drawn as groups of up to that many systems of one piece:
    systems of the same piece share key, texture, music font and piano sound, so they are the
    hard negatives that teach the pitch-exact features a large library needs (random batches
    are separated by style alone).
    """
    if per_piece <= 1:
        rows = torch.randint(len(bt.passages), (batch * 2,), generator=gen)
        systems = bt.passages[rows.to(bt.device), 0].cpu()
        _, first = np.unique(systems.numpy(), return_index=True)
        return rows[np.sort(first)][:batch]
    systems = bt.passages[:, 0].cpu()
    pieces = bt.systems[:, 2].cpu()[systems]
    order = torch.randperm(len(systems), generator=gen)  # random row per system below
    _, first = np.unique(systems[order].numpy(), return_index=True)
    one_row = order[first]  # one random passage row for every system
    piece_of_row = pieces[one_row]
    piece_ids = torch.unique(piece_of_row)
    chosen: list[torch.Tensor] = []
    taken = 0
    for piece in piece_ids[torch.randperm(len(piece_ids), generator=gen)]:
        own = one_row[piece_of_row == piece]
        own = own[torch.randperm(len(own), generator=gen)][: min(per_piece, batch - taken)]
        chosen.append(own)
        taken += len(own)
        if taken >= batch:
            break
    return torch.cat(chosen)


def sample_notes(bt: BankTensors, batch: int, gen: torch.Generator) -> torch.Tensor:
    """Rows of `notes` for a snippet batch, from distinct systems."""
    rows = torch.randint(len(bt.notes), (batch * 2,), generator=gen)
    systems = bt.notes[rows.to(bt.device), 0].cpu()
    _, first = np.unique(systems.numpy(), return_index=True)
    return rows[np.sort(first)][:batch]
