"""Every constant of the method, with its unit, in one place.

Numbers follow Dorfer et al. (TISMIR 2018) and Carvalho & Widmer (ISMIR 2023) unless a comment
argues otherwise. Code elsewhere imports these names; it never repeats the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
PAGE_MAX_PIXELS = 36_000_000  # pages are rendered at most this large (px), e.g. 6000 x 6000
# MuPDF decodes a PNG, TIFF or BMP whole before scaling it down (peak ~2 bytes per pixel and
# colour component), so a larger image is refused before decoding; 20000 x 20000 px (an A4 page
# scanned at 2400 dpi) is the largest that opens.
IMAGE_MAX_DECODED_PIXELS = 400_000_000  # px
DETECT_MAX_PIXELS = 4_000_000  # staff detection block-averages larger pages below this (px)
MAX_SKEW_DEG = 3.0  # staff detection searches page skew within +-3 degrees

# --- sheet snippets ---------------------------------------------------------------------------
STAFF_SPACE_PX = 8.0  # distance between staff lines after strip normalisation (before halving)
STRIP_HEIGHT_PX = 160  # system strip height before halving, centred on the system
STRIP_DOWNSCALE = 2  # the strip is halved: 160 -> 80 px
SHEET_SNIPPET_HEIGHT_PX = STRIP_HEIGHT_PX // STRIP_DOWNSCALE  # 80 px
SHEET_SNIPPET_WIDTH_PX = 90  # window width on the halved strip
SHEET_SNIPPET_HOP_PX = 81  # hop between windows on the halved strip
# How systems are found and strips cut from pages; part of what the library stores with every
# score's embeddings, so that a change re-embeds the scores (recordings are kept). 2: strips
# follow the detected skew of a turned page; 3: dense staves are found (core.score, step 3b).
SHEET_CUT_VERSION = 3


# --- models -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelDims:
    """Network sizes; stored inside every checkpoint so a file says how to rebuild itself."""

    # per conv block. Dorfer et al. use (24, 48, 96, 96); (16, 32, 64, 64) runs the sheet CNN 1.7x
    # and the audio CNN 3x faster here and matched it in a like-for-like snippet run on our corpus
    # (validation MRR after 500 steps, A2S / S2A: 0.106 / 0.109 against 0.101 / 0.100).
    cnn_channels: tuple[int, ...] = (16, 32, 64, 64)
    snippet_dim: int = 32  # snippet embedding size
    gru_hidden: int = 128  # passage GRU state size
    passage_dim: int = 64  # passage embedding size (L2-normalised)
    # how a GRU summarises a passage: "last" = its state after the last snippet (the papers');
    # "last+mean" adds a projection of the mean of all its states, so the summary depends less
    # on where the passage happens to begin and end (see PassageGRU)
    summary: str = "last"
    spec_bins: int = SPEC_BINS
    audio_snippet_frames: int = AUDIO_SNIPPET_FRAMES
    sheet_snippet_height: int = SHEET_SNIPPET_HEIGHT_PX
    sheet_snippet_width: int = SHEET_SNIPPET_WIDTH_PX


# --- training ---------------------------------------------------------------------------------
PASSAGE_MARGIN = 0.3  # hinge-loss margin on cosine similarity, passage models
SNIPPET_MARGIN = 0.7  # hinge-loss margin, snippet baseline
LEARNING_RATE = 3e-3  # AdamW
BATCH_SIZE = 64  # passage pairs per step; the other pairs of the batch are the negatives


# --- corpus (synthetic aligned training data: engrave -> align -> perform -> synthesise) ------
CORPUS_MUSIC_FONTS_TRAIN = ("Leipzig", "Bravura", "Gootville", "Leland")  # verovio SMuFL fonts
CORPUS_MUSIC_FONT_TEST = "Petaluma"  # held out: engraves the test split only
CORPUS_SOUNDFONTS_TRAIN = (  # searched in CORPUS_SOUNDFONT_DIRS by file name
    "FluidR3_GM.sf2",
    "TimGM6mb.sf2",
)
CORPUS_SOUNDFONT_TEST = "MuseScore_General.sf3"  # held out: renders the test split only
CORPUS_SOUNDFONT_DIRS = ("/usr/share/sounds/sf2", "/usr/share/sounds/sf3")  # Debian locations
CORPUS_PIANO_PROGRAMS = (0, 1, 2, 3, 4, 5)  # GM programs: grands, honky-tonk, electric pianos
CORPUS_PIANO_PROGRAM_WEIGHTS = (0.4, 0.2, 0.15, 0.1, 0.075, 0.075)  # draw probabilities
CORPUS_SPLIT_FRACTIONS = (("train", 0.75), ("valid", 0.10), ("test", 0.15))  # of groups
CORPUS_PERFORMANCES_PER_PIECE = (1, 2)  # each piece is rendered 1 or 2 times (drawn uniformly)
CORPUS_TEMPO_SCALE_RANGE = (0.7, 1.3)  # global tempo factor: audio plays 0.7x to 1.3x as fast
CORPUS_RUBATO_DEPTH_RANGE = (0.0, 0.12)  # peak relative deviation of the smooth local tempo
CORPUS_RUBATO_PERIOD_S = (4.0, 12.0)  # score-time periods of the tempo wobble, s
CORPUS_FINAL_RITARDANDO_S = (1.5, 4.0)  # score seconds before the end over which tempo slows
CORPUS_FINAL_RITARDANDO_DEPTH = (0.2, 0.45)  # tempo at the very end is (1 - depth) x
CORPUS_PHRASE_RITARDANDO_DEPTH = (0.0, 0.2)  # slowing at phrase ends (fermatas, long notes)
CORPUS_VELOCITY_RANGE = (30, 115)  # MIDI velocity clip range
CORPUS_VELOCITY_BASE = (55, 90)  # piece-level mean MIDI velocity
CORPUS_LEGATO_RANGE = (0.55, 1.05)  # sounding length / written length, piece level
CORPUS_STACCATO_PROBABILITY = 0.15  # chance that a phrase (system-length span) is played staccato
CORPUS_PEDAL_PROBABILITY = 0.6  # chance that a performance uses the sustain pedal (CC64)
CORPUS_PEDAL_LIFT_S = 0.06  # pedal is lifted at a harmony change and pressed this long after
CORPUS_REVERB_LEVEL_RANGE = (0.0, 0.6)  # fluidsynth reverb level (0..1)
CORPUS_REVERB_ROOM_RANGE = (0.1, 0.8)  # fluidsynth reverb room size (0..1)
CORPUS_LEAD_IN_S = (0.2, 1.0)  # silence before the first onset, s
CORPUS_RELEASE_TAIL_S = 1.0  # audio kept after the last note-off, s
CORPUS_SYNTH_GAIN = 0.5  # fluidsynth master gain; output is peak-normalised afterwards
CORPUS_PEAK_RANGE = (0.3, 0.95)  # peak amplitude of the written FLAC (full scale = 1)
CORPUS_PAGE_SIZES_MM = (  # (name, width, height) in mm
    ("A4", 210.0, 297.0),
    ("letter", 215.9, 279.4),
    ("B4", 250.0, 353.0),
    ("legal", 215.9, 355.6),
    ("A4-wide", 240.0, 297.0),
)
CORPUS_STAFF_SPACE_PX = (10.0, 12.0)  # target staff-line distance on the rasterised page, px
CORPUS_STAFF_SPACE_JITTER = 0.15  # +-15 % around that target
CORPUS_VEROVIO_UNIT_RANGE = (7.5, 11.0)  # verovio `unit` (half a staff space, 0.1 mm): music size
CORPUS_SPACING_SYSTEM_RANGE = (3, 14)  # verovio spacingSystem, MEI units
CORPUS_SPACING_STAFF_RANGE = (6, 16)  # verovio spacingStaff, MEI units
CORPUS_SPACING_LINEAR_RANGE = (0.15, 0.4)  # verovio spacingLinear
CORPUS_SPACING_NONLINEAR_RANGE = (0.45, 0.75)  # verovio spacingNonLinear
CORPUS_PAGE_MARGIN_RANGE = (80, 200)  # page margins, 0.1 mm
CORPUS_ENCODED_BREAKS_PROBABILITY = 0.3  # use the source's system breaks (if any) instead of auto
CORPUS_MAX_PAGES = 12  # a piece engraving to more pages than this is dropped (too long)
CORPUS_MAX_AUDIO_S = 600.0  # a performance longer than this is dropped, s
CORPUS_DEFAULT_WORKERS = 2  # build processes
CORPUS_TIME_DECIMALS = 4  # seconds in piece.json are rounded to 0.1 ms

# --- shipped model and default places -------------------------------------------------------
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"  # repo/models (PyInstaller: bundled)
MODEL_FILE = "sheetaudio-passage.pt"  # the shipped weights inside MODELS_DIR
MODEL_ENV = "SHEETAUDIO_MODEL"  # environment variable naming another weights file
APP_NAME = "sheetaudio"  # platformdirs application name (user data: the default library)

# --- library: indexing, audio passages, search --------------------------------------------------
# Audio in the library has no system boundaries, so it is embedded as sliding passages of several
# lengths. How long is a system? In /work/corpus (227 pieces, 4528 system plays, tempo 0.7-1.3x)
# a system lasts 3.3 s (5th percentile), 5.1 s (25th), 8.4 s (median), 13.3 s (75th), 25.8 s
# (95th): three octaves. Passages of 5, 9, 16 and 28 snippets (hop 0.9 s: 4.6, 8.2, 14.5, 25.3 s;
# ratio ~1.78) leave every system between 4.6 and 25.3 s within a factor 1.34 of some passage.
AUDIO_PASSAGE_SNIPPETS = (5, 9, 16, 28)  # snippets per indexed audio passage (duration above)
# Passages start every ~half their length (2.7, 3.6, 7.2, 12.6 s): a system is always covered by
# a passage that shares >= 3/4 of it, and the index holds 0.87 rows per second of audio, i.e.
# 3.1 M rows (400 MB as bfloat16) for 1,000 h: brute force stays under the query budget.
AUDIO_PASSAGE_HOP_SNIPPETS = (3, 4, 8, 14)  # start hop of indexed passages, in snippets (x 0.9 s)
# An audio query ranks the scores with its passages of about one system's length, because the
# score rows are whole systems (median 8.4 s above); a shorter query is one passage as a whole.
# Chosen on the validation split (v4 model, one excerpt per performance): from 30 s excerpts the
# piece is found first 44.1 % with 11-snippet passages vs 34.8 % with the earlier mix of 4.6-25 s
# sub-passages and the whole (whole 30 s passage: 16.2 %); from 10 s, 23.4 % vs 22.4 %. Confirmed
# on the test split: 30 s 25.0 % vs 19.3 % (9, 11, 13 snippets all 24-26 %), 10 s 15.6 % vs 10.4 %.
QUERY_PASSAGE_SNIPPETS = 11  # snippets per query passage (9.9 s)
QUERY_PASSAGE_HOP_SNIPPETS = 2  # start hop of query passages, in snippets
# A 10 s excerpt usually straddles two systems (median 8.4 s above), which no single system row
# matches, so a score is also indexed as windows of consecutive sheet snippets that run on across
# system (and page) ends in reading order. Chosen on the validation split (v5 model, 642 excerpts):
# the piece is found first from 10 s 22.7 % with systems only, 30.1 % with systems + windows of 8
# snippets every 3 (7 every 2: 28.7 %, 9 every 2: 30.5 % with 1.5x the rows, 10 every 3: 25.7 %);
# from 30 s 41.6 -> 48.1 %. About two window rows per system row (1.75 on the validation split).
SCORE_WINDOW_SNIPPETS = 8  # sheet snippets per reading-order window (~ 8 x 81 px of staff)
SCORE_WINDOW_HOP_SNIPPETS = 3  # start hop of those windows, in sheet snippets
ENCODE_BATCH_WINDOWS = 256  # snippets per CNN call: bounds memory, keeps matmuls efficient
ENCODE_BATCH_PASSAGES = 2048  # passages per GRU call
LIBRARY_DB_FILE = "library.sqlite"  # SQLite metadata inside the library folder
LIBRARY_EMBEDDINGS_DIR = "embeddings"  # append-only embedding matrices inside the library folder
LIBRARY_SCHEMA_VERSION = 1  # bump when the tables change; older libraries are re-created
SQLITE_BUSY_TIMEOUT_S = 30.0  # a writer waits this long for another thread's transaction
LIBRARY_COMPACT_DEAD_FRACTION = 0.5  # matrices are rewritten when this share of rows is removed
LIBRARY_DOCUMENT_LIST_FILE = "documents.json"  # spare list of documents, for `library repair`
LIBRARY_READ_RETRIES = 50  # snapshots a reader tries when a matrix file is replaced under it
LIBRARY_READ_RETRY_WAIT_S = 0.02  # pause between those tries, s
LIBRARY_DAMAGED_SUFFIX = ".damaged"  # a damaged database is moved aside under this suffix + time
LIBRARY_HUB_CACHE_FILE = "hub-penalties.npz"  # the rows' hub penalties for the library's state
LIBRARY_ADAPTED_MODEL_FILE = "adapted-model.pt"  # the model adapted to the library (core.adapt)
# Adaptation (core.adapt) re-measures the CNNs' batch-norm statistics on about this many score
# windows and as many audio snippets of the library, spread over its documents. Measured with v8
# (passage R@1 audio -> score / score -> audio, statistics from the split's own systems; plain
# / with the search's centring): test split (held-out font and soundfont) 47.4 / 45.8 % ->
# 54.7 / 52.3 % from 700 systems (~4,000 windows of each kind), 53.1 / 51.3 % from all 3,035;
# centred 53.1 / 51.2 -> 56.7 / 55.1 %. Validation split (the training's fonts and sounds): 69.5
# / 68.6 -> 68.8 / 68.7 %, centred 70.5 / 70.0 -> 69.8 / 69.2 %: no gain where the statistics
# already fit, a large one where they do not.
ADAPT_WINDOWS = 4000  # windows of each modality sampled
ADAPT_MIN_WINDOWS = 500  # below this, a library is too small to adapt to
HASH_BLOCK_BYTES = 1 << 20  # content hashing reads files in 1 MiB blocks
SEARCH_CHUNK_ROWS = 262_144  # rows per similarity matmul: 32 MiB of bfloat16, cache-friendly
SEARCH_SIMILARITY_FLOATS = 1 << 25  # float32 similarities held at once: 128 MiB
SEARCH_REGIONS_PER_HIT = 5  # system boxes reported per score hit
SEARCH_SPANS_PER_HIT = 5  # time spans reported per recording hit
# A page query's systems are played in reading order, so the best recordings by independent
# per-system matches are re-scored along the best path whose passage start times never decrease.
# Chosen on the validation split (v4 model, 349 pages): the page finds its piece first 77.7 %
# along the path vs 69.6 % with independent matches (top-5 95.4 vs 94.6 %).
# The same for an audio query longer than one query passage, against systems in reading order
# (validation, 30 s excerpts: piece first 45.1 % vs 40.7 %; 20 s: 35.0 vs 32.7 %).
SEARCH_RERANK_DOCUMENTS = 50  # documents re-scored in reading order (top-5 already ~95 %)
# Short audio queries (an excerpt of up to ~36 s) are re-scored against the best
# SEARCH_RERANK_DOCUMENTS scores with windows of several lengths, cut at query time from the
# stored sheet snippets: 10 s of music covers 1.5 to 14.5 sheet snippets (5th-95th percentile,
# validation split; median 5.5), so no single window length fits every tempo and texture, and
# the GRU summaries are sensitive to where a passage begins and ends. Each query passage of
# RESCORE_QUERY_SNIPPETS (every QUERY_PASSAGE_HOP_SNIPPETS) takes its best window; a score's
# value is the mean over them. Chosen on the validation split (v7 step 300, 428 excerpts of
# 10 s): piece found first 30.6 % with one 11-snippet query passage against systems and 8-snippet
# windows, 43.7 % re-scored (43.9 % when all 140 pieces are re-scored; windows of 2-12 snippets
# and query passages of 3-11 were tried: more lengths add rows, not accuracy).
RESCORE_WINDOW_SNIPPETS = (3, 4, 5, 8)  # sheet windows of the re-scoring, in snippets
RESCORE_WINDOW_HOPS = (1, 2, 3, 3)  # their start hops
RESCORE_QUERY_SNIPPETS = (8, 11)  # query passages of the re-scoring (7.2 s, 9.9 s)
# Up to which length: validation, v8, `eval-library --split valid` (642 excerpts each): 30 s
# excerpts find their piece first 52.8 % re-scored in reading order (`ordered_match`), 63.2 %
# re-scored this way (10 s: 41.3 % either way). Longer queries were not measured: they keep the
# reading-order match, which uses their order.
RESCORE_MAX_QUERY_SNIPPETS = 40  # queries up to 40 snippets (36 s) are re-scored this way
# Those re-scored scores also follow the query's 1 s audio snippets along the score's sheet
# snippets (`search.snippet_path_match`): each audio snippet (0.9 s apart) takes a sheet snippet
# 0 to SNIPPET_PATH_MAX_STEP snippets after the previous one's; the score is the mean, weighted
# 1 : SNIPPET_PATH_WEIGHT, of the passage value and the path's mean cosine. Passages summarise;
# the path checks that the excerpt's notes come in the score's order, second by second. 10 s of
# music covers 1.5 to 14.5 sheet snippets (above): at most 1.3 per audio snippet, so steps up to
# 2. Chosen on the validation split (v10 adapted, 422 excerpts of 10 s): piece first 48.1 %
# without the path; weight 0.5 / 1 / 1.25 / 1.5 / 2: 55.2 / 57.6 / 58.3 / 58.8 / 56.2 %; steps
# up to 1: 55.5 % at weight 1, up to 3: 56.4 %; snippets centred on their modality's mean: 57.8 %
# (not worth library-wide means); a stay penalty of 0.02-0.05: no change. 30 s excerpts (422):
# 73.7 % -> 77.7 % (weight 0.5-3: 77.7-79.4 %).
SNIPPET_PATH_WEIGHT = 1.25  # of the snippet path's mean cosine, against 1 for the passages'
SNIPPET_PATH_MAX_STEP = 2  # sheet snippets an audio snippet may advance the path by
# Each modality's passages are centred on the library's own mean passage (`core.centring`);
# the mean is shrunk by m / (m + CENTRING_PRIOR_ROWS), m the smaller of the two modalities' row
# counts, so a library of a few pieces is barely centred and one of thousands of systems mostly.
# Measured with v8, one excerpt per recording (10 s / 30 s: piece first; a page: recording
# first). Validation library (1,778 systems; the training's engraving and piano sound): no
# centring 42.5 / 64.5 / 70.5 %, prior 500: 43.5 / 64.5 / 68.8, 2000: 44.4 / 63.6 / 69.3, 5000:
# 43.5 / 63.6 / 70.8 - no effect beyond noise (+-3 points), as expected where there is no offset
# to remove. Test library (held-out font and soundfont): none 19.6 / 44.6 / 51.1 %, prior 100:
# 19.3 / 46.2 / 50.0, 500: 19.9 / 47.7 / 51.3, 2000: 20.2 / 50.5 / 51.9, 5000: 19.3 / 48.6 /
# 53.2. 2000: a partial centring (weight 0.6 at 3,000 systems) that leaves in-domain search as
# it was and gains most where the material is unlike the training's, as users' is.
CENTRING_PRIOR_ROWS = 2000  # rows at which a library's mean counts half
# Hub penalties (`core.centring.hub_penalties`): each stored row's similarity is lowered by
# HUB_WEIGHT (shrunk like the means) x the mean of its HUB_NEIGHBOURS best centred similarities to
# a reference sample of the other modality's rows. Chosen on the validation split's passage pairs
# (v8, centred, 1,719 pairs; R@1 A2S / S2A 70.5 / 70.0 % without): k = 1, weight 0.5: 75.7 /
# 76.2 %; k = 2, 0.5: 76.4 / 76.8; k = 2, 0.75: 78.0 / 78.0; k = 5 and 10 lower at every weight.
# With the query's whole piece left out of the reference (a recording of a piece the library does
# not hold) k = 2, 0.75 gives 75.0 / 76.2 %: the gain is not the query finding its own partner.
# Reference size on the test split (adapted, k = 2, 0.5): 1,024 rows 59.6 / 59.3 %, 2,048: 61.8 /
# 61.0, all 3,035: 63.0 / 62.0. The rows x reference product is the cost: 4,096 reference rows
# take ~17 s for the 3.1 M audio rows of a 1,000 h library and 37 s for all its rows (with the
# 3.2 M re-scoring windows), once per library state (kept in the folder: read back in 1.4 s).
# The audio reference is a sample of every indexed window (all four lengths); drawn from the
# system-length windows only it did no better on the validation library (10 s -> piece 40.5 vs
# 39.6 %, 30 s 65.0 vs 66.7 %).
HUB_NEIGHBOURS = 2
HUB_WEIGHT = 0.75
HUB_REFERENCE_ROWS = 4096
SEARCH_CANDIDATES_PER_QUERY = 200  # best rows kept per query row before grouping by document
# A page's systems are played one after the other, so along the re-scoring path each system's
# passage should begin where the previous one's ended: a step costs PATH_GAP_WEIGHT x
# min(|gap| / PATH_GAP_SCALE_S, PATH_GAP_CAP) (`search.contiguous_match`); the path before only
# kept start times in order, and a wrong recording's path could pick each system's look-alike
# wherever it lay. Chosen on the validation library (v10, 349 pages, 50 recordings re-scored):
# the page finds its recording first 84.8 % in order only, 92.0 % with (0.05, 4 s, 5), and
# 89.8-92.0 % over weights 0.05-0.3, scales 2-8 s and caps 3-5 (a plateau; 0.1, 8 s, 3 ties
# but reaches twice as far, so it costs 20 % more per recording); span overlapping 84.5 -> 91.7 %.
PATH_GAP_WEIGHT = 0.05  # cost of a gap of PATH_GAP_SCALE_S seconds, in cosine similarity
PATH_GAP_SCALE_S = 4.0  # seconds
PATH_GAP_CAP = 5.0  # a leap (repeat, cut, a far look-alike) costs at most this many scales
SPAN_MERGE_GAP_S = 2.0  # hits on one recording closer than this are one span
