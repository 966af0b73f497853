"""The on-disk format of the synthetic aligned corpus: the contract between building and training.

```
DIR/manifest.json                  how the corpus was made and what it holds (counts per split)
DIR/pieces/<piece>/piece.json      one piece: pages, systems, performances (dataclasses below)
DIR/pieces/<piece>/page000.png     grayscale page raster
DIR/pieces/<piece>/perf0.flac      22.05 kHz mono performance
DIR/pieces/<piece>/perf0.npy       its log spectrogram, float16 (92, frames) at 20 frames/s
DIR/dropped/<piece>.json           a piece that could not be built, with the reason
```
Pixel boxes are (x0, y0, x1, y1) with the origin at the page's top-left. Times are audio seconds.
A notehead that continues a tie is drawn but not struck: it is listed in `tied_noteheads` and has
no onsets. With repeats, a notehead has one onset per play and a system one span per play.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sheetaudio_gui.core.errors import FileProblem

FORMAT_VERSION = 1
PIECE_FILE = "piece.json"
PIECES_DIR = "pieces"
DROPPED_DIR = "dropped"
MANIFEST_FILE = "manifest.json"

Box = tuple[float, float, float, float]
Span = tuple[float, float]  # start_s, end_s


def piece_dirname(piece_id: str) -> str:
    """Folder name of a piece: its id with anything but letters, digits, '.', '_', '-' as '_'."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", piece_id)


@dataclass(frozen=True)
class Staff:
    lines_y: tuple[float, ...]  # y of each line, top to bottom, px
    x0: float
    x1: float


@dataclass(frozen=True)
class PageSystem:
    box: Box  # top line of the top staff .. bottom line of the bottom staff, px
    staves: tuple[Staff, ...]


@dataclass(frozen=True)
class Notehead:
    id: str  # verovio id of the note
    box: Box  # px
    system: int  # index of the system on its page


@dataclass(frozen=True)
class Page:
    index: int
    png: str  # file name inside the piece folder
    width_px: int
    height_px: int
    systems: tuple[PageSystem, ...]
    noteheads: tuple[Notehead, ...]


@dataclass(frozen=True)
class SystemRef:
    """A system in global (reading) order: which page, which system there, its box in px."""

    page: int
    index_on_page: int
    box: Box


@dataclass(frozen=True)
class PerformanceRecord:
    id: str
    soundfont: str  # file name
    program: int  # General MIDI program
    tempo_scale: float
    audio: str  # FLAC file name inside the piece folder
    spectrogram: str | None  # .npy file name, None if not precomputed
    duration_s: float
    notehead_onsets: dict[str, tuple[float, ...]]  # note id -> every onset (s), one per play
    system_spans: tuple[tuple[Span, ...], ...]  # per global system: every play (start_s, end_s)
    style: dict[str, Any] = field(default_factory=dict)  # the performance's random choices


@dataclass(frozen=True)
class ScoreNoteRecord:
    """One note of the score's MIDI: the notehead that starts it, pitch, score-time onset/offset."""

    note_id: str
    pitch: int  # MIDI note number
    onset_s: float  # at the score's encoded tempo, repeats expanded
    offset_s: float


