"""Classic NMS baselines on one image's scored boxes: greedy (OpenCV) and Gaussian Soft-NMS.

Both take ``boxes [N, 4]`` xyxy pixels, ``scores [N]`` in [0, 1] and ``labels [N]`` 0-based,
suppress per class (or across classes with ``agnostic``) over ALL the boxes, and return
indices into the inputs sorted by descending output score; ``max_det`` only cuts the output.
:func:`expand_classes` turns candidates with a score per class into one entry per (candidate,
class) for the ``top_classes`` best classes, and :func:`vote_boxes` replaces each kept box by
the score-weighted mean of the boxes it suppressed. Neither suppression is differentiable;
they are the references the DNMS is measured against (:func:`fabricnms.model.postprocess.
suppress` wires them, optionally followed by :mod:`fabricnms.model.merge`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

from fabricnms.model.boxes import pairwise_iou, xyxy_to_xywh

GREEDY_IOU = 0.5  # the usual IoU threshold of dense detectors (FCOS, YOLOX, mmdet defaults)
SOFT_SIGMA = 0.5  # Gaussian Soft-NMS (Bodla et al. 2017) reference values
SOFT_FLOOR = 0.001


@dataclass(frozen=True)
class NmsSettings:
    """Knobs of the classic suppressions.

    iou: greedy IoU threshold (a box is suppressed by a kept one overlapping it by more).
    agnostic: suppress across classes (else only within a class).
    top_classes: entries per candidate, its best classes by score (multi-class candidates).
    vote_iou: score-weighted box voting over the entries (same class unless agnostic) with at
        least this IoU to the kept box; 0 keeps the kept box as it is.
    sigma: Gaussian Soft-NMS decay ``exp(-IoU^2 / sigma)``.
    """

    iou: float = GREEDY_IOU
    agnostic: bool = False
    top_classes: int = 1
    vote_iou: float = 0.0
    sigma: float = SOFT_SIGMA

    def __post_init__(self) -> None:
        if not (0.0 < self.iou <= 1.0 and 0.0 <= self.vote_iou <= 1.0 and self.sigma > 0):
            raise ValueError("iou must lie in (0, 1], vote_iou in [0, 1] and sigma be > 0")
        if self.top_classes < 1:
            raise ValueError("top_classes must be >= 1")


def expand_classes(class_scores: Tensor, top_classes: int, floor: float) -> tuple[Tensor, Tensor]:
    """``class_scores [N, C]`` -> ``(rows [M], labels [M])``: each candidate's ``top_classes``
    best classes whose score is at least ``floor``, ordered by candidate then class rank."""
    k = min(top_classes, class_scores.shape[1])
    top, labels = class_scores.topk(k, dim=1)
    ok = top >= floor
    rows = torch.arange(class_scores.shape[0], device=class_scores.device)[:, None].expand(-1, k)
    return rows[ok], labels[ok]


def greedy_nms(
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
    iou_threshold: float = GREEDY_IOU,
    score_threshold: float = 0.0,
    max_det: int = 300,
    agnostic: bool = False,
) -> Tensor:
    """Greedy IoU NMS via ``cv2.dnn.NMSBoxesBatched`` (per class) or ``cv2.dnn.NMSBoxes``.

    OpenCV's ``top_k`` keeps the ``top_k`` highest boxes *before* suppressing, so it is left
    at 0 (all boxes): a low-ranked box that overlaps no kept box is kept whatever its rank.
    Returns ``[K]`` int64 indices (on the input device), highest score first, ``K <= max_det``.
    """
    if int(scores.shape[0]) == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    xywh = xyxy_to_xywh(boxes.detach()).double().cpu().numpy()
    conf = scores.detach().float().cpu().numpy()
    if agnostic:
        keep = cv2.dnn.NMSBoxes(xywh, conf, float(score_threshold), float(iou_threshold))
    else:
        classes = labels.detach().cpu().numpy().astype(np.int32)
        keep = cv2.dnn.NMSBoxesBatched(
            xywh, conf, classes, float(score_threshold), float(iou_threshold)
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
    agnostic: bool = False,
) -> tuple[Tensor, Tensor]:
    """Gaussian Soft-NMS per class (or across): ``s_j <- s_j * exp(-IoU(M, b_j)^2 / sigma)``.

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
        cur = cur * decay if agnostic else torch.where(labels == labels[best], cur * decay, cur)
        cur[best] = -1.0
        cur = torch.where(cur < score_floor, torch.full_like(cur, -1.0), cur)
    if not picked:
        empty = torch.zeros(0, dtype=torch.long, device=boxes.device)
        return empty, scores.new_zeros(0)
    return torch.stack(picked), torch.stack(picked_scores).to(scores.dtype)


def vote_boxes(
    kept: Tensor,
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
    vote_iou: float,
    agnostic: bool = False,
) -> Tensor:
    """Score-weighted box voting: ``[K, 4]`` boxes, each the mean of the ``boxes [N, 4]`` with
    IoU >= ``vote_iou`` to kept box ``kept[k]`` (same label unless ``agnostic``), weighted by
    ``scores [N]``. The kept box itself always votes."""
    iou = pairwise_iou(boxes[kept], boxes)  # [K, N]
    near = iou >= vote_iou
    if not agnostic:
        near &= labels[kept][:, None] == labels[None, :]
    near[torch.arange(len(kept), device=kept.device), kept] = True
    w = near.to(boxes.dtype) * scores[None, :]
    return (w @ boxes) / w.sum(dim=1, keepdim=True)
