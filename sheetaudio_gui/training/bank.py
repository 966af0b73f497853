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

import functools
import hashlib
import itertools
import json
import logging
from collections.abc import Callable, Sequence
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
    split_pieces,
)

log = logging.getLogger(__name__)

BANK_VERSION = 3  # 3: a split's pieces hold music of their own (`corpus_format.split_pieces`)
PAGE_VARIANT_VERSION = 4  # degraded-page banks: 2 = true boxes move with the page geometry,
# 3 = detection of fanning lines (photos), strips along each system's skew with whitened paper,
# 4 = dense staves found (core.score, step 3b)
BANK_STRIP_PAD_PX = 8  # extra rows above and below the 80-row window band (halved strip px)
BANK_STRIP_HEIGHT = SHEET_SNIPPET_HEIGHT_PX + 2 * BANK_STRIP_PAD_PX
STRIP_MARGIN_SPACES = 1.0  # staff spaces kept left and right of the staff lines
BANK_FILES = ("strips", "systems", "specs", "perfs", "passages", "notes")


# a page degradation: (page, rng) -> (degraded page, forward homography of its geometry)
ImageTransform = Callable[
    [npt.NDArray[np.uint8], np.random.Generator],
    tuple[npt.NDArray[np.uint8], npt.NDArray[np.float64]],
]
AudioTransform = Callable[[npt.NDArray[np.float32], np.random.Generator], npt.NDArray[np.float32]]


@dataclass(frozen=True)
class Variant:
    """How an evaluation bank differs from the corpus as built (robustness tests).

    `page` degrades every page image, after which the systems are found again by the app's own
    detector (a degraded page is cut where the app would cut it); `audio` degrades the recording
    before its spectrogram is computed; `tempo` plays everything that much faster (> 1) or
    slower (< 1) by resampling the spectrogram in time, moving every onset with it.
    """

    name: str = ""
    page: ImageTransform | None = None
    audio: AudioTransform | None = None
    tempo: float = 1.0
    seed: int = 0


CLEAN = Variant()


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


MANIFEST_RUN_KEYS = ("build", "command")  # how a build ran (timings, output path), not what it made


def manifest_hash(corpus_dir: Path) -> str:
    """Identity of a corpus build's content: its manifest without the run statistics, so that
    rebuilding the same corpus elsewhere (other timings, other folder) gives the same hash."""
    path = corpus_dir / MANIFEST_FILE
    if not path.is_file():
        return "none"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    content = {k: v for k, v in manifest.items() if k not in MANIFEST_RUN_KEYS}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def bank_dir(corpus_dir: Path, split: str, variant: Variant = CLEAN) -> Path:
    name = f"{split}-{variant.name}" if variant.name else split
    if variant.page is not None:
        name += f"-p{PAGE_VARIANT_VERSION}"
    return corpus_dir / "bank" / f"{name}-v{BANK_VERSION}"


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


Detected = tuple[tuple[float, float, float, float], float, float]  # box, staff space, skew (deg)


def _detected_systems(
    image: npt.NDArray[np.uint8], truth: Sequence[tuple[float, ...]]
) -> tuple[list[Detected | None], int, float]:
    """Per true system box, the detected system (box, staff space, skew) it overlaps most
    (IoU >= 0.5), or None; how many true systems the detector missed; the page's skew."""
    from sheetaudio_gui.core.score import detect_systems

    found = detect_systems(image)
    out: list[Detected | None] = []
    for box in truth:
        best = max(found, key=lambda s: _iou(s.box, box), default=None)
        if best is not None and _iou(best.box, box) >= 0.5:
            out.append((best.box, best.staff_space, best.skew_deg))
        else:
            out.append(None)
    page_skew = found[0].skew_deg if found else 0.0
    return out, sum(1 for o in out if o is None), page_skew


def _variant_spectrogram(
    piece: CorpusPiece, k: int, variant: Variant, rng: np.random.Generator
) -> npt.NDArray[np.float16]:
    if variant.audio is None:
        spec = piece.spectrogram(k)
    else:
        from sheetaudio_gui.core.audio import load_audio, log_spectrogram

        samples = variant.audio(load_audio(piece.audio_path(k)), rng)
        spec = np.asarray(log_spectrogram(samples), dtype=np.float32)
    if variant.tempo != 1.0:  # resample in time: frame t of the result is t * tempo of the source
        frames = max(1, int(round(spec.shape[1] / variant.tempo)))
        src = np.minimum(np.arange(frames) * variant.tempo, spec.shape[1] - 1)
        lo = np.floor(src).astype(np.int64)
        hi = np.minimum(lo + 1, spec.shape[1] - 1)
        frac = (src - lo)[None, :]
        spec = spec[:, lo] * (1 - frac) + spec[:, hi] * frac
    return spec.astype(np.float16)


