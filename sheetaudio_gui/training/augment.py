"""Training-time degradations: make clean engraved pages look scanned or photographed, and clean
synthesised piano sound like a recording in a room.

The corpus is clean by construction (verovio pages, fluidsynth audio); real queries are not. These
functions degrade examples on the fly inside a data loader, so they are written for speed (a
160 x 1500 px system strip or one second of audio in a few milliseconds on one core) and for
reproducibility: every random choice comes from the `numpy.random.Generator` passed in, so the
same seed gives the same output.

Images are grayscale uint8 `(H, W)`, 0 = black ink, 255 = paper; every image function returns a
new uint8 `(H, W)` array of the same shape. Audio is mono float32 `(samples,)` at
`config.SAMPLE_RATE_HZ`; every audio function returns float32 of the same length, finite, in
[-1, 1]. The presets `degrade_scan`, `degrade_phone_photo` and `degrade_recording` draw random
parameters scaled by `strength` (0 = unchanged copy, 1 = the ranges below, up to 2 = harsher).

Internally the image presets keep one float32 buffer in grey levels [0, 255] and chain the
private `_..._f` steps; the public single-effect functions wrap the same steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pymupdf
import scipy.fft
import scipy.ndimage
import scipy.signal
import torch
import torch.nn.functional as F

from sheetaudio_gui import config

Image = npt.NDArray[np.uint8]  # (H, W) grayscale, 0 = ink, 255 = paper
FloatImage = npt.NDArray[np.float32]  # (H, W) grey levels in [0, 255]
Homography = npt.NDArray[np.float64]  # 3 x 3 forward map of centred pixel coordinates (x, y, 1)
Audio = npt.NDArray[np.float32]  # (samples,) mono, in [-1, 1]
NoiseKind = Literal["white", "pink", "hum"]

PAPER = 255.0  # grey level of blank paper
JPEG_BLOCK_PX = 8  # JPEG transform block size
# ITU-T T.81 Annex K.1 luminance quantisation table (quality 50), row = vertical frequency.
_JPEG_LUMA_Q50 = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.float32,
)
TEXTURE_CELL_PX = 4  # paper fibre / illumination field resolution (upsampled bilinearly)
RT60_DECAY_DB = 60.0  # RT60 is the time for energy to fall by this much
SOFT_CLIP_KNEE = 0.8  # |x| below this passes unchanged through the soft clipper (full scale = 1)
HUM_HARMONICS = 8  # mains hum: fundamental plus overtones up to this order


# ===================================================== presets: parameter ranges at strength 1 ==
@dataclass(frozen=True)
class ScanDegradation:
    """Ranges for `degrade_scan` at strength 1 (each scales linearly with strength)."""

    ink_thicken_px: float = 0.8  # stroke width change drawn from [-ink_thin_px, +ink_thicken_px]
    ink_thin_px: float = 0.4
    p_ink: float = 0.5  # probability of changing the ink thickness
    bleed_opacity: float = 0.15  # verso darkening at full ink, drawn from [0, this]
    p_bleed: float = 0.35
    texture: float = 0.04  # relative std of the paper fibre modulation
    rotation_deg: float = 2.0  # rotation drawn from [-this, this]
    skew: float = 0.01  # horizontal shear (x shift per px of y), from [-this, this]
    scale: float = 0.05  # scale drawn from [1 - this, 1 + this]
    shift_px: float = 5.0  # shift in x and y drawn from [-this, this]
    p_geometry: float = 0.8
    blur_sigma_px: float = 1.0  # Gaussian blur sigma drawn from [0, this]
    p_blur: float = 0.5
    illumination: float = 0.08  # brightness gradient across the longer side
    noise_sigma: float = 6.0  # sensor noise std in grey levels, drawn from [0, this]
    speck_fraction: float = 0.0008  # fraction of pixels turned into salt / pepper specks
    contrast: float = 0.15  # contrast factor drawn from [1 - this, 1 + this / 2]
    gamma: float = 0.3  # gamma drawn from [1 / (1 + this), 1 + this]
    jpeg_quality_min: float = 30.0  # JPEG quality drawn from [this, 95] at strength 1
    p_jpeg: float = 0.4


@dataclass(frozen=True)
class PhotoDegradation:
    """Ranges for `degrade_phone_photo` at strength 1 (each scales linearly with strength)."""

    ink_thicken_px: float = 0.6
    ink_thin_px: float = 0.3
    p_ink: float = 0.4
    texture: float = 0.03
    rotation_deg: float = 2.0
    keystone: float = 0.08  # relative width change across the longer side (perspective)
    scale: float = 0.05
    shift_px: float = 5.0
    blur_sigma_px: float = 1.4  # defocus / hand shake, sigma drawn from [0.3, this]
    p_blur: float = 0.8
    illumination: float = 0.3  # gradient + vignetting depth
    shadow: float = 0.35  # depth of a soft-edged shadow (hand, phone)
    p_shadow: float = 0.5
    paper_level: float = 0.25  # paper grey drawn from [255 (1 - this), 255]
    ink_level: float = 0.25  # ink grey drawn from [0, 255 * this]
    noise_sigma: float = 8.0
    gamma: float = 0.3
    jpeg_quality_min: float = 40.0
    p_jpeg: float = 0.7


@dataclass(frozen=True)
class RecordingDegradation:
    """Ranges for `degrade_recording` at strength 1 (each scales linearly with strength)."""

    eq_gain_db: float = 8.0  # shelf / peak gains drawn from [-this, this]
    p_eq: float = 0.8
    rt60_s: float = 1.2  # reverberation time drawn from [0.15, 0.15 + this]
    wet: float = 0.5  # reverberant share of the mix, from [0.05, this]
    p_reverb: float = 0.6
    snr_db_worst: float = 15.0  # noise SNR drawn from [this, 45 dB] at strength 1
    p_noise: float = 0.9
    p_hum: float = 0.2  # probability that the noise is mains hum rather than white/pink
    gain_db: float = 12.0  # level change drawn from [-this, this / 2]; loud ones soft-clip


SCAN = ScanDegradation()
PHOTO = PhotoDegradation()
RECORDING = RecordingDegradation()


# ================================================================= image: float building blocks ==
def _to_float(image: Image) -> FloatImage:
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"expected a grayscale (H, W) image, got shape {img.shape}")
    return img.astype(np.float32)


def _to_uint8(f: FloatImage) -> Image:
    out: Image = np.clip(f + 0.5, 0.0, 255.0).astype(np.uint8)  # round half up, then saturate
    return out


def _blur_f(f: FloatImage, sigma_px: float) -> FloatImage:
    if sigma_px < 0.2:  # kernel weight off-centre < 1e-5: a no-op at uint8 precision
        return f
    out: FloatImage = scipy.ndimage.gaussian_filter(f, sigma_px, mode="nearest", truncate=2.5)
    return out


def _smooth121_f(f: FloatImage) -> FloatImage:
    """Cheap separable [1, 2, 1] / 4 blur (sigma ~0.7 px), edges replicated."""
    p = np.pad(f, 1, mode="edge")
    v = 0.25 * p[:-2] + 0.5 * p[1:-1] + 0.25 * p[2:]
    out: FloatImage = 0.25 * v[:, :-2] + 0.5 * v[:, 1:-1] + 0.25 * v[:, 2:]
    return out


def _triangular_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> FloatImage:
    """Zero-mean, unit-std noise, the sum of two uniform bytes.

    Close enough to Gaussian for sensor noise and ~6x faster than `standard_normal` (0.3 vs
    2 ms per strip), which matters inside a data loader.
    """
    n = math.prod(shape)
    b = np.frombuffer(rng.bytes(2 * n), dtype=np.uint8).reshape(2, n)
    s = b[0].astype(np.float32) + b[1].astype(np.float32)
    # each byte has variance (256^2 - 1) / 12; the sum has mean 255
    out: FloatImage = ((s - 255.0) * (1.0 / math.sqrt((256.0**2 - 1.0) / 6.0))).reshape(shape)
    return out


def _noise_f(f: FloatImage, rng: np.random.Generator, sigma: float) -> FloatImage:
    if sigma <= 0.0:
        return f
    out: FloatImage = f + sigma * _triangular_noise(rng, f.shape)
    return out


def _specks_f(
    f: FloatImage, rng: np.random.Generator, fraction: float, salt_ratio: float = 0.5
) -> FloatImage:
    n = int(round(fraction * f.size))
    if n <= 0:
        return f
    out = f.copy()
    flat = out.reshape(-1)
    idx = rng.integers(0, f.size, n)
    salt = rng.random(n) < salt_ratio
    flat[idx[salt]] = PAPER
    flat[idx[~salt]] = 0.0
    return out


def _ink_f(f: FloatImage, amount_px: float) -> FloatImage:
    """Grow (amount > 0) or shrink (< 0) dark strokes by about `amount_px` in width.

    Whole pixels use 2 x 2 grey erosion / dilation steps (one step widens a stroke by one pixel
    and moves it by half a pixel, which the geometric jitter swamps); the fraction blends.
    """
    if abs(amount_px) < 1e-3:
        return f
    steps = int(math.ceil(abs(amount_px)))
    frac = abs(amount_px) - (steps - 1)
    pick = np.minimum if amount_px > 0 else np.maximum
    cur = f
    for i in range(steps):
        p = np.pad(cur, ((0, 1), (0, 1)), mode="edge")
        nxt = pick(pick(p[:-1, :-1], p[1:, :-1]), pick(p[:-1, 1:], p[1:, 1:]))
        cur = nxt if i < steps - 1 else cur + np.float32(frac) * (nxt - cur)
    return cur


def _bleed_f(f: FloatImage, verso: FloatImage, opacity: float) -> FloatImage:
    """Darken `f` where the (already mirrored, same-shape) verso has ink."""
    if opacity <= 0.0:
        return f
    ink = 1.0 - _smooth121_f(verso) * np.float32(1.0 / PAPER)  # 1 where the verso is black
    out: FloatImage = f * (1.0 - np.float32(opacity) * ink)
    return out


def _fit_to(verso: FloatImage, shape: tuple[int, int]) -> FloatImage:
    """Crop or pad (with paper) `verso` to `shape`, anchored top-left."""
    h, w = shape
    out = np.full(shape, PAPER, dtype=np.float32)
    hh, ww = min(h, verso.shape[0]), min(w, verso.shape[1])
    out[:hh, :ww] = verso[:hh, :ww]
    return out


def _cell_grid(h: int, w: int) -> tuple[int, int]:
    return max(2, -(-h // TEXTURE_CELL_PX) + 1), max(2, -(-w // TEXTURE_CELL_PX) + 1)


def _upsample(field: npt.NDArray[np.float32], h: int, w: int) -> FloatImage:
    """Bilinear upsampling of a coarse (h', w') field to (h, w)."""
    t = torch.from_numpy(np.ascontiguousarray(field, dtype=np.float32))[None, None]
    up = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=True)
    out: FloatImage = up[0, 0].numpy()
    return out


def _texture_coarse(
    rng: np.random.Generator, grid: tuple[int, int], amount: float
) -> npt.NDArray[np.float32]:
    """Multiplicative paper fibre field `1 + amount * n` on the coarse grid."""
    if amount <= 0.0:
        return np.ones(grid, dtype=np.float32)
    n = rng.standard_normal(grid, dtype=np.float32)
    out: npt.NDArray[np.float32] = 1.0 + np.float32(amount) * n
    return out


def _illumination_coarse(
    rng: np.random.Generator,
    grid: tuple[int, int],
    shape: tuple[int, int],
    gradient: float,
    vignette: float,
    shadow: float,
) -> npt.NDArray[np.float32]:
    """Smooth brightness field in (0, 1] on the coarse grid; its maximum is 1.

    Coordinates are measured in units of the longer image side, so a system strip gets the gentle
    slice of a page-sized gradient that it would have on the page, not a full vignette.
    """
    h, w = shape
    ref = float(max(h, w))
    y = np.linspace(-0.5 * h / ref, 0.5 * h / ref, grid[0], dtype=np.float32)[:, None]
    x = np.linspace(-0.5 * w / ref, 0.5 * w / ref, grid[1], dtype=np.float32)[None, :]
    phi = rng.uniform(0.0, 2.0 * math.pi)
    field = np.float32(gradient) * (math.cos(phi) * x + math.sin(phi) * y)
    if vignette > 0.0:
        cx, cy = rng.uniform(-0.2, 0.2, 2) * np.array([w / ref, h / ref])
        field = field - np.float32(2.0 * vignette) * ((x - cx) ** 2 + (y - cy) ** 2)
    if shadow > 0.0:
        psi = rng.uniform(0.0, 2.0 * math.pi)
        d = rng.uniform(-0.3, 0.3)
        soft = rng.uniform(0.01, 0.08)  # edge width, in units of the longer side
        s = (math.cos(psi) * x + math.sin(psi) * y - d) / soft
        field = field + np.log1p(-np.float32(shadow) / (1.0 + np.exp(-s)))
    # field is a log-brightness for the gradient/vignette/shadow mix; exponentiate and peak at 1
    light = np.exp(field - field.max()).astype(np.float32)
    return np.broadcast_to(light, grid).astype(np.float32)


def _homography(
    shape: tuple[int, int],
    angle_deg: float = 0.0,
    scale: float = 1.0,
    shift_px: tuple[float, float] = (0.0, 0.0),
    shear: float = 0.0,
    keystone: tuple[float, float] = (0.0, 0.0),
) -> npt.NDArray[np.float64]:
    """Forward 3 x 3 map from centred source pixel coordinates (x, y) to centred output ones.

    Order: scale, shear, rotation (positive = counter-clockwise on screen), perspective, shift.
    `keystone = (kv, kh)`: relative width change between top and bottom rows (kv) and height change
    between left and right columns (kh), per length of the longer side.
    """
    h, w = shape
    ref = float(max(h, w))
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    # y points down, so a counter-clockwise turn on screen is x' = c x + s y, y' = -s x + c y
    rot = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
    sc = np.diag([scale, scale, 1.0])
    sh = np.array([[1.0, shear, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    kv, kh = keystone
    # a denominator below 1 magnifies: kv > 0 enlarges the bottom rows, kh > 0 the right columns
    persp = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-kh / ref, -kv / ref, 1.0]])
    tr = np.array([[1.0, 0.0, shift_px[0]], [0.0, 1.0, shift_px[1]], [0.0, 0.0, 1.0]])
    out: npt.NDArray[np.float64] = tr @ persp @ rot @ sh @ sc
    return out


def _warp_f(f: FloatImage, forward: npt.NDArray[np.float64]) -> FloatImage:
    """Resample `f` (H, W) under the forward homography `forward`; outside the page is paper.

    Bilinear `torch.grid_sample` on a sampling grid built from broadcast row/column vectors:
    ~1.2 ms per 160 x 1500 strip against ~6 ms for `scipy.ndimage.affine_transform`.
    """
    h, w = f.shape
    inv = np.linalg.inv(forward).astype(np.float32)
    x = (np.arange(w, dtype=np.float32) - np.float32((w - 1) / 2))[None, :]
    y = (np.arange(h, dtype=np.float32) - np.float32((h - 1) / 2))[:, None]
    den = inv[2, 0] * x + inv[2, 1] * y + inv[2, 2]
    grid = np.empty((1, h, w, 2), dtype=np.float32)
    # grid_sample with align_corners=True: -1 and +1 are the centres of the edge pixels
    grid[0, :, :, 0] = (
        (inv[0, 0] * x + inv[0, 1] * y + inv[0, 2]) / den * np.float32(2 / max(w - 1, 1))
    )
    grid[0, :, :, 1] = (
        (inv[1, 0] * x + inv[1, 1] * y + inv[1, 2]) / den * np.float32(2 / max(h - 1, 1))
    )
    ink = torch.from_numpy(PAPER - f)[None, None]  # zero padding of ink = blank paper outside
    out = F.grid_sample(ink, torch.from_numpy(grid), mode="bilinear", align_corners=True)
    res: FloatImage = np.float32(PAPER) - out[0, 0].numpy()
    return res


def _tone_lut(contrast: float, gamma: float, ink: float = 0.0, paper: float = PAPER) -> Image:
    """256-entry tone curve: gamma on [0, 1], contrast about mid-grey, then ink/paper levels."""
    v = np.arange(256, dtype=np.float64) / 255.0
    v = v**gamma
    v = 0.5 + contrast * (v - 0.5)
    v = ink + (paper - ink) * v
    lut: Image = np.clip(np.round(v), 0, 255).astype(np.uint8)
    return lut


def _jpeg_quant_table(quality: float) -> npt.NDArray[np.float32]:
    """The IJG libjpeg scaling of the Annex K table for quality 1..100, without the 8-bit
    baseline limit (pymupdf does not force it; its round trips match this table)."""
    q = min(max(int(round(quality)), 1), 100)
    scale = 5000.0 / q if q < 50 else 200.0 - 2.0 * q
    table = np.floor((_JPEG_LUMA_Q50 * scale + 50.0) / 100.0)
    out: npt.NDArray[np.float32] = np.clip(table, 1.0, 32767.0).astype(np.float32)
    return out


def _dct_matrix(n: int = JPEG_BLOCK_PX) -> npt.NDArray[np.float32]:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    d = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
    d[0] /= np.sqrt(2.0)
    out: npt.NDArray[np.float32] = d.astype(np.float32)
    return out


_DCT8 = _dct_matrix()


def _jpeg_dct(image: Image, quality: float) -> Image:
    """The lossy part of baseline JPEG: 8 x 8 DCT, quantisation, inverse DCT (grayscale).

    Entropy coding is lossless, so this gives the same pixels as a real codec up to rounding
    inside the codec's integer DCT (tests compare it with pymupdf's encoder). Two batched
    matrix products per direction make it ~5x faster than a pymupdf encode/decode round trip.
    """
    h, w = image.shape
    b = JPEG_BLOCK_PX
    hp, wp = -(-h // b) * b, -(-w // b) * b
    x = np.pad(image, ((0, hp - h), (0, wp - w)), mode="edge").astype(np.float32) - 128.0
    d = _DCT8
    q = _jpeg_quant_table(quality)[None, :, None, :]
    q_inv = np.float32(1.0 + 1e-5) / q
    c = np.matmul(d, x.reshape(hp // b, b, wp))  # columns: (hp/8, 8, wp)
    c = np.matmul(c.reshape(hp, wp // b, b), d.T)  # rows: (hp, wp/8, 8)
    c4 = c.reshape(hp // b, b, wp // b, b)
    # libjpeg rounds halves away from zero (a white block's DC is exactly 63.5 steps at quality
    # 50); the 1e-5 nudge in q_inv does the same despite float32 error (rint rounds to even)
    np.multiply(c4, q_inv, out=c4)
    np.rint(c4, out=c4)
    np.multiply(c4, q, out=c4)
    r = np.matmul(c4.reshape(hp, wp // b, b), d)
    r = np.matmul(d.T, r.reshape(hp // b, b, wp)).reshape(hp, wp)
    return _to_uint8(r[:h, :w] + 128.0)


def _jpeg_pymupdf(image: Image, quality: float) -> Image:
    """A real JPEG encode / decode round trip through pymupdf's (libjpeg) codec."""
    h, w = image.shape
    pix = pymupdf.Pixmap(pymupdf.csGRAY, w, h, np.ascontiguousarray(image).tobytes(), False)
    data = pix.tobytes("jpg", jpg_quality=int(round(min(max(quality, 1), 100))))
    back = pymupdf.Pixmap(data)
    if back.n != 1:
        back = pymupdf.Pixmap(pymupdf.csGRAY, back)
    out: Image = np.frombuffer(back.samples, dtype=np.uint8).reshape(h, w).copy()
    return out


