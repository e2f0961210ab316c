"""``summary.json`` of ``predict``: what the whole run holds, how fast this session went.

Counts (``processed``, ``frames_with_defects``, ``detections``, ``defects_by_class``) are of
the whole run: every frame in the output folder's journal, so after ``--resume`` they include
the frames written before (``resumed`` of them). Timings (``ms_per_frame``, ``seconds``,
``frames_per_second``, ``metres_per_minute``) and ``skipped`` are of this session, the only
frames it timed (a frame skipped earlier is not in the journal and is retried on resume).

Timings: *preprocess* = file decode and conversion to RGB (by default one frame ahead in a
background thread, overlapping the network; see :mod:`fabricnms.engine.prefetch`);
*inference* = the network's forward passes; *postprocess* = the rest of tiled detection
(cutting and padding windows, candidate selection, merging tiles, NMS); *write* = journal
and overlays.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fabricnms.report.calibration import Calibration
from fabricnms.report.records import FrameRecord


@dataclass
class RunStats:
    """Running totals of one session (no per-frame data is kept except the skipped list)."""

    processed: int = 0
    rows_px: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    read_s: float = 0.0
    wait_s: float = 0.0
    infer_s: float = 0.0
    detect_s: float = 0.0
    write_s: float = 0.0
    wall_s: float = 0.0

    def add_frame(self, height: int) -> None:
        """Count one processed frame of ``height`` rows."""
        self.processed += 1
        self.rows_px += height

    def timings(self, calibration: Calibration | None) -> dict[str, Any]:
        """Per-frame milliseconds and throughput of this session; metres of fabric per minute
        when the scale was given or a roll report assumes one (``calibration`` not None)."""
        n = max(self.processed, 1)
        post_s = max(self.detect_s - self.infer_s - self.wait_s, 0.0)
        fps = self.processed / self.wall_s if self.wall_s > 0 else None
        metres = calibration.mm_y(self.rows_px) / 1000.0 if calibration is not None else None
        return {
            "ms_per_frame": {
                "preprocess": round(1000 * self.read_s / n, 2),
                "inference": round(1000 * self.infer_s / n, 2),
                "postprocess": round(1000 * post_s / n, 2),
                "write": round(1000 * self.write_s / n, 2),
            },
            "seconds": round(self.wall_s, 3),
            "frames_per_second": None if fps is None else round(fps, 3),
            "metres_per_minute": (
                round(metres / (self.wall_s / 60), 3)
                if metres is not None and self.wall_s
                else None
            ),
        }


def run_counts(records: Iterable[FrameRecord], class_names: list[str]) -> dict[str, Any]:
    """Frames, frames with defects, detections and detections per class of ``records``."""
    frames = with_defects = detections = 0
    by_class: Counter[str] = Counter()
    for rec in records:
        frames += 1
        detections += len(rec.detections)
        with_defects += bool(rec.detections)
        by_class.update(class_names[d.label] for d in rec.detections)
    return {
        "processed": frames,
        "frames_with_defects": with_defects,
        "detections": detections,
        "defects_by_class": dict(sorted(by_class.items())),
    }


def edge_summary(frames: int, band: int, hidden: int | None = None) -> dict[str, Any]:
    """``{"frames", "band_px", "warning"}`` (and ``"true_boxes_uninspected"`` when ``hidden``
    is given: labelled defects whose centre lies there, which count as missed): on how many
    ``frames`` the fabric's edge was in view (:mod:`fabricnms.data.cloth`) and, if any, the
    sentence saying what went uninspected (``None`` otherwise)."""
    out: dict[str, Any] = {"frames": frames, "band_px": band, "warning": None}
    if hidden is not None:
        out["true_boxes_uninspected"] = hidden
    if frames:
        out["warning"] = (
            f"the fabric's edge is in view on {frames} frame(s): the background beyond it and "
            f"the {band} px inside it (the selvedge) were not inspected"
            + (f", where {hidden} labelled defect(s) lie and count as missed" if hidden else "")
            + " (--edge-band sets the band; -1 inspects whole frames)"
        )
    return out
