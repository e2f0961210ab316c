"""Training losses of the detector: dense one-to-many terms and Sinkhorn one-to-one terms.

One-to-many (positives from :func:`~fabricnms.model.assign.assign_dense`):
``cls`` focal loss on the o2m class logits (target 1 for the positive's class, 0 elsewhere),
``box`` 1 - GIoU and ``l1`` log-distance L1 at positives, ``quality`` quality focal loss on the
IoU-quality logit (IoU at positives, 0 elsewhere). The class target does not carry the IoU:
from scratch on subtle fabric defects the early IoUs are ~0.1, and an IoU-valued class target
left every score at the prior (the network never learnt *whether* a location shows a defect);
the ranking by box quality comes from the quality branch (scores are ``sqrt(cls * quality)``).
One-to-one (plan ``P`` from :func:`~fabricnms.model.matching.match_one_to_one`):
``o2o_cls`` quality focal loss on the o2o logits with soft targets ``P_ij * IoU_ij`` (0 off the
plan's rows), ``o2o_box`` / ``o2o_l1`` the box terms weighted by ``P``. ``embed``: a contrastive
term pulling the embeddings of each defect's positives (weight 1) and plan rows (weight ``P``)
to the defect's prototype and away from the other defects' in the batch. Gradients reach
scores, boxes and embeddings through ``P`` unless the plan is detached.

``mask`` (only with a mask branch and the batch images): the box-supervised mask loss of the
dense positives (:func:`~fabricnms.model.mask_losses.positive_mask_loss`; projection onto the
box extent plus colour affinity, never a true mask); ``mask_projection`` / ``mask_pairwise``
are logged alongside.

Boxes are ``xyxy`` pixels of the network input; class indices 0-based. Every sum is divided
by the number of dense positives (one-to-many terms) or of ground-truth defects (one-to-one
terms), at least 1, so images without defects (common on fabric) only add background terms.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from fabricnms.model.assign import DenseAssignment, assign_dense
from fabricnms.model.boxes import elementwise_giou
from fabricnms.model.mask_losses import positive_mask_loss
from fabricnms.model.matching import ImageMatch, MatchingConfig, gt_prototypes, match_one_to_one
from fabricnms.model.types import DenseOutput


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms (keys of the dict :class:`DetectionLoss` returns)."""

    cls: float = 1.0
    box: float = 2.0
    l1: float = 1.0
    quality: float = 1.0
    o2o_cls: float = 1.0
    o2o_box: float = 2.0
    o2o_l1: float = 1.0
    embed: float = 0.5
    mask: float = 1.0

    def as_dict(self) -> dict[str, float]:
        """Plain dict of the weights."""
        return asdict(self)


def quality_focal_loss(logits: Tensor, target: Tensor, gamma: float = 2.0) -> Tensor:
    """Quality focal loss (BCE against a soft target, modulated by ``|sigmoid - target|^gamma``).

    ``logits`` and ``target`` (in [0, 1]) share any shape; returns the sum (scalar).
    """
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (bce * (logits.sigmoid() - target).abs().pow(gamma)).sum()


def _log_ltrb(boxes: Tensor, points: Tensor) -> Tensor:
    """``[..., 4]`` log distances from ``points [..., 2]`` to the box sides (min 0.1 px)."""
    ltrb = torch.cat([points - boxes[..., :2], boxes[..., 2:] - points], dim=-1)
    return ltrb.clamp(min=0.1).log()