# ========================================================================= image: public effects ==
def gaussian_blur(image: Image, sigma_px: float) -> Image:
    """Optical blur (out-of-focus scanner or camera): (H, W) uint8 -> (H, W) uint8."""
    return _to_uint8(_blur_f(_to_float(image), sigma_px))


def add_sensor_noise(image: Image, rng: np.random.Generator, sigma: float) -> Image:
    """Additive zero-mean sensor noise with std `sigma` grey levels: (H, W) -> (H, W)."""
    return _to_uint8(_noise_f(_to_float(image), rng, sigma))


def salt_and_pepper(
    image: Image, rng: np.random.Generator, fraction: float, salt_ratio: float = 0.5
) -> Image:
    """Dust and holes: `fraction` of the pixels turn black or white (`salt_ratio` of them white)."""
    return _to_uint8(_specks_f(_to_float(image), rng, fraction, salt_ratio))


def jpeg_compress(image: Image, quality: float, codec: Literal["dct", "pymupdf"] = "dct") -> Image:
    """JPEG artefacts at `quality` (1..100): (H, W) uint8 -> (H, W) uint8.

    `codec="dct"` (default, fast) quantises 8 x 8 DCT blocks with the standard tables in numpy;
    `codec="pymupdf"` runs a real encode / decode through pymupdf.
    """
    img = np.ascontiguousarray(image, dtype=np.uint8)
    if img.ndim != 2:
        raise ValueError(f"expected a grayscale (H, W) image, got shape {img.shape}")
    return _jpeg_dct(img, quality) if codec == "dct" else _jpeg_pymupdf(img, quality)


