"""Turn played score notes into a human-ish piano performance: tempo, velocities, lengths, pedal.

Everything time-related goes through one `TempoMap` (score seconds -> audio seconds), so the onset
of every notehead in the audio is known exactly: it is the tempo map applied to its score onset.
Random choices come from the generator passed in, so a seed gives the same performance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sheetaudio_gui import config
from sheetaudio_gui.training.engrave import ScoreNote

TEMPO_GRID_S = 0.01  # score-time resolution of the tempo curve
MIN_TEMPO_FACTOR = 0.35  # local tempo never drops below this fraction of the global tempo
MIN_SOUNDING_S = 0.04  # shortest note length sent to the synthesiser
SAME_PITCH_GAP_S = 0.005  # a repeated key is released this long before it is struck again
PHRASE_RIT_LENGTH_S = (0.8, 2.0)  # score seconds of slowing before a phrase end


@dataclass(frozen=True)
class TempoMap:
    """Piecewise-linear map from score time to audio time (both s), strictly increasing."""

    score_s: npt.NDArray[np.float64]  # (points,)
    audio_s: npt.NDArray[np.float64]  # (points,)

    def __call__(self, score_s: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Score seconds (any shape) -> audio seconds (same shape); extrapolates linearly."""
        t = np.asarray(score_s, dtype=np.float64)
        inside = np.interp(t, self.score_s, self.audio_s)
        slope_end = (self.audio_s[-1] - self.audio_s[-2]) / (self.score_s[-1] - self.score_s[-2])
        beyond = self.audio_s[-1] + (t - self.score_s[-1]) * slope_end
        out: npt.NDArray[np.float64] = np.where(t > self.score_s[-1], beyond, inside)
        return out


@dataclass(frozen=True)
class PerformanceStyle:
    """The random choices that shape one performance (stored in the corpus for reference)."""

    tempo_scale: float  # >1 plays faster than the score's tempo
    rubato_depth: float
    final_rit_s: float
    final_rit_depth: float
    phrase_rit_depth: float
    velocity_base: float
    legato: float
    pedal: bool
    reverb_level: float
    reverb_room: float


def choose_style(rng: np.random.Generator) -> PerformanceStyle:
    return PerformanceStyle(
        tempo_scale=round(float(rng.uniform(*config.CORPUS_TEMPO_SCALE_RANGE)), 4),
        rubato_depth=round(float(rng.uniform(*config.CORPUS_RUBATO_DEPTH_RANGE)), 4),
        final_rit_s=round(float(rng.uniform(*config.CORPUS_FINAL_RITARDANDO_S)), 3),
        final_rit_depth=round(float(rng.uniform(*config.CORPUS_FINAL_RITARDANDO_DEPTH)), 3),
        phrase_rit_depth=round(float(rng.uniform(*config.CORPUS_PHRASE_RITARDANDO_DEPTH)), 3),
        velocity_base=round(float(rng.uniform(*config.CORPUS_VELOCITY_BASE)), 1),
        legato=round(float(rng.uniform(*config.CORPUS_LEGATO_RANGE)), 3),
        pedal=bool(rng.random() < config.CORPUS_PEDAL_PROBABILITY),
        reverb_level=round(float(rng.uniform(*config.CORPUS_REVERB_LEVEL_RANGE)), 3),
        reverb_room=round(float(rng.uniform(*config.CORPUS_REVERB_ROOM_RANGE)), 3),
    )


@dataclass(frozen=True)
class Performance:
    """Notes in audio time, ready for the synthesiser. Arrays are parallel, shape (notes,)."""

    style: PerformanceStyle
    tempo: TempoMap
    pitch: npt.NDArray[np.int64]
    velocity: npt.NDArray[np.int64]
    onset_s: npt.NDArray[np.float64]  # audio time of each struck note (exact, from the tempo map)
    release_s: npt.NDArray[np.float64]  # audio time of the key release
    pedal: tuple[tuple[float, int], ...]  # (audio time s, CC64 value) in time order
    end_s: float  # audio time when the last written note ends (before release tails)


def tempo_map(
    end_score_s: float,
    phrase_ends_s: Sequence[float],
    style: PerformanceStyle,
    rng: np.random.Generator,
) -> TempoMap:
    """Smooth local tempo (rubato + phrase and final ritardandi) integrated into a time map."""
    t = np.arange(0.0, end_score_s + 2 * TEMPO_GRID_S, TEMPO_GRID_S)
    factor = np.ones_like(t)
    for _ in range(2):
        period = rng.uniform(*config.CORPUS_RUBATO_PERIOD_S)
        phase = rng.uniform(0, 2 * np.pi)
        factor += style.rubato_depth / 2 * np.sin(2 * np.pi * t / period + phase)
    for end in phrase_ends_s:
        length = rng.uniform(*PHRASE_RIT_LENGTH_S)
        ramp = np.clip((t - (end - length)) / length, 0.0, None)
        factor -= style.phrase_rit_depth * np.where(t <= end, ramp**2, 0.0)
    start = end_score_s - style.final_rit_s
    ramp = np.clip((t - start) / style.final_rit_s, 0.0, 1.0)
    factor -= style.final_rit_depth * ramp**2
    factor = np.maximum(factor, MIN_TEMPO_FACTOR)
    rate = style.tempo_scale * factor  # score seconds per audio second
    lead_in = rng.uniform(*config.CORPUS_LEAD_IN_S)
    audio = lead_in + np.concatenate([[0.0], np.cumsum(TEMPO_GRID_S / rate[:-1])])
    return TempoMap(score_s=t, audio_s=audio)


