"""Fuzzing the score and audio readers: damaged files give FileProblem, never a crash or a hang.

Inputs are real small files made here (a PDF with staves, PNG, TIFF, JPEG, WAV, FLAC, OGG, MP3)
with bytes flipped, overwritten, inserted, deleted or cut off, and random bytes behind a valid
file's opening bytes (its magic number and part of its header). Every input goes through the
readers the library uses: `open_score` -> every page (at most 3) -> `detect_systems` -> system
strips and windows; `audio_info` -> `load_audio` (a range and the whole file) -> the streamed
`file_spectrogram` -> snippet windows. Only `FileProblem` subclasses may escape, and their message
must name the file. `detect_systems` is also fed random grayscale arrays of random shapes.

The CI tests try ~300 inputs in all; the `slow` ones >= 10,000. Counts are printed at the end of
the module ("fuzz: ... inputs tried") and, if SHEETAUDIO_FUZZ_REPORT names a file, written there
as JSON. A hang is caught by faulthandler, which dumps the stacks and ends the run after
`HANG_S` seconds without a finished input (even inside C code), and slow inputs by hypothesis's
per-example deadline.
"""

from __future__ import annotations

import collections
import faulthandler
import functools
import io
import json
import os
import struct
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pymupdf
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from material import draw_two_staves

from sheetaudio_gui.core.audio import audio_info, file_spectrogram, load_audio, log_spectrogram
from sheetaudio_gui.core.errors import FileProblem, UnreadableAudio, UnreadableScore
from sheetaudio_gui.core.score import detect_systems, open_score
from sheetaudio_gui.core.snippets import audio_windows, sheet_windows, system_strip

torch.set_num_threads(1)

SCORE_KINDS = (".pdf", ".png", ".tif", ".jpg")
AUDIO_KINDS = (".wav", ".flac", ".ogg", ".mp3")
CI_EXAMPLES = {"score": 90, "audio": 90, "score_header": 40, "audio_header": 40, "detect": 60}
SLOW_EXAMPLES = {
    "score": 3000,
    "audio": 3000,
    "score_header": 1500,
    "audio_header": 1500,
    "detect": 1500,
}
DEADLINE = timedelta(seconds=30)  # one input; a 400-megapixel image decodes in ~3 s
HANG_S = 120.0  # no input may take this long: the process is ended with a stack dump

TRIED: collections.Counter[str] = collections.Counter()  # inputs tried per reader
REJECTED: collections.Counter[str] = collections.Counter()  # ... of which raised FileProblem
SECONDS: collections.Counter[str] = collections.Counter()  # time spent reading, per reader


# --- valid seed files, made here ------------------------------------------------------------------


def _staff_image(height: int = 48, width: int = 64) -> np.ndarray:
    """A tiny page: one staff, a barline and a notehead (uint8, paper 255)."""
    image = np.full((height, width), 255, np.uint8)
    for k in range(5):
        image[8 + 4 * k, 4:60] = 0
    image[8:25, 4] = 0
    image[10:14, 20:24] = 0
    return image


def _pixmap() -> pymupdf.Pixmap:
    image = _staff_image()
    return pymupdf.Pixmap(pymupdf.csGRAY, image.shape[1], image.shape[0], image.tobytes(), False)


def _pdf() -> bytes:
    """Two pages: two five-line staves with a barline and noteheads, and a blank page."""
    doc = pymupdf.open()
    page = doc.new_page(width=300, height=200)
    draw_two_staves(page)
    doc.new_page(width=100, height=100)
    return bytes(doc.tobytes(garbage=3, deflate=True))


def _tiff() -> bytes:
    """An uncompressed 8-bit grayscale TIFF, one strip (written by hand: no PIL needed)."""
    image = _staff_image()
    h, w = image.shape
    tags = [(256, w), (257, h), (258, 8), (259, 1), (262, 1), (273, 0), (277, 1), (278, h)]
    tags.append((279, h * w))
    data_at = 8 + 2 + 12 * len(tags) + 4
    out = bytearray(b"II*\x00" + struct.pack("<IH", 8, len(tags)))
    for tag, value in tags:
        value = data_at if tag == 273 else value
        out += struct.pack("<HHII", tag, 4, 1, value)  # type 4: LONG
    return bytes(out + struct.pack("<I", 0) + image.tobytes())


def _audio(fmt: str) -> bytes:
    """0.3 s of a 440 Hz tone at 22.05 kHz, mono, in the given container."""
    t = np.arange(int(0.3 * 22050)) / 22050
    buffer = io.BytesIO()
    sf.write(buffer, 0.3 * np.sin(2 * np.pi * 440 * t), 22050, format=fmt)
    return buffer.getvalue()


