"""How well does `detect_systems` find staff systems? Verovio pages with exact ground truth.

Engraves music21-corpus pieces with verovio under varied fonts, page sizes, scales, spacings and
headers; the ground-truth systems come from the SVG (`parse_verovio_svg`); pages are rasterised
with pymupdf at a DPI-equivalent zoom; degraded copies (noise, blur, 1 and -2 degree rotation,
uneven light, JPEG, a mild scan, a photo at an angle) of an even spread of the pages get the
ground truth transformed the same way; text-only pages (commentary with a ruled list, tables
with vertical rules, lyrics, a title page) must give no system. A detection matches a
ground-truth system at IoU >= 0.8 (boxes of the staff-line extent; for the rotated and
photographed pages both are the axis-aligned boxes enclosing the moved staff lines). With
`--lilypond`, pieces engraved by LilyPond (when it is installed) are scored too, with ground
truth from the staff lines in LilyPond's PDF.

    .venv/bin/python benchmarks/bench_system_detection.py [--out DIR] [--pages N] [--lilypond]

Prints recall, precision, false systems, mean IoU and pages/s per condition and overall; writes
results.json (numbers, versions, command) and PNGs (green: truth, red: detection) to look at.
Detection runs with OMP_NUM_THREADS=1, so pages/s is a one-core figure.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # pages/s on one core

import argparse
import json
import logging
import math
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pymupdf
from scipy import ndimage

from sheetaudio_gui.core.images import draw_rect, save_png
from sheetaudio_gui.core.score import System, detect_systems
from sheetaudio_gui.training.augment import map_points, warp_with_geometry
from sheetaudio_gui.training.verovio_svg import SvgPage, mupdf_ready_svg, parse_verovio_svg

Box = tuple[float, float, float, float]
IOU_MATCH = 0.8
SEED = 20240601

# (corpus path, kind) - chorales (4 staves), piano (grand staff), song with lyrics (3 staves),
# quartets (4 staves), single-staff folk tunes (no system barline)
PIECES = [
    ("bach/bwv66.6", "chorale"),
    ("bach/bwv1.6", "chorale"),
    ("bach/bwv10.7", "chorale"),
    ("bach/bwv101.7", "chorale"),
    ("joplin/maple_leaf_rag", "piano"),
    ("mozart/k545/movement1_exposition", "piano"),
    ("schumann_clara/polonaise_op1n1", "piano"),
    ("schubert/Lindenbaum", "lyrics"),
    ("schumann_robert/dichterliebe_no2", "lyrics"),
    ("handel/rinaldo/Lascia_chio_pianga", "lyrics"),
    ("haydn/opus74no1/movement2", "quartet"),
    ("essenFolksong/altdeu10", "single"),
]
FONTS = ["Leipzig", "Bravura", "Gootville", "Leland", "Petaluma"]
PAGE_SIZES = [(2100, 2970), (2159, 2794), (2970, 2100), (1800, 2500)]  # tenths of mm
DPIS = [100, 150, 150, 200, 300]


@dataclass
class Tally:
    pages: int = 0
    truth: int = 0
    found: int = 0
    matched: int = 0
    false: int = 0
    ious: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, truth: list[Box], found: list[System], seconds: float) -> list[float]:
        ious = match(truth, [s.box for s in found])
        self.pages += 1
        self.truth += len(truth)
        self.found += len(found)
        good = [v for v in ious if v >= IOU_MATCH]
        self.matched += len(good)
        self.false += len(found) - len(good)
        self.ious += good
        self.seconds += seconds
        return ious

    def line(self, name: str) -> str:
        recall = self.matched / self.truth if self.truth else float("nan")
        precision = self.matched / self.found if self.found else float("nan")
        miou = float(np.mean(self.ious)) if self.ious else float("nan")
        return (
            f"{name:<12} pages {self.pages:3d}  systems {self.truth:4d}  found {self.found:4d}  "
            f"recall {recall:7.2%}  precision {precision:7.2%}  false {self.false:3d}  "
            f"mean IoU {miou:.3f}  {self.pages / max(self.seconds, 1e-9):5.1f} pages/s"
        )

    def summary(self) -> dict[str, float]:
        return {
            "pages": self.pages,
            "systems": self.truth,
            "found": self.found,
            "recall": self.matched / self.truth if self.truth else float("nan"),
            "precision": self.matched / self.found if self.found else float("nan"),
            "false_systems": self.false,
            "mean_iou": float(np.mean(self.ious)) if self.ious else float("nan"),
            "pages_per_s": self.pages / max(self.seconds, 1e-9),
        }


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(truth: list[Box], found: list[Box]) -> list[float]:
    """Greedy one-to-one matching by IoU: the IoU of each matched pair (unmatched: dropped)."""
    pairs = sorted(
        ((iou(t, f), i, j) for i, t in enumerate(truth) for j, f in enumerate(found)),
        reverse=True,
    )
    used_t: set[int] = set()
    used_f: set[int] = set()
    out = []
    for v, i, j in pairs:
        if v <= 0 or i in used_t or j in used_f:
            continue
        used_t.add(i)
        used_f.add(j)
        out.append(v)
    return out


def rasterise(svg: str, zoom: float) -> npt.NDArray[np.uint8]:
    doc = pymupdf.open(stream=mupdf_ready_svg(svg).encode(), filetype="svg")
    pix = doc[0].get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), colorspace=pymupdf.csGRAY)
    return np.frombuffer(pix.samples, np.uint8).reshape(pix.h, pix.w).copy()


def truth_boxes(page: SvgPage, zoom: float) -> list[Box]:
    return [
        (s.box[0] * zoom, s.box[1] * zoom, s.box[2] * zoom, s.box[3] * zoom) for s in page.systems
    ]


# --- degradations ------------------------------------------------------------------------------


def rotate(
    image: npt.NDArray[np.uint8], page: SvgPage, zoom: float, degrees: float
) -> tuple[npt.NDArray[np.uint8], list[Box]]:
    """Rotate the page about its centre (lines descend to the right for positive degrees) and the
    truth with it: the box enclosing each system's rotated top and bottom staff lines."""
    out = ndimage.rotate(image, -degrees, reshape=False, order=1, cval=255, prefilter=False)
    h, w = image.shape
    cx, cy = w / 2, h / 2
    a = math.radians(degrees)

    def rot(x: float, y: float) -> tuple[float, float]:
        dx, dy = x - cx, y - cy
        return cx + dx * math.cos(a) - dy * math.sin(a), cy + dx * math.sin(a) + dy * math.cos(a)

    boxes = []
    for s in page.systems:
        pts = []
        for staff, y in (
            (s.staves[0], s.staves[0].lines_y[0]),
            (s.staves[-1], s.staves[-1].lines_y[-1]),
        ):
            pts += [rot(staff.x0 * zoom, y * zoom), rot(staff.x1 * zoom, y * zoom)]
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        boxes.append((min(xs), min(ys), max(xs), max(ys)))
    return out.astype(np.uint8), boxes