def warp(image: Image, **geometry: Any) -> Image:
    """One bilinear resample for rotation, scale, shift (x, y), shear and keystone perspective.

    All about the image centre; the area uncovered at the borders is paper. `geometry`: the
    keywords of `warp_with_geometry` (see `_homography` for their meaning). (H, W) uint8 ->
    (H, W) uint8.
    """
    return warp_with_geometry(image, **geometry)[0]


def warp_with_geometry(
    image: Image,
    angle_deg: float = 0.0,
    scale: float = 1.0,
    shift_px: tuple[float, float] = (0.0, 0.0),
    shear: float = 0.0,
    keystone: tuple[float, float] = (0.0, 0.0),
) -> tuple[Image, Homography]:
    """`warp`, also returning its forward homography, so that ground truth can move with the ink
    (`map_points`, `map_box`)."""
    f = _to_float(image)
    fwd: Homography = _homography(f.shape, angle_deg, scale, shift_px, shear, keystone)
    return _to_uint8(_warp_f(f, fwd)), fwd


def rotate(image: Image, angle_deg: float) -> Image:
    """Rotate about the centre; positive = counter-clockwise on screen (right end goes up)."""
    return warp(image, angle_deg=angle_deg)


def skew(image: Image, shear: float) -> Image:
    """Horizontal shear: row y (from the centre) moves by `shear * y` pixels to the right."""
    return warp(image, shear=shear)


