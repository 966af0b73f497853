"""Render resources/icons/sheetaudio.svg to the PNG sizes desktops ask for (64, 128, 256 px).

Run after editing the SVG: `QT_QPA_PLATFORM=offscreen .venv/bin/python packaging/render_icons.py`.
Uses Qt's own SVG renderer, so no extra tool (Inkscape, rsvg) is needed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ICON_DIR = Path(__file__).resolve().parent.parent / "resources" / "icons"
ICON_SVG = ICON_DIR / "sheetaudio.svg"
ICON_SIZES_PX = (64, 128, 256)  # square PNG renderings, px


def render_icons(svg: Path = ICON_SVG, out_dir: Path = ICON_DIR) -> list[Path]:
    """Write `sheetaudio-<size>.png` for every size; returns the files written."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise ValueError(f"{svg}: not a valid SVG file; fix it and run again")
    written = []
    for size in ICON_SIZES_PX:
        image = QImage(size, size, QImage.Format.Format_ARGB32)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter)
        painter.end()
        path = out_dir / f"sheetaudio-{size}.png"
        if not image.save(str(path)):
            raise OSError(f"{path}: could not write the PNG; check the folder is writable")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in render_icons():
        print(path)
