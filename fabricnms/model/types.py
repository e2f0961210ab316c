"""Data containers passed between the detector, the postprocess and the writers.

Conventions: boxes are ``xyxy`` in absolute pixels of the network input (or of the frame,
once tiles are shifted back); class indices are 0-based in memory (``category_id - 1``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from fabricnms.data.cloth import ClothRegion
    from fabricnms.model.mask_head import MaskCrops


@dataclass
class DenseOutput:
    """Per-location detector predictions for a batch, all FPN levels concatenated (L locations).

    cls_o2m: ``[B, L, C]`` class logits of the one-to-many branch (dense assignment).
    cls_o2o: ``[B, L, C]`` class logits of the one-to-one branch (trained through the matching).
    boxes: ``[B, L, 4]`` decoded boxes, xyxy pixels of the network input.
    quality: ``[B, L]`` IoU-quality logits.
    embed: ``[B, L, D]`` L2-normalised embeddings for the matching's feature-similarity term.
    points: ``[L, 2]`` location centres (x, y) in input pixels.
    strides: ``[L]`` stride of each location's FPN level.
    image_size: ``(H, W)`` of the network input.
    mask_coeffs: ``[B, L, P]`` mask coefficients in (-1, 1), or None without a mask branch.
    prototypes: ``[B, P, H / ps, W / ps]`` mask prototypes at ``proto_stride`` ``ps`` (cell
        ``j`` covers input pixels ``[j ps, (j + 1) ps)``), or None without a mask branch.
    proto_stride: ``ps`` (0 without a mask branch).
    """

    cls_o2m: Tensor
    cls_o2o: Tensor
    boxes: Tensor
    quality: Tensor
    embed: Tensor
    points: Tensor
    strides: Tensor
    image_size: tuple[int, int]
    mask_coeffs: Tensor | None = None
    prototypes: Tensor | None = None
    proto_stride: int = 0


@dataclass
class Detections:
    """Final detections of one image, compacted (no padding slots).

    boxes: ``[K, 4]`` xyxy pixels. scores: ``[K]`` calibrated confidences in [0, 1].
    labels: ``[K]`` int64 0-based class indices. masks: optional binary masks as per-box crops
    placed in the frame (:class:`~fabricnms.model.mask_head.MaskCrops`, on the CPU), filled
    when masks are requested. extra: per-detection ``[K, ...]`` tensors (e.g. ``mask_coeffs``
    ``[K, P]``, ``mask_area`` ``[K]`` px, ``mask_uncertainty`` ``[K]``). cloth: the frame's
    cloth region when tiled detection looked for the fabric's edges (detections off it dropped).
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    masks: MaskCrops | None = None
    extra: dict[str, Tensor] = field(default_factory=dict)
    cloth: ClothRegion | None = None

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @staticmethod
    def empty(device: torch.device | str = "cpu") -> Detections:
        """Zero detections."""
        return Detections(
            boxes=torch.zeros(0, 4, device=device),
            scores=torch.zeros(0, device=device),
            labels=torch.zeros(0, dtype=torch.long, device=device),
        )

    def to(self, device: torch.device | str) -> Detections:
        """Copy to ``device`` (the mask crops stay on the CPU)."""
        return Detections(
            boxes=self.boxes.to(device),
            scores=self.scores.to(device),
            labels=self.labels.to(device),
            masks=self.masks,
            extra={k: v.to(device) for k, v in self.extra.items()},
            cloth=self.cloth,
        )

    def select(self, index: Tensor) -> Detections:
        """The detections at ``index`` (``[K']`` int64 or ``[K]`` bool), masks included."""
        return Detections(
            boxes=self.boxes[index],
            scores=self.scores[index],
            labels=self.labels[index],
            masks=None if self.masks is None else self.masks.select(index),
            extra={k: v[index] for k, v in self.extra.items()},
            cloth=self.cloth,
        )
