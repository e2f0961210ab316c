"""The operating point a checkpoint carries: the score threshold(s) ``predict`` and ``eval`` use
when ``--conf`` / ``--acc-conf`` is not given.

Stored under the checkpoint key ``operating_point`` as plain values::

    {"conf": float, "per_class": {class name: float}, "source": str,
     "false_alarms_per_frame": float, "frames": int, "area_frames": float}

``conf`` applies to every class without its own entry in ``per_class``. ``source`` says what
the thresholds were calibrated on; ``false_alarms_per_frame`` is the budget they were chosen
for: detections touching no labelled defect (IoU < :data:`TOUCH_IOU` with every labelled box,
whatever its class), per 2446x1000 px of fabric (:data:`FRAME_AREA_PX`).

:func:`calibrate` picks the lowest thresholds within that budget: every class gets an equal
share ``F / C``; a class with at least :data:`MIN_CLASS_SUPPORT` labelled boxes in the
calibration data gets its own threshold from its own false alarms, the others share ``conf``
(chosen from their pooled false alarms and pooled shares), so the whole set stays within ``F``.
A class (or the pooled rest) with no more false alarms than its share at *any* threshold gets
the threshold of all false alarms together within the whole budget ``F``, not the floor
:data:`MIN_CONF`: a few synthetic val frames without a false alarm of one class say nothing
about its rate on other fabric (the shipped model's 0.05 for ``pattern_skip`` was its main
false alarm on real fabric). Without labelled boxes (clean frames) there is one threshold for
all classes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from fabricnms.model.types import Detections

#: Checkpoint key of the operating point.
OP_KEY = "operating_point"
#: Threshold used when neither ``--conf`` nor the checkpoint gives one.
BUILTIN_CONF = 0.25
#: A Tianchi frame: the unit fabric area of false-alarm budgets.
FRAME_AREA_PX = 2446 * 1000
#: A detection with IoU below this against every labelled box is a false alarm.
TOUCH_IOU = 0.1
#: Labelled boxes a class needs in the calibration data for a threshold of its own.
MIN_CLASS_SUPPORT = 5
#: Thresholds are never set below this (the detections under it are noise).
MIN_CONF = 0.05
DEFAULT_FALSE_ALARMS = 0.1


@dataclass(frozen=True)
class OperatingPoint:
    """Score thresholds and where they came from (module docstring for the fields)."""

    conf: float
    per_class: dict[str, float] = field(default_factory=dict)
    source: str = ""
    false_alarms_per_frame: float = DEFAULT_FALSE_ALARMS
    frames: int = 0
    area_frames: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain values for the checkpoint (``torch.load(weights_only=True)`` safe)."""
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(obj: dict[str, Any]) -> OperatingPoint:
        """Inverse of :meth:`to_dict` (unknown keys ignored)."""
        names = {f.name for f in dataclasses.fields(OperatingPoint)}
        values = {k: v for k, v in obj.items() if k in names}
        values["per_class"] = {str(k): float(v) for k, v in values.get("per_class", {}).items()}
        return OperatingPoint(**values)

    def thresholds(self, class_names: Sequence[str]) -> torch.Tensor:
        """``[C]`` threshold of each 0-based class."""
        return torch.tensor([self.per_class.get(n, self.conf) for n in class_names])

    def floor(self) -> float:
        """The lowest threshold of any class (what the suppression must keep)."""
        return min([self.conf, *self.per_class.values()])

    def select(self, det: Detections, class_names: Sequence[str]) -> Detections:
        """The detections scoring at least their class's threshold."""
        if not self.per_class or len(det) == 0:
            return det.select(det.scores >= self.conf)
        limits = self.thresholds(class_names).to(det.scores.device)
        return det.select(det.scores >= limits[det.labels])

    def describe(self) -> str:
        """``conf 0.31 (+ 4 per-class thresholds)``."""
        text = f"conf {self.conf:g}"
        if self.per_class:
            text += f" (+ {len(self.per_class)} per-class thresholds)"
        return text


