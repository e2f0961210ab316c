"""Tiled full-frame inference, shared by ``eval``, training validation and ``predict``.

A frame of any size is cut into overlapping ``tile x tile`` windows (the last window of a row
or column is aligned to the frame border; a frame smaller than the tile is one window), each
window is brought to a multiple of 32 (stretched by at most 10 %, else mirror-padded; see
:func:`network_input`), windows are batched through the detector
(across consecutive frames), :func:`~fabricnms.model.postprocess.select_candidates` runs per
window, the candidates are mapped back to frame coordinates, concatenated per frame and suppressed
ONCE per frame, so a defect crossing a tile border (a long warp line) comes out as one
detection. Output boxes are xyxy frame pixels, labels 0-based. Detections whose centre lies off
the cloth (past the fabric's edge, or in the selvedge band inside it: :mod:`fabricnms.data.cloth`)
are dropped after the suppression; each result carries its frame's cloth region.

With ``TileSettings.masks`` (a detector with a mask branch) each window's prototypes are
stitched into a frame-level map as the windows arrive (:class:`~fabricnms.model.mask_infer.
ProtoMosaic`: a frame cell takes the prototypes of the tile it lies deepest in), and after the
suppression every kept detection's mask is assembled from that map with its fused
coefficients and refined (:func:`~fabricnms.model.mask_infer.frame_masks`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch

from fabricnms.config import EDGE_BAND
from fabricnms.data.cloth import ClothRegion, find_cloth
from fabricnms.data.dataset import pad_to
from fabricnms.errors import FabricError
from fabricnms.model.mask_infer import MaskSettings, ProtoMosaic, frame_masks
from fabricnms.model.nms import NmsSettings
from fabricnms.model.types import Detections

if TYPE_CHECKING:
    from fabricnms.model.postprocess import Candidates

STRIDE_MULTIPLE = 32
#: Largest factor by which :func:`network_input` stretches a window side instead of padding it.
MAX_STRETCH = 1.1


@dataclass(frozen=True)
class TileSettings:
    """Tiling and postprocess settings (pixels of the frame); ``suppression``: the knobs of
    greedy / soft; ``masks``: refine masks with these settings (needs a mask branch),
    ``None``: boxes only; ``edge_band``: find the fabric's edges (:mod:`fabricnms.data.cloth`)
    and drop detections off the cloth or within this many px inside an edge; negative: don't."""

    tile: int = 1024
    overlap: float = 0.2
    batch: int = 4
    nms: str = "dnms"
    conf: float = 0.001
    max_det: int = 300
    max_candidates: int = 1000
    score_floor: float = 0.01
    suppression: NmsSettings = field(default_factory=NmsSettings)
    masks: MaskSettings | None = None
    edge_band: int = EDGE_BAND

    @classmethod
    def from_config(cls, cfg: Any) -> TileSettings:
        """Settings from any config with ``tile, overlap, batch, nms, conf, max_det, iou,
        agnostic, top_classes, vote_iou, masks, edge_band`` fields (``masks`` a bool: default
        :class:`MaskSettings` when true)."""
        return cls(
            tile=cfg.tile,
            overlap=cfg.overlap,
            batch=cfg.batch,
            nms=cfg.nms,
            conf=cfg.conf,
            max_det=cfg.max_det,
            suppression=NmsSettings(
                iou=cfg.iou,
                agnostic=cfg.agnostic,
                top_classes=cfg.top_classes,
                vote_iou=cfg.vote_iou,
            ),
            masks=MaskSettings() if cfg.masks else None,
            edge_band=cfg.edge_band,
        )


def _starts(length: int, tile: int, step: int) -> list[int]:
    if length <= tile:
        return [0]
    count = math.ceil((length - tile) / step) + 1
    starts = [min(i * step, length - tile) for i in range(count)]
    return sorted(set(starts))


