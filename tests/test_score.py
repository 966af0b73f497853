"""Score files open as grayscale pages, and staff systems are found on them (and only on them)."""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from scipy import ndimage

from sheetaudio_gui.config import PAGE_MAX_PIXELS, PAGE_RENDER_DPI
from sheetaudio_gui.core.errors import UnreadableScore
from sheetaudio_gui.core.score import System, detect_systems, open_score
from sheetaudio_gui.training.verovio_svg import SvgPage, mupdf_ready_svg, parse_verovio_svg

verovio = pytest.importorskip("verovio")
music21 = pytest.importorskip("music21")
pymupdf = pytest.importorskip("pymupdf")

Gray = npt.NDArray[np.uint8]
Box = tuple[float, float, float, float]
DPI = 150.0


def _iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union


def _engrave(xml: str, **options: object) -> tuple[Gray, SvgPage, float]:
    """First page of `xml` engraved by verovio on A4 and rasterised at 150 dpi."""
    tk = verovio.toolkit()
    tk.setOptions({"pageWidth": 2100, "pageHeight": 2970, "breaks": "auto", **options})
    tk.loadData(xml)
    svg = tk.renderToSVG(1)
    truth = parse_verovio_svg(svg)
    zoom = (210 / 25.4 * DPI) / truth.width
    doc = pymupdf.open(stream=mupdf_ready_svg(svg).encode(), filetype="svg")
    pix = doc[0].get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), colorspace=pymupdf.csGRAY)
    image = np.frombuffer(pix.samples, np.uint8).reshape(pix.h, pix.w).copy()
    return image, truth, zoom


@pytest.fixture(scope="module")
def chorale(tmp_path_factory: pytest.TempPathFactory) -> tuple[Gray, SvgPage, float]:
    """A Bach chorale (4 staves a system, lyrics, a title) in Leipzig."""
    path = tmp_path_factory.mktemp("score") / "chorale.musicxml"
    music21.corpus.parse("bach/bwv66.6").write("musicxml", fp=path)
    return _engrave(Path(path).read_text(), font="Leipzig", scale=40)


@pytest.fixture(scope="module")
def melody(tmp_path_factory: pytest.TempPathFactory) -> tuple[Gray, SvgPage, float]:
    """A single-staff tune of 24 bars: every system is one staff without a system barline."""
    bars = " ".join(["c4 d e f", "g2 a4 b", "c'1", "b4 a g f", "e d c2", "d4 e f g"] * 4)
    stream = music21.converter.parse("tinyNotation: 4/4 " + bars)
    path = tmp_path_factory.mktemp("score") / "melody.musicxml"
    stream.write("musicxml", fp=path)
    return _engrave(Path(path).read_text(), font="Bravura", scale=50)


def _assert_every_system_found(found: list[System], truth: list[Box]) -> None:
    assert len(found) == len(truth)
    for system, box in zip(found, truth, strict=True):  # both top to bottom
        assert _iou(system.box, box) >= 0.9


def test_every_system_of_a_chorale_page_is_found_with_its_four_staves(
    chorale: tuple[Gray, SvgPage, float],
) -> None:
    image, truth, zoom = chorale
    found = detect_systems(image)
    boxes = [
        (s.box[0] * zoom, s.box[1] * zoom, s.box[2] * zoom, s.box[3] * zoom) for s in truth.systems
    ]
    _assert_every_system_found(found, boxes)
    assert [len(s.staves) for s in found] == [len(s.staves) for s in truth.systems]
    lines = [y for s in found for staff in s.staves for y in staff.lines_y]
    expected = [y * zoom for s in truth.systems for staff in s.staves for y in staff.lines_y]
    assert np.abs(np.array(lines) - np.array(expected)).max() < 1.5  # px at 150 dpi
    assert found[0].staff_space == pytest.approx(expected[1] - expected[0], abs=0.3)


def test_single_staff_systems_are_found_one_by_one(melody: tuple[Gray, SvgPage, float]) -> None:
    image, truth, zoom = melody
    boxes = [
        (s.box[0] * zoom, s.box[1] * zoom, s.box[2] * zoom, s.box[3] * zoom) for s in truth.systems
    ]
    found = detect_systems(image)
    _assert_every_system_found(found, boxes)
    assert all(len(s.staves) == 1 for s in found)


