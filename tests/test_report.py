"""The evaluation tables as Markdown: every row of the report, with its numbers (model card)."""

from __future__ import annotations

import pytest

from sheetaudio_gui.core.errors import SheetAudioError
from sheetaudio_gui.training.report import (
    CARRIED_SUFFIX,
    carry_rows,
    format_report,
    markdown_report,
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
