"""Build the synthetic aligned corpus: engrave, align, perform, synthesise, split, manifest.

`build_corpus` is a job (a generator of Progress, see core.jobs): it hands pieces to W worker
processes, skips pieces already finished (a piece is written into a hidden temporary folder and
renamed into place when complete, so a crash or cancel never leaves half a piece), and writes
`manifest.json` at the end. Every random choice of a piece comes from a generator seeded by
(seed, piece id), so a piece is the same whichever worker builds it and whichever pieces came
before. The format is described in `corpus_format`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import multiprocessing
import os
import platform
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sheetaudio_gui import config
from sheetaudio_gui.core.errors import SheetAudioError
from sheetaudio_gui.core.jobs import CancelToken, Job, Progress
from sheetaudio_gui.training import corpus_format as fmt

log = logging.getLogger(__name__)

SETTINGS_FILE = "build_settings.json"  # seed + format of a corpus folder, written at the start
STAGES = ("source", "engrave", "align", "perform", "synth", "spectrogram", "write")


@dataclass(frozen=True)
class PieceSource:
    """A symbolic score to build (the fields of sources.SourcePiece that the corpus uses)."""

    piece_id: str
    group: str  # pieces of one group always land in the same split
    origin: str
    title: str
    composer: str
    data: str
    data_format: str  # musicxml | mei | humdrum
    license: str
    has_lyrics: bool

    @classmethod
    def of(cls, piece: Any) -> PieceSource:
        """Copy any SourcePiece-like object (plain fields travel to worker processes)."""
        return cls(
            piece_id=str(piece.piece_id),
            group=str(piece.group),
            origin=str(piece.origin),
            title=str(piece.title),
            composer=str(piece.composer),
            data=str(piece.data),
            data_format=str(piece.data_format),
            license=str(piece.license),
            has_lyrics=bool(piece.has_lyrics),
        )


@dataclass(frozen=True)
class PlannedSource:
    """A piece known only by its id: the worker process makes its score (music21 parsing and
    piano reduction are slow, so they must run in parallel, not in the planning process)."""

    piece_id: str


@dataclass
class PieceResult:
    """What a worker reports back about one piece."""

    piece_id: str
    dropped_reason: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # per stage


# --- deterministic choices -------------------------------------------------------------------


def _stable_int(*parts: object) -> int:
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little")


def piece_rng(seed: int, piece_id: str) -> np.random.Generator:
    """The one random generator of a piece: depends on (seed, piece id) only."""
    return np.random.default_rng([seed, _stable_int("piece", piece_id)])


def split_for_group(seed: int, group: str) -> str:
    """train / valid / test for a group, by a uniform hash of (seed, group) against the fractions.

    A group's split does not depend on which other groups are built, so corpora of different
    sizes built with one seed agree on every shared piece.
    """
    u = _stable_int("split", seed, group) / 2.0**64
    edge = 0.0
    for name, fraction in config.CORPUS_SPLIT_FRACTIONS:
        edge += fraction
        if u < edge:
            return name
    return config.CORPUS_SPLIT_FRACTIONS[-1][0]


def music_fonts_for(split: str) -> tuple[str, ...]:
    """Test pieces are engraved only with the held-out font; train/valid never with it."""
    if split == "test":
        return (config.CORPUS_MUSIC_FONT_TEST,)
    return config.CORPUS_MUSIC_FONTS_TRAIN


def soundfonts_for(split: str) -> tuple[str, ...]:
    """Test pieces are rendered only with the held-out soundfont; train/valid never with it."""
    if split == "test":
        return (config.CORPUS_SOUNDFONT_TEST,)
    return config.CORPUS_SOUNDFONTS_TRAIN


# --- one piece -----------------------------------------------------------------------------


def build_piece(source: PieceSource, pieces_dir: Path, seed: int) -> PieceResult:
    """Build one piece into `pieces_dir/<piece>` (via a temporary folder); never raises for a
    piece that cannot be built: the result then carries the reason."""
    from sheetaudio_gui.training import engrave as eng

    result = PieceResult(source.piece_id)
    final = pieces_dir / fmt.piece_dirname(source.piece_id)
    tmp = pieces_dir / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        piece = _make_piece(source, seed, tmp, result.seconds)
    except (eng.EngravingFailed, _Dropped) as reason:
        result.dropped_reason = str(reason)
        shutil.rmtree(tmp, ignore_errors=True)
        return result
    except Exception as error:  # a bug or a library failure on one piece must not stop the build
        log.exception("piece %s failed", source.piece_id)
        result.dropped_reason = f"unexpected {type(error).__name__}: {error}"
        shutil.rmtree(tmp, ignore_errors=True)
        return result
    started = time.perf_counter()
    (tmp / fmt.PIECE_FILE).write_text(
        json.dumps(piece.to_json(), separators=(",", ":")), encoding="utf-8"
    )
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    result.seconds["write"] = result.seconds.get("write", 0.0) + time.perf_counter() - started
    return result


class _Dropped(Exception):
    """The piece is left out of the corpus; the message says why."""


def _make_piece(
    source: PieceSource, seed: int, out: Path, seconds: dict[str, float]
) -> fmt.CorpusPiece:
    from sheetaudio_gui.training import engrave as eng
    from sheetaudio_gui.training import perform as perf

    def lap(stage: str, since: float) -> float:
        now = time.perf_counter()
        seconds[stage] = seconds.get(stage, 0.0) + now - since
        return now

    t = time.perf_counter()
    rng = piece_rng(seed, source.piece_id)
    split = split_for_group(seed, source.group)
    layout = eng.choose_layout(rng, music_fonts_for(split), eng.has_encoded_breaks(source.data))
    engraving = eng.engrave(source.data, layout)
    t = lap("engrave", t)

    struck = eng.merge_ties(engraving.notes, engraving.tie_continuations)
    drawn = [n.note_id for p in engraving.pages for n in p.noteheads]
    reason = eng.check_alignment(drawn, struck, engraving.tie_continuations)
    if reason is not None:
        raise _Dropped(f"noteheads and played notes do not match: {reason}")
    systems: list[fmt.SystemRef] = []
    system_of: dict[str, int] = {}
    for page in engraving.pages:
        first = len(systems)
        systems.extend(fmt.SystemRef(page.index, i, s.box) for i, s in enumerate(page.systems))
        for n in page.noteheads:
            system_of[n.note_id] = first + n.system
    tied = sorted(set(drawn) & engraving.tie_continuations - {n.note_id for n in struck})
    t = lap("align", t)

    out.mkdir(parents=True)
    pages = []
    for page in engraving.pages:
        name = f"page{page.index:03d}.png"
        (out / name).write_bytes(page.png)
        pages.append(
            fmt.Page(
                index=page.index,
                png=name,
                width_px=page.width_px,
                height_px=page.height_px,
                systems=tuple(
                    fmt.PageSystem(
                        s.box, tuple(fmt.Staff(st.lines_y, st.x0, st.x1) for st in s.staves)
                    )
                    for s in page.systems
                ),
                noteheads=tuple(fmt.Notehead(n.note_id, n.box, n.system) for n in page.noteheads),
            )
        )
    t = lap("write", t)

    soundfonts = list(soundfonts_for(split))
    rng.shuffle(soundfonts)
    count = int(
        rng.integers(
            min(config.CORPUS_PERFORMANCES_PER_PIECE),
            max(config.CORPUS_PERFORMANCES_PER_PIECE),
            endpoint=True,
        )
    )
    performances = []
    for k in range(count):
        soundfont = soundfonts[k % len(soundfonts)]
        program = int(
            rng.choice(config.CORPUS_PIANO_PROGRAMS, p=config.CORPUS_PIANO_PROGRAM_WEIGHTS)
        )
        style = perf.choose_style(rng)
        performance = perf.perform(
            struck, engraving.measure_onsets_s, engraving.fermata_ids, style, rng
        )
        if performance.end_s > config.CORPUS_MAX_AUDIO_S:
            raise _Dropped(f"performance of {performance.end_s:.0f} s is too long")
        record_times = _alignment_times(struck, performance, system_of, len(systems))
        peak = float(rng.uniform(*config.CORPUS_PEAK_RANGE))
        t = lap("perform", t)
        performances.append(
            _render_performance(
                k, soundfont, program, style, performance, record_times, peak, out, seconds, t
            )
        )
        t = time.perf_counter()

    return fmt.CorpusPiece(
        id=source.piece_id,
        group=source.group,
        origin=source.origin,
        title=source.title,
        composer=source.composer,
        split=split,
        music_font=layout.music_font,
        license=source.license,
        has_lyrics=source.has_lyrics,
        layout={k: v for k, v in layout.__dict__.items() if k != "id_seed"},
        pages=tuple(pages),
        systems=tuple(systems),
        performances=tuple(performances),
        tied_noteheads=tuple(tied),
        score_notes=tuple(
            fmt.ScoreNoteRecord(n.note_id, int(n.pitch), float(n.onset_s), float(n.offset_s))
            for n in struck
        ),
    )


def _render_performance(
    index: int,
    soundfont: str,
    program: int,
    style: Any,
    performance: Any,
    times: tuple[dict[str, tuple[float, ...]], tuple[tuple[fmt.Span, ...], ...]],
    peak: float,
    out: Path,
    seconds: dict[str, float],
    t: float,
) -> fmt.PerformanceRecord:
    import soundfile

    from sheetaudio_gui.training import synth

    samples = synth.render(performance, synth.find_soundfont(soundfont), program) * peak
    now = time.perf_counter()
    seconds["synth"] = seconds.get("synth", 0.0) + now - t
    t = now
    spectrogram_name = f"perf{index}.npy"
    from sheetaudio_gui.core.audio import log_spectrogram

    spec = log_spectrogram(samples).astype(np.float16)
    now = time.perf_counter()
    seconds["spectrogram"] = seconds.get("spectrogram", 0.0) + now - t
    t = now
    audio_name = f"perf{index}.flac"
    soundfile.write(out / audio_name, samples, config.SAMPLE_RATE_HZ, format="FLAC")
    np.save(out / spectrogram_name, spec)
    seconds["write"] = seconds.get("write", 0.0) + time.perf_counter() - t
    onsets, spans = times
    return fmt.PerformanceRecord(
        id=f"perf{index}",
        soundfont=soundfont,
        program=program,
        tempo_scale=style.tempo_scale,
        audio=audio_name,
        spectrogram=spectrogram_name,
        duration_s=round(len(samples) / config.SAMPLE_RATE_HZ, config.CORPUS_TIME_DECIMALS),
        notehead_onsets=onsets,
        system_spans=spans,
        style={k: v for k, v in style.__dict__.items() if k != "tempo_scale"},
    )


def _alignment_times(
    struck: Sequence[Any], performance: Any, system_of: dict[str, int], n_systems: int
) -> tuple[dict[str, tuple[float, ...]], tuple[tuple[fmt.Span, ...], ...]]:
    """Notehead onsets and system spans in audio seconds, from the performance's tempo map.

    The struck notes in time order fall into runs of one system; a run ends where the next
    system starts or where the score jumps back (a repeat), and the last run ends with its last
    written note. Each run is one play of its system: (first onset, next run's first onset).
    """
    decimals = config.CORPUS_TIME_DECIMALS
    onset = performance.onset_s  # parallel to struck
    onsets: dict[str, list[float]] = {}
    for note, t in zip(struck, onset.tolist(), strict=True):
        onsets.setdefault(note.note_id, []).append(round(t, decimals))
    order = np.argsort(onset, kind="stable")
    runs: list[tuple[int, float]] = []  # (system, start)
    previous: tuple[int, int] | None = None
    for i in order.tolist():
        note = struck[i]
        system = system_of[note.note_id]
        if previous is None or system != previous[0] or note.measure_order < previous[1]:
            runs.append((system, float(onset[i])))
        previous = (system, note.measure_order)
    spans: list[list[fmt.Span]] = [[] for _ in range(n_systems)]
    for k, (system, start) in enumerate(runs):
        end = runs[k + 1][1] if k + 1 < len(runs) else performance.end_s
        spans[system].append((round(start, decimals), round(end, decimals)))
    return (
        {k: tuple(sorted(v)) for k, v in onsets.items()},
        tuple(tuple(s) for s in spans),
    )


# --- the build job -------------------------------------------------------------------------


def _worker_init() -> None:
    """Workers leave Ctrl-C to the parent (which cancels cleanly) and use one thread each."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def _worker(job: tuple[PieceSource | PlannedSource, str, int]) -> PieceResult:
    source, pieces_dir, seed = job
    if isinstance(source, PlannedSource):
        from sheetaudio_gui.training import sources

        started = time.perf_counter()
        try:
            source = PieceSource.of(sources.load_source(source.piece_id, seed))
        except sources.SourceError as error:
            return PieceResult(source.piece_id, dropped_reason=f"source: {error}")
        except Exception as error:  # one unreadable source must not stop the build
            log.exception("source %s failed", source.piece_id)
            reason = f"source: unexpected {type(error).__name__}: {error}"
            return PieceResult(source.piece_id, dropped_reason=reason)
        seconds = time.perf_counter() - started
        result = build_piece(source, Path(pieces_dir), seed)
        result.seconds["source"] = result.seconds.get("source", 0.0) + seconds
        return result
    return build_piece(source, Path(pieces_dir), seed)


def _default_sources(seed: int, limit: int) -> Iterable[Any]:
    """The planned pieces of training.sources, by id; each worker makes its own scores."""
    from sheetaudio_gui.training import sources

    return [PlannedSource(piece_id) for piece_id, _ in sources.source_ids(seed, limit)]


def build_corpus(
    out_dir: str | Path,
    pieces: int,
    seed: int,
    workers: int = config.CORPUS_DEFAULT_WORKERS,
    token: CancelToken | None = None,
    command: str = "",
    sources: Callable[[int, int], Iterable[Any]] | None = None,
) -> Job[dict[str, Any]]:
    """Build (or finish) a corpus of `pieces` pieces in `out_dir`; returns the manifest.

    `sources(seed, limit)` yields SourcePiece-like objects (default: training.sources). Raises
    SheetAudioError if `out_dir` holds a corpus made with another seed, Cancelled on cancel.
    """
    started = time.time()
    out = Path(out_dir)
    pieces_dir = out / fmt.PIECES_DIR
    dropped_dir = out / fmt.DROPPED_DIR
    pieces_dir.mkdir(parents=True, exist_ok=True)
    dropped_dir.mkdir(exist_ok=True)
    _check_settings(out, seed)
    for stale in pieces_dir.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)

    todo: list[PieceSource | PlannedSource] = []
    done = 0
    used: list[str] = []
    for piece in (sources or _default_sources)(seed, pieces):
        source = piece if isinstance(piece, PlannedSource) else PieceSource.of(piece)
        used.append(source.piece_id)
        name = fmt.piece_dirname(source.piece_id)
        if (pieces_dir / name / fmt.PIECE_FILE).is_file() or (
            dropped_dir / f"{name}.json"
        ).is_file():
            done += 1
        else:
            todo.append(source)
    total = len(used)
    yield Progress(done, total, f"{done} already built, {len(todo)} to build")

    stage_seconds = dict.fromkeys(STAGES, 0.0)
    built = 0
    for result in _run(todo, pieces_dir, seed, workers, token):
        done += 1
        if result.dropped_reason is not None:
            _write_json(
                dropped_dir / f"{fmt.piece_dirname(result.piece_id)}.json",
                {"id": result.piece_id, "reason": result.dropped_reason},
            )
            log.info("dropped %s: %s", result.piece_id, result.dropped_reason)
        else:
            built += 1
        for stage, s in result.seconds.items():
            stage_seconds[stage] = stage_seconds.get(stage, 0.0) + s
        yield Progress(done, total, result.piece_id)

    manifest = make_manifest(
        out,
        seed=seed,
        command=command,
        sources_used=used,
        workers=workers,
        built_now=built,
        stage_seconds=stage_seconds,
        wall_s=time.time() - started,
    )
    _write_json(out / fmt.MANIFEST_FILE, manifest)
    return manifest


