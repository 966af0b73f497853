"""Geometry of a verovio SVG page: staff systems, staves and notehead boxes, in outer page units.

The synthetic corpus needs ground truth that matches the rasterised page pixel for pixel: where the
systems are (to cut strips and to test the detector) and where each notehead is (to tie the score to
the onset times of verovio's timemap). Verovio writes everything we need into its SVG: staff lines
are `<path>`s inside `<g class="staff">`, noteheads are `<use>`s of SMuFL glyphs defined once in
`<defs>`. We walk the tree composing the affine transforms (nested `<svg>` viewBox, `translate`,
`scale`) so that every coordinate comes out in the root `<svg>`'s width/height units with the page's
top-left as origin; rasterising the SVG with pymupdf at zoom z then gives pixels = units * z.

MuPDF's SVG renderer ignores CSS and gives a nested `<svg>` without width/height no size, so a raw
verovio page rasterises blank (staff lines are stroked only through CSS). `mupdf_ready_svg` rewrites
those few things into plain attributes; rasterise `mupdf_ready_svg(tk.renderToSVG(n))`, never the
raw SVG.

Notehead boxes are computed from the glyph outlines themselves (exact Bezier extrema), so they do
not depend on verovio's `svgBoundingBoxes` option (they agree with its note boxes to < 0.1 unit).
Notes that draw no notehead (invisible notes) have no box and are left out; grace and chord notes
are included.
"""

from __future__ import annotations

import logging
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass

logger = logging.getLogger(__name__)

Box = tuple[float, float, float, float]  # x0, y0, x1, y1
Affine = tuple[float, float, float, float, float, float]  # SVG matrix(a, b, c, d, e, f)

_SVG_NS = "http://www.w3.org/2000/svg"
_XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
_IDENTITY: Affine = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_PATH_TOKEN = re.compile(r"[MmLlHhVvCcSsQqTtAaZz]|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_TRANSFORM = re.compile(r"(matrix|translate|scale|rotate|skewX|skewY)\s*\(([^)]*)\)")
# Staves of one system whose top lines lie closer than this (in outer units) are the same staff.
_SAME_STAFF_TOLERANCE = 1.0


@dataclass(frozen=True)
class SvgStaff:
    """One staff of a system: its line heights and the horizontal extent of its lines."""

    lines_y: tuple[float, ...]  # y of each staff line, top to bottom
    x0: float
    x1: float


@dataclass(frozen=True)
class SvgSystem:
    """A staff system: staff-line extent (top line of top staff .. bottom line of bottom staff)."""

    box: Box
    staves: tuple[SvgStaff, ...]  # top to bottom
    measure_ids: tuple[str, ...]  # verovio xml:ids of the measures in this system, in order


@dataclass(frozen=True)
class SvgNotehead:
    """The drawn notehead of one `<note>`, located in its system and staff."""

    note_id: str  # verovio xml:id of the note, as in verovio's timemap
    box: Box  # notehead glyph bounding box
    system_index: int  # index into SvgPage.systems
    staff_index: int  # staff within that system (0 = top)


@dataclass(frozen=True)
class SvgPage:
    """Everything the corpus needs from one engraved page, in the root `<svg>`'s units."""

    width: float
    height: float
    systems: tuple[SvgSystem, ...]  # top to bottom
    noteheads: tuple[SvgNotehead, ...]


# --- affine transforms ---------------------------------------------------------------------------


def _compose(outer: Affine, inner: Affine) -> Affine:
    """The transform that applies `inner` first, then `outer`."""
    a1, b1, c1, d1, e1, f1 = outer
    a2, b2, c2, d2, e2, f2 = inner
    return (
        a1 * a2 + c1 * b2,
        b1 * a2 + d1 * b2,
        a1 * c2 + c1 * d2,
        b1 * c2 + d1 * d2,
        a1 * e2 + c1 * f2 + e1,
        b1 * e2 + d1 * f2 + f1,
    )


def _apply(t: Affine, x: float, y: float) -> tuple[float, float]:
    a, b, c, d, e, f = t
    return a * x + c * y + e, b * x + d * y + f


