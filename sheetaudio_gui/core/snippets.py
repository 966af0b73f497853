"""Cutting the model's inputs: system strips and their 80x90 windows, spectrogram 92x20 windows.

A staff system is normalised so that its staff lines lie `STAFF_SPACE_PX` apart, a strip
`STRIP_HEIGHT_PX` high is cut around the system's vertical centre, and the strip is halved; windows
then slide along it. Audio windows slide along the log-frequency spectrogram. Both sides keep the
window positions, so a window's embedding can be traced back to a page x-range or a time span.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from sheetaudio_gui.config import (
    AUDIO_SNIPPET_FRAMES,
    AUDIO_SNIPPET_HOP_FRAMES,
    SHEET_SNIPPET_HEIGHT_PX,
    SHEET_SNIPPET_HOP_PX,
    SHEET_SNIPPET_WIDTH_PX,
    SPEC_BINS,
    STAFF_SPACE_PX,
    STRIP_DOWNSCALE,
    STRIP_HEIGHT_PX,
)

PAPER = 255  # value of blank paper in grayscale pages and strips
PAPER_BLOCK_PX = 32  # strip columns per paper-level estimate (`whiten_paper`)
PAPER_PERCENTILE = 90  # a strip block is mostly paper: this percentile of it is the paper level
PAPER_MIN_LEVEL = 96  # darker "paper" is ink-filled, not paper: never brighten by more than this

Box = tuple[float, float, float, float]
Ints = npt.NDArray[np.int64]


def strip_scale(staff_space_px: float) -> float:
    """Factor from page pixels to (halved) strip pixels for a system with this line spacing."""
    if staff_space_px <= 0:
        raise ValueError(f"staff space must be positive, got {staff_space_px}")
    return STAFF_SPACE_PX / staff_space_px / STRIP_DOWNSCALE


def system_strip(
    page: npt.NDArray[np.uint8],
    box: Box,
    staff_space_px: float,
    margin_spaces: float = 1.0,
    height: int = SHEET_SNIPPET_HEIGHT_PX,
    skew_deg: float = 0.0,
    pivot_x: float | None = None,
) -> npt.NDArray[np.uint8]:
    """Cut and normalise one staff system: (H, W) page -> (height, w) strip, paper = 255.

    `box` is the system's staff-line extent (x0, y0, x1, y1) in page pixels and `staff_space_px`
    its mean distance between staff lines. The strip is centred on the box's vertical middle and
    reaches `margin_spaces` staff spaces left and right of it (clefs and the final barline stay in).
    Areas outside the page are paper. Training asks for a taller `height` so that vertical
    shift and scale augmentation has real page content to move into view.

    On a skewed page (a scan or photo turned by `skew_deg`, positive when lines descend to the
    right) the cut follows the lines: each page column is taken from rows shifted by
    (x - pivot_x) * tan(skew), so that staff lines run straight along the strip. Without this a
    2 degree turn moves the ends of a wide system by about two staff spaces, which the CNN reads as
    other pitches. `pivot_x` is where the box's vertical middle lies on the lines (default: the
    box's horizontal middle; pass the whole system's middle when `box` is a part of it).
    """
    scale = strip_scale(staff_space_px)  # strip px per page px
    x0, y0, x1, y1 = box
    margin = margin_spaces * staff_space_px
    src_h = height / scale  # page px covered by the strip's height
    centre = (y0 + y1) / 2.0
    top = int(np.floor(centre - src_h / 2.0))
    bottom = int(np.ceil(centre + src_h / 2.0))
    left = int(np.floor(x0 - margin))
    right = int(np.ceil(x1 + margin))
    pivot = (x0 + x1) / 2.0 if pivot_x is None else pivot_x
    shifts = np.round((np.arange(left, right) + 0.5 - pivot) * np.tan(np.radians(skew_deg)))
    region = _sheared_crop(page, top, bottom, left, right, shifts.astype(np.int64))
    out_w = max(1, int(round((right - left) * scale)))
    return whiten_paper(_resize(region, height, out_w))


def whiten_paper(strip: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Scale each column so that the paper reads 255, as on a rendered PDF.

    Scans and photos show grey, unevenly lit paper; the CNN, trained on rendered pages, would read
    that grey as faint ink everywhere. The paper level is a high percentile of blocks of columns
    (a strip is mostly paper), interpolated between block centres. A strip whose paper is
    already white (a rendered page) comes back unchanged.
    """
    w = strip.shape[1]
    starts = np.arange(0, w, PAPER_BLOCK_PX)
    levels = np.array(
        [np.percentile(strip[:, a : a + PAPER_BLOCK_PX], PAPER_PERCENTILE) for a in starts]
    )
    if levels.min() >= PAPER:
        return strip
    centres = starts + np.minimum(PAPER_BLOCK_PX, w - starts) / 2.0
    paper = np.interp(np.arange(w) + 0.5, centres, np.maximum(levels, PAPER_MIN_LEVEL))
    out: npt.NDArray[np.uint8] = np.clip(
        np.round(strip * (PAPER / paper)[None, :]), 0, PAPER
    ).astype(np.uint8)
    return out


