"""Masks of a frame's final detections: stitched prototypes, assembly, refinement, pasting.

Tiled inference runs the prototype branch once per tile, but a detection (a warp line) may
span several tiles. :class:`ProtoMosaic` therefore stitches the tiles' prototypes into one
frame-level map at the prototype stride: every frame cell takes its prototypes from the tile
in which it lies deepest, i.e. farthest from any tile side that is not a frame edge (where a
convolution sees the least padding; with a regular tile grid this is the tile whose centre
region contains the cell). Each detection's mask is then assembled from that map over its
box, wherever its rows came from; its coefficients are the fused ones of the suppression
(DNMS: plan x quality weighted mean of its rows; greedy / soft / none: the kept row's).

:func:`frame_masks` turns the box-grid logits ``z`` (``S x S`` per detection) into binary masks
with the entropy-constrained refinement (:func:`refine_detections`, which wraps
:func:`~fabricnms.model.refine.refine_masks`), pastes
them into the frame as per-box crops (:func:`~fabricnms.model.mask_head.paste_masks`) and
reports per detection the mask area in frame pixels and an uncertainty: the mean binary
entropy of the branch's own probabilities ``sigmoid(z)`` over the box, in bits (0 certain,
1 a coin flip). The refined probabilities are not used for it: the entropy constraint pins
their entropy to ``H0``. Memory: the map is ``P x H/s x W/s`` per frame (8 x 250 x 612 floats
for a 2446 x 1000 frame at stride 4), the rest ``K x S x S`` plus the crops; never
``K x H x W``.

**Image terms** (optional, they need the frame): the frame's colour on each box grid
(:func:`box_colours`, CIE-Lab, 2 x 2 bilinear samples per cell of the boxes' union crop) gives

- contrast-sensitive TV weights ``exp(-||c_a - c_b||^2 / (2 edge_sigma^2))``
  (:func:`~fabricnms.model.refine_ops.contrast_weights`; ``edge_sigma = 0``: plain TV), and
- a colour unary ``z = z_branch + kappa * z_colour`` with ``z_colour = ||c - c_border|| /
  colour_scale - 1`` (:func:`colour_logits`): cells whose colour differs from the median colour
  of the box's one-cell border ring by more than ``colour_scale`` lean to defect
  (``kappa = 0``: off).

Boxes are ``xyxy`` frame pixels.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from fabricnms.errors import FabricError
from fabricnms.model.mask_head import (
    MASK_SIZE,
    MaskCrops,
    assemble_masks,
    paste_masks,
    roi_sample,
)
from fabricnms.model.mask_losses import rgb_to_lab
from fabricnms.model.refine import DEFAULT_H0, RefineResult, refine_masks
from fabricnms.model.refine_ops import LN2, binary_entropy_from_logits, contrast_weights
from fabricnms.model.types import Detections

#: Default weight of the total variation in the refinement.
DEFAULT_LAMBDA_TV = 0.5
#: Default Charbonnier smoothing of the TV (``delta`` of :func:`refine_masks`).
DEFAULT_TV_SMOOTH = 0.01
#: Default colour scale (CIE-Lab units) of the contrast-sensitive TV weights; 0 = plain TV.
DEFAULT_EDGE_SIGMA = 0.0
#: Default weight of the colour unary; 0 = off.
DEFAULT_COLOUR_KAPPA = 0.0
#: Default Lab distance from the border colour at which the colour unary is 0.
DEFAULT_COLOUR_SCALE = 10.0


@dataclass(frozen=True)
class MaskSettings:
    """Refinement settings: target mean entropy ``h0`` (nats per cell), TV weight
    ``lambda_tv`` (0: the closed form, i.e. the branch's own mask), Frank-Wolfe ``iters``, the
    box grid side ``size``, the TV's Charbonnier smoothing ``tv_smooth``, the contrast scale
    ``edge_sigma`` of the TV weights (Lab units, 0: plain TV) and the colour unary's weight
    ``colour_kappa`` (0: off) and ``colour_scale``."""

    h0: float = DEFAULT_H0
    lambda_tv: float = DEFAULT_LAMBDA_TV
    iters: int = 20
    size: int = MASK_SIZE
    tv_smooth: float = DEFAULT_TV_SMOOTH
    edge_sigma: float = DEFAULT_EDGE_SIGMA
    colour_kappa: float = DEFAULT_COLOUR_KAPPA
    colour_scale: float = DEFAULT_COLOUR_SCALE

    @property
    def uses_image(self) -> bool:
        """Whether the refinement reads the frame's colours."""
        return (self.edge_sigma > 0 and self.lambda_tv > 0) or self.colour_kappa != 0


class ProtoMosaic:
    """Frame-level prototypes ``[P, ceil(H / s), ceil(W / s)]`` stitched from tiles.

    Cell ``(i, j)`` covers frame pixels ``[j s, (j + 1) s) x [i s, (i + 1) s)``; its centre,
    clamped into the frame, decides which tiles contain it.
    """

    def __init__(
        self,
        width: int,
        height: int,
        stride: int,
        num_protos: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.width, self.height, self.stride = width, height, stride
        rows, cols = math.ceil(height / stride), math.ceil(width / stride)
        self.protos = torch.zeros(num_protos, rows, cols, device=device, dtype=dtype)
        self._depth = torch.full((rows, cols), -math.inf, device=device, dtype=dtype)
        self._cx = ((torch.arange(cols, device=device, dtype=dtype) + 0.5) * stride).clamp(
            max=width - 0.5
        )
        self._cy = ((torch.arange(rows, device=device, dtype=dtype) + 0.5) * stride).clamp(
            max=height - 0.5
        )

    def add(
        self,
        protos: Tensor,
        window: tuple[int, int, int, int],
        scale: tuple[float, float] = (1.0, 1.0),
    ) -> None:
        """Stitch in the prototypes ``[P, h, w]`` (same stride) of the tile at ``window``.

        ``window`` is ``(x0, y0, x1, y1)`` frame pixels (exclusive end); the map may cover
        more than the window (padding), only cells inside the window are taken. ``scale`` is
        the tile's stretch ``(sx, sy)``: network-input pixels per frame pixel.
        """
        x0, y0, x1, y1 = window
        cols = torch.nonzero((self._cx >= x0) & (self._cx < x1)).flatten()
        rows = torch.nonzero((self._cy >= y0) & (self._cy < y1)).flatten()
        if cols.numel() == 0 or rows.numel() == 0:
            return
        j0, j1 = int(cols[0]), int(cols[-1]) + 1
        i0, i1 = int(rows[0]), int(rows[-1]) + 1
        u, v = self._cx[j0:j1] - x0, self._cy[i0:i1] - y0  # tile pixels (frame scale)
        su, sv = u * scale[0], v * scale[1]  # network-input pixels
        h, w = protos.shape[-2:]
        grid = torch.stack(
            torch.broadcast_tensors(
                (su / (w * self.stride) * 2 - 1)[None, :],
                (sv / (h * self.stride) * 2 - 1)[:, None],
            ),
            dim=-1,
        )
        sampled = F.grid_sample(
            protos[None].to(self.protos.dtype),
            grid[None],
            mode="bilinear",
            padding_mode="border",
            align_corners=False,
        )[0]
        depth = torch.minimum(
            _side_distance(u, x1 - x0, x0 > 0, x1 < self.width)[None, :],
            _side_distance(v, y1 - y0, y0 > 0, y1 < self.height)[:, None],
        )
        better = depth > self._depth[i0:i1, j0:j1]
        region = self.protos[:, i0:i1, j0:j1]
        self.protos[:, i0:i1, j0:j1] = torch.where(better, sampled, region)
        self._depth[i0:i1, j0:j1] = torch.where(better, depth, self._depth[i0:i1, j0:j1])


def _side_distance(pos: Tensor, length: int, inner_lo: bool, inner_hi: bool) -> Tensor:
    """Distance of tile positions ``pos`` to the nearer tile side that is inside the frame
    (``inf`` when both sides are frame edges)."""
    lo = pos if inner_lo else torch.full_like(pos, math.inf)
    hi = length - pos if inner_hi else torch.full_like(pos, math.inf)
    return torch.minimum(lo, hi)


def require_mask_branch(model: torch.nn.Module, source: str) -> None:
    """A one-line :class:`FabricError` naming ``source`` when ``model`` has no mask branch."""
    if getattr(model, "mask_branch", None) is None:
        raise FabricError(
            f"{source}: the checkpoint has no mask branch; train one with --set masks=true "
            "(add --set freeze_detector=true to keep an existing detector)"
        )


def box_colours(image: np.ndarray, boxes: Tensor, size: int = MASK_SIZE) -> Tensor:
    """CIE-Lab colour of an ``[H, W, 3]`` uint8 RGB frame on each box grid -> ``[K, 3, S, S]``.

    Every cell averages 2 x 2 bilinear samples (:func:`~fabricnms.model.mask_head.roi_sample`)
    of the frame's crop around the union of ``boxes [K, 4]`` (xyxy frame pixels, inside the
    frame), so only that crop is converted to floats.
    """
    height, width = image.shape[:2]
    if boxes.shape[0] == 0:
        return boxes.new_zeros(0, 3, size, size, dtype=torch.float32)
    lo = boxes[:, :2].amin(0).floor().sub(1).clamp(min=0).long().tolist()
    hi = boxes[:, 2:].amax(0).ceil().add(1).long().tolist()
    x0, y0, x1, y1 = lo[0], lo[1], min(hi[0], width), min(hi[1], height)
    crop = torch.from_numpy(np.ascontiguousarray(image[y0:y1, x0:x1])).to(boxes.device)
    # one replicated pixel around the crop: samples within half a pixel of the frame's border
    # interpolate with the border pixel, not with roi_sample's zero padding
    crop = F.pad(crop.permute(2, 0, 1).float().div_(255.0)[None], (1, 1, 1, 1), mode="replicate")[0]
    shift = torch.tensor([x0, y0, x0, y0], dtype=torch.float32, device=boxes.device) - 1.0
    return rgb_to_lab(roi_sample(crop, boxes.float() - shift, 1, size))


def colour_logits(lab: Tensor, scale: float) -> Tensor:
    """Colour unary ``[K, S, S]`` from box-grid colours ``lab [K, 3, S, S]``.

    ``||c - c_border|| / scale - 1``: ``c_border`` is the per-channel median over the grid's
    one-cell border ring (the background around a box-filling defect), so cells whose colour is
    more than ``scale`` away from it are positive.
    """
    ring = torch.ones(lab.shape[-2:], dtype=torch.bool, device=lab.device)
    ring[1:-1, 1:-1] = False
    border = lab[..., ring].median(-1).values  # [K, 3]
    return (lab - border[..., None, None]).norm(dim=1) / scale - 1.0


def refine_detections(
    logits: Tensor, colours: Tensor | None, settings: MaskSettings
) -> RefineResult:
    """Refine the box-grid logits ``[K, S, S]`` with ``settings``; ``colours [K, 3, S, S]``
    (:func:`box_colours`) feed the image terms and are required when ``settings.uses_image``."""
    if colours is None and settings.uses_image:
        raise ValueError("edge_sigma / colour_kappa need the frame's colours")
    z, weights = logits, None
    if colours is not None and settings.colour_kappa != 0:
        z = logits + settings.colour_kappa * colour_logits(colours, settings.colour_scale)
    if colours is not None and settings.edge_sigma > 0:
        weights = contrast_weights(colours, settings.edge_sigma)
    return refine_masks(
        z,
        None,
        settings.h0,
        settings.lambda_tv,
        settings.iters,
        tv_smooth=settings.tv_smooth,
        edge_weights=weights,
    )


def frame_masks(
    det: Detections, mosaic: ProtoMosaic, settings: MaskSettings, image: np.ndarray | None = None
) -> Detections:
    """``det`` with refined masks: ``masks`` (crops in the frame) and ``extra`` entries
    ``mask_area`` ``[K]`` (frame pixels of the mask), ``mask_uncertainty`` ``[K]`` (bits) and
    ``mask_logits`` ``[K, S, S]`` (the branch's logits on each box grid, before refinement).

    ``det.extra["mask_coeffs"]`` ``[K, P]`` must be present unless ``det`` is empty;
    ``image`` (the ``[H, W, 3]`` uint8 RGB frame) is required when ``settings.uses_image``.
    """
    k = len(det)
    if k == 0:
        logits = mosaic.protos.new_zeros(0, settings.size, settings.size)
        crops = MaskCrops(torch.zeros(0, 2, dtype=torch.long), [], mosaic.height, mosaic.width)
        return _with_masks(det, crops, logits, logits.new_zeros(0))
    logits = assemble_masks(
        mosaic.protos, det.extra["mask_coeffs"], det.boxes, mosaic.stride, settings.size
    )
    colours = None
    if settings.uses_image and image is not None:
        colours = box_colours(image, det.boxes, settings.size).to(logits.dtype)
    refined = refine_detections(logits, colours, settings)
    crops = paste_masks(refined.probs, det.boxes, mosaic.height, mosaic.width)
    uncertainty = binary_entropy_from_logits(logits).mean((1, 2)) / LN2
    return _with_masks(det, crops, logits, uncertainty)


def _with_masks(
    det: Detections, crops: MaskCrops, logits: Tensor, uncertainty: Tensor
) -> Detections:
    extra = {
        **det.extra,
        "mask_logits": logits,
        "mask_area": crops.area().to(device=logits.device, dtype=logits.dtype),
        "mask_uncertainty": uncertainty,
    }
    return dataclasses.replace(det, masks=crops, extra=extra)
