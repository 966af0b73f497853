"""The `sheetaudio` console script: one entry point, one subcommand module per verb."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from sheetaudio_gui import __version__
from sheetaudio_gui.commands import corpus, evaluate, inspect, library, train
from sheetaudio_gui.core.errors import Cancelled, SheetAudioError

log = logging.getLogger("sheetaudio")

EXIT_OK = 0
EXIT_USER_ERROR = 2  # bad input: the message says which file and what is wrong
EXIT_CANCELLED = 130  # Ctrl-C, like a shell


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sheetaudio",
        description="Find recordings from score pages and score pages from recordings.",
    )
    parser.add_argument("--version", action="version", version=f"sheetaudio {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (inspect, corpus, train, evaluate, library):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        status: int = args.handler(args)
        return status
    except Cancelled:
        print("sheetaudio: cancelled", file=sys.stderr)
        return EXIT_CANCELLED
    except SheetAudioError as error:
        print(f"sheetaudio: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("sheetaudio: interrupted", file=sys.stderr)
        return EXIT_CANCELLED


if __name__ == "__main__":
    raise SystemExit(main())
