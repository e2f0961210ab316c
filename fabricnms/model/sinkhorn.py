"""Log-domain, batched Sinkhorn-Knopp for entropic optimal transport.

Solves, for each batch element independently,

    min_P <P, C> - eps * H(P)   s.t.  P 1 = a,  P^T 1 = b,  P >= 0

with dual potentials ``f [B,N]``, ``g [B,M]`` updated by log-sum-exp, so it stays finite in
float32 for ``eps`` down to 1e-3 with costs of order 10. The plan is
``P_ij = exp((f_i + g_j - C_ij) / eps)``. Masses must balance (``a.sum() == b.sum()`` per
image) for both marginals to be met; the last update is the column one, so column sums are
exact and the row error is what :class:`SinkhornResult` reports.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

_NEG = -1e30  # finite stand-in for log(0): keeps log-sum-exp free of inf - inf


@dataclass
class SinkhornResult:
    """Plan and convergence facts of one :func:`sinkhorn_solve` call.

    plan: ``[B, N, M]`` transport plan (zero on padded rows/columns).
    iterations: row+column update pairs actually run.
    marginal_error: ``[B]`` max absolute row-marginal error (columns are exact after the last step).
    """

    plan: Tensor
    iterations: int
    marginal_error: Tensor


def sinkhorn_solve(
    cost: Tensor,
    row_mass: Tensor,
    col_mass: Tensor,
    eps: float,
    iters: int = 100,
    tol: float | None = None,
    row_valid: Tensor | None = None,
    col_valid: Tensor | None = None,
    check_every: int = 10,
) -> SinkhornResult:
    """Entropic OT plan between row masses and column masses.

    Args:
        cost: ``[B, N, M]`` transport cost.
        row_mass: ``[B, N]`` non-negative row masses ``a``.
        col_mass: ``[B, M]`` non-negative column masses ``b``.
        eps: entropic regulariser (> 0); smaller is closer to the unregularised assignment.
        iters: maximum number of row+column update pairs.
        tol: stop early once every image's row-marginal error is below ``tol`` (checked every
            ``check_every`` iterations). ``None`` runs exactly ``iters`` iterations, which keeps
            the graph fixed for differentiation.
        row_valid: ``[B, N]`` bool, False for padding rows (images with fewer proposals).
        col_valid: ``[B, M]`` bool, False for padding columns.

    Returns:
        :class:`SinkhornResult`; gradients flow to ``cost``, ``row_mass`` and ``col_mass``
        through the unrolled iterations.
    """
    if cost.dim() != 3:
        raise ValueError(f"cost must be [B, N, M], got shape {tuple(cost.shape)}")
    if eps <= 0:
        raise ValueError(f"eps must be positive, got {eps}")
    b, n, m = cost.shape
    if row_mass.shape != (b, n) or col_mass.shape != (b, m):
        raise ValueError(
            f"masses must be [B,N]={b, n} and [B,M]={b, m}, "
            f"got {tuple(row_mass.shape)} and {tuple(col_mass.shape)}"
        )
    rv = row_mass > 0 if row_valid is None else row_valid & (row_mass > 0)
    cv = col_mass > 0 if col_valid is None else col_valid & (col_mass > 0)
    pair = rv[:, :, None] & cv[:, None, :]

    log_a = torch.where(rv, row_mass.clamp(min=1e-30).log(), torch.full_like(row_mass, _NEG))
    log_b = torch.where(cv, col_mass.clamp(min=1e-30).log(), torch.full_like(col_mass, _NEG))
    # Kernel in log space, masked pairs pushed to -1e30 (exp underflows to exactly 0).
    log_k = torch.where(pair, -cost / eps, torch.full_like(cost, _NEG))

    f = torch.zeros_like(row_mass)  # f / eps
    g = torch.zeros_like(col_mass)  # g / eps
    done = 0
    for it in range(1, iters + 1):
        f = log_a - torch.logsumexp(log_k + g[:, None, :], dim=2)
        g = log_b - torch.logsumexp(log_k + f[:, :, None], dim=1)
        f = torch.where(rv, f, torch.zeros_like(f))
        g = torch.where(cv, g, torch.zeros_like(g))
        done = it
        if tol is not None and it % check_every == 0:
            with torch.no_grad():
                err = _row_error(log_k, f, g, row_mass, rv)
            if bool((err < tol).all()):
                break

    log_p = torch.where(pair, log_k + f[:, :, None] + g[:, None, :], torch.full_like(cost, _NEG))
    plan = log_p.exp()
    with torch.no_grad():
        err = (plan.sum(2) - torch.where(rv, row_mass, torch.zeros_like(row_mass))).abs()
        err = err.amax(dim=1) if n > 0 else torch.zeros(b, dtype=cost.dtype, device=cost.device)
    return SinkhornResult(plan=plan, iterations=done, marginal_error=err)


def _row_error(log_k: Tensor, f: Tensor, g: Tensor, row_mass: Tensor, rv: Tensor) -> Tensor:
    rows = torch.logsumexp(log_k + f[:, :, None] + g[:, None, :], dim=2).exp()
    err = torch.where(rv, (rows - row_mass).abs(), torch.zeros_like(rows))
    return err.amax(dim=1) if err.shape[1] > 0 else err.sum(dim=1)


def sinkhorn(
    cost: Tensor,
    row_mass: Tensor,
    col_mass: Tensor,
    eps: float,
    iters: int = 100,
    tol: float | None = None,
    row_valid: Tensor | None = None,
    col_valid: Tensor | None = None,
) -> Tensor:
    """Transport plan ``[B, N, M]``; see :func:`sinkhorn_solve` for the arguments."""
    return sinkhorn_solve(cost, row_mass, col_mass, eps, iters, tol, row_valid, col_valid).plan
