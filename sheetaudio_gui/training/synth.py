"""Render a `Performance` to mono audio with fluidsynth, offline and sample-exact.

The synthesiser is driven by hand: between two events it writes exactly the samples up to the
next event, so event times are exact to fluidsynth's 64-sample control block (< 3 ms at
22.05 kHz). One synthesiser per soundfont is kept per process (loading MuseScore_General.sf3
takes seconds) and reset between renders.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sheetaudio_gui import config
from sheetaudio_gui.core.errors import FileProblem
from sheetaudio_gui.training.perform import Performance

log = logging.getLogger(__name__)

CHANNEL = 0
FLUSH_S = (
    0.5  # silence rendered and thrown away after a reset: empties the reverb of the last piece
)
_NOTE_OFF, _PEDAL, _NOTE_ON = 0, 1, 2  # order of simultaneous events: release, pedal, strike


def find_soundfont(name: str) -> Path:
    """Path of a soundfont file named in config, searched in CORPUS_SOUNDFONT_DIRS."""
    for folder in config.CORPUS_SOUNDFONT_DIRS:
        path = Path(folder) / name
        if path.is_file():
            return path
    raise FileProblem(
        name,
        f"soundfont not found in {', '.join(config.CORPUS_SOUNDFONT_DIRS)}; install the Debian "
        "packages fluid-soundfont-gm, timgm6mb-soundfont and musescore-general-soundfont",
    )


@functools.lru_cache(maxsize=8)
def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=4)
def _synth(path: Path) -> tuple[Any, int]:
    import fluidsynth

    synth = fluidsynth.Synth(
        gain=config.CORPUS_SYNTH_GAIN,
        samplerate=float(config.SAMPLE_RATE_HZ),
        **{"synth.chorus.active": 0, "synth.reverb.active": 1},
    )
    sfid = synth.sfload(str(path))
    if sfid < 0:
        raise FileProblem(path, "fluidsynth could not load this soundfont; reinstall it")
    return synth, sfid


def render(performance: Performance, soundfont: Path, program: int) -> npt.NDArray[np.float32]:
    """Performance -> mono float32 samples at SAMPLE_RATE_HZ, (samples,), peak 1.0.

    The audio lasts until the last release plus CORPUS_RELEASE_TAIL_S.
    """
    synth, sfid = _synth(soundfont)
    synth.system_reset()
    synth.program_select(CHANNEL, sfid, 0, program)
    style = performance.style
    synth.set_reverb(style.reverb_room, 0.4, 0.8, style.reverb_level)
    synth.get_samples(int(FLUSH_S * config.SAMPLE_RATE_HZ))

    rate = config.SAMPLE_RATE_HZ
    events: list[tuple[int, int, int, int]] = []  # (sample, kind, key/value, velocity)
    for p, v, on, off in zip(
        performance.pitch.tolist(),
        performance.velocity.tolist(),
        performance.onset_s.tolist(),
        performance.release_s.tolist(),
        strict=True,
    ):
        events.append((round(on * rate), _NOTE_ON, p, v))
        events.append((round(off * rate), _NOTE_OFF, p, 0))
    for t, value in performance.pedal:
        events.append((round(t * rate), _PEDAL, value, 0))
    events.sort()
    end = max(events[-1][0], round(performance.end_s * rate)) + round(
        config.CORPUS_RELEASE_TAIL_S * rate
    )

    blocks = []
    cursor = 0
    for sample, kind, key, velocity in events:
        if sample > cursor:
            blocks.append(synth.get_samples(sample - cursor))
            cursor = sample
        if kind == _NOTE_ON:
            synth.noteon(CHANNEL, key, velocity)
        elif kind == _NOTE_OFF:
            synth.noteoff(CHANNEL, key)
        else:
            synth.cc(CHANNEL, 64, key)
    blocks.append(synth.get_samples(end - cursor))
    synth.cc(CHANNEL, 64, 0)
    synth.all_sounds_off(CHANNEL)

    stereo = np.concatenate(blocks).astype(np.float32).reshape(-1, 2)
    mono = stereo.mean(axis=1) / 32768.0
    peak = float(np.abs(mono).max())
    if peak > 0:
        mono /= peak
    return np.ascontiguousarray(mono, dtype=np.float32)
