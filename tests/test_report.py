"""The evaluation tables as Markdown: every row of the report, with its numbers (model card)."""

from __future__ import annotations

from sheetaudio_gui.training.report import format_report, markdown_report


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
