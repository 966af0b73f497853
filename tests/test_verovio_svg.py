"""verovio SVG pages -> systems, staves and notehead boxes that match the rasterised page."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from sheetaudio_gui.training.verovio_svg import (
    SvgPage,
    mupdf_ready_svg,
    parse_verovio_svg,
    path_bbox,
)

verovio = pytest.importorskip("verovio")
music21 = pytest.importorskip("music21")
pymupdf = pytest.importorskip("pymupdf")

ZOOM = 2.0  # raster pixels per SVG unit


def _toolkit(xml: str, **options: object) -> object:
    tk = verovio.toolkit()
    tk.setOptions({"pageWidth": 2100, "pageHeight": 2970, "scale": 40, **options})
    tk.loadData(xml)
    return tk


def _raster(svg: str, zoom: float = ZOOM) -> npt.NDArray[np.uint8]:
    doc = pymupdf.open(stream=mupdf_ready_svg(svg).encode(), filetype="svg")
    pix = doc[0].get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), colorspace=pymupdf.csGRAY)
    return np.frombuffer(pix.samples, np.uint8).reshape(pix.h, pix.w).copy()


@pytest.fixture(scope="module")
def chorale_xml(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("svg") / "chorale.musicxml"
    music21.corpus.parse("bach/bwv66.6").write("musicxml", fp=path)
    return Path(path).read_text()


@pytest.fixture(scope="module")
def chorale(chorale_xml: str) -> tuple[str, SvgPage, object]:
    tk = _toolkit(chorale_xml, font="Bravura")
    svg = tk.renderToSVG(1)  # type: ignore[attr-defined]
    return svg, parse_verovio_svg(svg), tk


def test_page_size_is_the_root_svg_size_that_pymupdf_renders(
    chorale: tuple[str, SvgPage, object],
) -> None:
    svg, page, _ = chorale
    rect = pymupdf.open(stream=svg.encode(), filetype="svg")[0].rect
    assert (page.width, page.height) == pytest.approx((rect.width, rect.height))
    assert (page.width, page.height) == pytest.approx((2100 * 0.4, 2970 * 0.4))


def test_chorale_page_has_four_staff_systems_of_five_lines_top_to_bottom(
    chorale: tuple[str, SvgPage, object],
) -> None:
    _, page, _ = chorale
    assert len(page.systems) >= 2
    tops = [s.box[1] for s in page.systems]
    assert tops == sorted(tops)
    for system in page.systems:
        assert len(system.staves) == 4  # soprano, alto, tenor, bass
        for staff in system.staves:
            assert len(staff.lines_y) == 5
            gaps = np.diff(staff.lines_y)
            assert np.allclose(gaps, gaps[0], atol=0.01) and gaps[0] > 0
        assert system.box[1] == system.staves[0].lines_y[0]
        assert system.box[3] == system.staves[-1].lines_y[-1]


def test_staff_lines_are_dark_in_the_raster_exactly_at_lines_y_times_zoom(
    chorale: tuple[str, SvgPage, object],
) -> None:
    svg, page, _ = chorale
    image = _raster(svg)
    for system in page.systems:
        for staff in system.staves:
            xs = np.arange(int(staff.x0 * ZOOM) + 5, int(staff.x1 * ZOOM) - 5)
            space = (staff.lines_y[1] - staff.lines_y[0]) * ZOOM
            for y in staff.lines_y:
                # pixel row r covers [r, r + 1) in page units * zoom
                on_line = image[int(np.floor(y * ZOOM)), xs]
                between = image[int(np.floor(y * ZOOM + space / 2)), xs]
                assert np.median(on_line) < 128  # >= half of the line covers this row ...
                assert np.median(between) == 255  # ... and half a space away is paper


def test_every_notehead_box_is_inked_and_every_timemap_note_has_one(
    chorale: tuple[str, SvgPage, object],
) -> None:
    svg, page, tk = chorale
    image = _raster(svg)
    for head in page.noteheads:
        x0, y0, x1, y1 = (int(round(c * ZOOM)) for c in head.box)
        assert image[y0:y1, x0:x1].mean() < 160, head  # a filled or hollow notehead is dark
    on_page = {h.note_id for h in page.noteheads}
    timemap_notes = {n for event in tk.renderToTimemap() for n in event.get("on", [])}  # type: ignore[attr-defined]
    assert on_page <= timemap_notes
    assert len(on_page) == len(page.noteheads) > 40


def test_noteheads_are_assigned_to_the_staff_they_sit_on(
    chorale: tuple[str, SvgPage, object],
) -> None:
    _, page, _ = chorale
    for head in page.noteheads:
        staff = page.systems[head.system_index].staves[head.staff_index]
        cy = (head.box[1] + head.box[3]) / 2
        space = staff.lines_y[1] - staff.lines_y[0]
        assert staff.lines_y[0] - 4 * space < cy < staff.lines_y[-1] + 4 * space


def test_grace_and_chord_notes_have_boxes_and_hidden_notes_have_none(tmp_path: Path) -> None:
    m = music21
    measure = m.stream.Measure()
    measure.append(m.note.Note("D5", type="eighth").getGrace())
    measure.append(m.note.Note("C5", type="quarter"))
    hidden = m.note.Note("E5", type="quarter")
    hidden.style.hideObjectOnPrint = True
    measure.append(hidden)
    measure.append(m.chord.Chord(["C4", "E4", "G4"], type="half"))
    part = m.stream.Part([measure])
    xml = m.stream.Score([part]).write("musicxml", fp=tmp_path / "g.musicxml")
    tk = _toolkit(Path(xml).read_text())
    page = parse_verovio_svg(tk.renderToSVG(1))  # type: ignore[attr-defined]
    heads = sorted(page.noteheads, key=lambda h: (h.box[0], h.box[1]))
    assert len(heads) == 5  # grace + quarter + 3 chord notes; the hidden note is left out
    widths = [h.box[2] - h.box[0] for h in heads]
    assert widths[0] < 0.8 * widths[1]  # the grace note is drawn smaller
    assert len({round(h.box[0]) for h in heads[2:]}) == 1  # the chord stands in one column


def test_piano_pages_have_grand_staff_systems_and_every_measure_once(tmp_path: Path) -> None:
    xml = music21.corpus.parse("joplin/maple_leaf_rag").write("musicxml", fp=tmp_path / "j.xml")
    tk = _toolkit(Path(xml).read_text(), font="Leland")
    pages = [parse_verovio_svg(tk.renderToSVG(n)) for n in (1, 2)]  # type: ignore[attr-defined]
    measure_ids = [mid for p in pages for s in p.systems for mid in s.measure_ids]
    assert len(measure_ids) == len(set(measure_ids)) > 10
    for page in pages:
        assert len(page.systems) >= 4
        assert all(len(s.staves) == 2 for s in page.systems)


def test_the_mupdf_rewrite_keeps_the_geometry_and_puts_ink_on_the_page(
    chorale: tuple[str, SvgPage, object],
) -> None:
    svg, page, _ = chorale
    assert parse_verovio_svg(mupdf_ready_svg(svg)) == page
    assert (_raster(svg) < 128).mean() > 0.01  # ink on the page


def test_path_bbox_finds_the_extremum_of_a_cubic_between_its_control_points() -> None:
    # a cubic from (0,0) to (10,0) with both control points at y=10 peaks at y=7.5
    assert path_bbox("M0 0C0 10 10 10 10 0z") == pytest.approx((0, 0, 10, 7.5))
    assert path_bbox("M1 1h4v2h-4z") == pytest.approx((1, 1, 5, 3))
    assert path_bbox("m1 1l2 3 1 -5") == pytest.approx((1, -1, 4, 4))
