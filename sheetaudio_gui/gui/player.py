"""Audio playback: a small state machine over an output stream that only copies samples.

States: "stopped" (position at the start of the passage), "playing", "paused". The whole passage is
loaded into one preallocated float32 buffer before playback; the stream callback copies the next
block from it into the device buffer and advances an integer position. The callback allocates no
buffers, takes no locks and does not log: it runs on the audio thread, where a stall is a click.
The GUI thread reads the position with a timer to move cursors.

The output stream is made by a factory (`stream_factory(samplerate, callback) -> stream` with
start/stop/close), so tests pass a fake stream and drive the callback themselves. Without an
audio device, `available` is False, `problem` says why, and the rest of the app carries on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from PySide6.QtCore import QObject, QTimer, Signal

from sheetaudio_gui.config import SAMPLE_RATE_HZ

logger = logging.getLogger(__name__)

PLAYER_BLOCK_FRAMES = 1024  # output callback block, samples (46 ms at 22.05 kHz)
POSITION_POLL_MS = 33  # the GUI reads the play position this often (~30 Hz cursor)


class OutputStream(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def close(self) -> None: ...


StreamFactory = Callable[[int, Callable[..., None]], OutputStream]


def sounddevice_stream(samplerate: int, callback: Callable[..., None]) -> OutputStream:
    """A mono float32 sounddevice OutputStream on the default device (raises if there is none)."""
    import sounddevice

    stream: OutputStream = sounddevice.OutputStream(
        samplerate=samplerate,
        channels=1,
        dtype="float32",
        blocksize=PLAYER_BLOCK_FRAMES,
        callback=callback,
    )
    return stream


class Player(QObject):
    """Plays a mono 22.05 kHz buffer: play/pause/stop, seek, loop over [loop_start, loop_end)."""

    stateChanged = Signal(str)  # "stopped" | "playing" | "paused"
    positionChanged = Signal(float)  # seconds, while playing (~30 Hz) and after a seek
    problem_found = Signal(str)  # e.g. no output device

    def __init__(self, stream_factory: StreamFactory | None = None) -> None:
        super().__init__()
        self._factory = stream_factory or sounddevice_stream
        self._buffer: npt.NDArray[np.float32] = np.zeros(0, np.float32)
        # shared with the audio thread; one-element arrays are written atomically by numpy
        self._pos = np.zeros(1, np.int64)  # next sample to play
        self._loop = np.zeros(2, np.int64)  # [start, end) in samples
        self._looping = np.zeros(1, np.bool_)
        self._finished = np.zeros(1, np.bool_)  # set by the callback at the end of the buffer
        self._stream: OutputStream | None = None
        self.state = "stopped"
        self.problem: str | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(POSITION_POLL_MS)
        self._timer.timeout.connect(self._poll)

    # --- properties ---------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        """False once opening the output device has failed (`problem` says why)."""
        return self.problem is None

    @property
    def duration_s(self) -> float:
        return len(self._buffer) / SAMPLE_RATE_HZ

    @property
    def position_s(self) -> float:
        return float(self._pos[0]) / SAMPLE_RATE_HZ

    @property
    def looping(self) -> bool:
        return bool(self._looping[0])

    # --- loading ------------------------------------------------------------------------------
    def load(self, samples: npt.NDArray[np.float32], start_s: float = 0.0) -> None:
        """Take a mono 22.05 kHz buffer (samples,); playback starts at `start_s`."""
        self.stop()
        self._buffer = np.ascontiguousarray(samples, dtype=np.float32)
        self._loop[:] = (0, len(self._buffer))
        self._pos[0] = self._clamp(start_s)
        self.positionChanged.emit(self.position_s)

    def set_loop(self, start_s: float, end_s: float, enabled: bool = True) -> None:
        """Loop the passage [start_s, end_s) (seconds in the loaded buffer)."""
        a, b = self._clamp(start_s), self._clamp(end_s)
        if b <= a:
            b = len(self._buffer)
        self._loop[:] = (a, b)
        self._looping[0] = enabled

    def set_looping(self, enabled: bool) -> None:
        self._looping[0] = enabled

    # --- transport ----------------------------------------------------------------------------
    def play(self) -> bool:
        """Start or resume; False (and `problem_found`) when there is no output device."""
        if len(self._buffer) == 0:
            return False
        if self.state == "playing":
            return True
        if self._pos[0] >= len(self._buffer):
            self._pos[0] = self._loop[0] if self.looping else 0
        if self._stream is None and not self._open():
            return False
        self._finished[0] = False
        assert self._stream is not None
        self._stream.start()
        self._set_state("playing")
        self._timer.start()
        return True

    def pause(self) -> None:
        if self.state != "playing":
            return
        self._halt()
        self._set_state("paused")

    def toggle(self) -> bool:
        """Space bar: play when stopped/paused, pause when playing."""
        if self.state == "playing":
            self.pause()
            return True
        return self.play()

    def stop(self) -> None:
        """Stop and go back to the start of the loop (or of the buffer)."""
        if self.state == "playing":
            self._halt()
        self._pos[0] = self._loop[0] if self.looping else 0
        if self.state != "stopped":
            self._set_state("stopped")
        self.positionChanged.emit(self.position_s)

    def seek(self, time_s: float) -> None:
        self._pos[0] = self._clamp(time_s)
        self.positionChanged.emit(self.position_s)

    def close(self) -> None:
        self.stop()
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    # --- the audio thread ---------------------------------------------------------------------
    def _callback(
        self, outdata: npt.NDArray[np.float32], frames: int, time: Any, status: Any
    ) -> None:
        """Copy the next `frames` samples into `outdata` (frames, 1); wrap at the loop end."""
        out = outdata[:, 0]
        buf = self._buffer
        pos = int(self._pos[0])
        written = 0
        while written < frames:
            end = int(self._loop[1]) if self._looping[0] else len(buf)
            if pos >= end:
                if self._looping[0] and self._loop[1] > self._loop[0]:
                    pos = int(self._loop[0])
                    continue
                out[written:] = 0.0
                self._finished[0] = True
                break
            n = min(frames - written, end - pos)
            out[written : written + n] = buf[pos : pos + n]
            written += n
            pos += n
        self._pos[0] = pos

    # --- internals ----------------------------------------------------------------------------
    def _open(self) -> bool:
        try:
            self._stream = self._factory(SAMPLE_RATE_HZ, self._callback)
        except Exception as error:  # PortAudioError, OSError (no PortAudio library), ...
            self.problem = (
                f"No audio output device ({error}). Playback is off; everything else works. "
                "Connect headphones or speakers and restart to listen."
            )
            logger.warning("audio output unavailable: %s", error)
            self.problem_found.emit(self.problem)
            return False
        return True

    def _halt(self) -> None:
        self._timer.stop()
        if self._stream is not None:
            self._stream.stop()

    def _poll(self) -> None:
        self.positionChanged.emit(self.position_s)
        if self._finished[0] and self.state == "playing":
            self._halt()
            self._pos[0] = len(self._buffer)
            self._set_state("stopped")
            self._pos[0] = 0

    def _set_state(self, state: str) -> None:
        self.state = state
        self.stateChanged.emit(state)

    def _clamp(self, time_s: float) -> int:
        return int(min(max(round(time_s * SAMPLE_RATE_HZ), 0), len(self._buffer)))