def _parse_transform(text: str | None) -> Affine:
    """Parse an SVG `transform` attribute (list of matrix/translate/scale/rotate/skew)."""
    result = _IDENTITY
    if not text:
        return result
    for name, args_text in _TRANSFORM.findall(text):
        args = [float(v) for v in _NUMBER.findall(args_text)]
        t: Affine
        if name == "matrix" and len(args) == 6:
            t = (args[0], args[1], args[2], args[3], args[4], args[5])
        elif name == "translate":
            t = (1.0, 0.0, 0.0, 1.0, args[0], args[1] if len(args) > 1 else 0.0)
        elif name == "scale":
            sy = args[1] if len(args) > 1 else args[0]
            t = (args[0], 0.0, 0.0, sy, 0.0, 0.0)
        elif name == "rotate":
            r = math.radians(args[0])
            t = (math.cos(r), math.sin(r), -math.sin(r), math.cos(r), 0.0, 0.0)
            if len(args) == 3:
                cx, cy = args[1], args[2]
                t = _compose((1, 0, 0, 1, cx, cy), _compose(t, (1, 0, 0, 1, -cx, -cy)))
        elif name == "skewX":
            t = (1.0, 0.0, math.tan(math.radians(args[0])), 1.0, 0.0, 0.0)
        elif name == "skewY":
            t = (1.0, math.tan(math.radians(args[0])), 0.0, 1.0, 0.0, 0.0)
        else:
            raise ValueError(f"unsupported SVG transform {name}({args_text})")
        result = _compose(result, t)
    return result


def _transform_box(t: Affine, box: Box) -> Box:
    """Box of the four transformed corners (exact for axis-aligned transforms)."""
    x0, y0, x1, y1 = box
    pts = [_apply(t, x, y) for x, y in ((x0, y0), (x1, y0), (x0, y1), (x1, y1))]
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    return min(xs), min(ys), max(xs), max(ys)


def _length(text: str | None) -> float:
    """An SVG length in px (unitless or "px"); verovio writes other units only if asked to."""
    if text is None:
        raise ValueError("the root <svg> has no width/height")
    text = text.strip()
    value = _NUMBER.match(text)
    unit = text[value.end() :].strip() if value else ""
    if value is None or unit not in ("", "px"):
        raise ValueError(f"unsupported SVG length {text!r}: expected px (verovio's default output)")
    return float(value.group())


# --- path bounding boxes -------------------------------------------------------------------------


def _cubic_extrema(p0: float, p1: float, p2: float, p3: float) -> list[float]:
    """Values of a 1-D cubic Bezier at its end points and its interior extrema."""
    values = [p0, p3]
    a = -p0 + 3 * p1 - 3 * p2 + p3
    b = 2 * (p0 - 2 * p1 + p2)
    c = p1 - p0
    roots: list[float] = []
    if abs(a) < 1e-12:
        if abs(b) > 1e-12:
            roots.append(-c / b)
    else:
        disc = b * b - 4 * a * c
        if disc >= 0:
            sq = math.sqrt(disc)
            roots += [(-b + sq) / (2 * a), (-b - sq) / (2 * a)]
    for t in roots:
        if 0 < t < 1:
            u = 1 - t
            values.append(u**3 * p0 + 3 * u * u * t * p1 + 3 * u * t * t * p2 + t**3 * p3)
    return values