def _run(
    todo: Sequence[PieceSource | PlannedSource],
    pieces_dir: Path,
    seed: int,
    workers: int,
    token: CancelToken | None,
) -> Iterator[PieceResult]:
    """Build pieces in `workers` processes (in this process if 1), checking the token after each."""
    jobs = [(s, str(pieces_dir), seed) for s in todo]
    if not jobs:
        return
    if workers <= 1:
        for job in jobs:
            if token is not None:
                token.raise_if_cancelled()
            yield _worker(job)
        return
    context = multiprocessing.get_context("spawn")
    pool = context.Pool(min(workers, len(jobs)), initializer=_worker_init)
    try:
        for result in pool.imap_unordered(_worker, jobs, chunksize=1):
            yield result
            if token is not None and token.cancelled:
                break
    finally:
        pool.terminate()
        pool.join()
        for stale in pieces_dir.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
    if token is not None:
        token.raise_if_cancelled()


def _check_settings(out: Path, seed: int) -> None:
    path = out / SETTINGS_FILE
    settings = {"seed": seed, "format_version": fmt.FORMAT_VERSION}
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old != settings:
            raise SheetAudioError(
                f"{out}: holds a corpus built with {old}, not {settings}; "
                "build into another folder or delete this one"
            )
    else:
        _write_json(path, settings)


