"""A folder of consecutive frames is a roll: positions along it, cross-frame joins, grading.

Roll coordinates: frames are stacked top to bottom in natural file-name order
(:func:`~fabricnms.report.records.roll_order`), with no overlap, so frame ``k`` covers rows
``offset_k .. offset_k + height_k`` of the roll; ``along`` = (offset + y) / px_per_mm_y,
``across`` = x / px_per_mm_x from the left selvage at frame ``x = 0``.

Same-spot joins: two boxes of one frame that overlap by at least ``same_spot_overlap``
(``(IoU + IoMin) / 2``, the measure DNMS merges duplicates with) are one defect whatever their
classes: the detector may report one warp line as both ``loose_warp`` and ``broken_warp``,
which is right for ranking metrics but must not be graded twice. A small defect inside a large
box (a knot on a bar: IoMin 1, IoU ~0) stays apart.

Cross-frame joins: a box reaching the bottom edge of frame ``k`` (within ``edge_tol_px``) and a
box reaching the top edge of frame ``k + 1``, overlapping across by at least ``min_x_overlap``
of the narrower one and of the same or a compatible class (:data:`COMPATIBLE_GROUPS`), are one
defect; chains run through any number of frames. The joined defect takes the class and the
thumbnail of its highest-scoring part.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fabricnms import __version__
from fabricnms.errors import FabricError
from fabricnms.model.boxes import pairwise_iou_iomin
from fabricnms.report.calibration import Calibration
from fabricnms.report.caveats import (
    Caveat,
    calibration_caveat,
    empty_roll_caveat,
    roll_order_caveat,
)
from fabricnms.report.grading import (
    MM_PER_M,
    DefectGrade,
    GradeResult,
    GradingRules,
    PhysicalDefect,
    defect_kind,
    grade,
)
from fabricnms.report.records import FrameRecord, along_offsets_px, roll_order

#: Classes that may continue each other across a frame edge (warp-direction line faults of
#: both schemes): a loose warp seen as a broken warp in the next frame is one defect.
COMPATIBLE_GROUPS: tuple[frozenset[str], ...] = (
    frozenset({"thick_warp", "loose_warp", "broken_warp", "tight_warp", "double_end", "reed_mark"}),
)


def compatible(a: str, b: str) -> bool:
    """True when classes ``a`` and ``b`` may be parts of one defect."""
    return a == b or any(a in g and b in g for g in COMPATIBLE_GROUPS)


@dataclass(frozen=True)
class RollSettings:
    """Calibration, grading rules and joining tolerances of a roll report.

    ``roll_width_mm`` defaults to the widest frame's width / ``px_per_mm_x`` (of the cloth,
    where a frame shows the fabric's edge: positions across are then measured from it);
    ``roll_assumed``: the frames were taken as one roll without being told so (a caveat).
    """

    calibration: Calibration = field(default_factory=Calibration)
    rules: GradingRules = field(default_factory=GradingRules)
    roll_width_mm: float | None = None
    edge_tol_px: float = 8.0
    min_x_overlap: float = 0.3
    same_spot_overlap: float = 0.6
    roll_assumed: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain values (grading rules resolved to their effective defaults)."""
        return {
            "calibration": self.calibration.to_dict(),
            "rules": self.rules.resolved().to_dict(),
            "roll_width_mm": self.roll_width_mm,
            "edge_tol_px": self.edge_tol_px,
            "min_x_overlap": self.min_x_overlap,
            "same_spot_overlap": self.same_spot_overlap,
            "roll_assumed": self.roll_assumed,
        }