def keystone(image: Image, vertical: float, horizontal: float = 0.0) -> Image:
    """Perspective of a phone held at an angle.

    `vertical` > 0 makes the bottom row wider than the top row (< 0: the top wider); the width
    ratio is about 1 + vertical * H / max(H, W). `horizontal` likewise makes the right side taller
    than the left, by about 1 + horizontal * W / max(H, W).
    """
    return warp(image, keystone=(vertical, horizontal))


def scale_and_shift(
    image: Image, scale: float, shift_px: tuple[float, float] = (0.0, 0.0)
) -> Image:
    """Zoom about the centre by `scale` (e.g. 0.95..1.05), then move by (dx, dy) pixels."""
    return warp(image, scale=scale, shift_px=shift_px)


def uneven_illumination(
    image: Image,
    rng: np.random.Generator,
    gradient: float = 0.1,
    vignette: float = 0.0,
    shadow: float = 0.0,
) -> Image:
    """Multiply by a smooth brightness field whose maximum is 1.

    `gradient`: log-brightness change per longer side in a random direction; `vignette`: darkening
    towards the corners; `shadow`: depth (0..1) of a soft-edged shadow over a random half-plane.
    """
    f = _to_float(image)
    grid = _cell_grid(*f.shape)
    light = _illumination_coarse(rng, grid, f.shape, gradient, vignette, shadow)
    return _to_uint8(f * _upsample(light, *f.shape))


