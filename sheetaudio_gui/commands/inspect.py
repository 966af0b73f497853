"""`sheetaudio inspect score|audio FILE`: what the front ends see in a file (text, JSON, PNG)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from sheetaudio_gui.config import SPEC_BINS


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("inspect", help="show what sheetaudio reads from a score or audio file")
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)

    score = kinds.add_parser("score", help="pages and detected staff systems of a PDF or image")
    score.add_argument("file", type=Path)
    score.add_argument("--json", action="store_true", help="print JSON instead of text")
    score.add_argument("--png", type=Path, metavar="DIR", help="write each page with its systems")
    score.set_defaults(handler=inspect_score)

    audio = kinds.add_parser("audio", help="duration, format and spectrogram of an audio file")
    audio.add_argument("file", type=Path)
    audio.add_argument("--json", action="store_true", help="print JSON instead of text")
    audio.add_argument("--png", type=Path, metavar="DIR", help="write the spectrogram as PNG")
    audio.set_defaults(handler=inspect_audio)


def score_report(path: Path, png_dir: Path | None = None) -> dict[str, Any]:
    """Pages with their systems in page units (PDF points or image pixels), origin top-left."""
    from sheetaudio_gui.core.images import draw_rect, save_png
    from sheetaudio_gui.core.score import detect_systems, open_score

    pages = []
    with open_score(path) as doc:
        for index in range(doc.page_count):
            page = doc.page(index)
            systems = detect_systems(page.image)
            boxes = [[round(float(c) / page.px_per_unit, 2) for c in s.box] for s in systems]
            pages.append(
                {
                    "index": index,
                    "width": round(page.width, 2),
                    "height": round(page.height, 2),
                    "systems": boxes,
                }
            )
            if png_dir is not None:
                rgb = np.repeat(page.image[:, :, None], 3, axis=2)
                for system in systems:
                    draw_rect(rgb, system.box, (220, 30, 30), width=3)
                save_png(png_dir / f"{path.stem}_page{index:03d}.png", rgb)
        units = doc.units
    return {"file": str(path), "units": units, "pages": pages}


def audio_report(path: Path, png_dir: Path | None = None) -> dict[str, Any]:
    """Duration and format of the file, and the size of its spectrogram (frames x bins)."""
    from sheetaudio_gui.core.audio import audio_info, file_spectrogram, spectrogram_image
    from sheetaudio_gui.core.images import save_png

    info = audio_info(path)
    spec = file_spectrogram(path)
    if png_dir is not None:
        save_png(png_dir / f"{path.stem}_spectrogram.png", spectrogram_image(spec))
    return {
        "file": str(path),
        "duration_s": round(info.duration_s, 3),
        "sample_rate": info.sample_rate,
        "channels": info.channels,
        "format": info.format,
        "frames": int(spec.shape[1]),
        "bins": int(spec.shape[0]),
    }


def inspect_score(args: argparse.Namespace) -> int:
    report = score_report(args.file, args.png)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['file']}: {len(report['pages'])} page(s), units {report['units']}")
        for page in report["pages"]:
            print(
                f"  page {page['index']}: {page['width']} x {page['height']}, "
                f"{len(page['systems'])} system(s)"
            )
            for k, box in enumerate(page["systems"]):
                print(f"    system {k}: {box}")
    return 0


def inspect_audio(args: argparse.Namespace) -> int:
    report = audio_report(args.file, args.png)
    assert report["bins"] == SPEC_BINS
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"{report['file']}: {report['duration_s']} s, {report['sample_rate']} Hz, "
            f"{report['channels']} channel(s), {report['format']}; "
            f"spectrogram {report['bins']} bins x {report['frames']} frames"
        )
    return 0