def path_bbox(d: str) -> Box:
    """Exact bounding box of an SVG path's outline (lines and quadratic/cubic Beziers).

    Elliptical arcs are bounded by their end points and radii (conservative); verovio's glyphs
    do not use them.
    """
    tokens = _PATH_TOKEN.findall(d)
    xs: list[float] = []
    ys: list[float] = []
    i = 0
    cmd = ""
    cx = cy = sx = sy = 0.0
    last_ctrl: tuple[float, float] | None = None  # reflected by S/T
    last_cmd = ""

    def num() -> float:
        nonlocal i
        v = float(tokens[i])
        i += 1
        return v

    def cubic(x1: float, y1: float, x2: float, y2: float, x3: float, y3: float) -> None:
        xs.extend(_cubic_extrema(cx, x1, x2, x3))
        ys.extend(_cubic_extrema(cy, y1, y2, y3))

    while i < len(tokens):
        if tokens[i].isalpha():
            cmd = tokens[i]
            i += 1
            if cmd in "Zz":
                cx, cy = sx, sy
                last_ctrl, last_cmd = None, cmd
                continue
        elif not cmd:
            raise ValueError(f"path data does not start with a command: {d[:40]!r}")
        rel = cmd.islower()
        ox, oy = (cx, cy) if rel else (0.0, 0.0)
        c = cmd.upper()
        if c == "M":
            cx, cy = ox + num(), oy + num()
            sx, sy = cx, cy
            xs.append(cx)
            ys.append(cy)
            cmd = "l" if rel else "L"  # further pairs are implicit line-tos
            last_ctrl = None
        elif c == "L":
            cx, cy = ox + num(), oy + num()
            xs.append(cx)
            ys.append(cy)
            last_ctrl = None
        elif c == "H":
            cx = ox + num()
            xs.append(cx)
            ys.append(cy)
            last_ctrl = None
        elif c == "V":
            cy = oy + num()
            xs.append(cx)
            ys.append(cy)
            last_ctrl = None
        elif c in "CS":
            if c == "C":
                x1, y1 = ox + num(), oy + num()
            elif last_ctrl is not None and last_cmd.upper() in "CS":
                x1, y1 = 2 * cx - last_ctrl[0], 2 * cy - last_ctrl[1]
            else:
                x1, y1 = cx, cy
            x2, y2 = ox + num(), oy + num()
            x3, y3 = ox + num(), oy + num()
            cubic(x1, y1, x2, y2, x3, y3)
            cx, cy = x3, y3
            last_ctrl = (x2, y2)
        elif c in "QT":
            if c == "Q":
                qx, qy = ox + num(), oy + num()
            elif last_ctrl is not None and last_cmd.upper() in "QT":
                qx, qy = 2 * cx - last_ctrl[0], 2 * cy - last_ctrl[1]
            else:
                qx, qy = cx, cy
            x3, y3 = ox + num(), oy + num()
            # a quadratic is the cubic with control points 1/3 and 2/3 of the way to (qx, qy)
            cubic(
                cx + 2 / 3 * (qx - cx),
                cy + 2 / 3 * (qy - cy),
                x3 + 2 / 3 * (qx - x3),
                y3 + 2 / 3 * (qy - y3),
                x3,
                y3,
            )
            cx, cy = x3, y3
            last_ctrl = (qx, qy)
        elif c == "A":
            rx, ry = abs(num()), abs(num())
            i += 3  # rotation, large-arc and sweep flags
            x3, y3 = ox + num(), oy + num()
            r = max(rx, ry)
            xs.extend([cx - r, cx + r, x3 - r, x3 + r])
            ys.extend([cy - r, cy + r, y3 - r, y3 + r])
            cx, cy = x3, y3
            last_ctrl = None
        last_cmd = cmd
    if not xs:
        raise ValueError("empty path")
    return min(xs), min(ys), max(xs), max(ys)


# --- making the SVG renderable by MuPDF ----------------------------------------------------------

_SHAPES = ("path", "rect", "polygon", "polyline", "ellipse", "circle", "line")
_CSS_FONT = {"tempo": ("font-weight", "bold"), "reh": ("font-weight", "bold")}
_CSS_FONT.update({k: ("font-weight", "bold") for k in ("ending", "fing")})
_CSS_FONT.update({k: ("font-style", "italic") for k in ("dir", "dynam", "mNum")})


def mupdf_ready_svg(svg: str) -> str:
    """Rewrite verovio's CSS-dependent SVG into plain attributes that MuPDF (pymupdf) renders.

    - nested `<svg>` viewports get the root's width/height (MuPDF sizes them 0 otherwise);
    - shapes with a `stroke-width` but no `stroke` get `stroke="currentColor"` (verovio's CSS rule);
    - hidden elements (invisible notes, class `placeholder` milestones, `bounding-box`) are removed;
    - bold/italic text classes get explicit font attributes.
    Geometry is unchanged, so `parse_verovio_svg` gives the same result on either version.
    """
    ET.register_namespace("", _SVG_NS)
    ET.register_namespace("xlink", "http://www.w3.org/1999/xlink")
    root = ET.fromstring(svg)
    width, height = root.get("width"), root.get("height")
    if width is None or height is None:
        raise ValueError("the root <svg> has no width/height")
    color = "black"
    for parent in root.iter():
        for child in list(parent):
            cls = _classes(child)
            if "placeholder" in cls or "bounding-box" in cls or _hidden(child):
                parent.remove(child)
    for el in root.iter():
        tag = _local(el.tag)
        if tag == "svg" and el is not root:
            el.set("width", el.get("width", width))
            el.set("height", el.get("height", height))
            color = el.get("color", color)
        elif tag in _SHAPES and el.get("stroke") is None:
            sw = el.get("stroke-width")
            if sw is not None and float(_NUMBER.findall(sw)[0]) > 0:
                el.set("stroke", color)
        elif tag == "g":
            for name in _classes(el):
                if name in _CSS_FONT:
                    el.set(*_CSS_FONT[name])
    style = [el for el in root.iter() if _local(el.tag) == "style"]
    for parent in root.iter():
        for child in list(parent):
            if child in style:
                parent.remove(child)
    return ET.tostring(root, encoding="unicode")


