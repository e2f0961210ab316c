"""The one postprocess path shared by train-validation, eval and predict.

``DenseOutput`` (all locations) -> :func:`select_candidates` (per-image top candidates) ->
optional tiling (:meth:`Candidates.shifted`, :func:`concat_candidates`) -> :func:`suppress`
(DNMS or a baseline) -> ``Detections``. Boxes are xyxy pixels of the network input (or of the
frame after shifting); labels 0-based; scores probabilities.

Scores per method (all in [0, 1]):
    dnms:   the DNMS confidence ``h ** 0.5 * u ** 0.5`` (see :mod:`fabricnms.model.dnms`); with
            ``top_classes`` > 1 each detection also reports its next best classes
            (:mod:`fabricnms.model.class_guesses`).
    greedy: ``sqrt(o2m class prob * quality)`` of each candidate's ``top_classes`` best classes,
            then greedy IoU NMS over all of them (:class:`~fabricnms.model.nms.NmsSettings`).
    soft:   the same dense scores, Gaussian Soft-NMS rescored (floor 0.001).
    none:   the raw one-to-one probability of the best class, no suppression.
    greedy+merge / soft+merge: greedy / soft, then the DNMS's duplicate-merge and line-joining
            stage (:func:`fabricnms.model.merge.merge_detections`).
    dnms-no-merge: the DNMS without its merge stage (every hypothesis column is a detection).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from fabricnms.errors import FabricError
from fabricnms.model.class_guesses import add_class_guesses
from fabricnms.model.dnms import DifferentiableNMS
from fabricnms.model.merge import merge_detections
from fabricnms.model.nms import (
    SOFT_FLOOR,
    NmsSettings,
    expand_classes,
    greedy_nms,
    soft_nms,
    vote_boxes,
)
from fabricnms.model.types import DenseOutput, Detections

METHODS = ("dnms", "greedy", "soft", "none", "greedy+merge", "soft+merge", "dnms-no-merge")


@dataclass
class Candidates:
    """One image's candidate detections (selected dense locations).

    boxes: ``[N, 4]`` xyxy pixels. scores_o2o / scores_o2m: ``[N, C]`` class probabilities of
    the one-to-one / one-to-many branches. quality: ``[N]`` IoU-quality probability.
    embed: ``[N, D]`` matching embeddings (``D`` may be 0). coeffs: ``[N, P]`` mask
    coefficients, or None without a mask branch.
    """

    boxes: Tensor
    scores_o2o: Tensor
    scores_o2m: Tensor
    quality: Tensor
    embed: Tensor
    coeffs: Tensor | None = None

    def __post_init__(self) -> None:
        n = self.boxes.shape[0]
        if self.boxes.shape != (n, 4):
            raise ValueError(f"boxes must be [N, 4], got {tuple(self.boxes.shape)}")
        if self.scores_o2m.dim() != 2 or self.scores_o2m.shape[0] != n:
            raise ValueError(f"scores_o2m must be [N={n}, C], got {tuple(self.scores_o2m.shape)}")
        if self.scores_o2o.shape != self.scores_o2m.shape:
            raise ValueError("scores_o2o and scores_o2m must have the same [N, C] shape")
        if self.quality.shape != (n,):
            raise ValueError(f"quality must be [N={n}], got {tuple(self.quality.shape)}")
        if self.embed.dim() != 2 or self.embed.shape[0] != n:
            raise ValueError(f"embed must be [N={n}, D], got {tuple(self.embed.shape)}")
        if self.coeffs is not None and (self.coeffs.dim() != 2 or self.coeffs.shape[0] != n):
            raise ValueError(f"coeffs must be [N={n}, P], got {tuple(self.coeffs.shape)}")

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def shifted(self, dx: float, dy: float, sx: float = 1.0, sy: float = 1.0) -> Candidates:
        """A copy in frame coordinates: boxes divided by the tile's stretch ``(sx, sy)``
        (network-input pixels per frame pixel) and moved by ``(dx, dy)`` pixels."""
        offset = self.boxes.new_tensor([dx, dy, dx, dy])
        scale = self.boxes.new_tensor([sx, sy, sx, sy])
        return dataclasses.replace(self, boxes=self.boxes / scale + offset)


def concat_candidates(cands: list[Candidates]) -> Candidates:
    """All candidates of several tiles of one frame as one set (same ``C``, ``D`` and ``P``;
    coefficients are kept only when every part has them)."""
    if not cands:
        raise ValueError("concat_candidates needs at least one Candidates")
    coeffs = [c.coeffs for c in cands]
    return Candidates(
        boxes=torch.cat([c.boxes for c in cands]),
        scores_o2o=torch.cat([c.scores_o2o for c in cands]),
        scores_o2m=torch.cat([c.scores_o2m for c in cands]),
        quality=torch.cat([c.quality for c in cands]),
        embed=torch.cat([c.embed for c in cands]),
        coeffs=None if any(c is None for c in coeffs) else torch.cat(coeffs),  # type: ignore[arg-type]
    )


def select_candidates(
    dense: DenseOutput, max_candidates: int = 1000, score_floor: float = 0.01
) -> list[Candidates]:
    """Per image, the top ``max_candidates`` locations by ``max(o2m, o2o)`` best-class score.

    Locations whose key score is below ``score_floor`` are dropped, so an image can have fewer
    (or zero) candidates. Logits become probabilities (sigmoid) only for the kept locations.
    """
    bsz, n_loc, _ = dense.cls_o2m.shape
    key_logit = torch.maximum(dense.cls_o2m.amax(dim=-1), dense.cls_o2o.amax(dim=-1))  # [B, L]
    top, idx = key_logit.topk(min(max_candidates, n_loc), dim=1)
    keep = torch.sigmoid(top) >= score_floor
    out = []
    for i in range(bsz):
        sel = idx[i][keep[i]]
        out.append(
            Candidates(
                boxes=dense.boxes[i, sel],
                scores_o2o=torch.sigmoid(dense.cls_o2o[i, sel]),
                scores_o2m=torch.sigmoid(dense.cls_o2m[i, sel]),
                quality=torch.sigmoid(dense.quality[i, sel]),
                embed=dense.embed[i, sel],
                coeffs=None if dense.mask_coeffs is None else dense.mask_coeffs[i, sel],
            )
        )
    return out


def pad_candidates(
    cands: list[Candidates],
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Stack per-image candidates into a padded batch for :class:`DifferentiableNMS`.

    Returns ``boxes [B, N, 4]``, ``scores_o2m [B, N, C]``, ``scores_o2o [B, N, C]``,
    ``quality [B, N]``, ``embed [B, N, D]`` and ``valid [B, N]`` (False on padding), with ``N``
    the largest candidate count.
    """
    ref = cands[0]
    n = max(len(c) for c in cands)
    valid = (
        torch.arange(n, device=ref.boxes.device)[None, :]
        < torch.tensor([len(c) for c in cands], device=ref.boxes.device)[:, None]
    )
    return (
        _pad_stack([c.boxes for c in cands], n),
        _pad_stack([c.scores_o2m for c in cands], n),
        _pad_stack([c.scores_o2o for c in cands], n),
        _pad_stack([c.quality for c in cands], n),
        _pad_stack([c.embed for c in cands], n),
        valid,
    )


