"""The Tianchi 2019 fabric metric: ``score = 0.2 * ACC + 0.8 * mAP``.

- ACC: frame-level defect/normal accuracy. A frame is predicted defective when it has any
  detection with ``score >= acc_conf``; it is truly defective when it has any ground-truth box.
- mAP: PASCAL-VOC all-point-interpolated AP per class at IoU 0.1, 0.3 and 0.5 (greedy matching
  in descending score order; a detection whose best-overlapping ground truth is already taken
  is a false positive), averaged over the classes that have ground truth, then over the three
  IoU thresholds. IoU uses continuous pixel coordinates (no VOC "+1").

Inputs per frame are numpy arrays: boxes ``[N, 4]`` xyxy pixels, labels ``[N]`` 0-based ints,
scores ``[N]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

TIANCHI_IOUS = (0.1, 0.3, 0.5)


@dataclass(frozen=True)
class FrameBoxes:
    """Boxes of one frame: ``boxes [N, 4]`` xyxy px, ``labels [N]`` 0-based, ``scores [N]``.

    ``scores`` is ``None`` for ground truth.
    """

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray | None = None


@dataclass(frozen=True)
class TianchiResult:
    """``ap [C, T]`` per class and IoU threshold (NaN for classes without ground truth);
    ``recall_at_conf`` / ``precision_at_conf [C]``: of the detections scoring at least
    ``acc_conf``, the share of each class's boxes found with the right class at IoU >= 0.5 (the
    threshold nearest 0.5) and the share of them that are right (NaN without ground truth)."""

    score: float
    acc: float
    map: float
    map_per_iou: tuple[float, ...]
    ap: np.ndarray
    iou_thresholds: tuple[float, ...]
    num_gt: np.ndarray
    recall_at_conf: np.ndarray
    precision_at_conf: np.ndarray

    def as_dict(self, names: Sequence[str]) -> dict[str, object]:
        """Plain JSON-ready values; per-class AP is ``None`` where a class has no ground truth."""
        per_class = {}
        for c, name in enumerate(names):
            row = self.ap[c]
            per_class[name] = None if np.isnan(row).any() else float(row.mean())
        return {
            "score": self.score,
            "acc": self.acc,
            "mAP": self.map,
            "mAP_per_iou": {
                f"{t:g}": v for t, v in zip(self.iou_thresholds, self.map_per_iou, strict=True)
            },
            "AP_per_class": per_class,
        }


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU ``[N, 4] x [M, 4] -> [N, M]`` via :func:`fabricnms.model.boxes.pairwise_iou`."""
    import torch

    from fabricnms.model.boxes import pairwise_iou

    out = pairwise_iou(torch.from_numpy(a).double(), torch.from_numpy(b).double())
    return out.numpy()


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated AP: area under the monotone (right-max) precision envelope."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


@dataclass(frozen=True)
class ClassCurve:
    """Greedy matches of one class's detections in descending score order.

    ``scores [K]`` sorted descending; ``tp [K, T]`` whether detection ``k`` is a true positive at
    IoU threshold ``t``; ``npos`` the number of ground-truth boxes.
    """

    scores: np.ndarray
    tp: np.ndarray
    npos: int

    def recall_precision(self) -> tuple[np.ndarray, np.ndarray]:
        """Cumulative recall and precision ``[K, T]`` down the ranking."""
        ctp = np.cumsum(self.tp, axis=0)
        cfp = np.cumsum(~self.tp, axis=0)
        return ctp / self.npos, ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)

    def at_conf(self, conf: float, t: int) -> tuple[float, float]:
        """Recall and precision of the detections scoring ``>= conf`` at threshold index ``t``
        (precision 0 when no detection reaches ``conf``)."""
        kept = int(np.searchsorted(-self.scores, -conf, side="right"))
        if kept == 0:
            return 0.0, 0.0
        recall, precision = self.recall_precision()
        return float(recall[kept - 1, t]), float(precision[kept - 1, t])


