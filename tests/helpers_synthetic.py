"""AP50 over classes for the detector tests, on top of the evaluator's VOC AP.

Boxes are ``xyxy`` pixels, labels 0-based in memory.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from fabricnms.engine.metrics import class_curve, curve_ap


def class_ap(
    gts: list[np.ndarray], dets: list[tuple[np.ndarray, np.ndarray]], ious: list[float]
) -> np.ndarray:
    """VOC AP ``[T]`` of one class (NaN without ground truth), as the evaluator scores it."""
    return curve_ap(class_curve(gts, dets, ious), len(ious))


def voc_ap50(
    preds: list[tuple[Tensor, Tensor, Tensor]],
    gts: list[tuple[Tensor, Tensor]],
    num_classes: int,
    iou_thr: float = 0.5,
) -> float:
    """Mean over the classes present in ``gts`` of :func:`class_ap`.

    preds: per image ``(boxes [K, 4] xyxy, scores [K], labels [K])``; gts: per image
    ``(boxes [M, 4] xyxy, labels [M])``.
    """
    aps = []
    for c in range(num_classes):
        frames_gt = [gb[gl == c].numpy() for gb, gl in gts]
        frames_det = [(pb[pl == c].numpy(), ps[pl == c].numpy()) for pb, ps, pl in preds]
        ap = class_ap(frames_gt, frames_det, [iou_thr])[0]
        if not np.isnan(ap):
            aps.append(float(ap))
    return float(np.mean(aps)) if aps else 0.0
