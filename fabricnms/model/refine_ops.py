"""The pieces of the entropy-constrained mask refinement (:mod:`fabricnms.model.refine`):
binary entropy, crops padded to one grid, contrast edge weights, the smoothed total variation
and its gradient on a :class:`Grid`, the entropy-constrained linear minimisation oracle
(:func:`entropy_lmo`), the objective and its Frank-Wolfe line search.

Shapes: ``K`` detections on padded ``[h, w]`` crop grids; probabilities and logits ``[K, h, w]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

LN2 = math.log(2.0)
#: Bisection bracket on ``log t`` around ``log max|g|``.
_LOG_T_BELOW = 25.0
_LOG_T_ABOVE = 12.0
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def binary_entropy_from_logits(x: Tensor) -> Tensor:
    """Elementwise ``h(sigmoid(x))`` in nats, stable for any ``|x|``."""
    a = x.abs()
    e = torch.exp(-a)
    return torch.log1p(e) + a * e / (1.0 + e)


def binary_entropy(p: Tensor) -> Tensor:
    """Elementwise ``h(p) = -p ln p - (1 - p) ln(1 - p)`` in nats (0 at ``p`` in {0, 1})."""
    return -(torch.special.xlogy(p, p) + torch.special.xlogy(1.0 - p, 1.0 - p))


def pad_logits(crops: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Stack crops ``[h_k, w_k]`` of different sizes into ``([K, h, w], valid [K, h, w] bool)``.

    Crops are placed at the top-left corner; padding cells hold 0 and are invalid.
    """
    if not crops:
        raise ValueError("pad_logits needs at least one crop")
    h = max(int(c.shape[0]) for c in crops)
    w = max(int(c.shape[1]) for c in crops)
    ref = crops[0]
    logits = ref.new_zeros(len(crops), h, w)
    valid = torch.zeros(len(crops), h, w, dtype=torch.bool, device=ref.device)
    for k, c in enumerate(crops):
        logits[k, : c.shape[0], : c.shape[1]] = c
        valid[k, : c.shape[0], : c.shape[1]] = True
    return logits, valid


def contrast_weights(colours: Tensor, sigma: float) -> tuple[Tensor, Tensor]:
    """Contrast-sensitive TV weights of the grid's 4-neighbour pairs.

    ``colours [K, C, h, w]`` (e.g. CIE-Lab sampled on each detection's grid) ->
    ``(w_x [K, h, w - 1], w_y [K, h - 1, w])`` with ``w = exp(-||c_a - c_b||^2 / (2 sigma^2))``
    for the horizontal pairs ``(i, j), (i, j + 1)`` and the vertical pairs ``(i, j), (i + 1, j)``.
    """
    if colours.dim() != 4 or sigma <= 0:
        raise ValueError(f"need colours [K, C, h, w] and sigma > 0, got {tuple(colours.shape)}")
    dx = (colours[..., :, 1:] - colours[..., :, :-1]).square().sum(1)
    dy = (colours[..., 1:, :] - colours[..., :-1, :]).square().sum(1)
    scale = -0.5 / (sigma * sigma)
    return torch.exp(dx * scale), torch.exp(dy * scale)


class Grid:
    """Per-batch constants: validity as floats, weighted neighbour-pair masks (0 where a pair
    leaves the valid cells, else its edge weight) and cell counts."""

    def __init__(
        self, valid: Tensor, dtype: torch.dtype, edge_weights: tuple[Tensor, Tensor] | None = None
    ) -> None:
        self.valid = valid.to(dtype)
        self.pairs_x = self.valid[..., :, 1:] * self.valid[..., :, :-1]  # [K, h, w - 1]
        self.pairs_y = self.valid[..., 1:, :] * self.valid[..., :-1, :]  # [K, h - 1, w]
        if edge_weights is not None:
            wx, wy = edge_weights
            if wx.shape != self.pairs_x.shape or wy.shape != self.pairs_y.shape:
                raise ValueError(
                    f"edge_weights {tuple(wx.shape)}, {tuple(wy.shape)} must be "
                    f"{tuple(self.pairs_x.shape)}, {tuple(self.pairs_y.shape)}"
                )
            if bool((wx < 0).any()) or bool((wy < 0).any()):
                raise ValueError("edge_weights must be non-negative")
            self.pairs_x = self.pairs_x * wx.to(dtype)
            self.pairs_y = self.pairs_y * wy.to(dtype)
        self.count = self.valid.sum((-2, -1)).clamp(min=1.0)  # [K]

    def mean(self, x: Tensor) -> Tensor:
        """Mean over valid cells of ``[K, ..., h, w]`` (extra dims broadcast) -> ``[K, ...]``."""
        v = self.valid.view(self.valid.shape[0], *([1] * (x.dim() - 3)), *self.valid.shape[1:])
        c = self.count.view(-1, *([1] * (x.dim() - 3)))
        return (x * v).sum((-2, -1)) / c