def tile_windows(
    width: int, height: int, tile: int, overlap: float
) -> list[tuple[int, int, int, int]]:
    """Windows ``(x0, y0, x1, y1)`` (xyxy frame px, exclusive end) covering the frame.

    Neighbouring windows overlap by at least ``overlap * tile`` pixels; windows never leave
    the frame, so a window is ``min(tile, width) x min(tile, height)``.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"empty frame {width}x{height}")
    step = max(1, round(tile * (1.0 - overlap)))
    tw, th = min(tile, width), min(tile, height)
    return [
        (x0, y0, x0 + tw, y0 + th)
        for y0 in _starts(height, tile, step)
        for x0 in _starts(width, tile, step)
    ]


def padded_size(width: int, height: int) -> tuple[int, int]:
    """``(width, height)`` rounded up to multiples of 32 (what the detector accepts)."""
    up = STRIDE_MULTIPLE
    return -(-width // up) * up, -(-height // up) * up


def network_input(crop: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """``[h, w, 3]`` window -> detector input with sides that are multiples of 32, and its
    stretch ``(sx, sy)`` (input pixels per frame pixel).

    A side is stretched (bilinear) when that enlarges it by at most :data:`MAX_STRETCH`, and
    mirror-padded otherwise: the mirror's fold is a straight seam across the weave that the
    detector reads as a weft or warp line (a 2446x1000 frame padded to 1024 rows gave a
    0.48-score false weft line along the bottom of every frame), while a few per cent of
    stretch is well inside the training scale jitter.
    """
    h, w = crop.shape[:2]
    pw, ph = padded_size(w, h)
    tw = pw if pw <= MAX_STRETCH * w else w
    th = ph if ph <= MAX_STRETCH * h else h
    out = np.ascontiguousarray(crop)
    if (tw, th) != (w, h):
        out = cv2.resize(out, (tw, th), interpolation=cv2.INTER_LINEAR)
    return pad_to(out, ph, pw), (tw / w, th / h)


@dataclass
class _FrameState:
    width: int
    height: int
    pending: int
    candidates: list = field(default_factory=list)
    mosaic: ProtoMosaic | None = None
    image: np.ndarray | None = None  # kept only when the mask refinement reads colours
    cloth: ClothRegion | None = None


def detect_frames(
    model: torch.nn.Module,
    images: Iterable[np.ndarray],
    settings: TileSettings,
    device: torch.device | str = "cpu",
) -> Iterator[Detections]:
    """Detect defects in each ``[H, W, 3]`` uint8 RGB frame; yields one result per frame, in order.

    Streaming: at most one batch of windows and the candidates (and, with masks, the stitched
    prototypes) of unfinished frames are held. ``model`` must be in eval mode; inference runs
    under ``torch.inference_mode``. With ``settings.masks`` a model without a mask branch is a
    :class:`FabricError`.
    """
    from fabricnms.model.postprocess import suppress

    for state, merged in _frame_states(model, images, settings, torch.device(device)):
        with torch.inference_mode():
            det = suppress(
                [merged], settings.nms, settings.conf, settings.max_det, nms=settings.suppression
            )[0]
            det = clip_detections(det, state.width, state.height)
            if state.cloth is not None:
                if state.cloth.edges:  # a frame of cloth throughout keeps every detection
                    det = det.select(state.cloth.keep(det.boxes, settings.edge_band))
                det.cloth = state.cloth
            if settings.masks is not None and state.mosaic is not None:
                det = frame_masks(det, state.mosaic, settings.masks, state.image)
        yield det


def warm_up(settings: TileSettings, num_classes: int) -> None:
    """Run the suppression once on three made-up overlapping candidates, so that loading its
    compiled kernels (about half a second per process) is not timed as the first frame's
    postprocess."""
    from fabricnms.model.postprocess import Candidates, suppress

    boxes = torch.tensor([[0.0, 0.0, 20.0, 20.0], [2.0, 1.0, 22.0, 21.0], [40.0, 0.0, 60.0, 9.0]])
    scores = torch.full((3, num_classes), 0.5)
    merged = Candidates(boxes, scores, scores, torch.full((3,), 0.5), torch.ones(3, 8))
    with torch.inference_mode():
        suppress([merged], settings.nms, settings.conf, settings.max_det, nms=settings.suppression)


def frame_candidates(
    model: torch.nn.Module,
    images: Iterable[np.ndarray],
    settings: TileSettings,
    device: torch.device | str = "cpu",
) -> Iterator[Candidates]:
    """Each frame's candidates of all its windows in frame pixels, before any suppression
    (what :func:`detect_frames` suppresses; benchmarks cache them to compare postprocesses)."""
    for _, merged in _frame_states(model, images, settings, torch.device(device)):
        yield merged


def _frame_states(
    model: torch.nn.Module,
    images: Iterable[np.ndarray],
    settings: TileSettings,
    device: torch.device,
) -> Iterator[tuple[_FrameState, Candidates]]:
    """Windows of each frame batched through ``model``; yields each frame's state and its
    concatenated candidates as soon as its last window has run, in frame order."""
    from fabricnms.model.postprocess import concat_candidates, select_candidates

    frames: list[_FrameState] = []
    crops: list[np.ndarray] = []
    owners: list[tuple[_FrameState, tuple[int, int, int, int], tuple[float, float]]] = []

    def flush() -> None:
        if not crops:
            return
        batch = torch.from_numpy(np.stack(crops)).to(device)
        batch = batch.permute(0, 3, 1, 2).float().div_(255.0)
        with torch.inference_mode():
            dense = model(batch)
            cands = select_candidates(dense, settings.max_candidates, settings.score_floor)
            for i, (cand, (state, window, scale)) in enumerate(zip(cands, owners, strict=True)):
                state.candidates.append(cand.shifted(float(window[0]), float(window[1]), *scale))
                state.pending -= 1
                if settings.masks is not None:
                    _stitch(state, dense.prototypes, dense.proto_stride, i, window, scale)
        crops.clear()
        owners.clear()

    for image in images:
        height, width = image.shape[:2]
        windows = tile_windows(width, height, settings.tile, settings.overlap)
        state = _FrameState(width=width, height=height, pending=len(windows))
        if settings.masks is not None and settings.masks.uses_image:
            state.image = image
        if settings.edge_band >= 0:
            state.cloth = find_cloth(image)
        frames.append(state)
        for x0, y0, x1, y1 in windows:
            crop, scale = network_input(image[y0:y1, x0:x1])
            if crops and crops[0].shape != crop.shape:
                flush()
            crops.append(crop)
            owners.append((state, (x0, y0, x1, y1), scale))
            if len(crops) >= settings.batch:
                flush()
        while frames and frames[0].pending == 0:
            state = frames.pop(0)
            yield state, concat_candidates(state.candidates)
    flush()
    for state in frames:
        yield state, concat_candidates(state.candidates)


def _stitch(
    state: _FrameState,
    prototypes: torch.Tensor | None,
    stride: int,
    index: int,
    window: tuple[int, int, int, int],
    scale: tuple[float, float],
) -> None:
    """Add window ``index`` of a batch's ``prototypes [B, P, h, w]`` to its frame's mosaic."""
    if prototypes is None:
        raise FabricError(
            "masks were requested but the detector has no mask branch "
            "(train one with --set masks=true)"
        )
    if state.mosaic is None:
        state.mosaic = ProtoMosaic(
            state.width, state.height, stride, prototypes.shape[1], prototypes.device
        )
    state.mosaic.add(prototypes[index], window, scale)


def clip_detections(det: Detections, width: int, height: int) -> Detections:
    """Clip boxes to the frame and drop those left without area (they lay in the padding)."""
    from fabricnms.model.boxes import clip_boxes

    boxes = clip_boxes(det.boxes, float(width), float(height))
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return dataclasses.replace(det, boxes=boxes).select(keep)
