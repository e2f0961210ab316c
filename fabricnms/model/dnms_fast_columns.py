"""Compiled DNMS steps 2-3: what each plan column is, merge rounds, and one image's output.

The mathematics of :mod:`fabricnms.model.dnms_fusion` (robust fusion over each column's
``fuse_rows`` heaviest rows, column labels, scores, mask coefficients) and of the merge loop of
:meth:`fabricnms.model.dnms.DifferentiableNMS.forward`, for inference on one image in float64.
The plan is a list of pairs ``(row, column, mass)`` in row-major order (the dustbin's, column
``K``, are skipped); a merge re-points its members' pairs to their survivor, which is the torch
path's sum of plan columns, and adds their supports and class evidence (both linear in the
plan) to the survivor's. Only live columns are fused and scored (dead ones are never output).
Boxes are ``xyxy`` pixels. Plain loops throughout: they compile fast and allocate little.
"""

from __future__ import annotations

import numpy as np

from fabricnms.model.dnms_fast_match import KernelSettings
from fabricnms.model.dnms_match import TINY
from fabricnms.model.jit import copy_into, kernel
from fabricnms.model.merge_kernel import line_span_kernel, merge_groups_kernel


@kernel
def column_entries(
    rows: np.ndarray,
    cols: np.ndarray,
    plan: np.ndarray,
    k: int,
    entry_row: np.ndarray,
    entry_plan: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The row-major pairs ``rows / cols / plan [P]`` grouped by column (columns ``>= k``, the
    dustbin's, left out) into ``entry_row / entry_plan`` (room for ``P``).

    Returns ``start [k]`` and ``end [k]``: column ``c``'s rows are
    ``entry_row[start[c]:end[c]]`` in increasing order, a row's pairs that now point to one
    column (after a merge) summed into one entry.
    """
    start, end = np.zeros(k, dtype=np.int64), np.empty(k, dtype=np.int64)
    for c in cols:
        if c < k:
            start[c] += 1
    total = 0
    for c in range(k):
        start[c], total = total, total + start[c]
        end[c] = start[c]
    for p in range(rows.shape[0]):
        c = cols[p]
        if c >= k:
            continue
        t = end[c]
        if t > start[c] and entry_row[t - 1] == rows[p]:
            entry_plan[t - 1] += plan[p]
        else:
            entry_row[t], entry_plan[t] = rows[p], plan[p]
            end[c] += 1
    return start, end


@kernel
def heaviest(weight: np.ndarray, limit: int) -> np.ndarray:
    """Indices of the ``limit`` largest ``weight`` entries (all of them when there are fewer),
    as the ``topk`` of :func:`fabricnms.model.dnms_fusion.fuse` picks them (a min-heap of the
    best so far: ``O(n log limit)``)."""
    n = weight.shape[0]
    if n <= limit:
        return np.arange(n)
    heap = np.arange(limit)
    for pos in range(limit // 2 - 1, -1, -1):
        _sift_down(heap, weight, pos)
    for t in range(limit, n):
        if weight[t] > weight[heap[0]]:
            heap[0] = t
            _sift_down(heap, weight, 0)
    return heap


@kernel
def _sift_down(heap: np.ndarray, weight: np.ndarray, pos: int) -> None:
    """Restore the min-heap order of ``heap`` (indices into ``weight``) below ``pos``."""
    size = heap.shape[0]
    while True:
        child = 2 * pos + 1
        if child >= size:
            return
        if child + 1 < size and weight[heap[child + 1]] < weight[heap[child]]:
            child += 1
        if weight[heap[pos]] <= weight[heap[child]]:
            return
        heap[pos], heap[child] = heap[child], heap[pos]
        pos = child


@kernel
def fuse_box(
    rows: np.ndarray,
    weight: np.ndarray,
    sel: np.ndarray,
    boxes: np.ndarray,
    start: np.ndarray,
    st: KernelSettings,
) -> np.ndarray:
    """Robust fusion (:func:`fabricnms.model.dnms_fusion.fuse`) of ``boxes[rows[sel]]`` weighted
    by ``weight[sel]`` (plan x quality) from the estimate ``start [4]``: ``[4]``."""
    center, new = start.copy(), np.empty(4)
    for _ in range(st.fuse_steps):
        width, height = max(center[2] - center[0], 1.0), max(center[3] - center[1], 1.0)
        for d in range(4):
            scale = st.fuse_sigma * (width if d % 2 == 0 else height)
            num = den = 0.0
            for t in sel:
                x = boxes[rows[t], d]
                w = weight[t] * np.exp(-min(0.5 * ((x - center[d]) / scale) ** 2, 60.0))
                num += w * x
                den += w
            new[d] = (num + TINY * center[d]) / (den + TINY)
        copy_into(center, new)
    return center


@kernel
def class_sums(
    rows: np.ndarray,
    cols: np.ndarray,
    plan: np.ndarray,
    o2m: np.ndarray,
    q: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Each column's support ``sum_i P_ij`` ``[k]`` and class evidence ``sum_i P_ij e_i(c)``
    ``[k, C]`` with ``e_i(c) = sqrt(o2m_i(c) q_i)``, from the row-major pairs (columns ``>= k``
    left out), each row's ``e_i`` computed once. Both are linear in the plan: a merged
    column's are its members' sums."""
    c = o2m.shape[1]
    support, per_class, e = np.zeros(k), np.zeros((k, c)), np.empty(c)
    last = -1
    for p in range(rows.shape[0]):
        j = cols[p]
        if j >= k:
            continue
        if rows[p] != last:  # rows ascend
            last = rows[p]
            for cls in range(c):
                e[cls] = np.sqrt(max(o2m[last, cls] * q[last], 0.0))
        support[j] += plan[p]
        for cls in range(c):
            per_class[j, cls] += plan[p] * e[cls]
    return support, per_class


@kernel
def column_labels(per_class: np.ndarray, fallback: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class of each column, the one its rows support most (``fallback [K]``, the o2o class,
    where none does), and that support ``u_mass`` ``[K]`` (as
    :func:`fabricnms.model.dnms_fusion.column_labels`, first class among ties)."""
    k, c = per_class.shape
    labels, u_mass = fallback.copy(), np.empty(k)
    for j in range(k):
        best = 0
        for cls in range(1, c):
            if per_class[j, cls] > per_class[j, best]:
                best = cls
        u_mass[j] = per_class[j, best]
        if u_mass[j] > 0:
            labels[j] = best
    return labels, u_mass


@kernel
def fuse_columns(
    live: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    entry_row: np.ndarray,
    entry_plan: np.ndarray,
    q: np.ndarray,
    boxes: np.ndarray,
    begin: np.ndarray,
    st: KernelSettings,
) -> np.ndarray:
    """Fused box ``[K, 4]`` of each ``live`` column from ``begin [K, 4]`` over its heaviest
    rows by plan x quality (``q [N]``); zeros for the others."""
    fused, weight = np.zeros((start.shape[0], 4)), np.empty(_longest(start, end))
    for j in range(start.shape[0]):
        if live[j]:
            rows, w = entry_row[start[j] : end[j]], weight[: end[j] - start[j]]
            for t in range(rows.shape[0]):
                w[t] = entry_plan[start[j] + t] * q[rows[t]]
            copy_into(fused[j], fuse_box(rows, w, heaviest(w, st.fuse_rows), boxes, begin[j], st))
    return fused


@kernel
def _longest(start: np.ndarray, end: np.ndarray) -> int:
    """The most entries of any column."""
    most = 0
    for j in range(start.shape[0]):
        most = max(most, end[j] - start[j])
    return most


@kernel
def column_score(h: float, u_mass: float, support: float, power: float) -> float:
    """``H ** (1 - w) * U ** w`` of one column (:func:`fabricnms.model.dnms_fusion.score`)."""
    u = u_mass / max(support, TINY)
    return min(max(h, TINY), 1.0) ** (1 - power) * min(max(u, TINY), 1.0) ** power


@kernel
def by_score(live: np.ndarray, score: np.ndarray) -> np.ndarray:
    """The ``live`` columns by descending score, ties in column order (a stable sort)."""
    order = np.empty(int(live.sum()), dtype=np.int64)
    m = 0
    for j in range(live.shape[0]):
        if live[j]:  # insertion sort: K is at most a few hundred
            pos = m
            while pos > 0 and score[order[pos - 1]] < score[j]:
                order[pos] = order[pos - 1]
                pos -= 1
            order[pos] = j
            m += 1
    return order


@kernel
def image_detections(
    boxes: np.ndarray,
    o2m: np.ndarray,
    o2o: np.ndarray,
    q: np.ndarray,
    mass: np.ndarray,
    coeffs: np.ndarray,
    hyp_rows: np.ndarray,
    hyp_label: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    plan: np.ndarray,
    entry_row: np.ndarray,
    entry_plan: np.ndarray,
    st: KernelSettings,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One image's detections from its plan: pairs ``rows / cols / plan [P]`` (mass units,
    row-major; columns ``>= K`` are the dustbin's, ignored). ``cols`` is re-pointed in place;
    ``entry_row`` (int64) and ``entry_plan`` (float64) are work space of ``P`` entries or more.

    ``boxes [N, 4]``, ``o2m / o2o [N, C]``, ``q`` and ``mass`` ``[N]``, ``coeffs [N, P]``
    (``P = 0``: none), ``hyp_rows / hyp_label [K]`` the hypotheses' rows and o2o classes.
    Returns, sorted by descending score: the ``[M]`` surviving columns (hypothesis numbers),
    ``boxes [M, 4]``, ``scores``, ``labels``, ``support``, ``coeffs [M, P]`` and the class
    evidence ``[M, C]`` (:func:`fabricnms.model.dnms_fusion.class_evidence`).
    """
    k = hyp_rows.shape[0]
    begin = np.empty((k, 4))
    for j in range(k):
        copy_into(begin[j], boxes[hyp_rows[j]])
    support, per_class = class_sums(rows, cols, plan, o2m, q, k)
    start, end = column_entries(rows, cols, plan, k, entry_row, entry_plan)
    labels, u_mass = column_labels(per_class, hyp_label)
    live, score = np.empty(k, dtype=np.bool_), np.empty(k)
    for j in range(k):
        live[j] = support[j] > TINY
        h = o2o[hyp_rows[j], labels[j]]
        score[j] = column_score(h, u_mass[j], support[j], st.score_power)
    fused = fuse_columns(live, start, end, entry_row, entry_plan, q, boxes, begin, st)
    span, line, owner = fused.copy(), np.zeros(k, dtype=np.bool_), np.empty(k, dtype=np.int64)
    for step in range(st.merge_rounds):
        order = by_score(live, score)
        m = order.shape[0]
        s_boxes, s_span = np.empty((m, 4)), np.empty((m, 4))
        s_labels, s_line = np.empty(m, dtype=np.int64), np.empty(m, dtype=np.bool_)
        for t in range(m):
            copy_into(s_boxes[t], fused[order[t]])
            copy_into(s_span[t], span[order[t]])
            s_labels[t], s_line[t] = labels[order[t]], line[order[t]]
        s_merged, s_owner = s_boxes, np.arange(m)
        if st.merge:
            s_merged, s_owner, s_span, s_line = merge_groups_kernel(
                s_boxes,
                s_labels,
                s_span,
                s_line,
                st.iomin_weight,
                st.dup_overlap,
                st.part_iou,
                st.line_aspect,
                st.line_align,
                st.line_gap,
                st.merge_rounds,
            )
        changed = False
        for j in range(k):
            owner[j] = j
        for t in range(m):
            owner[order[t]] = order[s_owner[t]]
            changed |= s_owner[t] != t
            for d in range(4):
                changed |= s_merged[t, d] != s_boxes[t, d]
        if step > 0 and not changed:
            break
        for t in range(m):
            copy_into(fused[order[t]], s_merged[t])
            copy_into(span[order[t]], s_span[t])
            line[order[t]] = s_line[t]
            live[order[t]] = s_owner[t] == t
        for p in range(cols.shape[0]):
            if cols[p] < k:
                cols[p] = owner[cols[p]]
        for j in range(k):  # support and class evidence move with the plan columns
            if owner[j] != j:
                support[owner[j]] += support[j]
                support[j] = 0.0
                for cls in range(per_class.shape[1]):
                    per_class[owner[j], cls] += per_class[j, cls]
                    per_class[j, cls] = 0.0
        labels, u_mass = column_labels(per_class, hyp_label)
        start, end = column_entries(rows, cols, plan, k, entry_row, entry_plan)
        fused = fuse_columns(live, start, end, entry_row, entry_plan, q, boxes, fused, st)
        fused = line_span_kernel(fused, span, line)
        for j in range(k):
            if live[j]:  # collected_o2o: the o2o mass the column's rows give its class
                h = 0.0
                for t in range(start[j], end[j]):
                    row = entry_row[t]
                    h += entry_plan[t] / max(mass[row], TINY) * o2o[row, labels[j]]
                score[j] = column_score(min(h, 1.0), u_mass[j], support[j], st.score_power)
    keep = by_score(live, score)
    m = keep.shape[0]
    out_boxes, out_coeffs = np.empty((m, 4)), np.empty((m, coeffs.shape[1]))
    out_score, out_support = np.empty(m), np.empty(m)
    out_label, weight = np.empty(m, dtype=np.int64), np.empty(_longest(start, end))
    out_evidence = np.empty((m, per_class.shape[1]))
    for m, j in enumerate(keep):
        copy_into(out_boxes[m], fused[j])
        out_score[m] = score[j]
        out_label[m], out_support[m] = labels[j], support[j]
        for cls in range(per_class.shape[1]):  # class_evidence: U_j(c), the plan-weighted mean
            out_evidence[m, cls] = per_class[j, cls] / max(support[j], TINY)
        if coeffs.shape[1] == 0:
            continue
        rows_j, w = entry_row[start[j] : end[j]], weight[: end[j] - start[j]]
        for t in range(rows_j.shape[0]):
            w[t] = entry_plan[start[j] + t] * q[rows_j[t]]
        sel = heaviest(w, st.fuse_rows)  # fuse_coeffs: the plan x quality mean of these rows
        den = TINY
        for t in sel:
            den += w[t]
        for d in range(coeffs.shape[1]):
            total = TINY * coeffs[hyp_rows[j], d]
            for t in sel:
                total += w[t] * coeffs[rows_j[t], d]
            out_coeffs[m, d] = total / den
    return keep, out_boxes, out_score, out_label, out_support, out_coeffs, out_evidence
