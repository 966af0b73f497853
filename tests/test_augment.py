"""Augmentations: scans, phone photos and room recordings made from clean pages and clean audio.

Every effect is checked on values it must produce (a 10 dB SNR measures 10 dB, a 0.5 s RT60 decays
60 dB in 0.5 s, a 2 degree turn moves a line's ends where trigonometry says), and the presets on
what a data loader relies on: same seed same output, shape / dtype / range kept, strength 0 = copy.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from sheetaudio_gui.config import SAMPLE_RATE_HZ, STAFF_SPACE_PX, STRIP_HEIGHT_PX
from sheetaudio_gui.training import augment as A

SR = SAMPLE_RATE_HZ


# ------------------------------------------------------------------------------- test material --
def staff_strip(width: int = 1500) -> np.ndarray:
    """A 160 px system strip: two 5-line staves (8 px spacing), filled noteheads with stems."""
    img = np.full((STRIP_HEIGHT_PX, width), 255, np.uint8)
    space = int(STAFF_SPACE_PX)
    tops = (30, 30 + 10 * space)
    for top in tops:
        for k in range(5):
            img[top + k * space, 20 : width - 20] = 0
    yy, xx = np.mgrid[0:STRIP_HEIGHT_PX, 0:width]
    for i, x in enumerate(range(80, width - 40, 45)):
        top = tops[i % 2]
        y = top + (i * 3) % 9 * space // 2
        img[((xx - x) / 5.0) ** 2 + ((yy - y) / 3.6) ** 2 <= 1.0] = 0
        img[y - 28 : y, x + 4 : x + 6] = 0  # stem
    return img


def piano_like(seconds: float, amplitude: float = 0.5) -> np.ndarray:
    """Decaying harmonic tones, a new one every 0.25 s: (samples,) float32."""
    t = np.arange(int(seconds * SR)) / SR
    y = np.zeros_like(t)
    for i, start in enumerate(np.arange(0.0, seconds, 0.25)):
        f0 = 220.0 * 2 ** ((i * 5 % 12) / 12)
        tt = np.clip(t - start, 0.0, None)
        on = t >= start
        for h in range(1, 6):
            y += on * np.sin(2 * np.pi * h * f0 * tt) * np.exp(-3.0 * tt) / h
    return (amplitude * y / np.max(np.abs(y))).astype(np.float32)


def db(power_ratio: float) -> float:
    return 10.0 * math.log10(power_ratio)


def rms_gain_db(before: np.ndarray, after: np.ndarray) -> float:
    half = before.size // 2  # skip the filter's transient
    return db(float(np.mean(after[half:] ** 2) / np.mean(before[half:] ** 2)))


def sine(freq_hz: float, seconds: float = 1.0, amplitude: float = 0.25) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


# ------------------------------------------------------------------------------------- presets --
IMAGE_PRESETS = [A.degrade_scan, A.degrade_phone_photo]


@pytest.mark.parametrize("preset", IMAGE_PRESETS)
def test_image_preset_at_strength_zero_returns_an_unchanged_copy(preset) -> None:
    strip = staff_strip()
    out = preset(strip, np.random.default_rng(0), strength=0.0)
    assert out is not strip
    np.testing.assert_array_equal(out, strip)


def test_recording_preset_at_strength_zero_returns_an_unchanged_copy() -> None:
    audio = piano_like(1.0)
    out = A.degrade_recording(audio, np.random.default_rng(0), strength=0.0)
    assert out is not audio
    np.testing.assert_array_equal(out, audio)


@pytest.mark.parametrize("preset", IMAGE_PRESETS)
def test_image_preset_same_seed_same_output_other_seed_other_output(preset) -> None:
    strip = staff_strip()
    a = preset(strip, np.random.default_rng(7))
    b = preset(strip, np.random.default_rng(7))
    c = preset(strip, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert np.mean(a != c) > 0.1


def test_recording_preset_same_seed_same_output_other_seed_other_output() -> None:
    audio = piano_like(1.0)
    a = A.degrade_recording(audio, np.random.default_rng(7))
    b = A.degrade_recording(audio, np.random.default_rng(7))
    c = A.degrade_recording(audio, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert np.max(np.abs(a - c)) > 1e-3


@pytest.mark.parametrize("preset", IMAGE_PRESETS)
@pytest.mark.parametrize("shape", [(160, 1500), (157, 1001), (401, 300), (3, 5), (1, 1)])
def test_image_preset_keeps_shape_and_uint8(preset, shape) -> None:
    img = np.tile(staff_strip(max(shape[1], 100)), (3, 1))[: shape[0], : shape[1]]
    for seed in range(3):
        out = preset(img, np.random.default_rng(seed), strength=2.0)
        assert out.shape == shape
        assert out.dtype == np.uint8


@pytest.mark.parametrize("preset", IMAGE_PRESETS)
def test_image_preset_keeps_ink_darker_than_paper_without_erasing_or_spreading_it(preset) -> None:
    from scipy.ndimage import maximum_filter

    strip = staff_strip()
    ink_fraction = np.mean(strip < 128)
    for seed in range(10):
        out = preset(strip, np.random.default_rng(seed)).astype(float)
        # ink = clearly darker than the paper around it (paper brightness varies over the page);
        # blur greys thin staff lines and thickening doubles them, hence the wide bounds
        dark = np.mean(out < 0.7 * maximum_filter(out, (31, 31)))
        assert 0.2 * ink_fraction < dark < 3.0 * ink_fraction
        assert np.mean(np.abs(out - strip)) > 1.0  # something did happen


def test_scan_preset_shows_the_verso_it_is_given_through_the_paper() -> None:
    blank = np.full((100, 200), 255, np.uint8)
    verso = blank.copy()
    verso[:, :100] = 0  # the left half of the back is black: it shows on the right of the front
    ranges = A.ScanDegradation(
        p_bleed=1.0, bleed_opacity=0.3, p_ink=0.0, p_geometry=0.0, p_blur=0.0, p_jpeg=0.0
    )
    out = A.degrade_scan(blank, np.random.default_rng(3), verso=verso, ranges=ranges)
    right, left = out[10:-10, 120:190].mean(), out[10:-10, 10:80].mean()
    assert right < left - 0.3 * 0.3 * 255 * 0.5


@pytest.mark.parametrize("length", [0, 1, 10, SR // 2, 3 * SR])
@pytest.mark.parametrize("loudness", [0.0, 0.5, 1.0])
def test_recording_preset_keeps_length_float32_finite_and_full_scale(length, loudness) -> None:
    audio = np.sign(piano_like(max(length, SR) / SR)[:length]) * loudness  # square-ish, clipping
    for seed in range(4):
        out = A.degrade_recording(audio.astype(np.float32), np.random.default_rng(seed), 2.0)
        assert out.shape == (length,)
        assert out.dtype == np.float32
        assert np.all(np.isfinite(out))
        assert np.all(np.abs(out) <= 1.0)


def test_presets_reject_strength_outside_zero_to_two() -> None:
    with pytest.raises(ValueError, match="strength"):
        A.degrade_scan(staff_strip(), np.random.default_rng(0), strength=-0.1)
    with pytest.raises(ValueError, match="strength"):
        A.degrade_recording(piano_like(0.5), np.random.default_rng(0), strength=2.5)


# ------------------------------------------------------------------------------ audio effects --
@pytest.mark.parametrize("kind", ["white", "pink", "hum"])
def test_noise_at_snr_10_db_measures_10_db(kind) -> None:
    clean = piano_like(2.0)
    noisy = A.add_noise(clean, np.random.default_rng(0), snr_db=10.0, kind=kind)
    measured = db(float(np.mean(clean**2) / np.mean((noisy - clean) ** 2)))
    assert measured == pytest.approx(10.0, abs=0.5)


def test_pink_noise_density_falls_10_db_per_decade() -> None:
    from scipy.signal import welch

    noise = A.make_noise(np.random.default_rng(1), 10 * SR, "pink")
    f, psd = welch(noise, fs=SR, nperseg=4096)
    at = {hz: psd[np.argmin(np.abs(f - hz))] for hz in (200.0, 2000.0)}
    # average a few bins around each frequency so the estimate is not one noisy bin
    band = {hz: psd[(f > hz / 1.1) & (f < hz * 1.1)].mean() for hz in at}
    assert db(band[200.0] / band[2000.0]) == pytest.approx(10.0, abs=1.0)


def test_60_hz_hum_puts_its_energy_on_60_hz_harmonics_not_on_50() -> None:
    hum = A.make_noise(np.random.default_rng(2), 2 * SR, "hum", mains_hz=60.0)
    spectrum = np.abs(np.fft.rfft(hum * np.hanning(hum.size))) ** 2
    freqs = np.fft.rfftfreq(hum.size, 1.0 / SR)

    def power_near(hz: float) -> float:  # the mains frequency may wander by 0.2 %
        return float(spectrum[np.abs(freqs - hz) <= 2.0].sum())

    harmonics = sum(power_near(60.0 * k) for k in range(1, 9))
    assert harmonics > 0.999 * spectrum.sum()
    assert power_near(50.0) < 1e-4 * power_near(60.0)


def test_reverb_with_rt60_half_a_second_decays_a_click_by_60_db_in_half_a_second() -> None:
    click_at = int(0.1 * SR)
    x = np.zeros(int(1.5 * SR), np.float32)
    x[click_at] = 0.5
    y = A.reverb(x, np.random.default_rng(3), rt60_s=0.5, wet=1.0).astype(np.float64)
    assert np.max(np.abs(y[:click_at])) < 1e-9  # causal: nothing before the click
    tail = y[click_at:]
    window = int(0.02 * SR)

    def level_db(t: float) -> float:
        i = int(t * SR)
        return db(float(np.mean(tail[i : i + window] ** 2)))

    assert level_db(0.0) - level_db(0.5) == pytest.approx(60.0, abs=4.0)
    # Schroeder backward integration, straight-line fit from -5 to -25 dB, extrapolated to -60
    edc = np.cumsum(tail[::-1] ** 2)[::-1]
    edc_db = 10.0 * np.log10(edc / edc[0])
    fit = (edc_db <= -5.0) & (edc_db >= -25.0)
    slope_db_per_s = np.polyfit(np.flatnonzero(fit) / SR, edc_db[fit], 1)[0]
    assert -60.0 / slope_db_per_s == pytest.approx(0.5, abs=0.05)


def test_reverb_keeps_the_length_and_the_dry_signal_when_wet_is_zero() -> None:
    audio = piano_like(1.0)
    out = A.reverb(audio, np.random.default_rng(0), rt60_s=1.0, wet=0.0)
    np.testing.assert_array_equal(out, audio)
    wet = A.reverb(audio, np.random.default_rng(0), rt60_s=1.0, wet=0.5)
    assert wet.shape == audio.shape
    assert np.max(np.abs(wet - audio)) > 0.01


def test_low_shelf_boosts_low_notes_and_leaves_high_ones() -> None:
    bands = [("low_shelf", 200.0, 6.0, 0.7)]
    assert rms_gain_db(sine(40.0), A.equalise(sine(40.0), bands)) == pytest.approx(6.0, abs=0.5)
    assert rms_gain_db(sine(5e3), A.equalise(sine(5e3), bands)) == pytest.approx(0.0, abs=0.3)


def test_high_shelf_cuts_high_notes_and_leaves_low_ones() -> None:
    bands = [("high_shelf", 3000.0, -6.0, 0.7)]
    assert rms_gain_db(sine(9e3), A.equalise(sine(9e3), bands)) == pytest.approx(-6.0, abs=0.7)
    assert rms_gain_db(sine(100.0), A.equalise(sine(100.0), bands)) == pytest.approx(0.0, abs=0.3)


def test_peaking_band_has_its_full_gain_at_its_centre_frequency() -> None:
    bands = [("peak", 1000.0, -9.0, 1.5)]
    assert rms_gain_db(sine(1e3), A.equalise(sine(1e3), bands)) == pytest.approx(-9.0, abs=0.1)
    assert rms_gain_db(sine(100.0), A.equalise(sine(100.0), bands)) == pytest.approx(0.0, abs=0.3)


def test_random_eq_stays_within_its_gain_range() -> None:
    noise = A.make_noise(np.random.default_rng(0), SR, "white").astype(np.float32) * 0.1
    for seed in range(5):
        out = A.random_eq(noise, np.random.default_rng(seed), max_gain_db=6.0)
        # overlapping bands can add up, but not beyond the sum of the four maximal gains
        assert abs(rms_gain_db(noise, out)) < 4 * 6.0
        assert out.shape == noise.shape


def test_soft_clip_passes_quiet_samples_and_bends_loud_ones_below_full_scale() -> None:
    x = np.linspace(-3.0, 3.0, 6001, dtype=np.float32)
    y = A.soft_clip(x, knee=0.8)
    quiet = np.abs(x) <= 0.8
    np.testing.assert_array_equal(y[quiet], x[quiet])
    assert np.all(np.abs(y) <= 1.0)
    assert np.all(np.diff(y) >= 0.0)  # monotonic: no fold-over
    assert np.all(np.abs(y[~quiet]) <= np.abs(x[~quiet]))
    assert y[-1] > 0.99


def test_minus_6_db_gain_halves_the_amplitude_and_plus_20_db_stays_in_range() -> None:
    audio = piano_like(0.5, amplitude=0.5)
    np.testing.assert_allclose(A.change_gain(audio, -20 * math.log10(2)), audio / 2, atol=1e-6)
    loud = A.change_gain(audio, 20.0)
    assert np.max(np.abs(loud)) <= 1.0
    assert np.max(np.abs(loud)) > 0.95


# ------------------------------------------------------------------------------ image effects --
def dark_centroid(img: np.ndarray, rows: slice, cols: slice) -> tuple[float, float]:
    """(x, y) centre of mass of the darkness 255 - img inside a window."""
    d = 255.0 - img[rows, cols].astype(float)
    yy, xx = np.mgrid[rows, cols]
    return float((d * xx).sum() / d.sum()), float((d * yy).sum() / d.sum())


def test_rotation_by_2_degrees_moves_a_horizontal_lines_ends_by_trigonometry() -> None:
    img = np.full((201, 1001), 255, np.uint8)  # centre (500, 100)
    img[100, 200:801] = 0  # ends at 300 px left and right of the centre
    out = A.rotate(img, 2.0)  # counter-clockwise on screen: the right end goes up
    a = math.radians(2.0)
    ink_cols = np.flatnonzero((out < 128).any(axis=0))
    assert ink_cols[0] == pytest.approx(500 - 300 * math.cos(a), abs=1.0)
    assert ink_cols[-1] == pytest.approx(500 + 300 * math.cos(a), abs=1.0)
    for x_end in (ink_cols[0] + 2, ink_cols[-1] - 2):
        _, y = dark_centroid(out, slice(60, 141), slice(x_end, x_end + 1))
        assert y == pytest.approx(100 - (x_end - 500) * math.tan(a), abs=0.2)
    assert 100 - 300 * math.sin(a) == pytest.approx(89.53, abs=0.01)  # the right end rose 10.5 px


def test_shift_moves_a_dot_by_exactly_the_shift() -> None:
    img = np.full((120, 200), 255, np.uint8)
    img[50:53, 90:93] = 0
    out = A.scale_and_shift(img, 1.0, shift_px=(3.4, -2.25))
    x, y = dark_centroid(out, slice(30, 80), slice(70, 120))
    assert (x, y) == (pytest.approx(91 + 3.4, abs=0.05), pytest.approx(51 - 2.25, abs=0.05))


def test_scale_105_percent_moves_dots_5_percent_away_from_the_centre() -> None:
    img = np.full((101, 401), 255, np.uint8)  # centre (200, 50)
    img[49:52, 49:52] = 0  # a dot 150 px left of the centre
    out = A.scale_and_shift(img, 1.05)
    x, y = dark_centroid(out, slice(30, 70), slice(20, 80))
    assert x == pytest.approx(200 - 1.05 * 150, abs=0.1)
    assert y == pytest.approx(50.0, abs=0.05)


def test_keystone_maps_corners_as_a_perspective_that_widens_the_bottom() -> None:
    size = 401  # centre 200, longer side 401
    img = np.full((size, size), 255, np.uint8)
    corners = [(-150, -150), (150, -150), (-150, 150), (150, 150)]
    for cx, cy in corners:
        img[200 + cy - 1 : 200 + cy + 2, 200 + cx - 1 : 200 + cx + 2] = 0
    out = A.keystone(img, vertical=0.1)
    for cx, cy in corners:
        den = 1.0 - 0.1 * cy / size
        ex, ey = 200 + cx / den, 200 + cy / den
        x, y = dark_centroid(
            out, slice(int(ey) - 12, int(ey) + 13), slice(int(ex) - 12, int(ex) + 13)
        )
        assert (x, y) == (pytest.approx(ex, abs=0.2), pytest.approx(ey, abs=0.2))
    # the bottom pair is now further apart than the top pair
    assert 300 / (1 - 0.1 * 150 / size) > 300 / (1 + 0.1 * 150 / size)


def test_warp_fills_the_uncovered_border_with_paper() -> None:
    out = A.warp(np.zeros((80, 300), np.uint8), angle_deg=2.0, shift_px=(5.0, 5.0))
    assert out[0, 0] == 255  # the corner came from outside the page
    assert out[40, 150] == 0


def test_gaussian_blur_spreads_a_thin_line_by_sigma_and_keeps_its_ink() -> None:
    img = np.full((40, 101), 255, np.uint8)
    img[:, 50] = 0
    out = A.gaussian_blur(img, 1.5)
    d = 255.0 - out[20].astype(float)
    x = np.arange(d.size)
    mean = (d * x).sum() / d.sum()
    std = math.sqrt((d * (x - mean) ** 2).sum() / d.sum())
    assert std == pytest.approx(1.5, abs=0.15)
    assert d.sum() == pytest.approx(255.0, rel=0.03)


def test_sensor_noise_has_the_requested_std_and_no_bias() -> None:
    grey = np.full((300, 300), 128, np.uint8)
    out = A.add_sensor_noise(grey, np.random.default_rng(0), sigma=5.0).astype(float)
    assert out.std() == pytest.approx(5.0, rel=0.04)
    assert out.mean() == pytest.approx(128.0, abs=0.1)


def test_salt_and_pepper_turns_the_given_fraction_black_or_white() -> None:
    grey = np.full((300, 300), 128, np.uint8)
    out = A.salt_and_pepper(grey, np.random.default_rng(0), fraction=0.01)
    changed = out != 128
    assert np.mean(changed) == pytest.approx(0.01, rel=0.05)  # a few land on the same pixel
    assert set(np.unique(out[changed])) == {0, 255}
    assert np.mean(out[changed] == 255) == pytest.approx(0.5, abs=0.05)


def test_jpeg_quality_20_changes_pixels_but_keeps_the_mean() -> None:
    strip = staff_strip()
    out = A.jpeg_compress(strip, 20)
    assert np.mean(out != strip) > 0.05
    assert out.mean() == pytest.approx(strip.mean(), abs=3.0)


@pytest.mark.parametrize("quality", [20, 50, 90])
def test_fast_dct_jpeg_matches_a_real_pymupdf_round_trip(quality) -> None:
    img = A.add_sensor_noise(staff_strip(600), np.random.default_rng(0), 4.0)
    fast = A.jpeg_compress(img, quality).astype(float)
    real = A.jpeg_compress(img, quality, codec="pymupdf").astype(float)
    assert np.mean(np.abs(fast - real)) < 0.2
    assert np.mean(np.abs(fast - img)) > 1.0  # and both really compress


def test_ink_thickening_widens_a_two_pixel_line_by_one_pixel_and_thinning_narrows_it() -> None:
    img = np.full((40, 60), 255, np.uint8)
    img[20:22, :] = 0
    thick = (A.ink_thickness(img, 1.0) < 128).sum(axis=0)
    thin = (A.ink_thickness(img, -1.0) < 128).sum(axis=0)
    assert np.all(thick[:-1] == 3)
    assert np.all(thin[:-1] == 1)
    half = A.ink_thickness(img, 0.5)
    assert half[19, 10] == pytest.approx(128, abs=2)  # half a pixel: a half-grey edge


def test_bleed_through_shows_the_verso_mirrored_and_faint() -> None:
    recto = np.full((50, 100), 255, np.uint8)
    recto[:, 80:85] = 0
    verso = np.full((50, 100), 255, np.uint8)
    verso[:, 10:30] = 0  # seen from the front it lies at columns 70..89
    out = A.bleed_through(recto, verso, opacity=0.2)
    assert out[25, 75] == pytest.approx(255 * 0.8, abs=1)
    assert out[25, 20] == 255
    assert out[25, 82] == 0  # the front's ink stays black


def test_paper_texture_mottles_the_paper_in_cells_and_leaves_the_ink() -> None:
    img = np.full((200, 300), 255, np.uint8)
    img[:, :10] = 0
    out = A.paper_texture(img, np.random.default_rng(0), amount=0.05).astype(float)
    paper = out[:, 20:]
    assert np.all(out[:, :10] == 0)
    assert 245.0 < paper.mean() < 254.0
    assert paper.std() > 2.0
    # smooth over ~4 px cells: neighbours are correlated, unlike sensor noise
    a, b = paper[:, :-1].ravel(), paper[:, 1:].ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.6


def test_uneven_illumination_dims_a_white_page_by_the_gradient_and_keeps_it_smooth() -> None:
    white = np.full((300, 300), 255, np.uint8)
    out = A.uneven_illumination(white, np.random.default_rng(0), gradient=0.3).astype(float)
    assert out.max() >= 254.0
    # log-brightness falls 0.3 per side length along a random direction: the far corner is
    # between exp(-0.3) (axis-aligned) and exp(-0.3 * sqrt 2) (diagonal) of the brightest
    assert math.exp(-0.3 * math.sqrt(2)) - 0.01 < out.min() / out.max() < math.exp(-0.3) + 0.01
    assert np.max(np.abs(np.diff(out, axis=1))) <= 2.0


def test_a_shadow_darkens_part_of_the_page_with_a_soft_edge() -> None:
    white = np.full((300, 300), 255, np.uint8)
    out = A.uneven_illumination(white, np.random.default_rng(4), 0.0, 0.0, shadow=0.5)
    assert out.min() == pytest.approx(255 * 0.5, abs=3)
    assert out.max() >= 254


def test_contrast_gamma_follows_its_tone_curve() -> None:
    ramp = np.arange(256, dtype=np.uint8)[None, :]
    assert A.contrast_gamma(ramp, gamma=2.0)[0, 128] == round(255 * (128 / 255) ** 2)
    levels = A.contrast_gamma(ramp, ink_level=40, paper_level=220)
    assert (levels[0, 0], levels[0, 255]) == (40, 220)
    flat = A.contrast_gamma(ramp, contrast=0.5)
    assert (flat[0, 0], flat[0, 255]) == (64, 191)


@pytest.mark.slow
def test_presets_are_cheap_enough_for_a_data_loader() -> None:
    import torch

    torch.set_num_threads(1)
    strip, audio, rng = staff_strip(), piano_like(1.0), np.random.default_rng(0)
    for name, run in [
        ("scan", lambda: A.degrade_scan(strip, rng)),
        ("photo", lambda: A.degrade_phone_photo(strip, rng)),
        ("recording", lambda: A.degrade_recording(audio, rng)),
    ]:
        run()
        start = time.perf_counter()
        for _ in range(100):
            run()
        ms = (time.perf_counter() - start) * 10.0
        assert ms < 10.0, f"{name}: {ms:.1f} ms per call (target < 5 ms)"


@pytest.mark.parametrize("preset", [A.scan_with_geometry, A.phone_photo_with_geometry])
def test_page_geometry_returned_by_a_preset_says_where_the_ink_went(preset) -> None:
    """Evaluation moves true system boxes with the page: a dot must land where map_points says."""
    page = np.full((400, 300), 255, np.uint8)
    dots = [(40, 50), (260, 60), (150, 200), (45, 350), (255, 340)]
    for x, y in dots:
        page[y - 3 : y + 4, x - 3 : x + 4] = 0
    for seed in range(2):
        out, forward = preset(page, np.random.default_rng(seed), strength=1.5)
        expected = A.map_points(forward, page.shape, dots)
        for (ex, ey), (x, y) in zip(expected, dots, strict=True):
            ix, iy = int(round(ex)), int(round(ey))
            patch = out[iy - 12 : iy + 13, ix - 12 : ix + 13].astype(float)
            yy, xx = np.mgrid[iy - 12 : iy + 13, ix - 12 : ix + 13]
            ink = np.clip(patch.max() - patch - 0.5 * (patch.max() - patch.min()), 0, None)
            assert ink.sum() > 0, (seed, x, y)
            cx, cy = (ink * xx).sum() / ink.sum(), (ink * yy).sum() / ink.sum()
            assert math.hypot(cx - ex, cy - ey) < 2.5, (seed, (x, y), (cx, cy), (ex, ey))


def test_map_box_of_the_identity_is_the_box_itself() -> None:
    box = (10.0, 20.0, 300.0, 80.0)
    assert A.map_box(np.eye(3), (400, 500), box) == pytest.approx(box)
