"""Engrave a symbolic score with verovio and read back where every notehead is and when it sounds.

One call of `engrave` gives, for one layout drawn at random (`choose_layout`), the rasterised pages
with notehead and staff-system boxes in pixels, and the list of notes as the score plays them
(`ScoreNote`, score time at the encoded tempo, repeats and voltas expanded by verovio's generated
expansion, ties merged into one sounding note). `check_alignment` then decides whether noteheads
and played notes match one to one; the performance (`perform.py`) maps score time to audio time.

Pixel geometry: verovio is run at `scale` 100, so one SVG unit is one MEI unit (0.1 mm) and the
distance between staff lines is `2 * unit` SVG units; the page is rasterised with pymupdf at zoom
`staff_space_px / (2 * unit)`.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pymupdf

from sheetaudio_gui import config

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels, origin top-left

_REND_SUFFIX = re.compile(r"-rend(\d+)$")


class EngravingFailed(Exception):
    """Verovio could not load or lay out a source; the piece is dropped with this reason."""


@dataclass(frozen=True)
class Layout:
    """Everything drawn at random about how one piece looks on paper."""

    music_font: str
    page_name: str
    page_width_mm: float
    page_height_mm: float
    unit: float  # verovio unit: half a staff space, in 0.1 mm; sets the music size on the page
    staff_space_px: float  # staff-line distance on the rasterised page
    breaks: str  # verovio `breaks`: auto | smart | encoded
    spacing_system: int
    spacing_staff: int
    spacing_linear: float
    spacing_non_linear: float
    margin: int  # page margins, 0.1 mm
    id_seed: int  # verovio xmlIdSeed: same seed, same element ids

    @property
    def zoom(self) -> float:
        """Pixels per SVG unit."""
        return self.staff_space_px / (2.0 * self.unit)

    def verovio_options(self) -> dict[str, Any]:
        return {
            "font": self.music_font,
            "pageWidth": round(self.page_width_mm * 10),
            "pageHeight": round(self.page_height_mm * 10),
            "pageMarginLeft": self.margin,
            "pageMarginRight": self.margin,
            "pageMarginTop": self.margin,
            "pageMarginBottom": self.margin,
            "scale": 100,
            "unit": self.unit,
            "breaks": self.breaks,
            "spacingSystem": self.spacing_system,
            "spacingStaff": self.spacing_staff,
            "spacingLinear": self.spacing_linear,
            "spacingNonLinear": self.spacing_non_linear,
            "header": "auto",
            "footer": "none",
            "xmlIdSeed": self.id_seed,
        }


def choose_layout(
    rng: np.random.Generator, fonts: Sequence[str], has_encoded_breaks: bool
) -> Layout:
    """Draw a page size, music size, spacing and break mode; `fonts` are the allowed music fonts."""
    name, width, height = config.CORPUS_PAGE_SIZES_MM[
        int(rng.integers(len(config.CORPUS_PAGE_SIZES_MM)))
    ]
    lo, hi = config.CORPUS_STAFF_SPACE_PX
    jitter = config.CORPUS_STAFF_SPACE_JITTER
    staff_space = float(rng.uniform(lo, hi) * rng.uniform(1 - jitter, 1 + jitter))
    if has_encoded_breaks and rng.random() < config.CORPUS_ENCODED_BREAKS_PROBABILITY:
        breaks = "encoded"
    else:
        breaks = "smart" if rng.random() < 0.3 else "auto"
    return Layout(
        music_font=str(fonts[int(rng.integers(len(fonts)))]),
        page_name=name,
        page_width_mm=width,
        page_height_mm=height,
        unit=round(float(rng.uniform(*config.CORPUS_VEROVIO_UNIT_RANGE)), 2),
        staff_space_px=round(staff_space, 3),
        breaks=breaks,
        spacing_system=int(rng.integers(*config.CORPUS_SPACING_SYSTEM_RANGE, endpoint=True)),
        spacing_staff=int(rng.integers(*config.CORPUS_SPACING_STAFF_RANGE, endpoint=True)),
        spacing_linear=round(float(rng.uniform(*config.CORPUS_SPACING_LINEAR_RANGE)), 3),
        spacing_non_linear=round(float(rng.uniform(*config.CORPUS_SPACING_NONLINEAR_RANGE)), 3),
        margin=int(rng.integers(*config.CORPUS_PAGE_MARGIN_RANGE, endpoint=True)),
        id_seed=int(rng.integers(1, 2**31 - 1)),
    )


def has_encoded_breaks(data: str) -> bool:
    """Whether a MusicXML/MEI text carries system breaks that `breaks: encoded` would follow."""
    return 'new-system="yes"' in data or "<sb" in data


@dataclass(frozen=True)
class StaffLines:
    lines_y: tuple[float, ...]  # y of each staff line, top to bottom, px
    x0: float
    x1: float


@dataclass(frozen=True)
class PageSystem:
    box: Box
    staves: tuple[StaffLines, ...]


@dataclass(frozen=True)
class PageNotehead:
    note_id: str  # verovio id of the <note>
    box: Box
    system: int  # index of the system on its page


@dataclass(frozen=True)
class EngravedPage:
    index: int
    png: bytes  # grayscale PNG
    width_px: int
    height_px: int
    systems: tuple[PageSystem, ...]
    noteheads: tuple[PageNotehead, ...]


@dataclass(frozen=True)
class ScoreNote:
    """One sounding note as the score plays it (score time at the encoded tempo, s).

    `note_id` is the notehead that starts it; `occurrence` counts plays of that notehead (2 = the
    second time through a repeat). Tied continuations are merged into the note (longer offset).
    """

    note_id: str
    occurrence: int
    pitch: int  # MIDI
    onset_s: float
    offset_s: float
    measure_order: int  # document order of the measure holding the onset (repeat jumps go back)


@dataclass(frozen=True)
class Engraving:
    layout: Layout
    pages: tuple[EngravedPage, ...]
    notes: tuple[ScoreNote, ...]  # sorted by onset
    tie_continuations: frozenset[str]  # noteheads that continue a tie: drawn, not struck
    fermata_ids: frozenset[str]  # noteheads carrying a fermata (phrase ends)
    measure_onsets_s: tuple[float, ...]  # score time of every played measure start


@functools.lru_cache(maxsize=1)
def _toolkit() -> Any:
    """One verovio toolkit per process: loading its fonts costs more than a small piece."""
    import verovio

    verovio.enableLog(verovio.LOG_OFF)
    return verovio.toolkit()


def engrave(data: str, layout: Layout) -> Engraving:
    """Lay out `data` (MusicXML, MEI or Humdrum text), rasterise every page, list played notes.

    Raises EngravingFailed when verovio cannot read the data or the piece is too long.
    """
    from sheetaudio_gui.training.verovio_svg import parse_verovio_svg

    tk = _toolkit()
    tk.resetOptions()
    tk.setOptions(layout.verovio_options())
    if not tk.loadData(data):
        raise EngravingFailed("verovio could not read the source")
    page_count = int(tk.getPageCount())
    if page_count == 0:
        raise EngravingFailed("verovio laid out no page")
    if page_count > config.CORPUS_MAX_PAGES:
        raise EngravingFailed(f"{page_count} pages (more than {config.CORPUS_MAX_PAGES})")
    zoom = layout.zoom
    pages = []
    for index in range(page_count):
        svg = tk.renderToSVG(index + 1)
        geometry = parse_verovio_svg(svg)
        png, width_px, height_px = rasterise_svg(svg, zoom)
        systems = tuple(
            PageSystem(
                box=_scaled(s.box, zoom),
                staves=tuple(
                    StaffLines(
                        lines_y=tuple(round(y * zoom, 2) for y in st.lines_y),
                        x0=round(st.x0 * zoom, 2),
                        x1=round(st.x1 * zoom, 2),
                    )
                    for st in s.staves
                ),
            )
            for s in geometry.systems
        )
        noteheads = tuple(
            PageNotehead(note_id=n.note_id, box=_scaled(n.box, zoom), system=n.system_index)
            for n in geometry.noteheads
        )
        pages.append(EngravedPage(index, png, width_px, height_px, systems, noteheads))
    mei = tk.getMEI()
    notes, measure_onsets = _played_notes(tk, mei)
    return Engraving(
        layout=layout,
        pages=tuple(pages),
        notes=notes,
        tie_continuations=_tie_continuations(mei),
        fermata_ids=_fermata_ids(mei),
        measure_onsets_s=measure_onsets,
    )


def rasterise_svg(svg: str, zoom: float) -> tuple[bytes, int, int]:
    """Verovio SVG -> (grayscale PNG bytes, width px, height px) at `zoom` pixels per SVG unit."""
    from sheetaudio_gui.training.verovio_svg import mupdf_ready_svg

    doc = pymupdf.open(stream=mupdf_ready_svg(svg).encode("utf-8"), filetype="svg")
    try:
        pix = doc[0].get_pixmap(
            matrix=pymupdf.Matrix(zoom, zoom), colorspace=pymupdf.csGRAY, alpha=False
        )
        return pix.tobytes("png"), pix.width, pix.height
    finally:
        doc.close()


def _scaled(box: Sequence[float], zoom: float) -> Box:
    x0, y0, x1, y1 = (round(float(c) * zoom, 2) for c in box)
    return (x0, y0, x1, y1)


def base_id(timemap_id: str) -> str:
    """Verovio's timemap names the nth play of an element `<id>-rend<n>`; this is `<id>`."""
    return _REND_SUFFIX.sub("", timemap_id)


