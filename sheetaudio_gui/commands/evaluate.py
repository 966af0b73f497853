"""`sheetaudio eval`: the papers' tables on the held-out test split of a corpus."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sheetaudio_gui.commands.progress import run_with_progress

RUN_ROWS = (  # stage folder, row name, passage summary
    ("snippet", "snippet baseline (mean of snippet embeddings)", "mean"),
    ("gru", "GRU, frozen CNNs", "gru"),
    ("finetune", "GRU, fine-tuned", "gru"),
    ("cca", "GRU, fine-tuned + CCA", "gru"),
)
CENTRED_SUFFIX = ", centred, hubs penalised"
ADAPTED_SUFFIX = ", adapted to the library, centred, hubs penalised"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "eval",
        help="retrieval tables on a corpus's held-out test split (needs the `train` extra)",
        description="Rows: every stage found in --run, and/or the model file given by --model.",
    )
    parser.add_argument("--corpus", type=Path, required=True, help="corpus folder")
    parser.add_argument("--split", default="test", choices=("test", "valid"))
    parser.add_argument("--run", type=Path, help="training run folder (rows per stage)")
    parser.add_argument("--model", type=Path, help="a model file (e.g. the shipped weights)")
    parser.add_argument("--name", help="row name for --model (default: 'shipped model (FILE)')")
    parser.add_argument(
        "--previous",
        type=Path,
        metavar="JSON",
        help="an earlier --json report on the same corpus build and split: its model rows are "
        "shown first, marked (e.g. the stages of a run whose weights are not at hand)",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the numbers as JSON")
    parser.add_argument(
        "--markdown", type=Path, metavar="OUT", help="write the tables as Markdown (model card)"
    )
    parser.add_argument(
        "--no-robustness", action="store_true", help="skip the degraded-material table"
    )
    parser.set_defaults(handler=eval_command)


def eval_command(args: argparse.Namespace) -> int:
    from sheetaudio_gui.core.errors import FileProblem, SheetAudioError
    from sheetaudio_gui.core.models import load_model
    from sheetaudio_gui.training.report import (
        ModelRow,
        carry_rows,
        evaluation_report,
        format_report,
        markdown_report,
    )

    rows: list[ModelRow] = []
    if args.run is not None:
        for stage, name, summary in RUN_ROWS:
            path = args.run / stage / "best.pt"
            if not path.is_file():
                continue
            loaded = load_model(path)
            if stage == "cca" and loaded.model.cca is None:
                continue  # CCA did not help on validation and was dropped
            rows.append(ModelRow(name, loaded.model, summary))  # type: ignore[arg-type]
    if args.model is not None:
        loaded = load_model(args.model)
        name = args.name or f"shipped model ({args.model.name})"
        rows.append(ModelRow(name, loaded.model, "gru"))
        # what the library's search does with it (centring, hub penalties), and with a library
        # adapted to its material (`sheetaudio library adapt`): the best row, piece
        # identification included
        rows.append(ModelRow(name + CENTRED_SUFFIX, loaded.model, "gru", centred=True))
        adapted = ModelRow(name + ADAPTED_SUFFIX, loaded.model, "gru", centred=True, adapted=True)
        rows.append(adapted)
    if not rows:
        raise SheetAudioError("nothing to evaluate: give --run RUN (trained stages) or --model")
    best = rows[-1].name
    focus = {best}  # the best row, the snippet baseline and the shipped model's plain row
    plain = best.removesuffix(ADAPTED_SUFFIX)  # the shipped model's own row, for comparison
    focus |= {r.name for r in rows if r.summary == "mean" or r.name == plain}
    report: dict[str, Any] = run_with_progress(
        lambda token: evaluation_report(
            args.corpus, rows, focus, args.split, robustness=not args.no_robustness
        ),
        label="eval ",
    )
    report["rows"] = {
        r.name: r.summary + (" centred" if r.centred else "") + (" adapted" if r.adapted else "")
        for r in rows
    }
    report["best"] = best
    if args.previous is not None:
        try:
            previous = json.loads(args.previous.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise FileProblem(args.previous, f"not a readable eval report ({exc})") from None
        report = carry_rows(report, previous)
    for line in format_report(report):
        print(line)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown_report(report))
    return 0
