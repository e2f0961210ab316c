"""The compact from-scratch detector: backbone + PAN neck + dual-branch anchor-free head.

``Detector(num_classes, **arch)`` maps ``[B, 3, H, W]`` RGB in [0, 1] (``H``, ``W`` multiples
of 32) to a :class:`~fabricnms.model.types.DenseOutput` whose boxes are ``xyxy`` pixels of the
input and whose class indices are 0-based. ``Detector(**detector.config)`` rebuilds it.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor, nn

from fabricnms.model.backbone import Backbone
from fabricnms.model.head import DenseHead, distances_to_boxes
from fabricnms.model.losses import DetectionLoss, LossWeights
from fabricnms.model.matching import MatchingConfig
from fabricnms.model.neck import PANNeck
from fabricnms.model.types import DenseOutput

INPUT_MULTIPLE = 32
_MEAN = 0.5  # fixed input normalisation (fabric is grey-ish; no ImageNet statistics apply)
_STD = 0.25


class Detector(nn.Module):
    """Dense detector with a one-to-many and a one-to-one classification branch.

    Args:
        num_classes: number of defect classes ``C``.
        width: backbone base width (stage channels ``width * (2, 4, 8, 16)``).
        depth: bottlenecks per CSP block.
        neck_channels: channels of every FPN level and of the head.
        head_depth: depthwise-separable convs per head tower.
        embed_dim: embedding size ``D``.
        strides: FPN strides, a subset of (4, 8, 16, 32).
        matching: :class:`MatchingConfig` fields (``alpha``, ``beta``, ``gamma``, ``eps_*``...).
        loss_weights: :class:`LossWeights` fields.
        detach_plan: stop gradients through the Sinkhorn plan (ablation switch).
    """

    def __init__(
        self,
        num_classes: int,
        width: int = 16,
        depth: int = 1,
        neck_channels: int = 64,
        head_depth: int = 1,
        embed_dim: int = 32,
        strides: tuple[int, ...] | list[int] = (8, 16, 32),
        matching: dict[str, Any] | None = None,
        loss_weights: dict[str, float] | None = None,
        detach_plan: bool = False,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        strides = tuple(sorted(int(s) for s in strides))
        match_cfg = MatchingConfig(**{**(matching or {}), "detach_plan": detach_plan})
        weights = LossWeights(**(loss_weights or {}))
        self.num_classes = num_classes
        self.strides = strides
        self.config: dict[str, Any] = {
            "num_classes": num_classes,
            "width": width,
            "depth": depth,
            "neck_channels": neck_channels,
            "head_depth": head_depth,
            "embed_dim": embed_dim,
            "strides": list(strides),
            "matching": {k: v for k, v in asdict(match_cfg).items() if k != "detach_plan"},
            "loss_weights": weights.as_dict(),
            "detach_plan": detach_plan,
        }
        self.backbone = Backbone(width, depth)
        self.neck = PANNeck(self.backbone.channels, strides, neck_channels)
        self.head = DenseHead(neck_channels, num_classes, embed_dim, strides, head_depth)
        self.criterion = DetectionLoss(match_cfg, weights)
        self._grid_cache: dict[tuple[Any, ...], tuple[Tensor, Tensor]] = {}

    def forward(self, images: Tensor) -> DenseOutput:
        """Dense predictions for ``images [B, 3, H, W]`` float RGB in [0, 1]."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
        h, w = int(images.shape[2]), int(images.shape[3])
        if h % INPUT_MULTIPLE or w % INPUT_MULTIPLE:
            raise ValueError(f"input size {h}x{w} must be a multiple of {INPUT_MULTIPLE}")
        feats = self.neck(self.backbone((images - _MEAN) / _STD))
        levels = self.head(feats)
        points, strides = self.locations(h, w, images.device, images.dtype)
        boxes = distances_to_boxes(points, _flatten([lv.ltrb for lv in levels]))
        return DenseOutput(
            cls_o2m=_flatten([lv.cls_o2m for lv in levels]),
            cls_o2o=_flatten([lv.cls_o2o for lv in levels]),
            boxes=boxes,
            quality=_flatten([lv.quality for lv in levels]).squeeze(-1),
            embed=_flatten([lv.embed for lv in levels]),
            points=points,
            strides=strides,
            image_size=(h, w),
        )

    def loss(
        self, dense: DenseOutput, targets: list[dict[str, Tensor]], progress: float
    ) -> dict[str, Tensor]:
        """Loss dict: total under ``"loss"`` plus detached terms.

        Args:
            dense: output of :meth:`forward`.
            targets: per image ``{"boxes": [M, 4] float xyxy pixels of the input,
                "labels": [M] int64 0-based}``; ``M`` may be 0.
            progress: training fraction in [0, 1]; anneals the Sinkhorn ``eps``.
        """
        return self.criterion(dense, targets, progress)

    def locations(
        self,
        h: int,
        w: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> tuple[Tensor, Tensor]:
        """Location centres ``[L, 2]`` (x, y) pixels and strides ``[L]``, level-major, row-major."""
        key = (h, w, str(torch.device(device)), dtype)
        if key not in self._grid_cache:
            pts, strd = [], []
            for s in self.strides:
                ys, xs = torch.meshgrid(
                    (torch.arange(h // s, device=device, dtype=dtype) + 0.5) * s,
                    (torch.arange(w // s, device=device, dtype=dtype) + 0.5) * s,
                    indexing="ij",
                )
                pts.append(torch.stack([xs, ys], dim=-1).reshape(-1, 2))
                strd.append(torch.full((xs.numel(),), float(s), device=device, dtype=dtype))
            self._grid_cache = {key: (torch.cat(pts), torch.cat(strd))}
        return self._grid_cache[key]

    def complexity(self, height: int = 1024, width: int = 1024) -> dict[str, Any]:
        """Parameter counts per part and forward FLOPs (one multiply-add = 2 FLOPs) at ``HxW``.

        Counted with :class:`torch.utils.flop_counter.FlopCounterMode` on a batch of one in
        eval mode; the model's train/eval state is restored afterwards.
        """
        from torch.utils.flop_counter import FlopCounterMode

        parts = {
            name: sum(p.numel() for p in getattr(self, name).parameters())
            for name in ("backbone", "neck", "head")
        }
        was_training = self.training
        self.eval()
        try:
            counter = FlopCounterMode(display=False)
            with torch.no_grad(), counter:
                self(torch.zeros(1, 3, height, width, device=next(self.parameters()).device))
        finally:
            self.train(was_training)
        return {
            "params": sum(parts.values()),
            "params_by_part": parts,
            "flops": int(counter.get_total_flops()),
            "input_size": [height, width],
        }


def _flatten(maps: list[Tensor]) -> Tensor:
    """``[B, K, h_l, w_l]`` per level -> ``[B, sum_l h_l w_l, K]``."""
    return torch.cat([m.flatten(2).transpose(1, 2) for m in maps], dim=1)
