"""The log-domain Sinkhorn op against textbook references, masks, gradients and numerics."""

from __future__ import annotations

import pytest
import torch
from scipy.optimize import linear_sum_assignment

from fabricnms.model.sinkhorn import sinkhorn, sinkhorn_solve, sinkhorn_solve_sparse


def _balanced(gen: torch.Generator, b: int, n: int, m: int, dtype=torch.float32):
    cost = torch.rand(b, n, m, generator=gen, dtype=torch.float64)
    a = torch.rand(b, n, generator=gen, dtype=torch.float64) + 0.1
    c = torch.rand(b, m, generator=gen, dtype=torch.float64) + 0.1
    c = c / c.sum(1, keepdim=True) * a.sum(1, keepdim=True)
    return cost.to(dtype), a.to(dtype), c.to(dtype)


def _plain_sinkhorn(cost: torch.Tensor, a: torch.Tensor, b: torch.Tensor, eps: float, iters: int):
    """Textbook scaling-form Sinkhorn in float64 (no logs): P = diag(u) K diag(v)."""
    k = torch.exp(-cost.double() / eps)
    u = torch.ones_like(a, dtype=torch.float64)
    v = torch.ones_like(b, dtype=torch.float64)
    for _ in range(iters):
        u = a.double() / (k @ v[..., None])[..., 0]
        v = b.double() / (k.transpose(1, 2) @ u[..., None])[..., 0]
    return u[..., :, None] * k * v[..., None, :]


def test_marginals_met_float32():
    gen = torch.Generator().manual_seed(0)
    cost, a, b = _balanced(gen, 3, 9, 6)
    res = sinkhorn_solve(cost, a, b, eps=0.1, iters=500)
    assert res.plan.dtype == torch.float32
    assert (res.plan.sum(2) - a).abs().max() < 1e-4
    assert (res.plan.sum(1) - b).abs().max() < 1e-4
    assert float(res.marginal_error.max()) < 1e-4


def test_agrees_with_plain_float64_solver():
    gen = torch.Generator().manual_seed(1)
    cost, a, b = _balanced(gen, 2, 7, 5, dtype=torch.float64)
    ref = _plain_sinkhorn(cost, a, b, eps=0.2, iters=300)
    ours64 = sinkhorn(cost, a, b, eps=0.2, iters=300)
    ours32 = sinkhorn(cost.float(), a.float(), b.float(), eps=0.2, iters=300)
    assert torch.allclose(ours64, ref, atol=1e-10)
    assert (ours32.double() - ref).abs().max() < 1e-5


def test_small_eps_argmax_is_the_optimal_assignment():
    gen = torch.Generator().manual_seed(2)
    cost = torch.rand(4, 6, 6, generator=gen, dtype=torch.float64)
    ones = torch.ones(4, 6, dtype=torch.float64)
    res = sinkhorn_solve(cost, ones, ones, eps=0.005, iters=5000, tol=1e-6)
    for i in range(4):
        rows, cols = linear_sum_assignment(cost[i].numpy())
        assert res.plan[i].argmax(dim=1).tolist() == cols[rows.argsort()].tolist()


def test_finite_for_tiny_eps_and_large_costs():
    gen = torch.Generator().manual_seed(3)
    cost, a, b = _balanced(gen, 2, 40, 30)
    res = sinkhorn_solve(cost * 10, a, b, eps=1e-3, iters=200)
    assert torch.isfinite(res.plan).all()
    assert torch.isfinite(res.marginal_error).all()
    assert (res.plan.sum(1) - b).abs().max() < 1e-4  # the last (column) update is exact


def test_gradcheck_float64():
    gen = torch.Generator().manual_seed(4)
    cost, a, b = _balanced(gen, 2, 4, 3, dtype=torch.float64)
    cost.requires_grad_(True)
    a.requires_grad_(True)
    b.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda c, x, y: sinkhorn(c, x, y, eps=0.3, iters=15), (cost, a, b), atol=1e-6
    )


