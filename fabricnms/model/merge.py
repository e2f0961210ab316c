"""Duplicate merging and line joining of scored boxes: the stage after any suppression.

Boxes that describe one defect are grouped in greedy (score) order: two boxes of one class are
one defect when their overlap ``(1 - mu) IoU + mu IoMin`` reaches ``dup_overlap`` or when they
are collinear segments of one horizontal or vertical line (a warp or weft line cut by tiles or
seen in pieces by the detector). A survivor's box grows over the parts (IoU below
``part_iou``) it absorbed, and a line joined from segments spans their union along the line.

:class:`~fabricnms.model.dnms.DifferentiableNMS` runs :func:`merge_groups` on its fused
hypotheses (then re-fuses the survivors' plan columns); :func:`merge_detections` applies the
same grouping to the output of a classic suppression (``greedy+merge``, ``soft+merge``).
Boxes are ``xyxy`` pixels; every torch function works on a padded batch ``[B, K, ...]``.
Inference (the fast DNMS and :func:`merge_detections`) runs the same rules compiled, in
:mod:`fabricnms.model.merge_kernel`; the torch functions here are the differentiable DNMS's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import astuple, dataclass

import numpy as np
import torch
from torch import Tensor

from fabricnms.model.boxes import pairwise_iou_iomin
from fabricnms.model.merge_kernel import line_span_kernel, merge_groups_kernel
from fabricnms.model.types import Detections


@dataclass(frozen=True)
class MergeSettings:
    """When two boxes are one defect (see the module docstring).

    iomin_weight: ``mu`` of the overlap. dup_overlap: overlap from which two boxes of one class
    are duplicates. part_iou: an absorbed box with IoU below this to its survivor is a part
    and widens it. line_aspect: boxes at least this elongated are line segments. line_align:
    cross-axis IoMin from which two segments lie on one line. line_gap: segments join across a
    gap along the line of up to this times the shorter one's length. rounds: merge-then-recheck
    rounds (a chain of fragments needs one per link).
    """

    iomin_weight: float = 0.5
    dup_overlap: float = 0.5
    part_iou: float = 0.5
    line_aspect: float = 4.0
    line_align: float = 0.7
    line_gap: float = 1.0
    rounds: int = 3


def merge_detections(det: Detections, s: MergeSettings | None = None) -> Detections:
    """One detection per defect: ``det`` grouped by :func:`merge_groups` in score order.

    Each group keeps its best-scoring member (score, label, box and extras); a joined line's
    box spans its segments along the line. Unlike in the DNMS, a survivor is not widened over
    the parts it absorbed: the DNMS re-fuses a widened box from its plan rows, while here a
    weak large box around a confident small one would simply blow it up. Returns the
    survivors sorted by descending score. Runs the compiled grouping
    (:mod:`fabricnms.model.merge_kernel`, no gradient).
    """
    s = s or MergeSettings()
    det = det.select(det.scores.argsort(descending=True, stable=True))
    if len(det) < 2:
        return det
    boxes = det.boxes.detach().to("cpu", torch.float64).contiguous().numpy()
    labels = det.labels.to("cpu", torch.long).contiguous().numpy()
    no_line = np.zeros(len(det), dtype=np.bool_)
    _, owner, span, line = merge_groups_kernel(boxes, labels, boxes, no_line, *astuple(s))
    joined = torch.from_numpy(line_span_kernel(boxes, span, line))
    merged = dataclasses.replace(det, boxes=joined.to(det.boxes.device, det.boxes.dtype))
    keep = torch.from_numpy(np.flatnonzero(owner == np.arange(len(det))))
    return merged.select(keep.to(det.boxes.device))


def same_defect(boxes: Tensor, labels: Tensor, s: MergeSettings) -> tuple[Tensor, Tensor, Tensor]:
    """Relations of fused boxes ``[B, K, 4]`` (labels ``[B, K]``), each ``[B, K, K]``.

    Returns ``(same, iou, segments)``: ``same`` (bool) the two are one defect, ``iou`` their
    IoU, ``segments`` (bool, a subset of ``same``) they are one defect only as collinear
    segments of one line: their overlap alone is below ``s.dup_overlap``.
    """
    iou, iomin = pairwise_iou_iomin(boxes, boxes)
    mu = s.iomin_weight
    same_class = labels[:, :, None] == labels[:, None, :]
    overlapping = (1 - mu) * iou + mu * iomin >= s.dup_overlap
    collinear = collinear_segments(boxes, s.line_aspect, s.line_align, s.line_gap)
    segments = collinear & ~overlapping & same_class
    return (overlapping & same_class) | segments, iou, segments


def merge_groups(
    boxes: Tensor,
    labels: Tensor,
    valid: Tensor,
    s: MergeSettings,
    span: Tensor | None = None,
    line: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Group hypotheses that are one defect; survivors grow over absorbed parts.

    Args:
        boxes: ``[B, K, 4]`` fused boxes sorted by descending score. labels: ``[B, K]``.
        valid: ``[B, K]`` bool. span / line: ``[B, K, 4]`` / ``[B, K]`` the spans and
        line flags of an earlier merge pass (default: each box its own span, no lines).

    Returns:
        ``(boxes [B, K, 4], owner [B, K], span [B, K, 4], line [B, K])``. ``owner[b, j]``
        is the index of the survivor hypothesis ``j`` belongs to (``j`` itself for
        survivors and for invalid hypotheses; survivors are the valid ``j`` with
        ``owner == j``). A survivor's box grows to the union of the parts (IoU below
        ``s.part_iou``) it absorbed. ``line`` marks survivors that absorbed collinear segments
        (a line joined from pieces) and ``span`` is the union of those segments' boxes.
        Suppression follows exact greedy order (Cluster-NMS fixpoint); each round is
        ``O(K^2)`` tensor work, with ``owner`` re-pointed in ``O(K)``.
    """
    bsz, kk = valid.shape
    arange = torch.arange(kk, device=boxes.device).expand(bsz, kk)
    owner = arange
    span = boxes if span is None else span
    line = torch.zeros_like(valid) if line is None else line
    stronger = torch.ones(kk, kk, dtype=torch.bool, device=boxes.device).triu(diagonal=1)
    alive = valid
    for _ in range(s.rounds):
        same, iou, segments = same_defect(boxes, labels, s)
        sup = same & stronger & alive[:, :, None] & alive[:, None, :]  # [B, k, j]
        keep = greedy_keep(sup, alive)
        by_kept = sup & keep[:, :, None]
        absorbed = by_kept.any(dim=1)  # [B, j]
        if not bool(absorbed.any()):
            break
        # Each absorbed j goes to its strongest kept suppressor, with everything it owned.
        first = torch.where(absorbed, by_kept.int().argmax(dim=1), arange)  # [B, j]
        owner = first.gather(1, owner)
        at_first = first[:, None, :]
        part = absorbed & (iou.gather(1, at_first)[:, 0] < s.part_iou)
        boxes = grow(boxes, first, part)
        # A segment (or a joined line) hands its span on to the survivor.
        seg = absorbed & (segments.gather(1, at_first)[:, 0] | line)
        span = grow(span, first, seg)
        line = (line & keep) | (torch.zeros_like(first).scatter_add(1, first, seg.long()) > 0)
        alive = keep
        if not bool(part.any()):
            break
    return boxes, owner, span, line & alive