@dataclass(frozen=True)
class CorpusPiece:
    id: str
    group: str
    origin: str
    title: str
    composer: str
    split: str  # train | valid | test
    music_font: str
    license: str
    has_lyrics: bool
    layout: dict[str, Any]
    pages: tuple[Page, ...]
    systems: tuple[SystemRef, ...]
    performances: tuple[PerformanceRecord, ...]
    tied_noteheads: tuple[str, ...]
    # the score's own notes at its encoded tempo (repeats expanded): what a MIDI export plays
    score_notes: tuple[ScoreNoteRecord, ...] = ()
    directory: Path = Path()  # where piece.json was read from (not stored)

    def page_path(self, page: int) -> Path:
        return self.directory / self.pages[page].png

    def audio_path(self, performance: int) -> Path:
        return self.directory / self.performances[performance].audio

    def page_image(self, page: int) -> npt.NDArray[np.uint8]:
        """The page raster as (height, width) uint8, 0 = ink, 255 = paper."""
        import pymupdf

        pix = pymupdf.Pixmap(str(self.page_path(page)))
        image = np.frombuffer(pix.samples, dtype=np.uint8).reshape(pix.height, pix.width, pix.n)
        return np.ascontiguousarray(image[:, :, 0])

    def spectrogram(self, performance: int) -> npt.NDArray[np.float32]:
        """The performance's log spectrogram (92, frames), computed from the FLAC if not stored."""
        record = self.performances[performance]
        if record.spectrogram is not None:
            spec = np.load(self.directory / record.spectrogram)
            return np.asarray(spec, dtype=np.float32)
        from sheetaudio_gui.core.audio import load_audio, log_spectrogram

        return np.asarray(log_spectrogram(load_audio(self.audio_path(performance))), np.float32)

    def notehead_system(self) -> dict[str, int]:
        """Note id -> global system index."""
        first = {(s.page, s.index_on_page): i for i, s in enumerate(self.systems)}
        return {n.id: first[(p.index, n.system)] for p in self.pages for n in p.noteheads}

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "id": self.id,
            "group": self.group,
            "origin": self.origin,
            "title": self.title,
            "composer": self.composer,
            "split": self.split,
            "music_font": self.music_font,
            "license": self.license,
            "has_lyrics": self.has_lyrics,
            "layout": self.layout,
            "pages": [
                {
                    "index": p.index,
                    "png": p.png,
                    "width_px": p.width_px,
                    "height_px": p.height_px,
                    "systems": [
                        {
                            "box": list(s.box),
                            "staves": [
                                {"lines_y": list(st.lines_y), "x0": st.x0, "x1": st.x1}
                                for st in s.staves
                            ],
                        }
                        for s in p.systems
                    ],
                    "noteheads": [
                        {"id": n.id, "box": list(n.box), "system": n.system} for n in p.noteheads
                    ],
                }
                for p in self.pages
            ],
            "systems": [
                {"page": s.page, "index_on_page": s.index_on_page, "box": list(s.box)}
                for s in self.systems
            ],
            "performances": [
                {
                    "id": r.id,
                    "soundfont": r.soundfont,
                    "program": r.program,
                    "tempo_scale": r.tempo_scale,
                    "audio": r.audio,
                    "spectrogram": r.spectrogram,
                    "duration_s": r.duration_s,
                    "notehead_onsets": {k: list(v) for k, v in r.notehead_onsets.items()},
                    "system_spans": [[list(span) for span in spans] for spans in r.system_spans],
                    "style": r.style,
                }
                for r in self.performances
            ],
            "tied_noteheads": list(self.tied_noteheads),
            "score_notes": [
                [n.note_id, n.pitch, round(n.onset_s, 4), round(n.offset_s, 4)]
                for n in self.score_notes
            ],
        }


def _box(values: Any) -> Box:
    x0, y0, x1, y1 = (float(v) for v in values)
    return (x0, y0, x1, y1)


def piece_from_json(data: dict[str, Any], directory: Path = Path()) -> CorpusPiece:
    pages = tuple(
        Page(
            index=int(p["index"]),
            png=str(p["png"]),
            width_px=int(p["width_px"]),
            height_px=int(p["height_px"]),
            systems=tuple(
                PageSystem(
                    box=_box(s["box"]),
                    staves=tuple(
                        Staff(tuple(float(y) for y in st["lines_y"]), float(st["x0"]), st["x1"])
                        for st in s["staves"]
                    ),
                )
                for s in p["systems"]
            ),
            noteheads=tuple(
                Notehead(str(n["id"]), _box(n["box"]), int(n["system"])) for n in p["noteheads"]
            ),
        )
        for p in data["pages"]
    )
    performances = tuple(
        PerformanceRecord(
            id=str(r["id"]),
            soundfont=str(r["soundfont"]),
            program=int(r["program"]),
            tempo_scale=float(r["tempo_scale"]),
            audio=str(r["audio"]),
            spectrogram=r.get("spectrogram"),
            duration_s=float(r["duration_s"]),
            notehead_onsets={
                k: tuple(float(t) for t in v) for k, v in r["notehead_onsets"].items()
            },
            system_spans=tuple(
                tuple((float(a), float(b)) for a, b in spans) for spans in r["system_spans"]
            ),
            style=dict(r.get("style", {})),
        )
        for r in data["performances"]
    )
    return CorpusPiece(
        id=str(data["id"]),
        group=str(data["group"]),
        origin=str(data["origin"]),
        title=str(data["title"]),
        composer=str(data["composer"]),
        split=str(data["split"]),
        music_font=str(data["music_font"]),
        license=str(data["license"]),
        has_lyrics=bool(data.get("has_lyrics", False)),
        layout=dict(data.get("layout", {})),
        pages=pages,
        systems=tuple(
            SystemRef(int(s["page"]), int(s["index_on_page"]), _box(s["box"]))
            for s in data["systems"]
        ),
        performances=performances,
        tied_noteheads=tuple(str(t) for t in data.get("tied_noteheads", ())),
        score_notes=tuple(
            ScoreNoteRecord(str(i), int(p), float(on), float(off))
            for i, p, on, off in data.get("score_notes", ())
        ),
        directory=directory,
    )