def test_a_page_rotated_by_one_degree_gives_the_same_systems_and_its_skew(
    chorale: tuple[Gray, SvgPage, float],
) -> None:
    image, truth, zoom = chorale
    rotated = ndimage.rotate(image, -1.0, reshape=False, order=1, cval=255).astype(np.uint8)
    found = detect_systems(rotated)
    assert len(found) == len(truth.systems)
    assert all(s.skew_deg == pytest.approx(1.0, abs=0.15) for s in found)
    h, w = image.shape
    a = math.radians(1.0)
    for system, svg_system in zip(found, truth.systems, strict=True):
        # the truth box: the staff-line extent rotated about the page centre, then enclosed
        x0, y0, x1, y1 = (v * zoom for v in svg_system.box)
        corners = [(x, y) for x in (x0, x1) for y in (y0, y1)]
        xs = [w / 2 + (x - w / 2) * math.cos(a) - (y - h / 2) * math.sin(a) for x, y in corners]
        ys = [h / 2 + (x - w / 2) * math.sin(a) + (y - h / 2) * math.cos(a) for x, y in corners]
        assert _iou(system.box, (min(xs), min(ys), max(xs), max(ys))) >= 0.8


def test_a_page_photographed_at_an_angle_gives_every_system_with_its_own_slope(
    chorale: tuple[Gray, SvgPage, float],
) -> None:
    """A phone held at an angle (keystone) fans the staff lines out: the right side of the page is
    8 % taller than the left, so the top system's lines climb and the bottom one's fall."""
    from sheetaudio_gui.training.augment import map_points, warp_with_geometry

    image, truth, zoom = chorale
    photo, forward = warp_with_geometry(image, angle_deg=-0.5, keystone=(0.0, 0.08))
    found = detect_systems(photo)
    assert len(found) == len(truth.systems)
    for system, svg_system in zip(found, truth.systems, strict=True):
        x0, y0, x1, y1 = (v * zoom for v in svg_system.box)
        middle = (y0 + y1) / 2  # the lines fan out: compare the slope at the system's middle
        (ax, ay), (bx, by) = map_points(forward, image.shape, [(x0, middle), (x1, middle)])
        slope = math.degrees(math.atan2(by - ay, bx - ax))
        assert system.skew_deg == pytest.approx(slope, abs=0.25)
        corners = map_points(forward, image.shape, [(x, y) for x in (x0, x1) for y in (y0, y1)])
        moved = (corners[:, 0].min(), corners[:, 1].min(), corners[:, 0].max(), corners[:, 1].max())
        assert _iou(system.box, moved) >= 0.8
    slopes = [s.skew_deg for s in found]
    assert slopes[0] < slopes[-1] - 1.0  # the lines really fan out on this page


def _dense_grand_staff_page() -> Gray:
    """Two piano systems whose treble staff holds a chord in every column and long flat slurs
    through it (four voices reduced onto one staff), over a sparse bass staff."""
    rng = np.random.default_rng(3)
    page = pymupdf.open().new_page(width=600, height=420)

    def note(x: float, y: float) -> None:
        page.draw_oval(pymupdf.Rect(x - 3.5, y - 2.9, x + 3.5, y + 2.9), fill=(0, 0, 0), width=0)

    for top in (60, 240):
        for staff in (top, top + 60):
            for k in range(5):
                page.draw_line((40, staff + 6 * k), (570, staff + 6 * k), width=0.6)
        for x in (40, 170, 300, 430, 570):  # the system line and barlines through both staves
            page.draw_line((x, top), (x, top + 84), width=1.2 if x == 40 else 0.8)
        for x in np.arange(55, 565, 9.0):
            steps = rng.choice(np.arange(0, 9), size=rng.integers(3, 6), replace=False)
            for step in steps:
                note(x, top + 3 * step)
            stem_top = top + 3 * steps.min()
            page.draw_line((x + 3.3, stem_top), (x + 3.3, stem_top - 16), width=0.6)
        for _ in range(6):
            x0, y0 = rng.uniform(50, 350), top + rng.uniform(0, 24)
            y1 = y0 + rng.uniform(-2, 2)
            page.draw_bezier((x0, y0), (x0 + 60, y0 - 4), (x0 + 160, y0 - 4), (x0 + 220, y1))
        for x in np.arange(60, 565, 40.0):
            note(x, top + 60 + 3 * rng.integers(0, 9))
    pix = page.get_pixmap(matrix=pymupdf.Matrix(DPI / 72, DPI / 72), colorspace=pymupdf.csGRAY)
    return np.frombuffer(pix.samples, np.uint8).reshape(pix.h, pix.w).copy()


