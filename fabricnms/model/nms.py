"""Classic NMS baselines on one image's scored boxes: greedy (OpenCV) and Gaussian Soft-NMS.

Both take ``boxes [N, 4]`` xyxy pixels, ``scores [N]`` in [0, 1] and ``labels [N]`` 0-based,
suppress per class only, and return indices into the inputs (sorted by descending output
score). Neither is differentiable; they are the references the DNMS is measured against.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

from fabricnms.model.boxes import pairwise_iou, xyxy_to_xywh

GREEDY_IOU = 0.5  # the usual IoU threshold of dense detectors (FCOS, YOLOX, mmdet defaults)
SOFT_SIGMA = 0.5  # Gaussian Soft-NMS (Bodla et al. 2017) reference values
SOFT_FLOOR = 0.001


def greedy_nms(
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
    iou_threshold: float = GREEDY_IOU,
    score_threshold: float = 0.0,
    max_det: int = 300,
) -> Tensor:
    """Classic per-class greedy IoU NMS via ``cv2.dnn.NMSBoxesBatched``.

    Returns ``[K]`` int64 indices (on the input device), highest score first, ``K <= max_det``.
    """
    n = int(scores.shape[0])
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    xywh = xyxy_to_xywh(boxes.detach()).double().cpu().numpy()
    keep = cv2.dnn.NMSBoxesBatched(
        xywh,
        scores.detach().float().cpu().numpy(),
        labels.detach().cpu().numpy().astype(np.int32),
        float(score_threshold),
        float(iou_threshold),
        top_k=int(max_det),
    )
    idx = torch.as_tensor(np.asarray(keep, dtype=np.int64).reshape(-1), device=boxes.device)
    order = scores[idx].argsort(descending=True, stable=True)
    return idx[order][:max_det]


def soft_nms(
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
    sigma: float = SOFT_SIGMA,
    score_floor: float = SOFT_FLOOR,
    max_det: int = 300,
) -> tuple[Tensor, Tensor]:
    """Gaussian Soft-NMS per class: ``s_j <- s_j * exp(-IoU(M, b_j)^2 / sigma)``.

    Each step picks the highest remaining score M and decays every other box of its class in
    one vectorised update; boxes decayed below ``score_floor`` are dropped. Decay only lowers
    scores, so picks come out in final-score order and stopping after ``max_det`` picks gives
    exactly the top ``max_det`` of the full algorithm.

    Returns ``(indices [K], rescored [K])`` with ``K <= max_det``, highest score first.
    """
    n = int(scores.shape[0])
    if n == 0:
        empty = torch.zeros(0, dtype=torch.long, device=boxes.device)
        return empty, scores.new_zeros(0)
    boxes_d = boxes.detach()
    cur = scores.detach().clone()
    cur[cur < score_floor] = -1.0
    picked: list[Tensor] = []
    picked_scores: list[Tensor] = []
    steps = min(max_det, n)
    # Pick-and-decay needs one step per output; everything inside a step is vectorised.
    for _ in range(steps):
        best = int(cur.argmax())
        s_best = cur[best].clone()
        if float(s_best) < score_floor:
            break
        picked.append(torch.tensor(best, device=boxes.device))
        picked_scores.append(s_best)
        iou = pairwise_iou(boxes_d[best : best + 1], boxes_d)[0]
        decay = torch.exp(-(iou**2) / sigma)
        cur = torch.where(labels == labels[best], cur * decay, cur)
        cur[best] = -1.0
        cur = torch.where(cur < score_floor, torch.full_like(cur, -1.0), cur)
    if not picked:
        empty = torch.zeros(0, dtype=torch.long, device=boxes.device)
        return empty, scores.new_zeros(0)
    return torch.stack(picked), torch.stack(picked_scores).to(scores.dtype)
