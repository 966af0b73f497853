"""`sheetaudio corpus build|show`: make the synthetic aligned training corpus and look inside it."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from sheetaudio_gui import config
from sheetaudio_gui.core.errors import FileProblem


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("corpus", help="build or inspect the synthetic aligned training corpus")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    build = verbs.add_parser(
        "build",
        help="engrave, align and synthesise pieces into DIR (reruns skip finished pieces)",
    )
    build.add_argument("--out", type=Path, required=True, metavar="DIR", help="corpus folder")
    build.add_argument("--pieces", type=int, default=1000, metavar="N", help="pieces (1000)")
    build.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (0)")
    build.add_argument(
        "--workers",
        type=int,
        default=config.CORPUS_DEFAULT_WORKERS,
        metavar="W",
        help=f"worker processes ({config.CORPUS_DEFAULT_WORKERS})",
    )
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    build.set_defaults(handler=build_command)

    show = verbs.add_parser("show", help="summarise a corpus, or draw one piece's alignment")
    show.add_argument("dir", type=Path, metavar="DIR")
    show.add_argument("piece", nargs="?", metavar="PIECE", help="piece id (or its folder name)")
    show.add_argument("--png", type=Path, metavar="OUT", help="write the alignment picture here")
    show.add_argument("--page", type=int, default=0, help="page to draw (0)")
    show.add_argument("--performance", type=int, default=0, help="performance to draw (0)")
    show.set_defaults(handler=show_command)


def build_command(args: argparse.Namespace) -> int:
    from sheetaudio_gui.commands.progress import run_with_progress
    from sheetaudio_gui.training.corpus import build_corpus

    command = "sheetaudio " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    manifest: dict[str, Any] = run_with_progress(
        lambda token: build_corpus(
            args.out, args.pieces, args.seed, args.workers, token=token, command=command
        ),
        quiet=args.quiet,
        label="corpus ",
    )
    _print_summary(manifest)
    return 0


def _print_summary(manifest: dict[str, Any]) -> None:
    print(f"seed {manifest['seed']}, built in {manifest['build']['wall_seconds']:.1f} s")
    print(
        f"{'split':<6} {'pieces':>7} {'pages':>6} {'systems':>8} {'noteheads':>10} {'audio h':>8}"
    )
    for name, c in manifest["splits"].items():
        print(
            f"{name:<6} {c['pieces']:>7} {c['pages']:>6} {c['systems']:>8} {c['noteheads']:>10} "
            f"{c['audio_seconds'] / 3600:>8.2f}"
        )
    if manifest["dropped"]:
        print(f"dropped {len(manifest['dropped'])} pieces:")
        for d in manifest["dropped"]:
            print(f"  {d['id']}: {d['reason']}")


def show_command(args: argparse.Namespace) -> int:
    from sheetaudio_gui.training import corpus_format as fmt

    if args.piece is None:
        _print_summary(fmt.load_manifest(args.dir))
        return 0
    directory = args.dir / fmt.PIECES_DIR / fmt.piece_dirname(args.piece)
    piece = fmt.load_piece(directory)
    if not 0 <= args.page < len(piece.pages):
        raise FileProblem(directory, f"has pages 0..{len(piece.pages) - 1}, not {args.page}")
    if not 0 <= args.performance < len(piece.performances):
        raise FileProblem(
            directory,
            f"has performances 0..{len(piece.performances) - 1}, not {args.performance}",
        )
    summary = {
        "id": piece.id,
        "title": piece.title,
        "composer": piece.composer,
        "split": piece.split,
        "music_font": piece.music_font,
        "pages": len(piece.pages),
        "systems": len(piece.systems),
        "noteheads": sum(len(p.noteheads) for p in piece.pages),
        "performances": [
            {
                "id": r.id,
                "soundfont": r.soundfont,
                "program": r.program,
                "tempo_scale": r.tempo_scale,
                "duration_s": r.duration_s,
            }
            for r in piece.performances
        ],
    }
    print(json.dumps(summary, indent=1))
    if args.png is not None:
        from sheetaudio_gui.core.images import save_png
        from sheetaudio_gui.training.corpus_show import render_piece

        path = save_png(args.png, render_piece(piece, args.page, args.performance))
        print(f"wrote {path}")
    return 0
