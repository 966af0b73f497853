"""Microphone queries: pick an input device, watch the level, record, stop.

The input callback copies each block into a preallocated buffer (`RECORD_MAX_S` long) and stores the
block's peak; the GUI polls both with a timer. A machine without an input device (or without
PortAudio) gets a message in the panel, never an exception.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from sheetaudio_gui.config import SAMPLE_RATE_HZ

logger = logging.getLogger(__name__)

RECORD_MAX_S = 60.0  # longest microphone query, s (the buffer is allocated once)
LEVEL_POLL_MS = 50  # level meter refresh, ms

InputFactory = Callable[[int | None, int, Callable[..., None]], Any]


def input_devices() -> list[tuple[int, str]]:
    """(index, name) of every device with input channels; [] when PortAudio is missing."""
    try:
        import sounddevice

        devices = sounddevice.query_devices()
    except Exception as error:  # OSError: PortAudio library not found
        logger.info("no audio input: %s", error)
        return []
    return [(i, str(d["name"])) for i, d in enumerate(devices) if int(d["max_input_channels"]) > 0]


def sounddevice_input(device: int | None, samplerate: int, callback: Callable[..., None]) -> Any:
    import sounddevice

    return sounddevice.InputStream(
        device=device, samplerate=samplerate, channels=1, dtype="float32", callback=callback
    )


class Recorder(QObject):
    """Records mono 22.05 kHz into a preallocated buffer; `recorded` carries the take."""

    level = Signal(float)  # peak of the latest block, 0..1
    recorded = Signal(object)  # (samples,) float32
    problem_found = Signal(str)
    stateChanged = Signal(bool)  # recording?

    def __init__(self, input_factory: InputFactory | None = None) -> None:
        super().__init__()
        self._factory = input_factory or sounddevice_input
        self._buffer = np.zeros(int(RECORD_MAX_S * SAMPLE_RATE_HZ), np.float32)
        self._fill = np.zeros(1, np.int64)
        self._peak = np.zeros(1, np.float32)
        self._stream: Any = None
        self._timer = QTimer(self)
        self._timer.setInterval(LEVEL_POLL_MS)
        self._timer.timeout.connect(self._poll)

    @property
    def recording(self) -> bool:
        return self._stream is not None

    def start(self, device: int | None = None) -> bool:
        if self._stream is not None:
            return True
        self._fill[0] = 0
        try:
            self._stream = self._factory(device, SAMPLE_RATE_HZ, self._callback)
            self._stream.start()
        except Exception as error:
            self._stream = None
            self.problem_found.emit(
                f"Cannot record from the microphone ({error}). Check that an input device is "
                "connected and allowed, or load an audio file instead."
            )
            return False
        self._timer.start()
        self.stateChanged.emit(True)
        return True

    def stop(self) -> npt.NDArray[np.float32]:
        """Stop and return (and emit) what was recorded."""
        if self._stream is None:
            return np.zeros(0, np.float32)
        self._stream.stop()
        self._stream.close()
        self._stream = None
        self._timer.stop()
        take = self._buffer[: int(self._fill[0])].copy()
        self.stateChanged.emit(False)
        self.level.emit(0.0)
        self.recorded.emit(take)
        return take

    def _callback(
        self, indata: npt.NDArray[np.float32], frames: int, time: Any, status: Any
    ) -> None:
        """Audio thread: copy and measure; nothing else."""
        start = int(self._fill[0])
        n = min(frames, len(self._buffer) - start)
        if n > 0:
            self._buffer[start : start + n] = indata[:n, 0]
            self._fill[0] = start + n
        self._peak[0] = np.abs(indata[:, 0]).max() if frames else 0.0

    def _poll(self) -> None:
        self.level.emit(float(self._peak[0]))
        if self._fill[0] >= len(self._buffer):
            self.stop()


class RecorderPanel(QWidget):
    """Device choice, record/stop button and a level meter."""

    def __init__(self, recorder: Recorder, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.recorder = recorder
        self.devices = QComboBox()
        self.devices.setToolTip("Input device for microphone queries")
        self.record_button = QPushButton("● Record")
        self.record_button.setToolTip("Record a query from the microphone (press again to stop)")
        self.record_button.setCheckable(True)
        self.meter = QProgressBar()
        self.meter.setRange(0, 100)
        self.meter.setTextVisible(False)
        self.meter.setMaximumHeight(10)
        self.meter.setMinimumWidth(80)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #a33;")
        row = QHBoxLayout()
        row.addWidget(QLabel("Microphone:"))
        row.addWidget(self.devices, 1)
        row.addWidget(self.record_button)
        row.addWidget(self.meter)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.message)
        self.message.hide()
        self.refresh_devices()
        self.record_button.toggled.connect(self._toggled)
        recorder.level.connect(lambda peak: self.meter.setValue(int(min(peak, 1.0) * 100)))
        recorder.problem_found.connect(self._show_problem)
        recorder.stateChanged.connect(self._state)

    def refresh_devices(self) -> None:
        self.devices.clear()
        devices = input_devices()
        for index, name in devices:
            self.devices.addItem(name, index)
        if not devices:
            self.devices.addItem("no input device found", None)
            self.devices.setEnabled(False)
            self.record_button.setEnabled(False)
            self.record_button.setToolTip(
                "No microphone was found; load an audio file to query with a recording"
            )

    def _toggled(self, on: bool) -> None:
        if on:
            self.message.hide()
            if not self.recorder.start(self.devices.currentData()):
                self.record_button.setChecked(False)
        elif self.recorder.recording:
            self.recorder.stop()

    def _state(self, recording: bool) -> None:
        self.record_button.blockSignals(True)
        self.record_button.setChecked(recording)
        self.record_button.setText("■ Stop" if recording else "● Record")
        self.record_button.blockSignals(False)

    def _show_problem(self, text: str) -> None:
        self.message.setText(text)
        self.message.show()
        self.record_button.setChecked(False)
