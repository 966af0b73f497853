"""The audio front end: what comes out for signals whose answer we know (written by the tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf
import torch

from sheetaudio_gui.config import FRAMES_PER_SECOND, SAMPLE_RATE_HZ, SPEC_BINS
from sheetaudio_gui.core.audio import (
    audio_info,
    file_spectrogram,
    file_spectrogram_job,
    filterbank_frequencies_hz,
    frame_centres,
    load_audio,
    log_spectrogram,
    log_spectrogram_batch,
    resample_to_model_rate,
    spectrogram_image,
    stream_audio,
)
from sheetaudio_gui.core.errors import Cancelled, UnreadableAudio
from sheetaudio_gui.core.jobs import CancelToken

SR = SAMPLE_RATE_HZ


def tones(
    sample_rate: int, duration_s: float = 2.0, freqs_hz: tuple[float, ...] = (220, 440, 1500, 3000)
) -> npt.NDArray[np.float32]:
    """Sum of sines with smooth 0.1 s fades, all below 3.6 kHz so even an 8 kHz file holds them."""
    t = np.arange(round(duration_s * sample_rate)) / sample_rate
    fade = np.clip(np.minimum(t, duration_s - t) / 0.1, 0.0, 1.0) ** 2
    amplitudes = (0.3, 0.2, 0.1, 0.05)
    x = sum(a * np.sin(2 * np.pi * f * t) for a, f in zip(amplitudes, freqs_hz, strict=False))
    return (fade * x).astype(np.float32)


def sine(freq_hz: float, duration_s: float, amplitude: float = 0.5) -> npt.NDArray[np.float32]:
    t = np.arange(round(duration_s * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


@pytest.fixture(scope="module")
def reference() -> npt.NDArray[np.float32]:
    """Spectrogram of `tones` made directly at 22.05 kHz, mono: what every file must give."""
    return log_spectrogram(tones(SR))


# --- the spectrogram itself ---------------------------------------------------------------------


def test_filterbank_has_92_bins_with_rising_centres_between_30hz_and_6khz() -> None:
    centres = filterbank_frequencies_hz()
    assert centres.shape == (SPEC_BINS,) == (92,)
    assert np.all(np.diff(centres) > 0)
    assert 30.0 <= centres[0] < 50.0
    assert 5500.0 < centres[-1] <= 6000.0


def test_spectrogram_has_92_bins_and_20_frames_per_second() -> None:
    spec = log_spectrogram(sine(440, 3.0))
    assert spec.shape == (92, 60)
    assert spec.dtype == np.float32


@pytest.mark.parametrize("duration_s", [0.05, 0.5, 1.0, 2.37, 10.0])
def test_frame_count_is_duration_times_20(duration_s: float) -> None:
    frames = log_spectrogram(np.zeros(round(duration_s * SR), np.float32)).shape[1]
    assert abs(frames - duration_s * FRAMES_PER_SECOND) <= 1


def test_frames_are_centred_on_the_fractional_hop_rounded() -> None:
    assert frame_centres(0, 5).tolist() == [0, 1103, 2205, 3308, 4410]  # i * 1102.5, halves up
    assert frame_centres(20 * 3600, 20 * 3600 + 1).tolist() == [3600 * SR]  # no drift after 1 h


@pytest.mark.parametrize("freq_hz", [110.0, 440.0, 1000.0, 4000.0])
def test_sine_peaks_in_the_bin_whose_band_contains_its_frequency(freq_hz: float) -> None:
    spec = log_spectrogram(sine(freq_hz, 1.0))
    centres = filterbank_frequencies_hz()
    peak = int(np.argmax(spec[:, 5:-5].mean(axis=1)))
    # The band of filter k spans from the centre of filter k-1 to the centre of filter k+1.
    assert centres[peak - 1] < freq_hz < centres[peak + 1]
    assert peak == int(np.argmin(np.abs(centres - freq_hz)))


def test_440hz_sine_peaks_in_the_bin_containing_440hz() -> None:
    spec = log_spectrogram(sine(440.0, 2.0))
    centres = filterbank_frequencies_hz()
    peak = int(np.argmax(spec.mean(axis=1)))
    assert centres[peak - 1] < 440.0 < centres[peak + 1]
    assert abs(centres[peak] - 440.0) < 10.0


@pytest.mark.parametrize("click_s", [0.5, 1.23, 2.0, 2.975])
def test_a_click_at_t_shows_up_in_frame_round_t_times_20(click_s: float) -> None:
    x = np.zeros(3 * SR + 100, np.float32)
    x[round(click_s * SR)] = 1.0
    energy = log_spectrogram(x).sum(axis=0)
    expected = round(click_s * FRAMES_PER_SECOND)
    assert abs(int(np.argmax(energy)) - expected) <= 1
    assert np.all(energy[: expected - 1] == 0.0)  # nothing before the click (window is +-46 ms)
    assert energy[expected] > 0.5 * energy.max()


def test_silence_gives_an_all_zero_spectrogram_without_nan() -> None:
    spec = log_spectrogram(np.zeros(SR, np.float32))
    assert spec.shape == (92, 20)
    assert np.all(spec == 0.0)


def test_empty_signal_gives_zero_frames() -> None:
    assert log_spectrogram(np.zeros(0, np.float32)).shape == (92, 0)


def test_louder_signal_gives_larger_log_magnitude_but_not_proportionally() -> None:
    quiet = log_spectrogram(sine(440, 1.0, 0.01)).max()
    loud = log_spectrogram(sine(440, 1.0, 1.0)).max()
    assert 0 < quiet < loud < 100 * quiet  # log10(1 + x) compresses


def test_batched_spectrogram_equals_one_at_a_time_and_needs_no_autograd() -> None:
    signals = np.stack([tones(SR, 1.5), sine(440, 1.5), np.zeros(round(1.5 * SR), np.float32)])
    x = torch.from_numpy(signals).requires_grad_(True)
    batch = log_spectrogram_batch(x)
    assert batch.shape == (3, 92, 30)
    assert not batch.requires_grad
    for row, signal in zip(batch, signals, strict=True):
        np.testing.assert_allclose(row.numpy(), log_spectrogram(signal), atol=1e-5)


def test_spectrogram_image_puts_low_frequencies_at_the_bottom() -> None:
    spec = log_spectrogram(sine(60.0, 1.0))
    image = spectrogram_image(spec)
    assert image.shape == (92 * 3, 20, 3)
    assert image.dtype == np.uint8
    brightness = image.astype(int).sum(axis=(1, 2))
    assert np.argmax(brightness) > image.shape[0] * 0.8  # bright row near the bottom
    assert spectrogram_image(np.zeros((92, 4), np.float32)).shape == (276, 4, 3)


# --- files: formats, rates, channels ------------------------------------------------------------

FORMATS = [
    ("wav", "WAV", "PCM_16", True),
    ("flac", "FLAC", "PCM_16", True),
    ("aiff", "AIFF", "PCM_16", True),
    ("ogg", "OGG", "VORBIS", False),
    pytest.param(
        "mp3",
        "MP3",
        "MPEG_LAYER_III",
        False,
        marks=pytest.mark.skipif(
            "MP3" not in sf.available_formats(), reason="this libsndfile cannot write MP3"
        ),
    ),
]


@pytest.mark.parametrize(("suffix", "fmt", "subtype", "lossless"), FORMATS)
def test_every_format_gives_the_reference_spectrogram(
    tmp_path: Path,
    reference: npt.NDArray[np.float32],
    suffix: str,
    fmt: str,
    subtype: str,
    lossless: bool,
) -> None:
    path = tmp_path / f"tones.{suffix}"
    sf.write(path, tones(SR), SR, format=fmt, subtype=subtype)
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.samples) == (SR, 1, 2 * SR)
    assert info.format == f"{fmt}/{subtype}"
    spec = file_spectrogram(path)
    assert spec.shape == reference.shape
    error = np.abs(spec - reference)
    if lossless:  # 16-bit quantisation only
        assert error.max() < 2e-3
    else:  # the codec drops quiet detail; loud structure stays
        assert error.mean() < 0.05
        loud = reference.max(axis=0) > 1.0
        assert np.array_equal(spec.argmax(axis=0)[loud], reference.argmax(axis=0)[loud])


@pytest.mark.parametrize("channels", [1, 2, 8])
@pytest.mark.parametrize("sample_rate", [8000, 44100, 48000, 192000])
def test_any_rate_and_channel_count_gives_the_reference_spectrogram(
    tmp_path: Path, reference: npt.NDArray[np.float32], sample_rate: int, channels: int
) -> None:
    # Channels carry different gains whose mean is 1: the mix-down must average them.
    gains = np.linspace(0.5, 1.5, channels) if channels > 1 else np.ones(1)
    gains /= gains.mean()
    path = tmp_path / f"tones_{sample_rate}_{channels}.wav"
    sf.write(path, tones(sample_rate)[:, None] * gains[None, :], sample_rate, subtype="PCM_24")
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.duration_s) == (sample_rate, channels, 2.0)
    samples = load_audio(path)
    assert samples.dtype == np.float32 and samples.shape == (2 * SR,)
    spec = file_spectrogram(path)
    assert spec.shape == reference.shape
    np.testing.assert_allclose(spec, reference, atol=1e-3)


def test_resampling_a_raw_buffer_mixes_channels_and_scales_integers() -> None:
    stereo = np.stack([tones(48000), tones(48000)], axis=1)
    mono = resample_to_model_rate(stereo, 48000)
    assert mono.dtype == np.float32 and mono.shape == (2 * SR,)
    np.testing.assert_allclose(mono, tones(SR), atol=1e-3)
    as_int16 = (tones(SR) * 32767).astype(np.int16)
    np.testing.assert_allclose(resample_to_model_rate(as_int16, SR), tones(SR), atol=1e-4)
    with pytest.raises(ValueError, match="sample_rate"):
        resample_to_model_rate(stereo, 0)


# --- ranges and streaming -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "sample_rate"),
    [
        ("wav", 44100),
        ("wav", 22050),
        ("flac", 48000),
        ("aiff", 8000),
        ("ogg", 44100),
        ("ogg", 22050),
        ("mp3", 48000),
        ("mp3", 22050),
    ],
)
def test_a_time_range_read_equals_the_slice_of_a_whole_read(
    tmp_path: Path, suffix: str, sample_rate: int
) -> None:
    path = tmp_path / f"long.{suffix}"
    sf.write(path, tones(sample_rate, 6.0), sample_rate)
    whole = load_audio(path)
    for start_s, end_s in [(0.0, 0.3), (1.0, 2.5), (2.345, 5.01), (5.5, None), (4.0, 99.0)]:
        part = load_audio(path, start_s, end_s)
        first = int(np.floor(start_s * SR + 0.5))
        stop = None if end_s is None else int(np.floor(end_s * SR + 0.5))
        expected = whole[first:stop]
        assert part.shape == expected.shape, (start_s, end_s)
        np.testing.assert_allclose(part, expected, atol=1e-5)
    assert load_audio(path, 7.0, 8.0).shape == (0,)


def test_time_range_arguments_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, tones(SR), SR)
    with pytest.raises(ValueError, match="start_s"):
        load_audio(path, -1.0)
    with pytest.raises(ValueError, match="end_s"):
        load_audio(path, 1.0, 0.5)


@pytest.mark.parametrize("sample_rate", [22050, 44100, 8000])
def test_streamed_file_spectrogram_equals_the_whole_signal_spectrogram(
    tmp_path: Path, sample_rate: int
) -> None:
    path = tmp_path / "long.flac"
    sf.write(path, tones(sample_rate, 7.3), sample_rate)
    whole = load_audio(path)
    blocks = list(stream_audio(path, block_s=0.7))
    assert len(blocks) >= 10
    assert max(len(b) for b in blocks) <= 0.8 * SR  # about one block at a time
    np.testing.assert_allclose(np.concatenate(blocks), whole, atol=1e-6)
    expected = log_spectrogram(whole)
    for block_s in (0.05, 0.7, 60.0):  # blocks shorter than a frame, odd lengths, one block
        np.testing.assert_allclose(file_spectrogram(path, block_s=block_s), expected, atol=1e-5)


def test_file_spectrogram_job_reports_progress_and_can_be_cancelled(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, tones(SR, 3.0), SR)
    job = file_spectrogram_job(path, block_s=1.0)
    progress = [next(job) for _ in range(4)]
    assert [p.done for p in progress] == [0, 1, 2, 3] and progress[-1].total == 3
    token = CancelToken()
    job = file_spectrogram_job(path, token, block_s=1.0)
    next(job)
    token.cancel()
    with pytest.raises(Cancelled):
        next(job)


def test_silent_file_gives_an_all_zero_spectrogram(tmp_path: Path) -> None:
    path = tmp_path / "silence.flac"
    sf.write(path, np.zeros((3 * 44100, 2), np.float32), 44100)
    spec = file_spectrogram(path)
    assert spec.shape == (92, 60)
    assert np.all(spec == 0.0)


def test_a_file_with_a_header_but_no_samples_gives_an_empty_spectrogram(tmp_path: Path) -> None:
    path = tmp_path / "nothing.wav"
    sf.write(path, np.zeros(0, np.float32), 44100)
    assert audio_info(path).samples == 0
    assert load_audio(path).shape == (0,)
    assert file_spectrogram(path).shape == (92, 0)


# --- errors for people --------------------------------------------------------------------------


def _corrupt_flac(path: Path) -> None:
    sf.write(path, tones(SR, 3.0), SR, format="FLAC")
    data = bytearray(path.read_bytes())
    data[5000:20000] = np.random.default_rng(0).integers(0, 256, 15000, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def _nan_wav(path: Path) -> None:
    x = tones(SR, 1.0)
    x[100] = np.nan
    sf.write(path, x, SR, subtype="FLOAT")


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b""), "empty (0 bytes)"),
        (lambda p: p.write_text("this is not audio\n" * 50), "not audio"),
        (lambda p: p.write_bytes(np.arange(4096, dtype=np.uint8).tobytes()), "not audio"),
        (lambda p: p.mkdir(), "folder"),
        (_corrupt_flac, "damaged"),
        (_nan_wav, "NaN"),
    ],
    ids=["missing", "empty", "text", "bytes", "folder", "corrupt", "nan"],
)
def test_unreadable_files_raise_unreadable_audio_naming_the_file(
    tmp_path: Path, make: object, words: str
) -> None:
    path = tmp_path / "recording.wav"
    make(path)  # type: ignore[operator]
    for read in (audio_info, load_audio, file_spectrogram, lambda p: list(stream_audio(p))):
        if words in ("damaged", "NaN") and read is audio_info:
            continue  # the header is fine; decoding fails
        with pytest.raises(UnreadableAudio) as caught:
            read(path)
        assert str(path) in str(caught.value)
        assert words in str(caught.value)
        assert caught.value.path == path
