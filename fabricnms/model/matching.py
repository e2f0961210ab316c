"""One-to-one matching of proposals to ground truth through a differentiable Sinkhorn plan.

Per image, rows are proposal locations (the ``rows_per_gt`` cheapest candidates of every
ground-truth defect), columns the ``M`` defects plus a dustbin. Masses: each proposal 1, each
defect 1, the dustbin ``N - M``. Cost of proposal ``i`` for defect ``j``::

    C_ij = alpha * quality_cost  -((1-w) log p_i(c_j) + w log IoU(b_i, g_j))
         + beta  * (1 - cos(f_i, e_j)) / 2          e_j: mean embedding of j's dense positives
         + gamma * (1 - GIoU(b_i, g_j) + center_distance(x_i, g_j))
         + outside_cost * [i is not a candidate of j]   (spatial prior, not scaled by gamma)
    C_i,dustbin = alpha * -log(1 - max_c p_i(c))

``p`` are one-to-one class probabilities, boxes ``xyxy`` pixels of the network input, ``x_i``
the proposal's location. The distance (in strides) of the location to the defect's centre
breaks the tie between equally good boxes along a uniform warp or weft line (every location
there predicts the same box), so one location per defect wins the plan instead of the mass
splitting evenly. The dustbin cost depends on the proposal's score, so a confident proposal is
expensive to discard and the quality term cannot cancel (unlike a row-constant cost). ``eps``
anneals geometrically from ``eps_start`` to ``eps_end`` with training progress. Gradients flow
through the plan into scores, boxes and embeddings unless ``detach_plan`` is set.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from fabricnms.model.boxes import pairwise_giou, pairwise_iou
from fabricnms.model.sinkhorn import sinkhorn

_P_MIN = 1e-6


@dataclass(frozen=True)
class MatchingConfig:
    """Weights and solver settings of the one-to-one matching."""

    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 1.0
    iou_power: float = 0.75
    outside_cost: float = 10.0
    rows_per_gt: int = 16
    eps_start: float = 0.5
    eps_end: float = 0.05
    iters: int = 50
    detach_plan: bool = False

    def eps(self, progress: float) -> float:
        """Entropic regulariser at training fraction ``progress`` in [0, 1] (geometric)."""
        t = min(max(float(progress), 0.0), 1.0)
        return self.eps_start * (self.eps_end / self.eps_start) ** t


@dataclass
class ImageMatch:
    """Matching of one image.

    rows: ``[N]`` int64 location indices (into ``L``) of the proposals.
    plan: ``[N, M]`` transport plan to the defects (dustbin column dropped); rows sum to <= 1.
    iou: ``[N, M]`` IoU of each proposal's box with each defect (differentiable).
    cost: ``[N, M + 1]`` full cost, dustbin last.
    """

    rows: Tensor
    plan: Tensor
    iou: Tensor
    cost: Tensor


@dataclass
class _Problem:
    rows: Tensor
    cost: Tensor
    iou: Tensor


def gt_prototypes(embed: Tensor, gt_index: Tensor, num_gt: int) -> Tensor:
    """Unit mean embedding of each defect's dense positives, ``[M, D]``.

    Args:
        embed: ``[L, D]`` unit embeddings; gt_index: ``[L]`` assigned defect or -1.
    """
    fg = gt_index >= 0
    sums = embed.new_zeros(num_gt, embed.shape[1]).index_add(0, gt_index[fg], embed[fg])
    return F.normalize(sums, dim=1)


def center_distance(points: Tensor, strides: Tensor, gt_boxes: Tensor) -> Tensor:
    """L1 distance from ``points [N, 2]`` to the centres of ``gt_boxes [M, 4]`` (xyxy), in units
    of each point's stride ``strides [N]``, capped at 2: ``[N, M]``.

    Neighbouring locations differ by up to 1, far more than the final ``eps``, whatever the
    box's length, so the location nearest the centre of a long line wins the plan (a weaker
    prior let the score term hold the mass split between neighbours).
    """
    centers = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
    dist = (points[:, None, :] - centers[None, :, :]).abs().sum(-1) / strides[:, None]
    return dist.clamp(max=2.0)


def matching_cost(
    cls_prob: Tensor,
    boxes: Tensor,
    points: Tensor,
    strides: Tensor,
    embed: Tensor,
    candidates: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    prototypes: Tensor,
    cfg: MatchingConfig,
) -> tuple[Tensor, Tensor]:
    """Cost ``[N, M + 1]`` (dustbin last) and IoU ``[N, M]`` for ``N`` proposals.

    Args:
        cls_prob: ``[N, C]`` one-to-one probabilities; boxes: ``[N, 4]`` xyxy; points ``[N, 2]``
            their locations (x, y), strides ``[N]``; embed ``[N, D]``.
        candidates: ``[N, M]`` bool spatial prior; gt_boxes ``[M, 4]``; gt_labels ``[M]``.
        prototypes: ``[M, D]`` unit defect embeddings.
    """
    p = cls_prob[:, gt_labels].clamp(_P_MIN, 1 - _P_MIN)
    iou = pairwise_iou(boxes, gt_boxes)
    w = cfg.iou_power
    quality = -((1 - w) * p.log() + w * iou.clamp(min=_P_MIN).log())
    feature = (1 - embed @ prototypes.T) / 2
    spatial = 1 - pairwise_giou(boxes, gt_boxes) + center_distance(points, strides, gt_boxes)
    cost = cfg.alpha * quality + cfg.beta * feature + cfg.gamma * spatial
    cost = cost + cfg.outside_cost * (~candidates).to(cost.dtype)
    background = -torch.log1p(-cls_prob.amax(dim=1).clamp(_P_MIN, 1 - _P_MIN))
    return torch.cat([cost, (cfg.alpha * background)[:, None]], dim=1), iou


def _select_rows(cost: Tensor, candidates: Tensor, per_gt: int) -> Tensor:
    """Union of the ``per_gt`` cheapest candidate locations of every defect, ``[N]`` sorted."""
    c = cost.detach().masked_fill(~candidates, float("inf"))
    k = min(per_gt, c.shape[0])
    idx = c.topk(k, dim=0, largest=False).indices  # [k, M]
    keep = torch.gather(candidates, 0, idx)
    return torch.unique(idx[keep])


def match_one_to_one(
    cls_prob: Tensor,
    boxes: Tensor,
    points: Tensor,
    strides: Tensor,
    embed: Tensor,
    candidates: list[Tensor],
    gt_boxes: list[Tensor],
    gt_labels: list[Tensor],
    prototypes: list[Tensor],
    cfg: MatchingConfig,
    progress: float,
) -> list[ImageMatch | None]:
    """Sinkhorn plans for a batch; ``None`` for images without ground truth.

    Args:
        cls_prob: ``[B, L, C]`` one-to-one probabilities; boxes ``[B, L, 4]`` xyxy pixels;
            points ``[L, 2]`` location centres, strides ``[L]``; embed ``[B, L, D]``.
        candidates: per image ``[L, M_b]`` bool; gt_boxes ``[M_b, 4]``; gt_labels ``[M_b]``;
            prototypes ``[M_b, D]``.
        progress: training fraction in [0, 1] (anneals ``eps``).
    """
    problems: list[_Problem | None] = []
    for b in range(cls_prob.shape[0]):
        if gt_boxes[b].shape[0] == 0:
            problems.append(None)
            continue
        # Row choice uses the cost without the feature term on all candidates (cheap, detached).
        with torch.no_grad():
            pre, _ = matching_cost(
                cls_prob[b],
                boxes[b],
                points,
                strides,
                embed[b],
                candidates[b],
                gt_boxes[b],
                gt_labels[b],
                prototypes[b].detach(),
                cfg,
            )
        rows = _select_rows(pre[:, :-1], candidates[b], cfg.rows_per_gt)
        cost, iou = matching_cost(
            cls_prob[b, rows],
            boxes[b, rows],
            points[rows],
            strides[rows],
            embed[b, rows],
            candidates[b][rows],
            gt_boxes[b],
            gt_labels[b],
            prototypes[b],
            cfg,
        )
        problems.append(_Problem(rows=rows, cost=cost, iou=iou))

    live = [p for p in problems if p is not None]
    if not live:
        return [None] * len(problems)
    plans = _solve(live, cfg, progress)
    out: list[ImageMatch | None] = []
    it = iter(plans)
    for p in problems:
        if p is None:
            out.append(None)
            continue
        plan = next(it)
        out.append(ImageMatch(rows=p.rows, plan=plan, iou=p.iou, cost=p.cost))
    return out


def _solve(problems: list[_Problem], cfg: MatchingConfig, progress: float) -> list[Tensor]:
    """Pad the problems into one batch, run Sinkhorn, return each ``[N, M]`` plan."""
    n_max = max(p.cost.shape[0] for p in problems)
    m_max = max(p.cost.shape[1] - 1 for p in problems)
    ref = problems[0].cost
    nb = len(problems)
    cost = ref.new_zeros(nb, n_max, m_max + 1)
    row_mass = ref.new_zeros(nb, n_max)
    col_mass = ref.new_zeros(nb, m_max + 1)
    for k, p in enumerate(problems):
        n, m = p.cost.shape[0], p.cost.shape[1] - 1
        cost[k, :n, :m] = p.cost[:, :m]
        cost[k, :n, m_max] = p.cost[:, m]
        row_mass[k, :n] = 1.0
        col_mass[k, :m] = min(1.0, n / m)
        col_mass[k, m_max] = max(n - m, 0)
    plan = sinkhorn(cost, row_mass, col_mass, eps=cfg.eps(progress), iters=cfg.iters)
    if cfg.detach_plan:
        plan = plan.detach()
    out = []
    for k, p in enumerate(problems):
        n, m = p.cost.shape[0], p.cost.shape[1] - 1
        out.append(plan[k, :n, :m])
    return out
