"""How well does `detect_systems` find staff systems? Verovio pages with exact ground truth.

Engraves music21-corpus pieces with verovio under varied fonts, page sizes, scales, spacings and
headers; the ground-truth systems come from the SVG (`parse_verovio_svg`); pages are rasterised
with pymupdf at a DPI-equivalent zoom; degraded copies (noise, blur, 1 degree rotation, uneven
light, JPEG) get the ground truth transformed the same way; text-only pages must give no system.
A detection matches a ground-truth system at IoU >= 0.8 (boxes of the staff-line extent; for the
rotated pages both are the axis-aligned boxes enclosing the rotated staff lines).

    .venv/bin/python benchmarks/bench_system_detection.py [--out DIR] [--pages N]

Prints recall, precision, false systems, mean IoU and pages/s per condition; writes a JSON with
the numbers, versions and command, and PNGs (green: truth, red: detection) for looking at.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pymupdf
from scipy import ndimage

from sheetaudio_gui.core.images import draw_rect, save_png
from sheetaudio_gui.core.score import System, detect_systems
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


def text_pages(n: int, rng: np.random.Generator) -> list[npt.NDArray[np.uint8]]:
    """Text-only pages (title, paragraphs, a ruled list) rasterised at 150 dpi."""
    words = [
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
    pages = []
    for i in range(n):
        doc = pymupdf.open()
        page = doc.new_page(width=595, height=842)
        page.insert_text((72, 90), "Critical Commentary " + str(i + 1), fontsize=22)
        y = 130.0
        while y < 760:
            size = float(rng.choice([9, 10, 11, 12]))
            text = " ".join(rng.choice(words, size=int(rng.integers(60, 140))))
            rect = pymupdf.Rect(72, y, 523, y + 140)
            page.insert_textbox(rect, text, fontsize=size, fontname="tiro" if i % 2 else "helv")
            y += 150
            if i % 2 == 0 and y < 700:  # a list with ruled lines, like a table of sources
                for r in range(6):
                    page.draw_line((72, y + 14 * r), (523, y + 14 * r), width=0.6)
                    page.insert_text(
                        (76, y + 14 * r + 11), f"Source {r}: {rng.choice(words)}", fontsize=9
                    )
                y += 100
        pix = page.get_pixmap(matrix=pymupdf.Matrix(150 / 72, 150 / 72), colorspace=pymupdf.csGRAY)
        pages.append(np.frombuffer(pix.samples, np.uint8).reshape(pix.h, pix.w).copy())
    return pages


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/sheetaudio_bench_systems"))
    parser.add_argument("--pages", type=int, default=60, help="verovio pages (clean)")
    parser.add_argument("--degraded", type=int, default=20, help="pages per degradation")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rng = np.random.default_rng(SEED)
    args.out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    sources = verovio_pages(args.pages, rng)
    print(f"engraved {len(sources)} pages in {time.perf_counter() - t0:.0f} s")
    tallies: dict[str, Tally] = {}
    failures: list[str] = []
    degradations = ["noise", "blur", "rotate1", "rotate-2", "light", "jpeg", "scan"]
    for idx, (label, svg, zoom, _dpi) in enumerate(sources):
        geometry = parse_verovio_svg(svg)
        clean = rasterise(svg, zoom)
        versions: list[tuple[str, npt.NDArray[np.uint8], list[Box]]] = [
            ("clean", clean, truth_boxes(geometry, zoom))
        ]
        if idx < args.degraded:
            truth = truth_boxes(geometry, zoom)
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
        for name, image, truth in versions:
            found, seconds = timed(image)
            ious = tallies.setdefault(name, Tally()).add(truth, found, seconds)
            good = sum(v >= IOU_MATCH for v in ious)
            if good < len(truth) or len(found) > good:
                failures.append(
                    f"{name:<9} {label}: truth {len(truth)}, found {len(found)}, matched {good}"
                )
                save_png(args.out / f"fail_{name}_{label}.png", overlay(image, truth, found))
            elif idx % 10 == 0 and name in ("clean", "noise", "rotate1", "scan"):
                save_png(args.out / f"ok_{name}_{label}.png", overlay(image, truth, found))
    text = Tally()
    for i, image in enumerate(text_pages(6, rng)):
        found, seconds = timed(image)
        text.add([], found, seconds)
        if found or i == 0:
            save_png(args.out / f"text_{i}.png", overlay(image, [], found))
    tallies["text-only"] = text

    print(f"IoU match threshold {IOU_MATCH}; boxes = staff-line extent of each system")
    for name, tally in tallies.items():
        print(tally.line(name))
    total = Tally()
    for name, tally in tallies.items():
        if name != "text-only":
            total.pages += tally.pages
            total.truth += tally.truth
            total.found += tally.found
            total.matched += tally.matched
            total.false += tally.false
            total.ious += tally.ious
            total.seconds += tally.seconds
    print(total.line("all music"))
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
        "all_music": total.summary(),
        "failures": failures,
    }
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    print(f"PNGs and results.json in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
