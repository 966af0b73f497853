"""The audio front end: any file libsndfile reads -> mono 22.05 kHz -> 92-bin log spectrogram.

Everything the models hear passes through here, so a recording, a microphone buffer and a training
clip are all turned into the same representation (Dorfer et al. 2018, madmom-style):

- decoding with soundfile (libsndfile: WAV, FLAC, OGG/Vorbis, MP3, AIFF, ...), channels averaged,
  resampled with soxr (HQ) to `SAMPLE_RATE_HZ`; long files are read in blocks through one
  `soxr.ResampleStream`, so blocks join seamlessly and memory stays bounded;
- STFT with a 2048-sample Hann window at 20 frames/s; frame i is centred at sample
  round(i * 1102.5) (halves rounded up), zeros outside the signal;
- a triangular log-frequency filterbank (16 bands/octave, 30 Hz - 6 kHz, duplicates merged) giving
  `SPEC_BINS` = 92 bins, then log10(1 + x).

Time ranges are read by seeking (no decoding of what comes before), and the spectrogram of a file is
computed block by block with enough overlap that it equals the spectrogram of the whole signal.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr
import torch

from sheetaudio_gui.config import (
    AUDIO_BLOCK_SECONDS,
    BANDS_PER_OCTAVE,
    FMAX_HZ,
    FMIN_HZ,
    FRAMES_PER_SECOND,
    SAMPLE_RATE_HZ,
    SPEC_BINS,
    STFT_FRAME_SAMPLES,
)
from sheetaudio_gui.core.errors import UnreadableAudio
from sheetaudio_gui.core.jobs import CancelToken, Job, Progress, run_to_end

log = logging.getLogger(__name__)

Samples = npt.NDArray[np.float32]

RESAMPLE_QUALITY = "HQ"  # soxr "high quality": 20-bit precision, 95 % passband
FILTERBANK_REFERENCE_HZ = 440.0  # band centres are 440 Hz * 2**(k / BANDS_PER_OCTAVE)
RANGE_MARGIN_S = 0.25  # s of extra input read around a time range; the resampler's edges fall there
FFT_CHUNK_FRAMES = 1024  # STFT frames (summed over the batch) per FFT call: ~17 MB scratch
IMAGE_PX_PER_BIN = 3  # spectrogram PNG: pixel rows per filterbank bin
IMAGE_PX_PER_FRAME = 1  # spectrogram PNG: pixel columns per frame (1 px = 50 ms)
# A damaged header (e.g. an MP3's Xing frame count) can claim years of audio; the spectrogram is
# preallocated for at most this long and grows if the file really is longer.
PREALLOCATE_MAX_S = 4 * 3600.0  # s: 288,000 frames, 106 MB of float32
# libsndfile is asked for at most this many samples (frames x channels) at once, so a block of an
# 8-channel 192 kHz file, or a header claiming 255 channels, needs no more than 16 MB of scratch.
READ_CHUNK_SAMPLES = 1 << 22  # samples (float32)

# After a seek, libsndfile's MP3 decoder returns wrong samples until it has warmed up (measured
# with libsndfile 1.2.2: up to 4358 samples, ~4 MPEG frames); this much more is decoded and dropped.
_SEEK_PREROLL_SAMPLES = {"MP3": 16 * 1152}  # 16 MPEG-1 frames (32 at MPEG-2 rates)
_HALF_FRAME = STFT_FRAME_SAMPLES // 2


# --- reading files ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioInfo:
    """What the file's header says; `samples` counts frames per channel at `sample_rate`."""

    path: Path
    duration_s: float
    sample_rate: int
    channels: int
    samples: int
    format: str  # libsndfile container/encoding, e.g. "FLAC/PCM_16", "OGG/VORBIS"


def audio_info(path: str | Path) -> AudioInfo:
    """Duration, rate, channels and format of an audio file, without decoding it."""
    path = Path(path)
    with _open(path) as f:
        return AudioInfo(
            path=path,
            duration_s=f.frames / f.samplerate,
            sample_rate=int(f.samplerate),
            channels=int(f.channels),
            samples=int(f.frames),
            format=f"{f.format}/{f.subtype}",
        )


