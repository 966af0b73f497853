"""How fast the library indexes audio (x real time) and scores (pages/s), stage by stage.

    python benchmarks/bench_index.py [--minutes 10] [--corpus /tmp/c4] [--pages 20] [--model M]

Audio: a synthetic piano-like melody (random decaying harmonic notes, 22.05 kHz FLAC) of
`--minutes`, indexed through `Library.add` (decode + spectrogram in the helper thread, CNN and
GRU passages in the caller); then each stage alone. Scores: a PDF made of the corpus's page
PNGs (150 dpi), indexed the same way (the helper renders and detects page k + 1 while the caller
embeds page k); then render + detect, windows, CNN alone. Without `--model`
a randomly initialised model is used (speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from sheetaudio_gui.core.audio import file_spectrogram
from sheetaudio_gui.core.encode import audio_passages, audio_snippets, cut_systems, embed_cuts
from sheetaudio_gui.core.index import Library
from sheetaudio_gui.core.jobs import run_to_end
from sheetaudio_gui.core.models import PassageModel, load_model, save_model
from sheetaudio_gui.core.score import detect_systems, open_score

SR = 22050


def melody(path: Path, seconds: float, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with sf.SoundFile(path, "w", SR, 1) as out:
        written = 0
        while written < seconds * SR:
            n = int(rng.uniform(0.2, 0.7) * SR)
            t = np.arange(n) / SR
            f = 110.0 * 2 ** (rng.integers(0, 36) / 12)
            note = sum(np.sin(2 * np.pi * f * h * t) / h for h in (1, 2, 3))
            out.write((0.2 * note * np.exp(-2.5 * t)).astype(np.float32))
            written += n


def timed(label: str, fn, unit: float, what: str) -> object:
    start = time.perf_counter()
    result = fn()
    dt = time.perf_counter() - start
    print(f"  {label:38s} {dt:7.2f} s   {unit / dt:8.1f} {what}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--corpus", type=Path, default=Path("/tmp/c4"))
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--model", type=Path)
    args = parser.parse_args()
    print("command:", shlex.join([sys.executable, *sys.argv]))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    work = Path(tempfile.mkdtemp(prefix="bench-index-"))
    if args.model:
        model = load_model(args.model)
    else:
        torch.manual_seed(0)
        save_model(PassageModel(), work / "m.pt")
        model = load_model(work / "m.pt")

    seconds = args.minutes * 60
    audio = work / "melody.flac"
    melody(audio, seconds)
    print(f"audio: {args.minutes:.0f} min synthetic melody")
    with Library(work / "lib", model) as lib:
        timed("index (Library.add)", lambda: run_to_end(lib.add([audio])), seconds, "x real time")
    spec = timed(
        "  spectrogram (decode+resample+STFT)",
        lambda: file_spectrogram(audio),
        seconds,
        "x real time",
    )
    snips = timed("  snippet CNN", lambda: audio_snippets(model, spec), seconds, "x real time")
    print(f"    ({len(snips)} snippets)")  # type: ignore[arg-type]
    timed(
        "  passage GRU (all lengths)",
        lambda: audio_passages(model, snips, seconds),
        seconds,
        "x real time",
    )

    pdf = score_pdf(args.corpus, args.pages, work / "score.pdf")
    if pdf is None:
        print(f"scores: no page PNGs under {args.corpus}; skipped")
        return
    print(f"scores: {args.pages} corpus pages as one PDF")
    with Library(work / "lib2", model) as lib:
        timed("index (Library.add)", lambda: run_to_end(lib.add([pdf])), args.pages, "pages/s")
    with open_score(pdf) as doc:
        pages = timed("  render", lambda: list(doc.pages()), args.pages, "pages/s")
    systems = timed(
        "  detect systems", lambda: [detect_systems(p.image) for p in pages], args.pages, "pages/s"
    )
    cuts = timed(
        "  strips + windows",
        lambda: [c for p, s in zip(pages, systems, strict=True) for c in cut_systems(p, s)],
        args.pages,
        "pages/s",
    )
    n = sum(len(c.windows) for c in cuts)  # type: ignore[union-attr]
    print(f"    ({n} sheet windows, {n / args.pages:.0f} per page)")
    timed("  sheet CNN + GRU", lambda: embed_cuts(model, cuts), args.pages, "pages/s")


def score_pdf(corpus: Path, pages: int, out: Path) -> Path | None:
    import pymupdf

    pngs = sorted(corpus.glob("pieces/*/page*.png"))[:pages]
    if not pngs:
        return None
    pdf = pymupdf.open()
    while pdf.page_count < pages:
        for png in pngs[: pages - pdf.page_count]:
            with pymupdf.open(png) as img:
                w, h = img[0].rect.width, img[0].rect.height
            page = pdf.new_page(width=w * 72 / 150, height=h * 72 / 150)
            page.insert_image(page.rect, filename=str(png))
    pdf.save(out)
    return out


if __name__ == "__main__":
    main()
