"""Box-supervised mask losses (BoxInst style) on per-detection ``S x S`` grids.

Each ground-truth box is enlarged to a crop box (:func:`expand_boxes`) so its grid also sees
background around the defect. On that grid:

- **projection**: the max of the mask over rows (and over columns) must match the box's
  extent, a 1-D target ``[S]`` holding the fraction of each grid column / row covered by the
  box; dice loss on both projections. A mask of any shape that touches every row and column of
  the box and nothing outside it scores 0.
- **pairwise colour affinity**: grid neighbours (8 directions, ``dilation`` cells apart) whose
  CIE-LAB colours are similar (``exp(-dE / color_sigma) >= tau``) should share a label:
  ``-log(p_i p_j + (1 - p_i)(1 - p_j))`` averaged over those pairs. With the projection pushing
  the crop margin to background, the background colour carries that label into the box
  corners, so the mask follows colour edges (a disk inside its box comes out as a disk).

The image crop is resampled with the same :func:`~fabricnms.model.mask_head.roi_sample` as
the mask logits, so grid cells line up. Boxes are xyxy pixels of the network input; images are
``[3, H, W]`` RGB in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor

from fabricnms.model.mask_head import MASK_SIZE, assemble_masks, roi_sample

#: 8 neighbour directions (dy, dx) in units of ``dilation`` cells.
_DIRECTIONS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def expand_boxes(boxes: Tensor, ratio: float = 1.5, min_pad: float = 4.0) -> Tensor:
    """Enlarge ``[K, 4]`` xyxy boxes about their centres: each side grows by
    ``max((ratio - 1) / 2 * side, min_pad)`` pixels."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    pad_x = ((ratio - 1.0) / 2.0 * (x2 - x1)).clamp(min=min_pad)
    pad_y = ((ratio - 1.0) / 2.0 * (y2 - y1)).clamp(min=min_pad)
    return torch.stack([x1 - pad_x, y1 - pad_y, x2 + pad_x, y2 + pad_y], dim=-1)