def load_audio(path: str | Path, start_s: float = 0.0, end_s: float | None = None) -> Samples:
    """Mono float32 samples at 22.05 kHz from `start_s` to `end_s` (None: end of file): (samples,).

    The result is exactly the slice [round(start_s * 22050), round(end_s * 22050)) of what the whole
    file resamples to (to float precision), but only the range (plus `RANGE_MARGIN_S` either side
    for the resampler) is decoded. Ranges beyond the end are cut short; an empty range gives (0,).
    """
    path = Path(path)
    if not (math.isfinite(start_s) and start_s >= 0.0):
        raise ValueError(f"start_s must be a finite time >= 0 s, got {start_s}")
    if end_s is not None and not (math.isfinite(end_s) and end_s >= start_s):
        raise ValueError(f"end_s must be a finite time >= start_s = {start_s} s, got {end_s}")
    first_out = _round_half_up(start_s * SAMPLE_RATE_HZ)
    stop_out = None if end_s is None else _round_half_up(end_s * SAMPLE_RATE_HZ)
    with _open(path) as f:
        rate = int(f.samplerate)
        # Start reading `RANGE_MARGIN_S` early, on an input sample that falls exactly on an output
        # sample, so the range's output lines up with the whole file's and the resampler's edge
        # effects land in the margin, which is cut off.
        step_in = rate // math.gcd(rate, SAMPLE_RATE_HZ)
        margin_in = math.ceil(RANGE_MARGIN_S * rate)
        first_in = max(0, (first_out * rate // SAMPLE_RATE_HZ - margin_in) // step_in)
        first_in *= step_in
        offset_out = first_in * SAMPLE_RATE_HZ // rate
        stop_in = None
        if stop_out is not None:
            stop_in = -(-stop_out * rate // SAMPLE_RATE_HZ) + margin_in
        blocks = _mono_blocks(f, path, first_in, stop_in, _block_frames(rate))
        out = np.concatenate([np.zeros(0, np.float32), *_resampled(blocks, rate)])
    end = None if stop_out is None else stop_out - offset_out
    result: Samples = np.ascontiguousarray(out[first_out - offset_out : end])
    return result


def stream_audio(path: str | Path, block_s: float = AUDIO_BLOCK_SECONDS) -> Iterator[Samples]:
    """The whole file as consecutive mono 22.05 kHz blocks of about `block_s` seconds: (samples,).

    Concatenated, the blocks equal `load_audio(path)`; at most one block of the file is in memory.
    The file is checked at once (errors raise here, not on the first block).
    """
    path = Path(path)
    if not block_s > 0:
        raise ValueError(f"block_s must be positive, got {block_s}")
    info = audio_info(path)
    return _stream(path, max(1, round(block_s * info.sample_rate)))


def _stream(path: Path, block_frames: int) -> Iterator[Samples]:
    with _open(path) as f:
        yield from _resampled(_mono_blocks(f, path, 0, None, block_frames), int(f.samplerate))


def resample_to_model_rate(samples: npt.NDArray[np.generic], sample_rate: int) -> Samples:
    """Raw buffer (frames,) or (frames, channels) at `sample_rate` -> mono 22.05 kHz (samples,).

    Channels are averaged; integer samples are scaled to [-1, 1). For microphone buffers and
    signals made in memory; files go through `load_audio` / `stream_audio`.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    x = np.asarray(samples)
    if x.ndim not in (1, 2):
        raise ValueError(f"expected (frames,) or (frames, channels), got shape {x.shape}")
    if np.issubdtype(x.dtype, np.integer):
        x = x / float(-np.iinfo(x.dtype).min)
    mono = (x if x.ndim == 1 else x.mean(axis=1)).astype(np.float32)
    if sample_rate == SAMPLE_RATE_HZ or len(mono) == 0:
        return np.ascontiguousarray(mono)
    out: Samples = soxr.resample(mono, sample_rate, SAMPLE_RATE_HZ, quality=RESAMPLE_QUALITY)
    return out.astype(np.float32, copy=False)


class _open:
    """Context manager: an open `sf.SoundFile`, or `UnreadableAudio` saying what is wrong."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: sf.SoundFile | None = None

    def __enter__(self) -> sf.SoundFile:
        path = self.path
        if not path.exists():
            raise UnreadableAudio(
                path, "no such file; check the path and that the drive is mounted"
            )
        if not path.is_file():
            raise UnreadableAudio(path, "is a folder, not an audio file; give the path of a file")
        if path.stat().st_size == 0:
            raise UnreadableAudio(
                path,
                "the file is empty (0 bytes); the copy or recording did not finish, copy it again",
            )
        try:
            self.file = sf.SoundFile(str(path))
        except sf.SoundFileError as error:
            raise UnreadableAudio(path, _not_audio(error)) from error
        except OSError as error:
            raise UnreadableAudio(
                path, f"cannot be read ({error.strerror}); check its permissions"
            ) from error
        if self.file.samplerate <= 0 or self.file.channels <= 0:
            self.file.close()
            raise UnreadableAudio(
                path,
                f"the header is damaged ({self.file.samplerate} Hz, {self.file.channels} channels);"
                " re-export the recording as WAV or FLAC",
            )
        log.debug(
            "opened %s: %s, %d Hz, %d channel(s), %d frames",
            path,
            self.file.format,
            self.file.samplerate,
            self.file.channels,
            self.file.frames,
        )
        return self.file

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            self.file.close()


def _not_audio(error: sf.SoundFileError) -> str:
    detail = str(getattr(error, "error_string", "") or error).strip().rstrip(".")
    return (
        f"not audio that libsndfile can decode ({detail}); the file is damaged or in an unsupported"
        " format. Use WAV, FLAC, OGG/Vorbis, MP3 or AIFF, e.g. convert with"
        " `ffmpeg -i INPUT output.flac`"
    )


def _block_frames(sample_rate: int) -> int:
    return max(1, round(AUDIO_BLOCK_SECONDS * sample_rate))


def _mono_blocks(
    f: sf.SoundFile, path: Path, first: int, stop: int | None, block_frames: int
) -> Iterator[Samples]:
    """Input frames [first, stop) (None: to the end) as mono float32 blocks at the file's rate."""
    position = 0
    if first > 0 and f.seekable():
        if first >= f.frames:
            return
        position = _seek(f, path, max(0, first - _SEEK_PREROLL_SAMPLES.get(f.format, 0)))
    while position < first:  # decode and drop what precedes the range
        dropped = len(_read(f, path, min(block_frames, first - position)))
        if dropped == 0:
            return
        position += dropped
    while stop is None or position < stop:
        want = block_frames if stop is None else min(block_frames, stop - position)
        block = _read(f, path, want)
        if len(block) == 0:
            return
        position += len(block)
        yield block


def _seek(f: sf.SoundFile, path: Path, frame: int) -> int:
    try:
        return int(f.seek(frame))
    except sf.SoundFileError as error:
        raise UnreadableAudio(
            path, f"cannot seek to sample {frame} ({error}); the file is damaged, re-export it"
        ) from error


def _read(f: sf.SoundFile, path: Path, frames: int) -> Samples:
    """Up to `frames` frames, channels averaged: (n,) float32; (0,) at the end of the file.

    Read in pieces of at most `READ_CHUNK_SAMPLES`, so scratch memory does not grow with the
    channel count or sample rate.
    """
    step = max(1, READ_CHUNK_SAMPLES // f.channels)
    parts: list[Samples] = []
    start = -1  # position of the first frame read, for messages
    while frames > 0:
        try:
            position = f.tell()
            data = f.read(min(step, frames), dtype="float32", always_2d=True)
        except sf.SoundFileError as error:
            detail = str(getattr(error, "error_string", "") or error).strip()
            raise UnreadableAudio(
                path,
                f"decoding failed near {position / f.samplerate:.1f} s ({detail}); the file is"
                " damaged or truncated, re-export or re-copy it",
            ) from error
        start = position if start < 0 else start
        if len(data) == 0:
            break
        parts.append(data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32))
        frames -= len(data)
    mono: Samples = (
        parts[0] if len(parts) == 1 else np.concatenate([np.zeros(0, np.float32), *parts])
    )
    if not np.isfinite(mono).all():
        raise UnreadableAudio(
            path,
            f"contains invalid samples (NaN or infinity) near {start / f.samplerate:.1f} s;"
            " the file is damaged, re-export it",
        )
    return np.ascontiguousarray(mono)


def _resampled(blocks: Iterable[Samples], sample_rate: int) -> Iterator[Samples]:
    """Mono blocks at `sample_rate` -> mono blocks at 22.05 kHz, joined seamlessly (one stream)."""
    if sample_rate == SAMPLE_RATE_HZ:
        yield from blocks
        return
    stream = soxr.ResampleStream(
        sample_rate, SAMPLE_RATE_HZ, 1, dtype="float32", quality=RESAMPLE_QUALITY
    )
    previous: Samples | None = None
    for block in blocks:  # hold one block back: the last one must be sent with last=True
        if previous is not None:
            out = stream.resample_chunk(previous, last=False)
            if len(out):
                yield out
        previous = block
    tail = previous if previous is not None else np.zeros(0, np.float32)
    yield stream.resample_chunk(tail, last=True)


# --- spectrogram --------------------------------------------------------------------------------


def num_frames(num_samples: int) -> int:
    """Spectrogram frames of a signal of `num_samples` at 22.05 kHz: ceil(duration * 20)."""
    return -(-num_samples * FRAMES_PER_SECOND // SAMPLE_RATE_HZ)


def frame_centres(first: int, stop: int) -> npt.NDArray[np.int64]:
    """Centre samples of frames [first, stop): round(i * 1102.5), halves rounded up; (n,) int64."""
    i = np.arange(first, stop, dtype=np.int64)
    return (2 * i * SAMPLE_RATE_HZ + FRAMES_PER_SECOND) // (2 * FRAMES_PER_SECOND)


def _frames_centred_at_most(sample: int) -> int:
    """How many frames (from frame 0 on) have their centre at or before `sample`."""
    if sample < 0:
        return 0
    # round(i * sr / fps) <= sample  <=>  2 * i * sr < (2 * sample + 1) * fps
    return -(-(2 * sample + 1) * FRAMES_PER_SECOND // (2 * SAMPLE_RATE_HZ))


@functools.cache
def _filterbank() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64]]:
    """Triangular log-frequency filterbank: ((fft_bins_used, 92) weights, (92,) centre Hz).

    Construction (madmom's LogarithmicFilterbank with unique filters, as used by Dorfer et al.):
    band centres 440 Hz * 2**(k/16) that lie in [30 Hz, 6 kHz] (122 of them) are each moved to the
    nearest bin of the 2048-point FFT at 22.05 kHz (10.8 Hz apart). Below ~300 Hz several centres
    land on the same bin; duplicates are merged, leaving 94 distinct bins. Every three consecutive
    distinct bins (lower, centre, upper) make one triangle that rises from 0 at `lower` to 1 at
    `centre` and falls to 0 at `upper`; the first and last bins only serve as edges, so 94 - 2 = 92
    filters. Each filter is normalised to sum 1, so wide high bands are not louder than narrow ones.
    """
    bin_hz = SAMPLE_RATE_HZ / STFT_FRAME_SAMPLES
    k_low = math.floor(math.log2(FMIN_HZ / FILTERBANK_REFERENCE_HZ) * BANDS_PER_OCTAVE)
    k_high = math.ceil(math.log2(FMAX_HZ / FILTERBANK_REFERENCE_HZ) * BANDS_PER_OCTAVE)
    k = np.arange(k_low, k_high + 1)
    centres = FILTERBANK_REFERENCE_HZ * 2.0 ** (k / BANDS_PER_OCTAVE)
    centres = centres[(centres >= FMIN_HZ) & (centres <= FMAX_HZ)]
    bins = np.unique(np.floor(centres / bin_hz + 0.5).astype(np.int64))
    lower, centre, upper = bins[:-2], bins[1:-1], bins[2:]
    fft_bin = np.arange(upper[-1] + 1, dtype=np.float64)[:, None]
    rising = (fft_bin - lower) / (centre - lower)
    falling = (upper - fft_bin) / (upper - centre)
    weights = np.clip(np.minimum(rising, falling), 0.0, None)
    weights /= weights.sum(axis=0, keepdims=True)
    assert weights.shape[1] == SPEC_BINS, f"filterbank has {weights.shape[1]} bins, not {SPEC_BINS}"
    centre_hz = (centre * bin_hz).astype(np.float64)
    return weights.astype(np.float32), centre_hz


def filterbank_frequencies_hz() -> npt.NDArray[np.float64]:
    """Frequency where each of the 92 filters peaks (its centre FFT bin), ascending: (92,)."""
    return _filterbank()[1].copy()


@functools.cache
def _torch_constants() -> tuple[torch.Tensor, torch.Tensor]:
    """(2048,) symmetric Hann window (as numpy.hanning / madmom) and (fft_bins_used, 92) weights."""
    window = torch.hann_window(STFT_FRAME_SAMPLES, periodic=False, dtype=torch.float32)
    return window, torch.from_numpy(_filterbank()[0])


def _windows_spectrogram(x: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    """Log filterbank spectrum of the windows x[:, s : s + 2048]: (batch, m) -> (batch, 92, n).

    `starts` (n,) int64 must keep every window inside x. Frames are transformed in chunks of
    `FFT_CHUNK_FRAMES` so that scratch memory stays bounded whatever the batch and signal length.
    """
    window, weights = _torch_constants()
    used_bins = weights.shape[0]
    frames = x.unfold(-1, STFT_FRAME_SAMPLES, 1)  # (batch, m - 2047, 2048), a view
    step = max(1, FFT_CHUNK_FRAMES // max(1, x.shape[0]))
    parts = []
    for lo in range(0, len(starts), step):
        chunk = frames[:, starts[lo : lo + step]] * window
        magnitude = torch.fft.rfft(chunk, dim=-1)[..., :used_bins].abs()
        parts.append(torch.log10(1.0 + magnitude @ weights))  # (batch, n_chunk, 92)
    if not parts:
        return x.new_zeros((x.shape[0], SPEC_BINS, 0))
    return torch.cat(parts, dim=1).transpose(1, 2).contiguous()


@torch.inference_mode()
def log_spectrogram_batch(x: torch.Tensor) -> torch.Tensor:
    """Mono 22.05 kHz signals in [-1, 1] -> spectrograms: (batch, samples) -> (batch, 92, frames).

    frames = ceil(samples / 1102.5); frame i covers samples round(i * 1102.5) +- 1024, zeros
    outside the signal. Computed in float32 on x's device, without autograd.
    """
    if x.ndim != 2 or not x.is_floating_point():
        raise ValueError(
            f"expected a float tensor (batch, samples), got {x.dtype} {tuple(x.shape)}"
        )
    n = num_frames(x.shape[-1])
    padded = torch.nn.functional.pad(x.float(), (_HALF_FRAME, _HALF_FRAME))
    starts = torch.from_numpy(frame_centres(0, n)).to(x.device)
    return _windows_spectrogram(padded, starts)


def log_spectrogram(samples: npt.ArrayLike) -> Samples:
    """Mono 22.05 kHz signal in [-1, 1] -> log-frequency spectrogram: (samples,) -> (92, frames)."""
    x = np.ascontiguousarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected a mono signal (samples,), got shape {x.shape}")
    spec: Samples = log_spectrogram_batch(torch.from_numpy(x)[None])[0].numpy()
    return spec


class _StreamingSpectrogram:
    """Spectrogram of a signal that arrives in blocks; equals `log_spectrogram` of the whole signal.

    Keeps only the samples that frames still to come need (< one block + 2048), with the signal's
    start padded by 1024 zeros like the whole-signal version. The result is allocated once for
    `expected_frames` (from the file's header, at most `PREALLOCATE_MAX_S`) and only grows if
    the header was wrong.
    """

    def __init__(self, expected_frames: int = 0) -> None:
        self.buffer = np.zeros(_HALF_FRAME, np.float32)
        self.buffer_start = -_HALF_FRAME  # signal index of buffer[0]
        self.samples_seen = 0
        self.next_frame = 0
        cap = int(PREALLOCATE_MAX_S * FRAMES_PER_SECOND)
        self.result = np.zeros((SPEC_BINS, min(max(0, expected_frames), cap)), np.float32)

    def push(self, block: Samples) -> None:
        self.buffer = np.concatenate([self.buffer, block])
        self.samples_seen += len(block)
        # Frames whose whole window has arrived: centre + 1024 <= samples seen.
        self._compute(
            max(self.next_frame, _frames_centred_at_most(self.samples_seen - _HALF_FRAME))
        )

    def finish(self) -> Samples:
        self.buffer = np.concatenate([self.buffer, np.zeros(STFT_FRAME_SAMPLES, np.float32)])
        self._compute(num_frames(self.samples_seen))
        if self.result.shape[1] == self.next_frame:
            return self.result
        return self.result[:, : self.next_frame].copy()

    def _compute(self, stop: int) -> None:
        if stop > self.next_frame:
            starts = frame_centres(self.next_frame, stop) - _HALF_FRAME - self.buffer_start
            with torch.inference_mode():
                spec = _windows_spectrogram(
                    torch.from_numpy(self.buffer)[None], torch.from_numpy(starts)
                )
            if stop > self.result.shape[1]:
                grown = np.zeros((SPEC_BINS, max(stop, 2 * self.result.shape[1])), np.float32)
                grown[:, : self.next_frame] = self.result[:, : self.next_frame]
                self.result = grown
            self.result[:, self.next_frame : stop] = spec[0].numpy()
            self.next_frame = stop
        keep_from = int(frame_centres(self.next_frame, self.next_frame + 1)[0]) - _HALF_FRAME
        drop = max(0, keep_from - self.buffer_start)
        self.buffer = self.buffer[drop:]
        self.buffer_start += drop


def file_spectrogram_job(
    path: str | Path, cancel: CancelToken | None = None, block_s: float = AUDIO_BLOCK_SECONDS
) -> Job[Samples]:
    """`file_spectrogram` as a job: yields Progress per block, returns (92, frames); cancellable."""
    path = Path(path)
    info = audio_info(path)
    total = max(1, math.ceil(info.duration_s / block_s))
    spectrogram = _StreamingSpectrogram(
        num_frames(info.samples * SAMPLE_RATE_HZ // info.sample_rate)
    )
    yield Progress(0, total, f"reading {path.name}")
    for done, block in enumerate(stream_audio(path, block_s), start=1):
        if cancel is not None:
            cancel.raise_if_cancelled()
        spectrogram.push(block)
        seconds = spectrogram.samples_seen / SAMPLE_RATE_HZ
        yield Progress(min(done, total), total, f"spectrogram of {path.name}: {seconds:.0f} s")
    return spectrogram.finish()


def file_spectrogram(path: str | Path, block_s: float = AUDIO_BLOCK_SECONDS) -> Samples:
    """Spectrogram of a whole file, read in blocks: (92, frames); memory ~ one block + the result.

    Equals `log_spectrogram(load_audio(path))` to float tolerance.
    """
    return run_to_end(file_spectrogram_job(path, block_s=block_s))


def spectrogram_image(
    spec: npt.NDArray[np.floating],
    px_per_bin: int = IMAGE_PX_PER_BIN,
    px_per_frame: int = IMAGE_PX_PER_FRAME,
) -> npt.NDArray[np.uint8]:
    """(92, frames) -> (92 * px_per_bin, frames * px_per_frame, 3) RGB image, bass at the bottom.

    Scaled to the spectrogram's own maximum (silence stays at the dark end of the ramp).
    """
    from sheetaudio_gui.core.images import colour_ramp  # pulls in pymupdf: only when drawing

    s = np.asarray(spec, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"expected a (bins, frames) spectrogram, got shape {s.shape}")
    peak = float(s.max()) if s.size else 0.0
    scaled = s / peak if peak > 0 else np.zeros_like(s)
    rows = np.repeat(np.repeat(scaled[::-1], px_per_bin, axis=0), px_per_frame, axis=1)
    return colour_ramp(rows)


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)
