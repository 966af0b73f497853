"""The score viewer: page thumbnails, a zoomable page, and the three ways to pick a query.

Scene coordinates are page units (PDF points or image pixels, origin top-left), the same units as
the core's boxes, so a box from the index is drawn with no conversion: the page pixmap is scaled
by 1 / px_per_unit into the scene. Left-drag draws a query rectangle, a click picks the staff system
under the pointer, "Whole page" takes the page; Ctrl+wheel zooms, middle-drag pans.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QMouseEvent, QPainter, QPen, QPixmap, QWheelEvent
from PySide6.QtWidgets import (
    QGraphicsLineItem,
    QGraphicsPixmapItem,
    QGraphicsRectItem,
    QGraphicsScene,
    QGraphicsView,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

Box = tuple[float, float, float, float]

THUMBNAIL_WIDTH_PX = 110  # thumbnail list icon width, px
CLICK_TOLERANCE_PX = 4  # a press-release shorter than this (screen px) is a click, not a drag
ZOOM_STEP = 1.25  # factor per zoom step
HIGHLIGHT_COLOUR = QColor(255, 170, 0, 70)  # found region (translucent amber)
HIGHLIGHT_EDGE = QColor(230, 120, 0)
SELECTION_COLOUR = QColor(40, 120, 255, 50)  # the user's query (translucent blue)
SELECTION_EDGE = QColor(30, 90, 220)
SYSTEM_EDGE = QColor(120, 120, 120, 90)  # detected systems (faint outline)
CURSOR_COLOUR = QColor(220, 30, 30)


def gray_to_qimage(image: np.ndarray) -> QImage:
    """(H, W) uint8 -> QImage (a copy, so the array may go)."""
    h, w = image.shape
    data = np.ascontiguousarray(image)
    return QImage(data.data, w, h, data.strides[0], QImage.Format.Format_Grayscale8).copy()


def _rect(box: Box) -> QRectF:
    return QRectF(QPointF(box[0], box[1]), QPointF(box[2], box[3]))


class PageView(QGraphicsView):
    """One page; emits a click point or a dragged rectangle in page units."""

    clicked = Signal(float, float)
    rectangle = Signal(float, float, float, float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        self.setBackgroundBrush(QColor(90, 90, 96))
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self._press: QPointF | None = None
        self._press_screen: Any = None
        self._rubber: QGraphicsRectItem | None = None
        self._pan_from: Any = None

    def wheelEvent(self, event: QWheelEvent) -> None:
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            factor = ZOOM_STEP if event.angleDelta().y() > 0 else 1 / ZOOM_STEP
            self.scale(factor, factor)
            event.accept()
        else:
            super().wheelEvent(event)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.MiddleButton:
            self._pan_from = event.position()
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
            return
        if event.button() == Qt.MouseButton.LeftButton:
            self._press = self.mapToScene(event.position().toPoint())
            self._press_screen = event.position()
            self._rubber = self.scene().addRect(
                QRectF(self._press, self._press), QPen(SELECTION_EDGE, 0), SELECTION_COLOUR
            )
            self._rubber.setZValue(10)
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._pan_from is not None:
            delta = event.position() - self._pan_from
            self._pan_from = event.position()
            self.horizontalScrollBar().setValue(int(self.horizontalScrollBar().value() - delta.x()))
            self.verticalScrollBar().setValue(int(self.verticalScrollBar().value() - delta.y()))
            return
        if self._press is not None and self._rubber is not None:
            here = self.mapToScene(event.position().toPoint())
            self._rubber.setRect(QRectF(self._press, here).normalized())
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._pan_from is not None and event.button() == Qt.MouseButton.MiddleButton:
            self._pan_from = None
            self.unsetCursor()
            return
        if self._press is not None and event.button() == Qt.MouseButton.LeftButton:
            start, start_screen = self._press, self._press_screen
            self._press = None
            if self._rubber is not None:
                self.scene().removeItem(self._rubber)
                self._rubber = None
            moved = (event.position() - start_screen).manhattanLength()
            end = self.mapToScene(event.position().toPoint())
            if moved < CLICK_TOLERANCE_PX:
                self.clicked.emit(start.x(), start.y())
            else:
                r = QRectF(start, end).normalized()
                self.rectangle.emit(r.left(), r.top(), r.right(), r.bottom())
            return
        super().mouseReleaseEvent(event)


class ScoreView(QWidget):
    """Thumbnails + page + query controls. `set_document(path, pages)` takes core `Page`s."""

    queryRequested = Signal(object, int, object, object)  # path, page, system | None, box | None
    pageChanged = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.path: Path | None = None
        self.pages: list[Any] = []
        self.page_index = -1
        self.systems: dict[int, list[Box]] = {}
        self.highlight_items: list[QGraphicsRectItem] = []
        self.selection_item: QGraphicsRectItem | None = None
        self.cursor_item: QGraphicsLineItem | None = None
        self._system_items: list[QGraphicsRectItem] = []
        self._pixmap_item: QGraphicsPixmapItem | None = None
        self._highlights: dict[int, list[Box]] = {}

        self.thumbnails = QListWidget()
        self.thumbnails.setViewMode(QListWidget.ViewMode.IconMode)
        self.thumbnails.setFlow(QListWidget.Flow.TopToBottom)
        self.thumbnails.setWrapping(False)
        self.thumbnails.setIconSize(QSize(THUMBNAIL_WIDTH_PX, int(THUMBNAIL_WIDTH_PX * 1.42)))
        self.thumbnails.setMovement(QListWidget.Movement.Static)
        self.thumbnails.setSpacing(4)
        self.thumbnails.setGridSize(
            QSize(THUMBNAIL_WIDTH_PX + 12, int(THUMBNAIL_WIDTH_PX * 1.42) + 26)
        )
        self.thumbnails.setFixedWidth(THUMBNAIL_WIDTH_PX + 36)
        self.thumbnails.currentRowChanged.connect(self.show_page)

        self.view = PageView()
        self.view.clicked.connect(self._clicked)
        self.view.rectangle.connect(self._dragged)

        self.title = QLabel("No score open — open a PDF or image (Ctrl+O) or drop one here")
        self.title.setStyleSheet("font-weight: 600;")
        self.title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.whole_page = QPushButton("Query whole page")
        self.whole_page.setToolTip(
            "Query the whole page. Or click a staff system, or drag a rectangle."
        )
        self.whole_page.clicked.connect(self.query_whole_page)
        self.whole_page.setEnabled(False)
        zoom_in, zoom_out, fit = QToolButton(), QToolButton(), QToolButton()
        zoom_in.setText("+")
        zoom_out.setText("−")
        fit.setText("Fit")
        zoom_in.setToolTip("Zoom in (Ctrl+wheel)")
        zoom_out.setToolTip("Zoom out (Ctrl+wheel)")
        fit.setToolTip("Fit the page width")
        zoom_in.clicked.connect(lambda: self.view.scale(ZOOM_STEP, ZOOM_STEP))
        zoom_out.clicked.connect(lambda: self.view.scale(1 / ZOOM_STEP, 1 / ZOOM_STEP))
        fit.clicked.connect(self.fit_width)

        bar = QHBoxLayout()
        bar.addWidget(self.title, 1)
        bar.addWidget(zoom_out)
        bar.addWidget(zoom_in)
        bar.addWidget(fit)
        bar.addWidget(self.whole_page)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addLayout(bar)
        right_layout.addWidget(self.view, 1)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.thumbnails)
        layout.addWidget(right, 1)

    # --- documents ----------------------------------------------------------------------------
    def set_document(self, path: Path, pages: Sequence[Any], first_page: int = 0) -> None:
        """Show `pages` (core `Page`s: image (H, W) uint8, width/height in units, px_per_unit)."""
        self.path = Path(path)
        self.pages = list(pages)
        self.systems = {}
        self._highlights = {}
        self.page_index = -1
        self.thumbnails.blockSignals(True)
        self.thumbnails.clear()
        for page in self.pages:
            image = gray_to_qimage(page.image[::4, ::4])
            icon = QIcon(QPixmap.fromImage(image))
            self.thumbnails.addItem(QListWidgetItem(icon, f"{page.index + 1}"))
        self.thumbnails.blockSignals(False)
        self.whole_page.setEnabled(bool(self.pages))
        self.show_page(min(first_page, len(self.pages) - 1))

    def set_systems(self, systems: dict[int, list[Box]]) -> None:
        """System boxes per page (page units), to click on and to outline faintly."""
        self.systems = {int(k): list(v) for k, v in systems.items()}
        self._draw_systems()

    def show_page(self, index: int) -> None:
        if not 0 <= index < len(self.pages) or index == self.page_index:
            return
        self.page_index = index
        page = self.pages[index]
        scene = self.view.scene()
        scene.clear()
        self.highlight_items, self._system_items = [], []
        self.selection_item = self.cursor_item = None
        self._pixmap_item = scene.addPixmap(QPixmap.fromImage(gray_to_qimage(page.image)))
        self._pixmap_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self._pixmap_item.setScale(1.0 / page.px_per_unit)
        scene.setSceneRect(QRectF(0, 0, page.width, page.height))
        name = self.path.name if self.path else ""
        self.title.setText(f"{name} — p. {index + 1}/{len(self.pages)}")
        self.title.setToolTip(str(self.path))
        self.thumbnails.blockSignals(True)
        self.thumbnails.setCurrentRow(index)
        self.thumbnails.blockSignals(False)
        self._draw_systems()
        for box in self._highlights.get(index, []):
            self._add_highlight(box)
        self.fit_width()
        self.pageChanged.emit(index)

    def fit_width(self) -> None:
        if self.page_index < 0:
            return
        page = self.pages[self.page_index]
        self.view.resetTransform()
        margin = 24
        scale = max(self.view.viewport().width() - margin, 50) / max(page.width, 1.0)
        self.view.scale(scale, scale)

    # --- drawing ------------------------------------------------------------------------------
    def highlight(self, page: int, boxes: Sequence[Box], replace: bool = True) -> None:
        """Show `page` and draw each found region; keeps them when the user flips pages."""
        if replace:
            self._highlights = {}
        self._highlights.setdefault(page, []).extend(tuple(map(float, b)) for b in boxes)
        if page != self.page_index:
            self.show_page(page)
        else:
            if replace:
                for item in self.highlight_items:
                    self.view.scene().removeItem(item)
                self.highlight_items = []
            for box in boxes:
                self._add_highlight(box)
        if self.highlight_items:
            self.view.ensureVisible(self.highlight_items[-1], 20, 20)

    def clear_highlights(self) -> None:
        self._highlights = {}
        for item in self.highlight_items:
            self.view.scene().removeItem(item)
        self.highlight_items = []

    def show_selection(self, box: Box | None) -> None:
        """Outline the user's query region (None removes it)."""
        if self.selection_item is not None:
            self.view.scene().removeItem(self.selection_item)
            self.selection_item = None
        if box is not None:
            self.selection_item = self.view.scene().addRect(
                _rect(box), QPen(SELECTION_EDGE, 0), SELECTION_COLOUR
            )
            self.selection_item.setZValue(5)

    def set_cursor(self, page: int, box: Box, x: float) -> None:
        """Playback cursor: a vertical line at `x` over the system `box` on `page`."""
        if page != self.page_index:
            self.show_page(page)
        pen = QPen(CURSOR_COLOUR, 2)
        pen.setCosmetic(True)
        if self.cursor_item is None:
            self.cursor_item = self.view.scene().addLine(x, box[1] - 6, x, box[3] + 6, pen)
            self.cursor_item.setZValue(20)
        else:
            self.cursor_item.setLine(x, box[1] - 6, x, box[3] + 6)
        self.cursor_item.show()

    def hide_cursor(self) -> None:
        if self.cursor_item is not None:
            self.cursor_item.hide()

    def _add_highlight(self, box: Box) -> None:
        pen = QPen(HIGHLIGHT_EDGE, 2)
        pen.setCosmetic(True)
        item = self.view.scene().addRect(_rect(box), pen, HIGHLIGHT_COLOUR)
        item.setZValue(8)
        self.highlight_items.append(item)

    def _draw_systems(self) -> None:
        for item in self._system_items:
            self.view.scene().removeItem(item)
        self._system_items = []
        pen = QPen(SYSTEM_EDGE, 1)
        pen.setCosmetic(True)
        pen.setStyle(Qt.PenStyle.DashLine)
        for box in self.systems.get(self.page_index, []):
            item = self.view.scene().addRect(_rect(box), pen)
            item.setZValue(2)
            self._system_items.append(item)

    # --- queries ------------------------------------------------------------------------------
    def system_at(self, x: float, y: float) -> int | None:
        """Index of the system whose box (widened by half the gap) contains the point."""
        boxes = self.systems.get(self.page_index, [])
        for i, b in enumerate(boxes):
            pad = 0.5 * (b[3] - b[1])
            if b[0] - pad <= x <= b[2] + pad and b[1] - pad <= y <= b[3] + pad:
                return i
        return None

    def query_whole_page(self) -> None:
        if self.path is None or self.page_index < 0:
            return
        page = self.pages[self.page_index]
        self.show_selection((0.0, 0.0, float(page.width), float(page.height)))
        self.queryRequested.emit(self.path, self.page_index, None, None)

    def query_system(self, system: int) -> None:
        if self.path is None:
            return
        self.show_selection(self.systems[self.page_index][system])
        self.queryRequested.emit(self.path, self.page_index, system, None)

    def query_box(self, box: Box) -> None:
        if self.path is None:
            return
        self.show_selection(box)
        self.queryRequested.emit(self.path, self.page_index, None, box)

    def _clicked(self, x: float, y: float) -> None:
        system = self.system_at(x, y)
        if system is not None:
            self.query_system(system)

    def _dragged(self, x0: float, y0: float, x1: float, y1: float) -> None:
        if self.page_index < 0:
            return
        page = self.pages[self.page_index]
        box = (max(x0, 0.0), max(y0, 0.0), min(x1, page.width), min(y1, page.height))
        if box[2] > box[0] and box[3] > box[1]:
            self.query_box(box)