def _occurrence(timemap_id: str) -> int:
    match = _REND_SUFFIX.search(timemap_id)
    return int(match.group(1)) if match else 1


def _played_notes(tk: Any, mei: str) -> tuple[tuple[ScoreNote, ...], tuple[float, ...]]:
    """Notes from verovio's timemap (which follows the generated repeat expansion)."""
    timemap = tk.renderToTimemap({"includeMeasures": True})
    measure_order = {
        m: i for i, m in enumerate(re.findall(r'<measure [^>]*?xml:id="([^"]+)"', mei))
    }
    onsets: dict[str, tuple[float, int]] = {}
    offsets: dict[str, float] = {}
    measure_onsets: list[float] = []
    current_measure = 0
    for event in timemap:
        t = float(event["tstamp"]) / 1000.0
        if "measureOn" in event:
            current_measure = measure_order.get(base_id(event["measureOn"]), current_measure)
            measure_onsets.append(t)
        for note in event.get("on", ()):
            onsets[note] = (t, current_measure)
        for note in event.get("off", ()):
            offsets[note] = t
    pitches: dict[str, int] = {}
    notes = []
    for note, (onset, measure) in onsets.items():
        key = base_id(note)
        if key not in pitches:
            pitches[key] = int(tk.getMIDIValuesForElement(key).get("pitch", -1))
        pitch = pitches[key]
        if not 0 <= pitch <= 127:
            continue
        offset = max(offsets.get(note, onset), onset + 0.01)
        notes.append(ScoreNote(key, _occurrence(note), pitch, onset, offset, measure))
    notes.sort(key=lambda n: (n.onset_s, n.pitch))
    return tuple(notes), tuple(measure_onsets)


