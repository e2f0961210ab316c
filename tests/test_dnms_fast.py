"""The compiled inference DNMS (:mod:`fabricnms.model.dnms_fast`) against the torch path.

Equality protocol: the fast path runs on float32 candidates (as at inference); the reference
is the differentiable torch path (``DifferentiableNMS(compiled=False)``) on the same candidates
in float64, since the torch path's own float32 rounding moves boxes by up to ~1.3e-3 px on a
2446 px frame. Same detections (count, labels, hypothesis rows, order), boxes within 1e-3 px,
scores and mask coefficients within 1e-4. Scenes: seeded synthetic sets
(:mod:`fabricnms.model.proposals`, trained-like / noisy / untrained o2o, with and without
embeddings, mask coefficients, merge on and off, no early stop), a tiny dense 128 x 128 frame,
a padded batch with an empty image, and the shipped model's candidates on a crop of an example
roll frame.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import astuple
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fabricnms.engine.backend import load_inference_model
from fabricnms.engine.checkpoint import DEFAULT_WEIGHTS
from fabricnms.engine.tiling import TileSettings, frame_candidates
from fabricnms.model import dnms as dnms_module
from fabricnms.model import jit
from fabricnms.model.dnms import DifferentiableNMS
from fabricnms.model.dnms_fast import fast_dnms
from fabricnms.model.dnms_fast_match import kernel_settings, sinkhorn_scaling
from fabricnms.model.merge import MergeSettings, merge_groups
from fabricnms.model.merge_kernel import merge_groups_kernel
from fabricnms.model.postprocess import pad_candidates
from fabricnms.model.proposals import random_defects, simulate
from fabricnms.model.sinkhorn import sinkhorn_solve_sparse
from fabricnms.model.types import Detections

ROLL = Path(__file__).resolve().parents[1] / "examples" / "roll_scans"
BOX_TOL, SCORE_TOL = 1e-3, 1e-4


def _scene(
    seed: int, o2o: str, side: int = 0, embed: bool = True, coeffs: bool = False, num: int = 10
):
    """One image's candidates as a batch of one (boxes, o2m, o2o, quality, embed) + coeffs."""
    gen = torch.Generator().manual_seed(seed)
    if side:  # a tiny frame full of overlapping candidates
        gt, labels = random_defects(3, 20, gen, side, side, line_fraction=0.0)
        ps = simulate(gt, labels, 20, gen, 40, 6, o2o, width=side, height=side)
    else:
        gt, labels = random_defects(num, 20, gen)
        ps = simulate(gt, labels, 20, gen, per_object=14, clutter=4 * num, o2o=o2o)
    batch = [ps.boxes, ps.scores_o2m, ps.scores_o2o, ps.quality, ps.embed if embed else None]
    extra = torch.rand(len(ps.boxes), 8, generator=gen) * 2 - 1 if coeffs else None
    return [None if t is None else t[None] for t in batch], None if extra is None else extra[None]


def _double(t: torch.Tensor | None) -> torch.Tensor | None:
    return t.double() if t is not None and t.is_floating_point() else t


def _assert_same(
    fast: list[Detections], ref: list[Detections], box_tol: float = BOX_TOL, tol: float = SCORE_TOL
) -> None:
    assert len(fast) == len(ref)
    for f, r in zip(fast, ref, strict=True):
        assert len(f) == len(r)
        assert f.labels.tolist() == r.labels.tolist()
        assert f.extra["index"].tolist() == r.extra["index"].tolist()
        assert f.extra.keys() == r.extra.keys()
        if len(f):
            assert float((f.boxes.double() - r.boxes).abs().max()) <= box_tol
            assert float((f.scores.double() - r.scores).abs().max()) <= tol
            assert float((f.extra["support"].double() - r.extra["support"]).abs().max()) <= tol
            evidence = f.extra["class_evidence"].double() - r.extra["class_evidence"]
            assert float(evidence.abs().max()) <= tol
        if "mask_coeffs" in f.extra and len(f):
            diff = f.extra["mask_coeffs"].double() - r.extra["mask_coeffs"]
            assert float(diff.abs().max()) <= tol