# --- the tree walk -------------------------------------------------------------------------------


def _classes(el: ET.Element) -> set[str]:
    return set((el.get("class") or "").split())


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _nested_svg_transform(el: ET.Element, parent_w: float, parent_h: float) -> Affine:
    """Map a nested `<svg viewBox>` onto its viewport (preserveAspectRatio xMidYMid meet)."""
    x = float(el.get("x", "0") or 0)
    y = float(el.get("y", "0") or 0)
    w = _length(el.get("width")) if el.get("width") not in (None, "100%") else parent_w
    h = _length(el.get("height")) if el.get("height") not in (None, "100%") else parent_h
    vb = el.get("viewBox")
    if not vb:
        return (1.0, 0.0, 0.0, 1.0, x, y)
    vx, vy, vw, vh = (float(v) for v in _NUMBER.findall(vb))
    s = min(w / vw, h / vh)
    tx = x + (w - vw * s) / 2 - vx * s
    ty = y + (h - vh * s) / 2 - vy * s
    return (s, 0.0, 0.0, s, tx, ty)


class _Walker:
    """Collects staff lines and notehead boxes while walking the tree with the current transform."""

    def __init__(self, root: ET.Element, width: float, height: float) -> None:
        self.width = width
        self.height = height
        self.glyphs: dict[str, ET.Element] = {}
        for el in root.iter():
            if _local(el.tag) in ("g", "symbol", "path") and el.get("id"):
                self.glyphs[str(el.get("id"))] = el
        self._glyph_boxes: dict[str, Box | None] = {}

    def glyph_box(self, ref: str) -> Box | None:
        """Outline box of a glyph definition in its own coordinates (None if it draws nothing)."""
        if ref not in self._glyph_boxes:
            el = self.glyphs.get(ref)
            boxes = [] if el is None else list(self._element_boxes(el, _IDENTITY))
            self._glyph_boxes[ref] = _union(boxes) if boxes else None
        return self._glyph_boxes[ref]

    def _element_boxes(self, el: ET.Element, t: Affine) -> Iterator[Box]:
        t = _compose(t, _parse_transform(el.get("transform")))
        tag = _local(el.tag)
        if tag == "path" and el.get("d"):
            yield _transform_box(t, path_bbox(str(el.get("d"))))
        elif tag == "use":
            ref = (el.get(_XLINK_HREF) or el.get("href") or "").lstrip("#")
            box = self.glyph_box(ref)
            if box is not None:
                x, y = float(el.get("x", "0") or 0), float(el.get("y", "0") or 0)
                yield _transform_box(_compose(t, (1, 0, 0, 1, x, y)), box)
        for child in el:
            yield from self._element_boxes(child, t)

    def walk(
        self, el: ET.Element, t: Affine, vp: tuple[float, float]
    ) -> Iterator[tuple[str, ET.Element, Affine]]:
        """Yield ("system" | "staff" | "note" | "measure", element, transform) in document order."""
        tag = _local(el.tag)
        if tag == "defs" or _hidden(el):
            return
        if tag == "svg":  # a nested viewport (the root is never walked)
            t = _compose(t, _nested_svg_transform(el, *vp))
        t = _compose(t, _parse_transform(el.get("transform")))
        cls = _classes(el)
        for kind in ("system", "measure", "staff", "note"):
            if kind in cls and "bounding-box" not in cls:
                yield kind, el, t
        for child in el:
            yield from self.walk(child, t, vp)


def _hidden(el: ET.Element) -> bool:
    """Invisible notes and the like: verovio writes them with `visibility="hidden"`."""
    return el.get("visibility") == "hidden" or el.get("display") == "none"


def _union(boxes: list[Box]) -> Box:
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def _staff_lines(staff: ET.Element, t: Affine) -> list[tuple[float, float, float]]:
    """Horizontal line paths that are direct children of a staff: (y, x0, x1) in outer units."""
    lines = []
    for child in staff:
        if _local(child.tag) != "path" or not child.get("d"):
            continue
        x0, y0, x1, y1 = _transform_box(
            _compose(t, _parse_transform(child.get("transform"))), path_bbox(str(child.get("d")))
        )
        if abs(y1 - y0) < 1e-6 * max(1.0, abs(x1 - x0)) and x1 > x0:
            lines.append(((y0 + y1) / 2, x0, x1))
    lines.sort()
    return lines


