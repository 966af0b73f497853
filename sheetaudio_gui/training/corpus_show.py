"""A picture of one corpus piece that shows whether score and audio are aligned.

Top: the page, every notehead painted with the colour of its (first) onset time, every system
boxed in its own colour. Below, at the same horizontal scale as the audio: the spectrogram, the
passages of the systems as bars in the systems' colours (with dividers at their starts), and one
tick per notehead onset in the notehead's colour. If the alignment is right, the colour of a
notehead, the colour of its tick and the moment a note starts in the spectrogram agree.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from sheetaudio_gui.core.images import colour_ramp, draw_rect
from sheetaudio_gui.training.corpus_format import CorpusPiece

SPEC_PX_PER_BIN = 3  # spectrogram rows per filterbank bin
TICK_ROW_PX = 40  # height of the onset-tick strip
SPAN_ROW_PX = 24  # height of the system-passage strip
GAP_PX = 8  # white space between the strips
INK_LEVEL = 160  # page pixels darker than this are painted in a notehead's colour
OTHER_PAGE_GREY = 190  # ticks of noteheads on other pages
SYSTEM_COLOURS = np.array(  # categorical colours, one per system (cycled)
    [[220, 40, 40], [30, 110, 230], [240, 140, 0], [150, 50, 200], [0, 160, 90], [200, 0, 140]],
    dtype=np.uint8,
)


def render_piece(piece: CorpusPiece, page: int = 0, performance: int = 0) -> npt.NDArray[np.uint8]:
    """The diagnostic picture of one page and one performance of `piece`: (H, W, 3) uint8."""
    record = piece.performances[performance]
    duration = record.duration_s
    gray = piece.page_image(page)
    width = gray.shape[1]
    canvas = np.repeat(gray[:, :, None], 3, axis=2)
    first_onset = {k: v[0] for k, v in record.notehead_onsets.items() if v}

    global_index = {(s.page, s.index_on_page): i for i, s in enumerate(piece.systems)}
    for note in piece.pages[page].noteheads:
        if note.id not in first_onset:
            continue  # a tie continuation: drawn, never struck
        colour = colour_ramp(first_onset[note.id] / duration)
        nx0, ny0, nx1, ny1 = (int(round(c)) for c in note.box)
        patch = canvas[max(ny0, 0) : ny1 + 1, max(nx0, 0) : nx1 + 1]
        ink = gray[max(ny0, 0) : ny1 + 1, max(nx0, 0) : nx1 + 1] < INK_LEVEL
        patch[ink] = colour
    for i, system in enumerate(piece.pages[page].systems):
        g = global_index[(page, i)]
        x0, y0, x1, y1 = system.box
        draw_rect(canvas, (x0 - 6, y0 - 6, x1 + 6, y1 + 6), _system_colour(g), width=3)

    spec = piece.spectrogram(performance)  # (92, frames)
    x_of = width / duration  # px per audio second
    spec_img = _spectrogram_image(spec, width)
    spans = np.full((SPAN_ROW_PX, width, 3), 255, np.uint8)
    ticks = np.full((TICK_ROW_PX, width, 3), 255, np.uint8)
    for g, plays in enumerate(record.system_spans):
        for start, end in plays:
            a, b = int(start * x_of), max(int(end * x_of), int(start * x_of) + 1)
            spans[2:-2, a:b] = _system_colour(g)
            spans[:, a : a + 2] = 0
            spec_img[:, a : a + 2] = _system_colour(g)
    on_page = {n.id for n in piece.pages[page].noteheads}
    for note_id, onsets in sorted(record.notehead_onsets.items(), key=lambda kv: kv[0] in on_page):
        colour = (
            colour_ramp(onsets[0] / duration)
            if note_id in on_page
            else np.full(3, OTHER_PAGE_GREY, np.uint8)
        )
        for t in onsets:
            x = min(int(t * x_of), width - 1)
            ticks[:, x] = colour
    gap = np.full((GAP_PX, width, 3), 255, np.uint8)
    return np.concatenate([canvas, gap, spec_img, gap, spans, gap, ticks], axis=0)


def _system_colour(index: int) -> tuple[int, int, int]:
    r, g, b = (int(c) for c in SYSTEM_COLOURS[index % len(SYSTEM_COLOURS)])
    return (r, g, b)


def _spectrogram_image(spec: npt.NDArray[np.float32], width: int) -> npt.NDArray[np.uint8]:
    """(bins, frames) -> (bins * SPEC_PX_PER_BIN, width, 3); low bins at the bottom, dark = loud."""
    lo, hi = np.percentile(spec, [5, 99.5])
    norm = np.clip((spec - lo) / max(hi - lo, 1e-6), 0, 1)
    columns = np.minimum((np.arange(width) * spec.shape[1] / width).astype(int), spec.shape[1] - 1)
    img = (255 * (1 - norm[::-1, columns])).astype(np.uint8)
    img = np.repeat(img, SPEC_PX_PER_BIN, axis=0)
    return np.repeat(img[:, :, None], 3, axis=2)