def _check(nms: DifferentiableNMS, batch: list, valid=None, coeffs=None) -> list[Detections]:
    """Fast path on float32 == torch path on float64 (and to float64 rounding, 1e-6, when both
    run on float64); returns the fast float32 detections."""
    torch_path = copy.copy(nms)
    torch_path.compiled = False
    ref = torch_path(*map(_double, batch), valid=valid, coeffs=_double(coeffs))
    with torch.no_grad():
        fast = nms(*batch, valid=valid, coeffs=coeffs)
        fast64 = nms(*map(_double, batch), valid=valid, coeffs=_double(coeffs))
    for d in fast:
        assert d.boxes.dtype == torch.float32 and d.labels.dtype == torch.long
    _assert_same(fast, ref)
    _assert_same(fast64, ref, 1e-6, 1e-6)
    return fast


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("o2o", ["trained", "noisy", "untrained"])
def test_fast_path_equals_torch_path(seed: int, o2o: str) -> None:
    batch, coeffs = _scene(seed, o2o, coeffs=seed == 0)
    dets = _check(DifferentiableNMS(), batch, coeffs=coeffs)
    assert len(dets[0]) > 0
    if seed == 0:
        _check(DifferentiableNMS(merge=False), batch)  # dnms-no-merge
        _check(DifferentiableNMS(tol=None, iters=30), batch)  # no early stop


@pytest.mark.parametrize("o2o", ["trained", "untrained"])
def test_fast_path_without_embeddings_or_quality(o2o: str) -> None:
    batch, _ = _scene(3, o2o, embed=False)
    _check(DifferentiableNMS(), batch)
    _check(DifferentiableNMS(), batch[:3])  # no quality either


def test_fast_path_on_a_tiny_dense_frame() -> None:
    for seed in range(3):
        batch, coeffs = _scene(seed, "untrained", side=128, coeffs=True)
        _check(DifferentiableNMS(), batch, coeffs=coeffs)


