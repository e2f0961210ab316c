"""Spatial prior and dense (one-to-many) label assignment.

All boxes are ``xyxy`` in pixels of the network input; ``points [L, 2]`` are location centres
``(x, y)`` and ``strides [L]`` their FPN strides (as in
:class:`~fabricnms.model.types.DenseOutput`).

Level choice follows the ground truth's longest side, with one octave of overlap between
neighbouring levels, so a 35 x 1000 warp line and a 2446 x 250 weft band go to the coarsest
level (whose ``exp`` distances reach them) and a 15 x 15 knot to the finest; a box thinner
than a level's stride is moved to a finer level, so that locations lie inside it (a 13 x 512
warp line goes to stride 8, see :func:`_fit_thin`). Within a box the
candidates lie in a central region that keeps at least ``radius`` strides around the centre on
each axis but grows with the box (``center_frac`` of each half-side), i.e. along the long axis
of a thin defect. Candidates lie strictly inside the box, so positive ``ltrb`` can represent it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fabricnms.model.boxes import pairwise_iou

INF = float("inf")


def level_ranges(strides: tuple[int, ...]) -> dict[int, tuple[float, float]]:
    """Longest-side range ``[lo, hi)`` in pixels for each stride.

    Level ``s`` takes boxes with longest side in ``[4 s, 16 s)``; the finest level has no
    lower bound and the coarsest no upper bound.
    """
    ordered = sorted(strides)
    return {
        s: (0.0 if i == 0 else 4.0 * s, INF if i == len(ordered) - 1 else 16.0 * s)
        for i, s in enumerate(ordered)
    }


def candidate_mask(
    points: Tensor,
    strides: Tensor,
    gt_boxes: Tensor,
    radius: float = 2.5,
    center_frac: float = 0.5,
) -> Tensor:
    """Which locations may be positives of which ground truth: ``[L, M]`` bool.

    A location qualifies for box ``j`` when its level's range holds the box's longest side and
    the point lies strictly inside the box and inside the central region (half-extent
    ``max(radius * stride, center_frac * half_side)`` per axis). A box left with no candidate
    (smaller than a stride) gets the location of its level nearest to its centre.

    Args:
        points: ``[L, 2]`` location centres (x, y), pixels.
        strides: ``[L]`` stride of each location.
        gt_boxes: ``[M, 4]`` xyxy pixels.
    """
    n_loc, m = points.shape[0], gt_boxes.shape[0]
    if m == 0:
        return torch.zeros(n_loc, 0, dtype=torch.bool, device=points.device)
    uniq = tuple(int(s) for s in torch.unique(strides).tolist())
    ranges = level_ranges(uniq)
    longest = (gt_boxes[:, 2:] - gt_boxes[:, :2]).amax(dim=1)  # [M]
    lo = torch.tensor([ranges[int(s)][0] for s in uniq], device=points.device)
    hi = torch.tensor([ranges[int(s)][1] for s in uniq], device=points.device)
    level_of = torch.bucketize(
        strides, torch.tensor(uniq, device=points.device, dtype=strides.dtype)
    )
    level_ok = (longest[None, :] >= lo[level_of][:, None]) & (
        longest[None, :] < hi[level_of][:, None]
    )
    level_ok = _fit_thin(level_ok, strides, gt_boxes, uniq)

    x, y = points[:, 0:1], points[:, 1:2]  # [L, 1]
    x1, y1, x2, y2 = gt_boxes.unbind(-1)  # [M]
    inside = (x > x1) & (x < x2) & (y > y1) & (y < y2)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    s = strides[:, None].to(points.dtype)
    half_x = torch.maximum(radius * s, center_frac * (x2 - x1)[None, :] / 2)
    half_y = torch.maximum(radius * s, center_frac * (y2 - y1)[None, :] / 2)
    central = ((x - cx).abs() < half_x) & ((y - cy).abs() < half_y)
    cand = level_ok & inside & central

    empty = ~cand.any(dim=0)
    if bool(empty.any()):
        dist = (points[:, None, :] - torch.stack([cx, cy], -1)[None]).abs().amax(-1)  # [L, M]
        dist = dist.masked_fill(~level_ok, INF)
        nearest = dist.argmin(dim=0)
        cols = torch.nonzero(empty).squeeze(1)
        cand[nearest[cols], cols] = True
    return cand


def _fit_thin(level_ok: Tensor, strides: Tensor, gt_boxes: Tensor, uniq: tuple[int, ...]) -> Tensor:
    """Restrict ``level_ok [L, M]`` to levels whose stride fits the box's shortest side.

    Locations lie ``stride`` apart, so a box thinner than the stride may contain none of them:
    its only candidate would sit outside the box, where one ``ltrb`` target is negative, the box
    cannot be represented and the log-L1 target of that side is clamped to 0.1 px (teaching
    near-zero thickness; 13 px warp lines at stride 32 had exactly one such candidate). A box
    keeps the levels of its longest side whose stride is at most ``max(shortest side, finest
    stride)``; where none is left (a 13 px warp line 1000 px long) it goes to the coarsest level
    within that bound.
    """
    short = (gt_boxes[:, 2:] - gt_boxes[:, :2]).amin(dim=1)  # [M]
    cap = short.clamp(min=float(min(uniq)))
    fits = strides[:, None] <= cap[None, :]  # [L, M]
    ok = level_ok & fits
    lost = ~ok.any(dim=0)
    if bool(lost.any()):
        grid = torch.tensor(uniq, device=strides.device, dtype=strides.dtype)
        best = torch.where(grid[:, None] <= cap[None, :], grid[:, None], grid.new_zeros(())).amax(0)
        ok[:, lost] = strides[:, None] == best[None, lost]
    return ok


@dataclass
class DenseAssignment:
    """One-to-many assignment of one image.

    gt_index: ``[L]`` int64, index of the assigned ground truth, -1 for background.
    candidates: ``[L, M]`` bool spatial prior (see :func:`candidate_mask`).
    """

    gt_index: Tensor
    candidates: Tensor

    @property
    def foreground(self) -> Tensor:
        """``[L]`` bool, locations with an assigned ground truth."""
        return self.gt_index >= 0


@torch.no_grad()
def assign_dense(
    points: Tensor,
    strides: Tensor,
    pred_boxes: Tensor,
    cls_prob: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    topk: int = 10,
    iou_weight: float = 3.0,
) -> DenseAssignment:
    """SimOTA-style dynamic-k assignment among the candidates (no gradient).

    Cost ``-log p_i(c_j) - iou_weight * log IoU(b_i, g_j)``; ground truth ``j`` takes its
    ``k_j = max(1, floor(sum of its top-``topk`` candidate IoUs))`` cheapest candidates; a
    location claimed by several boxes keeps the cheapest.

    Args:
        points: ``[L, 2]``; strides: ``[L]``.
        pred_boxes: ``[L, 4]`` predicted xyxy boxes.
        cls_prob: ``[L, C]`` one-to-many class probabilities.
        gt_boxes: ``[M, 4]`` xyxy; gt_labels: ``[M]`` int64 0-based.
    """
    n_loc, m = points.shape[0], gt_boxes.shape[0]
    gt_index = torch.full((n_loc,), -1, dtype=torch.long, device=points.device)
    cand = candidate_mask(points, strides, gt_boxes)
    if m == 0:
        return DenseAssignment(gt_index=gt_index, candidates=cand)
    iou = pairwise_iou(pred_boxes, gt_boxes) * cand  # [L, M]
    p = cls_prob[:, gt_labels].clamp(min=1e-8)
    cost = -p.log() - iou_weight * (iou + 1e-8).log()
    cost = cost.masked_fill(~cand, INF)

    k = min(topk, n_loc)
    dyn_k = iou.topk(k, dim=0).values.sum(0).floor().clamp(min=1).long()  # [M]
    dyn_k = torch.minimum(dyn_k, cand.sum(0))
    order = cost.topk(k, dim=0, largest=False).indices  # [k, M]
    rank_ok = torch.arange(k, device=points.device)[:, None] < dyn_k[None, :]
    chosen = torch.zeros_like(cand)
    chosen.scatter_(0, order, rank_ok)
    chosen &= cand
    fg = chosen.any(dim=1)
    best = cost.masked_fill(~chosen, INF).argmin(dim=1)
    gt_index[fg] = best[fg]
    return DenseAssignment(gt_index=gt_index, candidates=cand)
