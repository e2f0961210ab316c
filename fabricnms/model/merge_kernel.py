"""Compiled duplicate merging and line joining (the rules of :mod:`fabricnms.model.merge`).

The inference implementation of :func:`fabricnms.model.merge.merge_groups` and
:func:`~fabricnms.model.merge.line_span`: the fast DNMS (:mod:`fabricnms.model.dnms_fast`) and
``greedy+merge`` / ``soft+merge`` (:func:`~fabricnms.model.merge.merge_detections`) both run
these; the torch functions stay for the differentiable DNMS. One image at a time; boxes are
``xyxy`` pixels as float64 numpy arrays, the hypotheses come sorted by descending score and
are all valid (callers leave the dead ones out). Greedy suppression is the sequential loop
here (the torch version reaches the same fixpoint with Cluster-NMS passes).
"""

from __future__ import annotations

import numpy as np

from fabricnms.model.boxes import AREA_EPS
from fabricnms.model.jit import kernel


@kernel
def iou_iomin(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """IoU and IoMin of two ``[4]`` xyxy boxes (degenerate boxes have area 0)."""
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = iw * ih
    area_a = max(a[2] - a[0], 0.0) * max(a[3] - a[1], 0.0)
    area_b = max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0)
    iou = inter / max(area_a + area_b - inter, AREA_EPS)
    return iou, inter / max(min(area_a, area_b), AREA_EPS)


@kernel
def collinear(a: np.ndarray, b: np.ndarray, aspect: float, align: float, gap: float) -> bool:
    """Two ``[4]`` boxes are segments of one horizontal or vertical line (see
    :func:`fabricnms.model.merge.collinear_segments`)."""
    wa, ha = max(a[2] - a[0], 1e-6), max(a[3] - a[1], 1e-6)
    wb, hb = max(b[2] - b[0], 1e-6), max(b[3] - b[1], 1e-6)
    for along in range(2):
        across = 1 - along
        len_a, thick_a = (wa, ha) if along == 0 else (ha, wa)
        len_b, thick_b = (wb, hb) if along == 0 else (hb, wb)
        elong = len_a / thick_a >= aspect or len_b / thick_b >= aspect
        if not (elong and len_a >= thick_a and len_b >= thick_b):
            continue
        inter_along = min(a[along + 2], b[along + 2]) - max(a[along], b[along])
        inter_across = max(min(a[across + 2], b[across + 2]) - max(a[across], b[across]), 0.0)
        iomin = inter_across / min(thick_a, thick_b)
        if inter_along >= -gap * min(len_a, len_b) and iomin >= align:
            return True
    return False


@kernel
def merge_groups_kernel(
    boxes: np.ndarray,
    labels: np.ndarray,
    span: np.ndarray,
    line: np.ndarray,
    mu: float,
    dup_overlap: float,
    part_iou: float,
    aspect: float,
    align: float,
    gap: float,
    rounds: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Group the valid hypotheses ``boxes [M, 4]`` (sorted by descending score, ``labels [M]``)
    that are one defect: :func:`fabricnms.model.merge.merge_groups` with every one valid. The
    settings after ``line`` are a :class:`~fabricnms.model.merge.MergeSettings`' fields, in its
    order (``*dataclasses.astuple(settings)``).

    ``span [M, 4]`` / ``line [M]`` (bool) come from an earlier merge pass. Returns new
    ``(boxes, owner [M] int64, span, line)``: ``owner[j]`` the survivor ``j`` belongs to
    (survivors own themselves), survivors grown over the parts (IoU below ``part_iou``) they
    absorbed, ``span`` the union of the collinear segments each joined line absorbed.
    """
    m = boxes.shape[0]
    boxes, span, line = boxes.copy(), span.copy(), line.copy()
    owner, first = np.arange(m), np.arange(m)
    alive, keep = np.ones(m, dtype=np.bool_), np.empty(m, dtype=np.bool_)
    for _ in range(rounds):
        grown, grown_span = boxes.copy(), span.copy()
        new_line = np.zeros(m, dtype=np.bool_)
        absorbed = part_any = False
        for j in range(m):
            first[j], keep[j] = j, False
            if not alive[j]:
                continue
            for k in range(j):  # the strongest kept hypothesis of j's defect absorbs it
                if not keep[k] or labels[k] != labels[j]:
                    continue
                iou, iomin = iou_iomin(boxes[k], boxes[j])
                overlapping = (1 - mu) * iou + mu * iomin >= dup_overlap
                if overlapping or collinear(boxes[k], boxes[j], aspect, align, gap):
                    first[j] = k
                    part = iou < part_iou
                    if part:
                        _grow(grown[k], boxes[j])
                    part_any |= part
                    if not overlapping or line[j]:  # a segment hands its span on
                        _grow(grown_span[k], span[j])
                        new_line[k] = True
                    break
            if first[j] == j:
                keep[j] = True
                new_line[j] |= line[j]
            absorbed |= first[j] != j
        if not absorbed:
            break
        for j in range(m):
            owner[j] = first[owner[j]]
            line[j], alive[j] = new_line[j] and keep[j], keep[j]
        boxes, span = grown, grown_span
        if not part_any:
            break
    for j in range(m):
        line[j] &= alive[j]
    return boxes, owner, span, line


@kernel
def _grow(box: np.ndarray, part: np.ndarray) -> None:
    """``box [4]`` widened in place to cover ``part [4]``."""
    box[0], box[1] = min(box[0], part[0]), min(box[1], part[1])
    box[2], box[3] = max(box[2], part[2]), max(box[3], part[3])


@kernel
def line_span_kernel(fused: np.ndarray, joined: np.ndarray, line: np.ndarray) -> np.ndarray:
    """:func:`fabricnms.model.merge.line_span` of one image: ``fused [M, 4]`` stretched along
    each joined line (``line [M]``) to the ends of ``joined [M, 4]``; a new array."""
    out = fused.copy()
    for j in range(fused.shape[0]):
        if not line[j]:
            continue
        along_x = joined[j, 2] - joined[j, 0] >= joined[j, 3] - joined[j, 1]
        lo = 0 if along_x else 1
        out[j, lo] = min(fused[j, lo], joined[j, lo])
        out[j, lo + 2] = max(fused[j, lo + 2], joined[j, lo + 2])
    return out
