"""Adapting the snippet CNNs to a library's own material: batch-norm statistics (AdaBN).

Every batch normalisation layer of the two CNNs normalises its input with a mean and variance
measured on the training corpus's engravings and piano sounds. A library's scores and recordings
differ (another music font, another piano, a scanner, a room), so each layer sees its input off
the scale it was trained on. Measuring those statistics again on the library's own windows, with
every weight kept, puts them back (Li et al. 2016, "Revisiting batch normalization for practical
domain adaptation"). It needs no labels: only a sample of the library's score windows and audio
snippets. Measured with v8 on the test split (held-out font and soundfont), passage R@1 audio ->
score / score -> audio: 47.4 / 45.8 % -> 54.7 / 52.3 %, and with the search's centring
(`core.centring`) 56.7 / 55.1 %; on the validation split (the training's own font and sounds)
nothing changes (`config.ADAPT_WINDOWS`).

The adapted model is an ordinary model file (new statistics, hence a new model id), kept in the
library folder; the library embeds with it and re-embeds its documents when it appears or goes.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from sheetaudio_gui.config import (
    ADAPT_MIN_WINDOWS,
    ADAPT_WINDOWS,
    AUDIO_SNIPPET_FRAMES,
    AUDIO_SNIPPET_HOP_FRAMES,
    ENCODE_BATCH_WINDOWS,
    FRAMES_PER_SECOND,
)
from sheetaudio_gui.core.errors import SheetAudioError
from sheetaudio_gui.core.jobs import CancelToken, Job, Progress
from sheetaudio_gui.core.models import PassageModel, audio_input, sheet_input

Floats = npt.NDArray[np.float32]


@dataclass(frozen=True)
class AdaptationSample:
    """Windows drawn from a library, as the CNNs receive them."""

    sheet: npt.NDArray[np.uint8]  # (n, 80, 90) score windows
    audio: Floats  # (m, 92, 20) spectrogram snippets
    scores: int  # documents the windows came from
    recordings: int


def sample_windows(
    scores: Sequence[Path],
    recordings: Sequence[tuple[Path, float]],
    cancel: CancelToken | None = None,
    seed: int = 0,
    windows: int = ADAPT_WINDOWS,
) -> Job[AdaptationSample]:
    """About `windows` score windows and as many audio snippets, spread evenly over the
    documents (recordings given with their durations in seconds): each score gives the windows
    of its pages from a random page on, each recording one excerpt from a random time.

    Files that cannot be read are skipped (the library reports them when it indexes)."""
    rng = np.random.default_rng(seed)
    total = len(scores) + len(recordings)
    sheet: list[npt.NDArray[np.uint8]] = []
    audio: list[Floats] = []
    used = [0, 0]
    per_score = math.ceil(windows / max(len(scores), 1))
    for k, path in enumerate(scores):
        yield Progress(k, total, f"sampling {path.name}")
        if cancel is not None:
            cancel.raise_if_cancelled()
        got = _score_windows(path, per_score, rng)
        if len(got):
            sheet.append(got)
            used[0] += 1
    per_recording = math.ceil(windows / max(len(recordings), 1))
    for k, (path, duration_s) in enumerate(recordings):
        yield Progress(len(scores) + k, total, f"sampling {path.name}")
        if cancel is not None:
            cancel.raise_if_cancelled()
        got_audio = _audio_windows(path, duration_s, per_recording, rng)
        if len(got_audio):
            audio.append(got_audio)
            used[1] += 1
    yield Progress(total, total, "sampled")
    return AdaptationSample(
        np.concatenate(sheet) if sheet else np.zeros((0, 80, 90), np.uint8),
        np.concatenate(audio) if audio else np.zeros((0, 92, AUDIO_SNIPPET_FRAMES), np.float32),
        used[0],
        used[1],
    )


def _score_windows(path: Path, wanted: int, rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    from sheetaudio_gui.core.encode import cut_systems
    from sheetaudio_gui.core.score import detect_systems, open_score

    found: list[npt.NDArray[np.uint8]] = []
    count = 0
    try:
        with open_score(path) as doc:
            first = int(rng.integers(doc.page_count))
            for k in range(doc.page_count):
                page = doc.page((first + k) % doc.page_count)
                for cut in cut_systems(page, detect_systems(page.image)):
                    found.append(cut.windows)
                    count += len(cut.windows)
                if count >= wanted:
                    break
    except (SheetAudioError, OSError):
        return np.zeros((0, 80, 90), np.uint8)
    if not found:
        return np.zeros((0, 80, 90), np.uint8)
    out = np.concatenate(found)
    keep = np.sort(rng.permutation(len(out))[:wanted])
    return out[keep]


def _audio_windows(path: Path, duration_s: float, wanted: int, rng: np.random.Generator) -> Floats:
    from sheetaudio_gui.core.audio import load_audio, log_spectrogram
    from sheetaudio_gui.core.snippets import audio_windows

    length_s = (wanted * AUDIO_SNIPPET_HOP_FRAMES + AUDIO_SNIPPET_FRAMES) / FRAMES_PER_SECOND
    start = float(rng.uniform(0.0, max(0.0, duration_s - length_s)))
    try:
        samples = load_audio(path, start, start + length_s)
    except (SheetAudioError, OSError):
        return np.zeros((0, 92, AUDIO_SNIPPET_FRAMES), np.float32)
    if len(samples) == 0:
        return np.zeros((0, 92, AUDIO_SNIPPET_FRAMES), np.float32)
    return audio_windows(log_spectrogram(samples), AUDIO_SNIPPET_HOP_FRAMES)[:wanted]


def require_material(score_windows: int, audio_snippets: int) -> None:
    """Refuse a library too small to measure statistics on (ADAPT_MIN_WINDOWS of each kind)."""
    for name, n in (("score windows", score_windows), ("audio snippets", audio_snippets)):
        if n < ADAPT_MIN_WINDOWS:
            raise SheetAudioError(
                f"the library holds too little material to adapt to: {n} {name}, at least "
                f"{ADAPT_MIN_WINDOWS} needed (add more scores and recordings first)"
            )


def adapt_batch_norm(model: PassageModel, sample: AdaptationSample, seed: int = 0) -> PassageModel:
    """A copy of `model` whose CNNs' batch-norm statistics are those of the sample's windows
    (shuffled, in batches of ENCODE_BATCH_WINDOWS, averaged over the batches); every weight and
    the GRUs are unchanged."""
    require_material(len(sample.sheet), len(sample.audio))
    adapted = copy.deepcopy(model)
    adapted.eval()
    rng = np.random.default_rng(seed)
    _recalibrate(adapted.sheet_cnn, sample.sheet, sheet_input, rng)
    _recalibrate(adapted.audio_cnn, sample.audio, audio_input, rng)
    return adapted


def _recalibrate(
    cnn: torch.nn.Module,
    windows: npt.NDArray[Any],
    to_input: Callable[[Any], torch.Tensor],
    rng: np.random.Generator,
) -> None:
    norms = [m for m in cnn.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the batches
        norm.train()
    order = rng.permutation(len(windows))
    with torch.no_grad():
        for lo in range(0, len(order), ENCODE_BATCH_WINDOWS):
            batch = np.sort(order[lo : lo + ENCODE_BATCH_WINDOWS])
            if len(batch) < 2:  # a batch of one has no variance
                continue
            cnn(to_input(windows[batch]).contiguous(memory_format=torch.channels_last))
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
        norm.eval()