@dataclass(frozen=True)
class ConfChoice:
    """The thresholds in force for a run and where they came from (one line for the user)."""

    point: OperatingPoint
    origin: str  # "--conf", "checkpoint" or "built-in default"

    def line(self, option: str = "--conf") -> str:
        """E.g. ``Threshold: conf 0.31 from the checkpoint's operating point (...)``."""
        p = self.point
        if self.origin == "checkpoint":
            return (
                f"Threshold: {p.describe()} from the checkpoint's operating point "
                f"({p.source}; at most {p.false_alarms_per_frame:g} false alarms per 2446x1000 "
                f"of that fabric); {option} overrides it"
            )
        if self.origin == option:
            return f"Threshold: {p.describe()} from {option}"
        return (
            f"Threshold: {p.describe()}, the built-in default: this checkpoint has no calibrated "
            f"operating point (pass {option}, or calibrate one with `fabricnms adapt`)"
        )


def resolve_operating_point(
    conf: float | None,
    meta: dict[str, Any],
    option: str = "--conf",
    default: float = BUILTIN_CONF,
) -> ConfChoice:
    """``conf`` when given, else the checkpoint's operating point, else ``default``."""
    if conf is not None:
        return ConfChoice(OperatingPoint(conf=float(conf), source=option), option)
    stored = meta.get(OP_KEY)
    if isinstance(stored, dict) and "conf" in stored:
        return ConfChoice(OperatingPoint.from_dict(stored), "checkpoint")
    return ConfChoice(OperatingPoint(conf=default, source="built-in default"), "default")


@dataclass(frozen=True)
class CalibrationFrame:
    """One calibration frame: its detections (xyxy px, 0-based labels), its labelled boxes
    ``gt_boxes [M, 4]`` xyxy px (any class; ``M = 0`` for clean fabric), ``gt_labels [M]``
    0-based, and the fabric area it covers in px."""

    detections: Detections
    gt_boxes: torch.Tensor
    gt_labels: torch.Tensor
    area_px: float


def _lowest_threshold(
    false_alarm_scores: list[float], allowed: float, unresolved: float = MIN_CONF
) -> float:
    """Lowest threshold leaving at most ``allowed`` of these scores at or above it;
    ``unresolved`` when there are no more than ``allowed`` scores at all (no threshold is
    needed, so the data do not say how low one may go)."""
    ranked = sorted(false_alarm_scores, reverse=True)
    k = math.floor(allowed + 1e-9)
    if len(ranked) <= k:
        return unresolved
    # clearly above the (k+1)-th highest false alarm (float32 scores), rounded up to 4 decimals
    return max(MIN_CONF, min(1.0, math.ceil((ranked[k] + 5e-5) * 1e4) / 1e4))


def calibrate(
    frames: Sequence[CalibrationFrame],
    class_names: Sequence[str],
    false_alarms: float = DEFAULT_FALSE_ALARMS,
    source: str = "",
) -> OperatingPoint:
    """The lowest thresholds with at most ``false_alarms`` per 2446x1000 px (module docstring)."""
    from fabricnms.model.boxes import pairwise_iou

    num = len(class_names)
    area = sum(f.area_px for f in frames) / FRAME_AREA_PX
    by_class: list[list[float]] = [[] for _ in range(num)]
    support = [0] * num
    for f in frames:
        for label in f.gt_labels.tolist():
            support[int(label)] += 1
        det = f.detections
        if len(det) == 0:
            continue
        touching = torch.zeros(len(det), dtype=torch.bool)
        if len(f.gt_boxes):
            touching = pairwise_iou(det.boxes.float(), f.gt_boxes.float()).max(1).values
            touching = touching >= TOUCH_IOU
        for label, score in zip(
            det.labels[~touching].tolist(), det.scores[~touching].tolist(), strict=True
        ):
            by_class[int(label)].append(float(score))
    share = false_alarms * area / num
    # Too few false alarms to resolve a share (none above any threshold): no evidence that the
    # class may go lower than all classes together with the whole budget.
    floor = _lowest_threshold([s for scores in by_class for s in scores], false_alarms * area)
    own = [c for c in range(num) if support[c] >= MIN_CLASS_SUPPORT]
    pooled = [s for c in range(num) if c not in own for s in by_class[c]]
    rest = num - len(own)
    conf = _lowest_threshold(pooled, share * rest, floor) if rest else MIN_CONF
    per_class = {class_names[c]: _lowest_threshold(by_class[c], share, floor) for c in own}
    if not rest and per_class:
        conf = max(per_class.values())
    return OperatingPoint(
        conf=conf,
        per_class=per_class,
        source=source,
        false_alarms_per_frame=false_alarms,
        frames=len(frames),
        area_frames=round(area, 4),
    )
