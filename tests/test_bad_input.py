"""Bad input: every damaged, odd or huge file gets a message naming it, and the work goes on.

Each case is made here in tmp_path: PDFs cut short, overwritten or locked with a user password,
PDFs without music or with 500 pages, a 20,000 x 20,000 px scan, empty and fake audio files,
8-channel / 8 kHz / 192 kHz / silent recordings, a 3-hour recording (slow), and folder and file
names with spaces and non-ASCII letters. Memory is measured as the growth of the peak resident
set size (ru_maxrss) of a fresh Python process, so the test process's own history does not count.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pymupdf
import pytest
import soundfile as sf
import torch
from material import draw_two_staves

from sheetaudio_gui.config import PAGE_MAX_PIXELS, SAMPLE_RATE_HZ, SPEC_BINS
from sheetaudio_gui.core.audio import (
    audio_info,
    file_spectrogram,
    filterbank_frequencies_hz,
    load_audio,
    stream_audio,
)
from sheetaudio_gui.core.encode import encode_audio
from sheetaudio_gui.core.errors import UnreadableAudio, UnreadableScore
from sheetaudio_gui.core.index import Library
from sheetaudio_gui.core.jobs import run_to_end
from sheetaudio_gui.core.models import LoadedModel, PassageModel, load_model, save_model
from sheetaudio_gui.core.score import detect_systems, open_score

torch.set_num_threads(1)

NON_ASCII_FOLDER = "Bärenreiter Ausgabe"
NON_ASCII_SCORE = "Études №1.pdf"
MB = 1 << 20


# --- material -------------------------------------------------------------------------------------


def staff_pdf(path: Path, pages: int = 2, size: tuple[float, float] = (300, 200)) -> Path:
    """`pages` pages, each with two five-line staves, a barline and noteheads (vector PDF)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staff_document(pages, size).save(path)
    return path


def staff_document(pages: int, size: tuple[float, float] = (300, 200)) -> pymupdf.Document:
    """Page 1 is drawn; the others are copies sharing its content stream (quick to make)."""
    doc = pymupdf.open()
    page = doc.new_page(width=size[0], height=size[1])
    draw_two_staves(page)
    for _ in range(pages - 1):
        doc.fullcopy_page(0)
    return doc


def text_pdf(path: Path) -> Path:
    """A letter: text only, no staves."""
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_textbox(pymupdf.Rect(72, 72, 520, 700), "Dear colleague,\n" + "words " * 400)
    doc.save(path)
    return path


