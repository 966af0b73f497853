"""Waveform and spectrogram of a recording, with a draggable query region and a playback cursor.

Both plots share the time axis (seconds). The waveform is drawn as a min/max envelope (one pair per
`ENVELOPE_BINS` bucket) so that an hour-long recording costs the same to draw as a short one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from sheetaudio_gui.config import FRAMES_PER_SECOND, SAMPLE_RATE_HZ

ENVELOPE_BINS = 4000  # waveform buckets drawn, whatever the length
DEFAULT_REGION_S = 8.0  # length of the query region proposed on load, s
SPAN_BRUSH = (255, 170, 0, 60)  # found span (amber)
REGION_BRUSH = (40, 120, 255, 45)  # query region (blue)


def envelope(
    samples: npt.NDArray[np.float32], bins: int = ENVELOPE_BINS
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float32]]:
    """(samples,) -> times (2 * b,) and an interleaved min/max curve (2 * b,) for drawing."""
    n = len(samples)
    if n == 0:
        return np.zeros(0), np.zeros(0, np.float32)
    b = min(bins, n)
    edges = np.linspace(0, n, b + 1).astype(np.int64)
    lo = np.minimum.reduceat(samples, edges[:-1])
    hi = np.maximum.reduceat(samples, edges[:-1])
    t = np.repeat(edges[:-1] / SAMPLE_RATE_HZ, 2)
    curve = np.empty(2 * b, np.float32)
    curve[0::2], curve[1::2] = lo, hi
    return t, curve


class AudioView(QWidget):
    """`set_audio(path, samples, spectrogram)`; `region()` is the query span in seconds."""

    queryRequested = Signal(object, float, float)  # path (None: microphone take), start, end
    seekRequested = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.path: Path | None = None
        self.samples: npt.NDArray[np.float32] = np.zeros(0, np.float32)
        self.offset_s = 0.0  # time of samples[0] in the file (a loaded span)
        self.title = QLabel("No recording open — open an audio file (Ctrl+O) or record one")
        self.title.setStyleSheet("font-weight: 600;")
        self.title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.find_button = QPushButton("Find this passage in the scores")
        self.find_button.setToolTip("Search the library's scores for the selected region")
        self.find_button.setEnabled(False)
        self.find_button.clicked.connect(self._query)
        self.plots = pg.GraphicsLayoutWidget()
        self.plots.setBackground("w")
        self.wave = self.plots.addPlot(row=0, col=0)
        self.spec = self.plots.addPlot(row=1, col=0)
        self.plots.ci.layout.setRowStretchFactor(0, 2)
        self.plots.ci.layout.setRowStretchFactor(1, 3)
        self.spec.setXLink(self.wave)
        self.wave.setMouseEnabled(y=False)
        self.spec.setMouseEnabled(y=False)
        self.wave.hideButtons()
        self.spec.hideButtons()
        self.wave.setLabel("left", "amplitude")
        self.spec.setLabel("left", "band")
        self.spec.setLabel("bottom", "time", units="s")
        self.wave_curve = self.wave.plot(pen=pg.mkPen((40, 60, 120), width=1))
        self.spec_image = pg.ImageItem()
        self.spec_image.setColorMap(pg.colormap.get("viridis"))
        self.spec.addItem(self.spec_image)
        self.region = pg.LinearRegionItem(brush=pg.mkBrush(*REGION_BRUSH))
        self.region.setZValue(10)
        self.wave.addItem(self.region)
        self.span = pg.LinearRegionItem(brush=pg.mkBrush(*SPAN_BRUSH), movable=False)
        self.span.hide()
        self.spec.addItem(self.span)
        self.cursors = [pg.InfiniteLine(pen=pg.mkPen((220, 30, 30), width=2)) for _ in range(2)]
        self.wave.addItem(self.cursors[0])
        self.spec.addItem(self.cursors[1])
        for c in self.cursors:
            c.hide()
        self.wave.scene().sigMouseClicked.connect(self._clicked)

        bar = QHBoxLayout()
        bar.addWidget(self.title, 1)
        bar.addWidget(self.find_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(bar)
        layout.addWidget(self.plots, 1)

    def set_audio(
        self,
        path: Path | None,
        samples: npt.NDArray[np.float32],
        spectrogram: npt.NDArray[np.float32] | None = None,
        offset_s: float = 0.0,
        title: str | None = None,
    ) -> None:
        """Show (samples,) mono 22.05 kHz; `spectrogram` (92, frames) at 20 frames/s if given."""
        self.path = Path(path) if path else None
        self.samples = samples
        self.offset_s = offset_s
        duration = len(samples) / SAMPLE_RATE_HZ
        t, curve = envelope(samples)
        self.wave_curve.setData(t + offset_s, curve)
        if spectrogram is not None and spectrogram.size:
            self.spec_image.setImage(spectrogram.T, autoLevels=True)
            frames = spectrogram.shape[1]
            self.spec_image.setRect(offset_s, 0, frames / FRAMES_PER_SECOND, spectrogram.shape[0])
            self.spec_image.show()
        else:
            self.spec_image.hide()
        self.wave.setXRange(offset_s, offset_s + max(duration, 0.1), padding=0.01)
        self.region.setBounds((offset_s, offset_s + duration))
        self.region.setRegion((offset_s, offset_s + min(DEFAULT_REGION_S, duration)))
        self.span.hide()
        name = title or (self.path.name if self.path else "microphone take")
        self.title.setText(f"{name} — {duration:.1f} s")
        self.find_button.setEnabled(duration > 0)

    def selected_region(self) -> tuple[float, float]:
        a, b = self.region.getRegion()
        return float(a), float(b)

    def select(self, start_s: float, end_s: float) -> None:
        self.region.setRegion((start_s, end_s))

    def show_span(self, start_s: float, end_s: float) -> None:
        """Mark a found time span (amber) on the spectrogram."""
        self.span.setRegion((start_s, end_s))
        self.span.show()

    def set_cursor(self, time_s: float | None) -> None:
        for c in self.cursors:
            if time_s is None:
                c.hide()
            else:
                c.setValue(time_s)
                c.show()

    def _query(self) -> None:
        a, b = self.selected_region()
        self.queryRequested.emit(self.path, a, b)

    def _clicked(self, event: object) -> None:
        if getattr(event, "double", lambda: False)():
            pos = self.wave.vb.mapSceneToView(event.scenePos())  # type: ignore[attr-defined]
            self.seekRequested.emit(float(pos.x()))
