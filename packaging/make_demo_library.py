"""Make the demo library shipped in resources/demo from a corpus built by `sheetaudio corpus build`.

The demo pieces come from the corpus's held-out test split (public-domain music: Bach chorales
from the music21 corpus, and pieces written by the project's own generator), engraved with the
held-out music font and played with the held-out soundfont, so the shipped model never saw them.

    .venv/bin/python packaging/make_demo_library.py --corpus /work/corpus --out resources/demo
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import pymupdf

from sheetaudio_gui.training.corpus_format import load_piece, piece_dirname

DEMO_PIECES = ("m21-bach-bwv197-5", "m21-bach-bwv263", "gen-v1-s0-00346", "gen-v1-s0-00137")
PAGE_DPI = 150  # the corpus pages are rasterised at 150 dpi


def _name(title: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", title).strip("_")


def make_demo(corpus: Path, out: Path) -> list[dict[str, str]]:
    out.mkdir(parents=True, exist_ok=True)
    listing = []
    for piece_id in DEMO_PIECES:
        piece = load_piece(corpus / "pieces" / piece_dirname(piece_id))
        if piece.split != "test":
            raise SystemExit(f"{piece_id} is not a test piece of {corpus}; pick others")
        name = _name(piece.title)
        pdf = pymupdf.open()
        for k in range(len(piece.pages)):
            image = pymupdf.open(piece.page_path(k))
            rect = image[0].rect
            page = pdf.new_page(
                width=rect.width * 72 / PAGE_DPI, height=rect.height * 72 / PAGE_DPI
            )
            page.insert_image(page.rect, filename=str(piece.page_path(k)))
        pdf.set_metadata({"title": piece.title, "author": piece.composer})
        pdf.save(out / f"{name}.pdf", deflate=True, garbage=3)
        shutil.copyfile(piece.audio_path(0), out / f"{name} (recording).flac")
        listing.append(
            {
                "title": piece.title,
                "composer": piece.composer,
                "score": f"{name}.pdf",
                "recording": f"{name} (recording).flac",
                "license": piece.license,
                "corpus_piece": piece.id,
                "soundfont": piece.performances[0].soundfont,
                "music_font": piece.music_font,
            }
        )
    (out / "pieces.json").write_text(json.dumps(listing, indent=1) + "\n")
    return listing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("resources/demo"))
    args = parser.parse_args()
    for item in make_demo(args.corpus, args.out):
        print(item["score"], "+", item["recording"])


if __name__ == "__main__":
    main()