@dataclass
class RollDefect:
    """One (possibly joined) defect of the roll.

    ``box_px``: xyxy pixels of its highest-scoring part in ``frame_path`` (for thumbnails);
    ``x1_mm..x2_mm``: across the roll from the left selvage; ``y1_m..y2_m``: along the roll
    from its start; ``class_id`` is 1-based.
    """

    id: int
    class_id: int
    class_name: str
    score: float
    kind: str
    frame_path: str
    frame_index: int
    frames: list[str]
    box_px: tuple[float, float, float, float]
    x1_mm: float
    x2_mm: float
    y1_m: float
    y2_m: float
    grade: DefectGrade

    @property
    def across_mm(self) -> float:
        """Size across the roll."""
        return self.x2_mm - self.x1_mm

    @property
    def along_mm(self) -> float:
        """Size along the roll."""
        return (self.y2_m - self.y1_m) * MM_PER_M

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        g = self.grade
        return {
            "id": self.id,
            "class_id": self.class_id,
            "class_name": self.class_name,
            "score": round(self.score, 5),
            "kind": self.kind,
            "frame": Path(self.frame_path).name,
            "frame_index": self.frame_index,
            "frames": self.frames,
            "box_px": [round(v, 2) for v in self.box_px],
            "across_mm": [round(self.x1_mm, 1), round(self.x2_mm, 1)],
            "along_m": [round(self.y1_m, 4), round(self.y2_m, 4)],
            "width_mm": round(self.across_mm, 1),
            "length_mm": round(self.along_mm, 1),
            "graded_length_mm": round(g.length_mm, 1),
            "direction": g.direction,
            "running": g.running,
            "points": g.points,
            "cap_units": g.units,
            "excluded": g.excluded,
        }