def locked_pdf(path: Path, user_pw: str = "secret") -> Path:
    staff_document(pages=1).save(
        path, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw=user_pw, owner_pw="owner"
    )
    return path


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A grayscale PNG whose header claims width x height px but which holds almost no data."""
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + _chunk(b"IDAT", zlib.compress(b"\x00\xff\xff"))
        + _chunk(b"IEND", b"")
    )
    return path


def white_png(path: Path, width: int, height: int) -> Path:
    """A white grayscale PNG written row by row (the test never holds the image in memory)."""
    packer = zlib.compressobj(1)
    row = b"\x00" + b"\xff" * width  # filter byte 0, then the pixels
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", data)
        + _chunk(b"IEND", b"")
    )
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def tone(
    path: Path, sample_rate: int, seconds: float, channels: int = 1, freq_hz: float = 440.0
) -> Path:
    """A sine of `freq_hz` in every channel (channel k at gain (k + 1) / channels)."""
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    wave = 0.5 * np.sin(2 * np.pi * freq_hz * t)
    gains = (np.arange(channels) + 1) / channels
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave[:, None] * gains[None, :], sample_rate)
    return path


def peak_rss_growth_mb(code: str, timeout_s: float = 300) -> tuple[float, str]:
    """Run `code` in a fresh Python after the project's imports: (growth of peak RSS in MB, stdout).

    The baseline is the peak after importing numpy, torch, pymupdf and the readers.
    """
    script = (
        textwrap.dedent(
            """
        import resource
        import sheetaudio_gui.core.audio, sheetaudio_gui.core.score, sheetaudio_gui.core.snippets
        import torch
        torch.set_num_threads(1)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        """
        )
        + textwrap.dedent(code)
        + textwrap.dedent(
            """
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print("GROWTH_KB", after - before)
        """
        )
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout_s
    )
    assert done.returncode == 0, done.stderr[-3000:]
    growth_kb = int(done.stdout.split("GROWTH_KB")[-1])
    return growth_kb / 1024, done.stdout


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "m.pt"
    save_model(PassageModel(), path)
    return load_model(path)


@pytest.fixture
def quiet_mupdf() -> Iterator[None]:
    """MuPDF prints its complaints about damaged files to stderr; the tests check the messages."""
    errors = pymupdf.TOOLS.mupdf_display_errors(False)
    yield
    pymupdf.TOOLS.mupdf_display_errors(errors)


def raises_naming(
    error: type[Exception], path: Path, read: Callable[[Path], object], *words: str
) -> str:
    """`read(path)` raises `error` whose message names the file and contains `words`."""
    with pytest.raises(error) as caught:
        read(path)
    message = str(caught.value)
    assert path.name in message and caught.value.path == path  # type: ignore[attr-defined]
    for word in words:
        assert word in message
    return message


def render_all(path: Path) -> list[tuple[int, int]]:
    with open_score(path) as doc:
        return [doc.page(i).image.shape for i in range(doc.page_count)]


# --- PDFs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [0, 8, 100])
def test_a_pdf_cut_before_its_pages_raises_unreadable_score_naming_it(
    tmp_path: Path, quiet_mupdf: None, keep: int
) -> None:
    whole = staff_pdf(tmp_path / "whole.pdf").read_bytes()
    path = tmp_path / "cut short.pdf"
    path.write_bytes(whole[:keep])
    words = ("empty",) if keep == 0 else ("not a readable PDF", "re-export")
    raises_naming(UnreadableScore, path, open_score, *words)


@pytest.mark.parametrize("fraction", [0.02, 0.05, 0.3, 0.5, 0.7, 0.9])
def test_a_pdf_cut_in_the_middle_is_repaired_with_a_warning_naming_it_or_refused_by_name(
    tmp_path: Path, quiet_mupdf: None, caplog: pytest.LogCaptureFixture, fraction: float
) -> None:
    whole = staff_pdf(tmp_path / "whole.pdf", pages=3).read_bytes()
    path = tmp_path / "truncated.pdf"
    path.write_bytes(whole[: int(fraction * len(whole))])
    try:
        shapes = render_all(path)
    except UnreadableScore as problem:
        assert path.name in str(problem) and problem.path == path
    else:  # MuPDF's repair found pages: each renders, and the user is told
        assert 1 <= len(shapes) <= 3 and all(h > 0 and w > 0 for h, w in shapes)
        warning = "".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
        assert path.name in warning and "damaged and was repaired" in warning


def test_a_pdf_with_overwritten_bytes_renders_or_names_the_file(
    tmp_path: Path, quiet_mupdf: None
) -> None:
    data = bytearray(staff_pdf(tmp_path / "whole.pdf", pages=3).read_bytes())
    rng = np.random.default_rng(0)
    for seed_start in range(0, len(data) - 64, len(data) // 10):
        corrupt = bytearray(data)
        corrupt[seed_start : seed_start + 64] = rng.integers(0, 256, 64, np.uint8).tobytes()
        path = tmp_path / f"corrupt {seed_start}.pdf"
        path.write_bytes(bytes(corrupt))
        try:
            shapes = render_all(path)
        except UnreadableScore as problem:
            assert path.name in str(problem) and problem.path == path
        else:
            assert all(h > 0 and w > 0 for h, w in shapes)


def test_a_pdf_locked_with_a_user_password_says_so_and_names_the_file(tmp_path: Path) -> None:
    path = locked_pdf(tmp_path / "locked.pdf")
    raises_naming(UnreadableScore, path, open_score, "password-protected", "unprotected copy")


def test_a_pdf_with_only_an_owner_password_opens_like_any_other(tmp_path: Path) -> None:
    path = locked_pdf(tmp_path / "owner only.pdf", user_pw="")
    with open_score(path) as doc:
        assert len(detect_systems(doc.page(0).image)) == 2


def test_a_pdf_without_music_opens_and_has_no_systems(tmp_path: Path) -> None:
    with open_score(text_pdf(tmp_path / "letter.pdf")) as doc:
        assert doc.page_count == 1
        assert detect_systems(doc.page(0).image) == []


def test_a_500_page_pdf_opens_at_once_and_renders_any_page_on_demand(tmp_path: Path) -> None:
    path = staff_pdf(tmp_path / "long.pdf", pages=500)
    start = time.process_time()
    doc = open_score(path)
    opened_s = time.process_time() - start
    with doc:
        assert doc.page_count == 500
        assert opened_s < 0.5  # nothing is rendered until a page is asked for
        for index in (0, 249, 499):
            page = doc.page(index)
            assert page.index == index and page.image.shape == (417, 625)
            assert len(detect_systems(page.image)) == 2
        with pytest.raises(IndexError):
            doc.page(500)


@pytest.mark.slow
def test_the_library_indexes_every_page_of_a_500_page_pdf(tmp_path: Path, model: LoadedModel):
    path = staff_pdf(tmp_path / "long.pdf", pages=500)
    with Library(tmp_path / "lib", model) as lib:
        report = run_to_end(lib.add([path]))
        assert report.added == [path] and not report.failed
        (doc,) = lib.documents()
        assert (doc.state, doc.pages, doc.systems) == ("indexed", 500, 1000)


# --- huge images ----------------------------------------------------------------------------------


@pytest.mark.slow  # decodes 400 MB of pixels: ~20-50 s
def test_a_20000_px_square_scan_renders_at_the_page_cap_with_bounded_memory(
    tmp_path: Path,
) -> None:
    path = white_png(tmp_path / "huge scan.png", 20_000, 20_000)
    growth_mb, out = peak_rss_growth_mb(
        f"""
        from sheetaudio_gui.core.score import open_score, detect_systems
        with open_score({str(path)!r}) as doc:
            page = doc.page(0)
            print("SHAPE", page.image.shape, "SYSTEMS", len(detect_systems(page.image)))
        """
    )
    side = int(PAGE_MAX_PIXELS**0.5)
    assert f"SHAPE ({side}, {side}) SYSTEMS 0" in out
    # MuPDF decodes a PNG whole (400 MB here) before scaling; nothing else may add much to that.
    assert growth_mb < 1100, f"peak RSS grew by {growth_mb:.0f} MB"


@pytest.mark.parametrize("side", [pytest.param(30_000, marks=pytest.mark.slow), 100_000])
def test_an_image_claiming_too_many_pixels_is_refused_before_decoding(
    tmp_path: Path, side: int
) -> None:
    path = png_header_only(tmp_path / "bomb.png", side, side)
    raises_naming(UnreadableScore, path, render_all, "too large", "lower resolution")
    if side == 100_000:
        return  # MuPDF refuses it itself (its size overflows); 30,000 px is refused by us
    growth_mb, _ = peak_rss_growth_mb(
        f"""
        from sheetaudio_gui.core.errors import UnreadableScore
        from sheetaudio_gui.core.score import open_score
        try:
            open_score({str(path)!r}).page(0)
        except UnreadableScore:
            pass
        """
    )
    assert growth_mb < 50


def test_a_tiny_file_with_a_very_wide_header_is_scaled_to_the_cap(tmp_path: Path) -> None:
    path = png_header_only(tmp_path / "sliver.png", 4_000_000, 40)
    with open_score(path) as doc:
        page = doc.page(0)
    assert page.image.size <= PAGE_MAX_PIXELS
    assert detect_systems(page.image) == []


# --- audio files that are not what they say -------------------------------------------------------

AUDIO_READERS: list[Callable[[Path], object]] = [
    audio_info,
    load_audio,
    file_spectrogram,
    lambda p: list(stream_audio(p)),
]


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".mp3"])
def test_a_zero_byte_audio_file_is_reported_as_empty_by_every_reader(
    tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"recording{suffix}"
    path.write_bytes(b"")
    for read in AUDIO_READERS:
        raises_naming(UnreadableAudio, path, read, "empty (0 bytes)")


@pytest.mark.parametrize("suffix", [".flac", ".wav", ".mp3", ".ogg"])
def test_a_text_file_with_an_audio_suffix_is_reported_as_not_audio(
    tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"notes{suffix}"
    path.write_text("Programme notes: Chopin, Études op. 10\n" * 40)
    for read in AUDIO_READERS:
        raises_naming(UnreadableAudio, path, read, "not audio", "convert")


@pytest.mark.parametrize(
    ("sample_rate", "channels"), [(8000, 1), (192000, 1), (44100, 8), (192000, 8)]
)
def test_unusual_rates_and_channel_counts_give_a_20_fps_spectrogram_peaking_at_the_tone(
    tmp_path: Path, sample_rate: int, channels: int
) -> None:
    path = tone(tmp_path / f"tone {sample_rate} {channels}ch.wav", sample_rate, 2.0, channels)
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.duration_s) == (sample_rate, channels, 2.0)
    assert load_audio(path).shape == (2 * SAMPLE_RATE_HZ,)
    spec = file_spectrogram(path)
    assert spec.shape == (SPEC_BINS, 40) and np.isfinite(spec).all()
    peak_hz = filterbank_frequencies_hz()[spec[:, 5:35].argmax(axis=0)]
    assert np.all(np.abs(np.log2(peak_hz / 440.0)) < 1 / 16)  # within one band of 440 Hz


def test_8khz_audio_has_nothing_above_its_4khz_nyquist_frequency(tmp_path: Path) -> None:
    path = tone(tmp_path / "phone.flac", 8000, 1.0, freq_hz=3000.0)
    spec = file_spectrogram(path)
    high = filterbank_frequencies_hz() > 4400.0
    assert spec[high, 3:17].max() < 0.01 * spec[:, 3:17].max()


def test_silent_audio_gives_a_zero_spectrogram_and_finite_embeddings(
    tmp_path: Path, model: LoadedModel
) -> None:
    path = tmp_path / "silence.flac"
    sf.write(path, np.zeros((5 * 44100, 2), np.float32), 44100)
    spec = file_spectrogram(path)
    assert spec.shape == (SPEC_BINS, 100)
    assert np.isfinite(spec).all() and np.all(spec == 0.0)
    encoding = encode_audio(model, spec)
    assert len(encoding.passages) > 0
    assert np.isfinite(encoding.snippets).all() and np.isfinite(encoding.passages).all()
    np.testing.assert_allclose(np.linalg.norm(encoding.passages, axis=1), 1.0, rtol=1e-4)


@pytest.mark.slow
def test_a_three_hour_recording_streams_with_memory_far_below_its_decoded_size(
    tmp_path: Path,
) -> None:
    hours = 3
    rate = 8000
    path = tmp_path / "Mitschnitt 3 h.flac"
    one_second = (0.3 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype(np.float32)
    with sf.SoundFile(path, "w", rate, 1, format="FLAC") as out:
        block = np.tile(one_second, 600)  # 10 minutes at a time
        for _ in range(hours * 6):
            out.write(block)
    frames = hours * 3600 * 20
    decoded_mb = hours * 3600 * SAMPLE_RATE_HZ * 4 / MB  # float32 at 22.05 kHz: 952 MB
    growth_mb, out = peak_rss_growth_mb(
        f"""
        import numpy as np
        from sheetaudio_gui.core.audio import file_spectrogram, filterbank_frequencies_hz
        spec = file_spectrogram({str(path)!r})
        peaks = filterbank_frequencies_hz()[spec[:, ::997].argmax(axis=0)]
        print("SHAPE", spec.shape, "PEAKS", sorted(set(np.round(peaks).tolist())))
        """,
        timeout_s=1200,
    )
    assert f"SHAPE ({SPEC_BINS}, {frames})" in out
    spectrogram_mb = SPEC_BINS * frames * 4 / MB  # the result itself: 76 MB
    assert growth_mb < spectrogram_mb + 150 < decoded_mb / 4, f"peak RSS grew by {growth_mb} MB"


# --- names with spaces and non-ASCII letters ------------------------------------------------------


def test_scores_and_recordings_in_non_ascii_paths_with_spaces_read_and_fail_by_name(
    tmp_path: Path, quiet_mupdf: None
) -> None:
    folder = tmp_path / NON_ASCII_FOLDER
    score = staff_pdf(folder / NON_ASCII_SCORE)
    with open_score(score) as doc:
        assert len(detect_systems(doc.page(0).image)) == 2
    recording = tone(folder / "Étude №1 – Pollini (1972).flac", 44100, 1.0)
    assert audio_info(recording).duration_s == 1.0
    broken_score = folder / "Études №2 (beschädigt).pdf"
    broken_score.write_bytes(score.read_bytes()[:100])
    raises_naming(UnreadableScore, broken_score, open_score, "not a readable PDF")
    broken_audio = folder / "Étude №2 – leer.wav"
    broken_audio.write_bytes(b"")
    raises_naming(UnreadableAudio, broken_audio, load_audio, "empty")


# --- the library goes on past bad files -----------------------------------------------------------


def test_the_library_records_each_bad_file_as_failed_with_its_message_and_indexes_the_rest(
    tmp_path: Path, model: LoadedModel, quiet_mupdf: None
) -> None:
    folder = tmp_path / NON_ASCII_FOLDER
    good_score = staff_pdf(folder / NON_ASCII_SCORE)
    good_audio = tone(folder / "Étude №1 – Pollini.flac", 22050, 12.0)
    no_music = text_pdf(folder / "Vorwort.pdf")
    cut = folder / "cut short.pdf"
    cut.write_bytes(good_score.read_bytes()[:150])
    empty = folder / "leer.wav"
    empty.write_bytes(b"")
    fake = folder / "notes.flac"
    fake.write_text("not audio\n" * 100)
    bad = {
        cut: "not a readable PDF",
        locked_pdf(folder / "gesperrt.pdf"): "password",
        empty: "empty",
        fake: "not audio",
        png_header_only(folder / "bomb.png", 100_000, 100_000): "too large",
    }
    with Library(tmp_path / "lib", model) as lib:
        report = run_to_end(lib.add([folder]))
        assert sorted(report.added) == sorted([good_score, good_audio, no_music])
        failed = dict(report.failed)
        assert sorted(failed) == sorted(bad)
        for path, words in bad.items():
            assert path.name in failed[path] and words in failed[path]
        docs = {d.path: d for d in lib.documents()}
        assert all(docs[p].state == "failed" and docs[p].error == failed[p] for p in bad)
        assert docs[good_score].systems == 4 and docs[good_audio].state == "indexed"
        assert (docs[no_music].state, docs[no_music].systems) == ("indexed", 0)