def test_padding_masks_match_solving_each_image_alone():
    gen = torch.Generator().manual_seed(5)
    sizes = [(5, 3), (7, 4)]
    problems = [_balanced(gen, 1, n, m) for n, m in sizes]
    cost = torch.full((2, 7, 4), 123.0)  # garbage in the padding must not matter
    a = torch.full((2, 7), 9.0)
    b = torch.full((2, 4), 9.0)
    rv = torch.zeros(2, 7, dtype=torch.bool)
    cv = torch.zeros(2, 4, dtype=torch.bool)
    for i, ((n, m), (c, x, y)) in enumerate(zip(sizes, problems, strict=True)):
        cost[i, :n, :m], a[i, :n], b[i, :m] = c[0], x[0], y[0]
        rv[i, :n], cv[i, :m] = True, True
    batched = sinkhorn(cost, a, b, eps=0.1, iters=200, row_valid=rv, col_valid=cv)
    for i, ((n, m), (c, x, y)) in enumerate(zip(sizes, problems, strict=True)):
        alone = sinkhorn(c, x, y, eps=0.1, iters=200)[0]
        assert torch.allclose(batched[i, :n, :m], alone, atol=1e-6)
        assert batched[i, n:].abs().sum() == 0 and batched[i, :, m:].abs().sum() == 0


def test_infinite_cost_forbids_a_pair():
    gen = torch.Generator().manual_seed(6)
    cost, a, b = _balanced(gen, 1, 4, 4)
    cost[0, 0, 0] = float("inf")
    plan = sinkhorn(cost, a, b, eps=0.1, iters=200)
    assert plan[0, 0, 0] == 0 and torch.isfinite(plan).all()
    assert (plan.sum(1) - b).abs().max() < 1e-4


def test_tol_stops_early():
    gen = torch.Generator().manual_seed(7)
    cost, a, b = _balanced(gen, 2, 20, 10)
    res = sinkhorn_solve(cost, a, b, eps=0.5, iters=1000, tol=1e-4, check_every=5)
    assert res.iterations < 1000
    assert float(res.marginal_error.max()) < 1e-4
    full = sinkhorn_solve(cost, a, b, eps=0.5, iters=1000)
    assert full.iterations == 1000


def test_empty_and_bad_shapes():
    res = sinkhorn_solve(torch.zeros(2, 0, 3), torch.zeros(2, 0), torch.ones(2, 3), eps=0.1)
    assert res.plan.shape == (2, 0, 3) and res.iterations == 0
    with pytest.raises(ValueError, match="masses"):
        sinkhorn(torch.zeros(1, 3, 2), torch.ones(1, 2), torch.ones(1, 2), eps=0.1)
    with pytest.raises(ValueError, match="eps"):
        sinkhorn(torch.zeros(1, 2, 2), torch.ones(1, 2), torch.ones(1, 2), eps=0.0)
    with pytest.raises(ValueError, match="cost"):
        sinkhorn(torch.zeros(2, 2), torch.ones(1, 2), torch.ones(1, 2), eps=0.1)


def _sparse_problem(gen: torch.Generator, dtype=torch.float64):
    """Two images, 8 rows x 6 columns, about half the pairs forbidden, listed per row.

    Row 7 of image 1 is padding; column 5 of image 0 is reached by no pair. Returns the dense
    cost (+inf off the listed pairs), the listed ``cost [B, N, R]`` / ``index [B, N, R]`` (unused
    slots +inf), masses and the row mask.
    """
    b, n, m = 2, 8, 6
    dense = torch.rand(b, n, m, generator=gen, dtype=torch.float64) * 3
    allowed = torch.rand(b, n, m, generator=gen) < 0.5
    allowed[:, :, 4] = True  # a dustbin-like column every row reaches
    allowed[0, :, 5] = False
    dense = torch.where(allowed, dense, torch.full_like(dense, float("inf")))
    r = int(allowed.sum(2).max()) + 1  # one spare slot everywhere
    _, index = allowed.double().topk(r, dim=2)
    cost = dense.gather(2, index)
    a = torch.rand(b, n, generator=gen, dtype=torch.float64) + 0.1
    rv = torch.ones(b, n, dtype=torch.bool)
    rv[1, 7] = False
    a = torch.where(rv, a, torch.zeros_like(a))
    # Column masses of a feasible plan (each row spread over its pairs): the problem is solvable.
    col = (a[..., None] * allowed / allowed.sum(2, keepdim=True)).sum(1)
    return dense.to(dtype), cost.to(dtype), index, a.to(dtype), col.to(dtype), rv


