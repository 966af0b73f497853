"""Snippets: system strips are normalised to one staff spacing; windows slide with fixed hops."""

from __future__ import annotations

import numpy as np
import pytest

from sheetaudio_gui.config import (
    AUDIO_SNIPPET_FRAMES,
    AUDIO_SNIPPET_HOP_FRAMES,
    SHEET_SNIPPET_HEIGHT_PX,
    SHEET_SNIPPET_HOP_PX,
    SHEET_SNIPPET_WIDTH_PX,
    SPEC_BINS,
    STAFF_SPACE_PX,
    STRIP_DOWNSCALE,
)
from sheetaudio_gui.core.snippets import (
    audio_windows,
    sheet_windows,
    system_strip,
    whiten_paper,
    window_starts,
)


def grand_staff_page(space: int, top: int, left: int = 100, right: int = 900) -> np.ndarray:
    """A white page with two 5-line staves `space` px apart, the second 10 spaces below the first.

    Lines are about 0.12 staff spaces thick, as engravers draw them.
    """
    page = np.full((1200, 1000), 255, dtype=np.uint8)
    thick = max(1, round(0.12 * space))
    for staff_top in (top, top + 10 * space):
        for k in range(5):
            y = staff_top + k * space
            page[y : y + thick, left:right] = 0
    return page


def line_rows(strip: np.ndarray) -> np.ndarray:
    """Rows of a strip whose darkness marks a staff line (local minima of mean brightness)."""
    profile = strip.mean(axis=1)
    return np.flatnonzero(profile < 235)


@pytest.mark.parametrize("space", [9, 12, 17])
def test_strip_puts_staff_lines_at_the_normalised_spacing_whatever_the_page_resolution(space):
    top = 300
    page = grand_staff_page(space, top)
    box = (100.0, float(top), 900.0, float(top + 14 * space))
    strip = system_strip(page, box, staff_space_px=float(space))
    assert strip.shape[0] == SHEET_SNIPPET_HEIGHT_PX
    rows = line_rows(strip)
    # merge adjacent dark rows into line centres
    groups = np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1)
    centres = np.array([g.mean() for g in groups])
    assert len(centres) == 10
    expected_space = STAFF_SPACE_PX / STRIP_DOWNSCALE
    assert np.allclose(np.diff(centres[:5]), expected_space, atol=0.6)
    # the system is vertically centred in the strip
    assert abs((centres[0] + centres[-1]) / 2 - SHEET_SNIPPET_HEIGHT_PX / 2) < 1.5


def test_strip_width_follows_the_same_scale_and_keeps_a_margin():
    space = 12
    page = grand_staff_page(space, 300)
    strip = system_strip(page, (100.0, 300.0, 900.0, 468.0), staff_space_px=space)
    scale = STAFF_SPACE_PX / space / STRIP_DOWNSCALE
    assert strip.shape[1] == pytest.approx((800 + 2 * space) * scale, abs=2)


def test_strip_of_a_system_at_the_page_edge_is_padded_with_paper():
    page = grand_staff_page(12, 2, left=0)
    strip = system_strip(page, (0.0, 2.0, 900.0, 170.0), staff_space_px=12)
    assert strip.shape[0] == SHEET_SNIPPET_HEIGHT_PX
    assert strip[:3].min() == 255  # above the page: paper, not garbage


def test_window_starts_cover_the_whole_length_with_the_given_hop():
    starts = window_starts(500, 90, 81)
    assert starts[0] == 0
    assert np.all(np.diff(starts) == 81)
    assert starts[-1] + 90 >= 500 > starts[-1]
    assert list(window_starts(50, 90, 81)) == [0]


def test_sheet_windows_are_80_by_90_with_hop_81_and_match_the_strip():
    rng = np.random.default_rng(0)
    strip = rng.integers(0, 256, size=(SHEET_SNIPPET_HEIGHT_PX, 400), dtype=np.uint8)
    windows = sheet_windows(strip)
    assert windows.shape == (5, SHEET_SNIPPET_HEIGHT_PX, SHEET_SNIPPET_WIDTH_PX)
    assert np.array_equal(windows[1], strip[:, SHEET_SNIPPET_HOP_PX : SHEET_SNIPPET_HOP_PX + 90])
    assert windows[-1][:, 400 - 4 * 81 :].min() == 255  # padding past the strip end is paper