def box_coverage(inner: Tensor, crop: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Fraction of every grid column / row of ``crop`` boxes covered by ``inner`` boxes.

    ``inner``, ``crop``: ``[K, 4]`` xyxy pixels. Returns ``(cover_x [K, S], cover_y [K, S])``
    in [0, 1]: 1 for cells fully inside the inner box's x (y) extent, fractional at its edges.
    """
    cells = torch.arange(size, device=inner.device, dtype=inner.dtype)
    out = []
    for lo, hi in ((0, 2), (1, 3)):
        scale = size / (crop[:, hi] - crop[:, lo]).clamp(min=1e-6)
        a = ((inner[:, lo] - crop[:, lo]) * scale)[:, None]
        b = ((inner[:, hi] - crop[:, lo]) * scale)[:, None]
        out.append((torch.minimum(cells + 1, b) - torch.maximum(cells, a)).clamp(0.0, 1.0))
    return out[0], out[1]


def rgb_to_lab(rgb: Tensor) -> Tensor:
    """sRGB in [0, 1] ``[..., 3, H, W]`` -> CIE-LAB (D65) ``[..., 3, H, W]`` (L in [0, 100])."""
    lin = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    r, g, b = lin.unbind(-3)
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883
    delta = 6.0 / 29.0

    def f(t: Tensor) -> Tensor:
        return torch.where(
            t > delta**3, t.clamp(min=1e-12) ** (1.0 / 3.0), t / (3 * delta**2) + 4 / 29
        )

    fx, fy, fz = f(x), f(y), f(z)
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=-3)


def _shift(x: Tensor, dy: int, dx: int) -> tuple[Tensor, Tensor]:
    """``x [..., S, S]`` read at ``(i + dy, j + dx)`` (0 outside) and that position's validity."""
    s_h, s_w = x.shape[-2:]
    padded = F.pad(x, (abs(dx), abs(dx), abs(dy), abs(dy)))
    out = padded[..., abs(dy) + dy : abs(dy) + dy + s_h, abs(dx) + dx : abs(dx) + dx + s_w]
    ones = torch.ones(s_h, s_w, device=x.device, dtype=x.dtype)
    inside = F.pad(ones, (abs(dx), abs(dx), abs(dy), abs(dy)))
    valid = inside[abs(dy) + dy : abs(dy) + dy + s_h, abs(dx) + dx : abs(dx) + dx + s_w]
    return out, valid


def color_similarity(lab: Tensor, dilation: int = 1, color_sigma: float = 6.0) -> Tensor:
    """``exp(-dE / color_sigma)`` to the 8 neighbours ``dilation`` cells away.

    ``lab [K, 3, S, S]`` -> ``[K, 8, S, S]``; 0 where the neighbour is off the grid.
    """
    sims = []
    for dy, dx in _DIRECTIONS:
        other, valid = _shift(lab, dy * dilation, dx * dilation)
        diff = (lab - other).square().sum(1).sqrt()
        sims.append(torch.exp(-diff / color_sigma) * valid)
    return torch.stack(sims, dim=1)


def projection_loss(logits: Tensor, cover_x: Tensor, cover_y: Tensor) -> Tensor:
    """Dice loss of the mask's max-projections onto x and y, ``[K, S, S] -> [K]``."""
    p = torch.sigmoid(logits)
    return _dice(p.amax(dim=1), cover_x) + _dice(p.amax(dim=2), cover_y)


def _dice(pred: Tensor, target: Tensor, eps: float = 1e-5) -> Tensor:
    inter = (pred * target).sum(-1)
    return 1.0 - 2.0 * inter / (pred.square().sum(-1) + target.square().sum(-1) + eps)


def pairwise_loss(
    logits: Tensor, similarity: Tensor, tau: float = 0.3, dilation: int = 1
) -> Tensor:
    """Colour-affinity loss ``[K, S, S]`` logits, ``[K, 8, S, S]`` similarity -> ``[K]``.

    Mean over neighbour pairs with ``similarity >= tau`` of ``-log P(same label)``, computed
    from log-sigmoids (stable for large logits); 0 for a detection without such pairs.
    """
    log_fg = F.logsigmoid(logits)
    log_bg = F.logsigmoid(-logits)
    weights = (similarity >= tau).to(logits.dtype)
    terms = []
    for d, (dy, dx) in enumerate(_DIRECTIONS):
        fg, _ = _shift(log_fg, dy * dilation, dx * dilation)
        bg, _ = _shift(log_bg, dy * dilation, dx * dilation)
        same = torch.logaddexp(log_fg + fg, log_bg + bg)
        terms.append(-same * weights[:, d])
    total = torch.stack(terms, 1).sum((1, 2, 3))
    return total / weights.sum((1, 2, 3)).clamp(min=1.0)


@dataclass
class BoxMaskTargets:
    """Targets of ``K`` ground-truth boxes for the box-supervised mask losses.

    crop_boxes: ``[K, 4]`` xyxy input pixels; sample the mask logits there
        (``assemble_masks(protos, coeffs, crop_boxes[idx], stride, size)``).
    cover_x, cover_y: ``[K, S]`` projection targets. similarity: ``[K, 8, S, S]``.
    """

    crop_boxes: Tensor
    cover_x: Tensor
    cover_y: Tensor
    similarity: Tensor

    def select(self, index: Tensor) -> BoxMaskTargets:
        """Targets for positives ``index [N]`` (int64 ground-truth index of each positive)."""
        return BoxMaskTargets(
            self.crop_boxes[index], self.cover_x[index], self.cover_y[index], self.similarity[index]
        )

    @staticmethod
    def cat(parts: list[BoxMaskTargets]) -> BoxMaskTargets:
        """The targets of several groups (images) concatenated along ``K``."""
        return BoxMaskTargets(
            *(torch.cat([getattr(t, f.name) for t in parts]) for f in fields(BoxMaskTargets))
        )


def _zero_terms(zero: Tensor) -> dict[str, Tensor]:
    """The loss dict of :func:`box_mask_loss` when there is no mask: ``zero`` everywhere."""
    return {"loss": zero, "projection": zero.detach(), "pairwise": zero.detach()}


@torch.no_grad()
def box_mask_targets(
    image: Tensor,
    boxes: Tensor,
    size: int = MASK_SIZE,
    expand: float = 1.5,
    min_pad: float = 4.0,
    dilation: int = 1,
    color_sigma: float = 6.0,
) -> BoxMaskTargets:
    """Projection and colour-affinity targets of ``boxes [K, 4]`` (xyxy px) in ``image``.

    ``image`` is ``[3, H, W]`` RGB in [0, 1], the network input the boxes refer to.
    """
    crop = expand_boxes(boxes.to(image.dtype), expand, min_pad)
    cover_x, cover_y = box_coverage(boxes.to(image.dtype), crop, size)
    lab = rgb_to_lab(roi_sample(image, crop, 1.0, size))
    return BoxMaskTargets(crop, cover_x, cover_y, color_similarity(lab, dilation, color_sigma))


def box_mask_loss(
    logits: Tensor,
    targets: BoxMaskTargets,
    tau: float = 0.3,
    dilation: int = 1,
    pairwise_weight: float = 1.0,
) -> dict[str, Tensor]:
    """Mean losses over ``K`` masks: ``{"loss", "projection", "pairwise"}`` (scalars).

    ``logits [K, S, S]`` sampled on ``targets.crop_boxes``. ``K = 0`` gives zeros that still
    depend on ``logits`` (so a batch without positives backpropagates cleanly).
    """
    if logits.shape[0] == 0:
        return _zero_terms(logits.sum() * 0.0)
    proj = projection_loss(logits, targets.cover_x, targets.cover_y).mean()
    pair = pairwise_loss(logits, targets.similarity, tau, dilation).mean()
    return {
        "loss": proj + pairwise_weight * pair,
        "projection": proj.detach(),
        "pairwise": pair.detach(),
    }


def positive_mask_loss(
    images: Tensor,
    protos: Tensor,
    coeffs: Tensor,
    proto_stride: float,
    gt_index: list[Tensor],
    gt_boxes: list[Tensor],
    max_per_image: int = 128,
    size: int = MASK_SIZE,
) -> dict[str, Tensor]:
    """Box-supervised mask loss of the dense positives of a batch (:func:`box_mask_loss`).

    Every positive location (``gt_index >= 0``) predicts the mask of its ground-truth box from
    its own coefficients; at most ``max_per_image`` positives per image take part (evenly
    spaced in location order, so every level and box keeps some). Only boxes and the image
    colours are used: no true mask is read.

    Args:
        images: ``[B, 3, H, W]`` RGB in [0, 1], the network input.
        protos: ``[B, P, H / s, W / s]`` prototypes at ``proto_stride`` ``s``.
        coeffs: ``[B, L, P]`` coefficients per location.
        gt_index: per image ``[L]`` int64 assigned ground truth (-1 background).
        gt_boxes: per image ``[M, 4]`` xyxy input pixels.
    """
    logits, targets = [], []
    for b, (index, boxes) in enumerate(zip(gt_index, gt_boxes, strict=True)):
        pos = torch.nonzero(index >= 0).squeeze(1)
        if pos.numel() == 0:
            continue
        if pos.numel() > max_per_image:
            pos = pos[torch.linspace(0, pos.numel() - 1, max_per_image).round().long()]
        t = box_mask_targets(images[b].float(), boxes, size).select(index[pos])
        logits.append(assemble_masks(protos[b], coeffs[b, pos], t.crop_boxes, proto_stride, size))
        targets.append(t)
    if not logits:  # zeros that still reach both outputs (clean backward, DDP included)
        return _zero_terms(protos.sum() * 0.0 + coeffs.sum() * 0.0)
    return box_mask_loss(torch.cat(logits), BoxMaskTargets.cat(targets))