@functools.cache
def seeds() -> dict[str, bytes]:
    """Valid files by suffix; each opens and reads without error (checked by a test)."""
    return {
        ".pdf": _pdf(),
        ".png": bytes(_pixmap().tobytes("png")),
        ".jpg": bytes(_pixmap().tobytes("jpg")),
        ".tif": _tiff(),
        ".wav": _audio("WAV"),
        ".flac": _audio("FLAC"),
        ".ogg": _audio("OGG"),
        ".mp3": _audio("MP3"),
    }


# --- generated inputs -----------------------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, kinds: tuple[str, ...]) -> tuple[str, bytes]:
    """A seed file with 1-6 edits: bit flip, byte overwrite, insertion, deletion, truncation."""
    suffix = draw(st.sampled_from(kinds))
    data = bytearray(seeds()[suffix])
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        edit = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if edit == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif edit == "set" and data:
            data[at] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, draw(st.integers(0, 255))]))
        elif edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        elif edit == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        else:
            del data[at:]
    return suffix, bytes(data)


@st.composite
def behind_a_header(draw: st.DrawFn, kinds: tuple[str, ...]) -> tuple[str, bytes]:
    """The first 4..64 bytes of a seed file (magic number, part of the header), then random."""
    suffix = draw(st.sampled_from(kinds))
    seed = seeds()[suffix]
    keep = draw(st.integers(4, min(64, len(seed))))
    return suffix, seed[:keep] + draw(st.binary(max_size=2048))


# --- the readers as the library uses them --------------------------------------------------------


def read_score(path: Path) -> None:
    with open_score(path) as doc:
        assert doc.page_count >= 1
        for index in range(min(doc.page_count, 3)):
            page = doc.page(index)
            assert page.image.ndim == 2 and page.image.size > 0
            for system in detect_systems(page.image):
                strip = system_strip(page.image, system.box, system.staff_space)
                assert sheet_windows(strip).shape[1:] == (80, 90)


def read_audio(path: Path) -> None:
    info = audio_info(path)
    assert info.sample_rate > 0 and info.channels > 0
    part = load_audio(path, 0.05, 0.25)
    assert np.isfinite(log_spectrogram(part)).all()
    whole = load_audio(path)
    spec = file_spectrogram(path)
    assert spec.shape[0] == 92 and np.isfinite(spec).all()
    assert abs(spec.shape[1] - np.ceil(len(whole) / 1102.5)) <= 1
    assert audio_windows(spec).shape[1:] == (92, 20)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder for the inputs; MuPDF's messages about damaged files are muted meanwhile."""
    errors = pymupdf.TOOLS.mupdf_display_errors(False)
    warnings = pymupdf.TOOLS.mupdf_display_warnings(False)
    yield tmp_path_factory.mktemp("fuzz")
    pymupdf.TOOLS.mupdf_display_errors(errors)
    pymupdf.TOOLS.mupdf_display_warnings(warnings)