def _sheared_crop(
    page: npt.NDArray[np.uint8], top: int, bottom: int, left: int, right: int, shifts: Ints
) -> npt.NDArray[np.uint8]:
    """Crop rows [top + s, bottom + s) of every column x in [left, right), s = its shift."""
    lo, hi = int(shifts.min(initial=0)), int(shifts.max(initial=0))
    tall = _crop_with_paper(page, top + lo, bottom + hi, left, right)
    if lo == hi:
        return tall
    rows = np.arange(bottom - top)[:, None] + (shifts - lo)[None, :]
    return np.take_along_axis(tall, rows, axis=0)


def _crop_with_paper(
    page: npt.NDArray[np.uint8], top: int, bottom: int, left: int, right: int
) -> npt.NDArray[np.uint8]:
    """Crop [top:bottom, left:right], padding with paper where the box leaves the page."""
    h, w = page.shape
    out = np.full((bottom - top, right - left), PAPER, dtype=np.uint8)
    sy0, sy1 = max(top, 0), min(bottom, h)
    sx0, sx1 = max(left, 0), min(right, w)
    if sy1 > sy0 and sx1 > sx0:
        out[sy0 - top : sy1 - top, sx0 - left : sx1 - left] = page[sy0:sy1, sx0:sx1]
    return out


def _resize(image: npt.NDArray[np.uint8], height: int, width: int) -> npt.NDArray[np.uint8]:
    """Antialiased bilinear resize of a grayscale image (keeps thin staff lines visible)."""
    t = torch.from_numpy(np.ascontiguousarray(image)).float()[None, None]
    with torch.inference_mode():
        r = F.interpolate(
            t, size=(height, width), mode="bilinear", antialias=True, align_corners=False
        )
    return r[0, 0].round().clamp(0, 255).to(torch.uint8).numpy()


def window_starts(length: int, window: int, hop: int) -> npt.NDArray[np.int64]:
    """Start offsets of windows covering `length` samples; the last window may run past the end.

    At least one window, so a short system or excerpt still gives an input.
    """
    if length <= window:
        return np.zeros(1, dtype=np.int64)
    count = int(np.ceil((length - window) / hop)) + 1
    return np.arange(count, dtype=np.int64) * hop


def sheet_windows(strip: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """(80, w) strip -> (n, 80, 90) windows with hop 81, the last padded with paper."""
    if strip.ndim != 2 or strip.shape[0] != SHEET_SNIPPET_HEIGHT_PX:
        raise ValueError(f"expected a ({SHEET_SNIPPET_HEIGHT_PX}, w) strip, got {strip.shape}")
    starts = window_starts(strip.shape[1], SHEET_SNIPPET_WIDTH_PX, SHEET_SNIPPET_HOP_PX)
    end = int(starts[-1]) + SHEET_SNIPPET_WIDTH_PX
    padded = np.full((SHEET_SNIPPET_HEIGHT_PX, end), PAPER, dtype=np.uint8)
    padded[:, : strip.shape[1]] = strip[:, :end]
    return np.stack([padded[:, s : s + SHEET_SNIPPET_WIDTH_PX] for s in starts])


def audio_windows(
    spec: npt.NDArray[np.floating], hop: int = AUDIO_SNIPPET_HOP_FRAMES
) -> npt.NDArray[np.float32]:
    """(92, frames) spectrogram -> (n, 92, 20) windows with the given hop, the last zero-padded."""
    if spec.ndim != 2 or spec.shape[0] != SPEC_BINS:
        raise ValueError(f"expected a ({SPEC_BINS}, frames) spectrogram, got {spec.shape}")
    starts = window_starts(spec.shape[1], AUDIO_SNIPPET_FRAMES, hop)
    end = int(starts[-1]) + AUDIO_SNIPPET_FRAMES
    padded = np.zeros((SPEC_BINS, end), dtype=np.float32)
    padded[:, : spec.shape[1]] = spec[:, :end]
    index = starts[:, None] + np.arange(AUDIO_SNIPPET_FRAMES)[None, :]  # (n, 20)
    return np.ascontiguousarray(padded[:, index].transpose(1, 0, 2))


def strip_height_check() -> None:
    """The halving constant and the strip height must agree (guards edits of config)."""
    assert STRIP_HEIGHT_PX // STRIP_DOWNSCALE == SHEET_SNIPPET_HEIGHT_PX
