"""The core and the training code never import Qt, so they run headless and in worker processes."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import sheetaudio_gui.core
import sheetaudio_gui.training


def module_names(package) -> list[str]:
    return [f"{package.__name__}.{m.name}" for m in pkgutil.iter_modules(package.__path__)]


def test_importing_every_core_and_training_module_loads_no_qt():
    modules = module_names(sheetaudio_gui.core) + module_names(sheetaudio_gui.training)
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph'))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"Qt imported by the core: {result.stdout}"


def test_every_constant_has_one_home():
    from sheetaudio_gui import config

    assert config.SHEET_SNIPPET_HEIGHT_PX * config.STRIP_DOWNSCALE == config.STRIP_HEIGHT_PX
    assert config.HOP_SAMPLES * config.FRAMES_PER_SECOND == config.SAMPLE_RATE_HZ
