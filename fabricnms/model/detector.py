"""The compact from-scratch detector: backbone + PAN neck + dual-branch anchor-free head.

``Detector(num_classes, **arch)`` maps ``[B, 3, H, W]`` RGB in [0, 1] (``H``, ``W`` multiples
of 32) to a :class:`~fabricnms.model.types.DenseOutput` whose boxes are ``xyxy`` pixels of the
input and whose class indices are 0-based. ``Detector(**detector.config)`` rebuilds it.

The prototype mask branch (:class:`~fabricnms.model.mask_head.MaskBranch`) is optional and off
by default (``mask_prototypes=0``): without it the network has exactly the parameters (and
state-dict keys) of a detector built before the branch existed, so such checkpoints load as
they are. Its parameters live under ``mask_branch.`` (:data:`MASK_BRANCH_PREFIX`).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor, nn

from fabricnms.model.backbone import Backbone
from fabricnms.model.head import DenseHead, distances_to_boxes
from fabricnms.model.losses import DetectionLoss, LossWeights
from fabricnms.model.mask_head import MaskBranch
from fabricnms.model.matching import MatchingConfig
from fabricnms.model.neck import PANNeck
from fabricnms.model.types import DenseOutput

INPUT_MULTIPLE = 32
#: Fixed input normalisation ``(x - MEAN) / STD`` (fabric is grey-ish; no ImageNet statistics
#: apply). :func:`fabricnms.model.fuse.inference_copy` folds it into the stem convolution.
INPUT_MEAN = 0.5
INPUT_STD = 0.25
#: State-dict prefix of the mask branch's parameters.
MASK_BRANCH_PREFIX = "mask_branch."


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
        mask_prototypes: prototypes ``P`` of the mask branch (stride-4 prototypes from the
            stride-8 level through ``neck_channels``-wide convs, coefficients at every
            location); 0 = no mask branch.
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
        mask_prototypes: int = 0,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if mask_prototypes < 0:
            raise ValueError(f"mask_prototypes must be >= 0, got {mask_prototypes}")
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
            "mask_prototypes": mask_prototypes,
        }
        self.normalise = InputNorm()
        self.backbone = Backbone(width, depth)
        self.neck = PANNeck(self.backbone.channels, strides, neck_channels)
        self.head = DenseHead(neck_channels, num_classes, embed_dim, strides, head_depth)
        self.mask_branch = (
            MaskBranch(neck_channels, strides, mask_prototypes, hidden=neck_channels)
            if mask_prototypes
            else None
        )
        self.criterion = DetectionLoss(match_cfg, weights)
        self.detector_frozen = False
        self._grid_cache: dict[tuple[Any, ...], tuple[Tensor, Tensor]] = {}

    def forward(self, images: Tensor) -> DenseOutput:
        """Dense predictions for ``images [B, 3, H, W]`` float RGB in [0, 1]."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
        h, w = int(images.shape[2]), int(images.shape[3])
        if h % INPUT_MULTIPLE or w % INPUT_MULTIPLE:
            raise ValueError(f"input size {h}x{w} must be a multiple of {INPUT_MULTIPLE}")
        points, strides = self.locations(h, w, images.device, images.dtype)
        proto_stride = 0 if self.mask_branch is None else self.mask_branch.stride
        return dense_output(self.network_outputs(images), points, strides, (h, w), proto_stride)

    def network_outputs(self, images: Tensor) -> dict[str, Tensor]:
        """The network's tensors for ``images [B, 3, H, W]`` (what an exported graph returns):
        ``cls_o2m``/``cls_o2o`` ``[B, L, C]`` logits, ``ltrb`` ``[B, L, 4]`` pixel distances
        from each location, ``quality`` ``[B, L]``, ``embed`` ``[B, L, D]``, and with a mask
        branch ``mask_coeffs`` ``[B, L, P]`` and ``prototypes`` ``[B, P, H/ps, W/ps]``
        (:data:`NETWORK_OUTPUTS` order; locations level-major, row-major)."""
        feats = self.neck(self.backbone(self.normalise(images)))
        levels = self.head(feats)
        out = {
            "cls_o2m": _flatten([lv.cls_o2m for lv in levels]),
            "cls_o2o": _flatten([lv.cls_o2o for lv in levels]),
            "ltrb": _flatten([lv.ltrb for lv in levels]),
            "quality": _flatten([lv.quality for lv in levels]).squeeze(-1),
            "embed": _flatten([lv.embed for lv in levels]),
        }
        if self.mask_branch is not None:
            out["prototypes"], out["mask_coeffs"] = self.mask_branch(feats)
        return out

    def loss(
        self,
        dense: DenseOutput,
        targets: list[dict[str, Tensor]],
        progress: float,
        images: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Loss dict: total under ``"loss"`` plus detached terms.

        Args:
            dense: output of :meth:`forward`.
            targets: per image ``{"boxes": [M, 4] float xyxy pixels of the input,
                "labels": [M] int64 0-based}``; ``M`` may be 0.
            progress: training fraction in [0, 1]; anneals the Sinkhorn ``eps``.
            images: the ``[B, 3, H, W]`` RGB [0, 1] input; with a mask branch it adds the
                box-supervised mask loss (``mask`` term; the images give its colour affinity).
                While the detector is frozen (:meth:`freeze_detector`) only that term is
                computed.
        """
        return self.criterion(dense, targets, progress, images, mask_only=self.detector_frozen)

    def freeze_detector(self) -> None:
        """Train the mask branch alone: every other parameter stops requiring gradients and
        the backbone, neck and head stay in eval mode (BatchNorm statistics frozen) even under
        :meth:`train`. Needs a mask branch."""
        if self.mask_branch is None:
            raise ValueError("freeze_detector needs a mask branch (mask_prototypes > 0)")
        self.detector_frozen = True
        for name, param in self.named_parameters():
            param.requires_grad_(name.startswith(MASK_BRANCH_PREFIX))
        self.train(self.training)

    def train(self, mode: bool = True) -> Detector:
        """``nn.Module.train``, keeping a frozen detector's parts in eval mode."""
        super().train(mode)
        if self.detector_frozen:
            for part in (self.backbone, self.neck, self.head):
                part.eval()
        return self

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
            self._grid_cache = {key: grid_locations(h, w, self.strides, device, dtype)}
        return self._grid_cache[key]

    def complexity(self, height: int = 1024, width: int = 1024) -> dict[str, Any]:
        """Parameter counts per part and forward FLOPs (one multiply-add = 2 FLOPs) at ``HxW``.

        Counted with :class:`torch.utils.flop_counter.FlopCounterMode` on a batch of one in
        eval mode; the model's train/eval state is restored afterwards.
        """
        from torch.utils.flop_counter import FlopCounterMode

        parts = {
            name: sum(p.numel() for p in getattr(self, name).parameters())
            for name in ("backbone", "neck", "head", "mask_branch")
            if getattr(self, name) is not None
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


#: Keys of :meth:`Detector.network_outputs`, in the order of an exported graph's outputs.
NETWORK_OUTPUTS = ("cls_o2m", "cls_o2o", "ltrb", "quality", "embed")
#: The mask branch's further outputs.
MASK_OUTPUTS = ("mask_coeffs", "prototypes")


def grid_locations(
    h: int,
    w: int,
    strides: tuple[int, ...],
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """Location centres ``[L, 2]`` (x, y) pixels and strides ``[L]`` of an ``h x w`` input,
    level-major (``strides`` ascending), row-major."""
    pts, strd = [], []
    for s in strides:
        ys, xs = torch.meshgrid(
            (torch.arange(h // s, device=device, dtype=dtype) + 0.5) * s,
            (torch.arange(w // s, device=device, dtype=dtype) + 0.5) * s,
            indexing="ij",
        )
        pts.append(torch.stack([xs, ys], dim=-1).reshape(-1, 2))
        strd.append(torch.full((xs.numel(),), float(s), device=device, dtype=dtype))
    return torch.cat(pts), torch.cat(strd)


def dense_output(
    tensors: dict[str, Tensor],
    points: Tensor,
    strides: Tensor,
    image_size: tuple[int, int],
    proto_stride: int = 0,
) -> DenseOutput:
    """:class:`DenseOutput` from :meth:`Detector.network_outputs` tensors (a torch model's or
    an exported graph's) and the input's :func:`grid_locations`; ``ltrb`` -> xyxy boxes."""
    return DenseOutput(
        cls_o2m=tensors["cls_o2m"],
        cls_o2o=tensors["cls_o2o"],
        boxes=distances_to_boxes(points, tensors["ltrb"]),
        quality=tensors["quality"],
        embed=tensors["embed"],
        points=points,
        strides=strides,
        image_size=image_size,
        mask_coeffs=tensors.get("mask_coeffs"),
        prototypes=tensors.get("prototypes"),
        proto_stride=proto_stride if "prototypes" in tensors else 0,
    )


class InputNorm(nn.Module):
    """``(x - INPUT_MEAN) / INPUT_STD``, elementwise (no parameters, no state-dict keys)."""

    def forward(self, x: Tensor) -> Tensor:
        return (x - INPUT_MEAN) / INPUT_STD


def _flatten(maps: list[Tensor]) -> Tensor:
    """``[B, K, h_l, w_l]`` per level -> ``[B, sum_l h_l w_l, K]``."""
    return torch.cat([m.flatten(2).transpose(1, 2) for m in maps], dim=1)