def _write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (a crash leaves the old file or the new one, never half)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


# --- manifest ------------------------------------------------------------------------------


def versions() -> dict[str, Any]:
    """Versions of everything that shapes the corpus, soundfonts with their sha256."""
    import music21
    import pymupdf
    import verovio

    from sheetaudio_gui import __version__
    from sheetaudio_gui.training import synth

    soundfonts = {}
    for name in (*config.CORPUS_SOUNDFONTS_TRAIN, config.CORPUS_SOUNDFONT_TEST):
        path = synth.find_soundfont(name)
        soundfonts[name] = {"path": str(path.resolve()), "sha256": synth.sha256_of(path.resolve())}
    return {
        "sheetaudio": __version__,
        "python": platform.python_version(),
        "verovio": verovio.toolkit().getVersion(),
        "music21": music21.__version__,
        "fluidsynth": _fluidsynth_version(),
        "pyfluidsynth": importlib.metadata.version("pyfluidsynth"),
        "numpy": np.__version__,
        "pymupdf": pymupdf.VersionBind,
        "soundfonts": soundfonts,
    }


def _fluidsynth_version() -> str:
    import ctypes

    import fluidsynth

    parts = [ctypes.c_int(), ctypes.c_int(), ctypes.c_int()]
    fluidsynth.fluid_version(*parts)
    return ".".join(str(p.value) for p in parts)


