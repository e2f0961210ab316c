"""Differentiable NMS: duplicate removal as an entropic optimal-transport matching.

Per image, the one-to-one (o2o) scores pick the object *hypotheses* (columns); the dense
one-to-many (o2m) candidates are the *rows*. A log-domain Sinkhorn pass with a dustbin column
assigns every row's mass to a hypothesis or to background; the rows assigned to a hypothesis
are fused into its output box and score; hypotheses that describe the same defect as a stronger
one are merged into it (their plan columns are added, so their rows still count). Segments of
one line (e.g. the pieces of a warp line cut by tiles) are joined and the detection spans the
union of their extents along the line. Every step is a tensor operation on a padded batch; the
only Python loop over images is the final unpadding.

Cost: at most ``max_hyp`` hypotheses per image (top o2o scores), so an untrained o2o branch that
puts every location above the floor costs ``O(N max_hyp)``, not ``O(N^2)``. Only the pairwise
overlap is computed for all ``N x K`` pairs; each row then lists the hypotheses it touches and
every other cost term, and the Sinkhorn iterations, run on those pairs (sparse when rows touch
few hypotheses, as on a full frame). Merging is ``O(K^2)`` per round.

Conventions: boxes are ``xyxy`` absolute pixels; class indices are 0-based; scores are
probabilities in [0, 1]; embeddings need not be normalised (cosine similarity is used).

The transport problem of one image (N rows, K hypotheses)::

    rows     mass m_i = sqrt(max_c s_i(c) * q_i)      o2m class probability x IoU-quality
    columns  capacity b_j = sum_i m_i * r_ij, then a dustbin of mass sum_i m_i - sum_j b_j
    r_ij   = h_j A_ij / (1 + sum_k h_k A_ik)           prior responsibility, A_ij = overlap * agree

    C_ij     = alpha * -log(m_i)                       quality: row i is foreground
             + beta  * (1 - cos(f_i, f_hyp_j)) / 2     embedding dissimilarity
             + gamma * (1 - overlap(b_i, b_hyp_j))     overlap = (1-mu) IoU + mu IoMin
             + delta * (1 - agree_ij)                  agree = s_i(c_j) / max_c s_i(c)
    C_i,bin  = alpha * -log(1 - m_i) + match_cost      background
    C_ij     = +inf where the boxes do not overlap     (a row only supports what it touches)

``h_j`` is the hypothesis's o2o probability and ``c_j`` its o2o class (the matching uses it).
The plan then decides what each column is: its class is ``argmax_c sum_i P_ij sqrt(s_i(c) q_i)``,
the class its rows support most (a warp line is classified by the evidence along its whole
length; its o2o class scores are spread thin over the plan rows and nearly flat). Scores below
are taken at that class. A detection's confidence is ``H_j ** (1 - w) * U_j ** w`` with
``H_j = min(1, sum_i (P_ij / m_i) o2o_i(c_j))``, the one-to-one probability mass the column
collects (training spreads each defect's unit o2o target over the few rows its plan column
covers, so one row's ``h`` understates a defect; their sum does not), and ``U_j`` the
plan-weighted mean of its rows' ``sqrt(s_i(c_j) q_i)``; duplicates (same class) are merged in
the order of ``h_j ** (1 - w) * U_j ** w`` (the hypothesis's own evidence). The quality term does
not cancel (it differs between real columns and the dustbin, and the masses depend on the scores),
so the plan and every fused box depend on the scores. Capacities never exceed the supply, so
the masses balance without a dustbin row, and duplicate hypotheses split the rows they share.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fabricnms.model.boxes import pairwise_iou_iomin
from fabricnms.model.merge import MergeSettings, line_span, merge_groups, unsort
from fabricnms.model.sinkhorn import SinkhornResult, sinkhorn_solve, sinkhorn_solve_sparse
from fabricnms.model.types import Detections

_P_EPS = 1e-4  # clamp for probabilities inside logs
_TINY = 1e-12


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


class DifferentiableNMS(nn.Module):
    """Sinkhorn-matching NMS over dense candidates; differentiable in scores, boxes, embeddings.

    Args:
        alpha: weight of the quality term (foreground vs background cost of a row).
        beta: weight of the embedding cosine dissimilarity (unused without embeddings).
        gamma: weight of the spatial term ``1 - overlap``.
        delta: weight of the class-agreement term.
        iomin_weight: ``mu`` in ``overlap = (1 - mu) * IoU + mu * IoMin``; IoMin lets fragments
            of a long thin defect join the hypothesis that contains them.
        match_cost: extra background cost of a row: roughly the pairwise cost (embedding +
            spatial + class) up to which a confident row prefers a hypothesis to background.
        eps: Sinkhorn entropic regulariser (costs are O(1); 0.1 gives a fairly sharp plan).
        iters: maximum Sinkhorn iterations. tol: early stop once the row marginals are met to
            this fraction of the total mass (``None``: always ``iters``, a fixed graph).
        hyp_floor: minimum o2o probability of a hypothesis column.
        max_hyp: at most this many hypotheses per image (top o2o scores): bounds the cost when
            an untrained or weak o2o branch puts hundreds of locations above ``hyp_floor``.
        sparse_ratio: solve the transport problem in sparse form (each row lists only the
            hypotheses it touches) when the most-connected row touches at most this fraction of
            the ``K + 1`` columns; ``0`` always dense, ``1`` always sparse. Same plan either way.
        score_power: ``w`` in ``score = H ** (1 - w) * U ** w`` (``H`` the o2o probability mass
            the detection's rows carry, ``U`` the plan-weighted mean of the rows'
            ``sqrt(class prob * quality)``): a calibrated per-detection confidence in [0, 1],
            not a distribution over detections.
        fuse_sigma: robust box fusion scale: a row's coordinate is weighted by
            ``exp(-0.5 * (d / (fuse_sigma * size)) ** 2)`` with ``d`` its distance to the current
            estimate and ``size`` the estimate's width (x) or height (y), so a fragment
            contributes the edges it shares with the defect and not its cut ends.
        fuse_steps: re-centring steps of the robust fusion.
        fuse_rows: only the heaviest ``fuse_rows`` rows of each column (by plan x quality) are
            fused; the rest carry negligible mass and would cost O(N K) memory and time.
        dup_overlap: hypotheses of one class whose fused boxes overlap at least this much
            (``overlap`` as above) are the same defect; the weaker one is merged into the other.
        part_iou: a merged hypothesis with IoU below this to its absorber is a part (fragment)
            rather than a duplicate: the absorber's box grows to cover it.
        line_aspect: boxes at least this elongated count as line segments; two segments of one
            class on the same line (cross-axis IoMin >= ``line_align``) that touch or overlap
            along it are the same defect (a warp/weft line cut by tiles or by the detector).
            The detection of a line joined from such parts spans their union along the line
            (each part's own end is kept), while across the line it is the robust fusion.
        line_align: see ``line_aspect``.
        line_gap: collinear segments also join across a gap along the line of at most this
            times the shorter segment's length (a line the detector sees in pieces).
        merge_rounds: rounds of merge-then-recheck (a chain of fragments needs one per link).
        merge: merge duplicates and join lines (:mod:`fabricnms.model.merge`); ``False`` keeps
            every hypothesis column (the ablation's ``dnms-no-merge``).
    """

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 1.0,
        gamma: float = 2.0,
        delta: float = 1.0,
        iomin_weight: float = 0.5,
        match_cost: float = 1.5,
        eps: float = 0.1,
        iters: int = 50,
        tol: float | None = 1e-3,
        hyp_floor: float = 0.05,
        max_hyp: int = 100,
        sparse_ratio: float = 0.5,
        score_power: float = 0.5,
        fuse_sigma: float = 0.15,
        fuse_steps: int = 2,
        fuse_rows: int = 64,
        dup_overlap: float = 0.5,
        part_iou: float = 0.5,
        line_aspect: float = 4.0,
        line_align: float = 0.7,
        line_gap: float = 1.0,
        merge_rounds: int = 3,
        merge: bool = True,
    ) -> None:
        super().__init__()
        if eps <= 0 or fuse_sigma <= 0 or min(iters, max_hyp, fuse_rows, merge_rounds) < 1:
            raise ValueError("eps, fuse_sigma > 0 and iters, max_hyp, fuse_rows, merge_rounds >= 1")
        if not all(0.0 <= v <= 1.0 for v in (iomin_weight, score_power, sparse_ratio)):
            raise ValueError("iomin_weight, score_power and sparse_ratio must lie in [0, 1]")
        self.alpha, self.beta, self.gamma, self.delta = alpha, beta, gamma, delta
        self.iomin_weight = iomin_weight
        self.match_cost = match_cost
        self.eps, self.iters, self.tol = eps, iters, tol
        self.hyp_floor, self.max_hyp, self.sparse_ratio = hyp_floor, max_hyp, sparse_ratio
        self.score_power = score_power
        self.fuse_sigma, self.fuse_steps, self.fuse_rows = fuse_sigma, fuse_steps, fuse_rows
        self.dup_overlap, self.part_iou = dup_overlap, part_iou
        self.line_aspect, self.line_align, self.line_gap = line_aspect, line_align, line_gap
        self.merge_rounds, self.merge = merge_rounds, merge

    @property
    def merge_settings(self) -> MergeSettings:
        """The duplicate/line criteria of the merge stage, from this module's settings."""
        return MergeSettings(
            self.iomin_weight,
            self.dup_overlap,
            self.part_iou,
            self.line_aspect,
            self.line_align,
            self.line_gap,
            self.merge_rounds,
        )

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, beta={self.beta}, gamma={self.gamma}, delta={self.delta}, "
            f"eps={self.eps}, iters={self.iters}, tol={self.tol}, hyp_floor={self.hyp_floor}, "
            f"max_hyp={self.max_hyp}"
        )

    # ------------------------------------------------------------------ matching
    def match(
        self,
        boxes: Tensor,
        scores_o2m: Tensor,
        scores_o2o: Tensor,
        quality: Tensor | None = None,
        embed: Tensor | None = None,
        valid: Tensor | None = None,
    ) -> Matching:
        """Pick hypotheses and solve the transport problem (see the module docstring).

        Args as in :meth:`forward`; ``N`` must be at least 1.
        """
        bsz, n, _ = scores_o2m.shape
        if valid is None:
            valid = torch.ones(bsz, n, dtype=torch.bool, device=boxes.device)
        row_p, _ = scores_o2m.max(dim=-1)
        mass = (row_p * _quality(scores_o2m, quality)).clamp(min=0).sqrt()
        mass = torch.where(valid, mass, torch.zeros_like(mass))

        # Hypotheses: top-k o2o scores above the floor, per image; K trimmed to the batch max.
        hyp_all, hyp_lab_all = scores_o2o.max(dim=-1)
        hyp_all = torch.where(valid, hyp_all, torch.full_like(hyp_all, -1.0))
        hyp_score, hyp_index = hyp_all.topk(min(self.max_hyp, n), dim=1)
        hyp_valid = (hyp_score >= self.hyp_floor) & (mass.gather(1, hyp_index) > 0)
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
        mu = self.iomin_weight
        overlap = (1 - mu) * iou.gather(2, idx) + mu * iomin.gather(2, idx)
        label = hyp_label.gather(1, flat).view(bsz, n, r)
        agree = (scores_o2m.gather(2, label) / row_p.clamp(min=_P_EPS)[..., None]).clamp(max=1.0)
        m_c = mass.clamp(_P_EPS, 1 - _P_EPS)
        real = (
            self.alpha * -m_c.log()[..., None]
            + self.gamma * (1.0 - overlap)
            + self.delta * (1.0 - agree)
        )
        if embed is not None and embed.shape[-1] > 0:
            f = F.normalize(embed, dim=-1)
            f_hyp = f.gather(1, hyp_index[..., None].expand(-1, -1, f.shape[-1]))
            cos = (f @ f_hyp.transpose(1, 2)).gather(2, idx)
            real = real + self.beta * (1.0 - cos) / 2.0
        real = torch.where(used, real, torch.full_like(real, float("inf")))
        background = self.alpha * -(1 - m_c).log() + self.match_cost  # [B, N]

        h = torch.where(hyp_valid, hyp_score, torch.zeros_like(hyp_score))
        prior = torch.where(used, overlap * agree * h.gather(1, flat).view(bsz, n, r), 0.0)
        resp = prior / (1.0 + prior.sum(dim=2, keepdim=True))
        capacity = torch.zeros_like(h).scatter_add(1, flat, (mass[..., None] * resp).view(bsz, -1))
        # Masses normalised to total 1, so ``tol`` is relative; the plan is scaled back.
        total = mass.sum(dim=1, keepdim=True).clamp(min=_TINY)
        bin_mass = (total - capacity.sum(dim=1, keepdim=True)).clamp(min=0)
        cost = torch.cat([real, background[..., None]], dim=2)  # [B, N, r + 1]
        index = torch.cat([idx, idx.new_full((bsz, n, 1), k)], dim=2)
        res = self._transport(
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
        self,
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
        args = (row_mass, col_mass, self.eps, self.iters, self.tol, row_valid, col_valid, 5)
        if cost.shape[2] <= self.sparse_ratio * m:
            return sinkhorn_solve_sparse(cost, index, *args)
        dense = torch.full(
            (*cost.shape[:2], m), float("inf"), dtype=cost.dtype, device=cost.device
        ).scatter(2, index, cost)
        res = sinkhorn_solve(dense, *args)
        return SinkhornResult(res.plan.gather(2, index), res.iterations, res.marginal_error)

    @staticmethod
    def _class_at(scores: Tensor, labels: Tensor) -> Tensor:
        """``scores [B, N, C]`` at each column's class ``labels [B, K]`` -> ``[B, N, K]``."""
        return scores.gather(2, labels[:, None, :].expand(-1, scores.shape[1], -1))

    # ------------------------------------------------------------------ fusion
    def fuse(
        self,
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
        weight, rows = self._heaviest_rows(plan, quality, boxes)
        weight = weight[..., None]
        center = start
        for _ in range(self.fuse_steps):
            wh = (center[..., 2:] - center[..., :2]).clamp(min=1.0)
            scale = self.fuse_sigma * torch.cat([wh, wh], dim=-1)[:, None]  # [B, 1, K, 4]
            # Clamped so the weights never go subnormal (orders of magnitude slower on CPU).
            z = (0.5 * ((rows - center[:, None]) / scale) ** 2).clamp(max=60.0)
            w = weight * torch.exp(-z)
            center = ((w * rows).sum(1) + _TINY * center) / (w.sum(1) + _TINY)
        return center

    def fuse_coeffs(self, plan: Tensor, coeffs: Tensor, start: Tensor, quality: Tensor) -> Tensor:
        """Mask coefficients of each column: the mean of its rows' ``coeffs [B, N, P]`` weighted
        by ``plan x quality``, over the same ``fuse_rows`` heaviest rows as :meth:`fuse` (the
        boxes' robust per-coordinate re-weighting is geometric and left out).

        ``start [B, K, P]`` (the hypotheses' own coefficients) stands where a column has no mass.
        Returns ``[B, K, P]``.
        """
        weight, rows = self._heaviest_rows(plan, quality, coeffs)  # [B, T, K], [B, T, K, P]
        total = (weight[..., None] * rows).sum(1) + _TINY * start
        return total / (weight.sum(1)[..., None] + _TINY)

    def _heaviest_rows(
        self, plan: Tensor, quality: Tensor, values: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Each column's ``fuse_rows`` heaviest rows by ``plan x quality`` (``O(T K)``, not
        ``O(N K)``): weights ``[B, T, K]`` and the rows' ``values [B, N, F]`` as ``[B, T, K, F]``.
        """
        bsz, n, kk = plan.shape
        weight, idx = (plan * quality[..., None]).topk(min(self.fuse_rows, n), dim=1)
        t, f = idx.shape[1], values.shape[-1]
        rows = values.gather(1, idx.reshape(bsz, t * kk, 1).expand(-1, -1, f))
        return weight, rows.reshape(bsz, t, kk, f)

    def score(self, plan: Tensor, h: Tensor, u_mass: Tensor) -> tuple[Tensor, Tensor]:
        """Detection confidence ``[B, K]`` and support (received row mass) ``[B, K]``.

        ``plan [B, N, K]`` in mass units; ``h [B, K]`` the one-to-one evidence of each column
        (see :meth:`collected_o2o`); ``u_mass [B, K]`` the plan-weighted sum of the rows'
        ``sqrt(o2m prob of the column's class * quality)`` (see :meth:`column_labels`).
        """
        support = plan.sum(dim=1)
        u = u_mass / support.clamp(min=_TINY)
        w = self.score_power
        return h.clamp(_TINY, 1) ** (1 - w) * u.clamp(_TINY, 1) ** w, support

    def collected_o2o(
        self, plan: Tensor, scores_o2o: Tensor, row_mass: Tensor, labels: Tensor
    ) -> Tensor:
        """``[B, K]`` one-to-one probability mass column ``j`` collects, capped at 1:
        ``sum_i (P_ij / m_i) o2o_i(c_j)`` (``P`` ``[B, N, K]`` in mass units, so ``P_ij / m_i``
        is the share of row ``i`` that went to ``j``; ``row_mass [B, N]`` the ``m_i``;
        ``labels [B, K]`` the ``c_j``)."""
        share = plan / row_mass.clamp(min=_TINY)[..., None]
        return (share * self._class_at(scores_o2o, labels)).sum(dim=1).clamp(max=1.0)

    @staticmethod
    def column_labels(plan: Tensor, evidence: Tensor, fallback: Tensor) -> tuple[Tensor, Tensor]:
        """Class of each column ``[B, K]``: the class its rows support most,
        ``argmax_c sum_i P_ij e_i(c)`` with ``e_i(c) = sqrt(o2m_i(c) q_i)`` (``evidence
        [B, N, C]``, ``plan [B, N, K]``); ``fallback [B, K]`` (the hypotheses' o2o classes)
        where a column received no rows. Also returns that support ``sum_i P_ij e_i(c_j)``
        ``[B, K]`` (0 for an empty column), the ``u_mass`` of :meth:`score`.

        The one-to-one branch picks *where* the hypotheses are; what they are is decided by all
        the rows the plan gives them, so a 1000-px warp line is classified by the evidence
        along its whole length, not by the one location that seeded it (the o2o class scores
        of a long line are spread thin over its plan rows and nearly flat across the classes).
        """
        best, label = torch.einsum("bnk,bnc->bkc", plan, evidence).max(dim=2)
        return torch.where(best > 0, label, fallback), best

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        boxes: Tensor,
        scores_o2m: Tensor,
        scores_o2o: Tensor,
        quality: Tensor | None = None,
        embed: Tensor | None = None,
        valid: Tensor | None = None,
        coeffs: Tensor | None = None,
    ) -> list[Detections]:
        """Detections per image, compacted and sorted by descending score.

        Args:
            boxes: ``[B, N, 4]`` xyxy pixels of the candidates.
            scores_o2m: ``[B, N, C]`` one-to-many class probabilities (rows).
            scores_o2o: ``[B, N, C]`` one-to-one class probabilities (hypotheses).
            quality: ``[B, N]`` IoU-quality probabilities, or None (the best o2m class
                probability stands in for it).
            embed: ``[B, N, D]`` embeddings, or None / ``D = 0`` (no feature term).
            valid: ``[B, N]`` bool, False on padding rows; None means all valid.
            coeffs: ``[B, N, P]`` mask coefficients of the rows, or None.

        Returns:
            One :class:`Detections` per image (0-based labels, scores in [0, 1], variable
            length); ``extra`` holds ``support`` (plan mass the detection received),
            ``index`` (row index of its hypothesis) and, with ``coeffs``, ``mask_coeffs``
            ``[K, P]`` fused by :meth:`fuse_coeffs` over the same final plan as the boxes.
            Boxes and scores are differentiable with respect to boxes, both score tensors,
            quality and embeddings.
        """
        _check_inputs(boxes, scores_o2m, scores_o2o, quality, embed, valid)
        bsz, n = boxes.shape[:2]
        if n == 0:
            return [_empty(boxes) for _ in range(bsz)]
        m = self.match(boxes, scores_o2m, scores_o2o, quality, embed, valid)
        kk = m.hyp_index.shape[1]
        plan = m.plan[..., :kk]
        q = _quality(scores_o2m, quality)
        evidence = (scores_o2m * q[..., None]).clamp(min=0).sqrt()  # [B, N, C]
        hyp_boxes = boxes.gather(1, m.hyp_index[..., None].expand(-1, -1, 4))
        fused = self.fuse(plan, boxes, hyp_boxes, q)
        labels, u_mass = self.column_labels(plan, evidence, m.hyp_label)
        own = scores_o2o.gather(1, m.hyp_index[..., None].expand(-1, -1, scores_o2o.shape[-1]))
        score, support = self.score(plan, own.gather(2, labels[..., None])[..., 0], u_mass)
        alive = m.hyp_valid & (support > _TINY)

        # Merge in score order (mapped back to the columns' own order); survivors take over
        # their members' rows and are labelled, fused and scored again on the summed columns.
        # The re-fused boxes can move onto each other, so the merge repeats on them until no
        # two survivors of one class are one defect (at most ``merge_rounds`` passes).
        span, line = fused, torch.zeros_like(alive)
        arange = torch.arange(kk, device=boxes.device)
        settings = self.merge_settings
        for step in range(self.merge_rounds):
            order = torch.where(alive, score, torch.full_like(score, -1.0))
            order = order.argsort(dim=1, descending=True, stable=True)
            sort4 = order[..., None].expand(-1, -1, 4)
            sorted4 = fused.gather(1, sort4)
            if self.merge:
                s_merged, s_owner, s_span, s_line = merge_groups(
                    sorted4,
                    labels.gather(1, order),
                    alive.gather(1, order),
                    settings,
                    span.gather(1, sort4),
                    line.gather(1, order),
                )
            else:
                s_merged, s_owner, s_span = sorted4, arange.expand_as(order), sorted4
                s_line = line.gather(1, order)
            owner = unsort(order.gather(1, s_owner), order)
            survivor = alive & (owner == arange)
            if step > 0 and torch.equal(survivor, alive) and torch.equal(s_merged, sorted4):
                break
            merged, span = unsort(s_merged, sort4), unsort(s_span, sort4)
            line, alive = unsort(s_line, order), survivor
            plan = torch.zeros_like(plan).scatter_add(2, owner[:, None, :].expand(-1, n, -1), plan)
            fused = line_span(self.fuse(plan, boxes, merged, q), span, line)
            labels, u_mass = self.column_labels(plan, evidence, m.hyp_label)
            h = self.collected_o2o(plan, scores_o2o, m.row_mass, labels)
            score, support = self.score(plan, h, u_mass)
        survivor = alive
        extra = {"support": support, "index": m.hyp_index}
        if coeffs is not None:
            start = coeffs.gather(1, m.hyp_index[..., None].expand(-1, -1, coeffs.shape[-1]))
            extra["mask_coeffs"] = self.fuse_coeffs(plan, coeffs, start, q)
        rank = torch.where(survivor, score, torch.full_like(score, -1.0))
        rank = rank.argsort(dim=1, descending=True, stable=True)
        out = []
        for i, count in enumerate(survivor.sum(dim=1).tolist()):
            sel = rank[i, :count]
            out.append(
                Detections(
                    boxes=fused[i, sel],
                    scores=score[i, sel],
                    labels=labels[i, sel],
                    extra={k: v[i, sel] for k, v in extra.items()},
                )
            )
        return out


def _quality(scores_o2m: Tensor, quality: Tensor | None) -> Tensor:
    """``[B, N]`` IoU-quality, or the best o2m class probability where none is given."""
    return scores_o2m.amax(dim=-1) if quality is None else quality


def _check_inputs(
    boxes: Tensor,
    scores_o2m: Tensor,
    scores_o2o: Tensor,
    quality: Tensor | None,
    embed: Tensor | None,
    valid: Tensor | None,
) -> None:
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


def _empty(like: Tensor) -> Detections:
    return Detections(
        boxes=like.new_zeros(0, 4),
        scores=like.new_zeros(0),
        labels=torch.zeros(0, dtype=torch.long, device=like.device),
        extra={
            "support": like.new_zeros(0),
            "index": torch.zeros(0, dtype=torch.long, device=like.device),
        },
    )