def test_fast_path_on_a_padded_batch_with_an_empty_image() -> None:
    """Different candidate counts, an image with no valid row: the batch's early stop is shared
    by all images, in the fast path as in the torch solver."""
    scenes = [
        _scene(s, o2o, num=4)[0] for s, o2o in ((4, "trained"), (5, "noisy"), (6, "untrained"))
    ]
    sizes = [int(s[0].shape[1]) for s in scenes]
    n = max(sizes) + 7

    def pad(parts: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(
            [torch.cat([p, p.new_zeros(1, n - p.shape[1], *p.shape[2:])], 1) for p in parts]
        )

    batch = [pad([s[i] for s in scenes] + [scenes[0][i]]) for i in range(5)]
    valid = torch.arange(n)[None] < torch.tensor([*sizes, 0])[:, None]
    coeffs = torch.rand(4, n, 6, generator=torch.Generator().manual_seed(9))
    dets = _check(DifferentiableNMS(), batch, valid=valid, coeffs=coeffs)
    assert [len(d) > 0 for d in dets] == [True, True, True, False]


@pytest.fixture(scope="module")
def model_candidates() -> list:
    """The shipped model's candidates (with mask coefficients) on a 768 x 512 crop of an
    example roll frame with two defects (a knot and a warp line)."""
    net, _ = load_inference_model(DEFAULT_WEIGHTS, torch.device("cpu"), masks=True)
    image = cv2.cvtColor(cv2.imread(str(ROLL / "frame_0004.jpg")), cv2.COLOR_BGR2RGB)
    return list(frame_candidates(net, [image[100:612, 500:1268]], TileSettings()))


def test_fast_path_equals_torch_path_on_real_model_candidates(model_candidates: list) -> None:
    for cand in model_candidates:
        assert len(cand) > 500 and cand.coeffs is not None
        batch = list(pad_candidates([cand])[:5])
        dets = _check(DifferentiableNMS(), batch, coeffs=cand.coeffs[None])
        assert len(dets[0]) > 0
        _check(DifferentiableNMS(merge=False), batch)


def test_no_grad_takes_the_fast_path_and_training_the_torch_path(monkeypatch) -> None:
    calls: list[int] = []

    def spy(*args, **kwargs):
        calls.append(1)
        return fast_dnms(*args, **kwargs)

    monkeypatch.setattr(dnms_module, "fast_dnms", spy)
    batch, _ = _scene(7, "trained", embed=True)
    nms = DifferentiableNMS(tol=None, iters=20)
    with torch.no_grad():
        nms(*batch)
    with torch.inference_mode():
        nms(*batch)
    nms(*batch)  # autograd on, but nothing requires grad
    assert len(calls) == 3
    leaves = [t.clone().requires_grad_(True) for t in batch]
    dets = nms(*leaves)
    assert len(calls) == 3  # the torch path ran
    (dets[0].boxes.sum() + 100 * dets[0].scores.sum()).backward()
    for t in leaves:
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    with torch.no_grad():
        nms(*leaves)  # no_grad wins over requires_grad
    assert len(calls) == 4


def test_out_of_range_kernel_falls_back_to_the_torch_path() -> None:
    """With a tiny ``eps`` the scaling-domain kernel ``exp(-cost / eps)`` leaves float64's
    range: the fast path declines and ``forward`` runs the log-domain torch path."""
    batch, _ = _scene(8, "trained", num=4)
    nms = DifferentiableNMS(eps=1e-3)
    with torch.no_grad():
        settings = kernel_settings(
            nms.match_settings, nms.fusion_settings, nms.merge_settings, nms.merge
        )
        assert fast_dnms(settings, nms.max_hyp, *batch, None, None) is None
        out = nms(*batch)
        ref = DifferentiableNMS(eps=1e-3, compiled=False)(*batch)
    assert torch.equal(out[0].boxes, ref[0].boxes) and torch.equal(out[0].scores, ref[0].scores)


def test_scaling_sinkhorn_matches_the_log_domain_solver() -> None:
    """Random sparse problem (rows list a few columns and a dustbin): same plan, same stop."""
    gen = np.random.default_rng(0)
    n, m, r = 300, 21, 4
    index = np.stack([gen.choice(m - 1, r - 1, replace=False) for _ in range(n)])
    index = np.concatenate([index, np.full((n, 1), m - 1)], axis=1)
    cost = gen.uniform(0.0, 12.0, (n, r))
    row = gen.uniform(0.1, 1.0, n)
    row /= row.sum()
    col = gen.uniform(0.1, 1.0, m)
    col /= col.sum()
    for tol in (1e-3, None):
        ref = sinkhorn_solve_sparse(
            *(torch.from_numpy(a)[None] for a in (cost, index, row, col)),
            0.1,
            50,
            tol,
            None,
            None,
            5,
        )
        low = cost.min(axis=1, keepdims=True)
        kern = np.exp(-(cost - low) / 0.1)
        ptr = np.arange(0, n * r + 1, r)
        u, v, done = sinkhorn_scaling(ptr, index.ravel(), kern.ravel(), row, col, 50, tol or -1.0)
        assert done == ref.iterations
        plan = u[:, None] * kern * v[index]
        assert np.abs(plan - ref.plan[0].numpy()).max() < 1e-12


def test_compiled_merge_equals_the_torch_merge() -> None:
    """merge_groups_kernel (fast DNMS, greedy+merge) == merge_groups (differentiable DNMS) on
    random boxes with duplicates, parts and collinear line segments."""
    gen = torch.Generator().manual_seed(3)
    s = MergeSettings()
    for _ in range(20):
        k = 40
        xy = torch.rand(k, 2, generator=gen) * 400
        wh = torch.rand(k, 2, generator=gen) * 80 + 2
        wh[: k // 3, 0] *= 8  # some long horizontal segments
        boxes = torch.cat([xy, xy + wh], 1).double()
        labels = torch.randint(0, 3, (k,), generator=gen)
        line = torch.rand(k, generator=gen) < 0.2
        ref = merge_groups(
            boxes[None], labels[None], torch.ones(1, k, dtype=torch.bool), s, None, line[None]
        )
        out = merge_groups_kernel(
            boxes.numpy(), labels.numpy(), boxes.numpy(), line.numpy(), *astuple(s)
        )
        for a, b in zip(out, ref, strict=True):
            assert np.array_equal(a, b[0].numpy())


def test_kernels_compile_uncached_where_no_cache_is_writable(monkeypatch) -> None:
    """numba refuses ``cache=True`` when neither the package folder nor its user cache folder
    is writable (a read-only install): the kernels then compile in memory, with a warning."""
    real = jit.numba.njit

    def no_cache(*args, **kwargs):
        if kwargs.get("cache"):
            raise RuntimeError("cannot cache function 'f': no locator available for file 'x'")
        return real(*args, **kwargs)

    monkeypatch.setattr(jit.numba, "njit", no_cache)
    monkeypatch.setattr(jit, "_UNCACHED_WARNED", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        twice = jit.kernel(lambda x: 2 * x)
    assert twice(21) == 42
    assert any("NUMBA_CACHE_DIR" in str(w.message) for w in caught)