def _pad_stack(parts: list[Tensor], n: int) -> Tensor:
    """``[N_i, ...]`` tensors zero-padded to ``N = n`` rows and stacked: ``[B, n, ...]`` (a
    view of the one tensor of a batch of one)."""
    if len(parts) == 1 and parts[0].shape[0] == n:
        return parts[0][None]
    return torch.stack([torch.cat([t, t.new_zeros((n - t.shape[0], *t.shape[1:]))]) for t in parts])


def suppress(
    cands: list[Candidates],
    method: str = "dnms",
    conf: float = 0.001,
    max_det: int = 300,
    dnms: DifferentiableNMS | None = None,
    nms: NmsSettings | None = None,
) -> list[Detections]:
    """Duplicate removal per image; returns detections with ``score >= conf``, at most ``max_det``.

    Args:
        cands: one :class:`Candidates` per image (frame coordinates when tiled).
        method: one of :data:`METHODS` (see the module docstring for the scores); ``"dnms"``
            (default) is one batched Sinkhorn pass.
        conf: minimum output score. max_det: most detections per image (highest scores).
        dnms: a configured :class:`DifferentiableNMS` (default hyper-parameters otherwise).
        nms: knobs of greedy / soft (:class:`NmsSettings` defaults otherwise); DNMS reads its
            ``top_classes`` (classes per detection).
    """
    if method not in METHODS:
        raise FabricError(f"unknown NMS method {method!r}: choose one of {', '.join(METHODS)}")
    if not cands:
        return []
    settings = nms if nms is not None else NmsSettings()
    if method.startswith("dnms"):
        module = dnms if dnms is not None else DifferentiableNMS()
        if method == "dnms-no-merge":
            module = copy.copy(module)
            module.merge = False
        coeffs = [c.coeffs for c in cands]
        padded = None
        if all(c is not None for c in coeffs):
            padded = _pad_stack(coeffs, max(len(c) for c in cands))  # type: ignore[arg-type]
        dets = module(*pad_candidates(cands), coeffs=padded)
        return [_top(add_class_guesses(d, settings.top_classes), conf, max_det) for d in dets]
    base, _, merge = method.partition("+")
    out = []
    for c in cands:
        det = _baseline(c, base, conf, max_det, settings)
        out.append(_top(merge_detections(det), conf, max_det) if merge else det)
    return out


