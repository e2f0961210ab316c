"""Calibrate a checkpoint on frames of its own fabric: operating point + fabric statistics.

One tiled pass of the predict path (:func:`~fabricnms.engine.tiling.detect_frames`) over each
frame gives its detections and, through :class:`~fabricnms.engine.shift.FeatureTap`, the pooled
neck descriptor of each of its tiles. The *fit* frames give the fabric statistics; the *held-out*
frames (not trained on) give the operating point (:func:`~fabricnms.engine.false_alarms.
calibrate`) and the shift limit. :func:`write_calibration` adds both keys to a checkpoint file
(atomically, all other keys unchanged).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fabricnms.engine.false_alarms import CalibrationFrame, calibrate
from fabricnms.engine.operating_point import DEFAULT_FALSE_ALARMS, OP_KEY, OperatingPoint
from fabricnms.engine.shift import STATS_KEY, FabricStats, FeatureTap
from fabricnms.engine.tiling import TileSettings, detect_frames
from fabricnms.model.types import Detections

#: Score floor of the calibration pass (thresholds are searched above it).
SCAN_CONF = 0.05


@dataclass(frozen=True)
class LabelledImage:
    """An ``[H, W, 3]`` uint8 RGB frame and its labelled boxes (xyxy px, 0-based labels)."""

    image: np.ndarray
    boxes: np.ndarray  # [M, 4] float
    labels: np.ndarray  # [M] int


def scan_settings(tile: int = 1024, overlap: float = 0.2, nms: str = "dnms") -> TileSettings:
    """The predict path's tiling with the calibration score floor."""
    return TileSettings(tile=tile, overlap=overlap, nms=nms, conf=SCAN_CONF)


def scan(
    model: nn.Module,
    images: Iterable[np.ndarray],
    settings: TileSettings,
    device: torch.device | str = "cpu",
) -> Iterator[tuple[Detections, torch.Tensor]]:
    """Per frame: its detections (CPU) and its tiles' descriptors ``[n_tiles, D]``."""
    sizes: list[tuple[int, int]] = []

    def sized() -> Iterator[np.ndarray]:
        for image in images:
            sizes.append((int(image.shape[1]), int(image.shape[0])))
            yield image

    with FeatureTap(model) as tap:
        for i, det in enumerate(detect_frames(model, sized(), settings, device)):
            width, height = sizes[i]
            desc = tap.take_frame(width, height, settings.tile, settings.overlap, det.cloth)
            yield det.to("cpu"), desc


def calibrate_model(
    model: nn.Module,
    class_names: Sequence[str],
    fit: Iterable[np.ndarray],
    held_out: Iterable[LabelledImage],
    source: str,
    false_alarms: float = DEFAULT_FALSE_ALARMS,
    settings: TileSettings | None = None,
    device: torch.device | str = "cpu",
    limit_frames: Iterable[np.ndarray] | None = None,
    stats_source: str | None = None,
) -> tuple[OperatingPoint, FabricStats]:
    """Fabric statistics from ``fit`` frames; operating point and shift limit from ``held_out``
    (the limit from ``limit_frames`` instead when given: held-out frames of the ``fit`` fabric,
    when the statistics describe another fabric than the operating point's data)."""
    settings = settings or scan_settings()
    descs = [d for _, d in scan(model, fit, settings, device)]
    stats = FabricStats.fit(torch.cat(descs), stats_source or source)
    held = list(held_out)
    frames: list[CalibrationFrame] = []
    held_descs: list[torch.Tensor] = []
    for item, (det, desc) in zip(
        held, scan(model, (h.image for h in held), settings, device), strict=True
    ):
        h, w = item.image.shape[:2]
        frames.append(
            CalibrationFrame(
                det,
                torch.as_tensor(item.boxes, dtype=torch.float32).reshape(-1, 4),
                torch.as_tensor(item.labels, dtype=torch.int64).reshape(-1),
                float(h * w),
            )
        )
        held_descs.append(desc)
    point = calibrate(frames, class_names, false_alarms, source)
    if limit_frames is not None:
        held_descs = [d for _, d in scan(model, limit_frames, settings, device)]
    scores = [s for s in map(stats.frame_score, held_descs) if s is not None]
    return point, stats.with_limit(scores)


def write_calibration(
    path: str | Path, point: OperatingPoint, stats: FabricStats, out: str | Path | None = None
) -> Path:
    """Add ``operating_point`` and ``fabric_stats`` to the checkpoint at ``path`` (every other
    key unchanged) and save it atomically to ``out`` (default: ``path`` itself)."""
    from fabricnms.engine.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(path)
    ckpt[OP_KEY] = point.to_dict()
    ckpt[STATS_KEY] = stats.to_dict()
    target = Path(out) if out is not None else Path(path)
    save_checkpoint(target, ckpt)
    return target