def _notehead_box(walker: _Walker, note: ET.Element, t: Affine) -> Box | None:
    """Box of the glyphs in the note's `<g class="notehead">` (older verovio: direct `<use>`s)."""
    heads = [c for c in note if "notehead" in _classes(c)]
    if not heads:
        heads = [c for c in note if _local(c.tag) == "use"]
    boxes: list[Box] = []
    for head in heads:
        if _hidden(head):
            continue
        boxes.extend(walker._element_boxes(head, t))
    boxes = [b for b in boxes if b[2] > b[0] and b[3] > b[1]]
    return _union(boxes) if boxes else None


def parse_verovio_svg(svg: str) -> SvgPage:
    """Parse one page from `verovio.toolkit().renderToSVG(n)` into systems, staves and noteheads.

    Coordinates are in the root `<svg>`'s width/height units (px), origin at the page's top-left.
    Systems and staves are ordered top to bottom; a staff's x extent spans all its measures.
    """
    root = ET.fromstring(svg)
    if _local(root.tag) != "svg":
        raise ValueError("not an SVG document")
    width, height = _length(root.get("width")), _length(root.get("height"))
    walker = _Walker(root, width, height)

    # the root svg itself has no viewBox in verovio's output; nested svgs map onto (width, height)
    t0: Affine = _parse_transform(root.get("transform"))
    if root.get("viewBox"):
        t0 = _compose(t0, _nested_svg_transform(root, width, height))
    systems_raw: list[dict[str, object]] = []
    current: dict[str, object] | None = None
    notes_raw: list[tuple[str, Box]] = []
    for child in root:
        for kind, el, t in walker.walk(child, t0, (width, height)):
            if kind == "system":
                current = {"staves": [], "measures": []}
                systems_raw.append(current)
            elif kind == "measure" and current is not None:
                measures = current["measures"]
                assert isinstance(measures, list)
                if el.get("id"):
                    measures.append(str(el.get("id")))
            elif kind == "staff" and current is not None:
                lines = _staff_lines(el, t)
                if lines:
                    staves = current["staves"]
                    assert isinstance(staves, list)
                    staves.append(lines)
            elif kind == "note" and el.get("id"):
                box = _notehead_box(walker, el, t)
                if box is not None:
                    notes_raw.append((str(el.get("id")), box))

    systems = [s for s in (_build_system(raw) for raw in systems_raw) if s is not None]
    systems.sort(key=lambda s: s.box[1])
    noteheads = tuple(_locate(note_id, box, systems) for note_id, box in notes_raw)
    return SvgPage(width, height, tuple(systems), noteheads)


def _build_system(raw: dict[str, object]) -> SvgSystem | None:
    """Merge the per-measure staff fragments of one system into whole staves."""
    fragments = raw["staves"]
    measures = raw["measures"]
    assert isinstance(fragments, list) and isinstance(measures, list)
    if not fragments:
        return None
    groups: list[list[list[tuple[float, float, float]]]] = []
    for lines in sorted(fragments, key=lambda ls: ls[0][0]):
        if groups and abs(groups[-1][0][0][0] - lines[0][0]) <= _SAME_STAFF_TOLERANCE:
            groups[-1].append(lines)
        else:
            groups.append([lines])
    staves = []
    for group in groups:
        n = max(len(g) for g in group)
        full = [g for g in group if len(g) == n]
        lines_y = tuple(sum(g[k][0] for g in full) / len(full) for k in range(n))
        x0 = min(line[1] for g in group for line in g)
        x1 = max(line[2] for g in group for line in g)
        staves.append(SvgStaff(lines_y, x0, x1))
    box = (
        min(s.x0 for s in staves),
        staves[0].lines_y[0],
        max(s.x1 for s in staves),
        staves[-1].lines_y[-1],
    )
    return SvgSystem(box, tuple(staves), tuple(str(m) for m in measures))


def _locate(note_id: str, box: Box, systems: list[SvgSystem]) -> SvgNotehead:
    """Assign a notehead to the system and staff nearest to its centre (cross-staff notes too)."""
    cy = (box[1] + box[3]) / 2
    best = (math.inf, -1, -1)
    for si, system in enumerate(systems):
        for k, staff in enumerate(system.staves):
            top, bottom = staff.lines_y[0], staff.lines_y[-1]
            dist = max(top - cy, 0.0, cy - bottom)
            if dist < best[0]:
                best = (dist, si, k)
    if best[1] < 0:
        logger.warning("notehead %s lies on a page without staves", note_id)
    return SvgNotehead(note_id, box, best[1], best[2])
