"""Operating-point thresholds from the false alarms of calibration frames.

A false alarm is a detection touching no labelled defect (IoU < :data:`TOUCH_IOU` with every
labelled box, whatever its class); the budget ``F`` counts them per 2446x1000 px of fabric.
:func:`calibrate` picks the lowest thresholds within that budget: every class gets an equal
share ``F / C``; a class with at least :data:`MIN_CLASS_SUPPORT` labelled boxes in the
calibration data gets its own threshold from its own false alarms, the others share ``conf``
(chosen from their pooled false alarms and pooled shares), so the whole set stays within ``F``.
A class (or the pooled rest) with no more false alarms than its share at *any* threshold gets
the threshold of all false alarms together within the whole budget ``F``, not the floor
:data:`MIN_CONF`: a few synthetic val frames without a false alarm of one class say nothing
about its rate on other fabric (the shipped model's 0.05 for ``pattern_skip`` was its main
false alarm on real fabric). Without labelled boxes (clean frames) there is one threshold for
all classes. When the budget allows less than one false alarm on the material (a part of a
frame: ``adapt``), the threshold goes just above the highest one, which on fabric ``n`` times
the area lets through about ``n``: small material cannot show a rate of 0.1 per frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from fabricnms.engine.operating_point import DEFAULT_FALSE_ALARMS, FRAME_AREA_PX, OperatingPoint
from fabricnms.model.types import Detections

#: A detection with IoU below this against every labelled box is a false alarm.
TOUCH_IOU = 0.1
#: Labelled boxes a class needs in the calibration data for a threshold of its own.
MIN_CLASS_SUPPORT = 5
#: Thresholds are never set below this (the detections under it are noise).
MIN_CONF = 0.05


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