def test_a_treble_staff_full_of_chords_and_slurs_is_found_with_its_bass_staff() -> None:
    """Its spaces are ink in most columns, so it fails the paper-space test; measured against
    the bass staff's bare lines and joined to it by the system line, it is a staff all the same
    (before: each system was its bass staff alone, and a query of it missed the right hand)."""
    systems = detect_systems(_dense_grand_staff_page())
    px = DPI / 72
    assert len(systems) == 2
    for system, top in zip(systems, (60, 240), strict=True):
        assert len(system.staves) == 2
        for staff in system.staves:
            assert staff.x0 == pytest.approx(40 * px, abs=3) and staff.x1 == pytest.approx(
                570 * px, abs=3
            )
        assert system.box[1] == pytest.approx(top * px, abs=3)
        assert system.box[3] == pytest.approx((top + 84) * px, abs=3)


def _text_page(draw: str) -> Gray:
    """A 150-dpi A4 page of text with ruled lines: 'list' (6 rules 14 pt apart with a line of
    text between each), 'table' (5 rules 12 pt apart crossed by vertical rules, text in cells)
    or 'blank'."""
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    if draw != "blank":
        page.insert_text((72, 90), "Critical commentary", fontsize=22)
        text = "the source gives a different reading of the bass in bars 12 to 14 " * 12
        page.insert_textbox(pymupdf.Rect(72, 120, 523, 260), text, fontsize=11)
    for k in range(3 if draw != "blank" else 0):
        top = 300.0 + 160 * k
        if draw == "list":
            for r in range(6):
                page.draw_line((72, top + 14 * r), (523, top + 14 * r), width=0.6)
                page.insert_text((76, top + 14 * r + 11), f"Source {r}: autograph", fontsize=9)
        else:
            for r in range(5):
                page.draw_line((72, top + 12 * r), (523, top + 12 * r), width=0.6)
                for x in (90, 200, 340):
                    page.insert_text((x + 4, top + 12 * r + 9), f"A-{r} {x}", fontsize=7)
            for x in (72, 90, 200, 340, 523):
                page.draw_line((x, top), (x, top + 48), width=0.6)
    pix = page.get_pixmap(matrix=pymupdf.Matrix(DPI / 72, DPI / 72), colorspace=pymupdf.csGRAY)
    return np.frombuffer(pix.samples, np.uint8).reshape(pix.h, pix.w).copy()


@pytest.mark.parametrize("kind", ["list", "table", "blank"])
def test_text_pages_with_ruled_lists_or_tables_and_blank_pages_have_no_system(kind: str) -> None:
    assert detect_systems(_text_page(kind)) == []


def test_detection_rejects_an_image_that_is_not_a_2d_page() -> None:
    with pytest.raises(ValueError, match="grayscale"):
        detect_systems(np.zeros((10, 10, 3), np.uint8))


# --- files -------------------------------------------------------------------------------------


def test_png_and_jpeg_open_as_one_page_in_native_pixels(
    chorale: tuple[Gray, SvgPage, float], tmp_path: Path
) -> None:
    image = chorale[0]
    pix = pymupdf.Pixmap(pymupdf.csGRAY, image.shape[1], image.shape[0], image.tobytes(), False)
    for name in ("page.png", "page.jpg"):
        pix.save(tmp_path / name)
        with open_score(tmp_path / name) as doc:
            assert (doc.units, doc.page_count) == ("px", 1)
            page = doc.page(0)
            assert page.image.shape == image.shape
            assert (page.width, page.height, page.px_per_unit) == (
                image.shape[1],
                image.shape[0],
                1.0,
            )
            assert len(detect_systems(page.image)) == len(chorale[1].systems)