def paper_texture(image: Image, rng: np.random.Generator, amount: float = 0.04) -> Image:
    """Fibre texture: multiply by `1 + amount * noise` smoothed over ~4 px cells (paper only)."""
    f = _to_float(image)
    grid = _cell_grid(*f.shape)
    field = np.minimum(_upsample(_texture_coarse(rng, grid, amount), *f.shape), 1.0)
    return _to_uint8(f * field)


def bleed_through(image: Image, verso: Image, opacity: float = 0.15) -> Image:
    """Show the back of the page: a faint, left-right mirrored, softened copy of `verso`.

    `verso` (any size, cropped or padded with paper to the shape of `image`) is the other side of
    the sheet as it would be scanned on its own; `opacity` is how much full ink darkens the paper.
    """
    f = _to_float(image)
    v = _fit_to(_to_float(verso)[:, ::-1], f.shape)
    return _to_uint8(_bleed_f(f, v, opacity))


def contrast_gamma(
    image: Image,
    contrast: float = 1.0,
    gamma: float = 1.0,
    ink_level: float = 0.0,
    paper_level: float = PAPER,
) -> Image:
    """Tone curve by look-up table: gamma, contrast about mid-grey, then map black to `ink_level`
    and white to `paper_level` (a photo's grey paper and dark-grey ink)."""
    img = np.asarray(image, dtype=np.uint8)
    out: Image = np.take(_tone_lut(contrast, gamma, ink_level, paper_level), img)
    return out


def ink_thickness(image: Image, amount_px: float) -> Image:
    """Thicken (> 0) or thin (< 0) the ink strokes by about `amount_px` pixels of width."""
    return _to_uint8(_ink_f(_to_float(image), amount_px))


# ============================================================================== image: presets ==
def _check_strength(strength: float) -> None:
    if not 0.0 <= strength <= 2.0:
        raise ValueError(f"strength must be in [0, 2], got {strength}")


