"""Compact CSP backbone trained from scratch (BatchNorm + SiLU).

Feature maps are ``[B, C, H/s, W/s]`` for strides ``s`` in 4, 8, 16, 32. Channels grow as
``width * (2, 4, 8, 16)``; the stride-32 stage ends in a context block with square and axial
(row / column) max pooling, so a location on a warp or weft line sees the line's extent far
beyond the 3x3 receptive field.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ConvBNAct(nn.Sequential):
    """``k x k`` convolution (optionally depthwise), BatchNorm, SiLU; padding keeps ``H/stride``."""

    def __init__(
        self, c_in: int, c_out: int, k: int = 3, stride: int = 1, groups: int = 1, act: bool = True
    ) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
            nn.SiLU(inplace=True) if act else nn.Identity(),
        )


class DWSepConv(nn.Sequential):
    """Depthwise ``3x3`` (with ``stride``) then pointwise ``1x1``, each with BN + SiLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__(ConvBNAct(c_in, c_in, 3, stride, groups=c_in), ConvBNAct(c_in, c_out, 1))


class Bottleneck(nn.Module):
    """Residual ``3x3 -> 3x3`` block at constant channel count ``c``."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(c, c, 3)
        self.conv2 = ConvBNAct(c, c, 3)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.conv1(x))


class CSPBlock(nn.Module):
    """Cross-stage-partial block: half the channels go through ``n`` bottlenecks, half bypass."""

    def __init__(self, c_in: int, c_out: int, n: int = 1) -> None:
        super().__init__()
        hidden = c_out // 2
        self.main = ConvBNAct(c_in, hidden, 1)
        self.bypass = ConvBNAct(c_in, hidden, 1)
        self.blocks = nn.Sequential(*(Bottleneck(hidden) for _ in range(n)))
        self.fuse = ConvBNAct(2 * hidden, c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fuse(torch.cat([self.blocks(self.main(x)), self.bypass(x)], dim=1))


class ContextPool(nn.Module):
    """SPPF-style context: cascaded square pools plus cascaded row and column pools.

    Input and output ``[B, c, H, W]``. Three cascaded ``5x5`` max pools cover windows of 5, 9
    and 13 cells; three cascaded ``1 x k`` (and ``k x 1``) pools cover ``k, 2k-1, 3k-2``
    cells along one axis, i.e. +-12 cells (+-384 px at stride 32) for ``k = 9``.
    """

    def __init__(self, c: int, axial_kernel: int = 9) -> None:
        super().__init__()
        hidden = c // 2
        self.reduce = ConvBNAct(c, hidden, 1)
        self.square = nn.MaxPool2d(5, 1, 2)
        k = axial_kernel
        self.rows = nn.MaxPool2d((1, k), 1, (0, k // 2))
        self.cols = nn.MaxPool2d((k, 1), 1, (k // 2, 0))
        self.fuse = ConvBNAct(hidden * 10, c, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.reduce(x)
        feats = [y]
        for pool in (self.square, self.rows, self.cols):
            z = y
            for _ in range(3):
                z = pool(z)
                feats.append(z)
        return self.fuse(torch.cat(feats, dim=1))


class Backbone(nn.Module):
    """Stem + four stride-2 stages; returns ``{stride: [B, C_s, H/s, W/s]}`` for ``s`` 4..32.

    Args:
        width: base channel count; stage channels are ``width * (2, 4, 8, 16)`` at strides
            4, 8, 16, 32.
        depth: bottlenecks per CSP block (stride 8, 16 and 32 stages; stride 4 has none, as a
            3x3 block at stride 4 would cost as much as the rest of the network).
    """

    def __init__(self, width: int = 16, depth: int = 1) -> None:
        super().__init__()
        c2, c4, c8, c16, c32 = width, 2 * width, 4 * width, 8 * width, 16 * width
        self.channels = {4: c4, 8: c8, 16: c16, 32: c32}
        self.stem = ConvBNAct(3, c2, 3, 2)
        self.stage4 = ConvBNAct(c2, c4, 3, 2)
        self.stage8 = nn.Sequential(ConvBNAct(c4, c8, 3, 2), CSPBlock(c8, c8, depth))
        self.stage16 = nn.Sequential(ConvBNAct(c8, c16, 3, 2), CSPBlock(c16, c16, depth))
        self.stage32 = nn.Sequential(
            ConvBNAct(c16, c32, 3, 2), CSPBlock(c32, c32, depth), ContextPool(c32)
        )

    def forward(self, x: Tensor) -> dict[int, Tensor]:
        f4 = self.stage4(self.stem(x))
        f8 = self.stage8(f4)
        f16 = self.stage16(f8)
        f32 = self.stage32(f16)
        return {4: f4, 8: f8, 16: f16, 32: f32}