def greedy_keep(sup: Tensor, valid: Tensor) -> Tensor:
    """Exact greedy-NMS survivors ``[B, K]`` of the relation ``sup [B, K, K]``.

    ``sup[b, k, j]``: ``k`` (earlier, i.e. stronger) suppresses ``j``. A hypothesis survives when
    it is valid and no survivor suppresses it. Iterated from ``keep = valid`` (Cluster-NMS):
    pass ``t`` settles at least the ``t``-th strongest hypothesis, and in practice a handful of
    passes settle all (the count is the longest chain of alternating suppressions).
    """
    keep = valid
    for _ in range(sup.shape[1]):
        new_keep = valid & ~(sup & keep[:, :, None]).any(dim=1)
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    return keep


def grow(boxes: Tensor, into: Tensor, part: Tensor) -> Tensor:
    """Boxes ``[B, K, 4]`` where each ``part`` hypothesis ``j`` widens box ``into[b, j]``."""
    big = torch.finfo(boxes.dtype).max
    idx = into[..., None].expand(-1, -1, 2)
    lo = torch.where(part[..., None], boxes[..., :2], boxes.new_tensor(big))
    hi = torch.where(part[..., None], boxes[..., 2:], boxes.new_tensor(-big))
    return torch.cat(
        [
            boxes[..., :2].scatter_reduce(1, idx, lo, "amin", include_self=True),
            boxes[..., 2:].scatter_reduce(1, idx, hi, "amax", include_self=True),
        ],
        dim=-1,
    )


