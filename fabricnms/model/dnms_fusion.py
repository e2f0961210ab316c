"""DNMS step 2: what each plan column is: its fused box, class and confidence.

Plans are ``[B, N, K]`` in mass units (row ``i`` to hypothesis column ``j``); boxes ``xyxy``
pixels. The formulas are those of :mod:`fabricnms.model.dnms` (module docstring).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fabricnms.model.dnms_match import TINY


@dataclass(frozen=True)
class FusionSettings:
    """Robust box fusion and scoring settings (see :class:`~fabricnms.model.dnms.
    DifferentiableNMS` for each)."""

    fuse_sigma: float = 0.15
    fuse_steps: int = 2
    fuse_rows: int = 64
    score_power: float = 0.5


def class_at(scores: Tensor, labels: Tensor) -> Tensor:
    """``scores [B, N, C]`` at each column's class ``labels [B, K]`` -> ``[B, N, K]``."""
    return scores.gather(2, labels[:, None, :].expand(-1, scores.shape[1], -1))


def fuse(
    s: FusionSettings,
    plan: Tensor,
    boxes: Tensor,
    start: Tensor,
    quality: Tensor,
) -> Tensor:
    """Robust plan- and quality-weighted fusion of the rows' boxes.

    Args:
        plan: ``[B, N, K]`` row-to-hypothesis mass. boxes: ``[B, N, 4]`` row boxes.
        start: ``[B, K, 4]`` initial estimate (the hypothesis boxes). quality: ``[B, N]``.

    Returns:
        ``[B, K, 4]`` fused xyxy boxes (``start`` where a column has no mass).
    """
    weight, rows = _heaviest_rows(s, plan, quality, boxes)
    weight = weight[..., None]
    center = start
    for _ in range(s.fuse_steps):
        wh = (center[..., 2:] - center[..., :2]).clamp(min=1.0)
        scale = s.fuse_sigma * torch.cat([wh, wh], dim=-1)[:, None]  # [B, 1, K, 4]
        # Clamped so the weights never go subnormal (orders of magnitude slower on CPU).
        z = (0.5 * ((rows - center[:, None]) / scale) ** 2).clamp(max=60.0)
        w = weight * torch.exp(-z)
        center = ((w * rows).sum(1) + TINY * center) / (w.sum(1) + TINY)
    return center


def fuse_coeffs(
    s: FusionSettings, plan: Tensor, coeffs: Tensor, start: Tensor, quality: Tensor
) -> Tensor:
    """Mask coefficients of each column: the mean of its rows' ``coeffs [B, N, P]`` weighted
    by ``plan x quality``, over the same ``fuse_rows`` heaviest rows as :func:`fuse` (the
    boxes' robust per-coordinate re-weighting is geometric and left out).

    ``start [B, K, P]`` (the hypotheses' own coefficients) stands where a column has no mass.
    Returns ``[B, K, P]``.
    """
    weight, rows = _heaviest_rows(s, plan, quality, coeffs)  # [B, T, K], [B, T, K, P]
    total = (weight[..., None] * rows).sum(1) + TINY * start
    return total / (weight.sum(1)[..., None] + TINY)


def _heaviest_rows(
    s: FusionSettings, plan: Tensor, quality: Tensor, values: Tensor
) -> tuple[Tensor, Tensor]:
    """Each column's ``fuse_rows`` heaviest rows by ``plan x quality`` (``O(T K)``, not
    ``O(N K)``): weights ``[B, T, K]`` and the rows' ``values [B, N, F]`` as ``[B, T, K, F]``.
    """
    bsz, n, kk = plan.shape
    weight, idx = (plan * quality[..., None]).topk(min(s.fuse_rows, n), dim=1)
    t, f = idx.shape[1], values.shape[-1]
    rows = values.gather(1, idx.reshape(bsz, t * kk, 1).expand(-1, -1, f))
    return weight, rows.reshape(bsz, t, kk, f)


def score(s: FusionSettings, plan: Tensor, h: Tensor, u_mass: Tensor) -> tuple[Tensor, Tensor]:
    """Detection confidence ``[B, K]`` and support (received row mass) ``[B, K]``.

    ``plan [B, N, K]`` in mass units; ``h [B, K]`` the one-to-one evidence of each column
    (see :func:`collected_o2o`); ``u_mass [B, K]`` the plan-weighted sum of the rows'
    ``sqrt(o2m prob of the column's class * quality)`` (see :func:`column_labels`).
    """
    support = plan.sum(dim=1)
    u = u_mass / support.clamp(min=TINY)
    w = s.score_power
    return h.clamp(TINY, 1) ** (1 - w) * u.clamp(TINY, 1) ** w, support


def collected_o2o(plan: Tensor, scores_o2o: Tensor, row_mass: Tensor, labels: Tensor) -> Tensor:
    """``[B, K]`` one-to-one probability mass column ``j`` collects, capped at 1:
    ``sum_i (P_ij / m_i) o2o_i(c_j)`` (``P`` ``[B, N, K]`` in mass units, so ``P_ij / m_i``
    is the share of row ``i`` that went to ``j``; ``row_mass [B, N]`` the ``m_i``;
    ``labels [B, K]`` the ``c_j``)."""
    share = plan / row_mass.clamp(min=TINY)[..., None]
    return (share * class_at(scores_o2o, labels)).sum(dim=1).clamp(max=1.0)


def column_labels(plan: Tensor, evidence: Tensor, fallback: Tensor) -> tuple[Tensor, Tensor]:
    """Class of each column ``[B, K]``: the class its rows support most,
    ``argmax_c sum_i P_ij e_i(c)`` with ``e_i(c) = sqrt(o2m_i(c) q_i)`` (``evidence
    [B, N, C]``, ``plan [B, N, K]``); ``fallback [B, K]`` (the hypotheses' o2o classes)
    where a column received no rows. Also returns that support ``sum_i P_ij e_i(c_j)``
    ``[B, K]`` (0 for an empty column), the ``u_mass`` of :func:`score`.

    The one-to-one branch picks *where* the hypotheses are; what they are is decided by all
    the rows the plan gives them, so a 1000-px warp line is classified by the evidence
    along its whole length, not by the one location that seeded it (the o2o class scores
    of a long line are spread thin over its plan rows and nearly flat across the classes).
    """
    best, label = torch.einsum("bnk,bnc->bkc", plan, evidence).max(dim=2)
    return torch.where(best > 0, label, fallback), best


def class_evidence(plan: Tensor, evidence: Tensor) -> Tensor:
    """``[B, K, C]`` plan-weighted mean class evidence of each column,
    ``U_j(c) = sum_i P_ij e_i(c) / sum_i P_ij`` (``plan [B, N, K]``, ``evidence [B, N, C]`` as in
    :func:`column_labels`; 0 for an empty column): what :mod:`fabricnms.model.class_guesses`
    ranks a detection's other classes by."""
    support = plan.sum(dim=1).clamp(min=TINY)[..., None]
    return torch.einsum("bnk,bnc->bkc", plan, evidence) / support
