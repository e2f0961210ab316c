"""DNMS step 1: pick the hypotheses and solve the row-to-hypothesis transport problem.

The cost, masses and capacities are those of :mod:`fabricnms.model.dnms` (module docstring).
Boxes are ``xyxy`` pixels; all tensors are padded batches ``[B, N, ...]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from fabricnms.model.boxes import pairwise_iou_iomin
from fabricnms.model.sinkhorn import SinkhornResult, sinkhorn_solve, sinkhorn_solve_sparse

P_EPS = 1e-4  # clamp for probabilities inside logs
TINY = 1e-12


@dataclass(frozen=True)
class MatchSettings:
    """The matching's weights and solver settings (see :class:`~fabricnms.model.dnms.
    DifferentiableNMS` for each)."""

    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 2.0
    delta: float = 1.0
    iomin_weight: float = 0.5
    match_cost: float = 1.5
    eps: float = 0.1
    iters: int = 50
    tol: float | None = 1e-3
    hyp_floor: float = 0.05
    max_hyp: int = 100
    sparse_ratio: float = 0.5


@dataclass
class Matching:
    """The transport problem and plan of one batch (``K`` = hypotheses after padding).

    plan: ``[B, N, K + 1]`` in mass units; the last column is the dustbin.
    pair_cost: ``[B, N, R]`` cost of the pairs each row may use (``+inf``: unused slot; the
        last slot is the dustbin). pair_index: ``[B, N, R]`` their columns in ``plan``.
    hyp_index: ``[B, K]`` row index of each hypothesis. hyp_valid: ``[B, K]`` bool.
    hyp_score: ``[B, K]`` o2o probability of each hypothesis's class. hyp_label: ``[B, K]``.
    row_mass: ``[B, N]``; capacity: ``[B, K]`` column masses.
    iterations / marginal_error: Sinkhorn facts (error ``[B]``, relative to the total mass).
    """

    plan: Tensor
    pair_cost: Tensor
    pair_index: Tensor
    hyp_index: Tensor
    hyp_valid: Tensor
    hyp_score: Tensor
    hyp_label: Tensor
    row_mass: Tensor
    capacity: Tensor
    iterations: int
    marginal_error: Tensor


def row_quality(scores_o2m: Tensor, quality: Tensor | None) -> Tensor:
    """``[B, N]`` IoU-quality, or the best o2m class probability where none is given."""
    return scores_o2m.amax(dim=-1) if quality is None else quality


def match_hypotheses(
    s: MatchSettings,
    boxes: Tensor,
    scores_o2m: Tensor,
    scores_o2o: Tensor,
    quality: Tensor | None = None,
    embed: Tensor | None = None,
    valid: Tensor | None = None,
) -> Matching:
    """Pick hypotheses and solve the transport problem (see the module docstring).

    Args as in :meth:`fabricnms.model.dnms.DifferentiableNMS.forward`; ``N`` must be at least
    1.
    """
    bsz, n, _ = scores_o2m.shape
    if valid is None:
        valid = torch.ones(bsz, n, dtype=torch.bool, device=boxes.device)
    row_p, _ = scores_o2m.max(dim=-1)
    mass = (row_p * row_quality(scores_o2m, quality)).clamp(min=0).sqrt()
    mass = torch.where(valid, mass, torch.zeros_like(mass))

    # Hypotheses: top-k o2o scores above the floor, per image; K trimmed to the batch max.
    hyp_all, hyp_lab_all = scores_o2o.max(dim=-1)
    hyp_all = torch.where(valid, hyp_all, torch.full_like(hyp_all, -1.0))
    hyp_score, hyp_index = hyp_all.topk(min(s.max_hyp, n), dim=1)
    hyp_valid = (hyp_score >= s.hyp_floor) & (mass.gather(1, hyp_index) > 0)
    k = max(int(hyp_valid.sum(dim=1).max()), 1)
    hyp_score, hyp_index, hyp_valid = hyp_score[:, :k], hyp_index[:, :k], hyp_valid[:, :k]
    hyp_label = hyp_lab_all.gather(1, hyp_index)
    hyp_boxes = boxes.gather(1, hyp_index[..., None].expand(-1, -1, 4))

    # Pairs: each row lists the valid hypotheses its box touches, then the dustbin. Only
    # they may take its mass (the hard column marginal would otherwise fill small columns
    # with far-away confident rows), so every other cost is computed per listed pair.
    iou, iomin = pairwise_iou_iomin(boxes, hyp_boxes)  # [B, N, K]: the only O(N K) step
    touch = (iou > 0) & hyp_valid[:, None, :] & valid[:, :, None]
    count = touch.sum(dim=2)
    r = int(count.max())
    _, idx = touch.to(boxes.dtype).topk(r, dim=2)  # [B, N, r], touched ones first
    used = torch.arange(r, device=boxes.device) < count[..., None]
    flat = idx.reshape(bsz, n * r)
    mu = s.iomin_weight
    overlap = (1 - mu) * iou.gather(2, idx) + mu * iomin.gather(2, idx)
    label = hyp_label.gather(1, flat).view(bsz, n, r)
    agree = (scores_o2m.gather(2, label) / row_p.clamp(min=P_EPS)[..., None]).clamp(max=1.0)
    m_c = mass.clamp(P_EPS, 1 - P_EPS)
    real = s.alpha * -m_c.log()[..., None] + s.gamma * (1.0 - overlap) + s.delta * (1.0 - agree)
    if embed is not None and embed.shape[-1] > 0:
        f = F.normalize(embed, dim=-1)
        f_hyp = f.gather(1, hyp_index[..., None].expand(-1, -1, f.shape[-1]))
        cos = (f @ f_hyp.transpose(1, 2)).gather(2, idx)
        real = real + s.beta * (1.0 - cos) / 2.0
    real = torch.where(used, real, torch.full_like(real, float("inf")))
    background = s.alpha * -(1 - m_c).log() + s.match_cost  # [B, N]

    h = torch.where(hyp_valid, hyp_score, torch.zeros_like(hyp_score))
    prior = torch.where(used, overlap * agree * h.gather(1, flat).view(bsz, n, r), 0.0)
    resp = prior / (1.0 + prior.sum(dim=2, keepdim=True))
    capacity = torch.zeros_like(h).scatter_add(1, flat, (mass[..., None] * resp).view(bsz, -1))
    # Masses normalised to total 1, so ``tol`` is relative; the plan is scaled back.
    total = mass.sum(dim=1, keepdim=True).clamp(min=TINY)
    bin_mass = (total - capacity.sum(dim=1, keepdim=True)).clamp(min=0)
    cost = torch.cat([real, background[..., None]], dim=2)  # [B, N, r + 1]
    index = torch.cat([idx, idx.new_full((bsz, n, 1), k)], dim=2)
    res = _transport(
        s,
        cost,
        index,
        mass / total,
        torch.cat([capacity, bin_mass], dim=1) / total,
        valid,
        torch.cat([hyp_valid, torch.ones_like(valid[:, :1])], dim=1),
    )
    plan = torch.zeros(bsz, n, k + 1, dtype=cost.dtype, device=cost.device)
    return Matching(
        plan=plan.scatter(2, index, res.plan * total[..., None]),
        pair_cost=cost,
        pair_index=index,
        hyp_index=hyp_index,
        hyp_valid=hyp_valid,
        hyp_score=hyp_score,
        hyp_label=hyp_label,
        row_mass=mass,
        capacity=capacity,
        iterations=res.iterations,
        marginal_error=res.marginal_error,
    )


def _transport(
    s: MatchSettings,
    cost: Tensor,
    index: Tensor,
    row_mass: Tensor,
    col_mass: Tensor,
    row_valid: Tensor,
    col_valid: Tensor,
) -> SinkhornResult:
    """Sinkhorn on the listed pairs ``cost [B, N, R]`` at columns ``index [B, N, R]``.

    Sparse when the rows list at most ``sparse_ratio`` of the ``K + 1`` columns (a large
    frame: each row touches a few hypotheses), dense otherwise (a small frame full of
    overlapping candidates, where the dense reductions are faster). Same plan either way,
    returned per pair: ``[B, N, R]``.
    """
    m = col_mass.shape[1]
    args = (row_mass, col_mass, s.eps, s.iters, s.tol, row_valid, col_valid, 5)
    if cost.shape[2] <= s.sparse_ratio * m:
        return sinkhorn_solve_sparse(cost, index, *args)
    dense = torch.full(
        (*cost.shape[:2], m), float("inf"), dtype=cost.dtype, device=cost.device
    ).scatter(2, index, cost)
    res = sinkhorn_solve(dense, *args)
    return SinkhornResult(res.plan.gather(2, index), res.iterations, res.marginal_error)


def check_inputs(
    boxes: Tensor,
    scores_o2m: Tensor,
    scores_o2o: Tensor,
    quality: Tensor | None,
    embed: Tensor | None,
    valid: Tensor | None,
) -> None:
    """Shapes of :func:`match_hypotheses`' inputs (see there); raises ValueError naming the one
    that does not fit."""
    if boxes.dim() != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be [B, N, 4], got {tuple(boxes.shape)}")
    bn = tuple(boxes.shape[:2])
    if scores_o2m.dim() != 3 or tuple(scores_o2m.shape[:2]) != bn:
        raise ValueError(f"scores_o2m must be [B, N, C] with B, N = {bn}")
    if scores_o2o.shape != scores_o2m.shape:
        raise ValueError("scores_o2o must have the shape of scores_o2m")
    if quality is not None and tuple(quality.shape) != bn:
        raise ValueError(f"quality must be [B, N] = {bn}, got {tuple(quality.shape)}")
    if embed is not None and (embed.dim() != 3 or tuple(embed.shape[:2]) != bn):
        raise ValueError(f"embed must be [B, N, D] with B, N = {bn}")
    if valid is not None and tuple(valid.shape) != bn:
        raise ValueError(f"valid must be [B, N] = {bn}, got {tuple(valid.shape)}")
