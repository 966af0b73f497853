"""The results list for both query directions: documents, then their regions or time spans.

Choosing a row emits `chosen(hit, part)` where `part` is a ScoreRegion (a score hit) or a TimeSpan
(a recording hit); choosing a document row chooses its best part.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from sheetaudio_gui.gui import export

ROLE = Qt.ItemDataRole.UserRole


class ResultsPane(QWidget):
    chosen = Signal(object, object)  # hit, part (ScoreRegion | TimeSpan)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.results: Any = None
        self.query_text = ""
        self.header = QLabel("No query yet. Pick a score region or an audio passage.")
        self.header.setWordWrap(True)
        self.tree = QTreeWidget()
        self.tree.setColumnCount(3)
        self.tree.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.tree.setHeaderLabels(["Result", "Where", "Score"])
        self.tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.tree.header().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.header().setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.setAlternatingRowColors(True)
        self.tree.itemActivated.connect(self._activated)
        self.tree.itemClicked.connect(self._activated)
        self.copy_button = QPushButton("Copy reference")
        self.copy_button.setToolTip("Copy the chosen result as text (Ctrl+C)")
        self.copy_button.clicked.connect(self.copy_reference)
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Save the results as CSV or JSON")
        self.export_button.clicked.connect(self.export_dialog)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.copy_button)
        buttons.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.header)
        layout.addWidget(self.tree, 1)
        layout.addLayout(buttons)
        self._enable(False)

    def _enable(self, on: bool) -> None:
        self.copy_button.setEnabled(on)
        self.export_button.setEnabled(on)

    def show_busy(self, text: str) -> None:
        self.header.setText(text)
        self.tree.clear()
        self._enable(False)

    def show_results(self, results: Any, query_text: str) -> None:
        """Fill the list; `results.hits` are ScoreHits or AudioHits, best first."""
        self.results = results
        self.query_text = query_text
        self.tree.clear()
        hits = list(results.hits)
        what = "score pages" if hits and hasattr(hits[0], "regions") else "recordings"
        self.header.setText(
            f"<b>{query_text}</b><br>{len(hits)} {what} found"
            if hits
            else f"<b>{query_text}</b><br>Nothing found in the library."
        )
        for rank, hit in enumerate(hits, start=1):
            # the name spans the row: the pane is narrow and a file name is what tells hits apart
            top = QTreeWidgetItem([f"{rank}. {Path(hit.document).name}   {hit.score:.3f}"])
            top.setToolTip(0, f"{hit.document}\nscore {hit.score:.3f}")
            parts = list(hit.regions) if hasattr(hit, "regions") else list(hit.spans)
            top.setData(0, ROLE, (hit, parts[0] if parts else None))
            for part in parts:
                child = QTreeWidgetItem(["", self._where(part), f"{part.score:.3f}"])
                child.setData(0, ROLE, (hit, part))
                top.addChild(child)
            self.tree.addTopLevelItem(top)
            top.setFirstColumnSpanned(True)  # only once the item is in the tree
            top.setExpanded(rank <= 3)
        self._enable(bool(hits))

    @staticmethod
    def _where(part: Any) -> str:
        if hasattr(part, "page"):
            text = f"page {part.page + 1}"
            if getattr(part, "system", None) is not None:
                text += f", system {part.system + 1}"
            return text
        return f"{export.format_time(part.start_s)} – {export.format_time(part.end_s)}"

    def choose(self, row: int, child: int | None = None) -> None:
        """Choose a result programmatically (keyboard, tests)."""
        item = self.tree.topLevelItem(row)
        if item is None:
            return
        if child is not None:
            item = item.child(child)
        self.tree.setCurrentItem(item)
        self._activated(item)

    def current(self) -> tuple[Any, Any] | None:
        item = self.tree.currentItem()
        return item.data(0, ROLE) if item is not None else None

    def _activated(self, item: QTreeWidgetItem, column: int = 0) -> None:
        data = item.data(0, ROLE)
        if data and data[1] is not None:
            self.chosen.emit(data[0], data[1])

    def copy_reference(self) -> str:
        data = self.current()
        if not data or data[1] is None:
            return ""
        text = export.reference(*data)
        QGuiApplication.clipboard().setText(text)
        return text

    def export_dialog(self) -> None:
        if self.results is None:
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Export results", "sheetaudio-results.csv", "CSV (*.csv);;JSON (*.json)"
        )
        if path:
            self.export_to(Path(path))

    def export_to(self, path: Path) -> Path:
        if path.suffix.lower() == ".json":
            return export.write_json(self.results, path, {"description": self.query_text})
        return export.write_csv(self.results, path)
