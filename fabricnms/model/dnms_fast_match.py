"""Compiled DNMS step 1: hypotheses, the transport problem's pairs, and its Sinkhorn plan.

The mathematics of :func:`fabricnms.model.dnms_match.match_hypotheses` (cost, masses,
capacities: the :mod:`fabricnms.model.dnms` module docstring) for inference, in float64 over
the pairs only: each row lists the hypotheses its box touches, then the dustbin. Sinkhorn runs
in the scaling domain, ``u_i = a_i / sum_j K_ij v_j`` and ``v_j = b_j / sum_i K_ij u_i`` with
the kernel ``K_ij = exp(-(C_ij - min_j' C_ij') / eps)`` computed once (the row shift only
rescales ``u_i``): the same iterates as the log-domain solver (``f_i = log u_i + min_j C_ij /
eps``, ``g_j = log v_j``), with the same early stop (row-marginal error below ``tol``, checked
every :data:`CHECK_EVERY` iterations, all images of the batch together). Boxes are ``xyxy``
pixels.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fabricnms.model.dnms_fusion import FusionSettings
from fabricnms.model.dnms_match import P_EPS, MatchSettings
from fabricnms.model.jit import copy_into, kernel
from fabricnms.model.merge import MergeSettings
from fabricnms.model.merge_kernel import iou_iomin

CHECK_EVERY = 5  # as _transport in fabricnms.model.dnms_match passes it
# Largest kernel exponent ``(C_ij - min_j C_ij) / eps`` the scaling domain takes: well inside
# float64 (exp(-709) is its smallest normal), so neither K nor the scalings under/overflow.
MAX_EXPONENT = 300.0


class KernelSettings(NamedTuple):
    """All DNMS settings as one numba-friendly tuple (see :class:`~fabricnms.model.dnms.
    DifferentiableNMS` for each); ``tol < 0`` means no early stop."""

    alpha: float
    beta: float
    gamma: float
    delta: float
    iomin_weight: float
    match_cost: float
    eps: float
    iters: int
    tol: float
    hyp_floor: float
    score_power: float
    fuse_sigma: float
    fuse_steps: int
    fuse_rows: int
    dup_overlap: float
    part_iou: float
    line_aspect: float
    line_align: float
    line_gap: float
    merge_rounds: int
    merge: bool


def kernel_settings(
    match: MatchSettings, fusion: FusionSettings, merge: MergeSettings, merge_on: bool
) -> KernelSettings:
    """The DNMS's settings (``merge_on``: its ``merge`` flag) as one :class:`KernelSettings`
    (``merge.rounds`` is its ``merge_rounds``)."""
    return KernelSettings(
        float(match.alpha),
        float(match.beta),
        float(match.gamma),
        float(match.delta),
        float(match.iomin_weight),
        float(match.match_cost),
        float(match.eps),
        int(match.iters),
        -1.0 if match.tol is None else float(match.tol),
        float(match.hyp_floor),
        float(fusion.score_power),
        float(fusion.fuse_sigma),
        int(fusion.fuse_steps),
        int(fusion.fuse_rows),
        float(merge.dup_overlap),
        float(merge.part_iou),
        float(merge.line_aspect),
        float(merge.line_align),
        float(merge.line_gap),
        int(merge.rounds),
        bool(merge_on),
    )


@kernel
def best_class(scores: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best class probability ``[B, N]`` (-1 off ``valid [B, N]``) and its class ``[B, N]``
    (the first of tied ones, as ``torch.max`` gives) of ``scores [B, N, C]``."""
    bsz, n, c = scores.shape
    best, label = np.empty((bsz, n)), np.zeros((bsz, n), dtype=np.int64)
    for b in range(bsz):
        for i in range(n):
            best[b, i] = scores[b, i, 0] if valid[b, i] else -1.0
            for k in range(1, c):
                if valid[b, i] and scores[b, i, k] > best[b, i]:
                    best[b, i], label[b, i] = scores[b, i, k], k
    return best, label