def _collection(origin: str) -> str:
    """'music21:bach/bwv370.mxl' -> 'music21:bach'; 'procedural:v1:0:365' -> 'procedural:v1'."""
    scheme, _, rest = origin.partition(":")
    head = rest.split("/", 1)[0] if "/" in rest else rest.split(":", 1)[0]
    return f"{scheme}:{head}" if head else scheme


def make_manifest(
    out: Path,
    *,
    seed: int,
    command: str,
    sources_used: Sequence[str],
    workers: int,
    built_now: int,
    stage_seconds: dict[str, float],
    wall_s: float,
) -> dict[str, Any]:
    """Counts per split recounted from the files on disk, plus how the corpus was made."""
    splits = {
        name: {
            "pieces": 0,
            "pages": 0,
            "systems": 0,
            "noteheads": 0,
            "performances": 0,
            "audio_seconds": 0.0,
        }
        for name, _ in config.CORPUS_SPLIT_FRACTIONS
    }
    fonts: dict[str, dict[str, int]] = {name: {} for name in splits}
    soundfonts: dict[str, dict[str, int]] = {name: {} for name in splits}
    origins: dict[str, int] = {}
    licenses: dict[str, int] = {}
    for piece in fmt.iter_pieces(out):
        collection = _collection(piece.origin)
        origins[collection] = origins.get(collection, 0) + 1
        licenses[piece.license] = licenses.get(piece.license, 0) + 1
        c = splits[piece.split]
        c["pieces"] += 1
        c["pages"] += len(piece.pages)
        c["systems"] += len(piece.systems)
        c["noteheads"] += sum(len(p.noteheads) for p in piece.pages)
        c["performances"] += len(piece.performances)
        c["audio_seconds"] += sum(r.duration_s for r in piece.performances)
        fonts[piece.split][piece.music_font] = fonts[piece.split].get(piece.music_font, 0) + 1
        for r in piece.performances:
            soundfonts[piece.split][r.soundfont] = soundfonts[piece.split].get(r.soundfont, 0) + 1
    for c in splits.values():
        c["audio_seconds"] = round(float(c["audio_seconds"]), 2)
    dropped = [
        json.loads(p.read_text(encoding="utf-8"))
        for p in sorted((out / fmt.DROPPED_DIR).glob("*.json"))
    ]
    total_pieces = sum(c["pieces"] for c in splits.values())
    return {
        "format_version": fmt.FORMAT_VERSION,
        "command": command or " ".join(sys.argv),
        "seed": seed,
        "versions": versions(),
        "held_out": {
            "music_font": config.CORPUS_MUSIC_FONT_TEST,
            "soundfont": config.CORPUS_SOUNDFONT_TEST,
        },
        "sources": {
            "planned": len(sources_used),
            "built_by_collection": origins,
            "licenses": licenses,
        },
        "splits": splits,
        "music_fonts": fonts,
        "soundfonts_used": soundfonts,
        "dropped": dropped,
        "build": {
            "wall_seconds": round(wall_s, 2),
            "workers": workers,
            "pieces_built_this_run": built_now,
            "pieces_total": total_pieces,
            "stage_seconds": {k: round(v, 2) for k, v in stage_seconds.items()},
            "stage_seconds_per_piece": {
                k: round(v / max(built_now, 1), 3) for k, v in stage_seconds.items()
            },
            "cpu_count": os.cpu_count(),
        },
    }