def scan_with_geometry(
    image: Image,
    rng: np.random.Generator,
    strength: float = 1.0,
    verso: Image | None = None,
    ranges: ScanDegradation = SCAN,
) -> tuple[Image, Homography]:
    """A flatbed scan of a printed page: (H, W) uint8 -> (H, W) uint8.

    Ink thickness, bleed-through (of `verso`, or of the image itself mirrored and shifted, which
    has the same staff layout as a real verso), paper texture, slight rotation / skew / scale /
    shift, blur, a faint illumination gradient, sensor noise, specks, tone curve, JPEG.
    `strength=0` returns an unchanged copy. Also returns the page geometry's forward homography
    (see `map_points`) so that evaluation can move true boxes with the ink.
    """
    _check_strength(strength)
    fwd: Homography = np.eye(3)
    if strength == 0.0:
        return np.array(image, dtype=np.uint8, copy=True), fwd
    s, r = strength, ranges
    f = _to_float(image)
    h, w = f.shape
    if rng.random() < r.p_ink:
        f = _ink_f(f, rng.uniform(-r.ink_thin_px * s, r.ink_thicken_px * s))
    if rng.random() < min(1.0, r.p_bleed * s):
        if verso is None:
            back = np.roll(f[:, ::-1], int(rng.integers(-h // 4, h // 4 + 1)), axis=0)
        else:
            back = _fit_to(_to_float(verso)[:, ::-1], (h, w))
        f = _bleed_f(f, back, rng.uniform(0.3, 1.0) * r.bleed_opacity * s)
    grid = _cell_grid(h, w)
    field = _texture_coarse(rng, grid, rng.uniform(0.0, r.texture * s))
    field = np.minimum(field, 1.0) * _illumination_coarse(
        rng, grid, (h, w), rng.uniform(0.0, r.illumination * s), 0.0, 0.0
    )
    f *= _upsample(field, h, w)
    if rng.random() < r.p_geometry:
        fwd = _homography(
            (h, w),
            angle_deg=rng.uniform(-1.0, 1.0) * r.rotation_deg * s,
            scale=1.0 + rng.uniform(-1.0, 1.0) * r.scale * s,
            shift_px=(
                rng.uniform(-1.0, 1.0) * r.shift_px * s,
                rng.uniform(-1.0, 1.0) * r.shift_px * s,
            ),
            shear=rng.uniform(-1.0, 1.0) * r.skew * s,
        )
        f = _warp_f(f, fwd)
    if rng.random() < r.p_blur:
        f = _blur_f(f, rng.uniform(0.0, r.blur_sigma_px * s))
    f = _noise_f(f, rng, rng.uniform(0.0, r.noise_sigma * s))
    f = _specks_f(f, rng, rng.uniform(0.0, r.speck_fraction * s))
    lut = _tone_lut(
        contrast=1.0 + rng.uniform(-1.0, 0.5) * r.contrast * s,
        gamma=(1.0 + r.gamma * s) ** rng.uniform(-1.0, 1.0),
    )
    out: Image = np.take(lut, _to_uint8(f))  # 1.7x faster than lut[...]
    if rng.random() < r.p_jpeg:
        quality = max(95.0 - rng.uniform(0.0, 1.0) * (95.0 - r.jpeg_quality_min) * s, 10.0)
        out = _jpeg_dct(out, quality)
    return out, fwd


def phone_photo_with_geometry(
    image: Image,
    rng: np.random.Generator,
    strength: float = 1.0,
    ranges: PhotoDegradation = PHOTO,
) -> tuple[Image, Homography]:
    """A phone photo of a printed page: (H, W) uint8 -> (H, W) uint8.

    Keystone perspective and rotation, defocus blur, strong uneven light (gradient, vignetting,
    sometimes a soft shadow), grey paper and dark-grey ink, sensor noise, gamma, JPEG.
    `strength=0` returns an unchanged copy. Also returns the forward homography (`map_points`).
    """
    _check_strength(strength)
    if strength == 0.0:
        return np.array(image, dtype=np.uint8, copy=True), np.eye(3)
    s, r = strength, ranges
    f = _to_float(image)
    h, w = f.shape
    if rng.random() < r.p_ink:
        f = _ink_f(f, rng.uniform(-r.ink_thin_px * s, r.ink_thicken_px * s))
    fwd = _homography(
        (h, w),
        angle_deg=rng.uniform(-1.0, 1.0) * r.rotation_deg * s,
        scale=1.0 + rng.uniform(-1.0, 1.0) * r.scale * s,
        shift_px=(rng.uniform(-1.0, 1.0) * r.shift_px * s, rng.uniform(-1.0, 1.0) * r.shift_px * s),
        keystone=(
            rng.uniform(-1.0, 1.0) * r.keystone * s,
            rng.uniform(-1.0, 1.0) * r.keystone * s,
        ),
    )
    f = _warp_f(f, fwd)
    if rng.random() < r.p_blur:
        f = _blur_f(f, rng.uniform(0.3, r.blur_sigma_px) * min(s, 1.0) + 0.2 * max(s - 1.0, 0.0))
    grid = _cell_grid(h, w)
    shadow = rng.uniform(0.3, 1.0) * r.shadow * s if rng.random() < r.p_shadow else 0.0
    light = _illumination_coarse(
        rng,
        grid,
        (h, w),
        gradient=rng.uniform(0.0, r.illumination * s),
        vignette=rng.uniform(0.0, r.illumination * s),
        shadow=min(shadow, 0.9),
    )
    field = np.minimum(_texture_coarse(rng, grid, rng.uniform(0.0, r.texture * s)), 1.0) * light
    paper = PAPER * (1.0 - rng.uniform(0.0, r.paper_level * s))
    ink = PAPER * rng.uniform(0.0, r.ink_level * s)
    # levels before light and noise: the camera sees grey paper, unevenly lit, through its sensor
    f = (np.float32(ink) + f * np.float32((paper - ink) / PAPER)) * _upsample(field, h, w)
    f = _noise_f(f, rng, rng.uniform(0.2, 1.0) * r.noise_sigma * s)
    lut = _tone_lut(contrast=1.0, gamma=(1.0 + r.gamma * s) ** rng.uniform(-1.0, 1.0))
    out: Image = np.take(lut, _to_uint8(f))  # 1.7x faster than lut[...]
    if rng.random() < r.p_jpeg:
        quality = max(95.0 - rng.uniform(0.0, 1.0) * (95.0 - r.jpeg_quality_min) * s, 10.0)
        out = _jpeg_dct(out, quality)
    return out, fwd


def degrade_scan(
    image: Image,
    rng: np.random.Generator,
    strength: float = 1.0,
    verso: Image | None = None,
    ranges: ScanDegradation = SCAN,
) -> Image:
    """A flatbed scan of a printed page: (H, W) uint8 -> (H, W) uint8 (`scan_with_geometry`)."""
    return scan_with_geometry(image, rng, strength, verso, ranges)[0]


def degrade_phone_photo(
    image: Image,
    rng: np.random.Generator,
    strength: float = 1.0,
    ranges: PhotoDegradation = PHOTO,
) -> Image:
    """A phone photo of a printed page: (H, W) -> (H, W) uint8 (see `phone_photo_with_geometry`)."""
    return phone_photo_with_geometry(image, rng, strength, ranges)[0]


def map_points(
    forward: Homography, shape: tuple[int, int], xy: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Where page pixels (n, 2) as (x, y) land under a warp of a page of `shape` (H, W)."""
    h, w = shape
    pts = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    centre = np.array([(w - 1) / 2, (h - 1) / 2])
    homogeneous = np.column_stack([pts - centre, np.ones(len(pts))]) @ forward.T
    out: npt.NDArray[np.float64] = homogeneous[:, :2] / homogeneous[:, 2:3] + centre
    return out


def map_box(
    forward: Homography, shape: tuple[int, int], box: tuple[float, ...]
) -> tuple[float, float, float, float]:
    """The axis-aligned box around a warped box (x0, y0, x1, y1), in the warped page's pixels."""
    x0, y0, x1, y1 = box[:4]
    corners = map_points(forward, shape, [(x0, y0), (x1, y0), (x0, y1), (x1, y1)])
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


# ================================================================================ audio effects ==
def _to_audio(audio: npt.ArrayLike) -> Audio:
    a = np.asarray(audio)
    if a.ndim != 1:
        raise ValueError(f"expected mono audio of shape (samples,), got shape {a.shape}")
    out: Audio = a.astype(np.float32)
    return out


def _finish(y: npt.NDArray[np.floating]) -> Audio:
    """Cast to float32, replace non-finite values by 0 and hard-limit to [-1, 1]."""
    out: Audio = np.clip(np.nan_to_num(y.astype(np.float32), nan=0.0), -1.0, 1.0)
    return out


def _power(x: npt.NDArray[np.floating]) -> float:
    return float(np.mean(np.square(x, dtype=np.float64))) if x.size else 0.0


def _pink(rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
    """1/f (pink) noise by shaping white noise in the frequency domain."""
    if n == 0:
        return np.zeros(0)
    m = scipy.fft.next_fast_len(n, real=True)
    spec = scipy.fft.rfft(rng.standard_normal(m))
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    spec /= np.sqrt(f)
    spec[0] = 0.0
    out: npt.NDArray[np.float64] = scipy.fft.irfft(spec, m)[:n]
    return out


def _hum(
    rng: np.random.Generator, n: int, mains_hz: float, sample_rate_hz: float
) -> npt.NDArray[np.float64]:
    """Mains hum: the mains frequency and its overtones, odd ones stronger (a ground loop)."""
    t = np.arange(n) / sample_rate_hz
    f0 = mains_hz * (1.0 + rng.uniform(-0.002, 0.002))  # grid frequency wanders slightly
    y = np.zeros(n)
    for k in range(1, HUM_HARMONICS + 1):
        if k * f0 >= sample_rate_hz / 2:
            break
        amp = (1.0 if k % 2 else 0.4) / k * rng.uniform(0.5, 1.0)
        y += amp * np.sin(2.0 * np.pi * k * f0 * t + rng.uniform(0.0, 2.0 * np.pi))
    return y


def make_noise(
    rng: np.random.Generator,
    n: int,
    kind: NoiseKind = "white",
    mains_hz: float = 50.0,
    sample_rate_hz: float = config.SAMPLE_RATE_HZ,
) -> npt.NDArray[np.float64]:
    """Noise of `kind` with unit mean power: (n,) float64."""
    if kind == "white":
        y = rng.standard_normal(n)
    elif kind == "pink":
        y = _pink(rng, n)
    elif kind == "hum":
        y = _hum(rng, n, mains_hz, sample_rate_hz)
    else:
        raise ValueError(f"unknown noise kind {kind!r}; use 'white', 'pink' or 'hum'")
    p = _power(y)
    out: npt.NDArray[np.float64] = y / math.sqrt(p) if p > 0 else y
    return out


def add_noise(
    audio: Audio,
    rng: np.random.Generator,
    snr_db: float,
    kind: NoiseKind = "white",
    mains_hz: float = 50.0,
    sample_rate_hz: float = config.SAMPLE_RATE_HZ,
) -> Audio:
    """Add noise so that mean signal power / mean noise power = `snr_db` over the whole clip.

    (samples,) -> (samples,). Silence is treated as a -40 dBFS signal so that it still gets noise.
    The sum is hard-limited to [-1, 1] (a signal with headroom is not touched).
    """
    x = _to_audio(audio)
    ref = max(_power(x), 1e-4)
    noise = make_noise(rng, x.size, kind, mains_hz, sample_rate_hz)
    return _finish(x + noise * math.sqrt(ref * 10.0 ** (-snr_db / 10.0)))


def _biquad_sos(
    kind: Literal["low_shelf", "high_shelf", "peak"],
    freq_hz: float,
    gain_db: float,
    q: float,
    sample_rate_hz: float,
) -> npt.NDArray[np.float64]:
    """One second-order section (b0, b1, b2, 1, a1, a2) of the standard audio-EQ biquads."""
    amp = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * math.pi * min(freq_hz, 0.45 * sample_rate_hz) / sample_rate_hz
    cw, alpha = math.cos(w0), math.sin(w0) / (2.0 * q)
    if kind == "peak":
        b = [1 + alpha * amp, -2 * cw, 1 - alpha * amp]
        a = [1 + alpha / amp, -2 * cw, 1 - alpha / amp]
    else:
        sq = 2.0 * math.sqrt(amp) * alpha
        sign = 1.0 if kind == "low_shelf" else -1.0
        # low shelf and high shelf differ by the sign of the cosine terms and which side is boosted
        b = [
            amp * ((amp + 1) - sign * (amp - 1) * cw + sq),
            sign * 2 * amp * ((amp - 1) - sign * (amp + 1) * cw),
            amp * ((amp + 1) - sign * (amp - 1) * cw - sq),
        ]
        a = [
            (amp + 1) + sign * (amp - 1) * cw + sq,
            -sign * 2 * ((amp - 1) + sign * (amp + 1) * cw),
            (amp + 1) + sign * (amp - 1) * cw - sq,
        ]
    sos: npt.NDArray[np.float64] = np.array([*b, *a], dtype=np.float64) / a[0]
    return sos


def equalise(
    audio: Audio,
    bands: list[tuple[Literal["low_shelf", "high_shelf", "peak"], float, float, float]],
    sample_rate_hz: float = config.SAMPLE_RATE_HZ,
) -> Audio:
    """Apply EQ bands `(kind, freq_hz, gain_db, q)` in series: (samples,) -> (samples,)."""
    x = _to_audio(audio)
    if not bands or x.size == 0:
        return _finish(x)
    sos = np.stack([_biquad_sos(k, f, g, q, sample_rate_hz) for k, f, g, q in bands])
    return _finish(scipy.signal.sosfilt(sos, x))


def random_eq(
    audio: Audio,
    rng: np.random.Generator,
    max_gain_db: float = 6.0,
    sample_rate_hz: float = config.SAMPLE_RATE_HZ,
) -> Audio:
    """A random microphone / room colouring: low shelf (60-300 Hz), high shelf (2-8 kHz) and one or
    two peaking bands (150 Hz-5 kHz, Q 0.5-2), gains from [-max_gain_db, max_gain_db]."""
    g = max_gain_db
    bands: list[tuple[Literal["low_shelf", "high_shelf", "peak"], float, float, float]] = [
        ("low_shelf", math.exp(rng.uniform(math.log(60), math.log(300))), rng.uniform(-g, g), 0.7),
        (
            "high_shelf",
            math.exp(rng.uniform(math.log(2e3), math.log(8e3))),
            rng.uniform(-g, g),
            0.7,
        ),
    ]
    for _ in range(int(rng.integers(1, 3))):
        freq = math.exp(rng.uniform(math.log(150), math.log(5e3)))
        bands.append(("peak", freq, rng.uniform(-g, g), rng.uniform(0.5, 2.0)))
    return equalise(audio, bands, sample_rate_hz)


def reverb_impulse_response(
    rng: np.random.Generator, rt60_s: float, sample_rate_hz: float = config.SAMPLE_RATE_HZ
) -> npt.NDArray[np.float64]:
    """Synthetic diffuse-field response: noise under an exponential envelope whose energy falls by
    60 dB in `rt60_s`, 1.2 x RT60 long, unit energy: (taps,) float64."""
    n = max(2, int(round(1.2 * rt60_s * sample_rate_hz)))
    t = np.arange(n) / sample_rate_hz
    # energy down 60 dB at t = RT60 means amplitude down by 10^-3
    env = np.power(10.0, -(RT60_DECAY_DB / 20.0) * t / rt60_s)
    ir = rng.standard_normal(n) * env
    out: npt.NDArray[np.float64] = ir / math.sqrt(float(np.sum(ir**2)))
    return out


def reverb(
    audio: Audio,
    rng: np.random.Generator,
    rt60_s: float,
    wet: float = 0.3,
    sample_rate_hz: float = config.SAMPLE_RATE_HZ,
) -> Audio:
    """Room reverb, FFT convolution with `reverb_impulse_response`: (samples,) -> (samples,).

    `wet` in [0, 1] is the reverberant share of the mix. The tail past the clip is dropped (the
    length is kept); if the mix would exceed full scale it is scaled down as a whole, so the
    effect stays linear.
    """
    x = _to_audio(audio)
    if rt60_s <= 0.0 or wet <= 0.0 or x.size == 0:
        return _finish(x)
    ir = reverb_impulse_response(rng, rt60_s, sample_rate_hz)
    tail = scipy.signal.oaconvolve(x.astype(np.float64), ir)[: x.size]
    y = (1.0 - wet) * x + wet * tail
    peak = float(np.max(np.abs(y)))
    return _finish(y / peak if peak > 1.0 else y)


def soft_clip(audio: npt.ArrayLike, knee: float = SOFT_CLIP_KNEE) -> Audio:
    """Identity below `knee`, then a tanh curve approaching +-1 smoothly (slope 1 at the knee)."""
    x = np.asarray(audio, dtype=np.float32)
    a = np.abs(x)
    over = a > knee
    if not np.any(over):
        return _finish(x)
    y = x.copy()
    room = 1.0 - knee
    y[over] = np.sign(x[over]) * (knee + room * np.tanh((a[over] - knee) / room))
    return _finish(y)


def change_gain(audio: Audio, gain_db: float, knee: float = SOFT_CLIP_KNEE) -> Audio:
    """Level change by `gain_db`; peaks above `knee` are soft-clipped like a saturating preamp."""
    return soft_clip(_to_audio(audio) * np.float32(10.0 ** (gain_db / 20.0)), knee)


def degrade_recording(
    audio: Audio,
    rng: np.random.Generator,
    strength: float = 1.0,
    ranges: RecordingDegradation = RECORDING,
    sample_rate_hz: float = config.SAMPLE_RATE_HZ,
) -> Audio:
    """A recording of the piano in a room: EQ, reverb, background noise or hum, level change.

    (samples,) float -> (samples,) float32 in [-1, 1]; `strength=0` returns an unchanged copy.
    """
    _check_strength(strength)
    x = _to_audio(audio)
    if strength == 0.0:
        return x.copy()
    s, r = strength, ranges
    if rng.random() < r.p_eq:
        x = random_eq(x, rng, r.eq_gain_db * s, sample_rate_hz)
    if rng.random() < r.p_reverb:
        rt60 = 0.15 + rng.uniform(0.0, r.rt60_s * s)
        x = reverb(x, rng, rt60, min(rng.uniform(0.05, r.wet) * s, 1.0), sample_rate_hz)
    if rng.random() < r.p_noise:
        snr = 45.0 - rng.uniform(0.0, 1.0) * (45.0 - r.snr_db_worst) * s
        if rng.random() < r.p_hum:
            mains = 50.0 if rng.random() < 0.5 else 60.0
            x = add_noise(x, rng, snr + 10.0, "hum", mains, sample_rate_hz)  # hum is tonal: quieter
        else:
            kind: NoiseKind = "pink" if rng.random() < 0.6 else "white"
            x = add_noise(x, rng, snr, kind, sample_rate_hz=sample_rate_hz)
    return change_gain(x, rng.uniform(-1.0, 0.5) * r.gain_db * s)
