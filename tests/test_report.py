"""The evaluation tables as Markdown: every row of the report, with its numbers (model card)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sheetaudio_gui.config import SPEC_BINS, ModelDims
from sheetaudio_gui.core.errors import SheetAudioError
from sheetaudio_gui.core.models import PassageModel
from sheetaudio_gui.training.bank import BANK_STRIP_HEIGHT
from sheetaudio_gui.training.batches import BankTensors
from sheetaudio_gui.training.report import (
    CARRIED_SUFFIX,
    EXCERPTS_PER_PERFORMANCE,
    ModelRow,
    _rank_of,
    carry_rows,
    format_report,
    markdown_report,
    piece_identification,
)


def metrics(r1: float, mrr: float) -> dict[str, dict[str, float]]:
    one = {"R@1": r1, "R@10": 90.0, "R@25": 97.5, "MRR": mrr, "MR": 1.0}
    return {"A2S": dict(one), "S2A": dict(one)}


REPORT = {
    "split": "test",
    "passage_pairs": 3040,
    "counts": {"pieces": 219},
    "corpus_manifest_hash": "b2e1bf9fc9a89066",
    "passages": {"snippet baseline": metrics(12.5, 0.2), "GRU, fine-tuned": metrics(66.25, 0.781)},
    "snippets": {"snippet baseline": metrics(20.0, 0.3)},
    "piece_identification": {
        "GRU, fine-tuned": {
            "audio_10s": {"top1": 93.5, "top5": 99.0, "n": 327},
            "page": {"top1": 88.0, "top5": 97.0, "n": 622},
        }
    },
    "robustness": {
        "scan": {"GRU, fine-tuned": metrics(60.0, 0.72), "systems_missed_by_detector": 7}
    },
}


def test_every_model_row_becomes_one_table_row_with_its_numbers() -> None:
    text = markdown_report(REPORT)
    row = next(line for line in text.splitlines() if line.startswith("| GRU, fine-tuned |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == ["GRU, fine-tuned", *["66.2", "90.0", "97.5", "0.781", "1"] * 2]
    assert "| snippet baseline | 12.5 |" in text
    assert "| GRU, fine-tuned | 93.5 | 99.0 | 327 | 88.0 | 97.0 | 622 |" in text
    assert "| scan: GRU, fine-tuned | 60.0 |" in text
    assert "the detector missed 7 systems" in text
    assert "3040 passage pairs" in text and "`b2e1bf9fc9a89066`" in text


def test_markdown_tables_have_as_many_cells_as_their_header() -> None:
    lines = markdown_report(REPORT).splitlines()
    for k, line in enumerate(lines):
        if line.startswith("|---"):
            width = lines[k - 1].count("|")
            body = []
            for following in lines[k + 1 :]:
                if not following.startswith("|"):
                    break
                body.append(following)
            assert body and all(b.count("|") == width for b in body), lines[k - 1]


def test_the_text_report_has_the_same_rows() -> None:
    text = "\n".join(format_report(REPORT))
    assert "GRU, fine-tuned" in text and "3040 passage pairs" in text


def test_rows_of_an_earlier_report_on_the_same_material_come_first_and_marked() -> None:
    earlier = {**REPORT, "rows": {"snippet baseline": "mean", "GRU, fine-tuned": "gru"}}
    new_row = metrics(70.0, 0.8)
    now = {
        **REPORT,
        "rows": {"GRU, continued": "gru"},
        "passages": {"GRU, continued": new_row, "chroma oracle": metrics(14.0, 0.2)},
        "snippets": {"GRU, continued": new_row},
        "piece_identification": {
            "GRU, continued": REPORT["piece_identification"]["GRU, fine-tuned"]
        },
        "robustness": {"scan": {"GRU, continued": new_row, "systems_missed_by_detector": 7}},
    }
    merged = carry_rows(now, earlier)
    assert list(merged["passages"]) == [
        "snippet baseline" + CARRIED_SUFFIX,
        "GRU, fine-tuned" + CARRIED_SUFFIX,
        "GRU, continued",
        "chroma oracle",
    ]
    assert merged["passages"]["GRU, fine-tuned" + CARRIED_SUFFIX]["A2S"]["R@1"] == 66.25
    assert list(merged["robustness"]["scan"]) == [
        "GRU, fine-tuned" + CARRIED_SUFFIX,
        "GRU, continued",
        "systems_missed_by_detector",
    ]
    assert "| snippet baseline [earlier report] | 12.5 |" in markdown_report(merged)
    again = carry_rows({**now, "rows": {"GRU, v5": "gru"}}, merged)  # carried twice: marked once
    assert "snippet baseline" + CARRIED_SUFFIX in again["rows"]
    assert "GRU, continued" + CARRIED_SUFFIX in again["rows"]


def test_piece_identification_rows_are_carried_only_when_measured_the_same_way() -> None:
    earlier = {**REPORT, "rows": {"GRU, fine-tuned": "gru"}}  # no method key: method 1
    now = {**REPORT, "rows": {}, "piece_identification": {}, "piece_identification_method": 2}
    assert carry_rows(now, earlier)["piece_identification"] == {}
    same = carry_rows({**now, "piece_identification_method": 1}, earlier)
    assert list(same["piece_identification"]) == ["GRU, fine-tuned" + CARRIED_SUFFIX]


def test_rows_are_not_carried_from_other_test_material() -> None:
    other = {**REPORT, "counts": {"pieces": 218}, "rows": {}}
    with pytest.raises(SheetAudioError, match="other test material"):
        carry_rows({**REPORT, "rows": {}}, other)


def test_best_similarity_per_piece_is_the_maximum_over_that_pieces_columns() -> None:
    import numpy as np

    from sheetaudio_gui.training.report import _best_per_piece

    rng = np.random.default_rng(0)
    sim = rng.random((3, 40)).astype(np.float32)
    owner = rng.integers(0, 5, size=40)
    pieces = np.unique(owner)
    got = _best_per_piece(sim, owner, pieces)
    for j, q in enumerate(pieces):
        assert np.array_equal(got[:, j], sim[:, owner == q].max(axis=1))


# --- piece identification on a bank whose every window says which piece it belongs to ----------

PIECES = 6
INK_STEP = 30  # piece k's strips are grey 255 - INK_STEP * (k + 1): ink INK_STEP * (k + 1) / 255
SYSTEM_WIDTH = 200  # strip px: 3 sheet windows per system


def system_pages_of(piece: int) -> list[int]:
    """Even pieces: 3 systems on 2 pages (one page of a single system); odd: 2 on one page."""
    return [0, 0, 1] if piece % 2 == 0 else [0, 0]


def coded_bank(equal_lengths: bool = False) -> tuple[BankTensors, list[int]]:
    """Pieces of 2-3 systems and 1-2 performances of 11-21 snippets (all of 16 with
    `equal_lengths`); piece k's ink is `INK_STEP * (k + 1) / 255` and its spectrogram frames
    `k + 1`. Second performances come last, so performances are not in piece order. -> bank,
    page of each system.
    """
    pages = [page for k in range(PIECES) for page in system_pages_of(k)]
    system_piece = [k for k in range(PIECES) for _ in system_pages_of(k)]
    strips = np.concatenate(
        [
            np.full((BANK_STRIP_HEIGHT, SYSTEM_WIDTH), 255 - INK_STEP * (k + 1))
            for k in system_piece
        ],
        axis=1,
    ).astype(np.uint8)
    systems = [[SYSTEM_WIDTH * g, SYSTEM_WIDTH, k] for g, k in enumerate(system_piece)]
    perf_piece = list(range(PIECES)) + [k for k in range(PIECES) if k % 3 == 0]
    frames = [
        290 if equal_lengths else 200 + 36 * k + 18 * (p >= PIECES)
        for p, k in enumerate(perf_piece)
    ]
    specs = np.concatenate(
        [np.full((SPEC_BINS, f), k + 1) for k, f in zip(perf_piece, frames, strict=True)], axis=1
    ).astype(np.float16)
    offsets = np.concatenate([[0], np.cumsum(frames)[:-1]])
    perfs = np.stack([offsets, frames, perf_piece], axis=1)
    none = torch.zeros((0, 4), dtype=torch.int64)  # passages and notes: not used here
    bt = BankTensors(
        torch.from_numpy(strips),
        torch.tensor(systems),
        torch.from_numpy(specs),
        torch.from_numpy(perfs.astype(np.int64)),
        none,
        none,
    )
    return bt, pages


class CodedModel(PassageModel):
    """Snippet encoders that read the piece off a window's brightest value and embed piece k as
    row k of `sheet_rows` / `audio_rows`; with the "mean" summary nothing else is used."""

    def __init__(self, sheet_rows: torch.Tensor, audio_rows: torch.Tensor) -> None:
        d = sheet_rows.shape[1]
        super().__init__(
            ModelDims(cnn_channels=(4, 4, 8, 8), snippet_dim=d, gru_hidden=4, passage_dim=d)
        )
        self.sheet_rows, self.audio_rows = sheet_rows, audio_rows

    def sheet_snippets(self, x: torch.Tensor) -> torch.Tensor:
        piece = (x.amax(dim=(1, 2, 3)) * 255 / INK_STEP).round().long() - 1
        return self.sheet_rows[piece]

    def audio_snippets(self, x: torch.Tensor) -> torch.Tensor:
        return self.audio_rows[x.amax(dim=(1, 2, 3)).round().long() - 1]


def coded_row(audio_rows: torch.Tensor, sheet_rows: torch.Tensor | None = None) -> ModelRow:
    sheet = torch.eye(PIECES) if sheet_rows is None else sheet_rows
    return ModelRow("coded", CodedModel(sheet, audio_rows), summary="mean")


def confused(pieces: int) -> torch.Tensor:
    """Row k: mostly piece k + 1, a little piece k (so the true piece always ranks second)."""
    eye = torch.eye(pieces)
    return eye.roll(1, dims=1) + 0.5 * eye


def test_a_model_that_knows_every_piece_identifies_every_excerpt_and_every_page() -> None:
    bt, pages = coded_bank()
    result = piece_identification(coded_row(torch.eye(PIECES)), bt, pages)
    assert result["pieces"] == PIECES
    assert result["audio_10s"] == {
        "n": EXCERPTS_PER_PERFORMANCE * len(bt.perfs),
        "top1": 100.0,
        "top5": 100.0,
    }
    assert result["page"] == {"n": 9, "top1": 100.0, "top5": 100.0}  # 3 x 2 pages + 3 x 1


def test_a_model_that_takes_each_piece_for_the_next_one_is_never_right_first() -> None:
    bt, pages = coded_bank()
    result = piece_identification(coded_row(confused(PIECES)), bt, pages)
    for query in ("audio_10s", "page"):
        assert result[query]["top1"] == 0.0 and result[query]["top5"] == 100.0, query


def test_a_model_that_cannot_tell_pieces_apart_scores_nothing() -> None:
    """Every piece ties with every other (one-hot rows, and recordings of one length, whose
    passages follow one another alike: exact ties in floats): a tie is no hit."""
    bt, pages = coded_bank(equal_lengths=True)
    same = torch.eye(PIECES)[[0] * PIECES]
    result = piece_identification(coded_row(same, sheet_rows=same), bt, pages)
    for query in ("audio_10s", "page"):
        assert result[query]["top1"] == 0.0 and result[query]["top5"] == 0.0, query


def test_a_piece_ranks_behind_every_other_piece_scoring_as_high() -> None:
    assert _rank_of({0: 0.5, 1: 0.5, 2: 0.1}, 0) == 2
    assert _rank_of({0: 0.5, 1: 0.4, 2: 0.5}, 2) == 2
    assert _rank_of({0: 0.9, 1: 0.4}, 1) == 2
    assert _rank_of({0: 0.9, 1: 0.4}, 7) == 3  # not scored at all: after every scored piece


def test_piece_identification_follows_the_pieces_not_the_order_of_the_performances() -> None:
    """Pieces 0-2 are recognised, 3-5 confused; reversing the performances moves the excerpts
    (the seeded draw goes in bank order) but no query's rank."""
    bt, pages = coded_bank()
    audio = torch.cat([torch.eye(PIECES)[:3], confused(PIECES)[3:]])
    row = coded_row(audio)
    result = piece_identification(row, bt, pages)
    assert result["audio_10s"]["top1"] == 50.0  # 4 of 8 performances are of pieces 0-2
    reversed_bt = BankTensors(bt.strips, bt.systems, bt.specs, bt.perfs.flip(0), bt.notes, bt.notes)
    assert piece_identification(row, reversed_bt, pages) == result


