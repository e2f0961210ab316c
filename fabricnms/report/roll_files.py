"""Writing a roll report: ``roll_report.json`` (data) and ``roll_report.html`` (the page).

Separate from :mod:`fabricnms.report.roll` (building the report) and
:mod:`fabricnms.report.html` (rendering it) so that neither imports the other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fabricnms.io import atomic_write_text
from fabricnms.report.caveats import Caveat
from fabricnms.report.grading import MM_PER_M
from fabricnms.report.html import defect_thumbnails, render_roll_html
from fabricnms.report.records import FrameRecord
from fabricnms.report.roll import RollReport, RollSettings, build_roll_report

REPORT_JSON = "roll_report.json"
REPORT_HTML = "roll_report.html"


def report_json(data: dict[str, Any]) -> str:
    """JSON text: objects indented, lists one item per line. Readable, diffable, and fast for
    rolls of thousands of frames (an indented dump of the lists goes through the slow
    pure-Python encoder)."""
    parts = []
    for key, value in data.items():
        if isinstance(value, list) and value:
            items = ",\n".join("    " + json.dumps(v, ensure_ascii=False) for v in value)
            text = "[\n" + items + "\n  ]"
        else:
            text = json.dumps(value, ensure_ascii=False, indent=2).replace("\n", "\n  ")
        parts.append(f"  {json.dumps(key)}: {text}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def write_roll_report(
    report: RollReport, out_dir: str | Path, thumbnails: bool = True, max_thumbnails: int = 500
) -> dict[str, Path]:
    """Write ``roll_report.json`` and the self-contained ``roll_report.html`` atomically.

    With ``thumbnails`` the HTML embeds a JPEG crop of up to ``max_thumbnails`` defects (the
    highest-scoring ones), read from the frames' paths; unreadable frames get no thumbnail.
    """
    out = Path(out_dir)
    paths = {"json": out / REPORT_JSON, "html": out / REPORT_HTML}
    data = report.to_dict()
    atomic_write_text(paths["json"], report_json(data))
    thumbs = defect_thumbnails(report, max_thumbnails) if thumbnails else {}
    atomic_write_text(paths["html"], render_roll_html(data, thumbs))
    return paths


def write_roll_files(
    frames: list[FrameRecord],
    class_names: list[str],
    settings: RollSettings,
    info: dict[str, str],
    out_dir: str | Path,
    caveats: list[Caveat],
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Grade ``frames`` as one roll and write its report, with ``caveats`` found by other
    stages added to its own; returns the verdict summary that ``predict`` prints and puts in
    ``summary.json`` and the files."""
    report = build_roll_report(frames, class_names, settings, info)
    report.caveats.extend(caveats)
    paths = write_roll_report(report, out_dir)
    g = report.grade
    summary = {
        **report.verdict_summary(),
        "system": g.rules.system,
        "points": g.total_points,
        "points_per_100_yd2": round(g.per_100_yd2, 3),
        "points_per_100_m2": round(g.per_100_m2, 3),
        "score": round(g.score, 3),
        "limit": g.rules.limit,
        "limit_unit": g.rules.limit_unit,
        "defects": len(report.defects),
        "length_m": round(report.length_mm / MM_PER_M, 4),
        "width_mm": round(report.width_mm, 1),
        "reasons": g.reasons,
    }
    return summary, paths
