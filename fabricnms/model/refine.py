"""Entropy-constrained mask refinement by Frank-Wolfe, batched over detections.

Each detection ``k`` brings mask logits ``z`` on its own crop grid (its box resampled to a
fixed ``S x S`` grid, or its native crop size), padded to a shared ``[h, w]`` with a validity
mask; ``Omega_k`` are its valid cells and ``n_k = |Omega_k|``. For every detection separately
the refinement solves::

    maximise    f(p) = ( <p, z> - lambda_tv * TV(p) ) / n_k
    subject to  H(p) = (1 / n_k) * sum_i h(p_i) >= H0,      p in [0, 1]^{n_k}

with ``h(q) = -q ln q - (1 - q) ln(1 - q)`` the binary entropy in nats and ``TV`` the
Charbonnier-smoothed, optionally edge-weighted anisotropic total variation over 4-neighbour
pairs ``e = (a, b)`` inside ``Omega_k``: ``sum_e w_e (sqrt((p_a - p_b)^2 + delta^2) - delta)``
(``delta = tv_smooth``; the smoothing makes ``f`` differentiable so Frank-Wolfe converges, and
``delta -> 0`` recovers plain TV). ``f`` is concave and the feasible set is convex (``H`` is
concave), so the problem has one optimum value.

**Edge weights.** ``w_e = 1`` for every pair is the plain TV. Contrast-sensitive weights
(:mod:`refine_ops`) ``w_e = exp(-||c_a - c_b||^2 / (2 sigma^2))`` from the image colour
``c`` sampled on the same grid make a label change cheap across an image edge and expensive
inside a uniform region, so the smoothing moves the mask boundary onto the image's edges
(the contrast-sensitive Potts term of GrabCut, relaxed to ``[0, 1]``). Any ``w_e >= 0`` keeps
``TV`` convex, hence everything below (closed-form start, monotone objective, feasibility).

**H0.** A per-pixel *mean* binary entropy in nats, in ``[0, ln 2]``; it does not grow with the
number of cells (flaw 6 of the reference code was an absolute target unrelated to the size).
The default ``0.1`` is the entropy of a crop whose one-cell boundary ring (about 14 % of a
28 x 28 grid around a box-filling defect) is fully uncertain (``0.14 * ln 2 = 0.097``) and
whose interior is certain: the soft boundary box labels leave, no more.

**Linear step (closed form).** For a gradient ``g`` the maximiser of ``<s, g>`` over
``{s : H(s) >= H0}`` is ``s = sigmoid(g / t)`` (stationarity of the Lagrangian), with the
temperature ``t`` such that ``H(s) = H0``; ``H(sigmoid(g / t))`` rises monotonically in ``t``.
``t`` is found by a fixed number of bisection steps on ``log t`` in
``[log m - 25, log m + 12]`` (``m = max |g|``), vectorised over detections, keeping the upper
end of the bracket so ``H(s) >= H0`` always holds. Edge cases, per detection:

- ``H0 <= 0``: the constraint is inactive; ``s = 1[g > 0]``.
- ``H0 >= ln 2`` (or not reachable inside the bracket, which needs ``H0 > ln 2 - 1e-11``):
  the only feasible point is ``s = 0.5`` everywhere, returned as such.
- ``H`` already ``>= H0`` at the lower end of the bracket (the constraint is numerically
  inactive): the lower end is used, i.e. ``s`` is ``1[g > 0]`` up to ``sigmoid(+-e^25)``,
  and ``0.5`` where ``g == 0`` exactly.

**lambda_tv = 0.** The objective is linear and its maximiser is the closed form
``p = sigmoid(z / t*)``: it is returned directly, without iterating.

**lambda_tv > 0.** Frank-Wolfe from the closed form: ``s_k = LMO(grad f(p_k))``,
``p_{k+1} = p_k + gamma_k (s_k - p_k)`` with ``gamma_k`` from a line search on the concave
1-D objective (a vectorised grid on ``[0, 1]`` that contains 0, then golden-section refinement
around the best grid point; the refined point is taken only if it beats the grid). ``f`` never
decreases and every iterate is a convex combination of feasible points, hence feasible. A
detection stops once its Frank-Wolfe gap ``<grad f(p), s - p> / n_k`` (an upper bound on
``f* - f(p)``) is below ``tol``; the others go on, so the result of one detection does not
depend on the rest of the batch.

**Gradients.** ``p`` is differentiable with respect to ``z`` through the final iterate: the
temperature of every linear step carries its exact implicit-function gradient
(``dt/dg = -(dH/dg) / (dH/dt)``; the bisection itself runs without grad), the Frank-Wolfe
iterates are unrolled, and the step sizes ``gamma_k`` and stopping decisions are treated as
constants (piecewise constant in ``z``). For ``lambda_tv = 0`` the gradient is exact (float64
gradcheck passes once ``bisect_steps`` pins the root to machine precision, e.g. 64).
``H0 <= 0`` (a step function) and ``H0 >= ln 2`` (a constant) have zero gradient.

Unlike the public reference code (flaws 6, 7 and 11 of ``dnms_background.md``), the output is
per detection and per cell (probabilities in [0, 1], never normalised across detections), the
temperature is solved per detection on device, and nothing larger than ``K x h x w`` (times
the line-search grid) is ever allocated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from fabricnms.model.refine_ops import (
    Grid,
    binary_entropy,
    entropy_lmo,
    line_search,
    objective,
    total_variation_grad,
)

#: Default target mean binary entropy in nats (see the module docstring).
DEFAULT_H0 = 0.1


@dataclass
class RefineResult:
    """Refined masks of ``K`` detections on their padded ``[h, w]`` crop grids.

    probs: ``[K, h, w]`` probabilities (0 outside the valid cells).
    masks: ``[K, h, w]`` bool, ``probs > 0.5`` on valid cells.
    area: ``[K]`` mask area in frame pixels (mask cells times ``pixel_area``).
    entropy: ``[K]`` mean binary entropy of ``probs`` over valid cells (nats, ``>= H0``).
    uncertainty: ``[K]`` fraction of valid cells with ``0.2 < p < 0.8`` (the ambiguous band).
    objective: ``[K]`` final ``f(p)`` (per valid cell).
    gap: ``[K]`` last Frank-Wolfe gap (0 for the closed form).
    iterations: ``[K]`` int64 Frank-Wolfe steps taken.
    history: with ``return_history``: ``objective`` and ``entropy`` ``[T + 1, K]`` (the start
        and every iterate), ``gap`` and ``step`` ``[T, K]``; ``None`` otherwise.
    """

    probs: Tensor
    masks: Tensor
    area: Tensor
    entropy: Tensor
    uncertainty: Tensor
    objective: Tensor
    gap: Tensor
    iterations: Tensor
    history: dict[str, Tensor] | None = None


def refine_masks(
    logits: Tensor,
    valid: Tensor | None = None,
    h0: float | Tensor = DEFAULT_H0,
    lambda_tv: float = 0.0,
    iters: int = 20,
    *,
    tol: float = 1e-5,
    tv_smooth: float = 0.01,
    bisect_steps: int = 24,
    line_points: int = 6,
    line_refine: int = 6,
    pixel_area: Tensor | None = None,
    edge_weights: tuple[Tensor, Tensor] | None = None,
    return_history: bool = False,
) -> RefineResult:
    """Refine the masks of ``K`` detections (see the module docstring for the problem).

    Args:
        logits: ``[K, h, w]`` mask logits ``z`` on each detection's crop grid (padded).
        valid: ``[K, h, w]`` bool, the cells that belong to each detection; ``None`` = all.
        h0: target mean binary entropy per valid cell in nats, a float or ``[K]``.
        lambda_tv: weight of the smoothed total variation (0 = closed form, no iterations).
        iters: maximum Frank-Wolfe steps (``lambda_tv > 0``).
        tol: a detection stops when its Frank-Wolfe gap (per cell) drops below ``tol``.
        tv_smooth: Charbonnier ``delta`` of the TV term.
        bisect_steps: bisection steps on ``log t`` per linear step (37 / 2^24 ~ 2e-6 in log t).
        line_points: grid points of the line search on ``[0, 1]`` (>= 2).
        line_refine: golden-section steps after the grid.
        pixel_area: ``[K]`` frame pixels covered by one grid cell (box area / valid cells);
            ``None`` = 1 (native-resolution crops).
        edge_weights: ``(w_x [K, h, w - 1], w_y [K, h - 1, w])`` non-negative TV weights of
            the horizontal and vertical neighbour pairs (:mod:`refine_ops`); ``None`` =
            all 1 (plain TV). Unused when ``lambda_tv = 0``.
        return_history: record objective, entropy, gap and step size per iteration.

    Returns:
        A :class:`RefineResult`; everything stays on ``logits.device``.
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must be [K, h, w], got {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be floating point, got {logits.dtype}")
    if valid is None:
        valid = torch.ones(logits.shape, dtype=torch.bool, device=logits.device)
    if valid.shape != logits.shape:
        raise ValueError(f"valid {tuple(valid.shape)} must match logits {tuple(logits.shape)}")
    if lambda_tv < 0 or iters < 0 or line_points < 2 or bisect_steps < 1:
        raise ValueError("need lambda_tv >= 0, iters >= 0, line_points >= 2, bisect_steps >= 1")
    k = logits.shape[0]
    grid = Grid(valid, logits.dtype, edge_weights)
    h0_t = torch.as_tensor(h0, dtype=logits.dtype, device=logits.device).expand(k)
    z = logits * grid.valid

    p = entropy_lmo(z, grid, h0_t, bisect_steps)
    gap = torch.zeros(k, dtype=logits.dtype, device=logits.device)
    steps_taken = torch.zeros(k, dtype=torch.long, device=logits.device)
    hist: dict[str, list[Tensor]] = {
        "objective": [objective(p.detach(), z.detach(), grid, lambda_tv, tv_smooth)],
        "entropy": [grid.mean(binary_entropy(p.detach()))],
        "gap": [],
        "step": [],
    }
    running = torch.ones(k, dtype=torch.bool, device=logits.device)
    for _ in range(iters if lambda_tv > 0 else 0):
        grad = z - lambda_tv * total_variation_grad(p, grid, tv_smooth)
        s = entropy_lmo(grad, grid, h0_t, bisect_steps)
        d = s - p
        gap = torch.where(running, grid.mean(grad * d).detach(), gap)
        running = running & (gap > tol)
        with torch.no_grad():
            gamma = line_search(
                p.detach(),
                d.detach(),
                z.detach(),
                grid,
                lambda_tv,
                tv_smooth,
                line_points,
                line_refine,
            )
            gamma = torch.where(running, gamma, torch.zeros_like(gamma))
        p = p + gamma[:, None, None] * d
        steps_taken += running.long()
        if return_history:
            hist["objective"].append(objective(p.detach(), z.detach(), grid, lambda_tv, tv_smooth))
            hist["entropy"].append(grid.mean(binary_entropy(p.detach())))
            hist["gap"].append(gap)
            hist["step"].append(gamma)
        if not bool(running.any()):
            break

    masks = (p > 0.5) & valid
    cells = masks.sum((-2, -1)).to(logits.dtype)
    area = cells if pixel_area is None else cells * pixel_area.to(logits.dtype)
    band = ((p > 0.2) & (p < 0.8) & valid).sum((-2, -1)).to(logits.dtype) / grid.count
    history = None
    if return_history:
        history = {key: torch.stack(v) if v else logits.new_zeros(0, k) for key, v in hist.items()}
    return RefineResult(
        probs=p,
        masks=masks,
        area=area,
        entropy=grid.mean(binary_entropy(p)),
        uncertainty=band,
        objective=objective(p, z, grid, lambda_tv, tv_smooth),
        gap=gap,
        iterations=steps_taken,
        history=history,
    )


class EntropyRefiner(nn.Module):
    """:func:`refine_masks` with fixed settings, as a parameter-free module.

    ``forward(logits [K, h, w], valid [K, h, w] | None, pixel_area [K] | None,
    edge_weights ([K, h, w - 1], [K, h - 1, w]) | None)`` -> :class:`RefineResult`.
    """

    def __init__(
        self,
        h0: float = DEFAULT_H0,
        lambda_tv: float = 0.0,
        iters: int = 20,
        tol: float = 1e-5,
        tv_smooth: float = 0.01,
        bisect_steps: int = 24,
    ) -> None:
        super().__init__()
        self.h0 = h0
        self.lambda_tv = lambda_tv
        self.iters = iters
        self.tol = tol
        self.tv_smooth = tv_smooth
        self.bisect_steps = bisect_steps

    def forward(
        self,
        logits: Tensor,
        valid: Tensor | None = None,
        pixel_area: Tensor | None = None,
        edge_weights: tuple[Tensor, Tensor] | None = None,
    ) -> RefineResult:
        return refine_masks(
            logits,
            valid,
            self.h0,
            self.lambda_tv,
            self.iters,
            tol=self.tol,
            tv_smooth=self.tv_smooth,
            bisect_steps=self.bisect_steps,
            pixel_area=pixel_area,
            edge_weights=edge_weights,
        )

    def extra_repr(self) -> str:
        return f"h0={self.h0}, lambda_tv={self.lambda_tv}, iters={self.iters}"
