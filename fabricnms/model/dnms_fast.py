"""Fast DNMS inference: :meth:`DifferentiableNMS.forward`'s mathematics in compiled kernels.

:meth:`fabricnms.model.dnms.DifferentiableNMS.forward` comes here whenever no gradient is
needed (:func:`needs_grad`): under ``torch.no_grad`` / ``torch.inference_mode`` or when no
input requires grad. Same hypotheses (torch's own ``max`` and ``topk`` pick them, ties
included), same cost, Sinkhorn iterates and early stop (:mod:`fabricnms.model.dnms_fast_match`),
same fusion, labels, scores, merge rounds and mask coefficients
(:mod:`fabricnms.model.dnms_fast_columns`), same output order and ``extra`` keys; computed in
float64 and returned in the input dtype on the input device.

Why compiled: the torch path is a few hundred small tensor ops per batch (up to 50 Sinkhorn
iterations, merge rounds, Cluster-NMS passes), and at 2-10 us each on a CPU that overhead, not
arithmetic, is most of its time; one compiled pass over the sparse pairs is not. Boxes are
``xyxy`` pixels throughout.
"""

from __future__ import annotations

import threading

import numpy as np
import torch
from torch import Tensor

from fabricnms.model.class_guesses import EVIDENCE_KEY
from fabricnms.model.dnms_fast_columns import image_detections
from fabricnms.model.dnms_fast_match import (
    KernelSettings,
    best_class,
    cost_to_kernel,
    hypotheses,
    image_pairs,
    row_masses,
    sinkhorn_scaling,
)
from fabricnms.model.jit import copy_into, kernel
from fabricnms.model.types import Detections


class Scratch(threading.local):
    """Work space of the kernels, kept per thread from call to call.

    A frame's transport problem lists tens of thousands of pairs; fresh arrays of that size
    come from ``mmap`` on every call, and faulting their pages in again costs more than the
    work done on them (~3 us a page on a virtualised CPU). Only the pages a call touches are
    ever resident: the arrays are sized for the worst case, ``B N (S + 1)`` pairs.
    """

    def __init__(self) -> None:
        self.ints = np.empty((3, 0), dtype=np.int64)
        self.floats = np.empty((2, 0))

    def arrays(self, pairs: int) -> tuple[np.ndarray, np.ndarray]:
        """``ints [3, >= pairs]`` int64 and ``floats [2, >= pairs]`` float64."""
        if self.ints.shape[1] < pairs:
            self.ints = np.empty((3, pairs), dtype=np.int64)
            self.floats = np.empty((2, pairs))
        return self.ints, self.floats


_SCRATCH = Scratch()


