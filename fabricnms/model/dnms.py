"""Differentiable NMS: duplicate removal as an entropic optimal-transport matching.

Per image, the one-to-one (o2o) scores pick the object *hypotheses* (columns); the dense
one-to-many (o2m) candidates are the *rows*. A log-domain Sinkhorn pass with a dustbin column
assigns every row's mass to a hypothesis or to background; the rows assigned to a hypothesis
are fused into its output box and score; hypotheses that describe the same defect as a stronger
one are merged into it (their plan columns are added, so their rows still count). Segments of
one line (e.g. the pieces of a warp line cut by tiles) are joined and the detection spans the
union of their extents along the line. Every step is a tensor operation on a padded batch; the
only Python loop over images is the final unpadding. Where no gradient is needed (inference),
the same mathematics runs compiled instead (:mod:`fabricnms.model.dnms_fast`).

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

import torch
from torch import Tensor, nn

from fabricnms.model.class_guesses import EVIDENCE_KEY
from fabricnms.model.dnms_fast import fast_dnms, needs_grad
from fabricnms.model.dnms_fast_match import kernel_settings
from fabricnms.model.dnms_fusion import (
    FusionSettings,
    class_evidence,
    collected_o2o,
    column_labels,
    fuse,
    fuse_coeffs,
)
from fabricnms.model.dnms_fusion import score as column_score
from fabricnms.model.dnms_match import (
    TINY,
    Matching,
    MatchSettings,
    check_inputs,
    match_hypotheses,
    row_quality,
)
from fabricnms.model.merge import MergeSettings, line_span, merge_groups, unsort
from fabricnms.model.types import Detections


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
        compiled: where no gradient is needed, run the compiled inference path
            (:mod:`fabricnms.model.dnms_fast`, same results); ``False``: always the torch path.
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
        compiled: bool = True,
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
        self.merge_rounds, self.merge, self.compiled = merge_rounds, merge, compiled

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

    @property
    def match_settings(self) -> MatchSettings:
        """The matching's settings, from this module's."""
        return MatchSettings(
            self.alpha,
            self.beta,
            self.gamma,
            self.delta,
            self.iomin_weight,
            self.match_cost,
            self.eps,
            self.iters,
            self.tol,
            self.hyp_floor,
            self.max_hyp,
            self.sparse_ratio,
        )

    @property
    def fusion_settings(self) -> FusionSettings:
        """The fusion and scoring settings, from this module's."""
        return FusionSettings(self.fuse_sigma, self.fuse_steps, self.fuse_rows, self.score_power)

    def match(
        self,
        boxes: Tensor,
        scores_o2m: Tensor,
        scores_o2o: Tensor,
        quality: Tensor | None = None,
        embed: Tensor | None = None,
        valid: Tensor | None = None,
    ) -> Matching:
        """Hypotheses and transport plan (:func:`~fabricnms.model.dnms_match.match_hypotheses`);
        args as in :meth:`forward`, ``N >= 1``."""
        return match_hypotheses(
            self.match_settings, boxes, scores_o2m, scores_o2o, quality, embed, valid
        )

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, beta={self.beta}, gamma={self.gamma}, delta={self.delta}, "
            f"eps={self.eps}, iters={self.iters}, tol={self.tol}, hyp_floor={self.hyp_floor}, "
            f"max_hyp={self.max_hyp}"
        )

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
            ``index`` (row index of its hypothesis), ``class_evidence`` ``[K, C]`` (the
            plan-weighted mean evidence of every class, :func:`~fabricnms.model.dnms_fusion.
            class_evidence`) and, with ``coeffs``, ``mask_coeffs``
            ``[K, P]`` fused by :func:`~fabricnms.model.dnms_fusion.fuse_coeffs` over the same
            final plan as the boxes.
            Boxes and scores are differentiable with respect to boxes, both score tensors,
            quality and embeddings.
        """
        check_inputs(boxes, scores_o2m, scores_o2o, quality, embed, valid)
        bsz, n = boxes.shape[:2]
        if n == 0:
            return [_empty(boxes) for _ in range(bsz)]
        args = (boxes, scores_o2m, scores_o2o, quality, embed, valid, coeffs)
        if self.compiled and not needs_grad(*args):
            merge = self.merge_settings
            ks = kernel_settings(self.match_settings, self.fusion_settings, merge, self.merge)
            fast = fast_dnms(ks, self.max_hyp, *args)
            if fast is not None:
                return fast
        m = self.match(boxes, scores_o2m, scores_o2o, quality, embed, valid)
        kk = m.hyp_index.shape[1]
        plan = m.plan[..., :kk]
        q = row_quality(scores_o2m, quality)
        evidence = (scores_o2m * q[..., None]).clamp(min=0).sqrt()  # [B, N, C]
        hyp_boxes = boxes.gather(1, m.hyp_index[..., None].expand(-1, -1, 4))
        fs = self.fusion_settings
        fused = fuse(fs, plan, boxes, hyp_boxes, q)
        labels, u_mass = column_labels(plan, evidence, m.hyp_label)
        own = scores_o2o.gather(1, m.hyp_index[..., None].expand(-1, -1, scores_o2o.shape[-1]))
        score, support = column_score(fs, plan, own.gather(2, labels[..., None])[..., 0], u_mass)
        alive = m.hyp_valid & (support > TINY)

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
            fused = line_span(fuse(fs, plan, boxes, merged, q), span, line)
            labels, u_mass = column_labels(plan, evidence, m.hyp_label)
            h = collected_o2o(plan, scores_o2o, m.row_mass, labels)
            score, support = column_score(fs, plan, h, u_mass)
        survivor = alive
        extra = {"support": support, "index": m.hyp_index}
        extra[EVIDENCE_KEY] = class_evidence(plan, evidence)
        if coeffs is not None:
            start = coeffs.gather(1, m.hyp_index[..., None].expand(-1, -1, coeffs.shape[-1]))
            extra["mask_coeffs"] = fuse_coeffs(fs, plan, coeffs, start, q)
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


def _empty(like: Tensor) -> Detections:
    zero, none = like.new_zeros(0), torch.zeros(0, dtype=torch.long, device=like.device)
    return Detections(like.new_zeros(0, 4), zero, none, extra={"support": zero, "index": none})