def _tie_continuations(mei: str) -> frozenset[str]:
    """Noteheads that end or continue a tie (<tie endid> elements or @tie="m"/"t")."""
    ends = set(re.findall(r'<tie [^>]*?endid="#([^"]+)"', mei))
    for tag in re.findall(r"<note [^>]*>", mei):
        tie = re.search(r'\stie="([imt])"', tag)
        note_id = re.search(r'xml:id="([^"]+)"', tag)
        if tie and note_id and tie.group(1) in "mt":
            ends.add(note_id.group(1))
    return frozenset(ends)


def _fermata_ids(mei: str) -> frozenset[str]:
    ids = set(re.findall(r'<fermata [^>]*?startid="#([^"]+)"', mei))
    for tag in re.findall(r"<(?:note|chord) [^>]*fermata=[^>]*>", mei):
        note_id = re.search(r'xml:id="([^"]+)"', tag)
        if note_id:
            ids.add(note_id.group(1))
    return frozenset(ids)


def merge_ties(notes: Sequence[ScoreNote], continuations: frozenset[str]) -> list[ScoreNote]:
    """Fold every tie continuation into the note it continues: one onset per tied chain.

    The predecessor is the sounding note of the same pitch whose offset meets the continuation's
    onset (within 5 ms). A continuation with no such note (a tie into a second volta) stays a
    struck note.
    """
    merged: list[ScoreNote] = []
    open_by_pitch: dict[int, list[int]] = {}
    for note in sorted(notes, key=lambda n: (n.onset_s, n.pitch)):
        if note.note_id in continuations:
            candidates = open_by_pitch.get(note.pitch, [])
            match = next(
                (i for i in reversed(candidates) if abs(merged[i].offset_s - note.onset_s) < 5e-3),
                None,
            )
            if match is not None:
                prev = merged[match]
                merged[match] = ScoreNote(
                    prev.note_id,
                    prev.occurrence,
                    prev.pitch,
                    prev.onset_s,
                    max(prev.offset_s, note.offset_s),
                    prev.measure_order,
                )
                continue
        open_by_pitch.setdefault(note.pitch, []).append(len(merged))
        merged.append(note)
    merged.sort(key=lambda n: (n.onset_s, n.pitch))
    return merged


def check_alignment(
    notehead_ids: Sequence[str], struck: Sequence[ScoreNote], continuations: frozenset[str]
) -> str | None:
    """None if noteheads and struck notes match one to one, else the reason to drop the piece.

    Every drawn notehead must be struck at least once or be a tie continuation; every struck
    note must have a drawn notehead; noteheads are drawn once.
    """
    drawn = list(notehead_ids)
    drawn_set = set(drawn)
    if len(drawn_set) != len(drawn):
        return f"{len(drawn) - len(drawn_set)} noteheads drawn twice (same verovio id)"
    if not drawn_set:
        return "no noteheads drawn"
    struck_ids = {n.note_id for n in struck}
    silent = drawn_set - struck_ids - continuations
    unseen = struck_ids - drawn_set
    if silent or unseen:
        return (
            f"{len(silent)} noteheads never played (e.g. {sorted(silent)[:3]}), "
            f"{len(unseen)} played notes without notehead (e.g. {sorted(unseen)[:3]})"
        )
    return None
