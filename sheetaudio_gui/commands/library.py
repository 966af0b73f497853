"""`sheetaudio library add|list|remove|rescan|check|repair`, `query`, `align`, `eval-library`.

Every command opens the library folder (`--library`, default: the user data folder) and prints
text, or with `--json` the JSON that scripts read. `eval-library` writes a corpus split out as a
real library folder and queries it through the same functions as `query`.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import time
from pathlib import Path
from typing import Any

from sheetaudio_gui.commands.progress import run_with_progress

log = logging.getLogger(__name__)

PDF_DPI = 150.0  # eval-library: corpus page PNGs become PDF pages at this resolution
EVAL_EXCERPTS_S = (10.0, 30.0)  # eval-library: excerpt lengths, s
EVAL_COUNTS = 4  # printed precision of evaluation rates (decimal places)
ADAPT_ADVICE = (
    "the library now holds enough scores and recordings to adapt the model to them: on "
    "engravings and piano sounds unlike the training material, the right passage then comes "
    "first more often"
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lib = sub.add_parser("library", help="add, list, remove and rescan indexed scores and audio")
    actions = lib.add_subparsers(dest="action", metavar="ACTION", required=True)

    def common(p: argparse.ArgumentParser, model: bool = False) -> None:
        p.add_argument("--library", type=Path, help="library folder (default: user data folder)")
        p.add_argument("--json", action="store_true", help="print JSON instead of text")
        if model:
            p.add_argument("--model", type=Path, help="weights file (default: shipped model)")

    add = actions.add_parser("add", help="index score and audio files or whole folders")
    add.add_argument("paths", type=Path, nargs="+", metavar="PATH")
    common(add, model=True)
    add.set_defaults(handler=library_add)

    listing = actions.add_parser("list", help="the documents of the library")
    common(listing)
    listing.set_defaults(handler=library_list)

    remove = actions.add_parser("remove", help="forget documents (the files stay)")
    remove.add_argument("paths", type=Path, nargs="+", metavar="PATH")
    common(remove)
    remove.set_defaults(handler=library_remove)

    rescan = actions.add_parser("rescan", help="index new/changed files, drop deleted ones")
    common(rescan, model=True)
    rescan.set_defaults(handler=library_rescan)

    adapt = actions.add_parser(
        "adapt",
        help="adapt the model to the library's own scores and recordings, then re-embed them",
        description="Re-measures the networks' batch-norm statistics on a sample of the "
        "library's score windows and audio snippets (no labels needed) and re-embeds every "
        "document with the adapted model, which is kept in the library folder. Run it again "
        "after adding much new material; --undo goes back to the base model.",
    )
    adapt.add_argument("--undo", action="store_true", help="use the base model again")
    common(adapt, model=True)
    adapt.set_defaults(handler=library_adapt)

    check = actions.add_parser("check", help="check the library's consistency")
    common(check)
    check.set_defaults(handler=library_check)

    repair = actions.add_parser(
        "repair", help="rebuild a damaged library (database or embeddings), keeping its documents"
    )
    common(repair, model=True)
    repair.set_defaults(handler=library_repair)

    query = sub.add_parser("query", help="search the library with audio or a score region")
    common(query, model=True)
    query.add_argument("--audio", type=Path, help="audio query file")
    query.add_argument("--start", type=float, default=0.0, help="excerpt start, s")
    query.add_argument("--end", type=float, help="excerpt end, s (default: end of file)")
    query.add_argument("--score", type=Path, help="score query file (PDF or image)")
    query.add_argument("--page", type=int, help="0-based page of --score")
    where = query.add_mutually_exclusive_group()
    where.add_argument("--system", type=int, help="0-based system on the page (top to bottom)")
    where.add_argument(
        "--box", type=float, nargs=4, metavar=("X0", "Y0", "X1", "Y1"), help="page units"
    )
    query.add_argument("--top", type=int, default=10, help="results to return")
    query.set_defaults(handler=query_command)

    al = sub.add_parser("align", help="map score positions to times in a recording")
    common(al, model=True)
    al.add_argument("--score", type=Path, required=True)
    al.add_argument("--audio", type=Path, required=True)
    al.set_defaults(handler=align_command)

    ev = sub.add_parser(
        "eval-library", help="write a corpus split as a library and measure search end to end"
    )
    ev.add_argument("--corpus", type=Path, required=True, help="corpus folder")
    ev.add_argument("--out", type=Path, help="folder for PDFs, audio and library (default: temp)")
    ev.add_argument("--split", default="test", help="corpus split, or 'all' (default: test)")
    ev.add_argument("--model", type=Path, help="weights file (default: shipped model)")
    ev.add_argument("--excerpts", type=int, default=3, help="excerpts per performance and length")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument(
        "--adapt", action="store_true", help="adapt the model to the library before querying"
    )
    ev.add_argument("--json", action="store_true", help="print JSON instead of text")
    ev.set_defaults(handler=eval_library_command)


# --- opening -------------------------------------------------------------------------------------


def open_library(args: argparse.Namespace) -> Any:
    from sheetaudio_gui.core.index import Library
    from sheetaudio_gui.core.models import load_model

    model = None
    if getattr(args, "model", None) is not None:
        model = load_model(args.model)
    return Library(args.library, model)


def _report_json(report: Any) -> dict[str, Any]:
    return {
        "added": [str(p) for p in report.added],
        "skipped": [str(p) for p in report.skipped],
        "removed": [str(p) for p in report.removed],
        "failed": [{"path": str(p), "error": e} for p, e in report.failed],
    }


def _print_report(report: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(_report_json(report), indent=2))
        return
    print(
        f"added {len(report.added)}, unchanged {len(report.skipped)}, "
        f"removed {len(report.removed)}, failed {len(report.failed)}"
    )
    for path, error in report.failed:
        print(f"  failed: {path}: {error}")


# --- library -------------------------------------------------------------------------------------


def library_add(args: argparse.Namespace) -> int:
    with open_library(args) as library:
        report = run_with_progress(lambda token: library.add(args.paths, token), label="indexing ")
        library.prepare_search()  # here rather than in the next query (kept for every reader)
        _print_report(report, args.json)
        if not args.json and library.adaptation_advised():
            print(f"hint: {ADAPT_ADVICE} (sheetaudio library adapt)")
    return 0 if not report.failed else 1


def library_adapt(args: argparse.Namespace) -> int:
    with open_library(args) as library:
        if args.undo:
            report = run_with_progress(lambda token: library.unadapt(token), label="re-embedding ")
        else:
            report = run_with_progress(lambda token: library.adapt(token), label="adapting ")
        library.prepare_search()
        info = library.model.info
        if args.json:
            print(json.dumps({**_report_json(report), "model": library.model.model_id, **info}))
        else:
            _print_report(report, False)
            what = "adapted" if "adapted_from" in info else "base"
            print(f"model {library.model.model_id} ({what})", end="")
            if "adapted_from" in info:
                print(
                    f", from {info['adapted_from']}: {info['score_windows']} score windows of "
                    f"{info['scores']} scores, {info['audio_snippets']} audio snippets of "
                    f"{info['recordings']} recordings",
                    end="",
                )
            print()
    return 0 if not report.failed else 1


def library_rescan(args: argparse.Namespace) -> int:
    with open_library(args) as library:
        report = run_with_progress(lambda token: library.rescan(token), label="rescanning ")
        library.prepare_search()
        _print_report(report, args.json)
    return 0 if not report.failed else 1


def library_list(args: argparse.Namespace) -> int:
    with open_library(args) as library:
        docs = library.documents()
    rows = [
        {
            "document": str(d.path),
            "kind": d.kind,
            "state": d.state,
            "error": d.error,
            "pages": d.pages,
            "systems": d.systems,
            "duration_s": d.duration_s,
        }
        for d in docs
    ]
    if args.json:
        print(json.dumps({"documents": rows}, indent=2))
    else:
        for r in rows:
            what = (
                f"{r['pages']} page(s), {r['systems']} system(s)"
                if r["kind"] == "score"
                else f"{r['duration_s'] or 0:.1f} s"
            )
            extra = f" ({r['error']})" if r["error"] else ""
            print(f"{r['state']:8} {r['kind']:5} {r['document']}: {what}{extra}")
    return 0


def library_remove(args: argparse.Namespace) -> int:
    with open_library(args) as library:
        removed = [str(p) for p in args.paths if library.remove(p)]
    missing = [str(p) for p in args.paths if str(p) not in removed]
    if args.json:
        print(json.dumps({"removed": removed, "not_in_library": missing}, indent=2))
    else:
        for p in removed:
            print(f"removed {p}")
        for p in missing:
            print(f"not in the library: {p}")
    return 0 if not missing else 1


def library_check(args: argparse.Namespace) -> int:
    from sheetaudio_gui.core.index import Library

    problems = Library.check_folder(args.library)
    if problems:
        folder = args.library or "the default library folder"
        problems.append(f"run `sheetaudio library repair --library {folder}` to rebuild it")
    if args.json:
        print(json.dumps({"problems": problems}, indent=2))
    else:
        print("library is consistent" if not problems else "\n".join(problems))
    return 0 if not problems else 1


def library_repair(args: argparse.Namespace) -> int:
    from sheetaudio_gui.core.index import Library
    from sheetaudio_gui.core.models import load_model

    model = load_model(args.model) if args.model is not None else None
    report = run_with_progress(
        lambda token: Library.repair(args.library, model, token), label="repairing "
    )
    if args.json:
        out = {
            "database_rebuilt": report.database_rebuilt,
            "moved_aside": [str(p) for p in report.moved_aside],
            "damaged": [str(p) for p in report.damaged],
            "indexing": _report_json(report.indexing),
            "problems_after": report.problems_after,
        }
        print(json.dumps(out, indent=2))
    else:
        if report.database_rebuilt:
            aside = ", ".join(str(p) for p in report.moved_aside) or "nothing to keep"
            print(f"the database was damaged and has been made anew (kept: {aside})")
        for path in report.damaged:
            print(f"damaged embeddings: {path}")
        if not report.database_rebuilt and not report.damaged:
            print("nothing damaged")
        _print_report(report.indexing, False)
        print("\n".join(report.problems_after) or "library is consistent")
    return 0 if not report.problems_after and not report.indexing.failed else 1


# --- query ---------------------------------------------------------------------------------------


def audio_query_json(
    library: Any, path: Path, start_s: float, end_s: float | None, top: int
) -> dict[str, Any]:
    """The JSON of `query --audio` (also what eval-library scores)."""
    from sheetaudio_gui.core.search import search_audio_file

    results = search_audio_file(library, path, start_s, end_s, top)
    return {
        "results": [
            {
                "document": str(hit.document),
                "kind": "score",
                "score": round(hit.score, 6),
                "regions": [
                    {"page": r.page, "box": [round(c, 2) for c in r.box]} for r in hit.regions
                ],
            }
            for hit in results.hits
        ]
    }


def score_query_json(
    library: Any,
    path: Path,
    page: int,
    system: int | None,
    box: tuple[float, float, float, float] | None,
    top: int,
) -> dict[str, Any]:
    """The JSON of `query --score` (also what eval-library scores)."""
    from sheetaudio_gui.core.search import search_score

    results = search_score(library, path, page, system, box, top)
    return {
        "results": [
            {
                "document": str(hit.document),
                "kind": "audio",
                "score": round(hit.score, 6),
                "spans": [
                    {"start_s": round(s.start_s, 3), "end_s": round(s.end_s, 3)} for s in hit.spans
                ],
            }
            for hit in results.hits
        ]
    }


def query_command(args: argparse.Namespace) -> int:
    from sheetaudio_gui.core.errors import SheetAudioError

    if (args.audio is None) == (args.score is None):
        raise SheetAudioError("give either --audio FILE or --score FILE --page N")
    with open_library(args) as library:
        if args.audio is not None:
            out = audio_query_json(library, args.audio, args.start, args.end, args.top)
        else:
            if args.page is None:
                raise SheetAudioError("--score needs --page N (0-based)")
            box = tuple(args.box) if args.box else None
            out = score_query_json(library, args.score, args.page, args.system, box, args.top)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for rank, hit in enumerate(out["results"], start=1):
            print(f"{rank:2}. {hit['score']:.3f} {hit['document']}")
            for r in hit.get("regions", []):
                print(f"      page {r['page']} box {r['box']}")
            for s in hit.get("spans", []):
                print(f"      {s['start_s']:.1f} s - {s['end_s']:.1f} s")
    return 0


# --- align ---------------------------------------------------------------------------------------


def align_json(library: Any, score: Path, audio: Path) -> dict[str, Any]:
    """Position <-> time map: one point per sheet window, in reading order."""
    from sheetaudio_gui.core.align import align
    from sheetaudio_gui.core.audio import file_spectrogram
    from sheetaudio_gui.core.encode import encode_audio, encode_page
    from sheetaudio_gui.core.errors import SheetAudioError
    from sheetaudio_gui.core.score import open_score

    try:
        systems = library.systems(score)
    except SheetAudioError:  # not indexed: encode it now
        with open_score(score) as doc:
            systems = [s for p in doc.pages() for s in encode_page(library.model, p)]
    try:
        encoding = library.audio(audio)
    except SheetAudioError:
        encoding = encode_audio(library.model, file_spectrogram(audio))
    if not systems:
        raise SheetAudioError(f"{score}: no staff systems found; nothing to align")
    result = align(systems, encoding)
    times = result._window_times()
    points = [
        {
            "page": int(result.window_page[i]),
            "system": int(result.window_system[i]),
            "x": round(float(result.window_x[i]), 2),
            "time_s": round(float(times[i]), 3),
        }
        for i in range(len(times))
    ]
    return {"score": str(score), "audio": str(audio), "points": points}


def align_command(args: argparse.Namespace) -> int:
    with open_library(args) as library:
        out = align_json(library, args.score, args.audio)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for p in out["points"]:
            print(
                f"page {p['page']} system {p['system']} x {p['x']:8.1f}  ->  {p['time_s']:7.2f} s"
            )
    return 0


# --- eval-library --------------------------------------------------------------------------------


def write_split_library(corpus: Path, out: Path, split: str) -> list[dict[str, Any]]:
    """One PDF per piece (page PNGs at 150 dpi) and one FLAC per performance, with the truth.

    The pieces are the split's distinct music (`corpus_format.split_pieces`); files that an
    earlier run left in `out/scores` and `out/audio` and that are not among them are deleted, so
    the folders hold the split and nothing else."""
    import pymupdf

    from sheetaudio_gui.training.corpus_format import split_pieces

    (out / "scores").mkdir(parents=True, exist_ok=True)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    to_pt = 72.0 / PDF_DPI
    pieces: list[dict[str, Any]] = []
    for piece in split_pieces(corpus, None if split == "all" else split):
        pdf_path = out / "scores" / f"{piece.directory.name}.pdf"
        if not pdf_path.exists():
            pdf = pymupdf.open()
            for page in piece.pages:
                sheet = pdf.new_page(width=page.width_px * to_pt, height=page.height_px * to_pt)
                sheet.insert_image(sheet.rect, filename=str(piece.page_path(page.index)))
            pdf.save(pdf_path)
            pdf.close()
        perfs = []
        for k, record in enumerate(piece.performances):
            audio_path = out / "audio" / f"{piece.directory.name}__{record.id}.flac"
            if not audio_path.exists():
                shutil.copyfile(piece.audio_path(k), audio_path)
            spans = [list(s[0]) if s else None for s in record.system_spans]
            perfs.append({"path": audio_path, "duration_s": record.duration_s, "spans": spans})
        pieces.append(
            {
                "id": piece.id,
                "pdf": pdf_path,
                "systems": [
                    {"page": s.page, "box": [c * to_pt for c in s.box]} for s in piece.systems
                ],
                "pages": len(piece.pages),
                "performances": perfs,
            }
        )
    written: set[Path] = set()
    for pc in pieces:
        written |= {pc["pdf"], *(p["path"] for p in pc["performances"])}
    for folder in ("scores", "audio"):
        for stale in sorted(set((out / folder).iterdir()) - written):
            if stale.is_file():
                stale.unlink()
    return pieces


def _overlaps(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def evaluate_library(
    library: Any, pieces: list[dict[str, Any]], excerpts: int, seed: int
) -> dict[str, Any]:
    """Query the written library through the CLI's functions; rates of the issue's bars."""
    rng = random.Random(seed)
    out: dict[str, Any] = {"pieces": len(pieces)}
    perf_to_piece = {str(p["path"]): i for i, pc in enumerate(pieces) for p in pc["performances"]}
    for length in EVAL_EXCERPTS_S:
        piece_ok = page_ok = n = 0
        for pc in pieces:
            for perf in pc["performances"]:
                for _ in range(excerpts):
                    start = rng.uniform(0.0, max(0.0, perf["duration_s"] - length))
                    end = min(start + length, perf["duration_s"])
                    mid = (start + end) / 2
                    true_page = _page_at(pc, perf, mid)
                    got = audio_query_json(library, perf["path"], start, end, 10)["results"]
                    n += 1
                    if got and got[0]["document"] == str(pc["pdf"]):
                        piece_ok += 1
                        if got[0]["regions"] and got[0]["regions"][0]["page"] == true_page:
                            page_ok += 1
        key = f"excerpt_{int(length)}s"
        out[key] = {
            "queries": n,
            "top1_piece": round(piece_ok / max(n, 1), EVAL_COUNTS),
            "top1_page": round(page_ok / max(n, 1), EVAL_COUNTS),
        }
    for unit in ("page", "system"):
        rec_ok = span_ok = n = 0
        for i, pc in enumerate(pieces):
            targets: list[tuple[int, tuple[float, float, float, float] | None, list[int]]] = []
            if unit == "page":
                for page in range(pc["pages"]):
                    members = [k for k, s in enumerate(pc["systems"]) if s["page"] == page]
                    if members:
                        targets.append((page, None, members))
            else:
                for k, s in enumerate(pc["systems"]):
                    targets.append((s["page"], tuple(s["box"]), [k]))
            for page, box, members in targets:
                try:
                    got = score_query_json(library, pc["pdf"], page, None, box, 10)["results"]
                except Exception as error:  # a page without detected systems counts as a miss
                    log.info("query failed: %s", error)
                    got = []
                n += 1
                if not got or perf_to_piece.get(got[0]["document"]) != i:
                    continue
                rec_ok += 1
                perf = next(p for p in pc["performances"] if str(p["path"]) == got[0]["document"])
                spans = [perf["spans"][k] for k in members if perf["spans"][k]]
                if spans and got[0]["spans"]:
                    truth = (min(s[0] for s in spans), max(s[1] for s in spans))
                    first = got[0]["spans"][0]
                    if _overlaps((first["start_s"], first["end_s"]), truth):
                        span_ok += 1
        out[unit] = {
            "queries": n,
            "top1_recording": round(rec_ok / max(n, 1), EVAL_COUNTS),
            "span_overlap": round(span_ok / max(n, 1), EVAL_COUNTS),
        }
    return out


def _page_at(piece: dict[str, Any], perf: dict[str, Any], time_s: float) -> int:
    """Page of the system that plays at `time_s` (nearest system start otherwise)."""
    best, best_d = 0, float("inf")
    for k, span in enumerate(perf["spans"]):
        if span is None:
            continue
        if span[0] <= time_s < span[1]:
            return int(piece["systems"][k]["page"])
        d = min(abs(span[0] - time_s), abs(span[1] - time_s))
        if d < best_d:
            best, best_d = int(piece["systems"][k]["page"]), d
    return best


def eval_library_command(args: argparse.Namespace) -> int:
    import tempfile

    from sheetaudio_gui.core.errors import SheetAudioError
    from sheetaudio_gui.core.index import Library
    from sheetaudio_gui.core.models import load_model

    out = args.out or Path(tempfile.mkdtemp(prefix="sheetaudio-eval-"))
    pieces = write_split_library(args.corpus, out, args.split)
    if not pieces:
        raise SheetAudioError(f"{args.corpus}: no pieces in split {args.split!r}")
    model = load_model(args.model) if args.model else None
    started = time.perf_counter()
    with Library(out / "library", model) as library:
        report = run_with_progress(
            lambda token: library.add([out / "scores", out / "audio"], token), label="indexing "
        )
        for document in library.documents():  # e.g. a piece an earlier run wrote, now left out
            if not document.path.is_file():
                library.remove(document.path)
        indexed_s = time.perf_counter() - started
        if args.adapt:
            run_with_progress(lambda token: library.adapt(token), label="adapting ")
        elif library.adapted_model_path.exists():
            run_with_progress(lambda token: library.unadapt(token), label="re-embedding ")
        metrics = evaluate_library(library, pieces, args.excerpts, args.seed)
    metrics.update(
        {
            "corpus": str(args.corpus),
            "split": args.split,
            "library": str(out / "library"),
            "model": library.base_model.model_id,
            "adapted": {"model": library.model.model_id, **library.model.info}
            if args.adapt
            else None,
            "index_seconds": round(indexed_s, 2),
            "failed_files": [str(p) for p, _ in report.failed],
            "chance_top1_piece": round(1 / len(pieces), EVAL_COUNTS),
        }
    )
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(f"{len(pieces)} pieces of {args.corpus} ({args.split}), library {out / 'library'}")
        for length in EVAL_EXCERPTS_S:
            m = metrics[f"excerpt_{int(length)}s"]
            print(
                f"  {int(length)} s excerpts ({m['queries']}): top-1 piece {m['top1_piece']:.1%},"
                f" top-1 page {m['top1_page']:.1%}   (bars at 10 s: 95 %, 90 %)"
            )
        for unit in ("page", "system"):
            m = metrics[unit]
            print(
                f"  {unit}s ({m['queries']}): top-1 recording {m['top1_recording']:.1%}, "
                f"span overlap {m['span_overlap']:.1%}   (bars for pages: 95 %, 80 %)"
            )
        print(f"  chance (top-1 piece): {metrics['chance_top1_piece']:.1%}")
    return 0
