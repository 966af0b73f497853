"""Procedural piano music written directly as MEI text, for the synthetic aligned corpus.

Why MEI text and not music21 streams: building and exporting streams costs seconds a piece, writing
MEI costs milliseconds, and MEI is verovio's native format, so what we write is what it engraves and
times. Every piece is a grand staff (treble + bass) in one of 30 keys and a common meter, built
from 4- or 8-bar phrases over functional progressions that end in cadences, in one of several
keyboard textures, with the notational furniture of real piano scores: dynamics, hairpins, pedal,
slurs, tempo words with a metronome mark, clef changes, ties, triplets, grace notes, repeats with
first and second endings, and key changes.

Repeats are written with an MEI `<expansion>` so that verovio's timemap (and MIDI) play them; the
timemap then lists the notes of a repeated passage a second time with ids ending in `-rend2`.
Verovio's timemap also lists tied continuation notes as onsets of their own; `GeneratedPiece`
names them so that callers (and tests) can leave them out.

Pitches are spelled diatonically (`Pitch.step` counts letter names, C4 = 28), so keys with seven
sharps or flats come out with correct accidentals.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

# --- constants (units in comments) --------------------------------------------------------------
TICKS_PER_QUARTER = 24  # duration unit: divisible by 3 (triplets) and 8 (32nds)
MIN_MEASURES = 16  # shortest generated piece, in measures
MAX_MEASURES = 96  # longest generated piece, in measures
C4_STEP = 28  # diatonic step number of middle C (octave 4 * 7 letters)
MAX_HAND_SPAN_SEMITONES = 14  # widest simultaneous interval written for one hand (a ninth)
MAX_HAND_NOTES = 4  # most simultaneous notes written for one hand
TARGET_MAX_SECONDS = 150.0  # longest unrepeated playing time a piece is planned for
GENERATOR_VERSION = "v1"  # bump when the output for a (seed, index) changes

LETTERS = "cdefgab"
LETTER_SEMITONES = (0, 2, 4, 5, 7, 9, 11)
SHARP_ORDER = (3, 0, 4, 1, 5, 2, 6)  # F C G D A E B, as letter indices
KEY_NAMES = ("C", "D", "E", "F", "G", "A", "B")

TEXTURES = (
    "chorale",
    "alberti",
    "broken_chord",
    "arpeggio",
    "melody_accompaniment",
    "counterpoint2",
    "counterpoint3",
    "octaves",
    "repeated_chords",
    "waltz",
)

# (count, unit, beats per measure, ticks per beat, compound?) ; weights favour the common meters
METERS: tuple[tuple[int, int, int, int, bool, float], ...] = (
    (4, 4, 4, 24, False, 4.0),
    (3, 4, 3, 24, False, 3.0),
    (2, 4, 2, 24, False, 2.0),
    (2, 2, 4, 24, False, 1.0),  # notated in quarters internally; the beat is a half note
    (5, 4, 5, 24, False, 0.5),
    (6, 8, 2, 36, True, 2.0),
    (3, 8, 1, 36, True, 1.0),
    (9, 8, 3, 36, True, 1.0),
    (12, 8, 4, 36, True, 1.0),
)

TEMPO_WORDS: tuple[tuple[str, int, int], ...] = (  # word, slowest and fastest quarter-note bpm
    ("Adagio", 56, 72),
    ("Andante", 72, 92),
    ("Andantino", 80, 96),
    ("Moderato", 90, 112),
    ("Allegretto", 100, 120),
    ("Allegro", 116, 144),
    ("Vivace", 132, 160),
    ("Larghetto", 60, 72),
    ("Tempo di valse", 132, 168),
)

DURATIONS: dict[int, tuple[str, int]] = {  # written ticks -> (MEI @dur, dots)
    96: ("1", 0),
    144: ("1", 1),
    48: ("2", 0),
    72: ("2", 1),
    24: ("4", 0),
    36: ("4", 1),
    12: ("8", 0),
    18: ("8", 1),
    6: ("16", 0),
    9: ("16", 1),
    3: ("32", 0),
}


# --- pitch and key ------------------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class Pitch:
    """A spelled pitch: `step` counts letter names from C-1 (C4 = 28), `alter` in semitones."""

    step: int
    alter: int = 0

    @property
    def letter(self) -> int:
        return self.step % 7

    @property
    def octave(self) -> int:
        return self.step // 7

    @property
    def midi(self) -> int:
        return 12 * (self.octave + 1) + LETTER_SEMITONES[self.letter] + self.alter


@dataclass(frozen=True)
class Key:
    """A key: `fifths` of the signature (-7..7) and mode."""

    fifths: int
    mode: str  # "major" | "minor"

    @property
    def tonic_letter(self) -> int:
        major = (self.fifths * 4) % 7
        return major if self.mode == "major" else (major + 5) % 7

    def signature_alter(self, letter: int) -> int:
        if self.fifths > 0:
            return 1 if letter in SHARP_ORDER[: self.fifths] else 0
        if self.fifths < 0:
            return -1 if letter in SHARP_ORDER[::-1][: -self.fifths] else 0
        return 0

    def degree_of(self, letter: int) -> int:
        return (letter - self.tonic_letter) % 7

    def name(self) -> str:
        letter = self.tonic_letter
        alter = self.signature_alter(letter)
        accidental = {1: "-sharp", -1: "-flat", 0: ""}[alter]
        return f"{KEY_NAMES[letter]}{accidental} {self.mode}"

    def mei_sig(self) -> str:
        if self.fifths == 0:
            return "0"
        return f"{abs(self.fifths)}{'s' if self.fifths > 0 else 'f'}"


@dataclass(frozen=True)
class Chord:
    """A diatonic chord of a key: scale-degree root (0 = tonic), optional seventh."""

    key: Key
    root: int
    seventh: bool = False

    @property
    def degrees(self) -> tuple[int, ...]:
        tones = [self.root, self.root + 2, self.root + 4] + (
            [self.root + 6] if self.seventh else []
        )
        return tuple(t % 7 for t in tones)

    def alter_for_degree(self, degree: int) -> int:
        """Alteration of a scale degree in this chord: harmonic minor raises 7 in V and vii."""
        letter = (self.key.tonic_letter + degree) % 7
        alter = self.key.signature_alter(letter)
        if self.key.mode == "minor" and degree == 6 and self.root in (4, 6):
            alter += 1
        return alter

    def pitch(self, step: int) -> Pitch:
        return Pitch(step, self.alter_for_degree(self.key.degree_of(step % 7)))

    def tones_in(self, lo: int, hi: int) -> list[Pitch]:
        """Chord tones with steps in [lo, hi], low to high."""
        return [
            self.pitch(s) for s in range(lo, hi + 1) if self.key.degree_of(s % 7) in self.degrees
        ]

    def bass_step(self, lo: int, hi: int) -> int:
        """Step of the chord root in [lo, hi] (lowest one)."""
        for s in range(lo, hi + 1):
            if self.key.degree_of(s % 7) == self.root % 7:
                return s
        return lo

    def scale_pitch(self, step: int) -> Pitch:
        """Any scale step spelled in the key, with the raised leading tone over V in minor."""
        return self.pitch(step)


# --- events -------------------------------------------------------------------------------------
@dataclass
class Event:
    """One rhythmic slot of a layer: a note, a chord (several pitches) or a rest (no pitches)."""

    ticks: int  # sounding duration
    pitches: tuple[Pitch, ...] = ()
    tie: bool = False  # tied to the next event of the layer (same pitches)
    triplet: bool = False  # part of a 3:2 group; written duration is ticks * 3 / 2
    grace: Pitch | None = None  # an acciaccatura before it
    artic: str = ""  # "stacc" | "acc" | ""
    fermata: bool = False
    ids: list[str] = field(default_factory=list)  # filled by the writer, one per pitch


Layer = list[Event]


@dataclass
class Measure:
    """Contents of one measure: layers per staff, and attached control marks."""

    staves: tuple[list[Layer], list[Layer]]
    chords: list[tuple[int, Chord]]  # (tick, chord) harmonic rhythm
    lh_clef: str = "F"  # "F" or "G"
    dynamic: str = ""
    hairpin: str = ""  # "cres" | "dim" spanning to the end of the next measure
    pedal: bool = False
    tempo: tuple[str, int] | None = None
    key_change: Key | None = None
    left: str = ""  # MEI @left barline
    right: str = ""  # MEI @right barline
    slur_start: bool = False
    slur_end: bool = False


@dataclass(frozen=True)
class Meter:
    count: int
    unit: int
    beats: int
    beat_ticks: int
    compound: bool

    @property
    def measure_ticks(self) -> int:
        return self.beats * self.beat_ticks

    def tstamp(self, tick: int) -> str:
        """MEI @tstamp (1-based, in @unit beats) of a tick offset in the measure."""
        unit_ticks = TICKS_PER_QUARTER * 4 // self.unit
        value = 1 + tick / unit_ticks
        return f"{value:g}"


@dataclass(frozen=True)
class GeneratedPiece:
    """A generated score and what is in it (for tests and corpus statistics)."""

    mei: str
    title: str
    composer: str
    key: str
    meter: str
    tempo_bpm: int  # quarter notes per minute at the start
    measures: int
    textures: tuple[str, ...]
    note_ids: tuple[str, ...]  # every written note, grace notes included, in score order
    tied_continuation_ids: tuple[str, ...]  # notes that continue a tie (not new onsets)
    features: frozenset[str]  # "triplet", "tie", "grace", "dynamics", "pedal", "repeat", ...


# --- rhythm helpers -----------------------------------------------------------------------------
def _split_ticks(start: int, ticks: int, beat: int) -> list[int]:
    """Split a duration starting at `start` into writable pieces that respect beat boundaries."""
    out: list[int] = []
    pos, left = start, ticks
    while left > 0:
        for d in sorted(DURATIONS, reverse=True):
            if d > left:
                continue
            # a note longer than a beat starts on a beat; shorter ones stay inside their beat
            if d >= beat and pos % beat != 0:
                continue
            if d < beat and (pos % beat) + d > beat:
                continue
            out.append(d)
            pos += d
            left -= d
            break
        else:
            raise ValueError(f"cannot write {ticks} ticks at {start}")
    return out


SIMPLE_CELLS: dict[str, tuple[tuple[int, ...], ...]] = {  # per 24-tick beat
    "low": ((24,), (24,), (24,), (12, 12)),
    "mid": ((24,), (12, 12), (12, 12), (18, 6), (12, 6, 6), (24,)),
    "high": ((12, 12), (6, 6, 6, 6), (12, 6, 6), (6, 6, 12), (18, 6)),
}
COMPOUND_CELLS: dict[str, tuple[tuple[int, ...], ...]] = {  # per 36-tick beat
    "low": ((36,), (24, 12), (36,)),
    "mid": ((24, 12), (12, 12, 12), (36,), (18, 6, 12)),
    "high": ((12, 12, 12), (6, 6, 12, 12), (12, 6, 6, 12), (18, 6, 12)),
}


# --- the generator ------------------------------------------------------------------------------
class _Composer:
    """Holds the random state and the running decisions of one piece."""

    def __init__(self, seed: int, index: int) -> None:
        self.rng = random.Random(f"sheetaudio-procedural:{GENERATOR_VERSION}:{seed}:{index}")
        self.features: set[str] = set()

    # -- harmony --
    def progression(self, key: Key, slots: int, cadence: str) -> list[Chord]:
        """Functional progression of `slots` chords starting on I and ending in a cadence."""
        rng = self.rng
        tonic, predominant, dominant = (0, 5, 2), (3, 1), (4, 6)
        chords = [Chord(key, 0)]
        function = "T"
        tail = 2 if cadence == "authentic" else 1
        while len(chords) < max(1, slots - tail - 1):
            r = rng.random()
            if function == "T":
                function = "T" if r < 0.25 else ("PD" if r < 0.7 else "D")
            elif function == "PD":
                function = "PD" if r < 0.2 else "D"
            else:
                function = "T" if r < 0.85 else "D"
            if function == "T":
                root = rng.choices(tonic, (3, 2, 0.4))[0]
            elif function == "PD":
                root = rng.choice(predominant)
            else:
                root = rng.choices(dominant, (5, 1))[0]
            chords.append(Chord(key, root, seventh=root == 4 and rng.random() < 0.4))
        if slots - tail - 1 >= 1:
            chords.append(Chord(key, rng.choice((3, 1)), seventh=rng.random() < 0.2))
        chords = chords[: max(1, slots - tail)]
        if cadence == "authentic":
            chords += [Chord(key, 4, seventh=rng.random() < 0.6), Chord(key, 0)]
        else:
            chords += [Chord(key, 4)]
        return (
            chords[:slots]
            if len(chords) >= slots
            else chords + [chords[-1]] * (slots - len(chords))
        )

    # -- melody --
    def melody(
        self,
        meter: Meter,
        harmony: list[list[tuple[int, Chord]]],
        activity: str,
        lo: int,
        hi: int,
        cadence: str,
        start: Pitch | None,
    ) -> list[Layer]:
        """A melody over the phrase's harmony: chord tones on chord changes, steps between."""
        rng = self.rng
        cells = COMPOUND_CELLS if meter.compound else SIMPLE_CELLS
        prev = start or harmony[0][0][1].tones_in((lo + hi) // 2 - 1, (lo + hi) // 2 + 2)[0]
        measures: list[Layer] = []
        for mi, chords in enumerate(harmony):
            last_measure = mi == len(harmony) - 1
            layer: Layer = []
            if last_measure:
                chord = chords[0][1]
                goal_degrees = (0, 2) if cadence == "authentic" else (4, 1, 6)
                cands = [
                    p
                    for p in chord.tones_in(lo, hi)
                    if chord.key.degree_of(p.letter) in goal_degrees
                ]
                note = min(cands or chord.tones_in(lo, hi), key=lambda p: abs(p.step - prev.step))
                hold = meter.measure_ticks
                if meter.beats > 1 and rng.random() < 0.5:
                    hold -= meter.beat_ticks
                for d in _split_ticks(0, hold, meter.beat_ticks):
                    layer.append(Event(d, (note,), tie=True))
                layer[-1].tie = False
                if hold < meter.measure_ticks:
                    layer.append(Event(meter.measure_ticks - hold))
                layer[-1].fermata = cadence == "authentic" and rng.random() < 0.3
                measures.append(layer)
                prev = note
                continue
            rhythm: list[tuple[int, int, bool]] = []  # (start tick, ticks, triplet)
            beat = 0
            while beat < meter.beats:
                beat_start = beat * meter.beat_ticks
                if not meter.compound and activity != "low" and rng.random() < 0.08:
                    rhythm += [(beat_start + 8 * k, 8, True) for k in range(3)]
                    self.features.add("triplet")
                    beat += 1
                    continue
                if (
                    beat + 1 < meter.beats
                    and beat % 2 == 0
                    and activity != "high"
                    and (rng.random() < 0.15)
                ):
                    rhythm.append((beat_start, 2 * meter.beat_ticks, False))
                    beat += 2
                    continue
                t = beat_start
                for d in rng.choice(cells[activity]):
                    rhythm.append((t, d, False))
                    t += d
                beat += 1
            for t, d, trip in rhythm:
                chord = _chord_at(chords, t)
                if t % meter.beat_ticks == 0:
                    tones = chord.tones_in(max(lo, prev.step - 4), min(hi, prev.step + 4))
                    tones = tones or chord.tones_in(lo, hi)
                    weights = [1.0 / (1 + abs(x.step - prev.step)) + 0.05 for x in tones]
                    note = rng.choices(tones, weights)[0]
                else:
                    direction = rng.choice((-1, 1))
                    if not lo <= prev.step + direction <= hi:
                        direction = -direction
                    note = chord.scale_pitch(prev.step + direction)
                ev = Event(d, (note,), triplet=trip)
                if not trip and d >= 24 and rng.random() < 0.05:
                    ev.grace = chord.scale_pitch(note.step + 1)
                    self.features.add("grace")
                elif not trip and d <= 12 and rng.random() < 0.06:
                    ev.artic = "stacc"
                layer.append(ev)
                prev = note
            measures.append(layer)
        # rests: occasionally breathe on a weak beat
        for layer in measures[:-1]:
            if len(layer) > 2 and rng.random() < 0.08:
                i = rng.randrange(1, len(layer))
                if not layer[i].triplet:
                    layer[i] = Event(layer[i].ticks)
                    self.features.add("rest")
        # ties over the barline (suspension-like): repeat the last pitch at the next downbeat
        for a, b in itertools.pairwise(measures):
            if (
                a
                and b
                and a[-1].pitches
                and b[0].pitches
                and not b[0].triplet
                and not a[-1].triplet
            ) and rng.random() < 0.15:
                a[-1].tie = True
                b[0].pitches = a[-1].pitches
                b[0].grace = None
                self.features.add("tie")
        return measures


def _hand_ok(pitches: Sequence[Pitch]) -> tuple[Pitch, ...]:
    """Drop inner notes until a hand can play the chord (span and note count)."""
    ps = sorted(set(pitches), key=lambda p: p.midi)
    uniq: list[Pitch] = []
    for p in ps:
        if not uniq or uniq[-1].midi != p.midi:
            uniq.append(p)
    while len(uniq) > 1 and uniq[-1].midi - uniq[0].midi > MAX_HAND_SPAN_SEMITONES:
        uniq.pop(0)
    while len(uniq) > MAX_HAND_NOTES:
        uniq.pop(1)
    return tuple(uniq)


# --- accompaniment patterns (left hand unless said otherwise) ------------------------------------
def _chord_at(chords: list[tuple[int, Chord]], tick: int) -> Chord:
    return max((c for c in chords if c[0] <= tick), key=lambda c: c[0])[1]


def _lh_pattern(
    kind: str, meter: Meter, chords: list[tuple[int, Chord]], base: int, rng: random.Random
) -> Layer:
    """One measure of a left-hand accompaniment figure; `base` is the lowest step used."""
    layer: Layer = []
    bt = meter.beat_ticks
    sixteenths = rng.random() < 0.6  # Alberti figure speed, one choice per measure
    for beat in range(meter.beats):
        t0 = beat * bt
        ch = _chord_at(chords, t0)
        root = ch.pitch(ch.bass_step(base, base + 6))
        close = [p for p in ch.tones_in(root.step + 1, root.step + 7)][:3]
        fifth = next((p for p in close if p.step == root.step + 4), close[-1] if close else root)
        third = next((p for p in close if p.step == root.step + 2), close[0] if close else root)
        if kind == "alberti":
            if meter.compound:
                layer += [Event(12, (root,)), Event(12, (fifth,)), Event(12, (third,))]
            else:
                fig = (root, fifth, third, fifth)
                if not sixteenths:
                    layer += [Event(12, (fig[beat % 2 * 2],)), Event(12, (fig[1],))]
                else:
                    layer += [Event(6, (p,)) for p in fig]
        elif kind == "broken_chord":
            octave = Pitch(root.step + 7, root.alter)
            if meter.compound:
                layer += [Event(12, (root,)), Event(12, (fifth,)), Event(12, (octave,))]
            elif rng.random() < 0.25:
                layer += [Event(8, (root,), triplet=True), Event(8, (fifth,), triplet=True)]
                layer += [Event(8, (octave,), triplet=True)]
            else:
                layer += (
                    [Event(12, (root,)), Event(12, (fifth,))]
                    if beat % 2 == 0
                    else [
                        Event(12, (octave,)),
                        Event(12, (fifth,)),
                    ]
                )
        elif kind == "waltz":
            if beat == 0:
                layer.append(Event(bt, (root,)))
            else:
                layer.append(Event(bt, _hand_ok(close), artic="stacc"))
        elif kind == "oompah":
            if beat % 2 == 0:
                layer.append(Event(bt, (root, Pitch(root.step + 7, root.alter))))
            else:
                layer.append(Event(bt, _hand_ok(close), artic="stacc"))
        elif kind == "repeated":
            n = 3 if meter.compound else 2
            layer += [Event(bt // n, _hand_ok(close)) for _ in range(n)]
        elif kind == "octaves":
            layer.append(Event(bt, (Pitch(root.step - 7, root.alter), root)))
        elif kind == "block":
            layer.append(Event(bt, _hand_ok((root, *close))))
        elif kind == "bassline":
            if beat == 0 or t0 in (c[0] for c in chords):
                layer.append(Event(bt, (root,)))
            else:
                prev = layer[-1].pitches[0] if layer and layer[-1].pitches else root
                layer.append(Event(bt, (ch.scale_pitch(prev.step + rng.choice((-1, 1, 2))),)))
        else:
            raise ValueError(kind)
    if kind in ("block", "octaves", "bassline"):
        layer = _merge_repeats(layer, meter)
    return layer


def _writable(layer: Layer, meter: Meter) -> Layer:
    """Split events whose length has no single note value into tied pieces."""
    out: Layer = []
    tick = 0
    for ev in layer:
        pieces = (
            _split_ticks(tick, ev.ticks, meter.beat_ticks)
            if ev.ticks not in DURATIONS
            else [ev.ticks]
        )
        for k, d in enumerate(pieces):
            last = k == len(pieces) - 1
            out.append(
                Event(
                    d,
                    ev.pitches,
                    ev.tie if last else bool(ev.pitches),
                    ev.triplet,
                    ev.grace if k == 0 else None,
                    ev.artic,
                )
            )
        tick += ev.ticks
    return out


def _merge_repeats(layer: Layer, meter: Meter) -> Layer:
    """Join equal consecutive sounds into longer notes where a single value can be written."""
    out: Layer = []
    tick = 0
    for ev in layer:
        if (
            out
            and out[-1].pitches == ev.pitches
            and ev.pitches
            and (out[-1].ticks + ev.ticks) in DURATIONS
            and (tick - out[-1].ticks) % meter.beat_ticks == 0
            and len(_split_ticks(tick - out[-1].ticks, out[-1].ticks + ev.ticks, meter.beat_ticks))
            == 1
        ):
            out[-1] = Event(out[-1].ticks + ev.ticks, ev.pitches)
        else:
            out.append(Event(ev.ticks, ev.pitches, triplet=ev.triplet, artic=ev.artic))
        tick += ev.ticks
    return out


def _rh_arpeggio(meter: Meter, chords: list[tuple[int, Chord]], base: int) -> Layer:
    """Right-hand sixteenth (or compound eighth) arpeggios rising through the chord."""
    layer: Layer = []
    per_beat = 3 if meter.compound else 4
    d = meter.beat_ticks // per_beat
    for beat in range(meter.beats):
        ch = _chord_at(chords, beat * meter.beat_ticks)
        tones = ch.tones_in(base, base + 12)
        seq = tones[:per_beat] if beat % 2 == 0 else tones[1 : per_beat + 1]
        while len(seq) < per_beat:
            seq.append(tones[-1])
        layer += [Event(d, (p,)) for p in seq]
    return layer


# --- piece assembly ------------------------------------------------------------------------------
def _tempo_for(rng: random.Random, meter: Meter, texture: str) -> tuple[str, int]:
    if texture == "waltz":
        return "Tempo di valse", rng.randrange(138, 172, 2)
    word, lo, hi = rng.choice([t for t in TEMPO_WORDS if t[0] != "Tempo di valse"])
    return word, rng.randrange(lo, hi + 1, 2)


def _texture_allowed(texture: str, meter: Meter) -> bool:
    if texture == "waltz":
        return meter.count == 3 and meter.unit == 4
    if texture == "alberti":
        return not meter.compound or meter.count in (6, 12)
    return True


def generate_piece(seed: int, index: int) -> GeneratedPiece:
    """The piece number `index` of the stream for `seed`; the same arguments give the same text."""
    comp = _Composer(seed, index)
    rng = comp.rng
    count, unit, beats, beat_ticks, compound, _ = rng.choices(METERS, [m[5] for m in METERS])[0]
    meter = Meter(count, unit, beats, beat_ticks, compound)
    home = Key(rng.randint(-7, 7), rng.choice(("major", "minor")))
    main_texture = rng.choice([t for t in TEXTURES if _texture_allowed(t, meter)])
    if meter.count == 3 and meter.unit == 4 and rng.random() < 0.3:
        main_texture = "waltz"
    phrase_len = 4 if meter.measure_ticks >= 96 or rng.random() < 0.5 else 8
    tempo = _tempo_for(rng, meter, main_texture)
    seconds_per_measure = meter.measure_ticks / TICKS_PER_QUARTER * 60.0 / tempo[1]
    target = round(rng.triangular(MIN_MEASURES, MAX_MEASURES, 32))
    target = min(target, max(MIN_MEASURES, int(TARGET_MAX_SECONDS / seconds_per_measure)))
    n_phrases = max(4, round(target / phrase_len))
    # form: A (maybe repeated, maybe with endings) B (other key, other texture) A'
    a_phrases = max(2, n_phrases // 3)
    b_phrases = max(1, (n_phrases - a_phrases) // 2)
    c_phrases = max(1, n_phrases - a_phrases - b_phrases)
    repeat_a = rng.random() < 0.45
    endings = repeat_a and rng.random() < 0.5
    modulate = rng.random() < 0.7
    key_change = modulate and rng.random() < 0.35
    if home.mode == "major":
        b_key = Key(home.fifths + 1, "major") if rng.random() < 0.7 else Key(home.fifths, "minor")
    else:
        b_key = Key(home.fifths, "major") if rng.random() < 0.7 else Key(home.fifths - 1, "minor")
    if abs(b_key.fifths) > 7:
        b_key = Key(home.fifths, "minor" if home.mode == "major" else "major")
    if not modulate:
        b_key = home
    key_change = key_change and b_key.fifths != home.fifths
    b_texture = rng.choice([t for t in TEXTURES if _texture_allowed(t, meter)])
    if rng.random() < 0.4:
        b_texture = main_texture
    textures_used: list[str] = []

    plan: list[tuple[str, Key, str, int]] = []  # (section, key, texture, phrase index in section)
    plan += [("A", home, main_texture, i) for i in range(a_phrases)]
    plan += [("B", b_key, b_texture, i) for i in range(b_phrases)]
    plan += [("C", home, main_texture, i) for i in range(c_phrases)]

    measures: list[Measure] = []
    section_of: list[str] = []
    last_melody: Pitch | None = None
    dynamics_cycle = {"A": ("p", "mf", "mp"), "B": ("f", "mf", "ff", "p"), "C": ("p", "mf", "f")}
    for pi, (section, key, texture, k) in enumerate(plan):
        last_of_section = pi + 1 == len(plan) or plan[pi + 1][0] != section
        cadence = "authentic" if last_of_section or k % 2 == 1 else "half"
        if section == "B" and key != home and last_of_section:
            # lead back: the last phrase of B ends on the home dominant
            key, cadence = home, "half"
        harm_per_measure = 2 if meter.beats % 2 == 0 and rng.random() < 0.5 else 1
        if texture == "chorale":
            harm_per_measure = meter.beats
        slots = phrase_len * harm_per_measure
        prog = comp.progression(key, slots, cadence)
        # the last measure holds one harmony: I after V(7), or V for a half cadence
        for j in range(1, harm_per_measure + 1):
            prog[-j] = Chord(key, 0) if cadence == "authentic" else Chord(key, 4)
        if cadence == "authentic":
            prog[-harm_per_measure - 1] = Chord(key, 4, seventh=rng.random() < 0.6)
        step_ticks = meter.measure_ticks // harm_per_measure
        harmony = [
            [(j * step_ticks, prog[m * harm_per_measure + j]) for j in range(harm_per_measure)]
            for m in range(phrase_len)
        ]
        high_lh = (
            section == "B"
            and texture in ("alberti", "broken_chord", "waltz")
            and rng.random() < 0.35
        )
        shift = 7 if high_lh else 0
        if texture not in textures_used:
            textures_used.append(texture)
        staves = _texture_phrase(comp, texture, meter, harmony, cadence, last_melody, shift)
        for m in range(phrase_len):
            rh, lh = staves[0][m], staves[1][m]
            measures.append(Measure((rh, lh), harmony[m], lh_clef="G" if high_lh else "F"))
            section_of.append(section)
        mel = [e for layer in staves[0][-1][:1] for e in layer if e.pitches]
        last_melody = mel[-1].pitches[-1] if mel else None
        first = measures[-phrase_len]
        if k == 0 or rng.random() < 0.35:
            first.dynamic = rng.choice(dynamics_cycle[section])
        if rng.random() < 0.3:
            measures[-phrase_len + rng.randrange(phrase_len - 1)].hairpin = rng.choice(
                ("cres", "dim")
            )
        if texture in ("alberti", "broken_chord", "arpeggio", "waltz", "melody_accompaniment") and (
            rng.random() < 0.7
        ):
            for mm in measures[-phrase_len:]:
                mm.pedal = True
        if texture not in ("chorale",) and rng.random() < 0.6:
            first.slur_start = True
            measures[-1].slur_end = True
        if section == "B" and k == 0 and key_change:
            first.key_change = b_key
            if measures[-phrase_len - 1 : -phrase_len]:
                measures[-phrase_len - 1].right = "dbl"
        if section == "C" and k == 0 and key_change:
            first.key_change = home
            if not measures[-phrase_len - 1].right:
                measures[-phrase_len - 1].right = "dbl"
        if section == "B" and k == 0 and rng.random() < 0.2:
            first.tempo = (rng.choice(("Più mosso", "Meno mosso", "Poco più lento")), 0)

    measures[0].tempo = tempo
    measures[-1].right = "end"
    a_len = a_phrases * phrase_len
    if repeat_a:
        measures[0].left = "rptstart" if rng.random() < 0.3 else ""
        measures[a_len - 1].right = "rptend"
        comp.features.add("repeat")
    if measures[0].dynamic == "":
        measures[0].dynamic = "mf"
    mei, note_ids, continuations, feats = _write_mei(
        comp, meter, home, measures, a_len if repeat_a else 0, endings, phrase_len, tempo
    )
    comp.features |= feats
    comp.features.update(f"texture:{t}" for t in textures_used)
    mode_title = home.name()
    kind = {
        "waltz": "Waltz",
        "chorale": "Chorale",
        "counterpoint2": "Invention",
        "counterpoint3": "Sinfonia",
        "arpeggio": "Prelude",
        "alberti": "Sonatina",
        "broken_chord": "Étude",
        "octaves": "Study in Octaves",
        "repeated_chords": "Nocturne",
        "melody_accompaniment": "Song without Words",
    }[main_texture]
    title = f"{kind} in {mode_title.replace('-', '-')} (No. {index + 1})"
    composer = "sheetaudio generator"
    mei = mei.replace("@@TITLE@@", escape(title)).replace("@@COMPOSER@@", escape(composer))
    return GeneratedPiece(
        mei=mei,
        title=title,
        composer=composer,
        key=home.name(),
        meter=f"{meter.count}/{meter.unit}",
        tempo_bpm=tempo[1],
        measures=len(measures),
        textures=tuple(textures_used),
        note_ids=tuple(note_ids),
        tied_continuation_ids=tuple(continuations),
        features=frozenset(comp.features),
    )


def _texture_phrase(
    comp: _Composer,
    texture: str,
    meter: Meter,
    harmony: list[list[tuple[int, Chord]]],
    cadence: str,
    start: Pitch | None,
    shift: int,
) -> tuple[list[list[Layer]], list[list[Layer]]]:
    """Right- and left-hand layers, per measure, of one phrase in one texture."""
    rng = comp.rng
    c4 = C4_STEP
    n = len(harmony)
    rh: list[list[Layer]] = [[] for _ in range(n)]
    lh: list[list[Layer]] = [[] for _ in range(n)]
    mel_lo, mel_hi = c4 + 3 + shift, c4 + 11 + shift

    def lh_fig(kind: str, base: int) -> None:
        for m in range(n):
            lh[m].append(_lh_pattern(kind, meter, harmony[m], base + shift, rng))

    if texture == "chorale":
        sop = comp.melody(meter, harmony, "low", c4 + 2, c4 + 9, cadence, start)
        alto: list[Layer] = []
        ten: list[Layer] = []
        bass: list[Layer] = []
        prev_a, prev_t = c4 + 1, c4 - 3
        for m in range(n):
            la: Layer = []
            lt: Layer = []
            lb: Layer = []
            tick = 0
            for ev in sop[m]:
                if tick % meter.beat_ticks == 0 or not la:
                    ch = _chord_at(harmony[m], tick)
                    s = ev.pitches[0].step if ev.pitches else c4 + 5
                    b = ch.pitch(ch.bass_step(c4 - 12, c4 - 6))
                    t_c = ch.tones_in(max(b.step + 2, c4 - 7), min(s - 2, c4 + 1))
                    t = min(t_c or [ch.pitch(c4 - 3)], key=lambda p: abs(p.step - prev_t))
                    a_c = ch.tones_in(max(t.step + 1, s - 7, c4 - 3), s - 1) or [t]
                    a = min(a_c, key=lambda p: abs(p.step - prev_a))
                    prev_a, prev_t = a.step, t.step
                    la.append(Event(ev.ticks, (a,)))
                    lt.append(Event(ev.ticks, (t,)))
                    lb.append(Event(ev.ticks, (b,)))
                else:
                    for lay in (la, lt, lb):
                        lay[-1].ticks += ev.ticks
                tick += ev.ticks
            for lay in (la, lt, lb):
                lay[:] = _merge_repeats(_writable(lay, meter), meter)
            alto.append(la)
            ten.append(lt)
            bass.append(lb)
        for m in range(n):
            rh[m] = [sop[m], alto[m]]
            lh[m] = [ten[m], bass[m]]
        return rh, lh

    activity = {
        "alberti": "mid",
        "broken_chord": "mid",
        "melody_accompaniment": "mid",
        "counterpoint2": "high",
        "counterpoint3": "mid",
        "octaves": "low",
        "repeated_chords": "mid",
        "waltz": "mid",
        "arpeggio": "low",
    }[texture]
    if texture == "arpeggio":
        for m in range(n):
            rh[m].append(_rh_arpeggio(meter, harmony[m], c4 + 2 + shift))
        lh_fig("octaves" if rng.random() < 0.5 else "block", c4 - 10)
        return rh, lh
    mel = comp.melody(meter, harmony, activity, mel_lo, mel_hi, cadence, start)
    if texture == "octaves":
        for m in range(n):
            rh[m].append([_with_octave(e) for e in mel[m]])
        lh_fig("octaves", c4 - 7)
        return rh, lh
    for m in range(n):
        rh[m].append(mel[m])
    if texture == "alberti":
        lh_fig("alberti", c4 - 7)
    elif texture == "broken_chord":
        lh_fig("broken_chord", c4 - 12)
    elif texture == "waltz":
        lh_fig("waltz", c4 - 10)
    elif texture == "repeated_chords":
        lh_fig("repeated", c4 - 6)
    elif texture == "melody_accompaniment":
        lh_fig(rng.choice(("block", "oompah" if not meter.compound else "block")), c4 - 9)
    elif texture == "counterpoint2":
        lower = comp.melody(meter, harmony, "mid", c4 - 9, c4 - 2, cadence, None)
        for m in range(n):
            lh[m].append(lower[m])
    elif texture == "counterpoint3":
        inner = comp.melody(meter, harmony, "low", c4 - 1, mel_lo - 1, cadence, None)
        bassline = [_lh_pattern("bassline", meter, harmony[m], c4 - 11, rng) for m in range(n)]
        for m in range(n):
            inner[m] = _below(inner[m], mel[m])
            rh[m].append(inner[m])
            lh[m].append(bassline[m])
    else:
        raise ValueError(texture)
    return rh, lh


def _below(lower: Layer, upper: Layer) -> Layer:
    """Keep an inner voice under the melody: notes that would cross it drop an octave."""
    out: Layer = []
    for ev in lower:
        if ev.pitches and any(u.pitches and u.pitches[0].step <= ev.pitches[0].step for u in upper):
            p = ev.pitches[0]
            ev = Event(ev.ticks, (Pitch(p.step - 7, p.alter),), ev.tie, ev.triplet, None, ev.artic)
        out.append(ev)
    # an octave drop breaks ties whose partners did not drop: drop the tie instead
    for a, b in itertools.pairwise(out):
        if a.tie and a.pitches != b.pitches:
            a.tie = False
    return out


def _with_octave(ev: Event) -> Event:
    if not ev.pitches:
        return ev
    p = ev.pitches[0]
    return Event(ev.ticks, (Pitch(p.step - 7, p.alter), p), ev.tie, ev.triplet, ev.grace, ev.artic)


# --- MEI writer ---------------------------------------------------------------------------------
def _write_mei(
    comp: _Composer,
    meter: Meter,
    home: Key,
    measures: list[Measure],
    repeat_len: int,
    endings: bool,
    phrase_len: int,
    tempo: tuple[str, int],
) -> tuple[str, list[str], list[str], set[str]]:
    """Serialise the measures; returns (mei, note ids, tied continuation ids, features)."""
    counter = [0]
    note_ids: list[str] = []
    continuations: list[str] = []
    feats: set[str] = set()

    def new_id(prefix: str = "n") -> str:
        counter[0] += 1
        return f"{prefix}{counter[0]}"

    key = home
    body: list[str] = []
    # staff*10+layer -> (ids awaiting a tie end, control list of the measure the tie starts in)
    pending_ties: dict[int, tuple[list[str], list[str]]] = {}
    pending_pitches: dict[int, tuple[Pitch, ...]] = {}
    slur_from: tuple[str, list[str]] | None = None
    clef = {1: "G", 2: "F"}
    unit_ticks = TICKS_PER_QUARTER * 4 // meter.unit

    sections: list[tuple[str, list[str]]] = []  # (kind, measure xml)
    ending1_len = phrase_len if endings and repeat_len > phrase_len else 0

    for mi, meas in enumerate(measures):
        out: list[str] = []
        if meas.key_change is not None:
            key = meas.key_change
            out.append(f'<scoreDef key.sig="{key.mei_sig()}"/>')
            feats.add("key_change")
        attrs = f' n="{mi + 1}"'
        if meas.left:
            attrs += f' left="{meas.left}"'
        if meas.right:
            attrs += f' right="{meas.right}"'
        out.append(f"<measure{attrs}>")
        controls: list[str] = []
        first_ids: dict[int, str] = {}
        last_ids: dict[int, str] = {}
        for si, layers in enumerate(meas.staves, start=1):
            out.append(f'<staff n="{si}">')
            accid_state: dict[int, int] = {}
            want_clef = "G" if si == 1 else meas.lh_clef
            for li, layer in enumerate(layers, start=1):
                out.append(f'<layer n="{li}">')
                if li == 1 and clef[si] != want_clef:
                    shape, line = ("G", 2) if want_clef == "G" else ("F", 4)
                    out.append(f'<clef shape="{shape}" line="{line}"/>')
                    clef[si] = want_clef
                    feats.add("clef_change")
                slot = si * 10 + li
                tick = 0
                i = 0
                while i < len(layer):
                    ev = layer[i]
                    if ev.triplet:
                        group = layer[i : i + 3]
                        feats.add("triplet")
                        out.append('<tuplet num="3" numbase="2" bracket.visible="false">')
                        out.append(
                            "<beam>" if all(e.ticks <= 8 and e.pitches for e in group) else ""
                        )
                        for e in group:
                            out.append(
                                _event_xml(
                                    e,
                                    e.ticks * 3 // 2,
                                    key,
                                    accid_state,
                                    slot,
                                    new_id,
                                    pending_ties,
                                    pending_pitches,
                                    note_ids,
                                    continuations,
                                    controls,
                                    feats,
                                )
                            )
                        out.append(
                            "</beam>" if all(e.ticks <= 8 and e.pitches for e in group) else ""
                        )
                        out.append("</tuplet>")
                        for e in group:
                            _track(e, si, li, first_ids, last_ids)
                        tick += sum(e.ticks for e in group)
                        i += 3
                        continue
                    # beam run: short notes inside one beat
                    beat = tick // meter.beat_ticks
                    run = [ev]
                    j = i + 1
                    t = tick + ev.ticks
                    while (
                        j < len(layer)
                        and ev.ticks < 24
                        and ev.pitches
                        and layer[j].pitches
                        and layer[j].ticks < 24
                        and not layer[j].triplet
                        and layer[j].grace is None
                        and t // meter.beat_ticks == beat
                    ):
                        run.append(layer[j])
                        t += layer[j].ticks
                        j += 1
                    beamed = len(run) > 1 and all(e.ticks < 24 and e.pitches for e in run)
                    if not beamed:
                        run = [ev]
                    if beamed:
                        out.append("<beam>")
                    for e in run:
                        for d in (
                            _split_ticks(tick % meter.measure_ticks, e.ticks, meter.beat_ticks)
                            if (e.ticks not in DURATIONS)
                            else [e.ticks]
                        ):
                            part = Event(d, e.pitches, e.tie, False, e.grace, e.artic, e.fermata)
                            out.append(
                                _event_xml(
                                    part,
                                    d,
                                    key,
                                    accid_state,
                                    slot,
                                    new_id,
                                    pending_ties,
                                    pending_pitches,
                                    note_ids,
                                    continuations,
                                    controls,
                                    feats,
                                )
                            )
                            e.ids = part.ids
                            if d != e.ticks and e.pitches:
                                # an unwritable value becomes tied pieces
                                pass
                        _track(e, si, li, first_ids, last_ids)
                        tick += e.ticks
                    if beamed:
                        out.append("</beam>")
                    i += len(run)
                if tick != meter.measure_ticks:
                    raise AssertionError(f"measure {mi + 1} staff {si} layer {li}: {tick} ticks")
                out.append("</layer>")
            out.append("</staff>")
        # control events
        if meas.tempo is not None:
            word, bpm = meas.tempo
            if bpm:
                mm_unit, mm_dots = (4, 1) if meter.compound else (4, 0)
                mm = round(bpm * 2 / 3) if meter.compound else bpm
                glyph = "&#xE1D5;" + ("&#xE1E7;" if mm_dots else "")
                out_text = f'{escape(word)} <rend glyph.auth="smufl">{glyph}</rend> = {mm}'
                controls.append(
                    f'<tempo tstamp="1" staff="1" place="above" mm="{mm}" mm.unit="{mm_unit}"'
                    + (f' mm.dots="{mm_dots}"' if mm_dots else "")
                    + f">{out_text}</tempo>"
                )
            else:
                controls.append(f'<tempo tstamp="1" staff="1" place="above">{escape(word)}</tempo>')
            feats.add("tempo")
        if meas.dynamic:
            controls.append(f'<dynam tstamp="1" staff="1" place="below">{meas.dynamic}</dynam>')
            feats.add("dynamics")
        if meas.hairpin:
            end = f"1m+{meter.count:g}"
            controls.append(
                f'<hairpin form="{meas.hairpin}" tstamp="1.5" tstamp2="{end}" staff="1" '
                'place="below"/>'
            )
            feats.add("hairpin")
        if meas.pedal:
            changes = sorted({t for t, _ in meas.chords})
            for a, b in zip(changes, [*changes[1:], meter.measure_ticks], strict=False):
                controls.append(f'<pedal tstamp="{meter.tstamp(a)}" staff="2" dir="down"/>')
                up = b - unit_ticks // 4
                controls.append(f'<pedal tstamp="{meter.tstamp(up)}" staff="2" dir="up"/>')
            feats.add("pedal")
        if meas.slur_start and 11 in first_ids:
            slur_from = (first_ids[11], controls)
        if (
            meas.slur_end
            and slur_from is not None
            and 11 in last_ids
            and (last_ids[11] != slur_from[0])
        ):
            slur_from[1].append(
                f'<slur startid="#{slur_from[0]}" endid="#{last_ids[11]}" curvedir="above"/>'
            )
            slur_from = None
            feats.add("slur")
        # controls stays a live list: ties and slurs that start here are added when they end
        out.append(controls)  # type: ignore[arg-type]
        out.append("</measure>")
        if (mi == 0 and repeat_len == 0) or (mi > 0 and not sections):
            pass
        kind = "A" if mi < repeat_len - ending1_len else ("E1" if mi < repeat_len else "B")
        if ending1_len and repeat_len <= mi < repeat_len + ending1_len:
            kind = "E2"
        if not sections or sections[-1][0] != kind:
            sections.append((kind, []))
        sections[-1][1].append(out)  # type: ignore[arg-type]

    if ending1_len:
        # the first ending carries the repeat sign, the second ending follows it
        feats.add("endings")
    sec_xml: list[str] = []
    plist: list[str] = []
    for kind, ms in sections:
        sid = f"sec{kind}"
        text = "\n".join(_flatten(m) for m in ms)
        if kind in ("E1", "E2"):
            sec_xml.append(f'<ending xml:id="{sid}" n="{kind[1]}">{text}</ending>')
        else:
            sec_xml.append(f'<section xml:id="{sid}">{text}</section>')
    kinds = [k for k, _ in sections]
    if repeat_len:
        if ending1_len:
            order = ["A", "E1", "A", "E2"] + [k for k in kinds if k == "B"]
        else:
            order = ["A", "A"] + [k for k in kinds if k == "B"]
        plist = [f"#sec{k}" for k in order]
    expansion = f'<expansion xml:id="expansion1" plist="{" ".join(plist)}"/>' if plist else ""
    body.append("<section>" + expansion + "\n".join(sec_xml) + "</section>")

    meter_attrs = f'meter.count="{meter.count}" meter.unit="{meter.unit}"'
    if meter.count == 2 and meter.unit == 2 and comp.rng.random() < 0.5:
        meter_attrs += ' meter.sym="cut"'
    elif meter.count == 4 and meter.unit == 4 and comp.rng.random() < 0.3:
        meter_attrs += ' meter.sym="common"'
    mei = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<mei xmlns="http://www.music-encoding.org/ns/mei" meiversion="5.0">'
        "<meiHead><fileDesc><titleStmt><title>@@TITLE@@</title>"
        '<respStmt><persName role="composer">@@COMPOSER@@</persName></respStmt>'
        "</titleStmt><pubStmt><availability><licence>CC0</licence></availability></pubStmt>"
        "</fileDesc></meiHead>"
        "<music><body><mdiv><score>"
        f'<scoreDef {meter_attrs} key.sig="{home.mei_sig()}">'
        '<staffGrp symbol="brace" bar.thru="true">'
        '<staffDef n="1" lines="5" clef.shape="G" clef.line="2"/>'
        '<staffDef n="2" lines="5" clef.shape="F" clef.line="4"/>'
        "</staffGrp></scoreDef>\n" + "\n".join(body) + "\n</score></mdiv></body></music></mei>\n"
    )
    return mei, note_ids, continuations, feats


def _flatten(parts: list[str | list[str]]) -> str:
    return "\n".join(x if isinstance(x, str) else "\n".join(x) for x in parts if x)


def _track(ev: Event, si: int, li: int, first: dict[int, str], last: dict[int, str]) -> None:
    if ev.ids:
        first.setdefault(si * 10 + li, ev.ids[-1])
        last[si * 10 + li] = ev.ids[-1]


def _event_xml(
    ev: Event,
    written: int,
    key: Key,
    accid_state: dict[int, int],
    slot: int,
    new_id: Callable[..., str],
    pending_ties: dict[int, tuple[list[str], list[str]]],
    pending_pitches: dict[int, tuple[Pitch, ...]],
    note_ids: list[str],
    continuations: list[str],
    controls: list[str],
    feats: set[str],
) -> str:
    """MEI for one event (note, chord or rest) with accidentals, ties and grace note."""
    if written not in DURATIONS:
        raise ValueError(f"unwritable duration {written}")
    dur, dots = DURATIONS[written]
    dur_attrs = f'dur="{dur}"' + (f' dots="{dots}"' if dots else "")
    if not ev.pitches:
        pending_ties.pop(slot, None)
        return f"<rest {dur_attrs}/>"
    parts: list[str] = []
    continuing = pending_ties.pop(slot, None)
    prev_pitches = pending_pitches.pop(slot, ())
    is_cont = continuing is not None and prev_pitches == ev.pitches
    if ev.grace is not None and not is_cont:
        gid = new_id("g")
        note_ids.append(gid)
        parts.append(
            f'<note xml:id="{gid}" grace="unacc" stem.mod="1slash" dur="8" '
            + _pitch_attrs(ev.grace, key, accid_state, False)
            + "/>"
        )
        feats.add("grace")
    ids: list[str] = []
    notes: list[str] = []
    for p in ev.pitches:
        nid = new_id()
        ids.append(nid)
        note_ids.append(nid)
        notes.append(f'<note xml:id="{nid}" ' + _pitch_attrs(p, key, accid_state, is_cont))
    if is_cont and continuing is not None:
        start_ids, start_controls = continuing
        for a, b in zip(start_ids, ids, strict=False):
            start_controls.append(f'<tie startid="#{a}" endid="#{b}"/>')
            continuations.append(b)
        feats.add("tie")
    if ev.tie:
        pending_ties[slot] = (ids, controls)
        pending_pitches[slot] = ev.pitches
    ev.ids = ids
    artic = f' artic="{ev.artic}"' if ev.artic else ""
    if ev.fermata:
        controls.append(f'<fermata startid="#{ids[0]}" place="above"/>')
    if len(notes) == 1:
        parts.append(notes[0] + f" {dur_attrs}{artic}/>")
    else:
        parts.append(f"<chord {dur_attrs}{artic}>" + "".join(n + "/>" for n in notes) + "</chord>")
    return "".join(parts)


def _pitch_attrs(p: Pitch, key: Key, accid_state: dict[int, int], continuation: bool) -> str:
    """pname/oct and the accidental to print (or only the sounding one) given the bar so far."""
    attrs = f'pname="{LETTERS[p.letter]}" oct="{p.octave}"'
    current = accid_state.get(p.step, key.signature_alter(p.letter))
    names = {-2: "ff", -1: "f", 0: "n", 1: "s", 2: "x"}
    gestural = {-2: "ff", -1: "f", 0: "n", 1: "s", 2: "ss"}
    if p.alter != current and not continuation:
        attrs += f' accid="{names[p.alter]}"'
        accid_state[p.step] = p.alter
    elif p.alter != 0:
        attrs += f' accid.ges="{gestural[p.alter]}"'
    return attrs
