"""Shared test material that the tests make themselves: an engraved score PDF, a synthetic clip."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="session")
def engraved_pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-page PDF of a Bach chorale engraved by verovio (vector PDF, like a real score)."""
    verovio = pytest.importorskip("verovio")
    music21 = pytest.importorskip("music21")
    pymupdf = pytest.importorskip("pymupdf")
    from sheetaudio_gui.training.verovio_svg import mupdf_ready_svg

    folder = tmp_path_factory.mktemp("score")
    xml = music21.corpus.parse("bach/bwv66.6").write("musicxml", fp=folder / "chorale.musicxml")
    tk = verovio.toolkit()
    tk.setOptions({"pageHeight": 1400, "pageWidth": 2100, "scale": 45, "breaks": "auto"})
    tk.loadData(Path(xml).read_text())
    pdf = pymupdf.open()
    for n in range(1, tk.getPageCount() + 1):
        svg_text = mupdf_ready_svg(tk.renderToSVG(n))
        svg = pymupdf.open(stream=svg_text.encode(), filetype="svg")
        pdf.insert_pdf(pymupdf.open("pdf", svg.convert_to_pdf()))
    path = folder / "chorale.pdf"
    pdf.save(path)
    return path


@pytest.fixture(scope="session")
def sine_flac(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s of a 440 Hz tone, stereo 44.1 kHz FLAC."""
    soundfile = pytest.importorskip("soundfile")
    sr = 44100
    t = np.arange(3 * sr) / sr
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    path = tmp_path_factory.mktemp("audio") / "tone.flac"
    soundfile.write(path, np.stack([tone, tone], axis=1), sr)
    return path