def photographed(
    image: npt.NDArray[np.uint8], page: SvgPage, zoom: float, keystone: float
) -> tuple[npt.NDArray[np.uint8], list[Box]]:
    """A phone held at an angle: the right side of the page `keystone` (share of its height)
    taller than the left, turned by 1 degree; the staff lines fan out. The truth moves with the
    ink: the box enclosing each system's moved top and bottom staff lines."""
    out, forward = warp_with_geometry(image, angle_deg=1.0, keystone=(0.0, keystone))
    boxes = []
    for s in page.systems:
        ends = [
            (x * zoom, y * zoom)
            for staff, y in (
                (s.staves[0], s.staves[0].lines_y[0]),
                (s.staves[-1], s.staves[-1].lines_y[-1]),
            )
            for x in (staff.x0, staff.x1)
        ]
        pts = map_points(forward, image.shape, ends)
        boxes.append((pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()))
    return out, boxes


def noisy(image: npt.NDArray[np.uint8], rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    """Gaussian noise (sigma 20 gray levels) plus 1 % salt-and-pepper."""
    img = image.astype(np.float32) + rng.normal(0, 20, image.shape)
    flip = rng.random(image.shape)
    img[flip < 0.005] = 0
    img[flip > 0.995] = 255
    return np.clip(img, 0, 255).astype(np.uint8)


def blurred(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    return ndimage.gaussian_filter(image.astype(np.float32), 1.0).round().astype(np.uint8)


def uneven_light(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """A scanner-like shadow: brightness falls from 100 % to 55 % across the page, gray paper."""
    h, w = image.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    light = 1.0 - 0.45 * ((xx / w) ** 2 * 0.6 + (yy / h) * 0.4)
    return np.clip(image.astype(np.float32) * 0.92 * light + 8, 0, 255).astype(np.uint8)


def jpeg(image: npt.NDArray[np.uint8], quality: int = 30) -> npt.NDArray[np.uint8]:
    h, w = image.shape
    pix = pymupdf.Pixmap(pymupdf.csGRAY, w, h, image.tobytes(), False)
    back = pymupdf.Pixmap(pix.tobytes("jpeg", jpg_quality=quality))
    return np.frombuffer(back.samples, np.uint8).reshape(back.h, back.w, back.n)[:, :, 0].copy()


def scanned(image: npt.NDArray[np.uint8], rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    """Everything at once, milder: blur, light, noise, JPEG."""
    img = ndimage.gaussian_filter(image.astype(np.float32), 0.7)
    img = uneven_light(img.round().astype(np.uint8)).astype(np.float32)
    img += rng.normal(0, 8, img.shape)
    return jpeg(np.clip(img, 0, 255).astype(np.uint8), 50)


# --- page sources ------------------------------------------------------------------------------


def verovio_pages(max_pages: int, rng: np.random.Generator) -> list[tuple[str, str, float, float]]:
    """(label, svg, zoom, dpi) for up to max_pages pages with varied engraving settings."""
    import music21
    import verovio

    verovio.enableLog(False)
    out: list[tuple[str, str, float, float]] = []
    k = 0
    per_piece = max(2, math.ceil(max_pages / len(PIECES)))
    for path, _kind in PIECES:
        xml = music21.corpus.parse(path).write("musicxml")
        data = Path(xml).read_text()
        for variant in range(per_piece):
            if len(out) >= max_pages:
                return out
            width, height = PAGE_SIZES[(k + variant) % len(PAGE_SIZES)]
            font = FONTS[k % len(FONTS)]
            k += 1
            options = {
                "font": font,
                "pageWidth": width,
                "pageHeight": height,
                "scale": int(rng.integers(30, 56)),
                "spacingSystem": int(rng.integers(4, 16)),
                "spacingStaff": int(rng.integers(6, 14)),
                "header": "auto" if rng.random() < 0.7 else "none",
                "footer": "none",
                "pageMarginLeft": int(rng.integers(50, 250)),
                "pageMarginTop": int(rng.integers(50, 250)),
                "breaks": "auto",
            }
            tk = verovio.toolkit()
            tk.setOptions(options)
            tk.loadData(data)
            pages = tk.getPageCount()
            n = 1 + variant % max(1, min(pages, 3))
            dpi = DPIS[(k + variant) % len(DPIS)]
            svg = tk.renderToSVG(n)
            geometry = parse_verovio_svg(svg)
            zoom = (width / 254.0 * dpi) / geometry.width
            label = f"{path.replace('/', '_')}-{font}-s{options['scale']}-p{n}-{dpi}dpi"
            out.append((label, svg, zoom, dpi))
    return out


WORDS = [
    "sonata",
    "allegro",
    "exposition",
    "theme",
    "development",
    "recapitulation",
    "modulation",
    "cadence",
    "key",
    "tonic",
    "dominant",
    "bar",
    "phrase",
    "motif",
    "harmony",
    "counterpoint",
    "edition",
    "source",
    "manuscript",
]
TEXT_KINDS = ["commentary", "table", "lyrics", "title"]


def _pixels(page: pymupdf.Page, dpi: float = 150) -> npt.NDArray[np.uint8]:
    pix = page.get_pixmap(matrix=pymupdf.Matrix(dpi / 72, dpi / 72), colorspace=pymupdf.csGRAY)
    return np.frombuffer(pix.samples, np.uint8).reshape(pix.h, pix.w).copy()


def _commentary(page: pymupdf.Page, i: int, rng: np.random.Generator) -> None:
    """Paragraphs with a ruled list (6 rules 14 pt apart, text between): staff-like rules."""
    page.insert_text((72, 90), "Critical Commentary " + str(i + 1), fontsize=22)
    y = 130.0
    while y < 760:
        size = float(rng.choice([9, 10, 11, 12]))
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(60, 140))))
        rect = pymupdf.Rect(72, y, 523, y + 140)
        page.insert_textbox(rect, text, fontsize=size, fontname="tiro" if i % 2 else "helv")
        y += 150
        if y < 700:
            for r in range(6):
                page.draw_line((72, y + 14 * r), (523, y + 14 * r), width=0.6)
                page.insert_text(
                    (76, y + 14 * r + 11), f"Source {r}: {rng.choice(WORDS)}", fontsize=9
                )
            y += 100


def _table(page: pymupdf.Page, i: int, rng: np.random.Generator) -> None:
    """Tables with horizontal and vertical rules; the first has exactly 5 horizontal rules
    (4 rows), rows are 10-18 pt: the closest a table gets to a staff with barlines."""
    page.insert_text((72, 80), "Table of sources", fontsize=18)
    y = 110.0
    for t in range(3):
        rows = [4, int(rng.integers(5, 12)), int(rng.integers(3, 9))][t]
        height = float(rng.choice([10, 12, 14, 18]))
        cols = [72, 150, 330, 440, 523]
        for r in range(rows + 1):
            page.draw_line((72, y + r * height), (523, y + r * height), width=0.6)
        for x in cols:
            page.draw_line((x, y), (x, y + rows * height), width=0.6)
        for r in range(rows):
            for c in range(len(cols) - 1):
                word = f"{rng.choice(WORDS)} {int(rng.integers(1, 99))}" if c else f"A-{r + 1}"
                page.insert_text(
                    (cols[c] + 3, y + r * height + height * 0.72), word, fontsize=height * 0.6
                )
        y += rows * height + 60
        if y > 700:
            break


def _lyrics(page: pymupdf.Page, i: int, rng: np.random.Generator) -> None:
    """A page of song texts: title, numbered stanzas of short lines, some in italic."""
    page.insert_text((180, 90), "Texte der Lieder", fontsize=20, fontname="tiro")
    y = 130.0
    while y < 740:
        page.insert_text((100, y), f"{int(rng.integers(1, 30))}. Lied", fontsize=13)
        y += 22
        for _ in range(int(rng.integers(4, 9))):
            line = " ".join(rng.choice(WORDS, size=int(rng.integers(4, 9)))).capitalize()
            font = "tiit" if rng.random() < 0.3 else "tiro"
            page.insert_text((120, y), line, fontsize=11, fontname=font)
            y += 15
        y += 18


def _title(page: pymupdf.Page, i: int, rng: np.random.Generator) -> None:
    """A title page: large title, subtitle, double and triple rules as ornament, publisher."""
    page.insert_text((90, 220), "SONATEN", fontsize=54, fontname="tiro")
    page.insert_text((150, 270), "für das Pianoforte", fontsize=20, fontname="tiit")
    for k in range(2):
        page.draw_line((120, 320 + 5 * k), (475, 320 + 5 * k), width=1.2 - 0.6 * k)
    page.insert_text((200, 380), "Erster Band", fontsize=16)
    page.insert_text((170, 460), f"Neue Ausgabe {1800 + i}", fontsize=14)
    for k in range(3):
        page.draw_line((220, 520 + 4 * k), (375, 520 + 4 * k), width=0.5)
    page.insert_text((200, 720), "LEIPZIG", fontsize=16, fontname="helv")
    page.insert_text((150, 745), "Verlag " + str(rng.choice(WORDS)).title(), fontsize=12)


def text_pages(n: int, rng: np.random.Generator) -> list[tuple[str, npt.NDArray[np.uint8]]]:
    """n text-only pages, cycling through TEXT_KINDS, rasterised at 150 dpi: (kind, page)."""
    makers = {"commentary": _commentary, "table": _table, "lyrics": _lyrics, "title": _title}
    pages = []
    for i in range(n):
        kind = TEXT_KINDS[i % len(TEXT_KINDS)]
        doc = pymupdf.open()
        page = doc.new_page(width=595, height=842)
        makers[kind](page, i, rng)
        pages.append((kind, _pixels(page)))
    return pages


# --- LilyPond (optional) -----------------------------------------------------------------------

LY_VERSION = '\\version "2.24.0"\n'


BAR_RHYTHMS = {  # note values filling one bar
    "4/4": ["4 4 4 4", "8 8 4 4 4", "2 4 4", "4 8 8 2", "16 16 16 16 4 2", "8 8 8 8 4 4", "1"],
    "3/4": ["4 4 4", "2 4", "8 8 4 4", "4 8 8 8 8", "2."],
    "2/4": ["4 4", "8 8 4", "2", "16 16 8 4"],
}


def _ly_notes(rng: np.random.Generator, bars: int, low: int, high: int, time: str = "4/4") -> str:
    """`bars` bars of random notes between diatonic steps low..high (28 = c, middle C is 35),
    every bar complete, so parts of the same length stay together on every system."""
    names = ["c", "d", "e", "f", "g", "a", "b"]
    marks = {2: ",", 3: "", 4: "'", 5: "''", 6: "'''"}
    out = []
    for _ in range(bars):
        for value in str(rng.choice(BAR_RHYTHMS[time])).split():
            step = int(rng.integers(low, high))
            out.append(names[step % 7] + marks[step // 7] + value)
        out.append("|")
    return " ".join(out)


def lilypond_sources(rng: np.random.Generator) -> list[tuple[str, str, int]]:
    """(name, .ly text, staves per system): a piano sonatina with a title at two staff sizes,
    a song (voice with lyrics + piano), a single-staff tune, a string quartet."""
    out = []
    for size in (20, 16):
        piano = (
            LY_VERSION
            + f"#(set-global-staff-size {size})\n"
            + '\\header { title = "Sonatine" subtitle = "für Klavier" composer = "N. N." }\n'
            + "\\score { \\new PianoStaff << \\new Staff { \\key g \\major "
            + _ly_notes(rng, 64, 30, 40)
            + " } \\new Staff { \\clef bass \\key g \\major "
            + _ly_notes(rng, 64, 16, 28)
            + " } >> }\n"
        )
        out.append((f"piano-{size}pt", piano, 2))
    words = ["la", "le", "mi", "ro", "sen", "tag", "nacht", "lie", "be"]
    syllables = " ".join(str(rng.choice(words)) for _ in range(120))
    song = (
        LY_VERSION
        + '\\header { title = "Abendlied" composer = "Text: Anon." }\n'
        + "melody = { \\time 3/4 "
        + _ly_notes(rng, 40, 30, 38, "3/4")
        + " }\n"
        + '\\score { << \\new Staff \\new Voice = "v" \\melody '
        + '\\new Lyrics \\lyricsto "v" { '
        + syllables
        + " } \\new PianoStaff << \\new Staff { \\time 3/4 "
        + _ly_notes(rng, 40, 28, 38, "3/4")
        + " } \\new Staff { \\time 3/4 \\clef bass "
        + _ly_notes(rng, 40, 16, 27, "3/4")
        + " } >> >> }\n"
    )
    out.append(("song", song, 3))
    tune = (
        LY_VERSION
        + '\\header { title = "Volkslied" }\n'
        + "\\score { \\new Staff { \\time 2/4 "
        + _ly_notes(rng, 48, 30, 39, "2/4")
        + " } }\n"
    )
    out.append(("tune", tune, 1))
    parts = [_ly_notes(rng, 40, lo, hi) for lo, hi in ((32, 42), (28, 37), (22, 32), (15, 26))]
    clefs = ["treble", "treble", "alto", "bass"]
    staves = " ".join(
        f"\\new Staff {{ \\clef {c} {p} }}" for c, p in zip(clefs, parts, strict=True)
    )
    quartet = (
        LY_VERSION
        + '\\header { title = "Quartett" }\n'
        + "\\score { \\new StaffGroup << "
        + staves
        + " >> }\n"
    )
    out.append(("quartet", quartet, 4))
    return out


def lilypond_truth(page: pymupdf.Page, staves_per_system: int) -> list[Box]:
    """System boxes (points) from the staff lines in LilyPond's PDF: long horizontal strokes
    sharing an extent, 5 a staff, `staves_per_system` staves a system, top to bottom."""
    rows: dict[tuple[float, float], set[float]] = {}
    for drawing in page.get_drawings():
        for item in drawing["items"]:
            if item[0] != "l":
                continue
            p, q = item[1], item[2]
            if abs(p.y - q.y) > 0.01 or abs(q.x - p.x) < 60:
                continue
            key = (round(min(p.x, q.x), 1), round(max(p.x, q.x), 1))
            rows.setdefault(key, set()).add(round(p.y, 2))
    staves: list[Box] = []
    for (x0, x1), ys_set in rows.items():
        ys = sorted(ys_set)
        staves += [(x0, ys[k], x1, ys[k + 4]) for k in range(0, len(ys) - 4, 5)]
    staves.sort(key=lambda b: b[1])
    boxes = []
    for k in range(0, len(staves) - staves_per_system + 1, staves_per_system):
        group = staves[k : k + staves_per_system]
        x0 = min(g[0] for g in group)
        x1 = max(g[2] for g in group)
        boxes.append((x0, group[0][1], x1, group[-1][3]))
    return boxes


def lilypond_pages(
    rng: np.random.Generator, workdir: Path
) -> list[tuple[str, npt.NDArray[np.uint8], list[Box]]]:
    """(label, 150-dpi page, truth boxes in px) for every page LilyPond engraves."""
    out = []
    zoom = 150 / 72
    for name, text, per_system in lilypond_sources(rng):
        ly = workdir / f"{name}.ly"
        ly.write_text(text)
        run = subprocess.run(
            ["lilypond", "-s", "-o", str(workdir / name), str(ly)],
            capture_output=True,
            text=True,
            check=False,
        )
        pdf = workdir / f"{name}.pdf"
        if run.returncode != 0 or not pdf.exists():
            print(f"lilypond failed on {name}: {run.stderr[-500:]}")
            continue
        with pymupdf.open(pdf) as doc:
            for i, page in enumerate(doc):
                truth = [
                    (b[0] * zoom, b[1] * zoom, b[2] * zoom, b[3] * zoom)
                    for b in lilypond_truth(page, per_system)
                ]
                out.append((f"{name}-p{i + 1}", _pixels(page), truth))
    return out


def overlay(
    image: npt.NDArray[np.uint8], truth: list[Box], found: list[System]
) -> npt.NDArray[np.uint8]:
    rgb = np.repeat(image[:, :, None], 3, axis=2)
    for b in truth:
        draw_rect(rgb, b, (0, 190, 0), 4)
    for s in found:
        draw_rect(rgb, s.box, (230, 0, 0), 2)
        for staff in s.staves:
            for y in staff.lines_y:
                rgb[int(y), int(staff.x0) : int(staff.x1) : 6] = (0, 0, 255)
    return rgb


def timed(image: npt.NDArray[np.uint8]) -> tuple[list[System], float]:
    t = time.perf_counter()
    found = detect_systems(image)
    return found, time.perf_counter() - t


def _sum(tallies: list[Tally]) -> Tally:
    total = Tally()
    for t in tallies:
        total.pages += t.pages
        total.truth += t.truth
        total.found += t.found
        total.matched += t.matched
        total.false += t.false
        total.ious += t.ious
        total.seconds += t.seconds
    return total


def _score_page(
    name: str,
    label: str,
    image: npt.NDArray[np.uint8],
    truth: list[Box],
    tallies: dict[str, Tally],
    failures: list[str],
    out: Path,
    save_ok: bool,
) -> None:
    found, seconds = timed(image)
    ious = tallies.setdefault(name, Tally()).add(truth, found, seconds)
    good = sum(v >= IOU_MATCH for v in ious)
    if good < len(truth) or len(found) > good:
        failures.append(
            f"{name:<10} {label}: truth {len(truth)}, found {len(found)}, matched {good}"
        )
        save_png(out / f"fail_{name}_{label}.png", overlay(image, truth, found))
    elif save_ok:
        save_png(out / f"ok_{name}_{label}.png", overlay(image, truth, found))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/sheetaudio_bench_systems"))
    parser.add_argument("--pages", type=int, default=60, help="verovio pages (clean)")
    parser.add_argument("--degraded", type=int, default=30, help="pages per degradation")
    parser.add_argument("--text", type=int, default=16, help="text-only pages")
    parser.add_argument("--lilypond", action="store_true", help="also score LilyPond pages")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rng = np.random.default_rng(SEED)
    args.out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    sources = verovio_pages(args.pages, rng)
    print(f"engraved {len(sources)} pages in {time.perf_counter() - t0:.0f} s")
    tallies: dict[str, Tally] = {}
    failures: list[str] = []
    degradations = ["noise", "blur", "rotate1", "rotate-2", "light", "jpeg", "scan", "photo"]
    # degrade an even spread of the pages, so every piece, font and dpi is represented
    every = max(1, len(sources) // max(args.degraded, 1))
    degraded = set(range(0, len(sources), every)[: args.degraded])
    a4_150: list[npt.NDArray[np.uint8]] = []
    for idx, (label, svg, zoom, dpi) in enumerate(sources):
        geometry = parse_verovio_svg(svg)
        clean = rasterise(svg, zoom)
        truth = truth_boxes(geometry, zoom)
        versions: list[tuple[str, npt.NDArray[np.uint8], list[Box]]] = [("clean", clean, truth)]
        if dpi == 150 and abs(clean.shape[0] - 1754) < 3 and abs(clean.shape[1] - 1240) < 3:
            a4_150.append(clean)
        if idx in degraded:
            for name in degradations:
                if name == "noise":
                    versions.append((name, noisy(clean, rng), truth))
                elif name == "blur":
                    versions.append((name, blurred(clean), truth))
                elif name.startswith("rotate"):
                    img, boxes = rotate(clean, geometry, zoom, float(name[6:]))
                    versions.append((name, img, boxes))
                elif name == "light":
                    versions.append((name, uneven_light(clean), truth))
                elif name == "jpeg":
                    versions.append((name, jpeg(clean), truth))
                elif name == "scan":
                    img, boxes = rotate(scanned(clean, rng), geometry, zoom, 0.7)
                    versions.append((name, img, boxes))
                elif name == "photo":
                    keystone = float(rng.choice([-0.06, 0.06]))
                    img, boxes = photographed(clean, geometry, zoom, keystone)
                    versions.append((name, img, boxes))
        for name, image, boxes in versions:
            save_ok = idx % 10 == 0 and name in ("clean", "noise", "blur", "scan")
            _score_page(name, label, image, boxes, tallies, failures, args.out, save_ok)

    text_by_kind: dict[str, Tally] = {}
    for i, (kind, image) in enumerate(text_pages(args.text, rng)):
        found, seconds = timed(image)
        text_by_kind.setdefault(kind, Tally()).add([], found, seconds)
        if found:
            failures.append(f"text-only  {kind} page {i}: {len(found)} false systems")
            save_png(args.out / f"fail_text_{kind}_{i}.png", overlay(image, [], found))
        elif i < len(TEXT_KINDS):
            save_png(args.out / f"ok_text_{kind}_{i}.png", overlay(image, [], found))
    for kind, tally in text_by_kind.items():
        tallies[f"text:{kind}"] = tally

    music = [t for name, t in tallies.items() if not name.startswith("text:")]
    lily: Tally | None = None
    if args.lilypond:
        if shutil.which("lilypond") is None:
            print("--lilypond: lilypond is not installed (apt-get install lilypond); skipped")
        else:
            with tempfile.TemporaryDirectory() as tmp:
                for label, image, truth in lilypond_pages(rng, Path(tmp)):
                    _score_page("lilypond", label, image, truth, tallies, failures, args.out, True)
            lily = tallies.get("lilypond")

    # one-core speed on 150-dpi A4 pages (the PDF rendering resolution)
    speed = Tally()
    for image in (a4_150 * 3)[:30]:
        found, seconds = timed(image)
        speed.pages += 1
        speed.seconds += seconds

    print(f"IoU match threshold {IOU_MATCH}; boxes = staff-line extent of each system")
    for name, tally in tallies.items():
        print(tally.line(name))
    total = _sum(music)
    text = _sum([t for name, t in tallies.items() if name.startswith("text:")])
    print(total.line("all verovio"))
    print(text.line("all text"))
    pages_per_s = speed.pages / max(speed.seconds, 1e-9)
    print(f"speed: {pages_per_s:.1f} pages/s on {speed.pages} 150-dpi A4 pages, one thread")
    for f in failures:
        print("  miss/false:", f)
    import music21
    import verovio

    result = {
        "command": " ".join([sys.executable, *sys.argv]),
        "seed": SEED,
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "pymupdf": pymupdf.VersionBind,
            "verovio": verovio.toolkit().getVersion(),
            "music21": music21.__version__,
        },
        "iou_match": IOU_MATCH,
        "results": {name: t.summary() for name, t in tallies.items()},
        "all_verovio": total.summary(),
        "all_text": text.summary(),
        "lilypond": lily.summary() if lily else None,
        "speed_a4_150dpi_pages_per_s": pages_per_s,
        "failures": failures,
    }
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    print(f"PNGs and results.json in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
