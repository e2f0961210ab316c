"""Data containers passed between the detector, the postprocess and the writers.

Conventions: boxes are ``xyxy`` in absolute pixels of the network input (or of the frame,
once tiles are shifted back); class indices are 0-based in memory (``category_id - 1``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


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
    """

    cls_o2m: Tensor
    cls_o2o: Tensor
    boxes: Tensor
    quality: Tensor
    embed: Tensor
    points: Tensor
    strides: Tensor
    image_size: tuple[int, int]


@dataclass
class Detections:
    """Final detections of one image, compacted (no padding slots).

    boxes: ``[K, 4]`` xyxy pixels. scores: ``[K]`` calibrated confidences in [0, 1].
    labels: ``[K]`` int64 0-based class indices. masks: optional ``[K, h, w]`` bool masks in
    frame pixels (filled by the mask refinement when requested).
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    masks: Tensor | None = None
    extra: dict[str, Tensor] = field(default_factory=dict)

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
        """Copy to ``device``."""
        return Detections(
            boxes=self.boxes.to(device),
            scores=self.scores.to(device),
            labels=self.labels.to(device),
            masks=None if self.masks is None else self.masks.to(device),
            extra={k: v.to(device) for k, v in self.extra.items()},
        )