def phrase_ends(notes: Sequence[ScoreNote], fermata_ids: frozenset[str]) -> list[float]:
    """Score times that end a phrase: fermata notes, and onsets followed by a long gap."""
    onsets = np.unique([n.onset_s for n in notes])
    ends = {n.onset_s for n in notes if n.note_id in fermata_ids}
    if len(onsets) > 2:
        gaps = np.diff(onsets)
        long_gap = 2.5 * float(np.median(gaps))
        ends.update(float(t) for t, g in zip(onsets[:-1], gaps, strict=True) if g >= long_gap)
    return sorted(ends)


def perform(
    notes: Sequence[ScoreNote],
    measure_onsets_s: Sequence[float],
    fermata_ids: frozenset[str],
    style: PerformanceStyle,
    rng: np.random.Generator,
) -> Performance:
    """Score notes (sorted by onset) -> a performance in audio time; same rng, same result."""
    on = np.array([n.onset_s for n in notes])
    off = np.array([n.offset_s for n in notes])
    pitch = np.array([n.pitch for n in notes], dtype=np.int64)
    end_score = float(off.max())
    tmap = tempo_map(end_score, phrase_ends(notes, fermata_ids), style, rng)
    on_a, off_a = tmap(on), tmap(off)

    velocity = _velocities(on, pitch, measure_onsets_s, style, rng)
    release = _releases(on_a, off_a, pitch, end_score, tmap, style, rng)
    pedal = _pedal(on, pitch, measure_onsets_s, tmap, float(off_a.max())) if style.pedal else ()
    return Performance(
        style=style,
        tempo=tmap,
        pitch=pitch,
        velocity=velocity,
        onset_s=on_a,
        release_s=release,
        pedal=pedal,
        end_s=float(off_a.max()),
    )


def _velocities(
    on: npt.NDArray[np.float64],
    pitch: npt.NDArray[np.int64],
    measure_onsets_s: Sequence[float],
    style: PerformanceStyle,
    rng: np.random.Generator,
) -> npt.NDArray[np.int64]:
    """Smooth dynamics curve + top-voice and downbeat accents + per-note jitter."""
    period = rng.uniform(6.0, 20.0)
    phase = rng.uniform(0, 2 * np.pi)
    dynamics = 12.0 * np.sin(2 * np.pi * on / period + phase)
    top = np.zeros(len(on), dtype=bool)
    for t in np.unique(on):
        same = np.flatnonzero(on == t)
        top[same[np.argmax(pitch[same])]] = True
    downbeat = np.isin(np.round(on, 3), np.round(np.asarray(measure_onsets_s), 3))
    v = style.velocity_base + dynamics + 8.0 * top + 4.0 * downbeat + rng.normal(0, 5, len(on))
    lo, hi = config.CORPUS_VELOCITY_RANGE
    out: npt.NDArray[np.int64] = np.clip(np.round(v), lo, hi).astype(np.int64)
    return out


def _releases(
    on_a: npt.NDArray[np.float64],
    off_a: npt.NDArray[np.float64],
    pitch: npt.NDArray[np.int64],
    end_score: float,
    tmap: TempoMap,
    style: PerformanceStyle,
    rng: np.random.Generator,
) -> npt.NDArray[np.float64]:
    """Key releases: written length x legato (x jitter, staccato), never past a re-strike."""
    length = (off_a - on_a) * style.legato * rng.uniform(0.9, 1.1, len(on_a))
    span = float(tmap(end_score))
    for _ in range(int(rng.poisson(config.CORPUS_STACCATO_PROBABILITY * max(span / 8.0, 1.0)))):
        start = rng.uniform(0, span)
        inside = (on_a >= start) & (on_a < start + rng.uniform(3.0, 8.0))
        length[inside] *= 0.4
    release = on_a + np.maximum(length, MIN_SOUNDING_S)
    for p in np.unique(pitch):
        idx = np.flatnonzero(pitch == p)
        idx = idx[np.argsort(on_a[idx], kind="stable")]
        nxt = on_a[idx[1:]] - SAME_PITCH_GAP_S
        release[idx[:-1]] = np.minimum(release[idx[:-1]], np.maximum(nxt, on_a[idx[:-1]] + 1e-3))
    return release


def _pedal(
    on: npt.NDArray[np.float64],
    pitch: npt.NDArray[np.int64],
    measure_onsets_s: Sequence[float],
    tmap: TempoMap,
    last_release_s: float,
) -> tuple[tuple[float, int], ...]:
    """Sustain pedal changed (up, then down after CORPUS_PEDAL_LIFT_S) at harmony changes.

    A harmony change is a measure start, or an onset whose pitch classes share fewer than two
    with the previous onset group's; changes closer than 0.4 score seconds are merged.
    """
    times = np.unique(on)
    changes: list[float] = []
    previous: set[int] = set()
    measures = set(np.round(np.asarray(measure_onsets_s), 3).tolist())
    for t in times:
        classes = {int(p) % 12 for p in pitch[on == t]}
        if (round(float(t), 3) in measures or len(classes & previous) < 2) and (
            not changes or t - changes[-1] >= 0.4
        ):
            changes.append(float(t))
        previous = classes
    events: list[tuple[float, int]] = []
    for t in tmap(np.array(changes)):
        events.append((float(t), 0))
        events.append((float(t) + config.CORPUS_PEDAL_LIFT_S, 127))
    events.append((last_release_s, 0))
    return tuple(events)