def _piece_arrays(piece: CorpusPiece, piece_no: int, variant: Variant = CLEAN) -> dict[str, Any]:
    """Strips, spectrograms and index rows of one piece (indices local to the piece)."""
    strips: list[npt.NDArray[np.uint8]] = []
    note_x: list[dict[str, float]] = []  # per global system: note id -> strip x
    pages = {p.index: p for p in piece.pages}
    images = {i: piece.page_image(i) for i in pages}
    rng = np.random.default_rng([variant.seed, piece_no])
    detected: dict[int, list[Detected | None]] = {}
    page_skew: dict[int, float] = {}
    moved: dict[int, Callable[[tuple[float, ...]], tuple[float, float, float, float]]] = {}
    missed = 0
    if variant.page is not None:
        from sheetaudio_gui.training.augment import map_box

        for i in pages:
            shape = images[i].shape
            images[i], forward = variant.page(images[i], rng)
            # the true boxes move with the ink (rotation, perspective): compare in the new page
            moved[i] = functools.partial(map_box, forward, (shape[0], shape[1]))
            truth = [moved[i](s.box) for s in pages[i].systems]
            detected[i], miss, page_skew[i] = _detected_systems(images[i], truth)
            missed += miss
    for ref in piece.systems:
        page = pages[ref.page]
        system = page.systems[ref.index_on_page]
        box = system.box
        space = staff_space([st.lines_y for st in system.staves])
        found = detected.get(ref.page, [None] * len(page.systems))[ref.index_on_page]
        skew = page_skew.get(ref.page, 0.0)
        if found is not None:
            box, space, skew = found
        elif ref.page in moved:  # missed by the detector: cut at the moved true box
            box = moved[ref.page](box)
        strip = system_strip(
            images[ref.page],
            box,
            space,
            STRIP_MARGIN_SPACES,
            height=BANK_STRIP_HEIGHT,
            skew_deg=skew,
        )
        strips.append(strip)
        scale = strip_scale(space)
        left = np.floor(box[0] - STRIP_MARGIN_SPACES * space)
        xs = {
            n.id: float((0.5 * (n.box[0] + n.box[2]) - left) * scale)
            for n in page.noteheads
            if n.system == ref.index_on_page
        }
        note_x.append(xs)
    specs = [_variant_spectrogram(piece, k, variant, rng) for k in range(len(piece.performances))]
    fps = FRAMES_PER_SECOND / variant.tempo  # spectrogram frames per second of performance time
    passages: list[tuple[int, int, int, int]] = []
    notes: list[tuple[int, int, int, int]] = []
    for k, perf in enumerate(piece.performances):
        frames = specs[k].shape[1]
        for g, spans in enumerate(perf.system_spans):
            for start, end in spans:
                f0 = int(round(start * fps))
                f1 = min(int(round(end * fps)), frames)
                if f1 > f0:
                    passages.append((g, k, f0, f1))
        for g, xs in enumerate(note_x):
            for note_id, x in xs.items():
                for onset in perf.notehead_onsets.get(note_id, ()):
                    frame = int(round(onset * fps))
                    if 0 <= frame < frames:
                        notes.append((g, int(round(x)), k, frame))
    return {
        "strips": strips,
        "specs": specs,
        "passages": passages,
        "notes": notes,
        "missed_systems": missed,
    }


def build_bank(
    corpus_dir: Path, split: str, cancel: CancelToken | None = None, variant: Variant = CLEAN
) -> Job[Path]:
    """Flatten one split of a corpus into bank arrays (a job: yields progress, returns the folder).

    Written into a temporary folder and renamed when complete, so a cancelled or crashed build
    never leaves a bank that looks finished.
    """
    corpus_dir = Path(corpus_dir)
    out = bank_dir(corpus_dir, split, variant)
    missed = 0
    system_pages: list[int] = []  # page of every system, for page-level evaluation
    selected = split_pieces(corpus_dir, split)
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
        arrays = _piece_arrays(piece, len(pieces), variant)
        missed += arrays["missed_systems"]
        system_pages += [ref.page for ref in piece.systems]
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
        "variant": variant.name,
        "systems_missed_by_detector": missed,
        "system_pages": system_pages,
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


def ensure_bank(corpus_dir: Path, split: str, variant: Variant = CLEAN) -> Job[Bank]:
    """Load the split's bank, (re)building it if missing or made from another corpus build."""
    folder = bank_dir(Path(corpus_dir), split, variant)
    meta_path = folder / "meta.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("manifest_hash") == manifest_hash(Path(corpus_dir)):
            return load_bank(folder)
        log.info("corpus changed since the %s bank was built: rebuilding", split)
    folder = yield from build_bank(Path(corpus_dir), split, variant=variant)
    return load_bank(folder)