@pytest.fixture(scope="module", autouse=True)
def report_counts(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print (and optionally save) how many inputs each reader was given."""
    yield
    if not TRIED:
        return
    seconds = sum(SECONDS.values())
    lines = [
        f"fuzz: {reader}: {TRIED[reader]} inputs tried in {SECONDS[reader]:.0f} s,"
        f" {REJECTED[reader]} rejected as FileProblem"
        for reader in sorted(TRIED)
    ]
    lines.append(f"fuzz: {sum(TRIED.values())} inputs in all, {seconds:.0f} s of reading")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            for line in lines:
                reporter.write_line(line)
    target = os.environ.get("SHEETAUDIO_FUZZ_REPORT")
    if target:
        Path(target).write_text(
            json.dumps({"tried": TRIED, "rejected": REJECTED, "seconds": SECONDS}, indent=1)
        )


def check(reader: str, read: Callable[[Path], None], path: Path, data: bytes) -> None:
    """Run `read` on `data` written to `path`: it reads, or raises a FileProblem naming the file."""
    path.write_bytes(data)
    TRIED[reader] += 1
    start = time.monotonic()
    faulthandler.dump_traceback_later(HANG_S, exit=True)
    try:
        read(path)
    except FileProblem as problem:
        REJECTED[reader] += 1
        assert isinstance(problem, UnreadableScore if reader == "score" else UnreadableAudio)
        assert path.name in str(problem) and problem.path == path
    finally:
        faulthandler.cancel_dump_traceback_later()
        SECONDS[reader] += time.monotonic() - start


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=DEADLINE,
        database=None,
        derandomize=examples < 1000,  # CI runs the same inputs every time; slow runs explore
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def random_page(shape: tuple[int, int], pattern: int, seed: int) -> np.ndarray:
    """A (H, W) uint8 page: noise, a flat gray, sparse ink, ruled lines or staff-like lines."""
    rng = np.random.default_rng(seed)
    h, w = shape
    if pattern == 0:
        return rng.integers(0, 256, shape, dtype=np.uint8)
    if pattern == 1:
        return np.full(shape, rng.integers(0, 256), np.uint8)
    if pattern == 2:
        return np.where(rng.random(shape) < rng.random(), 0, 255).astype(np.uint8)
    page = np.full(shape, 255, np.uint8)
    space = int(rng.integers(2, 14))
    if pattern == 3:  # ruled paper: every line at the same spacing
        page[int(rng.integers(0, space)) :: space] = 0
        return page
    for top in range(int(rng.integers(0, 20)), h, 12 * space):  # staves with strokes
        page[top : top + 5 * space : space, int(rng.integers(0, max(w // 4, 1))) :] = 0
        page[top : top + 4 * space + 1, :: int(rng.integers(3, 60))] = rng.integers(0, 256)
    return page


# --- tests ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [*SCORE_KINDS, *AUDIO_KINDS])
def test_every_seed_file_is_read_without_error(work: Path, suffix: str) -> None:
    path = work / f"seed{suffix}"
    path.write_bytes(seeds()[suffix])
    (read_score if suffix in SCORE_KINDS else read_audio)(path)


def test_the_pdf_seed_has_staves_that_are_detected(work: Path) -> None:
    path = work / "staves.pdf"
    path.write_bytes(seeds()[".pdf"])
    with open_score(path) as doc:
        assert doc.page_count == 2
        assert len(detect_systems(doc.page(0).image)) == 2


def _score_test(examples: int, source: st.SearchStrategy[tuple[str, bytes]]) -> Callable[..., None]:
    @fuzz_settings(examples)
    @given(case=source)
    def run(work: Path, case: tuple[str, bytes]) -> None:
        suffix, data = case
        check("score", read_score, work / f"Partitur Nr 1{suffix}", data)

    return run


def _audio_test(examples: int, source: st.SearchStrategy[tuple[str, bytes]]) -> Callable[..., None]:
    @fuzz_settings(examples)
    @given(case=source)
    def run(work: Path, case: tuple[str, bytes]) -> None:
        suffix, data = case
        check("audio", read_audio, work / f"Aufnahme Nr 1{suffix}", data)

    return run


def _detect_test(examples: int) -> Callable[..., None]:
    @fuzz_settings(examples)
    @given(
        height=st.one_of(st.integers(0, 4), st.integers(0, 400)),
        width=st.one_of(st.integers(0, 4), st.integers(0, 400)),
        pattern=st.integers(0, 4),
        seed=st.integers(0, 2**32 - 1),
    )
    def run(height: int, width: int, pattern: int, seed: int) -> None:
        TRIED["detect_systems"] += 1
        page = random_page((height, width), pattern, seed)
        start = time.monotonic()
        systems = detect_systems(page)
        SECONDS["detect_systems"] += time.monotonic() - start
        assert isinstance(systems, list)
        for system in systems:
            x0, y0, x1, y1 = system.box
            assert 0 <= x0 < x1 <= width + 1 and y0 < y1 and system.staff_space > 0

    return run


test_damaged_score_files_raise_only_unreadable_score = _score_test(
    CI_EXAMPLES["score"], mutated(SCORE_KINDS)
)
test_random_bytes_behind_a_score_header_raise_only_unreadable_score = _score_test(
    CI_EXAMPLES["score_header"], behind_a_header(SCORE_KINDS)
)
test_damaged_audio_files_raise_only_unreadable_audio = _audio_test(
    CI_EXAMPLES["audio"], mutated(AUDIO_KINDS)
)
test_random_bytes_behind_an_audio_header_raise_only_unreadable_audio = _audio_test(
    CI_EXAMPLES["audio_header"], behind_a_header(AUDIO_KINDS)
)
test_system_detection_returns_a_list_for_any_grayscale_array = _detect_test(CI_EXAMPLES["detect"])

test_many_damaged_score_files_raise_only_unreadable_score = pytest.mark.slow(
    _score_test(SLOW_EXAMPLES["score"], mutated(SCORE_KINDS))
)
test_many_random_score_headers_raise_only_unreadable_score = pytest.mark.slow(
    _score_test(SLOW_EXAMPLES["score_header"], behind_a_header(SCORE_KINDS))
)
test_many_damaged_audio_files_raise_only_unreadable_audio = pytest.mark.slow(
    _audio_test(SLOW_EXAMPLES["audio"], mutated(AUDIO_KINDS))
)
test_many_random_audio_headers_raise_only_unreadable_audio = pytest.mark.slow(
    _audio_test(SLOW_EXAMPLES["audio_header"], behind_a_header(AUDIO_KINDS))
)
test_system_detection_returns_a_list_for_many_grayscale_arrays = pytest.mark.slow(
    _detect_test(SLOW_EXAMPLES["detect"])
)
