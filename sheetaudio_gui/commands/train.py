"""`sheetaudio train`: staged training on a corpus; rerun the same command to resume."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sheetaudio_gui.commands.progress import run_with_progress
from sheetaudio_gui.core.errors import FileProblem, SheetAudioError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "train",
        help="train the encoders on a corpus (needs the `train` extra)",
        description="Stages: snippet, gru, finetune, cca; each resumes from RUN/<stage>/last.pt.",
    )
    parser.add_argument(
        "--corpus", type=Path, required=True, help="corpus folder (corpus build --out)"
    )
    parser.add_argument("--run", type=Path, required=True, help="folder for checkpoints and logs")
    parser.add_argument(
        "--stage",
        choices=("snippet", "gru", "finetune", "cca", "all"),
        default="all",
        help="which stage to run (default: all, in order)",
    )
    parser.add_argument(
        "--steps", type=int, help="optimiser steps of the stage (default per stage)"
    )
    parser.add_argument("--batch", type=int, help="pairs per batch (default 64)")
    parser.add_argument("--eval-every", type=int, default=250, help="validate every N steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    parser.add_argument(
        "--cnn-channels",
        help="snippet-CNN channels per block, e.g. 24,48,96,96 (default: config.ModelDims); "
        "only for a new run - a resumed stage keeps its sizes, later stages inherit them",
    )
    parser.add_argument(
        "--loss",
        choices=("hinge", "infonce"),
        default="hinge",
        help="pair loss: the papers' summed hinge (default) or InfoNCE over the batch",
    )
    parser.add_argument(
        "--augment",
        choices=("standard", "domain"),
        default="standard",
        help="augmentation: standard, or domain (adds font and piano-sound randomisation for "
        "unseen music fonts and soundfonts)",
    )
    parser.add_argument(
        "--crops",
        type=float,
        default=0.0,
        metavar="P",
        help="share (0-1) of passage pairs cut as aligned sub-system crops of 3-10 sheet windows "
        "(queries in a library start and end anywhere, not at system edges); default 0",
    )
    parser.add_argument(
        "--across",
        type=float,
        default=0.0,
        metavar="P",
        help="share (0-1) of passage pairs cut across a system end: the tail of one system and "
        "the head of the next with the audio that plays them (a library reads on across "
        "system ends); default 0",
    )
    parser.add_argument(
        "--loose",
        type=float,
        default=0.0,
        metavar="P",
        help="share (0-1) of passage pairs whose audio ends each move by up to 25 %% of the "
        "pair's length (a library matches passages that begin and end elsewhere in the music); "
        "default 0",
    )
    parser.add_argument(
        "--per-piece",
        type=int,
        default=1,
        metavar="G",
        help="draw each batch as groups of up to G systems of one piece (hard negatives: same "
        "key, texture, font and sound); default 1 = systems drawn at random",
    )
    parser.add_argument(
        "--summary",
        choices=("last+mean",),
        help="turn the starting model's passage summary (the GRU's last state) into last+mean: "
        "the last state plus the mean of all states, less sensitive to where a passage begins "
        "and ends",
    )
    parser.add_argument(
        "--init",
        type=Path,
        help="start the stage from these weights (e.g. models/sheetaudio-passage.pt) instead of "
        "the previous stage's best.pt; ignored when the stage resumes from its last.pt",
    )
    parser.set_defaults(handler=train_command)


def train_command(args: argparse.Namespace) -> int:
    from sheetaudio_gui.config import ModelDims
    from sheetaudio_gui.training.train import STAGES, stage_config, train_stage

    if not 0.0 <= args.crops <= 1.0:
        raise SheetAudioError(f"--crops must be a share between 0 and 1, not {args.crops}")
    if not 0.0 <= args.across <= 1.0:
        raise SheetAudioError(f"--across must be a share between 0 and 1, not {args.across}")
    if not 0.0 <= args.loose <= 1.0:
        raise SheetAudioError(f"--loose must be a share between 0 and 1, not {args.loose}")
    if args.per_piece < 1:
        raise SheetAudioError(f"--per-piece must be at least 1, not {args.per_piece}")
    dims = None
    if args.cnn_channels:
        dims = ModelDims(cnn_channels=tuple(int(c) for c in args.cnn_channels.split(",")))
    stages = STAGES if args.stage == "all" else (args.stage,)
    for stage in stages:
        over: dict[str, object] = {
            "eval_every": args.eval_every,
            "loss": args.loss,
            "domain": args.augment == "domain",
            "crops": args.crops,
            "across": args.across,
            "loose": args.loose,
            "per_piece": args.per_piece,
            "summary": args.summary or "",
        }
        if args.init:
            if not args.init.is_file():
                raise FileProblem(args.init, "no such weights file")
            over["init"] = str(args.init)
        if args.batch:
            over["batch"] = args.batch
        cfg = stage_config(stage, args.steps, args.device, args.seed, **over)
        best = run_with_progress(
            lambda token, cfg=cfg: train_stage(
                args.corpus, args.run, cfg, dims=dims, cancel=token, threads=args.threads
            ),
            label=f"{stage} ",
        )
        print(json.dumps({"stage": stage, "best": str(best)}))
    return 0
