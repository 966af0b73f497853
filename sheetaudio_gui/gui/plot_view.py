"""Two plots that explain a result: the similarity matrix with its alignment path, and a 2-D map.

- Similarity: cosine similarity between the score's sheet windows (x: window index in reading
  order) and the recording's 1 s audio snippets (y: seconds), with the DTW path on top.
- Passage map: every passage embedding of the library projected on its first two principal
  components, one colour per document (squares: score systems, dots: audio passages); the query
  is a star, its hits are ringed. Hover shows the passage, click opens it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QLabel, QTabWidget, QVBoxLayout, QWidget

MAP_POINT_SIZE = 7  # px
MAP_MAX_POINTS = 20_000  # larger libraries are subsampled for the map (evenly), points


def pca_2d(
    x: npt.NDArray[np.floating], extra: npt.NDArray[np.floating] | None = None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64] | None]:
    """Project (N, D) rows (and `extra` (k, D) rows, on the same axes) on the first 2 PCs."""
    data = np.asarray(x, np.float64)
    mean = data.mean(axis=0) if len(data) else np.zeros(data.shape[1])
    centred = data - mean
    if len(data) >= 2:
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        axes = vt[:2].T
    else:
        axes = np.eye(data.shape[1], 2)
    if axes.shape[1] < 2:
        axes = np.pad(axes, ((0, 0), (0, 2 - axes.shape[1])))
    projected_extra = None if extra is None else (np.asarray(extra, np.float64) - mean) @ axes
    return centred @ axes, projected_extra


def describe_ref(kind: str, ref: Any) -> str:
    if kind == "score":
        page, system = ref[0], ref[1]
        return f"page {int(page) + 1}, system {int(system) + 1}"
    return f"{float(ref[0]):.1f}–{float(ref[1]):.1f} s"


class PlotView(QTabWidget):
    passageChosen = Signal(object, str, object)  # document path, kind, ref

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        pg.setConfigOptions(antialias=True)
        # --- similarity -------------------------------------------------------------------------
        self.similarity_plot = pg.PlotWidget(background="w")
        self.similarity_plot.setLabel("bottom", "score position (sheet window, reading order)")
        self.similarity_plot.setLabel("left", "recording time", units="s")
        self.similarity_image = pg.ImageItem()
        self.similarity_image.setColorMap(pg.colormap.get("magma"))
        self.similarity_plot.addItem(self.similarity_image)
        self.path_curve = self.similarity_plot.plot(pen=pg.mkPen((0, 200, 255), width=2))
        # before any result: 10 windows x 10 s, not pyqtgraph's -0.5..0.5 (negative milliseconds)
        self.similarity_plot.setRange(xRange=(0, 10), yRange=(0, 10), padding=0)
        self.similarity_note = QLabel("Choose a result to see how the query and it line up.")
        sim = QWidget()
        sim_layout = QVBoxLayout(sim)
        sim_layout.setContentsMargins(2, 2, 2, 2)
        sim_layout.addWidget(self.similarity_note)
        sim_layout.addWidget(self.similarity_plot, 1)
        self.addTab(sim, "Similarity")
        # --- passage map ------------------------------------------------------------------------
        self.map_plot = pg.PlotWidget(background="w")
        self.map_plot.setLabel("bottom", "PC 1")
        self.map_plot.setLabel("left", "PC 2")
        self.map_plot.addLegend(offset=(5, 5), labelTextSize="8pt")
        self.map_note = QLabel("The library's passages; hover to see one, click to open it.")
        self.scatters: list[pg.ScatterPlotItem] = []
        self.query_item = pg.ScatterPlotItem(
            symbol="star", size=18, brush=pg.mkBrush(255, 0, 0), pen=pg.mkPen("k")
        )
        self.hits_item = pg.ScatterPlotItem(
            symbol="o", size=16, brush=None, pen=pg.mkPen((255, 0, 0), width=2)
        )
        self.map_plot.addItem(self.hits_item)
        self.map_plot.addItem(self.query_item)
        mp = QWidget()
        mp_layout = QVBoxLayout(mp)
        mp_layout.setContentsMargins(2, 2, 2, 2)
        mp_layout.addWidget(self.map_note)
        mp_layout.addWidget(self.map_plot, 1)
        self.addTab(mp, "Passage map")
        self.map_rows: list[tuple[Path, str, Any]] = []
        self.map_xy: npt.NDArray[np.float64] = np.zeros((0, 2))
        self._embeddings: npt.NDArray[np.float64] = np.zeros((0, 0))

    # --- similarity -----------------------------------------------------------------------------
    def show_alignment(self, alignment: Any, seconds_per_snippet: float, title: str) -> None:
        """`alignment.similarity` (n_sheet, n_audio) and `alignment.path` (L, 2)."""
        sim = np.asarray(alignment.similarity, np.float32)
        if sim.size:  # contrast from the matrix itself: an untrained model's range is narrow
            lo, hi = np.percentile(sim, [2.0, 99.5])
            self.similarity_image.setImage(sim, levels=(float(lo), float(max(hi, lo + 1e-6))))
        else:
            self.similarity_image.clear()
        if sim.size:
            self.similarity_image.setRect(0, 0, sim.shape[0], sim.shape[1] * seconds_per_snippet)
        path = np.asarray(alignment.path)
        if len(path):
            self.path_curve.setData(path[:, 0] + 0.5, (path[:, 1] + 0.5) * seconds_per_snippet)
        else:
            self.path_curve.setData([], [])
        self.similarity_note.setText(title)
        self.similarity_plot.autoRange()

    # --- map ------------------------------------------------------------------------------------
    def show_map(self, passage_map: Any) -> None:
        """Draw the library's passages: PassageMap with embeddings (N, 64), documents (distinct
        paths), document (N,) index into them, kind (N,) "score"/"audio", ref (N, 2)."""
        emb = np.asarray(passage_map.embeddings, np.float64)
        distinct = [Path(p) for p in passage_map.documents]
        docs = [distinct[int(i)] for i in np.asarray(passage_map.document)]
        kinds = [str(k) for k in np.asarray(passage_map.kind)]
        refs = [tuple(r) for r in np.asarray(passage_map.ref).tolist()]
        if len(emb) > MAP_MAX_POINTS:
            keep = np.linspace(0, len(emb) - 1, MAP_MAX_POINTS).astype(np.int64)
            emb = emb[keep]
            docs, kinds, refs = ([v[i] for i in keep] for v in (docs, kinds, refs))
        for item in self.scatters:
            self.map_plot.removeItem(item)
        self.scatters = []
        self.map_rows = list(zip(docs, kinds, refs, strict=True))
        self._embeddings = emb
        if len(emb) == 0:
            self.map_xy = np.zeros((0, 2))
            self.map_note.setText("The library has no indexed passages yet.")
            return
        self.map_xy, _ = pca_2d(emb)
        order = sorted(set(docs), key=str)
        for colour_index, doc in enumerate(order):
            rows = [i for i, d in enumerate(docs) if d == doc]
            kind = kinds[rows[0]]
            colour = pg.intColor(colour_index, hues=max(len(order), 1), alpha=200)
            spots = [{"pos": self.map_xy[i], "data": i} for i in rows]
            item = pg.ScatterPlotItem(
                spots=spots,
                size=MAP_POINT_SIZE,
                symbol="s" if kind == "score" else "o",
                brush=pg.mkBrush(colour),
                pen=None,
                hoverable=True,
                hoverPen=pg.mkPen("k", width=1.5),
                hoverSize=MAP_POINT_SIZE + 4,
                tip=lambda x, y, data: self._tip(data),
                name=doc.name,
            )
            item.sigClicked.connect(self._map_clicked)
            self.map_plot.addItem(item)
            self.scatters.append(item)
        self.map_note.setText(
            f"{len(emb)} passages of {len(order)} documents (squares: score systems, dots: "
            "audio passages). Hover to see one, click to open it."
        )
        self.map_plot.autoRange()

    def _tip(self, data: Any) -> str:
        doc, kind, ref = self.map_rows[int(data)]
        return f"{doc.name}\n{describe_ref(kind, ref)}"

    def mark_query(self, query: npt.NDArray[np.floating] | None, hit_documents: list[Path]) -> None:
        """Star the query embedding(s) (k, 64); ring the passages of the hit documents."""
        if query is None or len(self._embeddings) == 0:
            self.query_item.setData([])
            self.hits_item.setData([])
            return
        q = np.atleast_2d(np.asarray(query, np.float64))
        _, qxy = pca_2d(self._embeddings, q)
        assert qxy is not None
        self.query_item.setData(pos=qxy)
        wanted = {Path(d) for d in hit_documents[:3]}
        if len(wanted):
            # the nearest passage of each hit document
            sims = self._embeddings @ q.mean(axis=0)
            best: dict[Path, int] = {}
            for i, (doc, _, _) in enumerate(self.map_rows):
                if doc in wanted and (doc not in best or sims[i] > sims[best[doc]]):
                    best[doc] = i
            self.hits_item.setData(pos=self.map_xy[list(best.values())] if best else [])
        else:
            self.hits_item.setData([])

    def _map_clicked(self, item: Any, points: Any, event: Any = None) -> None:
        if len(points):
            self.choose_map_row(int(points[0].data()))

    def choose_map_row(self, row: int) -> None:
        doc, kind, ref = self.map_rows[row]
        self.passageChosen.emit(doc, kind, ref)