def needs_grad(*tensors: Tensor | None) -> bool:
    """True when autograd is on and some given tensor requires grad (the torch path runs)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def fast_dnms(
    settings: KernelSettings,
    max_hyp: int,
    boxes: Tensor,
    scores_o2m: Tensor,
    scores_o2o: Tensor,
    quality: Tensor | None,
    embed: Tensor | None,
    valid: Tensor | None,
    coeffs: Tensor | None,
) -> list[Detections] | None:
    """Detections per image as :meth:`DifferentiableNMS.forward` returns them (args as there,
    ``N >= 1``; ``max_hyp`` its hypothesis cap), without gradients.

    Returns None when the settings put the Sinkhorn kernel ``exp(-cost / eps)`` outside
    float64's range (``eps`` far below its default): the caller then runs the torch path.
    """
    bsz, n, _ = scores_o2m.shape
    device, dtype = boxes.device, boxes.dtype

    def arr(t: Tensor) -> np.ndarray:
        """float64 (one signature, compiled and cached once), converted by numpy: one thread,
        however many torch has (waiting OpenMP threads on busy cores cost more than this)."""
        t = t.detach().cpu()
        return np.ascontiguousarray(
            (t.float() if t.dtype == torch.bfloat16 else t).numpy(), np.float64
        )

    o2o, valid_np = arr(scores_o2o), np.ones((bsz, n), np.bool_)
    if valid is not None:
        valid_np = np.ascontiguousarray(valid.cpu().numpy())
    # torch's topk picks the hypotheses, as in match_hypotheses (same order among tied scores).
    hyp_all, hyp_label = best_class(o2o, valid_np)
    hyp_score, hyp_index = torch.from_numpy(hyp_all).to(scores_o2o.dtype).topk(min(max_hyp, n))
    ints, floats = _SCRATCH.arrays(bsz * n * (hyp_index.shape[1] + 1))
    ok, counts, index, boxes_o, scores_o, labels_o, support_o, coeffs_o, evidence_o = dnms_batch(
        arr(boxes),
        arr(scores_o2m),
        o2o,
        np.zeros((bsz, n)) if quality is None else arr(quality),
        quality is not None,
        np.zeros((bsz, n, 0)) if embed is None else arr(embed),
        valid_np,
        np.zeros((bsz, n, 0)) if coeffs is None else arr(coeffs),
        hyp_index.numpy(),
        hyp_score.to(torch.float64).numpy(),
        hyp_label,
        ints,
        floats,
        settings,
    )
    if not ok:
        return None
    split = counts.tolist()

    def per_image(a: np.ndarray, to: torch.dtype) -> tuple[Tensor, ...]:
        return torch.from_numpy(a).to(device, to).split(split)

    columns = {
        "boxes": per_image(boxes_o, dtype),
        "scores": per_image(scores_o, dtype),
        "labels": per_image(labels_o, torch.long),
    }
    extras = {
        "support": per_image(support_o, dtype),
        "index": per_image(index, torch.long),
        EVIDENCE_KEY: per_image(evidence_o, dtype),
    }
    if coeffs is not None:
        extras["mask_coeffs"] = per_image(coeffs_o, torch.promote_types(dtype, coeffs.dtype))
    return [
        Detections(
            **{k: v[i] for k, v in columns.items()},
            extra={k: v[i] for k, v in extras.items()},
        )
        for i in range(bsz)
    ]


@kernel
def dnms_batch(
    boxes: np.ndarray,
    o2m: np.ndarray,
    o2o: np.ndarray,
    quality: np.ndarray,
    has_quality: bool,
    embed: np.ndarray,
    valid: np.ndarray,
    coeffs: np.ndarray,
    hyp_index: np.ndarray,
    hyp_score: np.ndarray,
    hyp_label_all: np.ndarray,
    ints: np.ndarray,
    floats: np.ndarray,
    st: KernelSettings,
) -> tuple[
    bool,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
]:
    """The whole DNMS of a padded batch (shapes as in ``forward``, ``P = 0`` / ``D = 0`` for
    no coefficients / embeddings; ``hyp_index / hyp_score [B, S]`` the top o2o slots,
    ``hyp_label_all [B, N]`` each row's best o2o class). Work space (:class:`Scratch`):
    ``ints [3, W]`` int64 and ``floats [2, W]`` with ``W >= B N (S + 1)`` (the most pairs).

    Returns ``(ok, counts [B], index, boxes [T, 4], scores, labels, support, coeffs [T, P],
    class_evidence [T, C])``:
    the ``T = sum(counts)`` detections of all images one after the other, each image's by
    descending score, ``index`` their hypotheses' rows; ``ok`` False (and nothing else) when
    the Sinkhorn kernel is out of float64's range.
    """
    bsz = boxes.shape[0]
    best, q, mass = row_masses(o2m, quality, has_quality, valid)
    slots, count = hypotheses(hyp_index, hyp_score, mass, st.hyp_floor)
    k = slots.shape[1]
    hyp_rows = np.zeros((bsz, k), dtype=np.int64)
    hyp_h, hyp_label = np.zeros((bsz, k)), np.zeros((bsz, k), dtype=np.int64)
    nrows = ncols = 0
    for b in range(bsz):
        for j in range(count[b]):
            hyp_rows[b, j] = hyp_index[b, slots[b, j]]
            hyp_h[b, j] = hyp_score[b, slots[b, j]]
            hyp_label[b, j] = hyp_label_all[b, hyp_rows[b, j]]
        if count[b] > 0:
            for i in range(mass.shape[1]):
                nrows += mass[b, i] > 0
            ncols += count[b] + 1

    # One transport problem for the batch (the images are independent blocks of it), so that
    # the early stop waits for every image, as the batched torch solver does. An image without
    # hypotheses has no detections and takes no part. Only the pairs written are touched.
    pair_row, pair_col, entry_row = ints[0], ints[1], ints[2]
    cost, entry_plan = floats[0], floats[1]
    row_ptr = np.empty(nrows + 1, dtype=np.int64)
    row_mass, col_mass = np.empty(nrows), np.empty(ncols)
    pair_start, col_start = np.zeros(bsz + 1, np.int64), np.zeros(bsz + 1, np.int64)
    row_start, total = np.zeros(bsz + 1, np.int64), np.ones(bsz)
    row_ptr[0] = 0
    for b in range(bsz):
        p0, c0, r = pair_start[b], col_start[b], row_start[b]
        kk = count[b]
        if kk > 0:
            npair, capacity, total[b] = image_pairs(
                boxes[b],
                o2m[b],
                embed[b],
                best[b],
                mass[b],
                hyp_rows[b, :kk],
                hyp_h[b, :kk],
                hyp_label[b, :kk],
                st,
                pair_row[p0:],
                pair_col[p0:],
                cost[p0:],
            )
            for j in range(kk + 1):
                col_mass[c0 + j] = capacity[j] / total[b]
            for p in range(p0, p0 + npair):
                pair_col[p] += c0
                if p == p0 or pair_row[p] != pair_row[p - 1]:
                    row_mass[r] = mass[b, pair_row[p]] / total[b]
                    r += 1
                row_ptr[r] = p + 1
            p0, c0 = p0 + npair, c0 + kk + 1
        pair_start[b + 1], col_start[b + 1], row_start[b + 1] = p0, c0, r
    npairs = pair_start[bsz]
    ok = cost_to_kernel(row_ptr, pair_col[:npairs], cost[:npairs], col_mass, st.eps)
    counts = np.zeros(bsz, dtype=np.int64)
    index, out_boxes = np.empty(k * bsz, dtype=np.int64), np.empty((k * bsz, 4))
    scores, support = np.empty(k * bsz), np.empty(k * bsz)
    labels = np.empty(k * bsz, dtype=np.int64)
    out_coeffs = np.empty((k * bsz, coeffs.shape[2]))
    evidence = np.empty((k * bsz, o2m.shape[2]))
    if not ok:
        return False, counts, index, out_boxes, scores, labels, support, out_coeffs, evidence
    kern = cost[:npairs]
    u, v, _ = sinkhorn_scaling(
        row_ptr, pair_col[:npairs], kern, row_mass, col_mass, st.iters, st.tol
    )

    done = 0
    for b in range(bsz):
        kk = count[b]
        if kk == 0:
            continue
        # The image's plan in mass units, in place of its kernel; its columns back to local.
        p0, p1, c0 = pair_start[b], pair_start[b + 1], col_start[b]
        r = row_start[b] - 1
        for p in range(p0, p1):
            if p == row_ptr[r + 1]:
                r += 1
            kern[p] *= u[r] * v[pair_col[p]] * total[b]
            pair_col[p] -= c0
        keep, fb, sc, lb, sp, cf, ev = image_detections(
            boxes[b],
            o2m[b],
            o2o[b],
            q[b],
            mass[b],
            coeffs[b],
            hyp_rows[b, :kk],
            hyp_label[b, :kk],
            pair_row[p0:p1],
            pair_col[p0:p1],
            kern[p0:p1],
            entry_row,
            entry_plan,
            st,
        )
        m = keep.shape[0]
        counts[b] = m
        for t in range(m):
            index[done + t] = hyp_rows[b, keep[t]]
            copy_into(out_boxes[done + t], fb[t])
            copy_into(out_coeffs[done + t], cf[t])
            copy_into(evidence[done + t], ev[t])
            scores[done + t], labels[done + t], support[done + t] = sc[t], lb[t], sp[t]
        done += m
    return (
        True,
        counts,
        index[:done],
        out_boxes[:done],
        scores[:done],
        labels[:done],
        support[:done],
        out_coeffs[:done],
        evidence[:done],
    )