def postprocess(
    dense: DenseOutput,
    method: str = "dnms",
    conf: float = 0.001,
    max_det: int = 300,
    dnms: DifferentiableNMS | None = None,
    nms: NmsSettings | None = None,
) -> list[Detections]:
    """``suppress(select_candidates(dense), ...)``: detections per image of a batch."""
    return suppress(select_candidates(dense), method, conf, max_det, dnms, nms)


def _top(det: Detections, conf: float, max_det: int) -> Detections:
    """Keep ``score >= conf``, then the ``max_det`` best (detections arrive sorted)."""
    keep = det.scores >= conf
    if len(det) <= max_det and bool(keep.all()):
        return det
    return det.select(keep.nonzero().flatten()[:max_det])


def _baseline(c: Candidates, method: str, conf: float, max_det: int, s: NmsSettings) -> Detections:
    """Greedy / soft / none: each detection is one candidate row (its coefficients kept) at one
    of its classes; greedy boxes optionally voted."""
    if len(c) == 0:
        return Detections.empty(c.boxes.device)
    if method == "none":
        score, label = c.scores_o2o.max(dim=1)
        sel = (score >= conf).nonzero().flatten()
        sel = sel[score[sel].argsort(descending=True, stable=True)][:max_det]
        return _rows(c, sel, score[sel], label[sel])
    dense = (c.scores_o2m * c.quality[:, None]).clamp(min=0).sqrt()  # [N, C]
    # Soft-NMS only lowers scores: entries below the output's ``conf`` never matter.
    floor = conf if method == "greedy" else max(conf, SOFT_FLOOR)
    rows, label = expand_classes(dense, s.top_classes, floor)
    score, boxes = dense[rows, label], c.boxes[rows]
    if method == "greedy":
        keep = greedy_nms(boxes, score, label, s.iou, conf, max_det, s.agnostic)
        det = _rows(c, rows[keep], score[keep], label[keep])
        if s.vote_iou > 0 and len(keep):
            voted = vote_boxes(keep, boxes, score, label, s.vote_iou, s.agnostic)
            det = dataclasses.replace(det, boxes=voted)
        return det
    keep, rescored = soft_nms(boxes, score, label, s.sigma, floor, max_det, s.agnostic)
    ok = rescored >= conf
    return _rows(c, rows[keep[ok]], rescored[ok], label[keep[ok]])


def _rows(c: Candidates, sel: Tensor, score: Tensor, label: Tensor) -> Detections:
    """Detections made of the candidate rows ``sel`` with their ``score`` and ``label``."""
    extra = {} if c.coeffs is None else {"mask_coeffs": c.coeffs[sel]}
    return Detections(boxes=c.boxes[sel], scores=score, labels=label, extra=extra)
