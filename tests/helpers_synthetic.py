"""A small VOC-style AP for the detector tests (crops come from ``fabricnms.data.synth``).

Boxes are ``xyxy`` pixels, labels 0-based in memory.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def voc_ap50(
    preds: list[tuple[Tensor, Tensor, Tensor]],
    gts: list[tuple[Tensor, Tensor]],
    num_classes: int,
    iou_thr: float = 0.5,
) -> float:
    """Mean over classes present in ``gts`` of the all-point-interpolated VOC AP.

    preds: per image ``(boxes [K, 4] xyxy, scores [K], labels [K])``; gts: per image
    ``(boxes [M, 4] xyxy, labels [M])``. A detection is a true positive when it overlaps a not
    yet matched ground truth of its class with IoU >= ``iou_thr`` (highest scores first).
    """
    from fabricnms.model.boxes import pairwise_iou

    aps = []
    for c in range(num_classes):
        n_gt = sum(int((g[1] == c).sum()) for g in gts)
        if n_gt == 0:
            continue
        records = []  # (score, tp)
        for (pb, ps, pl), (gb, gl) in zip(preds, gts, strict=True):
            d = pl == c
            boxes, scores = pb[d], ps[d]
            gt = gb[gl == c]
            order = scores.argsort(descending=True)
            used = torch.zeros(gt.shape[0], dtype=torch.bool)
            iou = pairwise_iou(boxes[order], gt) if gt.numel() else None
            for r, i in enumerate(order.tolist()):
                tp = False
                if iou is not None:
                    cand = iou[r].masked_fill(used, -1.0)
                    j = int(cand.argmax())
                    if float(cand[j]) >= iou_thr:
                        used[j] = True
                        tp = True
                records.append((float(scores[i]), tp))
        records.sort(key=lambda t: -t[0])
        tp = np.cumsum([r[1] for r in records], dtype=np.float64)
        fp = np.cumsum([not r[1] for r in records], dtype=np.float64)
        recall = tp / n_gt if len(records) else np.zeros(0)
        precision = tp / np.maximum(tp + fp, 1e-9) if len(records) else np.zeros(0)
        mrec = np.concatenate([[0.0], recall, [1.0]])
        mpre = np.concatenate([[0.0], precision, [0.0]])
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]
        idx = np.nonzero(mrec[1:] != mrec[:-1])[0]
        aps.append(float(((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]).sum()))
    return float(np.mean(aps)) if aps else 0.0
