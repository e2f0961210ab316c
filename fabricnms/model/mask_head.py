"""Prototype mask branch (YOLACT style): shared prototypes + per-location coefficients.

A detection's mask logits are ``sum_p c_p * proto_p`` restricted to its box. Nothing here ever
holds a ``K x H x W`` tensor: boxes are resampled to a fixed ``S x S`` grid
(:func:`roi_sample`, bilinear via ``grid_sample``; no torchvision), and
:func:`paste_masks` returns per-box crops (or COCO RLE straight from the crops).

Conventions: boxes are ``xyxy`` in absolute pixels of the network input (for the branch) or
of the frame (for pasting); a map at stride ``s`` covers input pixels ``[j s, (j + 1) s)`` with
its cell ``j``; grid cell ``(i, j)`` of an ``S x S`` box grid covers the box fraction
``[j / S, (j + 1) / S) x [i / S, (i + 1) / S)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fabricnms.model.backbone import ConvBNAct

#: Default side of the per-detection grid.
MASK_SIZE = 28


class ProtoNet(nn.Module):
    """Prototypes from one FPN level: ``[B, C, H/s_in, W/s_in] -> [B, P, H/s, W/s]``.

    ``s = in_stride / upsample`` (e.g. stride 8 in, stride 4 out). The output is linear (no
    activation): coefficients may mix prototypes with either sign.
    """

    def __init__(
        self,
        in_channels: int,
        in_stride: int = 8,
        num_protos: int = 8,
        hidden: int = 64,
        upsample: int = 2,
    ) -> None:
        super().__init__()
        if in_stride % upsample:
            raise ValueError(f"upsample {upsample} must divide in_stride {in_stride}")
        self.stride = in_stride // upsample
        self.num_protos = num_protos
        self.body = nn.Sequential(ConvBNAct(in_channels, hidden, 3), ConvBNAct(hidden, hidden, 3))
        self.upsample = upsample
        self.tail = ConvBNAct(hidden, hidden, 3)
        self.out = nn.Conv2d(hidden, num_protos, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.body(x)
        if self.upsample > 1:
            x = F.interpolate(x, scale_factor=self.upsample, mode="bilinear", align_corners=False)
        return self.out(self.tail(x))


class CoeffHead(nn.Module):
    """Mask coefficients per location: ``{stride: [B, C, h, w]} -> [B, L, P]`` in ``(-1, 1)``.

    Locations are flattened level-major (ascending stride) then row-major, the order of
    :class:`~fabricnms.model.types.DenseOutput`'s ``L`` axis.
    """

    def __init__(self, channels: int, num_protos: int, strides: tuple[int, ...]) -> None:
        super().__init__()
        self.strides = tuple(sorted(strides))
        self.levels = nn.ModuleDict(
            {str(s): nn.Conv2d(channels, num_protos, 3, padding=1) for s in self.strides}
        )

    def forward(self, feats: dict[int, Tensor]) -> Tensor:
        maps = [self.levels[str(s)](feats[s]) for s in self.strides]
        return torch.tanh(torch.cat([m.flatten(2).transpose(1, 2) for m in maps], dim=1))


class MaskBranch(nn.Module):
    """:class:`ProtoNet` on the finest neck level + :class:`CoeffHead` on every level.

    ``forward(feats {stride: [B, C, H/s, W/s]}) -> (protos [B, P, H/ps, W/ps], coeffs [B, L, P])``
    with ``ps = self.stride`` (``proto_stride``, half the finest stride by default).
    """

    def __init__(
        self,
        channels: int,
        strides: tuple[int, ...],
        num_protos: int = 8,
        proto_stride: int | None = None,
        hidden: int = 64,
    ) -> None:
        super().__init__()
        finest = min(strides)
        proto_stride = proto_stride or max(finest // 2, 1)
        self.finest = finest
        self.protonet = ProtoNet(channels, finest, num_protos, hidden, finest // proto_stride)
        self.coeffs = CoeffHead(channels, num_protos, tuple(strides))
        self.stride = self.protonet.stride

    def forward(self, feats: dict[int, Tensor]) -> tuple[Tensor, Tensor]:
        return self.protonet(feats[self.finest]), self.coeffs(feats)


def roi_sample(
    maps: Tensor, boxes: Tensor, stride: float, size: int = MASK_SIZE, samples: int = 2
) -> Tensor:
    """Bilinear RoI resampling of ``maps [C, h, w]`` at ``boxes [K, 4]`` -> ``[K, C, S, S]``.

    ``boxes`` are xyxy pixels of the input the map was computed from at ``stride`` (use
    ``stride=1`` for the image itself). Each grid cell averages ``samples x samples`` bilinear
    samples (RoIAlign-like, so a 2446 px box on a 28 grid does not alias); samples outside the
    map read 0. One ``grid_sample`` call on the single map: no per-box copy of ``maps``.
    """
    if maps.dim() != 3 or boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"need maps [C, h, w] and boxes [K, 4], got {maps.shape}, {boxes.shape}")
    c, h, w = maps.shape
    k = boxes.shape[0]
    n = size * samples
    frac = (torch.arange(n, device=maps.device, dtype=maps.dtype) + 0.5) / n  # [n]
    x1, y1, x2, y2 = boxes.to(maps.dtype).unbind(-1)
    xs = x1[:, None] + frac[None] * (x2 - x1)[:, None]  # [K, n] input pixels
    ys = y1[:, None] + frac[None] * (y2 - y1)[:, None]
    gx = xs / (w * stride) * 2.0 - 1.0  # align_corners=False: -1 / +1 are the outer edges
    gy = ys / (h * stride) * 2.0 - 1.0
    grid = torch.stack(
        [gx[:, None, :].expand(k, n, n), gy[:, :, None].expand(k, n, n)], dim=-1
    )  # [K, n, n, 2]
    out = F.grid_sample(
        maps[None], grid.reshape(1, k * n, n, 2), mode="bilinear", align_corners=False
    )  # [1, C, K n, n]
    out = out.view(c, k, n, n).transpose(0, 1)  # [K, C, n, n]
    return F.avg_pool2d(out, samples) if samples > 1 else out


def assemble_masks(
    protos: Tensor,
    coeffs: Tensor,
    boxes: Tensor,
    stride: float,
    size: int = MASK_SIZE,
    samples: int = 2,
) -> Tensor:
    """Mask logits of ``K`` detections on their box grids: ``[K, S, S]``.

    Args:
        protos: ``[P, h, w]`` prototypes of one image at ``stride``.
        coeffs: ``[K, P]`` coefficients of the detections.
        boxes: ``[K, 4]`` xyxy input pixels, the region each grid covers.
    """
    if coeffs.shape[0] == 0:
        return protos.new_zeros(0, size, size)
    sampled = roi_sample(protos, boxes, stride, size, samples)  # [K, P, S, S]
    return torch.einsum("kp,kpij->kij", coeffs.to(sampled.dtype), sampled)


@dataclass
class MaskCrops:
    """Binary masks of ``K`` detections as crops placed in a ``height x width`` frame.

    offsets: ``[K, 2]`` int64 ``(x0, y0)`` frame pixel of each crop's top-left cell.
    crops: ``K`` bool tensors ``[h_k, w_k]`` (``h_k`` or ``w_k`` may be 0).
    """

    offsets: Tensor
    crops: list[Tensor]
    height: int
    width: int

    def __len__(self) -> int:
        return len(self.crops)

    def select(self, index: Tensor) -> MaskCrops:
        """The masks at ``index`` (``[K']`` int64 or ``[K]`` bool)."""
        idx = torch.arange(len(self.crops))[index.cpu()].tolist()
        return MaskCrops(
            self.offsets[idx].reshape(-1, 2), [self.crops[i] for i in idx], self.height, self.width
        )

    def area(self) -> Tensor:
        """``[K]`` int64 mask area in frame pixels."""
        return torch.tensor([int(c.sum()) for c in self.crops], dtype=torch.long)

    def tight_boxes(self) -> Tensor:
        """``[K, 4]`` float xyxy pixel-edge bounds of each mask (zeros for an empty mask)."""
        out = torch.zeros(len(self.crops), 4)
        for k, crop in enumerate(self.crops):
            if crop.any():
                rows = torch.nonzero(crop.any(1)).flatten()
                cols = torch.nonzero(crop.any(0)).flatten()
                x0, y0 = (int(v) for v in self.offsets[k])
                out[k] = torch.tensor(
                    [x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1]
                ).float()
        return out

    def full(self, k: int) -> Tensor:
        """The ``[height, width]`` bool mask of detection ``k`` (one at a time)."""
        out = torch.zeros(self.height, self.width, dtype=torch.bool)
        crop = self.crops[k].cpu()
        x0, y0 = (int(v) for v in self.offsets[k])
        out[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
        return out

    def to_rle(self) -> list[dict[str, Any]]:
        """COCO RLEs ``{"size": [height, width], "counts": str}``, built from the crops."""
        return [self._rle(k) for k in range(len(self.crops))]

    def _rle(self, k: int) -> dict[str, Any]:
        import numpy as np
        from pycocotools import mask as mask_utils

        crop = self.crops[k].cpu().numpy().astype(np.int8)
        x0, y0 = (int(v) for v in self.offsets[k])
        bounds = np.zeros(0, dtype=np.int64)
        if crop.any():
            # column-major (COCO) order: pad every column with a 0 above and below, find the
            # 0->1 (start) and 1->0 (end) transitions, and map them to frame linear indices;
            # they alternate start, end (exclusive) run by run
            cols = np.pad(crop.T, ((0, 0), (1, 1)))  # [w, h + 2]
            col, row = np.nonzero(np.diff(cols, axis=1))  # ordered by column then row
            bounds = (x0 + col).astype(np.int64) * self.height + y0 + row
            touching = bounds[1:-1:2] == bounds[2::2]  # a run ends where the next one starts
            keep = np.ones(bounds.size, dtype=bool)
            keep[1:-1:2] = ~touching
            keep[2::2] = ~touching
            bounds = bounds[keep]
        counts = np.diff(np.concatenate([[0], bounds, [self.height * self.width]])).tolist()
        size = [self.height, self.width]
        rle = mask_utils.frPyObjects({"size": size, "counts": counts}, *size)
        return {"size": size, "counts": rle["counts"].decode("ascii")}


def paste_masks(
    mask_probs: Tensor, boxes: Tensor, height: int, width: int, threshold: float = 0.5
) -> MaskCrops:
    """Paste ``[K, S, S]`` box-grid probabilities back into a ``height x width`` frame.

    ``boxes [K, 4]`` are the xyxy frame pixels each grid covers. A frame pixel belongs to a
    crop when its centre lies inside the box; its probability is the bilinear sample of the
    grid at that centre (edge cells extend to the box border), and it is set when ``>
    threshold``. Cost is proportional to the boxes' areas, never ``K x height x width``.
    """
    k = mask_probs.shape[0]
    offsets = torch.zeros(k, 2, dtype=torch.long)
    crops: list[Tensor] = []
    cpu_boxes = boxes.detach().double().cpu()
    for i in range(k):
        bx1, by1, bx2, by2 = (float(v) for v in cpu_boxes[i])
        x0 = min(max(math.floor(bx1), 0), width)
        y0 = min(max(math.floor(by1), 0), height)
        x1 = max(min(math.ceil(bx2), width), x0)
        y1 = max(min(math.ceil(by2), height), y0)
        offsets[i, 0], offsets[i, 1] = x0, y0
        if x1 == x0 or y1 == y0 or bx2 <= bx1 or by2 <= by1:
            crops.append(torch.zeros(y1 - y0, x1 - x0, dtype=torch.bool))
            continue
        dev, dt = mask_probs.device, mask_probs.dtype
        u = ((torch.arange(x0, x1, device=dev, dtype=dt) + 0.5) - bx1) / (bx2 - bx1) * 2 - 1
        v = ((torch.arange(y0, y1, device=dev, dtype=dt) + 0.5) - by1) / (by2 - by1) * 2 - 1
        grid = torch.stack(torch.broadcast_tensors(u[None, :], v[:, None]), dim=-1)
        sampled = F.grid_sample(
            mask_probs[i][None, None],
            grid[None],
            mode="bilinear",
            padding_mode="border",
            align_corners=False,
        )[0, 0]
        inside = (u.abs() <= 1)[None, :] & (v.abs() <= 1)[:, None]
        crops.append(((sampled > threshold) & inside).cpu())
    return MaskCrops(offsets=offsets, crops=crops, height=height, width=width)
