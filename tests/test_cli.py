"""The `sheetaudio` command: version, inspect on real files, one-line errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from material import TINY

from sheetaudio_gui import __version__
from sheetaudio_gui.cli import main
from sheetaudio_gui.core.models import PassageModel, save_model


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would, in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "sheetaudio_gui.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_version_is_printed(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"sheetaudio {__version__}"


def test_inspect_score_reports_pages_and_systems_in_pdf_points(engraved_pdf, tmp_path, capsys):
    assert main(["inspect", "score", str(engraved_pdf), "--json", "--png", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["units"] == "pt"
    assert len(report["pages"]) >= 1
    first = report["pages"][0]
    assert first["index"] == 0
    assert first["systems"], "an engraved chorale page has systems"
    tops = [box[1] for box in first["systems"]]
    assert tops == sorted(tops)
    for x0, y0, x1, y1 in first["systems"]:
        assert 0 <= x0 < x1 <= first["width"] and 0 <= y0 < y1 <= first["height"]
    assert len(list(tmp_path.glob("*.png"))) == len(report["pages"])


def test_inspect_audio_reports_duration_and_spectrogram_size(sine_flac, tmp_path, capsys):
    assert main(["inspect", "audio", str(sine_flac), "--json", "--png", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sample_rate"] == 44100 and report["channels"] == 2
    assert report["duration_s"] == pytest.approx(3.0, abs=1e-3)
    assert report["bins"] == 92
    assert abs(report["frames"] - 60) <= 1
    assert len(list(tmp_path.glob("*.png"))) == 1


@pytest.mark.parametrize(
    ("kind", "name", "content"),
    [
        ("score", "missing.pdf", None),
        ("score", "empty.pdf", b""),
        ("score", "letter.pdf", b"Dear colleague, this is not a PDF.\n"),
        ("audio", "missing.wav", None),
        ("audio", "empty.wav", b""),
        ("audio", "corrupt.flac", b"fLaC" + b"\x00garbage" * 50),
    ],
)
def test_bad_input_gives_one_line_naming_the_file_and_exit_status_2(tmp_path, kind, name, content):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    result = run_cli("inspect", kind, str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0]
    assert "Traceback" not in result.stderr


def test_encrypted_pdf_is_refused_with_a_clear_message(engraved_pdf, tmp_path):
    pymupdf = pytest.importorskip("pymupdf")
    doc = pymupdf.open(engraved_pdf)
    locked = tmp_path / "locked.pdf"
    doc.save(locked, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="secret", owner_pw="owner")
    result = run_cli("inspect", "score", str(locked))
    assert result.returncode == 2
    assert "password" in result.stderr.lower()
    assert str(locked) in result.stderr


def test_python_dash_m_entry_point_exists():
    assert (Path(__file__).parents[1] / "sheetaudio_gui" / "__main__.py").is_file()


def test_library_add_hints_at_adaptation_once_the_library_is_large_enough(
    tmp_path, engraved_pdf, sine_flac, capsys, monkeypatch
):
    from sheetaudio_gui.core import index

    model = tmp_path / "model.pt"
    save_model(PassageModel(TINY), model)
    library = ["--library", str(tmp_path / "lib"), "--model", str(model)]
    assert main(["library", "add", *library, str(engraved_pdf), str(sine_flac)]) == 0
    assert "hint:" not in capsys.readouterr().out  # a two-file library: too small to adapt to
    assert (tmp_path / "lib" / "hub-penalties.npz").is_file()  # the search is prepared
    monkeypatch.setattr(index, "ADAPT_WINDOWS", 1)
    assert main(["library", "add", *library, str(engraved_pdf)]) == 0
    hint = capsys.readouterr().out.splitlines()[-1]
    assert hint.startswith("hint: ") and hint.endswith("(sheetaudio library adapt)")
    assert main(["library", "add", *library, "--json", str(engraved_pdf)]) == 0
    json.loads(capsys.readouterr().out)  # scripts get JSON only
