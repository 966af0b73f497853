"""Desktop packaging: the menu entry, the AppStream metadata, the icons and the one-folder build.

The fast tests read the files in packaging/ and resources/icons/ the way a desktop or software
centre would. The slow test builds `dist/sheetaudio/` with PyInstaller (or reuses it), starts the
built window offscreen and runs the built command line on the demo library, comparing its answers
with the same commands run from source.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from sheetaudio_gui import __version__

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
ICONS = ROOT / "resources" / "icons"
DEMO = ROOT / "resources" / "demo"
APP_ID = "io.github.sheetaudio"
DESKTOP_FILE = PACKAGING / "sheetaudio.desktop"
METAINFO_FILE = PACKAGING / f"{APP_ID}.metainfo.xml"
ICON_SIZES_PX = (64, 128, 256)
DIST = ROOT / "dist" / "sheetaudio"
GUI_BINARY = DIST / "sheetaudio-gui"
CLI_BINARY = DIST / "sheetaudio"
BUILD_TIMEOUT_S = 3600  # a first PyInstaller build on 2 busy cores
GUI_START_TIMEOUT_S = 120  # until the built window reports that it is usable
CLI_TIMEOUT_S = 300  # one command of the built CLI (indexing the demo piece included)


def desktop_entry() -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read(DESKTOP_FILE, encoding="utf-8")
    return dict(parser["Desktop Entry"])


def semicolon_list(value: str) -> list[str]:
    return [item for item in value.split(";") if item]


def pyproject_scripts() -> dict[str, str]:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {**project["scripts"], **project["gui-scripts"]}


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, which the PNG format puts first."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG file"
    assert head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


# --- the menu entry (freedesktop .desktop file) ----------------------------------------------


def test_desktop_entry_launches_the_gui_script_that_pyproject_installs():
    entry = desktop_entry()
    assert entry["Type"] == "Application"
    program = entry["Exec"].split()[0]
    assert program == "sheetaudio-gui"
    assert program in pyproject_scripts()
    assert entry["TryExec"] == program
    assert entry["Terminal"] == "false"


def test_desktop_entry_passes_at_most_one_file_with_a_valid_field_code():
    codes = re.findall(r"%[a-zA-Z]", desktop_entry()["Exec"])
    assert codes == ["%f"], "the window opens one score or recording"


def test_desktop_entry_is_listed_under_audio_and_education():
    categories = semicolon_list(desktop_entry()["Categories"])
    assert {"Audio", "Education"} <= set(categories)
    assert "AudioVideo" in categories, "the spec requires AudioVideo next to Audio"
    assert desktop_entry()["Categories"].endswith(";")


def test_desktop_entry_offers_to_open_pdf_images_and_the_common_audio_formats():
    types = set(semicolon_list(desktop_entry()["MimeType"]))
    assert {"application/pdf", "image/png", "image/jpeg", "image/tiff"} <= types
    assert {"audio/flac", "audio/x-wav", "audio/ogg", "audio/mpeg"} <= types
    assert all(re.fullmatch(r"[a-z]+/[a-z0-9.+-]+", t) for t in types)


def test_desktop_entry_names_the_installed_icon_and_has_the_required_keys():
    entry = desktop_entry()
    assert entry["Icon"] == APP_ID, "build_app.sh installs the icons under the application id"
    for key in ("Name", "Comment", "GenericName", "Keywords"):
        assert entry[key].strip()
    assert "=" not in "".join(entry.values()), "no key was glued to a value"


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None, reason="desktop-file-utils")
def test_desktop_entry_passes_desktop_file_validate():
    result = subprocess.run(
        ["desktop-file-validate", str(DESKTOP_FILE)], capture_output=True, text=True, timeout=30
    )
    errors = [line for line in result.stdout.splitlines() if "error:" in line]
    assert result.returncode == 0 and not errors, result.stdout


# --- AppStream metadata ------------------------------------------------------------------------


def test_metainfo_describes_the_application_under_one_id():
    root = ET.parse(METAINFO_FILE).getroot()
    assert root.tag == "component" and root.get("type") == "desktop-application"
    assert root.findtext("id") == APP_ID
    assert root.findtext("name") == "sheetaudio"
    summary = root.findtext("summary") or ""
    assert 10 < len(summary) <= 100 and not summary.endswith(".")
    paragraphs = root.findall("description/p")
    assert paragraphs and all((p.text or "").strip() for p in paragraphs)
    assert root.findtext("project_license") == "MIT"
    assert root.findtext("metadata_license") == "CC0-1.0"


def test_metainfo_launches_the_desktop_entry_installed_under_the_same_id():
    root = ET.parse(METAINFO_FILE).getroot()
    launchable = root.find("launchable")
    assert launchable is not None and launchable.get("type") == "desktop-id"
    assert launchable.text == f"{APP_ID}.desktop"
    build_script = (PACKAGING / "build_app.sh").read_text()
    assert 'APP_ID="io.github.sheetaudio"' in build_script
    assert "applications/$APP_ID.desktop" in build_script


def test_metainfo_newest_release_is_the_package_version():
    releases = ET.parse(METAINFO_FILE).getroot().findall("releases/release")
    assert releases, "software centres show the newest release"
    newest = releases[0]
    assert newest.get("version") == __version__
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", newest.get("date") or "")


def test_metainfo_provides_both_programs_that_pyproject_installs():
    root = ET.parse(METAINFO_FILE).getroot()
    binaries = {b.text for b in root.findall("provides/binary")}
    assert binaries == set(pyproject_scripts())


@pytest.mark.skipif(shutil.which("appstreamcli") is None, reason="appstream not installed")
def test_metainfo_passes_appstreamcli_validate():
    result = subprocess.run(
        ["appstreamcli", "validate", "--no-net", str(METAINFO_FILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- icons -------------------------------------------------------------------------------------


def test_svg_icon_is_a_square_svg_drawing():
    root = ET.parse(ICONS / "sheetaudio.svg").getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    x, y, width, height = (float(v) for v in root.get("viewBox", "").split())
    assert (x, y) == (0, 0) and width == height > 0


@pytest.mark.parametrize("size", ICON_SIZES_PX)
def test_png_icon_has_its_declared_size(size):
    assert png_size(ICONS / f"sheetaudio-{size}.png") == (size, size)


@pytest.mark.gui
def test_png_icons_are_renderings_of_the_svg_with_a_transparent_corner_and_opaque_centre():
    qt_gui = pytest.importorskip("PySide6.QtGui")
    app = qt_gui.QGuiApplication.instance() or qt_gui.QGuiApplication([])
    assert app is not None
    for size in ICON_SIZES_PX:
        image = qt_gui.QImage(str(ICONS / f"sheetaudio-{size}.png"))
        assert image.width() == size
        assert image.pixelColor(0, 0).alpha() == 0, "rounded corners stay transparent"
        assert image.pixelColor(size // 2, size // 4).alpha() == 255, "the tile is opaque"


# --- the PyInstaller spec and build script -----------------------------------------------------


def test_spec_reads_the_version_from_the_package_instead_of_repeating_it():
    spec = (PACKAGING / "sheetaudio.spec").read_text()
    assert "__init__.py" in spec and "__version__" in spec
    assert __version__ not in spec


def test_spec_names_both_programs_after_the_pyproject_scripts():
    spec = (PACKAGING / "sheetaudio.spec").read_text()
    for program in pyproject_scripts():  # sheetaudio, sheetaudio-gui
        assert f'name="{program}"' in spec


def test_spec_puts_models_and_resources_where_the_frozen_modules_look_for_them():
    """Bundled modules live at _internal/sheetaudio_gui/..., so the code's own rules
    (config.MODELS_DIR, app.DEMO_DIR) point at _internal/models and _internal/resources/demo."""
    from sheetaudio_gui import config

    internal = Path("/opt/app/_internal")
    frozen_config = internal / "sheetaudio_gui" / "config.pyc"
    frozen_app = internal / "sheetaudio_gui" / "gui" / "app.pyc"
    assert config.MODELS_DIR == ROOT / "models", "the rule below mirrors config.py"
    assert frozen_config.parent.parent / "models" == internal / "models"
    assert frozen_app.parents[2] / "resources" / "demo" == internal / "resources" / "demo"
    spec = (PACKAGING / "sheetaudio.spec").read_text()
    assert '(str(ROOT / "resources"), "resources")' in spec
    assert '(str(ROOT / "models"), "models")' in spec


def test_build_script_is_valid_bash_and_stops_on_errors():
    script = PACKAGING / "build_app.sh"
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "set -euo pipefail" in script.read_text()


def test_dist_and_build_folders_are_ignored_by_git():
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "/dist/" in ignored and "/build/" in ignored


# --- the built application (slow: builds with PyInstaller when dist/ is missing) ------------


def frozen_env(home: Path) -> dict[str, str]:
    """A clean user: settings and default library in a temporary home, no display."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_DATA_HOME=str(home / "data"),
        XDG_CACHE_HOME=str(home / "cache"),
        QT_QPA_PLATFORM="offscreen",
    )
    env.pop("SHEETAUDIO_MODEL", None)
    return env


