"""How fast the audio front end is, and how little memory it needs for long recordings.

    python benchmarks/bench_audio_frontend.py [--minutes 10] [--long-minutes 60] [--skip-long]

Synthesises (in a temporary folder, block by block) a 10-minute 44.1 kHz stereo piano-like
recording as WAV and FLAC and times decode -> resample -> spectrogram; times the batched
spectrogram alone; and streams a long file in a fresh process to measure its peak resident memory.
Prints the command, the versions and the results (speeds as seconds of audio per second of wall
time, "x real time").
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sheetaudio_gui.config import AUDIO_BLOCK_SECONDS, SAMPLE_RATE_HZ
from sheetaudio_gui.core.audio import (
    file_spectrogram,
    log_spectrogram_batch,
    stream_audio,
)

FILE_RATE_HZ = 44100  # the synthesised recordings: CD rate, stereo
FILE_CHANNELS = 2
BLOCK_S = 60  # the generator writes this much at a time, so it never holds a whole file
SEED = 0


def music_block(rng: np.random.Generator, seconds: int, rate: int) -> npt.NDArray[np.float32]:
    """`seconds` of piano-like notes (decaying harmonics) plus a little noise: (n, 2)."""
    n = seconds * rate
    out = np.zeros(n, np.float64)
    onsets = np.sort(rng.uniform(0, seconds - 0.5, size=3 * seconds))
    for onset in onsets:
        f0 = 440.0 * 2 ** ((rng.integers(21, 97) - 69) / 12)
        start = int(onset * rate)
        length = min(n - start, int(1.5 * rate))
        t = np.arange(length) / rate
        note = sum(
            np.sin(2 * np.pi * f0 * h * t) / h**1.5 for h in range(1, 6) if f0 * h < rate / 2
        )
        out[start : start + length] += 0.08 * note * np.exp(-3.0 * t)
    out += 0.003 * rng.standard_normal(n)
    stereo = np.stack([out, 0.9 * out], axis=1)
    return np.clip(stereo, -1.0, 1.0).astype(np.float32)


def write_recording(path: Path, minutes: float, fmt: str) -> float:
    """Write a `minutes`-long recording block by block; returns the seconds it took."""
    rng = np.random.default_rng(SEED)
    start = time.perf_counter()
    blocks = [music_block(rng, BLOCK_S, FILE_RATE_HZ) for _ in range(3)]  # reused, rescaled
    total_blocks = int(np.ceil(minutes * 60 / BLOCK_S))
    with sf.SoundFile(path, "w", FILE_RATE_HZ, FILE_CHANNELS, subtype="PCM_16", format=fmt) as f:
        for k in range(total_blocks):
            seconds = min(BLOCK_S, minutes * 60 - k * BLOCK_S)
            block = blocks[k % len(blocks)][: int(seconds * FILE_RATE_HZ)]
            f.write(block * (0.6 + 0.4 * ((k * 7) % 5) / 4))
    return time.perf_counter() - start


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def decode_only(path: Path) -> None:
    with sf.SoundFile(path) as f:
        for _ in f.blocks(blocksize=int(AUDIO_BLOCK_SECONDS * f.samplerate), dtype="float32"):
            pass


def decode_and_resample(path: Path) -> None:
    for _ in stream_audio(path):
        pass


def bench_file(path: Path, seconds: float) -> None:
    mb = path.stat().st_size / 1e6
    decode_only(path)  # warm the page cache: we time decoding, not the disk
    results = [
        ("decode", timed(lambda: decode_only(path))),
        ("decode+resample", timed(lambda: decode_and_resample(path))),
        ("decode+resample+spectrogram", timed(lambda: file_spectrogram(path))),
    ]
    print(f"  {path.suffix[1:].upper()} ({mb:.0f} MB):")
    for name, wall in results:
        print(f"    {name:<28} {wall:6.2f} s  = {seconds / wall:7.0f} x real time")


def bench_batch(batch: int, seconds: float, repeats: int = 3) -> None:
    x = torch.from_numpy(
        np.random.default_rng(SEED).uniform(-0.5, 0.5, (batch, int(seconds * SAMPLE_RATE_HZ)))
    ).float()
    log_spectrogram_batch(x[:, :SAMPLE_RATE_HZ])  # first call builds the filterbank
    wall = min(timed(lambda: log_spectrogram_batch(x)) for _ in range(repeats))
    shape = tuple(log_spectrogram_batch(x[:1]).shape[1:])
    print(
        f"  batch {batch} x {seconds:g} s -> (batch, {shape[0]}, {shape[1]}): {wall * 1000:7.1f} ms"
        f"  = {batch * seconds / wall:7.0f} x real time"
    )


_RSS_PROBE = """
import sys, time
from pathlib import Path
from sheetaudio_gui.core.audio import file_spectrogram
def peak_mb():  # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
file_spectrogram(sys.argv[1])  # warm-up on a short file: imports, filterbank, allocator
before = peak_mb()
start = time.perf_counter()
spec = file_spectrogram(sys.argv[2])
print(before, peak_mb(), time.perf_counter() - start, spec.shape[1])
"""


def bench_long(folder: Path, minutes: float, fmt: str) -> None:
    short, long = folder / f"short.{fmt.lower()}", folder / f"long.{fmt.lower()}"
    write_recording(short, 1.0, fmt)
    wrote = write_recording(long, minutes, fmt)
    seconds = minutes * 60
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE, str(short), str(long)],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    ).stdout.split()
    before, after, wall, frames = float(out[0]), float(out[1]), float(out[2]), int(out[3])
    whole_in = seconds * FILE_RATE_HZ * FILE_CHANNELS * 4 / 1e6
    whole_out = seconds * SAMPLE_RATE_HZ * 4 / 1e6
    result = frames * 92 * 4 / 1e6
    print(
        f"  {minutes:g} min {FILE_RATE_HZ} Hz stereo {fmt} ({long.stat().st_size / 1e6:.0f} MB,"
        f" written in {wrote:.0f} s): file_spectrogram {wall:.1f} s = {seconds / wall:.0f} x real"
        f" time, {frames} frames"
    )
    print(
        f"    peak RSS {after:.0f} MiB (after warm-up on a 1-min file: {before:.0f} MiB;"
        f" growth {after - before:.0f} MiB)"
    )
    print(
        f"    for scale: whole file decoded as float32 {whole_in:.0f} MB, resampled mono"
        f" {whole_out:.0f} MB, the spectrogram itself {result:.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the WAV/FLAC test")
    parser.add_argument("--long-minutes", type=float, default=60.0, help="streamed file length")
    parser.add_argument("--long-format", default="FLAC", choices=["FLAC", "WAV"])
    parser.add_argument("--skip-long", action="store_true", help="skip the memory measurement")
    args = parser.parse_args()

    print("command:", shlex.join([Path(sys.executable).name, *sys.argv]))
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}"
        f" ({torch.get_num_threads()} threads), soundfile {sf.__version__}"
        f" (libsndfile {sf.__libsndfile_version__}), soxr {soxr.__version__}"
    )
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU(s) visible, {platform.platform()}")

    with tempfile.TemporaryDirectory(prefix="sheetaudio-bench-") as tmp:
        folder = Path(tmp)
        seconds = args.minutes * 60
        print(f"\n{args.minutes:g}-minute {FILE_RATE_HZ} Hz stereo PCM_16 recording:")
        for fmt in ("WAV", "FLAC"):
            path = folder / f"music.{fmt.lower()}"
            write_recording(path, args.minutes, fmt)
            bench_file(path, seconds)
            path.unlink()

        print("\nbatched log_spectrogram_batch (22.05 kHz in, torch CPU, no autograd):")
        bench_batch(64, 10.0)
        bench_batch(256, 1.0)
        bench_batch(1, 600.0, repeats=1)

        if not args.skip_long:
            print("\nstreaming a long file (fresh process, VmHWM):")
            bench_long(folder, args.long_minutes, args.long_format)

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nthis process's peak RSS: {peak:.0f} MiB (includes the batched inputs above)")


if __name__ == "__main__":
    main()
