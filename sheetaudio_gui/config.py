"""Every constant of the method, with its unit, in one place.

Numbers follow Dorfer et al. (TISMIR 2018) and Carvalho & Widmer (ISMIR 2023) unless a comment
argues otherwise. Code elsewhere imports these names; it never repeats the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- audio -------------------------------------------------------------------------------------
SAMPLE_RATE_HZ = 22050  # every signal is resampled to this, mono
STFT_FRAME_SAMPLES = 2048  # window length of the short-time Fourier transform
FRAMES_PER_SECOND = 20  # spectrogram frame rate; frame i is centred at i / 20 s
HOP_SAMPLES = SAMPLE_RATE_HZ / FRAMES_PER_SECOND  # 1102.5 samples: fractional, frames are rounded
BANDS_PER_OCTAVE = 16  # log-frequency filterbank resolution
FMIN_HZ = 30.0  # lowest filterbank centre frequency
FMAX_HZ = 6000.0  # highest filterbank centre frequency
SPEC_BINS = 92  # filterbank bins left after merging duplicates at 2048-point FFT resolution
AUDIO_BLOCK_SECONDS = 60.0  # streaming block length: bounds memory for long recordings

# --- audio snippets and passages ----------------------------------------------------------------
AUDIO_SNIPPET_FRAMES = 20  # 1 s snippet: 92 bins x 20 frames
AUDIO_SNIPPET_HOP_FRAMES = 18  # hop between the snippets of one passage (0.9 s)

# --- score pages ------------------------------------------------------------------------------
PAGE_RENDER_DPI = 150.0  # PDF pages are rasterised at this resolution for detection
PDF_POINTS_PER_INCH = 72.0  # PDF user-space unit
STAFF_LINES = 5  # lines per staff in common Western notation

# --- sheet snippets ---------------------------------------------------------------------------
STAFF_SPACE_PX = 8.0  # distance between staff lines after strip normalisation (before halving)
STRIP_HEIGHT_PX = 160  # system strip height before halving, centred on the system
STRIP_DOWNSCALE = 2  # the strip is halved: 160 -> 80 px
SHEET_SNIPPET_HEIGHT_PX = STRIP_HEIGHT_PX // STRIP_DOWNSCALE  # 80 px
SHEET_SNIPPET_WIDTH_PX = 90  # window width on the halved strip
SHEET_SNIPPET_HOP_PX = 81  # hop between windows on the halved strip


# --- models -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelDims:
    """Network sizes; stored inside every checkpoint so a file says how to rebuild itself."""

    cnn_channels: tuple[int, ...] = (24, 48, 96, 96)  # per conv block
    snippet_dim: int = 32  # snippet embedding size
    gru_hidden: int = 128  # passage GRU state size
    passage_dim: int = 64  # passage embedding size (L2-normalised)
    spec_bins: int = SPEC_BINS
    audio_snippet_frames: int = AUDIO_SNIPPET_FRAMES
    sheet_snippet_height: int = SHEET_SNIPPET_HEIGHT_PX
    sheet_snippet_width: int = SHEET_SNIPPET_WIDTH_PX


# --- training ---------------------------------------------------------------------------------
PASSAGE_MARGIN = 0.3  # hinge-loss margin on cosine similarity, passage models
SNIPPET_MARGIN = 0.7  # hinge-loss margin, snippet baseline
LEARNING_RATE = 3e-3  # AdamW
BATCH_SIZE = 64  # passage pairs per step; the other pairs of the batch are the negatives