@dataclass
class RollReport:
    """Everything ``roll_report.json`` / ``.html`` show. ``caveats``: what the verdict rests on
    unchecked (:mod:`fabricnms.report.caveats`; any stage may append); ``info``: roll id, lot,
    operator, date as given (shown in the report's header)."""

    settings: RollSettings
    class_names: list[str]
    frames: list[FrameRecord]
    frame_offsets_px: dict[str, int]
    width_mm: float
    length_mm: float
    defects: list[RollDefect]
    grade: GradeResult
    caveats: list[Caveat] = field(default_factory=list)
    info: dict[str, str] = field(default_factory=dict)

    def verdict_summary(self) -> dict[str, Any]:
        """``verdict``, ``provisional`` (it has caveats) and ``caveats`` (plain dicts)."""
        return {
            "verdict": self.grade.verdict,
            "provisional": bool(self.caveats),
            "caveats": [c.to_dict() for c in self.caveats],
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON form: roll, summary (grading), defects, frames and the settings used."""
        counts: dict[str, int] = {}
        for d in self.defects:
            counts[d.class_name] = counts.get(d.class_name, 0) + 1
        cal = self.settings.calibration
        return {
            "fabricnms_version": __version__,
            "roll": {
                "frames": len(self.frames),
                "length_m": round(self.length_mm / MM_PER_M, 4),
                "width_mm": round(self.width_mm, 1),
                "area_m2": round(self.width_mm * self.length_mm / MM_PER_M**2, 4),
                "first_frame": self.frames[0].name,
                "last_frame": self.frames[-1].name,
                **self.info,
            },
            "summary": {
                **self.grade.to_dict(),
                **self.verdict_summary(),
                "defects": len(self.defects),
                "graded_defects": sum(d.grade.excluded is None for d in self.defects),
                "defects_by_class": dict(sorted(counts.items())),
            },
            "defects": [d.to_dict() for d in self.defects],
            "frames": [
                {
                    "name": f.name,
                    "path": f.path,
                    "width": f.width,
                    "height": f.height,
                    "along_start_m": round(cal.mm_y(self.frame_offsets_px[f.path]) / MM_PER_M, 4),
                    "detections": len(f.detections),
                }
                for f in self.frames
            ],
            "settings": self.settings.to_dict(),
        }


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)


def _same_spot_pairs(frame: FrameRecord, min_overlap: float) -> list[list[int]]:
    """Index pairs ``[j, i]``, ``j < i``, of the frame's detections that overlap by at least
    ``min_overlap`` (``(IoU + IoMin) / 2`` of the xyxy boxes)."""
    if len(frame.detections) < 2:
        return []
    boxes = torch.tensor([d.box for d in frame.detections], dtype=torch.float64)
    iou, iomin = pairwise_iou_iomin(boxes, boxes)
    return (0.5 * (iou + iomin) >= min_overlap).triu(diagonal=1).nonzero().tolist()


def build_roll_report(
    frames: list[FrameRecord],
    class_names: list[str],
    settings: RollSettings | None = None,
    info: dict[str, str] | None = None,
) -> RollReport:
    """Join, place and grade the detections of a roll's frames (any order; sorted here), with
    the caveats the settings and the detections call for (:mod:`fabricnms.report.caveats`).

    Each frame's detections are xyxy frame pixels with 0-based labels into ``class_names``;
    ``info``: roll id, lot, operator, date ... as the report header shows them.
    """
    settings = settings or RollSettings()
    header = {k: v for k, v in (info or {}).items() if v}
    if not frames:
        raise FabricError("roll report: no frames")
    by_path = {f.path: f for f in frames}
    ordered = [by_path[p] for p in roll_order(by_path)]
    offsets = along_offsets_px((f.path, f.height) for f in ordered)
    cal = settings.calibration
    for f in ordered:
        for det in f.detections:
            if not 0 <= det.label < len(class_names):
                raise FabricError(
                    f"{f.path}: class index {det.label} outside 0..{len(class_names) - 1}"
                )

    # every detection gets a flat index; join same-spot boxes, then parts across frame edges
    parts = [(k, j) for k, f in enumerate(ordered) for j in range(len(f.detections))]
    index = {p: i for i, p in enumerate(parts)}
    uf = _UnionFind(len(parts))
    for k, f in enumerate(ordered):
        for j, i in _same_spot_pairs(f, settings.same_spot_overlap):
            uf.union(index[(k, j)], index[(k, i)])
    tol = settings.edge_tol_px
    for k in range(len(ordered) - 1):
        upper, lower = ordered[k], ordered[k + 1]
        for j, a in enumerate(upper.detections):
            if a.box[3] < upper.height - tol:
                continue
            for i, b in enumerate(lower.detections):
                if b.box[1] > tol or not compatible(class_names[a.label], class_names[b.label]):
                    continue
                overlap = min(a.box[2], b.box[2]) - max(a.box[0], b.box[0])
                narrower = min(a.box[2] - a.box[0], b.box[2] - b.box[0])
                if overlap > 0 and overlap >= settings.min_x_overlap * narrower:
                    uf.union(index[(k, j)], index[(k + 1, i)])

    groups: dict[int, list[tuple[int, int]]] = {}
    for p in parts:
        groups.setdefault(uf.find(index[p]), []).append(p)

    spans = [f.cloth_span for f in ordered]
    width_mm = settings.roll_width_mm or cal.mm_x(max(x1 - x0 for x0, x1 in spans))
    length_mm = cal.mm_y(sum(f.height for f in ordered))
    placed: list[tuple[PhysicalDefect, dict[str, Any]]] = []
    for members in groups.values():
        best_k, best_j = max(members, key=lambda p: ordered[p[0]].detections[p[1]].score)
        best = ordered[best_k].detections[best_j]
        name = class_names[best.label]
        boxes = [ordered[k].detections[j].box for k, j in members]
        tops = [offsets[ordered[k].path] for k, _ in members]
        lefts = [spans[k][0] for k, _ in members]  # x from the fabric's left edge
        phys = PhysicalDefect(
            x1_mm=cal.mm_x(min(b[0] - x for b, x in zip(boxes, lefts, strict=True))),
            x2_mm=cal.mm_x(max(b[2] - x for b, x in zip(boxes, lefts, strict=True))),
            y1_mm=cal.mm_y(min(t + b[1] for t, b in zip(tops, boxes, strict=True))),
            y2_mm=cal.mm_y(max(t + b[3] for t, b in zip(tops, boxes, strict=True))),
            kind=defect_kind(name),
        )
        info = {
            "class_id": best.label + 1,
            "class_name": name,
            "score": best.score,
            "frame_path": ordered[best_k].path,
            "frame_index": best_k,
            "frames": [ordered[k].name for k in sorted({k for k, _ in members})],
            "box_px": best.box,
        }
        placed.append((phys, info))
    placed.sort(key=lambda item: (item[0].y1_mm, item[0].x1_mm))

    result = grade([p for p, _ in placed], width_mm, length_mm, settings.rules)
    defects = [
        RollDefect(
            id=n + 1,
            kind=phys.kind,
            x1_mm=phys.x1_mm,
            x2_mm=phys.x2_mm,
            y1_m=phys.y1_mm / MM_PER_M,
            y2_m=phys.y2_mm / MM_PER_M,
            grade=g,
            **info,
        )
        for n, ((phys, info), g) in enumerate(zip(placed, result.defects, strict=True))
    ]
    return RollReport(
        settings=settings,
        class_names=list(class_names),
        frames=ordered,
        frame_offsets_px=offsets,
        width_mm=width_mm,
        length_mm=length_mm,
        defects=defects,
        grade=result,
        caveats=[
            c
            for c in (
                calibration_caveat(cal),
                roll_order_caveat(settings.roll_assumed),
                empty_roll_caveat(ordered),
            )
            if c is not None
        ],
        info=header,
    )