def total_variation(p: Tensor, grid: Grid, delta: float) -> Tensor:
    """Smoothed TV of ``p`` ``[K, h, w]`` or ``[K, G, h, w]`` over valid pairs -> ``[K(, G)]``."""
    extra = p.dim() - 3
    px = grid.pairs_x.view(grid.pairs_x.shape[0], *([1] * extra), *grid.pairs_x.shape[1:])
    py = grid.pairs_y.view(grid.pairs_y.shape[0], *([1] * extra), *grid.pairs_y.shape[1:])
    dx = p[..., :, 1:] - p[..., :, :-1]
    dy = p[..., 1:, :] - p[..., :-1, :]
    tx = ((dx * dx + delta * delta).sqrt() - delta) * px
    ty = ((dy * dy + delta * delta).sqrt() - delta) * py
    return tx.sum((-2, -1)) + ty.sum((-2, -1))


def total_variation_grad(p: Tensor, grid: Grid, delta: float) -> Tensor:
    """Gradient of :func:`total_variation` with respect to ``p [K, h, w]`` -> ``[K, h, w]``."""
    dx = p[..., :, 1:] - p[..., :, :-1]
    dy = p[..., 1:, :] - p[..., :-1, :]
    wx = dx / (dx * dx + delta * delta).sqrt() * grid.pairs_x
    wy = dy / (dy * dy + delta * delta).sqrt() * grid.pairs_y
    return F.pad(wx, (1, 0)) - F.pad(wx, (0, 1)) + F.pad(wy, (0, 0, 1, 0)) - F.pad(wy, (0, 0, 0, 1))


def entropy_lmo(g: Tensor, grid: Grid, h0: Tensor, steps: int) -> Tensor:
    """Closed-form linear maximiser ``argmax <s, g>`` s.t. ``H(s) >= h0``, ``s [K, h, w]``.

    ``g [K, h, w]`` (any values on invalid cells), ``h0 [K]`` nats. Returns
    ``sigmoid(g / t)`` with ``t`` bisected in log space (see the module docstring), ``1[g > 0]``
    where ``h0 <= 0`` and 0.5 where ``h0`` is not reachable; 0 on invalid cells.
    """
    g = g * grid.valid
    with torch.no_grad():
        scale = g.detach().abs().amax((-2, -1)).clamp(min=torch.finfo(g.dtype).tiny).log()
        lo, hi = scale - _LOG_T_BELOW, scale + _LOG_T_ABOVE

        def entropy_at(log_t: Tensor) -> Tensor:
            return grid.mean(binary_entropy_from_logits(g.detach() * (-log_t).exp()[:, None, None]))

        floor_ok = entropy_at(lo) >= h0  # constraint (numerically) inactive
        reachable = (entropy_at(hi) >= h0) & (h0 < LN2)
        for _ in range(steps):
            mid = 0.5 * (lo + hi)
            above = entropy_at(mid) >= h0
            hi = torch.where(above, mid, hi)
            lo = torch.where(above, lo, mid)
        log_t = hi

    if g.requires_grad:
        # Straight-through implicit gradient: the value stays the feasible bracket end, the
        # derivative is dlog_t/dg = -(dH/dg) / (dH/dlog_t) where the constraint is active.
        x = g * (-log_t).exp()[:, None, None]
        sig = torch.sigmoid(x.detach())
        slope = grid.mean(x.detach().square() * sig * (1.0 - sig)).clamp(min=1e-30)
        h_now = grid.mean(binary_entropy_from_logits(x))
        active = (~floor_ok & reachable).to(g.dtype)
        log_t = log_t - active * (h_now - h_now.detach()) / slope
    s = torch.sigmoid(g * (-log_t).exp()[:, None, None])
    hard = (g > 0).to(g.dtype)
    half = torch.full_like(g, 0.5)
    s = torch.where((h0 <= 0)[:, None, None], hard, s)
    s = torch.where((~reachable)[:, None, None], half, s)
    return s * grid.valid