def unsort(sorted_values: Tensor, order: Tensor) -> Tensor:
    """Inverse of ``values.gather(1, order)``: ``out[b, order[b, j]] = sorted_values[b, j]``."""
    return torch.empty_like(sorted_values).scatter_(1, order, sorted_values)


def line_span(fused: Tensor, joined: Tensor, line: Tensor) -> Tensor:
    """Fused boxes ``[B, K, 4]`` of joined lines stretched along the line to ``joined``'s ends.

    Where ``line [B, K]`` is set, the coordinates along the long axis of ``joined [B, K, 4]``
    (the union of the line's segments) become the union of ``fused`` and ``joined``: the robust
    fusion drops the rows of the end segments as outliers, yet their ends are the line's. The
    coordinates across the line stay the robust fusion.
    """
    along_x = (joined[..., 2] - joined[..., 0]) >= (joined[..., 3] - joined[..., 1])
    along = torch.stack([along_x, ~along_x, along_x, ~along_x], dim=-1) & line[..., None]
    span = torch.cat(
        [
            torch.minimum(fused[..., :2], joined[..., :2]),
            torch.maximum(fused[..., 2:], joined[..., 2:]),
        ],
        dim=-1,
    )
    return torch.where(along, span, fused)


def collinear_segments(boxes: Tensor, aspect: float, align: float, gap: float = 0.0) -> Tensor:
    """``[B, K, K]`` bool: the two boxes are segments of one horizontal or vertical line.

    Both longer along the same axis, at least one ``long / short >= aspect``, aligned across
    the axis (1-D IoMin of the cross-axis intervals ``>= align``) and along it overlapping,
    touching, or apart by at most ``gap`` times the shorter segment's length.
    """
    w = (boxes[..., 2] - boxes[..., 0]).clamp(min=1e-6)
    h = (boxes[..., 3] - boxes[..., 1]).clamp(min=1e-6)
    out = torch.zeros_like(boxes[..., 0, None] < boxes[..., None, :, 0])
    for along, across, length, thick in ((0, 1, w, h), (1, 0, h, w)):
        elong = length / thick >= aspect
        flat = length >= thick
        shape_ok = (elong[:, :, None] | elong[:, None, :]) & flat[:, :, None] & flat[:, None, :]
        inter_along = _interval_inter(boxes[..., along], boxes[..., along + 2])
        inter_across = _interval_inter(boxes[..., across], boxes[..., across + 2]).clamp(min=0)
        iomin = inter_across / torch.minimum(thick[:, :, None], thick[:, None, :])
        reach = -gap * torch.minimum(length[:, :, None], length[:, None, :])
        out = out | (shape_ok & (inter_along >= reach) & (iomin >= align))
    return out


def _interval_inter(lo: Tensor, hi: Tensor) -> Tensor:
    """Signed pairwise intersection length of 1-D intervals ``[B, K]`` -> ``[B, K, K]``."""
    return torch.minimum(hi[:, :, None], hi[:, None, :]) - torch.maximum(
        lo[:, :, None], lo[:, None, :]
    )
