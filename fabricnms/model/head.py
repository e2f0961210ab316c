"""Anchor-free dense head (FCOS / YOLOX style), one per FPN level.

Per location it predicts class logits for a one-to-many and a one-to-one branch, box distances
``ltrb`` (left, top, right, bottom, pixels from the location to the box sides), an IoU-quality
logit and an L2-normalised embedding. The two classification branches have their own towers;
box, quality and embedding share the regression tower (the one-to-one branch reuses its boxes).
The one-to-one tower also sees the (detached) predicted ``log(ltrb / stride)``: where left and
right (top and bottom) distances agree the location sits at the defect's centre, which is the
cue that picks one location along a uniform warp or weft line.

Box parameterisation: ``ltrb = exp(clamp(t * scale, max=LOG_LTRB_MAX)) * stride`` with a
learnable per-level ``scale``; ``exp`` spans the 1:80 range of a fabric box's sides in strides
(15 px at stride 8 up to 2446 px at stride 32), and ``t = log(ltrb / stride)`` decodes exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fabricnms.model.backbone import DWSepConv

PRIOR_PROB = 0.01
LOG_LTRB_MAX = 8.0  # exp(8) = 2981 strides: far beyond any frame, guards against overflow


@dataclass
class LevelOutput:
    """Raw outputs of one level, channels first: ``cls_o2m``/``cls_o2o`` ``[B, C, h, w]``,
    ``ltrb`` ``[B, 4, h, w]`` in pixels, ``quality`` ``[B, 1, h, w]`` logits, ``embed``
    ``[B, D, h, w]`` unit vectors."""

    cls_o2m: Tensor
    cls_o2o: Tensor
    ltrb: Tensor
    quality: Tensor
    embed: Tensor


def decode_ltrb(t: Tensor, stride: float | Tensor) -> Tensor:
    """Raw box output ``t`` (any shape) -> distances ``exp(min(t, LOG_LTRB_MAX)) * stride`` px."""
    return t.clamp(max=LOG_LTRB_MAX).exp() * stride


def encode_ltrb(ltrb: Tensor, stride: float | Tensor) -> Tensor:
    """Inverse of :func:`decode_ltrb` for distances ``ltrb > 0`` in pixels."""
    return (ltrb / stride).log()


def distances_to_boxes(points: Tensor, ltrb: Tensor) -> Tensor:
    """``points [..., 2]`` (x, y) and ``ltrb [..., 4]`` px -> ``[..., 4]`` xyxy boxes."""
    return torch.cat([points - ltrb[..., :2], points + ltrb[..., 2:]], dim=-1)


def _tower(channels: int, depth: int) -> nn.Sequential:
    return nn.Sequential(*(DWSepConv(channels, channels) for _ in range(depth)))


class LevelHead(nn.Module):
    """Head for one FPN level with stride ``stride``; input ``[B, channels, h, w]``."""

    def __init__(
        self, channels: int, num_classes: int, embed_dim: int, stride: int, depth: int = 2
    ) -> None:
        super().__init__()
        self.stride = stride
        self.cls_tower = _tower(channels, depth)
        self.o2o_tower = _tower(channels, depth)
        self.reg_tower = _tower(channels, depth)
        self.cls_o2m = nn.Conv2d(channels, num_classes, 1)
        self.cls_o2o = nn.Conv2d(channels, num_classes, 1)
        self.box = nn.Conv2d(channels, 4, 1)
        self.quality = nn.Conv2d(channels, 1, 1)
        self.embed = nn.Conv2d(channels, embed_dim, 1)
        self.box_to_o2o = nn.Conv2d(4, channels, 1)
        self.scale = nn.Parameter(torch.ones(()))
        self._init_bias()

    def _init_bias(self) -> None:
        prior = -math.log((1.0 - PRIOR_PROB) / PRIOR_PROB)
        for conv in (self.cls_o2m, self.cls_o2o, self.quality):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.constant_(conv.bias, prior)
        nn.init.normal_(self.box.weight, std=0.01)
        nn.init.constant_(self.box.bias, math.log(2.0))  # 2 strides per side at start

    def forward(self, x: Tensor) -> LevelOutput:
        cls_feat = self.cls_tower(x)
        reg_feat = self.reg_tower(x)
        t = self.box(reg_feat) * self.scale
        o2o_feat = self.o2o_tower(x + self.box_to_o2o(t.detach().clamp(max=LOG_LTRB_MAX)))
        return LevelOutput(
            cls_o2m=self.cls_o2m(cls_feat),
            cls_o2o=self.cls_o2o(o2o_feat),
            ltrb=decode_ltrb(t, self.stride),
            quality=self.quality(reg_feat),
            embed=F.normalize(self.embed(reg_feat), dim=1),
        )


class DenseHead(nn.Module):
    """One :class:`LevelHead` per stride (BatchNorm statistics differ between levels)."""

    def __init__(
        self,
        channels: int,
        num_classes: int,
        embed_dim: int,
        strides: tuple[int, ...],
        depth: int = 2,
    ) -> None:
        super().__init__()
        self.strides = tuple(strides)
        self.levels = nn.ModuleList(
            LevelHead(channels, num_classes, embed_dim, s, depth) for s in self.strides
        )

    def forward(self, feats: dict[int, Tensor]) -> list[LevelOutput]:
        return [head(feats[s]) for s, head in zip(self.strides, self.levels, strict=True)]
