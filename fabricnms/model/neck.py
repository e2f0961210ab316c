"""FPN + PAN neck on depthwise-separable convolutions.

Takes the backbone's ``{stride: [B, C_s, H/s, W/s]}`` and returns ``{stride: [B, c, H/s, W/s]}``
with one channel count ``c`` for the requested strides. Every level from the finest requested
stride up to 32 takes part in the top-down (semantics to fine levels) and the bottom-up (precise
localisation to coarse levels) paths.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from fabricnms.model.backbone import ConvBNAct, DWSepConv

SUPPORTED_STRIDES = (4, 8, 16, 32)


class PANNeck(nn.Module):
    """Top-down then bottom-up fusion; sums (not concatenations) keep the cost low.

    Args:
        in_channels: backbone channels per stride.
        strides: output strides, a subset of (4, 8, 16, 32).
        channels: output channels of every level.
    """

    def __init__(
        self, in_channels: dict[int, int], strides: tuple[int, ...], channels: int
    ) -> None:
        super().__init__()
        if not strides or any(s not in SUPPORTED_STRIDES for s in strides):
            raise ValueError(f"strides must be a subset of {SUPPORTED_STRIDES}, got {strides}")
        self.out_strides = tuple(sorted(strides))
        self.levels = tuple(s for s in SUPPORTED_STRIDES if s >= self.out_strides[0])
        self.lateral = nn.ModuleDict(
            {str(s): ConvBNAct(in_channels[s], channels, 1) for s in self.levels}
        )
        self.top_down = nn.ModuleDict(
            {str(s): DWSepConv(channels, channels) for s in self.levels[:-1]}
        )
        self.down = nn.ModuleDict(
            {str(s): ConvBNAct(channels, channels, 3, 2, groups=channels) for s in self.levels[:-1]}
        )
        self.bottom_up = nn.ModuleDict(
            {str(s): DWSepConv(channels, channels) for s in self.levels[1:]}
        )

    def forward(self, feats: dict[int, Tensor]) -> dict[int, Tensor]:
        lat = {s: self.lateral[str(s)](feats[s]) for s in self.levels}
        td: dict[int, Tensor] = {self.levels[-1]: lat[self.levels[-1]]}
        for s in reversed(self.levels[:-1]):
            up = F.interpolate(td[2 * s], size=lat[s].shape[-2:], mode="nearest")
            td[s] = self.top_down[str(s)](lat[s] + up)
        out: dict[int, Tensor] = {self.levels[0]: td[self.levels[0]]}
        for s in self.levels[1:]:
            out[s] = self.bottom_up[str(s)](td[s] + self.down[str(s // 2)](out[s // 2]))
        return {s: out[s] for s in self.out_strides}
