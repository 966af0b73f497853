"""Results as rows for people and other programs: CSV, JSON, and a one-line reference to paste.

Both directions flatten to the same columns: one row per found region (score hits) or time span
(recording hits); empty cells where a column does not apply.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

COLUMNS = (
    "rank",
    "kind",
    "document",
    "hit_score",
    "page",
    "system",
    "box",
    "start_s",
    "end_s",
    "score",
)


def format_time(seconds: float) -> str:
    """62.5 -> '1:02.5'."""
    minutes, rest = divmod(max(seconds, 0.0), 60.0)
    return f"{int(minutes)}:{rest:04.1f}"


def rows(results: Any) -> list[dict[str, Any]]:
    """Flatten `Results` (ScoreHit or AudioHit hits) into dicts with COLUMNS as keys."""
    out: list[dict[str, Any]] = []
    for rank, hit in enumerate(results.hits, start=1):
        base = {
            "rank": rank,
            "document": str(hit.document),
            "hit_score": round(float(hit.score), 4),
        }
        if hasattr(hit, "regions"):
            for r in hit.regions:
                out.append(
                    {
                        **base,
                        "kind": "score",
                        "page": r.page + 1,
                        "system": _num(r.system),
                        "box": [round(float(v), 2) for v in r.box],
                        "start_s": None,
                        "end_s": None,
                        "score": round(float(r.score), 4),
                    }
                )
        else:
            for s in hit.spans:
                out.append(
                    {
                        **base,
                        "kind": "audio",
                        "page": None,
                        "system": None,
                        "box": None,
                        "start_s": round(float(s.start_s), 2),
                        "end_s": round(float(s.end_s), 2),
                        "score": round(float(s.score), 4),
                    }
                )
    return out


def _num(system: int | None) -> int | None:
    return None if system is None else int(system) + 1


def write_csv(results: Any, path: Path) -> Path:
    """Pages and systems are 1-based in files for people; boxes as 'x0 y0 x1 y1' page units."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows(results):
            box = row["box"]
            writer.writerow({**row, "box": " ".join(map(str, box)) if box else ""})
    return path


def write_json(results: Any, path: Path, query: dict[str, Any] | None = None) -> Path:
    path = Path(path)
    payload = {"query": query or {}, "results": rows(results)}
    path.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return path


def reference(hit: Any, part: Any) -> str:
    """A line to paste: 'chorale.pdf, p. 2, system 3 …' or 'tone.flac 0:01.0–0:04.5 …'."""
    name = Path(hit.document).name
    if hasattr(part, "page"):
        where = f"{name}, p. {part.page + 1}"
        if getattr(part, "system", None) is not None:
            where += f", system {part.system + 1}"
        return f"{where} (score {part.score:.3f}) — {hit.document}"
    return (
        f"{name} {format_time(part.start_s)}–{format_time(part.end_s)} "
        f"(score {part.score:.3f}) — {hit.document}"
    )