def load_piece(directory: str | Path) -> CorpusPiece:
    """Read `directory/piece.json`; FileProblem if it is missing or not a corpus piece."""
    directory = Path(directory)
    path = directory / PIECE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileProblem(
            path, "no such piece; list the corpus with `sheetaudio corpus show`"
        ) from None
    except (OSError, ValueError) as error:
        raise FileProblem(path, f"unreadable piece file ({error}); rebuild the corpus") from error
    if data.get("format_version") != FORMAT_VERSION:
        raise FileProblem(
            path,
            f"corpus format {data.get('format_version')} (this version reads {FORMAT_VERSION}); "
            "rebuild the corpus",
        )
    return piece_from_json(data, directory)


def piece_dirs(corpus_dir: str | Path) -> list[Path]:
    """Finished piece folders in name order (half-built ones are hidden `.tmp-*` folders)."""
    root = Path(corpus_dir) / PIECES_DIR
    if not root.is_dir():
        return []
    return sorted(
        p for p in root.iterdir() if not p.name.startswith(".") and (p / PIECE_FILE).is_file()
    )


def iter_pieces(corpus_dir: str | Path, split: str | None = None) -> Iterator[CorpusPiece]:
    """Every finished piece of the corpus (of one split if given), in folder-name order."""
    for directory in piece_dirs(corpus_dir):
        piece = load_piece(directory)
        if split is None or piece.split == split:
            yield piece


SPLITS = ("train", "valid", "test")  # the order in which music is claimed (`split_pieces`)


def music_key(piece: CorpusPiece) -> tuple[tuple[int, float, float], ...]:
    """The piece's music as its notes (pitch, onset, offset at the encoded tempo, to the ms),
    whatever its engraving and performances: two sources that encode the same music share it."""
    return tuple(
        sorted((n.pitch, round(n.onset_s, 3), round(n.offset_s, 3)) for n in piece.score_notes)
    )


def split_pieces(corpus_dir: str | Path, split: str | None) -> list[CorpusPiece]:
    """The pieces of a split (None: of all) whose music is their own: none of an earlier split
    (train, then valid, then test) or an earlier piece of the split (folder-name order) has the
    same notes.

    Splits follow a piece's group (its mass, opus), but a source collection may hold one
    movement under two groups: the music21 corpus has seven Palestrina movements twice under
    different mass numbers, which put three test pieces' music in the training split and one
    test piece's twin in the test split, counting its recordings as another piece's. Every bank
    and evaluation library takes its pieces from here.
    """
    order = {name: k for k, name in enumerate(SPLITS)}
    pieces = sorted(iter_pieces(corpus_dir), key=lambda p: order.get(p.split, len(SPLITS)))
    seen: set[tuple[tuple[int, float, float], ...]] = set()
    out = []
    for piece in pieces:  # stable sort: folder-name order within a split
        key = music_key(piece)
        if key and key in seen:
            continue
        seen.add(key)
        if split is None or piece.split == split:
            out.append(piece)
    return out


def load_manifest(corpus_dir: str | Path) -> dict[str, Any]:
    path = Path(corpus_dir) / MANIFEST_FILE
    try:
        manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileProblem(path, "no manifest; run `sheetaudio corpus build` first") from None
    return manifest