@pytest.fixture(scope="module")
def built_app() -> Path:
    """dist/sheetaudio, built by packaging/build_app.sh unless it exists (SHEETAUDIO_REBUILD=1
    forces a build)."""
    if os.environ.get("SHEETAUDIO_REBUILD") or not (GUI_BINARY.exists() and CLI_BINARY.exists()):
        started = time.perf_counter()
        result = subprocess.run(
            ["bash", str(PACKAGING / "build_app.sh")],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        print(f"build_app.sh: {time.perf_counter() - started:.0f} s")
    return DIST


def run_frozen(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI_BINARY), *args], capture_output=True, text=True, timeout=CLI_TIMEOUT_S, env=env
    )


def run_source(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sheetaudio_gui.cli", *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )


@pytest.mark.slow
def test_built_folder_holds_both_programs_the_demo_library_and_the_icons(built_app):
    assert os.access(built_app / "sheetaudio-gui", os.X_OK)
    assert os.access(built_app / "sheetaudio", os.X_OK)
    internal = built_app / "_internal"
    assert sorted(p.name for p in (internal / "resources" / "demo").glob("*.pdf")) == sorted(
        p.name for p in DEMO.glob("*.pdf")
    )
    assert (internal / "resources" / "icons" / "sheetaudio.svg").is_file()
    plugins = internal / "PySide6" / "Qt" / "plugins" / "platforms"
    assert (plugins / "libqxcb.so").is_file() and (plugins / "libqoffscreen.so").is_file()
    for size in ICON_SIZES_PX:
        icon = built_app / "share" / "icons" / "hicolor" / f"{size}x{size}" / "apps"
        assert png_size(icon / f"{APP_ID}.png") == (size, size)
    assert (built_app / "share" / "applications" / f"{APP_ID}.desktop").is_file()


@pytest.mark.slow
def test_built_window_starts_offscreen_and_keeps_running(built_app, tmp_path):
    process = subprocess.Popen(
        [str(GUI_BINARY), "--library", str(tmp_path / "library"), "--no-demo", "-v"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=frozen_env(tmp_path),
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + GUI_START_TIMEOUT_S
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break  # the process ended
            lines.append(line)
            if "window usable after" in line:
                break
        time.sleep(3.0)  # the model loads in the background: it must not take the app down
        alive = process.poll() is None
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            out, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate()
        lines.append(out or "")
    log = "".join(lines)
    assert alive, log
    assert "window usable after" in log, log
    assert "Traceback" not in log, log


@pytest.mark.slow
def test_built_cli_prints_help_and_the_package_version(built_app, tmp_path):
    env = frozen_env(tmp_path)
    help_text = run_frozen("--help", env=env)
    assert help_text.returncode == 0, help_text.stderr
    for verb in ("inspect", "library", "query", "align"):
        assert verb in help_text.stdout
    version = run_frozen("--version", env=env)
    assert version.stdout.strip() == f"sheetaudio {__version__}"


@pytest.mark.slow
def test_built_cli_finds_the_same_systems_in_a_demo_score_as_the_source(built_app, tmp_path):
    env = frozen_env(tmp_path)
    score = sorted(DEMO.glob("*.pdf"))[0]
    frozen = run_frozen("inspect", "score", str(score), "--json", env=env)
    assert frozen.returncode == 0, frozen.stderr
    report = json.loads(frozen.stdout)
    assert report["units"] == "pt"
    assert report["pages"] and all(page["systems"] for page in report["pages"])
    source = run_source("inspect", "score", str(score), "--json", env=env)
    assert report == json.loads(source.stdout)


@pytest.mark.slow
def test_built_cli_looks_for_the_shipped_model_inside_its_own_folder(built_app, tmp_path):
    if (ROOT / "models" / "sheetaudio-passage.pt").exists():
        pytest.skip("a model is shipped: this checks the message when it is missing")
    env = frozen_env(tmp_path)
    clip = sorted(DEMO.glob("*.flac"))[0]
    result = run_frozen(
        "query", "--library", str(tmp_path / "lib"), "--audio", str(clip), "--end", "5", env=env
    )
    assert result.returncode == 2
    assert str(built_app / "_internal" / "models" / "sheetaudio-passage.pt") in result.stderr


@pytest.mark.slow
def test_built_cli_indexes_and_queries_like_the_source(built_app, tmp_path):
    """A model with random weights: the frozen torch/scipy/pymupdf/soundfile stack must give the
    source's answers (same library, same query, same similarities)."""
    import torch

    from sheetaudio_gui.core.models import PassageModel, save_model

    torch.manual_seed(0)
    model = tmp_path / "random.pt"
    save_model(PassageModel(), model)
    env = frozen_env(tmp_path)
    library = str(tmp_path / "lib")
    score = sorted(DEMO.glob("*.pdf"))[0]
    clip = DEMO / f"{score.stem} (recording).flac"
    added = run_frozen(
        "library", "add", "--library", library, "--model", str(model), "--json",
        str(score), str(clip), env=env,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert len(json.loads(added.stdout)["added"]) == 2
    query = ("query", "--library", library, "--model", str(model), "--json", "--top", "3")
    audio_query = (*query, "--audio", str(clip), "--start", "2", "--end", "12")
    frozen = json.loads(run_frozen(*audio_query, env=env).stdout)
    source = json.loads(run_source(*audio_query, env=env).stdout)
    assert [hit["document"] for hit in frozen["results"]] == [str(score)]
    assert frozen["results"][0]["score"] == pytest.approx(source["results"][0]["score"], abs=1e-3)
    score_query = (*query, "--score", str(score), "--page", "0", "--system", "0")
    frozen = json.loads(run_frozen(*score_query, env=env).stdout)
    assert [hit["document"] for hit in frozen["results"]] == [str(clip)]
    assert frozen["results"][0]["spans"], "a recording hit names where it plays"
