"""Small test material shared by several test modules: a melody recording and a tiny model file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pymupdf
import soundfile as sf
import torch

from sheetaudio_gui.core.models import ModelDims, PassageModel, save_model

SR = 22050
TINY = ModelDims(cnn_channels=(4, 4, 8, 8), gru_hidden=8)  # fast; library rows stay 64-d / 32-d


def melody(path: Path, seconds: float, seed: int) -> Path:
    """Random decaying sine notes of 0.2-0.5 s, written as audio: a different tune per seed."""
    rng = np.random.default_rng(seed)
    parts, total = [], 0
    while total < seconds * SR:
        n = int(rng.uniform(0.2, 0.5) * SR)
        t = np.arange(n) / SR
        f = 220.0 * 2 ** (rng.integers(0, 24) / 12)
        parts.append(0.3 * np.sin(2 * np.pi * f * t) * np.exp(-3 * t))
        total += n
    sf.write(path, np.concatenate(parts)[: int(seconds * SR)].astype(np.float32), SR)
    return path


def tiny_model_file(folder: Path, dims: ModelDims = TINY) -> Path:
    """A randomly initialised model (seed 0) saved as `folder/tiny.pt`."""
    torch.manual_seed(0)
    path = folder / "tiny.pt"
    save_model(PassageModel(dims), path)
    return path


def draw_two_staves(page: pymupdf.Page) -> None:
    """Two five-line staves with a barline and noteheads, as vectors on a 300 x 200 pt page."""
    for s in range(2):
        top = 40 + 80 * s
        for k in range(5):
            page.draw_line((20, top + 6 * k), (280, top + 6 * k), width=0.6)
        page.draw_line((20, top), (20, top + 24), width=1)
        for x in range(40, 280, 20):
            page.draw_circle((x, top + 6 + (x % 4) * 3), 2.6, fill=(0, 0, 0))