def test_multipage_tiff_opens_every_page_in_pixels(tmp_path: Path) -> None:
    pil = pytest.importorskip("PIL.Image")
    frames = [pil.new("L", (300 + 100 * k, 200), color=40 * k) for k in range(3)]
    path = tmp_path / "scan.tiff"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with open_score(path) as doc:
        assert (doc.units, doc.page_count) == ("px", 3)
        pages = list(doc.pages())
    assert [p.image.shape for p in pages] == [(200, 300), (200, 400), (200, 500)]
    assert [int(p.image.mean()) for p in pages] == [0, 40, 80]


def test_pdf_opens_in_points_rendered_at_the_page_dpi(engraved_pdf: Path) -> None:
    with open_score(engraved_pdf) as doc:
        assert doc.units == "pt"
        page = doc.page(0)
    assert page.px_per_unit == pytest.approx(PAGE_RENDER_DPI / 72, rel=0.01)
    assert page.image.shape[1] == pytest.approx(page.width * page.px_per_unit, abs=1)
    systems = detect_systems(page.image)
    assert systems
    assert all(s.box[2] <= page.image.shape[1] for s in systems)


def _encrypted_pdf(path: Path) -> None:
    doc = pymupdf.open()
    doc.new_page()
    doc.save(path, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="secret", owner_pw="owner")


@pytest.mark.parametrize(
    ("name", "make", "says"),
    [
        ("empty.pdf", lambda p: p.write_bytes(b""), "empty"),
        ("letter.pdf", lambda p: p.write_text("Dear colleague, ...\n" * 20), "not a readable PDF"),
        ("locked.pdf", _encrypted_pdf, "password"),
        ("notes.txt", lambda p: p.write_text("c d e"), "unsupported file type"),
    ],
)
def test_unreadable_files_raise_unreadable_score_naming_the_file(
    tmp_path: Path, name: str, make: object, says: str
) -> None:
    path = tmp_path / name
    make(path)  # type: ignore[operator]
    with pytest.raises(UnreadableScore) as caught:
        open_score(path)
    assert caught.value.path == path
    assert str(path) in str(caught.value)
    assert says in str(caught.value)


def test_missing_file_is_reported_with_its_path(tmp_path: Path) -> None:
    with pytest.raises(UnreadableScore, match="not found"):
        open_score(tmp_path / "nowhere.pdf")


def _white_png(path: Path, width: int, height: int) -> None:
    """A white grayscale PNG written row by row, so the test itself never holds it in memory."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    packer = zlib.compressobj(1)
    row = b"\x00" + b"\xff" * width  # filter byte 0, then the pixels
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def test_a_huge_image_is_rendered_no_larger_than_page_max_pixels(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    _white_png(path, 20_000, 20_000)
    with open_score(path) as doc:
        page = doc.page(0)
    assert page.image.size <= PAGE_MAX_PIXELS
    assert page.image.size >= 0.95 * PAGE_MAX_PIXELS
    assert (page.width, page.height) == (20_000, 20_000)
    assert page.px_per_unit == pytest.approx(math.sqrt(PAGE_MAX_PIXELS) / 20_000, rel=0.01)
    assert detect_systems(page.image) == []


def test_skew_search_at_the_edge_of_its_range_stays_inside_it():
    """A page whose lines slope just past the search limit: the fine search must not look beyond
    +-MAX_SKEW_DEG (its padding only covers that range) and must not fail."""
    import math

    from sheetaudio_gui.config import MAX_SKEW_DEG

    h, w = 400, 1200
    page = np.full((h, w), 255, np.uint8)
    slope = math.tan(math.radians(MAX_SKEW_DEG + 0.2))
    xs = np.arange(w)
    for k in range(5):
        ys = np.clip(np.round(100 + 10 * k + xs * slope).astype(int), 0, h - 1)
        page[ys, xs] = 0
    page[2:8, w - 60 : w - 10] = 0  # ink in the top-right corner: the row that would go negative
    assert isinstance(detect_systems(page), list)
