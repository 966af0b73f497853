"""Writing arrays as PNG files (for `--png` outputs and diagnostics) without any GUI toolkit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pymupdf

# A perceptually ordered colour ramp (dark blue -> green -> yellow), 5 anchors interpolated to 256.
_RAMP_ANCHORS = np.array(
    [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64
)


def colour_ramp(values: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """Map values in [0, 1] (any shape) to RGB uint8 (shape + (3,)); NaN maps to black."""
    v = np.asarray(values, dtype=np.float64)
    nan = np.isnan(v)
    v = np.clip(np.nan_to_num(v), 0.0, 1.0) * (len(_RAMP_ANCHORS) - 1)
    lo = np.floor(v).astype(int).clip(0, len(_RAMP_ANCHORS) - 2)
    t = (v - lo)[..., None]
    rgb = _RAMP_ANCHORS[lo] * (1 - t) + _RAMP_ANCHORS[lo + 1] * t
    rgb[nan] = 0
    out: npt.NDArray[np.uint8] = rgb.round().astype(np.uint8)
    return out


def save_png(path: str | Path, image: npt.NDArray[np.uint8]) -> Path:
    """Save (H, W) grayscale or (H, W, 3) RGB uint8 as PNG; creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.ascontiguousarray(image, dtype=np.uint8)
    if img.ndim == 2:
        colorspace, n = pymupdf.csGRAY, 1
    elif img.ndim == 3 and img.shape[2] == 3:
        colorspace, n = pymupdf.csRGB, 3
    else:
        raise ValueError(f"expected (H, W) or (H, W, 3) uint8, got shape {img.shape}")
    h, w = img.shape[:2]
    pix = pymupdf.Pixmap(colorspace, w, h, img.tobytes(), False)
    assert pix.n == n
    pix.save(str(path))
    return path


def draw_rect(
    image: npt.NDArray[np.uint8],
    box: tuple[float, float, float, float],
    colour: tuple[int, int, int],
    width: int = 3,
) -> None:
    """Draw a rectangle outline (x0, y0, x1, y1 in pixels) into an (H, W, 3) image in place."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (int(round(c)) for c in box)
    x0, x1 = max(0, min(x0, w - 1)), max(0, min(x1, w - 1))
    y0, y1 = max(0, min(y0, h - 1)), max(0, min(y1, h - 1))
    c = np.array(colour, dtype=np.uint8)
    image[y0 : min(y0 + width, h), x0 : x1 + 1] = c
    image[max(y1 - width + 1, 0) : y1 + 1, x0 : x1 + 1] = c
    image[y0 : y1 + 1, x0 : min(x0 + width, w)] = c
    image[y0 : y1 + 1, max(x1 - width + 1, 0) : x1 + 1] = c