def class_curve(
    gts: Sequence[np.ndarray],
    dets: Sequence[tuple[np.ndarray, np.ndarray]],
    iou_thresholds: Sequence[float],
) -> ClassCurve | None:
    """Greedy matching of one class (None when there is no ground truth).

    ``gts[i]``: ``[M_i, 4]`` boxes of frame ``i``; ``dets[i]``: (``[K_i, 4]`` boxes,
    ``[K_i]`` scores) of frame ``i``. A detection is matched to its best-overlapping ground
    truth; if that one is taken (or overlaps too little) the detection is a false positive.
    """
    npos = sum(len(g) for g in gts)
    thresholds = np.asarray(iou_thresholds, dtype=np.float64)
    if npos == 0:
        return None
    frame_idx = np.concatenate([np.full(len(d[1]), i) for i, d in enumerate(dets)] + [[]])
    if len(frame_idx) == 0:
        return ClassCurve(np.zeros(0), np.zeros((0, len(thresholds)), dtype=bool), npos)
    scores = np.concatenate([d[1] for d in dets])
    local = np.concatenate([np.arange(len(d[1])) for d in dets])
    order = np.argsort(-scores, kind="mergesort")
    ious = [box_iou(d[0], g) if len(g) else None for d, g in zip(dets, gts, strict=True)]
    tp = np.zeros((len(order), len(thresholds)), dtype=bool)
    used = [np.zeros((len(g), len(thresholds)), dtype=bool) for g in gts]
    for rank, k in enumerate(order):
        i = int(frame_idx[k])
        if ious[i] is None:
            continue
        row = ious[i][local[k]]
        j = int(np.argmax(row))
        hit = (row[j] >= thresholds) & ~used[i][j]
        tp[rank] = hit
        used[i][j] |= hit
    return ClassCurve(scores[order], tp, npos)


def class_curves(
    gts: Sequence[FrameBoxes], preds: Sequence[FrameBoxes], nc: int, ious: Sequence[float]
) -> list[ClassCurve | None]:
    """:func:`class_curve` of every class over aligned frames (``None``: no ground truth)."""
    curves = []
    for c in range(nc):
        det_c = []
        for p in preds:
            sel = p.labels == c
            scores = p.scores if p.scores is not None else np.ones(len(p.labels))
            det_c.append((p.boxes[sel], scores[sel]))
        curves.append(class_curve([g.boxes[g.labels == c] for g in gts], det_c, ious))
    return curves


def curve_ap(curve: ClassCurve | None, num_thresholds: int) -> np.ndarray:
    """VOC AP ``[T]`` of one class's :class:`ClassCurve`; NaN when there is no ground truth."""
    if curve is None:
        return np.full(num_thresholds, np.nan)
    if len(curve.scores) == 0:
        return np.zeros(num_thresholds)
    recall, precision = curve.recall_precision()
    return np.array([voc_ap(recall[:, t], precision[:, t]) for t in range(num_thresholds)])


def frame_accuracy(
    gts: Sequence[FrameBoxes], preds: Sequence[FrameBoxes], acc_conf: float
) -> float:
    """Fraction of frames whose defect/normal status is predicted correctly."""
    if not gts:
        return 0.0
    correct = 0
    for gt, pred in zip(gts, preds, strict=True):
        truly = len(gt.labels) > 0
        scores = pred.scores if pred.scores is not None else np.zeros(0)
        predicted = bool(len(scores) and float(scores.max()) >= acc_conf)
        correct += truly == predicted
    return correct / len(gts)


def tianchi_metrics(
    gts: Sequence[FrameBoxes],
    preds: Sequence[FrameBoxes],
    num_classes: int,
    acc_conf: float = 0.3,
    iou_thresholds: Sequence[float] = TIANCHI_IOUS,
) -> TianchiResult:
    """ACC, per-class AP at each threshold, mAP and the combined score for aligned frames."""
    if len(gts) != len(preds):
        raise ValueError(f"{len(gts)} ground-truth frames but {len(preds)} prediction frames")
    ap = np.full((num_classes, len(iou_thresholds)), np.nan)
    at_conf = np.full((num_classes, 2), np.nan)  # recall, precision at IoU 0.5 and acc_conf
    t50 = int(np.argmin(np.abs(np.asarray(iou_thresholds) - 0.5)))
    num_gt = np.zeros(num_classes, dtype=np.int64)
    for c, curve in enumerate(class_curves(gts, preds, num_classes, iou_thresholds)):
        ap[c] = curve_ap(curve, len(iou_thresholds))
        if curve is not None:
            num_gt[c] = curve.npos
            at_conf[c] = curve.at_conf(acc_conf, t50)
    present = num_gt > 0
    per_iou = ap[present].mean(axis=0) if present.any() else np.zeros(len(iou_thresholds))
    mean_ap = float(per_iou.mean())
    acc = frame_accuracy(gts, preds, acc_conf)
    return TianchiResult(
        score=0.2 * acc + 0.8 * mean_ap,
        acc=acc,
        map=mean_ap,
        map_per_iou=tuple(float(v) for v in per_iou),
        ap=ap,
        iou_thresholds=tuple(float(t) for t in iou_thresholds),
        num_gt=num_gt,
        recall_at_conf=at_conf[:, 0],
        precision_at_conf=at_conf[:, 1],
    )
