"""The training bank: a corpus split flattened into a few arrays that training samples from.

Reading pages and spectrograms piece by piece is far too slow for a training loop, so each split
is converted once into memory-mappable arrays:

- `strips.npy`   (BANK_STRIP_HEIGHT, total_width) uint8: every system strip, normalised to the
  model's staff spacing (halved), side by side; taller than a window so shift/scale
  augmentation has real page content to move into view;
- `systems.npy`  (n_systems, 3) int64: strip offset, strip width, piece number;
- `specs.npy`    (92, total_frames) float16: every performance's spectrogram, end to end;
- `perfs.npy`    (n_perfs, 3) int64: spectrogram offset, frame count, piece number;
- `passages.npy` (n_passages, 4) int64: system, performance, first frame, end frame (one row per
  play of a system in a performance);
- `notes.npy`    (n_notes, 4) int64: system, notehead x centre in strip px, performance, onset
  frame (one row per struck notehead and play; the snippet pairs of the 2018 baseline);
- `meta.json`: pieces, counts, and the corpus manifest's hash (a rebuilt corpus invalidates it).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sheetaudio_gui.config import FRAMES_PER_SECOND, SHEET_SNIPPET_HEIGHT_PX, SPEC_BINS
from sheetaudio_gui.core.errors import SheetAudioError
from sheetaudio_gui.core.jobs import CancelToken, Job, Progress
from sheetaudio_gui.core.snippets import strip_scale, system_strip
from sheetaudio_gui.training.corpus_format import (
    MANIFEST_FILE,
    CorpusPiece,
    iter_pieces,
)

log = logging.getLogger(__name__)

BANK_VERSION = 1
BANK_STRIP_PAD_PX = 8  # extra rows above and below the 80-row window band (halved strip px)
BANK_STRIP_HEIGHT = SHEET_SNIPPET_HEIGHT_PX + 2 * BANK_STRIP_PAD_PX
STRIP_MARGIN_SPACES = 1.0  # staff spaces kept left and right of the staff lines
BANK_FILES = ("strips", "systems", "specs", "perfs", "passages", "notes")


@dataclass
class Bank:
    """The arrays of one split (memory-mapped when loaded from disk)."""

    strips: npt.NDArray[np.uint8]
    systems: npt.NDArray[np.int64]
    specs: npt.NDArray[np.float16]
    perfs: npt.NDArray[np.int64]
    passages: npt.NDArray[np.int64]
    notes: npt.NDArray[np.int64]
    meta: dict[str, Any]

    @property
    def pieces(self) -> list[str]:
        return list(self.meta["pieces"])


def staff_space(lines: list[tuple[float, ...]]) -> float:
    """Mean distance between neighbouring staff lines over all staves of a system (px)."""
    gaps = [b - a for staff in lines for a, b in itertools.pairwise(staff)]
    return float(np.mean(gaps))


def manifest_hash(corpus_dir: Path) -> str:
    path = corpus_dir / MANIFEST_FILE
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else "none"


def bank_dir(corpus_dir: Path, split: str) -> Path:
    return corpus_dir / "bank" / f"{split}-v{BANK_VERSION}"


def _piece_arrays(piece: CorpusPiece, piece_no: int) -> dict[str, Any]:
    """Strips, spectrograms and index rows of one piece (indices local to the piece)."""
    strips: list[npt.NDArray[np.uint8]] = []
    note_x: list[dict[str, float]] = []  # per global system: note id -> strip x
    pages = {p.index: p for p in piece.pages}
    images = {i: piece.page_image(i) for i in pages}
    for ref in piece.systems:
        page = pages[ref.page]
        system = page.systems[ref.index_on_page]
        space = staff_space([st.lines_y for st in system.staves])
        strip = system_strip(
            images[ref.page], system.box, space, STRIP_MARGIN_SPACES, height=BANK_STRIP_HEIGHT
        )
        strips.append(strip)
        scale = strip_scale(space)
        left = np.floor(system.box[0] - STRIP_MARGIN_SPACES * space)
        xs = {
            n.id: float((0.5 * (n.box[0] + n.box[2]) - left) * scale)
            for n in page.noteheads
            if n.system == ref.index_on_page
        }
        note_x.append(xs)
    specs = [piece.spectrogram(k).astype(np.float16) for k in range(len(piece.performances))]
    passages: list[tuple[int, int, int, int]] = []
    notes: list[tuple[int, int, int, int]] = []
    for k, perf in enumerate(piece.performances):
        frames = specs[k].shape[1]
        for g, spans in enumerate(perf.system_spans):
            for start, end in spans:
                f0 = int(round(start * FRAMES_PER_SECOND))
                f1 = min(int(round(end * FRAMES_PER_SECOND)), frames)
                if f1 > f0:
                    passages.append((g, k, f0, f1))
        for g, xs in enumerate(note_x):
            for note_id, x in xs.items():
                for onset in perf.notehead_onsets.get(note_id, ()):
                    frame = int(round(onset * FRAMES_PER_SECOND))
                    if 0 <= frame < frames:
                        notes.append((g, int(round(x)), k, frame))
    return {"strips": strips, "specs": specs, "passages": passages, "notes": notes}


def build_bank(corpus_dir: Path, split: str, cancel: CancelToken | None = None) -> Job[Path]:
    """Flatten one split of a corpus into bank arrays (a job: yields progress, returns the folder).

    Written into a temporary folder and renamed when complete, so a cancelled or crashed build
    never leaves a bank that looks finished.
    """
    corpus_dir = Path(corpus_dir)
    out = bank_dir(corpus_dir, split)
    selected = list(iter_pieces(corpus_dir, split))
    total = len(selected)
    strips: list[npt.NDArray[np.uint8]] = []
    systems: list[tuple[int, int, int]] = []
    specs: list[npt.NDArray[np.float16]] = []
    perfs: list[tuple[int, int, int]] = []
    passages: list[tuple[int, int, int, int]] = []
    notes: list[tuple[int, int, int, int]] = []
    pieces: list[str] = []
    strip_offset = spec_offset = 0
    for done, piece in enumerate(selected):
        if cancel is not None:
            cancel.raise_if_cancelled()
        yield Progress(done, total, piece.id)
        arrays = _piece_arrays(piece, len(pieces))
        sys0, perf0 = len(systems), len(perfs)
        for strip in arrays["strips"]:
            systems.append((strip_offset, strip.shape[1], len(pieces)))
            strips.append(strip)
            strip_offset += strip.shape[1]
        for spec in arrays["specs"]:
            perfs.append((spec_offset, spec.shape[1], len(pieces)))
            specs.append(spec)
            spec_offset += spec.shape[1]
        passages += [(sys0 + g, perf0 + k, f0, f1) for g, k, f0, f1 in arrays["passages"]]
        notes += [(sys0 + g, x, perf0 + k, f) for g, x, k, f in arrays["notes"]]
        pieces.append(piece.id)
    if not pieces:
        raise SheetAudioError(
            f"{corpus_dir}: the corpus has no pieces in split {split!r}; build more pieces "
            "(sheetaudio corpus build --pieces N)"
        )
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    np.save(tmp / "strips.npy", np.concatenate(strips, axis=1))
    np.save(tmp / "systems.npy", np.asarray(systems, dtype=np.int64))
    np.save(tmp / "specs.npy", np.concatenate(specs, axis=1))
    np.save(tmp / "perfs.npy", np.asarray(perfs, dtype=np.int64))
    np.save(tmp / "passages.npy", np.asarray(passages, dtype=np.int64).reshape(-1, 4))
    np.save(tmp / "notes.npy", np.asarray(notes, dtype=np.int64).reshape(-1, 4))
    meta = {
        "version": BANK_VERSION,
        "split": split,
        "manifest_hash": manifest_hash(corpus_dir),
        "pieces": pieces,
        "counts": {
            "pieces": len(pieces),
            "systems": len(systems),
            "performances": len(perfs),
            "passages": len(passages),
            "notes": len(notes),
            "audio_s": spec_offset / FRAMES_PER_SECOND,
        },
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    if out.exists():
        for f in out.iterdir():
            f.unlink()
        out.rmdir()
    tmp.rename(out)
    yield Progress(total, total, "bank written")
    return out


def load_bank(folder: Path, mmap: bool = True) -> Bank:
    """Open a bank folder; arrays are memory-mapped so several processes share one copy."""
    folder = Path(folder)
    arrays = {
        name: np.load(folder / f"{name}.npy", mmap_mode="r" if mmap else None)
        for name in BANK_FILES
    }
    meta = json.loads((folder / "meta.json").read_text())
    if arrays["specs"].shape[0] != SPEC_BINS:
        raise ValueError(f"{folder}: spectrograms have {arrays['specs'].shape[0]} bins")
    return Bank(meta=meta, **arrays)


def ensure_bank(corpus_dir: Path, split: str) -> Job[Bank]:
    """Load the split's bank, (re)building it if missing or made from another corpus build."""
    folder = bank_dir(Path(corpus_dir), split)
    meta_path = folder / "meta.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("manifest_hash") == manifest_hash(Path(corpus_dir)):
            return load_bank(folder)
        log.info("corpus changed since the %s bank was built: rebuilding", split)
    folder = yield from build_bank(Path(corpus_dir), split)
    return load_bank(folder)
