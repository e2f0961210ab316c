"""Spatial prior, dense assignment and the Sinkhorn one-to-one matching (no network)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from fabricnms.model.assign import assign_dense, candidate_mask, level_ranges
from fabricnms.model.matching import MatchingConfig, match_one_to_one

STRIDES = (8, 16, 32)


def grid(h: int, w: int, strides: tuple[int, ...] = STRIDES) -> tuple[torch.Tensor, torch.Tensor]:
    pts, strd = [], []
    for s in strides:
        ys, xs = torch.meshgrid(
            (torch.arange(h // s) + 0.5) * s, (torch.arange(w // s) + 0.5) * s, indexing="ij"
        )
        pts.append(torch.stack([xs, ys], -1).reshape(-1, 2))
        strd.append(torch.full((xs.numel(),), float(s)))
    return torch.cat(pts), torch.cat(strd)


def test_level_ranges_overlap_and_cover_everything() -> None:
    r = level_ranges(STRIDES)
    assert r[8] == (0.0, 128.0)
    assert r[16] == (64.0, 256.0)
    assert r[32][0] == 128.0 and r[32][1] == float("inf")


def test_candidates_inside_box_at_the_right_level() -> None:
    points, strides = grid(256, 256)
    gt = torch.tensor([[100.0, 100.0, 115.0, 115.0], [20.0, 10.0, 55.0, 250.0]])
    cand = candidate_mask(points, strides, gt)
    # 15 x 15 knot: stride 8 only; 35 x 240 line: longest side 240 -> strides 16 and 32
    assert set(strides[cand[:, 0]].tolist()) == {8.0}
    assert set(strides[cand[:, 1]].tolist()) <= {16.0, 32.0}
    for j in range(2):
        p = points[cand[:, j]]
        assert ((p[:, 0] > gt[j, 0]) & (p[:, 0] < gt[j, 2])).all()
        assert ((p[:, 1] > gt[j, 1]) & (p[:, 1] < gt[j, 3])).all()
    # the central region follows the long axis: the line's candidates span most of its height
    span = points[cand[:, 1], 1]
    assert float(span.max() - span.min()) >= 100.0


def test_line_thinner_than_its_level_stride_moves_to_a_level_whose_locations_lie_inside() -> None:
    points, strides = grid(512, 512)
    # a 13 px warp line crossing the window (longest side 512 -> stride 32 by length alone,
    # whose columns x = 16, 48, 80, 112 all miss it) and a 27 px weft band (stride 16 fits)
    gt = torch.tensor([[94.0, 0.0, 107.0, 512.0], [0.0, 478.0, 512.0, 505.0]])
    cand = candidate_mask(points, strides, gt)
    assert set(strides[cand[:, 0]].tolist()) == {8.0}
    assert set(strides[cand[:, 1]].tolist()) == {16.0}
    for j in range(2):
        p = points[cand[:, j]]
        assert p.shape[0] >= 16  # the central region along the line's length
        assert ((p[:, 0] > gt[j, 0]) & (p[:, 0] < gt[j, 2])).all()
        assert ((p[:, 1] > gt[j, 1]) & (p[:, 1] < gt[j, 3])).all()


def test_box_smaller_than_a_stride_gets_the_nearest_location() -> None:
    points, strides = grid(64, 64)
    gt = torch.tensor([[9.0, 9.0, 11.0, 11.0]])  # 2 x 2 px, between grid points
    cand = candidate_mask(points, strides, gt)
    assert int(cand.sum()) == 1
    assert points[cand[:, 0]].tolist() == [[12.0, 12.0]]


def test_dense_assignment_dynamic_k_and_background() -> None:
    points, strides = grid(128, 128)
    gt = torch.tensor([[16.0, 16.0, 80.0, 48.0]])
    labels = torch.tensor([1])
    # predictions: every location predicts the GT exactly -> IoU 1 -> k = 10 positives
    pred = gt.expand(points.shape[0], 4).clone()
    prob = torch.full((points.shape[0], 3), 0.5)
    a = assign_dense(points, strides, pred, prob, gt, labels)
    assert int(a.foreground.sum()) == 10
    assert a.candidates[a.foreground, 0].all()
    # predictions far off -> IoU 0 -> k = 1
    a = assign_dense(points, strides, pred + 500.0, prob, gt, labels)
    assert int(a.foreground.sum()) == 1
    # no ground truth: everything is background
    a = assign_dense(
        points, strides, pred, prob, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)
    )
    assert int(a.foreground.sum()) == 0 and a.candidates.shape == (points.shape[0], 0)


def test_overlapping_defects_never_share_a_positive() -> None:
    points, strides = grid(128, 128)
    gt = torch.tensor([[16.0, 16.0, 80.0, 80.0], [24.0, 24.0, 88.0, 88.0]])
    pred = torch.tensor([20.0, 20.0, 84.0, 84.0]).expand(points.shape[0], 4)
    a = assign_dense(
        points, strides, pred, torch.full((points.shape[0], 2), 0.3), gt, torch.tensor([0, 1])
    )
    fg = a.gt_index[a.foreground]
    assert set(fg.tolist()) == {0, 1}


def make_problem(seed: int = 0) -> dict:
    """Two defects in a 128 x 128 image; proposals around them with varied boxes/scores."""
    g = torch.Generator().manual_seed(seed)
    points, strides = grid(128, 128)
    n = points.shape[0]
    gt = torch.tensor([[20.0, 20.0, 60.0, 44.0], [70.0, 60.0, 110.0, 120.0]])
    labels = torch.tensor([0, 2])
    size = torch.tensor([[20.0, 12.0, 20.0, 12.0]]) * (0.6 + 0.8 * torch.rand(n, 4, generator=g))
    boxes = torch.cat([points - size[:, :2], points + size[:, 2:]], -1)
    logits = torch.randn(1, n, 3, generator=g) - 1.0
    protos = torch.nn.functional.normalize(torch.randn(2, 8, generator=g), dim=-1)
    # embeddings near +-one prototype: the feature term spans [0, 1] as after training
    sign = torch.randint(0, 2, (n, 1), generator=g).float() * 2 - 1
    near = protos[torch.randint(0, 2, (n,), generator=g)]
    noise = 0.3 * torch.randn(n, 8, generator=g)
    embed = torch.nn.functional.normalize(sign * near + noise, dim=-1)[None]
    cand = candidate_mask(points, strides, gt)
    return dict(
        points=points,
        strides=strides,
        boxes=boxes[None],
        logits=logits,
        embed=embed,
        cand=cand,
        gt=gt,
        labels=labels,
        protos=protos,
    )


def run_match(
    pb: dict, cfg: MatchingConfig, progress: float = 1.0, logits=None, boxes=None, embed=None
):
    logits = pb["logits"] if logits is None else logits
    boxes = pb["boxes"] if boxes is None else boxes
    embed = pb["embed"] if embed is None else embed
    return match_one_to_one(
        logits.sigmoid(),
        boxes,
        pb["points"],
        pb["strides"],
        embed,
        [pb["cand"]],
        [pb["gt"]],
        [pb["labels"]],
        [pb["protos"]],
        cfg,
        progress,
    )[0]


def dense_plan(match, n: int) -> torch.Tensor:
    """Plan scattered to all ``n`` locations: ``[n, M]``."""
    full = torch.zeros(n, match.plan.shape[1])
    full[match.rows] = match.plan.detach()
    return full


def test_plan_marginals_and_rows_are_candidates() -> None:
    pb = make_problem()
    m = run_match(pb, MatchingConfig())
    assert torch.allclose(m.plan.sum(0), torch.ones(2), atol=1e-3)
    assert (m.plan.sum(1) <= 1 + 1e-3).all()
    assert pb["cand"][m.rows].any(1).all()
    # at the final eps each defect's mass sits on one location, inside its candidate set
    best = m.plan.argmax(0)
    assert (m.plan.max(0).values > 0.5).all()
    assert pb["cand"][m.rows[best], torch.arange(2)].all()


@pytest.mark.parametrize("term", ["alpha", "beta", "gamma"])
def test_every_cost_term_changes_the_plan(term: str) -> None:
    pb = make_problem()
    n = pb["points"].shape[0]
    base = MatchingConfig()
    p0 = dense_plan(run_match(pb, base, progress=0.3), n)
    for value in (0.0, 4.0):
        p1 = dense_plan(run_match(pb, dataclasses.replace(base, **{term: value}), progress=0.3), n)
        assert float((p1 - p0).abs().max()) > 0.05, f"{term}={value} left the plan unchanged"


def test_scores_alone_change_the_plan_through_the_dustbin() -> None:
    # a row-constant score cost would cancel; ours must not: raise one location's scores
    pb = make_problem()
    n = pb["points"].shape[0]
    cfg = MatchingConfig()
    m0 = run_match(pb, cfg, progress=0.5)
    p0 = dense_plan(m0, n)
    runner_up = m0.rows[m0.plan[:, 0].argsort(descending=True)[1]]
    logits = pb["logits"].clone()
    logits[0, runner_up] += 3.0
    p1 = dense_plan(run_match(pb, cfg, progress=0.5, logits=logits), n)
    assert float(p1[runner_up, 0] - p0[runner_up, 0]) > 0.1


def test_gradients_reach_scores_boxes_and_embeddings_through_the_plan() -> None:
    pb = make_problem()
    logits = pb["logits"].clone().requires_grad_(True)
    boxes = pb["boxes"].clone().requires_grad_(True)
    embed = pb["embed"].clone().requires_grad_(True)
    m = run_match(pb, MatchingConfig(), progress=0.0, logits=logits, boxes=boxes, embed=embed)
    weight = torch.arange(m.plan.numel(), dtype=torch.float32).reshape(m.plan.shape) % 3
    (m.plan * weight).sum().backward()  # a loss that depends on the plan only
    for name, t in (("scores", logits), ("boxes", boxes), ("embeddings", embed)):
        assert t.grad is not None and float(t.grad.abs().sum()) > 1e-4, name
        assert torch.isfinite(t.grad).all(), name


def test_detach_plan_stops_the_gradient() -> None:
    pb = make_problem()
    logits = pb["logits"].clone().requires_grad_(True)
    m = run_match(pb, MatchingConfig(detach_plan=True), logits=logits)
    assert not m.plan.requires_grad
    # the cost (used for logging and by the caller) still carries gradients
    assert m.cost.requires_grad


def test_eps_anneals_geometrically() -> None:
    cfg = MatchingConfig(eps_start=0.5, eps_end=0.05)
    assert cfg.eps(0.0) == pytest.approx(0.5)
    assert cfg.eps(1.0) == pytest.approx(0.05)
    assert cfg.eps(0.5) == pytest.approx((0.5 * 0.05) ** 0.5)
    assert cfg.eps(2.0) == pytest.approx(0.05)
    soft = run_match(make_problem(), cfg, progress=0.0).plan
    hard = run_match(make_problem(), cfg, progress=1.0).plan
    assert float(hard.max(0).values.min()) > float(soft.max(0).values.min())


def test_images_without_ground_truth_are_skipped() -> None:
    pb = make_problem()
    out = match_one_to_one(
        pb["logits"].sigmoid().expand(2, -1, -1),
        pb["boxes"].expand(2, -1, -1),
        pb["points"],
        pb["strides"],
        pb["embed"].expand(2, -1, -1),
        [pb["cand"], pb["cand"][:, :0]],
        [pb["gt"], torch.zeros(0, 4)],
        [pb["labels"], torch.zeros(0, dtype=torch.long)],
        [pb["protos"], torch.zeros(0, 8)],
        MatchingConfig(),
        0.5,
    )
    assert out[0] is not None and out[1] is None
    assert torch.allclose(out[0].plan.sum(0), torch.ones(2), atol=1e-3)