def objective(p: Tensor, z: Tensor, grid: Grid, lambda_tv: float, delta: float) -> Tensor:
    """``f(p)`` per valid cell -> ``[K]``."""
    linear = (p * z * grid.valid).sum((-2, -1))
    if lambda_tv == 0.0:
        return linear / grid.count
    return (linear - lambda_tv * total_variation(p, grid, delta)) / grid.count


def line_search(
    p: Tensor,
    d: Tensor,
    z: Tensor,
    grid: Grid,
    lambda_tv: float,
    delta: float,
    points: int,
    refine: int,
) -> Tensor:
    """Step ``gamma [K]`` in [0, 1] maximising ``f(p + gamma d)``.

    Grid of ``points`` steps (0 and 1 included) then ``refine`` golden-section steps in the
    bracket around the best grid step; never worse than ``gamma = 0``.
    """
    k = p.shape[0]
    a0 = (p * z * grid.valid).sum((-2, -1))  # [K]
    a1 = (d * z * grid.valid).sum((-2, -1))
    # neighbour differences are linear in gamma: diff(p + gamma d) = diff(p) + gamma diff(d)
    diffs = [
        (p[..., :, 1:] - p[..., :, :-1], d[..., :, 1:] - d[..., :, :-1], grid.pairs_x),
        (p[..., 1:, :] - p[..., :-1, :], d[..., 1:, :] - d[..., :-1, :], grid.pairs_y),
    ]

    def phi(gamma: Tensor) -> Tensor:  # gamma [K, G] -> [K, G]
        g4 = gamma[..., None, None]
        tv = sum(
            (
                ((dp[:, None] + g4 * dd[:, None]).square() + delta * delta).sqrt() * pairs[:, None]
            ).sum((-2, -1))
            for dp, dd, pairs in diffs
        )
        tv = tv - delta * (grid.pairs_x.sum((-2, -1)) + grid.pairs_y.sum((-2, -1)))[:, None]
        return (a0[:, None] + gamma * a1[:, None] - lambda_tv * tv) / grid.count[:, None]

    steps = torch.linspace(0.0, 1.0, points, dtype=p.dtype, device=p.device).expand(k, points)
    values = phi(steps)
    best = values.argmax(1)
    gamma_best = steps.gather(1, best[:, None]).squeeze(1)
    value_best = values.gather(1, best[:, None]).squeeze(1)
    width = 1.0 / (points - 1)
    a = (gamma_best - width).clamp(min=0.0)
    b = (gamma_best + width).clamp(max=1.0)
    c = b - _GOLDEN * (b - a)
    e = a + _GOLDEN * (b - a)
    fc, fe = phi(torch.stack([c, e], 1)).unbind(1)
    for _ in range(refine):
        left = fc >= fe  # the maximum lies in [a, e]
        b = torch.where(left, e, b)
        a = torch.where(left, a, c)
        new = torch.where(left, b - _GOLDEN * (b - a), a + _GOLDEN * (b - a))
        f_new = phi(new[:, None]).squeeze(1)
        c, e, fc, fe = (
            torch.where(left, new, e),
            torch.where(left, c, new),
            torch.where(left, f_new, fe),
            torch.where(left, fc, f_new),
        )
    use_c = fc >= fe
    gamma_ref = torch.where(use_c, c, e)
    value_ref = torch.where(use_c, fc, fe)
    return torch.where(value_ref > value_best, gamma_ref, gamma_best)
