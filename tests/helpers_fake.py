"""A fake detector for tests of tiled inference: the box around a window's dark pixels is one
defect (class 0) that every stride-8 location inside it predicts; the location nearest its
centre carries the one-to-one score. A line crossing windows therefore reaches the suppression
as one fragment per window, each with its own hypothesis."""

from __future__ import annotations

import torch
from torch import nn

from fabricnms.model.types import DenseOutput

STRIDE = 8


class DarkBoxDetector(nn.Module):
    """Fake detector: one defect per window, the box around its dark (< 0.2) pixels."""

    def forward(self, images: torch.Tensor) -> DenseOutput:
        b, _, h, w = images.shape
        ys, xs = torch.meshgrid(
            (torch.arange(h // STRIDE) + 0.5) * STRIDE,
            (torch.arange(w // STRIDE) + 0.5) * STRIDE,
            indexing="ij",
        )
        points = torch.stack([xs, ys], dim=-1).reshape(-1, 2)
        n = points.shape[0]
        o2m = torch.full((b, n, 1), -9.0)
        o2o = torch.full((b, n, 1), -9.0)
        quality = torch.full((b, n), -9.0)
        boxes = torch.cat([points - 2, points + 2], dim=1).expand(b, n, 4).clone()
        for i in range(b):
            yy, xx = (images[i].mean(0) < 0.2).nonzero(as_tuple=True)
            if len(yy) == 0:
                continue
            box = torch.stack([xx.min(), yy.min(), xx.max() + 1, yy.max() + 1]).float()
            inside = (points >= box[:2]).all(1) & (points <= box[2:]).all(1)
            o2m[i, inside], quality[i, inside], boxes[i, inside] = 5.0, 5.0, box
            o2o[i, ((points - (box[:2] + box[2:]) / 2) ** 2).sum(1).argmin()] = 5.0
        embed = torch.nn.functional.normalize(torch.ones(b, n, 4), dim=-1)
        strides = torch.full((n,), float(STRIDE))
        return DenseOutput(o2m, o2o, boxes, quality, embed, points, strides, (h, w))
