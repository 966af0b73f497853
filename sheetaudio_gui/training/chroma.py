"""The symbolic oracle baseline: chroma of the score's own MIDI against chroma of the audio.

This is what a musicologist with the encoded score could do without any learned model: fold the
audio spectrogram onto the 12 pitch classes, render the system's notes (at the score's tempo) as a
pitch-class roll, squash both to a fixed number of time steps (so tempo does not matter) and
compare them with the cosine. It is an *oracle* because it needs the symbolic score, which a
scanned page does not give; it tells how far plain harmony-and-melody matching gets.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from sheetaudio_gui.config import FRAMES_PER_SECOND
from sheetaudio_gui.core.audio import filterbank_frequencies_hz

CHROMA_STEPS = 12  # time steps a passage's chroma is pooled to (tempo invariance)
A4_HZ = 440.0

Floats = npt.NDArray[np.float32]


def _pitch_classes() -> npt.NDArray[np.int64]:
    freqs = filterbank_frequencies_hz()
    midi = np.round(12 * np.log2(freqs / A4_HZ) + 69).astype(np.int64)
    return midi % 12


def audio_chroma(spectrogram: npt.NDArray[np.floating]) -> Floats:
    """(92, frames) log10(1 + magnitude) spectrogram -> (12, frames) compressed chroma."""
    magnitude = np.power(10.0, spectrogram.astype(np.float32)) - 1.0
    classes = _pitch_classes()
    chroma = np.zeros((12, magnitude.shape[1]), dtype=np.float32)
    np.add.at(chroma, classes, magnitude)
    out: Floats = np.log1p(10.0 * chroma).astype(np.float32)
    return out


def score_chroma(notes: list[tuple[int, float, float]], start_s: float, end_s: float) -> Floats:
    """Notes (MIDI pitch, onset s, offset s) within [start_s, end_s) -> (12, frames) roll."""
    frames = max(1, int(round((end_s - start_s) * FRAMES_PER_SECOND)))
    roll = np.zeros((12, frames), dtype=np.float32)
    for pitch, on, off in notes:
        a = max(0, int(round((on - start_s) * FRAMES_PER_SECOND)))
        b = min(frames, max(a + 1, int(round((off - start_s) * FRAMES_PER_SECOND))))
        # a struck note decays: weight its first frames most, as the audio's energy does
        roll[pitch % 12, a:b] += np.linspace(1.0, 0.3, b - a, dtype=np.float32)
    return roll


def passage_vector(chroma: Floats, steps: int = CHROMA_STEPS) -> Floats:
    """(12, frames) -> (12 * steps,) unit vector: mean-pooled into `steps` equal time segments,
    each step normalised, so every part of the passage counts equally."""
    frames = chroma.shape[1]
    edges = np.linspace(0, frames, steps + 1)
    out = np.zeros((steps, 12), dtype=np.float32)
    for k in range(steps):
        a = int(np.floor(edges[k]))
        b = max(a + 1, int(np.ceil(edges[k + 1])))
        seg = chroma[:, a : min(b, frames)]
        if seg.size:
            v = seg.mean(axis=1)
            out[k] = v / max(float(np.linalg.norm(v)), 1e-8)
    flat = out.reshape(-1)
    result: Floats = flat / max(float(np.linalg.norm(flat)), 1e-8)
    return result