@kernel
def row_masses(
    o2m: np.ndarray, quality: np.ndarray, has_quality: bool, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``o2m [B, N, C]``: the best class probability ``p``, the IoU-quality ``q``
    (``quality [B, N]``, or ``p`` without one) and the mass ``sqrt(p q)``, each ``[B, N]``
    float64 (all three 0 off ``valid``)."""
    best = best_class(o2m, valid)[0]
    q, mass = np.zeros(best.shape), np.zeros(best.shape)
    for b in range(best.shape[0]):
        for i in range(best.shape[1]):
            if valid[b, i]:
                q[b, i] = quality[b, i] if has_quality else best[b, i]
                mass[b, i] = np.sqrt(max(best[b, i] * q[b, i], 0.0))
            else:
                best[b, i] = 0.0
    return best, q, mass


@kernel
def hypotheses(
    hyp_index: np.ndarray, hyp_score: np.ndarray, mass: np.ndarray, floor: float
) -> tuple[np.ndarray, np.ndarray]:
    """The hypothesis columns of each image from the top o2o slots ``hyp_index / hyp_score
    [B, S]``: slot ``s`` is valid when its score reaches ``floor`` and its row has mass; only
    the first ``k`` slots count, ``k`` the most valid slots of any image (at least 1).

    Returns ``slots [B, k]`` (each image's ``count [B]`` valid slot numbers first) and
    ``count``.
    """
    bsz, s = hyp_index.shape
    ok = np.zeros((bsz, s), dtype=np.bool_)
    k = 1
    for b in range(bsz):
        valid = 0
        for j in range(s):
            ok[b, j] = hyp_score[b, j] >= floor and mass[b, hyp_index[b, j]] > 0
            valid += ok[b, j]
        k = max(k, valid)
    k = min(k, s)
    slots = np.empty((bsz, k), dtype=np.int64)
    count = np.zeros(bsz, dtype=np.int64)
    for b in range(bsz):
        for j in range(k):
            if ok[b, j]:
                slots[b, count[b]] = j
                count[b] += 1
    return slots, count


@kernel
def image_pairs(
    boxes: np.ndarray,
    o2m: np.ndarray,
    embed: np.ndarray,
    best: np.ndarray,
    mass: np.ndarray,
    hyp_rows: np.ndarray,
    hyp_h: np.ndarray,
    hyp_label: np.ndarray,
    st: KernelSettings,
    rows: np.ndarray,
    cols: np.ndarray,
    cost: np.ndarray,
) -> tuple[int, np.ndarray, float]:
    """One image's transport problem over its ``K`` hypotheses (rows ``hyp_rows [K]``, o2o
    probabilities ``hyp_h [K]``, classes ``hyp_label [K]``).

    ``boxes [N, 4]``, ``o2m [N, C]``, ``embed [N, D]`` (``D = 0``: no feature term), ``best``
    and ``mass`` ``[N]`` from :func:`row_masses`. Rows with mass list the hypotheses they
    touch (IoU > 0), in column order, then the dustbin (column ``K``): the pairs' row, column
    and cost go to ``rows``, ``cols`` and ``cost`` (room for ``(K + 1)`` per row with mass).
    Returns the pair count, the column masses ``[K + 1]`` (capacities, then the dustbin's)
    and the total row mass, unnormalised.
    """
    kk, dim = hyp_rows.shape[0], embed.shape[1]
    prior, touched, cos = np.empty(kk), np.empty(kk, dtype=np.int64), np.empty(kk)
    hit = np.empty(kk, dtype=np.bool_)
    capacity = np.zeros(kk + 1)
    hyp_boxes, hyp_coords = np.empty((kk, 4)), np.empty((4, kk))  # the latter for the test
    hyp_embed = np.empty((dim, kk))  # normalised, as F.normalize(eps=1e-12) gives
    for j in range(kk):
        norm = max(np.sqrt(_dot(embed[hyp_rows[j]], embed[hyp_rows[j]])), 1e-12)
        copy_into(hyp_boxes[j], boxes[hyp_rows[j]])
        for d in range(4):
            hyp_coords[d, j] = boxes[hyp_rows[j], d]
        for d in range(dim):
            hyp_embed[d, j] = embed[hyp_rows[j], d] / norm
    mu = st.iomin_weight
    total, p = 0.0, 0
    for i in range(boxes.shape[0]):
        if mass[i] <= 0:
            continue
        total += mass[i]
        m_c = min(max(mass[i], P_EPS), 1 - P_EPS)
        quality_cost = st.alpha * -np.log(m_c)
        x1, y1, x2, y2 = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3]
        for j in range(kk):  # the hypotheses the row's box intersects (a vectorised test)
            iw = min(x2, hyp_coords[2, j]) - max(x1, hyp_coords[0, j])
            ih = min(y2, hyp_coords[3, j]) - max(y1, hyp_coords[1, j])
            hit[j] = (iw > 0) & (ih > 0)
        hits = 0
        for j in range(kk):  # their list, without branches
            touched[hits] = j
            hits += hit[j]
        # Cosine to the touched hypotheses, in independent sums: to all of them (a vectorised
        # row x matrix product) when they are many, else to the touched ones only.
        dense = 4 * hits >= kk
        if hits and dim:
            scale = 1.0 / max(np.sqrt(_dot(embed[i], embed[i])), 1e-12)
            for t in range(kk if dense else hits):
                cos[t] = 0.0
            for d in range(dim):
                x = embed[i, d]
                if dense:
                    for j in range(kk):
                        cos[j] += x * hyp_embed[d, j]
                else:
                    for t in range(hits):
                        cos[t] += x * hyp_embed[d, touched[t]]
        start, prior_sum = p, 0.0
        for t in range(hits):
            j = touched[t]
            iou, iomin = iou_iomin(boxes[i], hyp_boxes[j])
            if iou <= 0:
                continue
            overlap = (1 - mu) * iou + mu * iomin
            agree = min(o2m[i, hyp_label[j]] / max(best[i], P_EPS), 1.0)
            c = quality_cost + st.gamma * (1.0 - overlap) + st.delta * (1.0 - agree)
            if dim:
                c += st.beta * (1.0 - cos[j if dense else t] * scale) / 2.0
            prior[p - start] = overlap * agree * hyp_h[j]
            prior_sum += prior[p - start]
            rows[p], cols[p], cost[p] = i, j, c
            p += 1
        for t in range(p - start):
            capacity[cols[start + t]] += mass[i] * prior[t] / (1.0 + prior_sum)
        rows[p], cols[p] = i, kk
        cost[p] = st.alpha * -np.log(1 - m_c) + st.match_cost
        p += 1
    total, taken = max(total, 1e-12), 0.0
    for j in range(kk):
        taken += capacity[j]
    capacity[kk] = max(total - taken, 0.0)
    return p, capacity, total


@kernel
def _dot(x: np.ndarray, y: np.ndarray) -> float:
    """``x . y`` of two vectors ``[D]``, in four interleaved partial sums (one chain of
    dependent additions would leave the CPU waiting on each)."""
    s0 = s1 = s2 = s3 = 0.0
    d, n = 0, x.shape[0]
    while d + 4 <= n:
        s0 += x[d] * y[d]
        s1 += x[d + 1] * y[d + 1]
        s2 += x[d + 2] * y[d + 2]
        s3 += x[d + 3] * y[d + 3]
        d += 4
    while d < n:
        s0 += x[d] * y[d]
        d += 1
    return (s0 + s1) + (s2 + s3)


@kernel
def cost_to_kernel(
    row_ptr: np.ndarray, cols: np.ndarray, cost: np.ndarray, col_mass: np.ndarray, eps: float
) -> bool:
    """Each pair's cost becomes, in place, its kernel ``K_p = exp(-(C_p - min C_row) / eps)``
    (0 where the column has no mass, so the pair is not used); rows are given as ``row_ptr
    [R + 1]`` into the pairs. False when some exponent exceeds :data:`MAX_EXPONENT` (the
    scaling domain would under/overflow)."""
    ok = True
    for r in range(row_ptr.shape[0] - 1):
        low = np.inf
        for p in range(row_ptr[r], row_ptr[r + 1]):
            if col_mass[cols[p]] > 0:
                low = min(low, cost[p])
        for p in range(row_ptr[r], row_ptr[r + 1]):
            x = (cost[p] - low) / eps
            ok &= col_mass[cols[p]] <= 0 or x <= MAX_EXPONENT
            cost[p] = np.exp(-x) if col_mass[cols[p]] > 0 else 0.0
    return ok


@kernel
def sinkhorn_scaling(
    row_ptr: np.ndarray,
    cols: np.ndarray,
    kern: np.ndarray,
    row_mass: np.ndarray,
    col_mass: np.ndarray,
    iters: int,
    tol: float,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Scaling-domain Sinkhorn over sparse pairs (see the module docstring).

    Rows ``r`` own pairs ``row_ptr[r]:row_ptr[r + 1]`` with columns ``cols`` and kernel ``kern``;
    ``row_mass [R]`` and ``col_mass [M]`` are normalised per image (so ``tol``, the largest
    row-marginal error allowed over all rows, is relative; ``tol < 0``: run all ``iters``).
    Returns the scalings ``u [R]``, ``v [M]`` (plan ``u_r K_p v_c``) and the iterations run.
    """
    nrows, ncols = row_mass.shape[0], col_mass.shape[0]
    u, u_new, v = np.zeros(nrows), np.empty(nrows), np.ones(ncols)
    col_sum = np.empty(ncols)
    # A row with a single usable pair (most often the dustbin alone) sends its whole mass to
    # that column whatever the kernel: it adds a_r / v_c to the column's sum, and its
    # marginal error after v_c moved is a_r |v_c / v_c' - 1|. Such rows are summed per column
    # (mass, largest mass) and leave the loop; u_r = a_r / (K_r v_c') is set at the end.
    alone, alone_max, v_then = np.zeros(ncols), np.zeros(ncols), np.zeros(ncols)
    multi = np.empty(nrows, dtype=np.int64)
    nmulti = 0
    for r in range(nrows):
        p = row_ptr[r]
        if row_ptr[r + 1] - p == 1 and kern[p] > 0:
            alone[cols[p]] += row_mass[r]
            alone_max[cols[p]] = max(alone_max[cols[p]], row_mass[r])
        else:
            multi[nmulti] = r
            nmulti += 1
    done = 0
    for it in range(1, iters + 1):
        # Row update, with each row's share of the column sums added while its pairs are hot.
        err = 0.0
        for c in range(ncols):
            col_sum[c] = alone[c] / v[c]
            if alone[c] > 0:
                err = max(err, alone_max[c] * (abs(v[c] / v_then[c] - 1) if it > 1 else 1.0))
        for t in range(nmulti):
            r = multi[t]
            s = 0.0
            for p in range(row_ptr[r], row_ptr[r + 1]):
                s += kern[p] * v[cols[p]]
            err = max(err, abs(u[r] * s - row_mass[r]))
            u_new[r] = row_mass[r] / s if s > 0 else 0.0
            for p in range(row_ptr[r], row_ptr[r + 1]):
                col_sum[cols[p]] += kern[p] * u_new[r]
        if tol >= 0 and it > 1 and (it - 1) % CHECK_EVERY == 0 and err < tol:
            break  # the scalings of the previous iteration stand, as in the torch solver
        u, u_new = u_new, u
        for c in range(ncols):
            v_then[c] = v[c]
            v[c] = col_mass[c] / col_sum[c] if col_sum[c] > 0 else 1.0
        done = it
    for r in range(nrows):
        p = row_ptr[r]
        if row_ptr[r + 1] - p == 1 and kern[p] > 0:
            u[r] = row_mass[r] / (kern[p] * v_then[cols[p]])
    return u, v, done