def test_audio_windows_are_92_by_20_with_hop_18_and_match_the_spectrogram():
    spec = np.random.default_rng(1).random((SPEC_BINS, 100)).astype(np.float32)
    windows = audio_windows(spec)
    assert windows.shape[1:] == (SPEC_BINS, AUDIO_SNIPPET_FRAMES)
    assert len(windows) == int(np.ceil((100 - 20) / AUDIO_SNIPPET_HOP_FRAMES)) + 1
    assert np.array_equal(windows[2], spec[:, 36:56])
    assert np.all(windows[-1][:, 100 - 5 * 18 :] == 0)


def test_wrong_shapes_are_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="spectrogram"):
        audio_windows(np.zeros((40, 10)))
    with pytest.raises(ValueError, match="strip"):
        sheet_windows(np.zeros((10, 100), dtype=np.uint8))


def skewed_staff_page(space: int, skew_deg: float) -> tuple[np.ndarray, tuple[float, ...]]:
    """One 5-line staff 800 px long whose lines descend to the right by `skew_deg` (a turned scan),
    and the axis-aligned box that encloses its lines."""
    page = np.full((1200, 1000), 255, dtype=np.uint8)
    tan = np.tan(np.radians(skew_deg))
    top = 500
    for x in range(100, 900):
        drop = int(round((x - 500) * tan))
        for k in range(5):
            page[top + k * space + drop, x] = 0
    reach = abs(400 * tan)
    return page, (100.0, top - reach, 900.0, top + 4 * space + reach)


def rows_dark_all_along(strip: np.ndarray) -> np.ndarray:
    """Rows dark in 80 % of the columns or more: staff lines that run straight along the strip."""
    return np.flatnonzero((strip < 200).mean(axis=1) >= 0.8)


@pytest.mark.parametrize("skew_deg", [-2.0, 1.0, 2.0])
def test_strip_of_a_turned_page_follows_the_lines_so_they_run_straight(skew_deg):
    space = 12
    page, box = skewed_staff_page(space, skew_deg)
    straight = system_strip(page, box, staff_space_px=space, skew_deg=skew_deg, margin_spaces=0)
    turned = system_strip(page, box, staff_space_px=space, margin_spaces=0)
    rows = rows_dark_all_along(straight)
    centres = [g.mean() for g in np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1)]
    assert len(centres) == 5
    assert np.allclose(np.diff(centres), STAFF_SPACE_PX / STRIP_DOWNSCALE, atol=0.6)
    # cut axis-aligned, every line climbs or falls across the strip: none runs straight along it
    assert len(rows_dark_all_along(turned)) == 0


def test_strip_of_a_part_of_a_turned_system_pivots_on_the_whole_system():
    space, skew = 12, 2.0
    page, box = skewed_staff_page(space, skew)
    whole = system_strip(page, box, staff_space_px=space, skew_deg=skew, margin_spaces=0.0)
    right_half = system_strip(
        page, (500.0, box[1], 900.0, box[3]), space, 0.0, skew_deg=skew, pivot_x=500.0
    )
    # the right half cut alone shows the lines at the same heights as the whole system does
    assert np.array_equal(rows_dark_all_along(right_half), rows_dark_all_along(whole))


def test_strip_of_an_unturned_page_is_the_same_with_or_without_a_pivot():
    page = grand_staff_page(12, 300)
    box = (100.0, 300.0, 900.0, 468.0)
    assert np.array_equal(
        system_strip(page, box, 12.0), system_strip(page, box, 12.0, skew_deg=0.0, pivot_x=0.0)
    )


def test_grey_unevenly_lit_paper_is_whitened_and_the_ink_stays_dark():
    page = grand_staff_page(12, 300).astype(np.float64)
    light = np.linspace(0.7, 0.9, page.shape[1])[None, :]  # a photo: grey paper, lit from the right
    photo = np.round(page * light).astype(np.uint8)
    strip = system_strip(photo, (100.0, 300.0, 900.0, 468.0), staff_space_px=12)
    clean = system_strip(page.astype(np.uint8), (100.0, 300.0, 900.0, 468.0), staff_space_px=12)
    paper = clean == 255
    assert np.percentile(strip[paper], 5) >= 250
    assert np.array_equal(line_rows(strip), line_rows(clean))


def test_white_paper_is_left_exactly_as_it_is():
    rng = np.random.default_rng(0)
    strip = np.full((SHEET_SNIPPET_HEIGHT_PX, 300), 255, dtype=np.uint8)
    strip[rng.random(strip.shape) < 0.05] = rng.integers(0, 200, size=1)[0]
    assert np.array_equal(whiten_paper(strip), strip)