def test_degraded_page_rows_are_carried_only_when_the_pages_were_cut_the_same_way() -> None:
    earlier = {
        **REPORT,
        "rows": {"GRU, fine-tuned": "gru"},
        "robustness": {
            "scan": {"GRU, fine-tuned": metrics(14.0, 0.2)},
            "tempo-0.7": {"GRU, fine-tuned": metrics(30.0, 0.4)},
        },
    }  # no version key: version 2
    now = {
        **REPORT,
        "rows": {"GRU, continued": "gru"},
        "page_variant_version": 3,
        "robustness": {
            "scan": {"GRU, continued": metrics(40.0, 0.5)},
            "tempo-0.7": {"GRU, continued": metrics(31.0, 0.4)},
        },
    }
    merged = carry_rows(now, earlier)
    assert list(merged["robustness"]["scan"]) == ["GRU, continued"]
    assert list(merged["robustness"]["tempo-0.7"]) == [
        "GRU, fine-tuned" + CARRIED_SUFFIX,
        "GRU, continued",
    ]
    same = carry_rows({**now, "page_variant_version": 2}, earlier)
    assert list(same["robustness"]["scan"]) == [
        "GRU, fine-tuned" + CARRIED_SUFFIX,
        "GRU, continued",
    ]


def test_the_centred_row_removes_a_modality_offset_that_makes_one_score_a_hub(monkeypatch) -> None:
    """Every recording carries a strong shared direction and piece 0's score leans towards it:
    the plain cosine sends every excerpt to piece 0; centred on each modality's own mean (as
    the library's search, here without shrinking), each finds its own piece."""
    import sheetaudio_gui.core.centring as centring

    monkeypatch.setattr(centring, "CENTRING_PRIOR_ROWS", 0)
    bt, pages = coded_bank()
    eye = torch.eye(PIECES, PIECES + 1)
    hub = torch.zeros(PIECES + 1)
    hub[PIECES] = 1.0
    audio = eye + 3.0 * hub
    sheet = eye.clone()
    sheet[0] += hub
    plain = piece_identification(coded_row(audio, sheet_rows=sheet), bt, pages)
    centred_row = ModelRow("coded", CodedModel(sheet, audio), summary="mean", centred=True)
    centred = piece_identification(centred_row, bt, pages)
    assert plain["audio_10s"]["top1"] < 50.0
    assert centred["audio_10s"]["top1"] == 100.0
    assert centred["page"]["top1"] == 100.0