def box_loss(pred: Tensor, target: Tensor, points: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair box terms for ``[..., 4]`` xyxy boxes regressed from ``points [..., 2]``.

    Returns ``(1 - GIoU, L1, IoU)``, each ``[...]``. The L1 term compares ``log ltrb``: a
    distance error relative to the distance, i.e. normalised by scale and stride alike, so a
    1000 px side and a 15 px side weigh the same.
    """
    iou, giou = elementwise_giou(pred, target)
    l1 = (_log_ltrb(pred, points) - _log_ltrb(target, points)).abs().sum(-1)
    return 1 - giou, l1, iou


def embedding_loss(embed: Tensor, target: Tensor, weight: Tensor, prototypes: Tensor) -> Tensor:
    """Weighted contrastive loss (sum): pull ``embed [K, D]`` toward ``prototypes[target]`` and
    away from the other defects' prototypes (InfoNCE over ``prototypes [G, D]``, tau 0.1).

    ``target [K]`` int64 indexes ``prototypes``; ``weight [K]`` (the plan for one-to-one rows).
    """
    if embed.shape[0] == 0:
        return embed.sum() * 0
    nce = F.cross_entropy(embed @ prototypes.T / 0.1, target, reduction="none")
    pull = 1 - (embed * prototypes[target]).sum(-1)
    return (weight * (nce + pull)).sum()


class DetectionLoss:
    """Computes the loss dict for :meth:`fabricnms.model.detector.Detector.loss`."""

    def __init__(self, matching: MatchingConfig, weights: LossWeights) -> None:
        self.matching = matching
        self.weights = weights

    def __call__(
        self,
        dense: DenseOutput,
        targets: list[dict[str, Tensor]],
        progress: float,
        images: Tensor | None = None,
        mask_only: bool = False,
    ) -> dict[str, Tensor]:
        """Loss terms and their weighted total under ``"loss"``.

        Args:
            dense: detector output for a batch of ``B`` images.
            targets: ``B`` dicts ``{"boxes": [M, 4] xyxy px, "labels": [M] int64 0-based}``.
            progress: training fraction in [0, 1].
            images: ``[B, 3, H, W]`` RGB in [0, 1]; with ``dense.prototypes`` it adds ``mask``.
            mask_only: compute only the mask terms (the detector is frozen).
        """
        bsz = dense.cls_o2m.shape[0]
        if len(targets) != bsz:
            raise ValueError(f"got {len(targets)} targets for a batch of {bsz} images")
        device = dense.boxes.device
        gt_boxes = [t["boxes"].to(device=device, dtype=dense.boxes.dtype) for t in targets]
        gt_labels = [t["labels"].to(device=device, dtype=torch.long) for t in targets]
        o2m_prob = dense.cls_o2m.detach().sigmoid()
        assigns = [
            assign_dense(
                dense.points,
                dense.strides,
                dense.boxes[b].detach(),
                o2m_prob[b],
                gt_boxes[b],
                gt_labels[b],
            )
            for b in range(bsz)
        ]
        use_masks = dense.prototypes is not None and images is not None
        if mask_only and not use_masks:
            raise ValueError("mask_only needs a mask branch output and the batch images")
        terms = (
            {}
            if mask_only
            else self._detection_terms(dense, assigns, gt_boxes, gt_labels, progress)
        )
        if use_masks:
            mask = positive_mask_loss(
                images,
                dense.prototypes,
                dense.mask_coeffs,
                dense.proto_stride,
                [a.gt_index for a in assigns],
                gt_boxes,
            )
            terms["mask"] = mask["loss"]
        w = self.weights.as_dict()
        total = sum(w[k] * v for k, v in terms.items())
        out = {k: v.detach() for k, v in terms.items()}
        if use_masks:
            out["mask_projection"], out["mask_pairwise"] = mask["projection"], mask["pairwise"]
        out["loss"] = total
        return out

    def _detection_terms(
        self,
        dense: DenseOutput,
        assigns: list[DenseAssignment],
        gt_boxes: list[Tensor],
        gt_labels: list[Tensor],
        progress: float,
    ) -> dict[str, Tensor]:
        """The one-to-many and one-to-one terms (unweighted)."""
        bsz = len(assigns)
        protos = [
            gt_prototypes(dense.embed[b], assigns[b].gt_index, gt_boxes[b].shape[0])
            for b in range(bsz)
        ]
        all_protos = torch.cat(protos, dim=0)  # [G, D], G = defects in the batch
        terms = self._one_to_many(dense, assigns, gt_boxes, gt_labels, all_protos)
        matches = match_one_to_one(
            dense.cls_o2o.sigmoid(),
            dense.boxes,
            dense.points,
            dense.strides,
            dense.embed,
            [a.candidates for a in assigns],
            gt_boxes,
            gt_labels,
            protos,
            self.matching,
            progress,
        )
        o2o = self._one_to_one(dense, matches, gt_boxes, gt_labels, all_protos)
        terms["o2o_cls"], terms["o2o_box"], terms["o2o_l1"], o2o_embed = o2o
        terms["embed"] = terms["embed"] + o2o_embed
        return terms

    def _one_to_many(
        self,
        dense: DenseOutput,
        assigns: list[DenseAssignment],
        gt_boxes: list[Tensor],
        gt_labels: list[Tensor],
        protos: Tensor,
    ) -> dict[str, Tensor]:
        cls_target = torch.zeros_like(dense.cls_o2m)
        quality_target = torch.zeros_like(dense.quality)
        giou_sum = dense.boxes.new_zeros(())
        l1_sum = dense.boxes.new_zeros(())
        emb, emb_target, offset = [], [], 0
        n_pos = 0
        for b, a in enumerate(assigns):
            fg = torch.nonzero(a.foreground).squeeze(1)
            if fg.numel() == 0:
                offset += gt_boxes[b].shape[0]
                continue
            j = a.gt_index[fg]
            g, l1, iou = box_loss(dense.boxes[b, fg], gt_boxes[b][j], dense.points[fg])
            giou_sum = giou_sum + g.sum()
            l1_sum = l1_sum + l1.sum()
            cls_target[b, fg, gt_labels[b][j]] = 1.0
            quality_target[b, fg] = iou.detach().clamp(min=0.0)
            emb.append(dense.embed[b, fg])
            emb_target.append(j + offset)
            offset += gt_boxes[b].shape[0]
            n_pos += int(fg.numel())
        norm = float(max(n_pos, 1))
        if emb:
            e = torch.cat(emb)
            embed = embedding_loss(e, torch.cat(emb_target), e.new_ones(e.shape[0]), protos)
        else:
            embed = dense.embed.sum() * 0
        return {
            "cls": quality_focal_loss(dense.cls_o2m, cls_target) / norm,
            "box": giou_sum / norm,
            "l1": l1_sum / norm,
            "quality": quality_focal_loss(dense.quality, quality_target) / norm,
            "embed": embed / norm,
        }

    def _one_to_one(
        self,
        dense: DenseOutput,
        matches: list[ImageMatch | None],
        gt_boxes: list[Tensor],
        gt_labels: list[Tensor],
        protos: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        target = torch.zeros_like(dense.cls_o2o)
        giou_sum = dense.boxes.new_zeros(())
        l1_sum = dense.boxes.new_zeros(())
        emb_sum = dense.boxes.new_zeros(())
        offset = 0
        pairs: list[tuple[Tensor, Tensor, Tensor]] = []
        for b, match in enumerate(matches):
            m = gt_boxes[b].shape[0]
            if match is None:
                offset += m
                continue
            n = match.rows.shape[0]
            rows = match.rows[:, None].expand(n, m)
            cols = torch.arange(m, device=rows.device)[None, :].expand(n, m)
            soft = match.plan * match.iou.detach().clamp(min=0.0)
            bidx = torch.full_like(rows, b)
            target = target.index_put(
                (bidx.reshape(-1), rows.reshape(-1), gt_labels[b][cols].reshape(-1)),
                soft.reshape(-1),
                accumulate=True,
            )
            pred = dense.boxes[b, match.rows][:, None, :].expand(n, m, 4)
            pts = dense.points[match.rows][:, None, :].expand(n, m, 2)
            g, l1, _ = box_loss(pred, gt_boxes[b][None].expand(n, m, 4), pts)
            giou_sum = giou_sum + (match.plan * g).sum()
            l1_sum = l1_sum + (match.plan * l1).sum()
            pairs.append(
                (
                    dense.embed[b, rows.reshape(-1)],
                    cols.reshape(-1) + offset,
                    match.plan.reshape(-1),
                )
            )
            offset += m
        n_gt = sum(g.shape[0] for g in gt_boxes)
        if pairs:
            emb_sum = embedding_loss(
                torch.cat([p[0] for p in pairs]),
                torch.cat([p[1] for p in pairs]),
                torch.cat([p[2] for p in pairs]),
                protos,
            )
        norm = float(max(n_gt, 1))
        cls = quality_focal_loss(dense.cls_o2o, target.clamp(max=1.0)) / norm
        return cls, giou_sum / norm, l1_sum / norm, emb_sum / norm
