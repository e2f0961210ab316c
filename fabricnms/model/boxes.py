"""Box utilities. All boxes are ``xyxy`` in absolute pixels, ``x2 > x1``, ``y2 > y1``.

Pairwise functions take ``a [..., N, 4]`` and ``b [..., M, 4]`` and return ``[..., N, M]``;
elementwise functions take two ``[..., 4]`` tensors and return ``[...]``.
"""

from __future__ import annotations

import torch
from torch import Tensor

AREA_EPS = 1e-7  # floor of every area divided by (IoU, IoMin, GIoU), here and in the kernels


def xyxy_to_xywh(boxes: Tensor) -> Tensor:
    """``[..., 4]`` xyxy -> ``[..., 4]`` xywh (top-left corner, width, height)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([x1, y1, x2 - x1, y2 - y1], dim=-1)


def xywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``[..., 4]`` xywh -> ``[..., 4]`` xyxy."""
    x, y, w, h = boxes.unbind(-1)
    return torch.stack([x, y, x + w, y + h], dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """``[..., 4]`` -> ``[...]`` area (zero for degenerate boxes)."""
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(
        min=0
    )


def _pairwise_inter(a: Tensor, b: Tensor) -> Tensor:
    # Per-coordinate [..., N, M] ops: several times faster on CPU than [N,1,2] x [1,M,2].
    ax1, ay1, ax2, ay2 = (a[..., :, None, i] for i in range(4))
    bx1, by1, bx2, by2 = (b[..., None, :, i] for i in range(4))
    w = (torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1)).clamp(min=0)
    h = (torch.minimum(ay2, by2) - torch.maximum(ay1, by1)).clamp(min=0)
    return w * h


def pairwise_iou(a: Tensor, b: Tensor) -> Tensor:
    """Intersection over union, ``[..., N, 4] x [..., M, 4] -> [..., N, M]``."""
    inter = _pairwise_inter(a, b)
    union = box_area(a)[..., :, None] + box_area(b)[..., None, :] - inter
    return inter / union.clamp(min=AREA_EPS)


def pairwise_iomin(a: Tensor, b: Tensor) -> Tensor:
    """Intersection over the smaller box's area, ``[..., N, M]``.

    Two fragments of one long thin defect have a small IoU but an IoMin near 1, which is why
    the DNMS spatial term and tile merging use it.
    """
    inter = _pairwise_inter(a, b)
    smaller = torch.minimum(box_area(a)[..., :, None], box_area(b)[..., None, :])
    return inter / smaller.clamp(min=AREA_EPS)


def pairwise_iou_iomin(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """IoU and IoMin ``[..., N, M]`` from one pairwise intersection (DNMS's overlap
    ``(1 - mu) IoU + mu IoMin`` and the roll report's same-spot test use both)."""
    inter = _pairwise_inter(a, b)
    area_a, area_b = box_area(a)[..., :, None], box_area(b)[..., None, :]
    iou = inter / (area_a + area_b - inter).clamp(min=AREA_EPS)
    return iou, inter / torch.minimum(area_a, area_b).clamp(min=AREA_EPS)


def pairwise_giou(a: Tensor, b: Tensor) -> Tensor:
    """Generalised IoU in ``[-1, 1]``, ``[..., N, M]``."""
    inter = _pairwise_inter(a, b)
    union = box_area(a)[..., :, None] + box_area(b)[..., None, :] - inter
    iou = inter / union.clamp(min=AREA_EPS)
    lt = torch.minimum(a[..., :, None, :2], b[..., None, :, :2])
    rb = torch.maximum(a[..., :, None, 2:], b[..., None, :, 2:])
    hull = (rb - lt).clamp(min=0).prod(-1)
    return iou - (hull - union) / hull.clamp(min=AREA_EPS)


def elementwise_giou(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """IoU and GIoU of matching boxes, ``[..., 4] x [..., 4] -> ([...], [...])``."""
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = box_area(a) + box_area(b) - inter
    iou = inter / union.clamp(min=AREA_EPS)
    hull = (torch.maximum(a[..., 2:], b[..., 2:]) - torch.minimum(a[..., :2], b[..., :2])).prod(-1)
    return iou, iou - (hull - union) / hull.clamp(min=AREA_EPS)


def clip_boxes(boxes: Tensor, width: float, height: float) -> Tensor:
    """Clip ``[..., 4]`` xyxy boxes to the image ``[0, width] x [0, height]``."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(
        [x1.clamp(0, width), y1.clamp(0, height), x2.clamp(0, width), y2.clamp(0, height)], dim=-1
    )
