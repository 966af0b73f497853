"""Score pages and their staff systems: PDFs and images -> grayscale pages -> system boxes.

Pages are read with pymupdf: PDFs are rasterised at `PAGE_RENDER_DPI` (units: PDF points), images
(PNG, JPEG, TIFF, multi-page TIFF, ...) at their native pixels (units: px), both capped at
`PAGE_MAX_PIXELS` so that a 20000 x 20000 scan cannot exhaust memory.

Staff systems are found without any learned model, because the retrieval models need the systems
before anything else and must work on any engraving:
1. ink = darkness relative to a local paper estimate (removes uneven lighting and gray paper);
2. the page's skew is the shear angle that makes the row projection of the ink sharpest
   (ink-weighted, so faint blurred lines count); on a photo taken at an angle the lines fan out,
   so the skew is also measured in horizontal bands and, where it changes from top to bottom,
   the page is straightened with a slope that changes with height;
3. in the straightened page, the row projection has sharp peaks at staff lines; 5 equally spaced
   peaks (one may be missing) whose lines run together over the same columns form a staff,
   if its spaces are mostly paper, no sixth line continues it (ruled lists, tables), a stroke
   crosses it from top to bottom line (barline, clef, brace) and symbols cross its lines
   (notes, stems, clef; text in a table keeps off its rules). Levels are relative to the
   staff's own line ink, so blurred, faint or gray scans pass the same tests;
3b. a staff so full of ink (chords, slurs, beams in most columns) that its own median column is
   no bare line is measured again against the bare-line ink of the staves found in step 3,
   without the tests of paper spaces and sixth lines, and kept when a system line or brace
   joins it to one of those (or, as wide as they are, to another such staff);
4. consecutive staves whose gap is bridged at their left end (system barline, brace, bracket)
   belong to one system; an unconnected staff is a system of its own.
Coordinates use the continuous pixel convention: pixel row r covers [r, r + 1).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np
import numpy.typing as npt
import pymupdf
from scipy import ndimage

from sheetaudio_gui.config import (
    DETECT_MAX_PIXELS,
    IMAGE_MAX_DECODED_PIXELS,
    MAX_SKEW_DEG,
    PAGE_MAX_PIXELS,
    PAGE_RENDER_DPI,
    PDF_POINTS_PER_INCH,
    STAFF_LINES,
)
from sheetaudio_gui.core.errors import UnreadableScore

logger = logging.getLogger(__name__)

# Local until moved to config.py: a chain of 5 lines is not a staff when an unbroken sixth line
# at the same spacing runs along at least this fraction of its length (ruled lists, tables).
SIXTH_LINE_MAX_FRACTION = 0.5
# Local until moved to config.py: a staff carries symbols that cross its lines (clef, notes,
# stems) over at least this many staff spaces of columns; text in a ruled table does not.
SYMBOLS_ON_LINES_MIN_SPACES = 0.5
# Local until moved to config.py: a photo taken at an angle (keystone) fans the staff lines out;
# their slope is measured in this many horizontal bands of the page and modelled as changing with
# height when it changes by at least LINE_FAN_MIN (tan) from top to bottom and that model makes
# the row projection LINE_FAN_GAIN times sharper than one slope for the whole page.
LINE_MODEL_BANDS = 4
LINE_MODEL_BAND_POINTS = 15_000  # inked pixels sampled per band (a band's slope needs few)
LINE_FAN_MIN = 0.005
LINE_FAN_GAIN = 1.05
# Local until moved to config.py: staves at least this fraction as wide as the page's widest
# anchor the search for dense staves (`_find_staves`); narrower ones may be replaced.
DENSE_ANCHOR_WIDTH = 0.75
DENSE_JOIN_MAX_SPACES = 12  # a dense staff joins a staff at most this many spaces away

# What pymupdf raises on damaged input: its own errors derive from RuntimeError or ValueError,
# but errors of the MuPDF bindings (FzErrorFormat, FzErrorLimit, ...) reach Python unwrapped.
_MUPDF_ERRORS: tuple[type[Exception], ...] = (RuntimeError, ValueError, pymupdf.mupdf.FzErrorBase)

Box = tuple[float, float, float, float]  # x0, y0, x1, y1
Gray = npt.NDArray[np.uint8]
Floats = npt.NDArray[np.float32]

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".pnm", ".pgm", ".ppm", ".jxr"}
)
SCORE_SUFFIXES = IMAGE_SUFFIXES | {".pdf"}


# --- pages -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """One page as a grayscale array (0 black .. 255 white) and its size in document units."""

    index: int  # 0-based page number in the document
    image: Gray  # (H, W) uint8
    width: float  # page width in `units`
    height: float  # page height in `units`
    units: str  # "pt" (PDF points, 1/72 inch) or "px" (native image pixels)
    px_per_unit: float  # image pixels per unit: 150/72 for PDFs, 1.0 for images (less if capped)


class ScoreDocument:
    """An open score file; use as a context manager. Pages are rendered on demand."""

    def __init__(self, path: Path, doc: pymupdf.Document, units: str) -> None:
        self.path = path
        self.units = units
        self._doc = doc

    @property
    def page_count(self) -> int:
        return int(self._doc.page_count)

    def page(self, index: int) -> Page:
        """Render page `index` (0-based) to grayscale; raises UnreadableScore if it is damaged."""
        if not 0 <= index < self.page_count:
            raise IndexError(f"{self.path}: page {index} of {self.page_count}")
        try:
            pg = self._doc[index]
            rect = pg.rect
            if self.units == "pt":
                width, height = float(rect.width), float(rect.height)
                scale = PAGE_RENDER_DPI / PDF_POINTS_PER_INCH
            else:
                info = pg.get_image_info()
                if info:
                    width, height = float(info[0]["width"]), float(info[0]["height"])
                else:  # no image record: assume 72 dpi, as MuPDF does
                    width, height = float(rect.width), float(rect.height)
                scale = 1.0
                if width * height > IMAGE_MAX_DECODED_PIXELS:
                    raise UnreadableScore(
                        self.path,
                        f"the image is too large to decode ({width:.0f} x {height:.0f} px, more"
                        f" than {IMAGE_MAX_DECODED_PIXELS / 1e6:.0f} megapixels); save it at a"
                        " lower resolution (300-600 dpi is plenty) and open that",
                    )
            if not (0 < width < math.inf and 0 < height < math.inf and rect.width > 0):
                raise UnreadableScore(
                    self.path,
                    f"page {index + 1} has no area ({width} x {height} {self.units});"
                    " the file is damaged, re-export the score",
                )
            pixels = width * height * scale * scale
            if pixels > PAGE_MAX_PIXELS:
                scale *= math.sqrt(PAGE_MAX_PIXELS / pixels)
                # MuPDF rounds the pixmap out to whole pixels: a sliver (4,000,000 x 40 px)
                # keeps a short side of >= 1 px, so shrink until the rounded size fits
                for _ in range(100):
                    rounded = math.ceil(width * scale) * math.ceil(height * scale)
                    if rounded <= PAGE_MAX_PIXELS:
                        break
                    scale *= min(0.999, PAGE_MAX_PIXELS / rounded)
                logger.info(
                    "%s page %d: reduced to %.0f%% to bound memory", self.path, index, 100 * scale
                )
            zoom = scale * width / float(rect.width)  # MuPDF renders page points
            pix = pg.get_pixmap(
                matrix=pymupdf.Matrix(zoom, zoom), colorspace=pymupdf.csGRAY, alpha=False
            )
        except pymupdf.mupdf.FzErrorLimit as exc:  # MuPDF refuses dimensions that overflow
            raise UnreadableScore(
                self.path,
                f"page {index + 1} is too large to decode ({exc}); save it at a lower resolution"
                " (300-600 dpi is plenty) and open that",
            ) from exc
        except _MUPDF_ERRORS as exc:
            raise UnreadableScore(
                self.path, f"page {index + 1} cannot be rendered ({exc}); the file may be damaged"
            ) from exc
        image = np.frombuffer(pix.samples, dtype=np.uint8).reshape(pix.h, pix.w, pix.n)[:, :, 0]
        return Page(index, image.copy(), width, height, self.units, pix.w / width)

    def pages(self) -> Iterator[Page]:
        for i in range(self.page_count):
            yield self.page(i)

    def close(self) -> None:
        self._doc.close()

    def __enter__(self) -> ScoreDocument:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_score(path: str | Path) -> ScoreDocument:
    """Open a PDF or image score; every problem becomes an UnreadableScore that says what to do."""
    path = Path(path)
    if not path.exists():
        raise UnreadableScore(path, "file not found; check the path")
    if not path.is_file():
        raise UnreadableScore(path, "is not a file; give a PDF or an image of the score")
    suffix = path.suffix.lower()
    if suffix not in SCORE_SUFFIXES:
        kinds = ", ".join(sorted(SCORE_SUFFIXES))
        raise UnreadableScore(path, f"unsupported file type {suffix!r}; use one of {kinds}")
    if path.stat().st_size == 0:
        raise UnreadableScore(path, "the file is empty (0 bytes); export or scan the score again")
    what = "PDF" if suffix == ".pdf" else "image"
    try:
        doc = pymupdf.open(path, filetype=suffix.lstrip("."))
    except _MUPDF_ERRORS as exc:
        raise UnreadableScore(
            path, f"is not a readable {what} ({exc}); re-export or re-scan the score"
        ) from exc
    try:
        locked, page_count, is_pdf = bool(doc.needs_pass), int(doc.page_count), bool(doc.is_pdf)
        repaired = is_pdf and bool(doc.is_repaired)
    except _MUPDF_ERRORS as exc:
        doc.close()
        raise UnreadableScore(
            path, f"is not a readable {what} ({exc}); re-export or re-scan the score"
        ) from exc
    if locked:
        doc.close()
        raise UnreadableScore(
            path, "the PDF is password-protected; save an unprotected copy and open that"
        )
    if page_count == 0:
        doc.close()
        raise UnreadableScore(path, "the file has no pages; re-export the score")
    if repaired:  # a cut-off or damaged PDF: MuPDF rebuilt what it could find
        logger.warning(
            "%s: the PDF is damaged and was repaired; pages or music may be missing,"
            " re-export the score if they are",
            path,
        )
    units = "pt" if is_pdf else "px"
    return ScoreDocument(path, doc, units)


# --- staff and system detection --------------------------------------------------------------


@dataclass(frozen=True)
class Staff:
    """One staff: line heights (at the staff's horizontal centre) and its horizontal extent."""

    lines_y: tuple[float, ...]  # y of each line, top to bottom
    x0: float
    x1: float

    @property
    def space(self) -> float:
        """Mean distance between adjacent lines (staff space)."""
        return (self.lines_y[-1] - self.lines_y[0]) / max(len(self.lines_y) - 1, 1)


@dataclass(frozen=True)
class System:
    """A staff system: box from the top line of the top staff to the bottom line of the bottom
    staff and from the left to the right end of the staff lines (axis-aligned; it encloses the
    lines of a skewed page), its staves top to bottom and the skew of its lines."""

    box: Box
    staves: tuple[Staff, ...]
    skew_deg: float = 0.0  # at the system's middle; positive: lines descend to the right

    @property
    def staff_space(self) -> float:
        return float(np.mean([s.space for s in self.staves]))

    def scaled(self, factor: float) -> System:
        """The same system with every coordinate multiplied (to page units: 1 / px_per_unit)."""
        staves = tuple(
            Staff(tuple(y * factor for y in s.lines_y), s.x0 * factor, s.x1 * factor)
            for s in self.staves
        )
        box = (
            self.box[0] * factor,
            self.box[1] * factor,
            self.box[2] * factor,
            self.box[3] * factor,
        )
        return System(box, staves, self.skew_deg)


def systems_in_units(systems: list[System], page: Page) -> list[System]:
    """Convert systems detected on `page.image` (pixels) into page units (points or px)."""
    return [s.scaled(1.0 / page.px_per_unit) for s in systems]


def detect_systems(image: Gray) -> list[System]:
    """Find the staff systems of a page: (H, W) uint8 grayscale -> systems top to bottom.

    Boxes are in pixels of `image`. Pages without staves (text, blank, empty) give an empty list.
    """
    if image.ndim != 2:
        raise ValueError(f"expected a (H, W) grayscale page, got shape {image.shape}")
    if image.size == 0:  # a page with no pixels has no staves
        return []
    factor = max(1, math.ceil(math.sqrt(image.size / DETECT_MAX_PIXELS)))
    if min(image.shape) < factor:  # a sliver narrower than one block has no staff
        return []
    ink = _ink(image, factor)
    lines = _line_model(ink)
    sheared = lines.straighten(ink)
    profile = sheared.sum(axis=1, dtype=np.float64)
    space = _staff_space(profile)
    if space is None:
        return []
    staves = _find_staves(sheared, profile, space)
    groups = _group_systems(sheared, staves)
    systems = [_to_page(group, lines, factor) for group in groups]
    systems.sort(key=lambda s: s.box[1])
    return systems


@dataclass(frozen=True)
class _RawStaff:
    """A staff in the working (downsampled, deskewed) frame."""

    lines: tuple[float, ...]  # row positions (continuous convention)
    x0: int  # first staff column
    x1: int  # one past the last staff column
    stroke: float = 1.0  # ink at the centre of a staff line: how dark a thin stroke is here
    level: float = 1.0  # a bare line's ink integral across its band (`_verify_staff`)


def _ink(image: Gray, factor: int) -> Floats:
    """Darkness in [0, 1] relative to the local paper brightness, block-averaged by `factor`.

    (H, W) uint8 -> (H // factor, W // factor) float32. The paper level is the brightest value of
    coarse blocks, smoothed, so uneven lighting and gray paper read as no ink.
    """
    h, w = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    img = image[:h, :w].astype(np.float32)
    if factor > 1:
        img = img.reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))
    block = 32
    hh, ww = img.shape
    ph, pw = -hh % block, -ww % block
    padded = np.pad(img, ((0, ph), (0, pw)), mode="edge")
    coarse = padded.reshape(padded.shape[0] // block, block, padded.shape[1] // block, block)
    paper = float(coarse.max())  # guards against dark blocks on an otherwise bright page
    local = ndimage.maximum_filter(coarse.max(axis=(1, 3)), size=3)
    local = ndimage.uniform_filter(local, size=3)
    local = np.maximum(local, 0.25 * paper)
    rows = np.minimum(np.arange(hh) // block, local.shape[0] - 1)
    cols = np.minimum(np.arange(ww) // block, local.shape[1] - 1)
    bg = local[rows][:, cols]
    ink = 1.0 - img / np.maximum(bg, 1.0)
    ink = np.clip((ink - 0.1) / 0.9, 0.0, 1.0)  # faint paper texture and JPEG ringing -> 0
    out: Floats = ink.astype(np.float32)
    return out


def _ink_points(
    ink: Floats, limit: int = 200_000
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Inked pixels of every other column (x, y, ink weight), at most `limit` of them."""
    half = ink[:, ::2]
    ys, xs = np.nonzero(half > 0.05)
    if ys.size > limit:
        keep = np.random.default_rng(0).choice(ys.size, limit, replace=False)
        ys, xs = ys[keep], xs[keep]
    weights = half[ys, xs].astype(np.float64)  # faint (blurred) lines still count
    return xs.astype(np.float64) * 2, ys.astype(np.float64), weights


def _sharpness(rows: npt.NDArray[np.float64], weights: npt.NDArray[np.float64]) -> float:
    """Sum of squared row-projection values: large when staff lines fall into single rows."""
    r = np.round(rows).astype(np.int64)
    counts = np.bincount(r - r.min(initial=0), weights=weights)
    return float((counts * counts).sum())


def _skew(
    ink: Floats,
    limit: int = 200_000,
    around: float = 0.0,
    reach: float = MAX_SKEW_DEG,
    steps: tuple[float, ...] = (0.5, 0.1, 0.025),
) -> float:
    """Skew angle (radians) whose shear makes the row projection of ink the sharpest.

    Sharpness is the sum of squared projection values; staff lines dominate it when aligned.
    Coarse-to-fine search over `around` +- `reach` degrees (within +-MAX_SKEW_DEG) with the given
    steps, on at most `limit` inked pixels.
    """
    xf, yf, weights = _ink_points(ink, limit)
    if yf.size < 100:
        return math.radians(around)

    def sharpness(deg: float) -> float:
        return _sharpness(yf - xf * math.tan(math.radians(deg)), weights)

    lo, hi = max(around - reach, -MAX_SKEW_DEG), min(around + reach, MAX_SKEW_DEG)
    best = around
    for k, step in enumerate(steps):
        if k > 0:
            lo, hi = best - 2.5 * step, best + 2.5 * step
        candidates = np.arange(lo, hi + 1e-9, step)
        candidates = candidates[np.abs(candidates) <= MAX_SKEW_DEG + 1e-9]
        scores = [sharpness(float(d)) for d in candidates]
        best = float(candidates[int(np.argmax(scores))])
    return math.radians(best)


@dataclass(frozen=True)
class _LineModel:
    """How staff lines run in the working frame, and the straightened frame they run flat in.

    The line whose straightened row is r runs at input row
    `mid_y + c (1 + dx t1) + dx t0`, with c = r + top and dx = x - mid_x: slope t0 + t1 c. A turned
    page (scan) has t1 = 0, one slope for all lines; a page photographed at an angle (keystone)
    has lines that fan out, their slope changing from the top of the page to the bottom.
    """

    t0: float
    t1: float
    mid_x: float
    mid_y: float
    top: float  # c of straightened row 0
    height: int  # rows of the straightened frame

    def input_row(self, r: float, x: float) -> float:
        c, dx = r + self.top, x - self.mid_x
        return self.mid_y + c * (1.0 + dx * self.t1) + dx * self.t0

    def slope_deg(self, r: float) -> float:
        """The direction of the line at straightened row r (positive: descends to the right)."""
        return math.degrees(math.atan(self.t0 + self.t1 * (r + self.top)))

    def straighten(self, ink: Floats) -> Floats:
        """The ink resampled so that every staff line runs along one row."""
        if self.t1 == 0.0:  # one slope: whole-pixel column shifts, as exact as the ink
            return _shear(ink, math.atan(self.t0))[0]
        w = ink.shape[1]
        x = np.arange(w, dtype=np.float64)
        dx = x - self.mid_x
        c = np.arange(self.height, dtype=np.float64)[:, None] + self.top
        src = self.mid_y + c * (1.0 + dx[None, :] * self.t1) + (dx * self.t0)[None, :]
        cols = np.broadcast_to(x[None, :], src.shape)
        out: Floats = ndimage.map_coordinates(ink, [src, cols], order=1, cval=0.0).astype(
            np.float32
        )
        return out


def _uniform_lines(ink: Floats, angle: float) -> _LineModel:
    """The model of a page turned by `angle` (radians), straightened by `_shear`'s column shifts:
    row r at column x is input row r + x tan + offset, offset = -(largest shift)."""
    tan = math.tan(angle)
    h, w = ink.shape
    shifts = _column_shifts(w, angle)
    offset = -float(shifts.max())
    mid_x, mid_y = w / 2.0, h / 2.0
    # r + x tan + offset = mid_y + (r + top) + (x - mid_x) tan  =>  top = offset + mid_x tan - mid_y
    height = h + int(shifts.max() - shifts.min())
    return _LineModel(tan, 0.0, mid_x, mid_y, offset + mid_x * tan - mid_y, height)


def _line_model(ink: Floats) -> _LineModel:
    """Fit how the staff lines run: one slope (turned page), or slopes that change from the top to
    the bottom of the page (a photo at an angle), whichever aligns the ink better.

    The page's slope comes from `_skew`; the slopes of LINE_MODEL_BANDS horizontal bands, each
    found the same way, give the change with height (least squares, weighted by ink). The fanning
    model is kept only when it makes the row projection clearly sharper, so pages whose lines are
    parallel are straightened exactly as before.
    """
    angle = _skew(ink)
    uniform = _uniform_lines(ink, angle)
    h, w = ink.shape
    centres, slopes, weights = [], [], []
    for k in range(LINE_MODEL_BANDS):
        lo, hi = k * h // LINE_MODEL_BANDS, (k + 1) * h // LINE_MODEL_BANDS
        band = ink[lo:hi]
        amount = float(band.sum())
        if amount <= 0.0:
            continue
        centres.append((lo + hi) / 2.0 - h / 2.0)
        # a band's slope differs from the page's by a few degrees at most, and only steers the
        # refinement below: a short, coarse search is enough
        slope = _skew(band, LINE_MODEL_BAND_POINTS, math.degrees(angle), 2.5, (0.5, 0.1))
        slopes.append(math.tan(slope))
        weights.append(amount)
    if len(centres) < 2:
        return uniform
    t1, t0 = np.polyfit(np.array(centres), np.array(slopes), 1, w=np.sqrt(np.array(weights)))
    if abs(t1) * h < LINE_FAN_MIN:
        return uniform
    xf, yf, wts = _ink_points(ink, 100_000)
    mid_x, mid_y = w / 2.0, h / 2.0
    dx, dy = xf - mid_x, yf - mid_y

    def sharpness(t0: float, t1: float) -> float:
        return _sharpness((dy - dx * t0) / (1.0 + dx * t1), wts)

    # the bands see few lines each: refine both terms on the whole page, coarse to fine
    best = sharpness(t0, t1)
    for step0, step1 in ((0.004, 0.01 / h), (0.001, 0.0025 / h)):
        grid = [(t0 + i * step0, t1 + j * step1) for i in range(-2, 3) for j in range(-2, 3)]
        scores = [sharpness(a, b) for a, b in grid]
        k = int(np.argmax(scores))
        if scores[k] > best:
            best, (t0, t1) = scores[k], grid[k]
    if abs(t1) * h < LINE_FAN_MIN or best < LINE_FAN_GAIN * _sharpness(
        yf - xf * math.tan(angle), wts
    ):
        return uniform
    # the straightened frame spans the c of the page's four corners
    corners = [
        ((y - mid_y) - (x - mid_x) * t0) / (1.0 + (x - mid_x) * t1)
        for x in (0.0, float(w))
        for y in (0.0, float(h))
    ]
    top = math.floor(min(corners))
    return _LineModel(
        float(t0), float(t1), mid_x, mid_y, float(top), int(math.ceil(max(corners))) - top
    )


def _shear(ink: Floats, angle: float) -> tuple[Floats, npt.NDArray[np.int64]]:
    """Shift every column up by round(x tan(angle)) so skewed lines become rows.

    Returns the sheared (H + pad, W) image and the per-column shifts; row r of the sheared image
    is row r + shifts[x] of the input.
    """
    w = ink.shape[1]
    shifts = _column_shifts(w, angle)
    lo, hi = int(shifts.min()), int(shifts.max())
    if lo == hi == 0:
        return ink, shifts
    # sheared row r' = r - shifts[x] + hi, so that all rows stay >= 0
    out = np.zeros((ink.shape[0] + hi - lo, w), dtype=np.float32)
    for s in np.unique(shifts):
        cols = np.nonzero(shifts == s)[0]
        top = hi - int(s)
        out[top : top + ink.shape[0], cols[0] : cols[-1] + 1] = ink[:, cols[0] : cols[-1] + 1]
    return out, shifts - hi


def _column_shifts(w: int, angle: float) -> npt.NDArray[np.int64]:
    """round(x tan(angle)) for every column x: how far `_shear` moves each column."""
    return np.round(np.arange(w) * math.tan(angle)).astype(np.int64)


def _staff_space(profile: npt.NDArray[np.float64]) -> float | None:
    """Dominant distance between staff lines from the autocorrelation of the row projection."""
    if profile.max() <= 0:
        return None
    detail = profile - ndimage.uniform_filter1d(profile, size=61)
    n = detail.size
    spectrum = np.fft.rfft(detail, 2 * n)
    corr = np.fft.irfft(spectrum * np.conj(spectrum))[: min(n, 120)]
    if corr[0] <= 0:
        return None
    corr = corr / corr[0]
    lags = np.arange(corr.size)
    peaks = [
        int(k)
        for k in lags[4:-1]
        if corr[k] >= corr[k - 1] and corr[k] >= corr[k + 1] and corr[k] > 0.1
    ]
    if not peaks:
        return None
    top = max(corr[k] for k in peaks)
    k = next(k for k in peaks if corr[k] >= 0.5 * top)
    # parabolic refinement of the peak
    a, b, c = corr[k - 1], corr[k], corr[k + 1]
    denom = a - 2 * b + c
    return float(k + (0.5 * (a - c) / denom if denom < 0 else 0.0))


def _line_peaks(profile: npt.NDArray[np.float64], space: float) -> list[tuple[float, float]]:
    """Sharp peaks of the row projection: (row centre, strength), strongest lines kept."""
    half = max(1, int(round(space / 2)))
    base = ndimage.minimum_filter1d(profile, size=2 * half + 1)
    base = ndimage.maximum_filter1d(base, size=2 * half + 1)  # opening: follows broad humps
    detail = np.maximum(profile - base, 0.0)
    smooth = np.convolve(detail, np.ones(3), mode="same")
    is_max = (smooth >= np.roll(smooth, 1)) & (smooth > np.roll(smooth, -1)) & (smooth > 0)
    idx = np.nonzero(is_max)[0]
    if idx.size == 0:
        return []
    strengths = smooth[idx]
    reference = float(np.median(np.sort(strengths)[-10:]))
    keep = strengths >= 0.1 * reference
    peaks = []
    for r in idx[keep]:
        lo, hi = max(r - 1, 0), min(r + 2, detail.size)
        w = detail[lo:hi]
        centre = float((np.arange(lo, hi) * w).sum() / max(w.sum(), 1e-9)) + 0.5
        peaks.append((centre, float(smooth[r])))
    return peaks


def _find_staves(
    sheared: Floats, profile: npt.NDArray[np.float64], space: float
) -> list[_RawStaff]:
    """Chains of 5 equally spaced projection peaks whose lines run together over many columns.

    Every peak may start a chain; a ledger line or beam above a staff also starts one (with four
    staff lines), so overlapping chains compete: each is verified on the image, and the one whose
    five lines are most completely drawn over the longest run wins.
    """
    peaks = _line_peaks(profile, space)
    ys = np.array([p[0] for p in peaks])
    chains: set[tuple[float, ...]] = set()
    for i in range(len(peaks)):
        for s in {space, *_spacing_candidates(ys, i, space)}:
            chain = _chain(ys, float(ys[i]), s)
            if chain is not None:
                chains.add(chain)
    rows = _RowBands(sheared)
    ordered = sorted(chains)
    verified = [v for v in (_verify_staff(rows, c) for c in ordered) if v]
    staves = _best_disjoint(verified, [])
    if not staves:
        return staves
    # Dense staves (chords, slurs and beams in most columns): their own median column is no bare
    # line, so some columns or the whole staff fail the tests above, or only a stretch of it is
    # found. Staves nearly as wide as the page's widest are anchors, their extent measured again
    # against the anchors' bare-line ink (one engraving: one line weight); narrower staves may be
    # replaced by a chain measured that way when a system line or brace joins it to an anchor
    # (or, wide itself, to another such chain), the evidence that stands in for the tests of
    # paper spaces and sixth lines that ink-filled staves cannot pass.
    widest = max(st.x1 - st.x0 for st in staves)
    anchors = [st for st in staves if st.x1 - st.x0 >= DENSE_ANCHOR_WIDTH * widest]
    page_level = float(np.median([st.level for st in anchors]))
    anchors = [_wider(rows, st, page_level) for st in anchors]
    widest = max(st.x1 - st.x0 for st in anchors)
    measured = [
        v
        for c in ordered
        if not any(_overlap(c, st.lines) for st in anchors)
        for v in [_verify_staff(rows, c, page_level)]
        if v
    ]
    wide = [v[1] for v in measured if v[1].x1 - v[1].x0 >= DENSE_ANCHOR_WIDTH * widest]
    dense = [  # joined to an anchor, or a wide one to another wide one (a system of two)
        v
        for v in measured
        if any(_joined(sheared, v[1], st) for st in anchors)
        or (v[1] in wide and any(_joined(sheared, v[1], st) for st in wide))
    ]
    weak = [v for v in verified if not any(_overlap(v[1].lines, st.lines) for st in anchors)]
    return sorted(anchors + _best_disjoint(dense + weak, anchors), key=lambda st: st.lines[0])


def _wider(rows: _RowBands, staff: _RawStaff, page_level: float) -> _RawStaff:
    """The staff over its run measured against the page's bare-line ink, where that is wider."""
    v = _verify_staff(rows, staff.lines, page_level)
    if v is None or v[1].x0 > staff.x0 or v[1].x1 < staff.x1:
        return staff
    return v[1]


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] <= b[-1] and a[-1] >= b[0]


def _best_disjoint(
    verified: list[tuple[float, _RawStaff]], taken: list[_RawStaff]
) -> list[_RawStaff]:
    """The best-scoring verified staves that overlap neither each other nor `taken`."""
    chosen: list[_RawStaff] = []
    for _, staff in sorted(verified, key=lambda v: -v[0]):
        if any(_overlap(staff.lines, b.lines) for b in taken + chosen):
            continue
        chosen.append(staff)
    return chosen


def _joined(sheared: Floats, a: _RawStaff, b: _RawStaff) -> bool:
    """Are two staves of one system (bridged at their left end, whichever is above)?"""
    upper, lower = (a, b) if a.lines[0] < b.lines[0] else (b, a)
    gap = lower.lines[0] - upper.lines[-1]
    s = (upper.lines[-1] - upper.lines[0]) / (STAFF_LINES - 1)
    return 0 < gap <= DENSE_JOIN_MAX_SPACES * s and _connected(sheared, upper, lower)


def _spacing_candidates(ys: npt.NDArray[np.float64], i: int, space: float) -> list[float]:
    """Distances from peak i to the following peaks that could be its staff's line spacing."""
    d = ys[i + 1 :] - ys[i]
    ok = d[(d >= 0.6 * space) & (d <= 1.6 * space)]
    return sorted(ok.tolist(), key=lambda v: abs(v - space))[:3]


def _chain(ys: npt.NDArray[np.float64], y0: float, s: float) -> tuple[float, ...] | None:
    """Five rows from the peak at y0 down, about s apart, or None.

    Peaks near y0 + k s are matched (k = 1..4), a straight line is fitted to the matches, and
    the peaks are matched again to the fit, so one biased peak (blurred line, notehead on a
    line) neither derails the chain nor shifts it. One line may lack its peak (faint, or a
    short staff on a page of long ones): its row comes from the fit and `_verify_staff` checks
    it on the image.
    """

    def matched(base: float, step: float, slack: float) -> dict[int, float]:
        tol = max(1.5, 0.2 * step)
        out: dict[int, float] = {}
        for k in range(STAFF_LINES):
            expected = base + k * step
            j = int(np.argmin(np.abs(ys - expected)))
            if abs(ys[j] - expected) <= tol + slack * k * step:
                out[k] = float(ys[j])
        return out

    first = matched(y0, s, 0.05)
    if len(first) < STAFF_LINES - 1 or 0 not in first:
        return None
    ks = np.array(list(first))
    step, base = np.polyfit(ks, np.array(list(first.values())), 1)
    if not 0.8 * s <= step <= 1.25 * s:
        return None
    second = matched(float(base), float(step), 0.0)
    if len(second) < STAFF_LINES - 1:
        return None
    return tuple(second.get(k, float(base + k * step)) for k in range(STAFF_LINES))


class _RowBands:
    """Sums of the sheared ink over bands of rows, from a cumulative sum: O(W) per band."""

    def __init__(self, sheared: Floats) -> None:
        self.ink = sheared
        self.cum = np.zeros((sheared.shape[0] + 1, sheared.shape[1]), dtype=np.float32)
        np.cumsum(sheared, axis=0, out=self.cum[1:])

    def band(self, y: float, half: int) -> Floats:
        """(W,) ink summed over rows floor(y) - half .. floor(y) + half."""
        r = int(math.floor(y))
        h = self.ink.shape[0]
        lo, hi = min(max(r - half, 0), h), min(max(r + half + 1, 0), h)
        out: Floats = self.cum[hi] - self.cum[lo]
        return out


def _verify_staff(
    rows: _RowBands, lines: tuple[float, ...], page_level: float | None = None
) -> tuple[float, _RawStaff] | None:
    """Accept a chain of 5 rows as a staff: (score, staff) or None.

    A staff is the longest column run where >= 4 of the 5 lines carry ink, at least 8 staff
    spaces long, whose spaces are mostly paper, that no sixth line at the same spacing continues
    (ruled lists and tables), and that a vertical stroke (barline, clef, brace) crosses from top
    to bottom line. The score prefers chains whose 5 lines are all drawn over the longest run.
    With `page_level` (a bare line's ink on this page) a dense staff is measured against that
    instead of its own median column, and its spaces and the rows beyond may be full of ink (the
    caller then asks for other evidence: a system line joining it to a staff found the ordinary
    way).
    """
    if lines[0] < 0 or lines[-1] >= rows.ink.shape[0]:  # a fitted line off the page
        return None
    s = (lines[-1] - lines[0]) / (len(lines) - 1)
    half = max(1, int(round(0.2 * s)))
    line_ink = np.stack([rows.band(y, half) for y in lines])  # (5, W): ink across each line
    column_level = np.median(line_ink, axis=0)
    filled = column_level[column_level > 0.05]
    if filled.size < 6 * s:
        return None
    # a bare line's ink integral: most staff columns hold nothing but the lines (blurred or
    # thin lines are faint, so no absolute level works)
    level = float(np.median(filled)) if page_level is None else page_level
    on = line_ink >= 0.4 * level
    present = on.sum(axis=0) >= STAFF_LINES - 1
    gap = max(1, int(round(0.5 * s)))
    closed = ndimage.binary_closing(present, structure=np.ones(gap), border_value=0)
    closed |= present
    labels, n = ndimage.label(closed)
    if n == 0:
        return None
    sizes = np.bincount(labels)[1:]
    k = int(np.argmax(sizes)) + 1
    cols = np.nonzero(labels == k)[0]
    x0, x1 = int(cols[0]), int(cols[-1]) + 1
    if x1 - x0 < 8 * s:
        return None
    if present[x0:x1].mean() < 0.7:
        return None
    # the spaces between lines are mostly paper inside a staff (text blocks are not)
    mids = [(a + b) / 2 for a, b in itertools.pairwise(lines)]
    space_ink = np.stack([rows.band(y, half) for y in mids])[:, x0:x1]
    if page_level is None and float(np.median(space_ink)) > 0.5 * level:
        return None
    # a staff has exactly five lines: an unbroken sixth at the same spacing over the same
    # columns means ruled paper, a ruled list or a table (ledger lines are short pieces; the
    # long flat slurs of a dense staff are not, hence no such test with `page_level`)
    for y in (lines[0] - s, lines[-1] + s) if page_level is None else ():
        beyond = np.max([rows.band(y + d, half)[x0:x1] for d in (-1, 0, 1)], axis=0)
        if _longest_run(beyond >= 0.4 * level) >= SIXTH_LINE_MAX_FRACTION * (x1 - x0):
            return None
    centre = [rows.ink[max(int(y) - half, 0) : int(y) + half + 1, x0:x1].max(axis=0) for y in lines]
    stroke = float(np.median(np.stack(centre)[on[:, x0:x1]]))
    if not _crossed_by_stroke(rows.ink, lines, x0, x1, stroke):
        return None
    if _symbols_on_lines(rows.ink, lines, x0, x1, stroke) < SYMBOLS_ON_LINES_MIN_SPACES * s:
        return None
    completeness = float(on[:, x0:x1].mean())
    return (x1 - x0) * completeness, _RawStaff(lines, x0, x1, stroke, level)


def _longest_run(mask: npt.NDArray[np.bool_]) -> int:
    """Length of the longest run of True in a 1-D mask (one-pixel gaps bridged)."""
    bridged = mask | (np.roll(mask, 1) & np.roll(mask, -1))
    if not bridged.any():
        return 0
    edges = np.diff(np.concatenate(([0], bridged.astype(np.int8), [0])))
    starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
    return int((ends - starts).max())


def _symbols_on_lines(
    sheared: Floats, lines: tuple[float, ...], x0: int, x1: int, stroke: float
) -> int:
    """Columns where ink covers a staff line and the paper just above and below it, without
    crossing the whole staff: noteheads on lines, stems, clefs, accidentals do; text in a ruled
    table keeps off its rules (and the table's vertical rules cross everything)."""
    s = (lines[-1] - lines[0]) / (len(lines) - 1)
    reach = max(1, int(round(0.4 * s)))
    top = max(int(math.floor(lines[0])) - reach, 0)
    ink = sheared[top : int(math.floor(lines[-1])) + reach + 1, x0:x1] >= min(0.3, 0.5 * stroke)
    crossing = np.zeros(x1 - x0, dtype=bool)
    for y in lines:
        r = int(math.floor(y)) - top
        crossing |= ink[max(r - reach, 0) : r + reach + 1].all(axis=0)
    staff = ink[int(math.floor(lines[0])) - top : int(math.floor(lines[-1])) + 1 - top]
    whole = staff.mean(axis=0) >= 0.9
    whole = ndimage.binary_dilation(whole, iterations=2)
    return int((crossing & ~whole).sum())


def _crossed_by_stroke(
    sheared: Floats, lines: tuple[float, ...], x0: int, x1: int, stroke: float
) -> bool:
    """Does some column near the staff carry ink from its top to its bottom line?

    Barlines, the system line, the treble clef and braces do; text between ruled lines does
    not. `stroke` is the ink at the centre of the staff lines (faint when blurred), so the
    threshold follows the page's contrast.
    """
    s = (lines[-1] - lines[0]) / (len(lines) - 1)
    top, bottom = int(math.floor(lines[0])), int(math.floor(lines[-1])) + 1
    lo = max(x0 - int(round(2 * s)), 0)
    hi = min(x1 + int(round(s)), sheared.shape[1])
    region = sheared[top:bottom, lo:hi]
    if region.size == 0:
        return False
    region = ndimage.maximum_filter1d(region, size=3, axis=1)  # residual skew, thin strokes
    threshold = min(0.3, 0.5 * stroke)
    return bool(((region >= threshold).mean(axis=0) >= 0.9).any())


def _group_systems(sheared: Floats, staves: list[_RawStaff]) -> list[list[_RawStaff]]:
    """Staves whose gap is bridged near their left end (barline, brace, bracket) form a system."""
    groups: list[list[_RawStaff]] = []
    for staff in staves:
        if groups and _connected(sheared, groups[-1][-1], staff):
            groups[-1].append(staff)
        else:
            groups.append([staff])
    return groups


def _connected(sheared: Floats, upper: _RawStaff, lower: _RawStaff) -> bool:
    s = (upper.lines[-1] - upper.lines[0] + lower.lines[-1] - lower.lines[0]) / 8
    if abs(upper.x0 - lower.x0) > 2 * s:
        return False
    top = int(math.ceil(upper.lines[-1] + 0.3 * s))
    bottom = int(math.floor(lower.lines[0] - 0.3 * s))
    if bottom <= top:
        return True
    lo = max(int(min(upper.x0, lower.x0) - 2.0 * s), 0)
    hi = min(int(max(upper.x0, lower.x0) + 0.5 * s) + 1, sheared.shape[1])
    region = sheared[top:bottom, lo:hi]
    if region.size == 0:
        return False
    smooth = ndimage.uniform_filter(region, size=3, mode="constant")
    covered = (smooth >= min(0.25, 0.3 * min(upper.stroke, lower.stroke))).any(axis=1)
    return bool(covered.mean() >= 0.9)


def _to_page(group: list[_RawStaff], lines: _LineModel, factor: int) -> System:
    """Map staves from the working frame back to input pixels (undo straightening and
    downsampling). The system's skew is the slope of its lines at its middle."""
    staves = []
    for raw in group:
        xc = (raw.x0 + raw.x1) / 2
        ys = tuple(lines.input_row(y, xc) * factor for y in raw.lines)
        staves.append(Staff(ys, raw.x0 * factor, raw.x1 * factor))
    x0 = min(s.x0 for s in staves)
    x1 = max(s.x1 for s in staves)
    top_staff, bottom_staff = group[0], group[-1]
    ys_top = [lines.input_row(top_staff.lines[0], x) * factor for x in (top_staff.x0, top_staff.x1)]
    ys_bot = [
        lines.input_row(bottom_staff.lines[-1], x) * factor
        for x in (bottom_staff.x0, bottom_staff.x1)
    ]
    box = (float(x0), min(ys_top), float(x1), max(ys_bot))
    middle = (top_staff.lines[0] + bottom_staff.lines[-1]) / 2
    return System(box, tuple(staves), lines.slope_deg(middle))