def test_sparse_solver_matches_dense():
    dense, cost, index, a, b, rv = _sparse_problem(torch.Generator().manual_seed(9))
    ref = sinkhorn_solve(dense, a, b, eps=0.1, iters=2000, tol=1e-9, row_valid=rv)
    res = sinkhorn_solve_sparse(cost, index, a, b, eps=0.1, iters=2000, tol=1e-9, row_valid=rv)
    assert res.plan.shape == cost.shape and res.iterations == ref.iterations
    assert torch.allclose(torch.zeros_like(dense).scatter(2, index, res.plan), ref.plan, atol=1e-10)
    assert (res.plan[~torch.isfinite(cost)] == 0).all() and (res.plan[1, 7] == 0).all()
    assert float(res.marginal_error.max()) < 1e-8
    # float32 at a small eps stays finite and meets the column marginals
    small = sinkhorn_solve_sparse(cost.float() * 10, index, a.float(), b.float(), eps=1e-3)
    assert torch.isfinite(small.plan).all()
    cols = torch.zeros_like(b.float()).scatter_add(1, index.flatten(1), small.plan.flatten(1))
    assert (cols - b.float()).abs().max() < 1e-3  # float32 rounding of potentials ~ 1e4


def test_sparse_solver_gradients_match_dense():
    dense, cost, index, a, b, rv = _sparse_problem(torch.Generator().manual_seed(10))
    w = torch.rand(dense.shape, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    grads = []
    for sparse in (False, True):
        c = (cost if sparse else dense).clone().requires_grad_(True)
        x, y = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
        if sparse:
            plan = sinkhorn_solve_sparse(c, index, x, y, eps=0.2, iters=20, row_valid=rv).plan
            plan = torch.zeros_like(dense).scatter(2, index, plan)
        else:
            plan = sinkhorn(c, x, y, eps=0.2, iters=20, row_valid=rv)
        gc, gx, gy = torch.autograd.grad((plan * w).sum(), (c, x, y))
        grads.append((gc.gather(2, index) if not sparse else gc, gx, gy))
    for dense_grad, sparse_grad in zip(*grads, strict=True):
        assert torch.isfinite(sparse_grad).all()
        assert torch.allclose(torch.nan_to_num(dense_grad), sparse_grad, atol=1e-9)


def test_sparse_solver_bad_shapes_and_empty():
    with pytest.raises(ValueError, match="index"):
        sinkhorn_solve_sparse(
            torch.zeros(1, 3, 2),
            torch.zeros(1, 3, 1, dtype=torch.long),
            torch.ones(1, 3),
            torch.ones(1, 2),
            eps=0.1,
        )
    empty = sinkhorn_solve_sparse(
        torch.zeros(1, 3, 0),
        torch.zeros(1, 3, 0, dtype=torch.long),
        torch.ones(1, 3),
        torch.ones(1, 2),
        eps=0.1,
    )
    assert empty.plan.shape == (1, 3, 0) and empty.iterations == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    gen = torch.Generator().manual_seed(8)
    cost, a, b = _balanced(gen, 2, 30, 12)
    cpu = sinkhorn(cost, a, b, eps=0.1, iters=100)
    gpu = sinkhorn(cost.cuda(), a.cuda(), b.cuda(), eps=0.1, iters=100, tol=1e-5)
    assert gpu.device.type == "cuda"
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-4)
