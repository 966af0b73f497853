"""The core functions the GUI calls, gathered in one replaceable object.

The GUI never reaches into `sheetaudio_gui.core` directly for library and search work: it calls a
`CoreServices`. The real one imports the core lazily (torch takes a second to import, and startup
must stay under two seconds), tests can hand in a fake with the same signatures.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sheetaudio_gui import config


def default_library_dir() -> Path:
    """platformdirs' user data folder / "library" (same rule as the core's library paths)."""
    try:
        from sheetaudio_gui.core.library_paths import default_library_dir as core_default
    except ImportError:
        try:
            from sheetaudio_gui.core.index import default_library_dir as core_default
        except ImportError:
            import platformdirs

            return Path(platformdirs.user_data_dir(config.APP_NAME)) / "library"
    return Path(core_default())


def default_model_path() -> Path:
    """$SHEETAUDIO_MODEL, else the shipped weights in models/."""
    env = os.environ.get(config.MODEL_ENV)
    if env:
        return Path(env)
    return config.MODELS_DIR / config.MODEL_FILE


@dataclass
class CoreServices:
    """Callables with the signatures of the core's API contract (see core/index.py, search.py).

    `open_library(folder, model)` must return a fresh Library (one per thread: SQLite);
    `load_model(path)` returns a LoadedModel.
    """

    load_model: Callable[[Path], Any]
    open_library: Callable[[Path, Any], Any]
    search_audio: Callable[..., Any]
    search_audio_file: Callable[..., Any]
    search_score: Callable[..., Any]
    passage_map: Callable[[Any], Any]
    align: Callable[[Any, Any], Any]
    encode_score: Callable[[Any, Path], list[Any]]  # (model, path) -> SystemEncodings, all pages
    encode_samples: Callable[[Any, Any], Any]  # (model, (samples,) 22.05 kHz) -> AudioEncoding
    # (folder, model_path, paths, cancel, mode) -> Job[AddReport] run in a child process; mode:
    # "add", "rescan", "adapt", "unadapt" (core.indexer); None: index in the worker thread
    # through open_library (test fakes)
    index_files: Callable[[Path, Path, list[Path], Any, str], Any] | None = None


def real_services() -> CoreServices:
    """The core itself; every import happens on first call, in whichever thread calls."""

    def load_model(path: Path) -> Any:
        from sheetaudio_gui.core.models import load_model as core_load

        return core_load(path)

    def open_library(folder: Path, model: Any) -> Any:
        from sheetaudio_gui.core.index import Library

        return Library(folder, model)

    def search_audio(*args: Any, **kwargs: Any) -> Any:
        from sheetaudio_gui.core import search

        return search.search_audio(*args, **kwargs)

    def search_audio_file(*args: Any, **kwargs: Any) -> Any:
        from sheetaudio_gui.core import search

        return search.search_audio_file(*args, **kwargs)

    def search_score(*args: Any, **kwargs: Any) -> Any:
        from sheetaudio_gui.core import search

        return search.search_score(*args, **kwargs)

    def passage_map(library: Any) -> Any:
        from sheetaudio_gui.core import search

        return search.passage_map(library)

    def align(systems: Any, audio: Any) -> Any:
        from sheetaudio_gui.core import align as core_align

        return core_align.align(systems, audio)

    def encode_score(model: Any, path: Path) -> list[Any]:
        from sheetaudio_gui.core.encode import encode_page
        from sheetaudio_gui.core.score import open_score

        systems: list[Any] = []
        with open_score(path) as doc:
            for page in doc.pages():
                systems.extend(encode_page(model, page))
        return systems

    def encode_samples(model: Any, samples: Any) -> Any:
        from sheetaudio_gui.core.audio import log_spectrogram
        from sheetaudio_gui.core.encode import encode_audio

        return encode_audio(model, log_spectrogram(samples))

    def index_files(
        folder: Path, model_path: Path, paths: list[Path], cancel: Any, mode: str
    ) -> Any:
        from sheetaudio_gui.core.indexer import index_in_process

        threads = os.cpu_count() or 1  # the child runs at a lower priority than the window
        return index_in_process(folder, model_path, paths, cancel, mode=mode, threads=threads)

    return CoreServices(
        load_model=load_model,
        open_library=open_library,
        search_audio=search_audio,
        search_audio_file=search_audio_file,
        search_score=search_score,
        passage_map=passage_map,
        align=align,
        encode_score=encode_score,
        encode_samples=encode_samples,
        index_files=index_files,
    )
