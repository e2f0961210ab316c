"""Entropy-constrained Frank-Wolfe mask refinement (fabricnms.model.refine)."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from scipy.special import expit

from fabricnms.model.refine import EntropyRefiner, refine_masks
from fabricnms.model.refine_ops import (
    LN2,
    Grid,
    binary_entropy,
    contrast_weights,
    pad_logits,
    total_variation,
    total_variation_grad,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _disk(size: int, radius: float) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    c = (size - 1) / 2
    return ((yy - c) ** 2 + (xx - c) ** 2) <= radius**2


def _reference_temperature(z: np.ndarray, h0: float) -> float:
    """Root of mean h(sigmoid(z / t)) = h0 by Brent's method (independent of the module)."""

    def gap(log_t: float) -> float:
        x = np.abs(z) / math.exp(log_t)
        h = np.log1p(np.exp(-x)) + x * expit(-x)  # binary entropy of sigmoid(x), stable
        return float(h.mean() - h0)

    return math.exp(brentq(gap, -30.0, 30.0, xtol=1e-14))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_closed_form_matches_reference_root(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(4, 12, 15, generator=gen, dtype=torch.float64) * torch.tensor(
        [0.5, 2.0, 6.0, 20.0], dtype=torch.float64
    ).view(4, 1, 1)
    for h0 in (0.02, 0.1, 0.4):
        res = refine_masks(z.to(dtype), h0=h0)
        for k in range(4):
            t = _reference_temperature(z[k].numpy(), h0)
            expected = torch.sigmoid(z[k] / t)
            assert torch.allclose(res.probs[k].double(), expected, atol=1e-4)
        assert torch.allclose(
            res.entropy.double(), torch.full((4,), h0, dtype=torch.float64), atol=1e-4
        )
        assert (res.entropy >= h0 - 1e-6).all()  # the bracket end kept is feasible
        assert torch.equal(res.masks, z.to(dtype) > 0)  # temperature never flips a sign
        assert (res.iterations == 0).all() and (res.gap == 0).all()


def test_edge_cases_of_the_target() -> None:
    z = torch.tensor([[[-2.0, 0.0, 3.0], [1.0, -1.0, 0.5]]])
    assert torch.equal(refine_masks(z, h0=0.0).probs, (z > 0).float())
    assert torch.equal(refine_masks(z, h0=-1.0).probs, (z > 0).float())
    assert torch.equal(refine_masks(z, h0=LN2).probs, torch.full_like(z, 0.5))
    assert torch.equal(refine_masks(z, h0=1.0).probs, torch.full_like(z, 0.5))
    # target below what a zero logit already contributes: constraint inactive, 1[z > 0] with 0.5
    tiny = refine_masks(z, h0=0.05)
    assert torch.allclose(tiny.probs, torch.tensor([[[0.0, 0.5, 1.0], [1.0, 0.0, 1.0]]]), atol=1e-6)
    assert tiny.entropy.item() == pytest.approx(LN2 / 6, abs=1e-6)
    # per-detection targets
    two = refine_masks(torch.cat([z, z]), h0=torch.tensor([0.0, 0.3]))
    assert torch.equal(two.probs[0], (z[0] > 0).float())
    assert two.entropy[1].item() == pytest.approx(0.3, abs=1e-5)


def test_total_variation_gradient_matches_autograd() -> None:
    gen = torch.Generator().manual_seed(1)
    p = torch.rand(3, 7, 9, generator=gen, dtype=torch.float64, requires_grad=True)
    valid = torch.rand(3, 7, 9, generator=gen) > 0.2
    grid = Grid(valid, torch.float64)
    (auto,) = torch.autograd.grad(total_variation(p, grid, 0.05).sum(), p)
    assert torch.allclose(total_variation_grad(p.detach(), grid, 0.05), auto, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_frank_wolfe_is_monotone_and_feasible(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(2)
    z = _disk(24, 7).to(dtype) * 6 - 3 + torch.randn(3, 24, 24, generator=gen).to(dtype) * 4
    h0 = 0.15
    res = refine_masks(z, h0=h0, lambda_tv=1.0, iters=15, tol=0.0, return_history=True)
    hist = res.history
    assert hist is not None and hist["objective"].shape == (16, 3)
    slack = 1e-5 if dtype == torch.float32 else 1e-12
    assert (hist["objective"][1:] - hist["objective"][:-1] >= -slack).all()
    assert (hist["objective"][-1] > hist["objective"][0] + 1e-3).all()  # it actually moves
    assert (hist["entropy"] >= h0 - slack).all()
    assert ((hist["step"] >= 0) & (hist["step"] <= 1)).all()
    assert (hist["gap"] >= -slack).all()
    assert (hist["gap"][-1] < hist["gap"][0]).all()
    assert ((res.probs >= 0) & (res.probs <= 1)).all()
    assert torch.allclose(res.objective, hist["objective"][-1], atol=slack)


def _iou(masks: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per-mask IoU of ``masks [K, h, w]`` (bool) with ``truth [h, w]`` (bool): ``[K]``."""
    inter = (masks & truth).sum((1, 2)).double()
    return inter / (masks | truth).sum((1, 2)).double()


def test_tv_refinement_cleans_a_noisy_mask() -> None:
    truth = _disk(28, 9)
    gen = torch.Generator().manual_seed(3)
    z = truth.double() * 4 - 2 + torch.randn(8, 28, 28, generator=gen, dtype=torch.float64) * 3

    plain = refine_masks(z, h0=0.1)
    smooth = refine_masks(z, h0=0.1, lambda_tv=1.5, iters=30)
    assert _iou(smooth.masks, truth).mean() > _iou(plain.masks, truth).mean() + 0.15
    assert (smooth.entropy >= 0.1 - 1e-9).all()


def test_batching_different_sizes_equals_running_alone() -> None:
    gen = torch.Generator().manual_seed(4)
    crops = [
        torch.randn(h, w, generator=gen, dtype=torch.float64) * 3
        for h, w in ((20, 20), (7, 16), (13, 5))
    ]
    logits, valid = pad_logits(crops)
    area = torch.tensor([2.0, 0.5, 1.0], dtype=torch.float64)
    for lam in (0.0, 0.8):
        batch = refine_masks(logits, valid, h0=0.12, lambda_tv=lam, iters=10, pixel_area=area)
        for k, crop in enumerate(crops):
            alone = refine_masks(
                crop[None], h0=0.12, lambda_tv=lam, iters=10, pixel_area=area[k : k + 1]
            )
            h, w = crop.shape
            assert torch.allclose(batch.probs[k, :h, :w], alone.probs[0], atol=1e-9)
            assert (batch.probs[k][~valid[k]] == 0).all() and not batch.masks[k][~valid[k]].any()
            for key in ("area", "entropy", "uncertainty", "objective", "gap"):
                assert torch.allclose(getattr(batch, key)[k], getattr(alone, key)[0], atol=1e-9), (
                    key
                )
            assert batch.iterations[k] == alone.iterations[0]
            assert batch.area[k] == batch.masks[k].sum() * area[k]


def test_gradients_flow_to_the_logits() -> None:
    gen = torch.Generator().manual_seed(5)
    z = torch.randn(2, 4, 5, generator=gen, dtype=torch.float64) * 2
    valid = torch.ones(2, 4, 5, dtype=torch.bool)
    valid[1, 3:, :] = False

    # finite differences need the temperature root to machine precision: 64 bisection steps
    def closed(x: torch.Tensor) -> torch.Tensor:
        return refine_masks(x, valid, h0=0.2, bisect_steps=64).probs

    assert torch.autograd.gradcheck(closed, (z.clone().requires_grad_(),), atol=1e-6)

    def iterated(x: torch.Tensor) -> torch.Tensor:
        return refine_masks(
            x, valid, h0=0.2, lambda_tv=0.5, iters=4, tol=0.0, bisect_steps=64
        ).probs

    x = z.clone().requires_grad_()
    (grad,) = torch.autograd.grad((iterated(x) * torch.linspace(-1, 1, 20).view(1, 4, 5)).sum(), x)
    assert torch.isfinite(grad).all() and grad[valid].abs().sum() > 0
    assert (grad[~valid] == 0).all()
    # the step sizes are piecewise constant in z: finite differences agree where they hold
    assert torch.autograd.gradcheck(iterated, (z.clone().requires_grad_(),), atol=1e-5)


def test_uncertainty_separates_crisp_from_fuzzy_logits() -> None:
    truth = _disk(28, 9).double()
    crisp = truth * 16 - 8
    ramp = torch.linspace(-1, 1, 28, dtype=torch.float64).expand(28, 28)  # a soft edge everywhere
    res = refine_masks(torch.stack([crisp, ramp]), h0=0.1)
    # crisp: every cell carries the same small entropy (p ~ 0.02 / 0.98), none is ambiguous;
    # ramp: the entropy budget concentrates on the columns around the soft edge
    assert res.uncertainty[0] == 0 and res.uncertainty[1] > 0.05
    assert torch.allclose(res.entropy, torch.full((2,), 0.1, dtype=torch.float64), atol=1e-6)
    assert binary_entropy(torch.tensor([0.0, 1.0, 0.5])).tolist() == pytest.approx([0, 0, LN2])


def test_module_wrapper_and_bad_input() -> None:
    refiner = EntropyRefiner(h0=0.1, lambda_tv=0.3, iters=3)
    z = torch.randn(2, 6, 6)
    out = refiner(z)
    assert out.probs.shape == (2, 6, 6) and out.probs.dtype == torch.float32
    assert "lambda_tv=0.3" in repr(refiner)
    with pytest.raises(ValueError, match=r"\[K, h, w\]"):
        refine_masks(torch.zeros(6, 6))
    with pytest.raises(ValueError, match="valid"):
        refine_masks(z, torch.ones(2, 6, 5, dtype=torch.bool))
    empty = refine_masks(torch.zeros(0, 28, 28), lambda_tv=0.5)
    assert empty.probs.shape == (0, 28, 28) and empty.area.shape == (0,)


def _random_weights(shape: tuple[int, int, int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-negative pair weights for ``[K, h, w]`` grids, some exactly 0."""
    gen = torch.Generator().manual_seed(seed)
    k, h, w = shape
    wx = torch.rand(k, h, w - 1, generator=gen, dtype=torch.float64) * 2
    wy = torch.rand(k, h - 1, w, generator=gen, dtype=torch.float64) * 2
    return wx * (wx > 0.3), wy * (wy > 0.3)


def test_uniform_edge_weights_reproduce_plain_tv() -> None:
    gen = torch.Generator().manual_seed(7)
    z = torch.randn(3, 12, 17, generator=gen, dtype=torch.float64) * 3
    valid = torch.rand(3, 12, 17, generator=gen) > 0.1
    ones = (torch.ones(3, 12, 16, dtype=torch.float64), torch.ones(3, 11, 17, dtype=torch.float64))
    for lam in (0.0, 0.7):
        plain = refine_masks(z, valid, h0=0.1, lambda_tv=lam, iters=8, tol=0.0)
        uniform = refine_masks(z, valid, h0=0.1, lambda_tv=lam, iters=8, tol=0.0, edge_weights=ones)
        assert torch.equal(plain.probs, uniform.probs)
        assert torch.equal(plain.objective, uniform.objective)
    flat = contrast_weights(torch.ones(3, 3, 12, 17, dtype=torch.float64), sigma=5.0)
    assert all(torch.equal(w, o) for w, o in zip(flat, ones, strict=True))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_weighted_tv_is_monotone_and_feasible(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(8)
    z = _disk(20, 6).to(dtype) * 6 - 3 + torch.randn(3, 20, 20, generator=gen).to(dtype) * 4
    wx, wy = (w.to(dtype) for w in _random_weights((3, 20, 20), 9))
    h0 = 0.15
    res = refine_masks(
        z, h0=h0, lambda_tv=1.0, iters=15, tol=0.0, edge_weights=(wx, wy), return_history=True
    )
    hist = res.history
    assert hist is not None
    slack = 1e-5 if dtype == torch.float32 else 1e-12
    assert (hist["objective"][1:] - hist["objective"][:-1] >= -slack).all()
    assert (hist["objective"][-1] > hist["objective"][0] + 1e-3).all()
    assert (hist["entropy"] >= h0 - slack).all()
    assert (hist["gap"] >= -slack).all()
    # the weighted TV and its gradient agree with autograd
    grid = Grid(
        torch.ones(3, 20, 20, dtype=torch.bool), torch.float64, _random_weights((3, 20, 20), 9)
    )
    p = torch.rand(3, 20, 20, generator=gen, dtype=torch.float64, requires_grad=True)
    (auto,) = torch.autograd.grad(total_variation(p, grid, 0.05).sum(), p)
    assert torch.allclose(total_variation_grad(p.detach(), grid, 0.05), auto, atol=1e-12)
    with pytest.raises(ValueError, match="non-negative"):
        refine_masks(z, lambda_tv=1.0, edge_weights=(-wx, wy))
    with pytest.raises(ValueError, match="edge_weights"):
        refine_masks(z, lambda_tv=1.0, edge_weights=(wy, wx))


def test_edge_weights_pull_the_mask_onto_an_image_edge() -> None:
    """The true defect is the left 11 columns of a 28 x 28 grid and the image has a step edge
    there; the branch is confident far from the edge (+-3) and weakly wrong around it (a ramp
    crossing 0 three columns to the right, plus noise). Every straight boundary costs plain TV
    the same, so it follows the ramp; edge-aware TV moves it towards the image edge."""
    size, edge = 28, 11
    cols = torch.arange(size, dtype=torch.float64)
    truth = (cols < edge).expand(size, size)
    gen = torch.Generator().manual_seed(10)
    band = (cols >= 6) & (cols < 18)
    z = torch.where(band, 0.1 * (edge + 2.5 - cols), 6.0 * (cols < 6) - 3.0).expand(6, size, size)
    z = z + 0.3 * torch.randn(6, size, size, generator=gen, dtype=torch.float64)
    image = torch.where(cols < edge, 30.0, 60.0).expand(6, 3, size, size)  # Lab-like step
    image = image + torch.randn(6, 3, size, size, generator=gen, dtype=torch.float64)
    weights = contrast_weights(image, sigma=5.0)
    assert weights[0][:, :, edge - 1].max() < 1e-6 and weights[0].median() > 0.8

    refine = partial(refine_masks, z, h0=0.03, lambda_tv=2.0, iters=30, tv_smooth=0.1)
    plain, aware = refine(), refine(edge_weights=weights)
    assert (_iou(aware.masks, truth) > _iou(plain.masks, truth) + 0.005).all()
    assert _iou(aware.masks, truth).mean() > _iou(plain.masks, truth).mean() + 0.02
    error = (aware.probs - truth.double()).abs().mean() - (
        plain.probs - truth.double()
    ).abs().mean()
    assert error < -0.01
    assert (aware.entropy >= 0.03 - 1e-9).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu() -> None:
    gen = torch.Generator().manual_seed(6)
    z = torch.randn(5, 28, 28, generator=gen) * 3
    cpu = refine_masks(z, h0=0.1, lambda_tv=0.5, iters=10)
    gpu = refine_masks(z.cuda(), h0=0.1, lambda_tv=0.5, iters=10)
    assert gpu.probs.is_cuda and gpu.area.is_cuda
    assert torch.allclose(gpu.probs.cpu(), cpu.probs, atol=1e-4)
