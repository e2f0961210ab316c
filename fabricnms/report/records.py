"""Plain (tensor-free) per-frame detection records: what the writers journal and the roll
report reads.

Conventions: ``box`` is ``xyxy`` in pixels of the full frame (0-based pixel grid, top-left
origin); ``label`` is the 0-based class index in memory and becomes ``category_id = label + 1``
in every file; ``rle`` is an optional COCO RLE mask (``{"size": [h, w], "counts": str}``) in
frame pixels, with its ``area`` (mask pixels) and ``uncertainty`` (mean binary entropy of the
mask probabilities in bits, see :mod:`fabricnms.model.mask_infer`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fabricnms.io import natural_key

if TYPE_CHECKING:
    from fabricnms.model.types import Detections


@dataclass(frozen=True)
class DetectionRecord:
    """One detection: ``box`` xyxy frame pixels, 0-based ``label``, ``score`` in [0, 1]; with a
    mask its ``rle``, ``area`` in frame pixels and ``uncertainty`` in bits."""

    box: tuple[float, float, float, float]
    label: int
    score: float
    rle: dict[str, Any] | None = None
    area: float | None = None
    uncertainty: float | None = None

    def to_json(self) -> dict[str, Any]:
        """File form: 1-based ``category_id``, ``bbox`` xyxy; with a mask ``segmentation`` RLE,
        ``area`` (px) and ``mask_uncertainty``."""
        out: dict[str, Any] = {
            "category_id": self.label + 1,
            "bbox": [round(v, 3) for v in self.box],
            "score": round(self.score, 5),
        }
        if self.rle is not None:
            out["segmentation"] = self.rle
        if self.area is not None:
            out["area"] = self.area
        if self.uncertainty is not None:
            out["mask_uncertainty"] = round(self.uncertainty, 4)
        return out

    @staticmethod
    def from_json(obj: dict[str, Any]) -> DetectionRecord:
        """Inverse of :meth:`to_json`."""
        x1, y1, x2, y2 = (float(v) for v in obj["bbox"])
        return DetectionRecord(
            box=(x1, y1, x2, y2),
            label=int(obj["category_id"]) - 1,
            score=float(obj["score"]),
            rle=obj.get("segmentation"),
            area=obj.get("area"),
            uncertainty=obj.get("mask_uncertainty"),
        )


@dataclass
class FrameRecord:
    """One frame and its detections. ``path`` is absolute; ``width``/``height`` in pixels;
    ``fabric_shift``: the frame's distance from the model's fabric (:mod:`fabricnms.engine.shift`),
    ``None`` when not scored; ``cloth``: where the frame shows the fabric's edge, the cloth
    region ``{"box": [x0, y0, x1, y1], "inspected": [...], "edges": [...]}``
    (:meth:`fabricnms.data.cloth.ClothRegion.to_dict`), else ``None``."""

    path: str
    width: int
    height: int
    detections: list[DetectionRecord] = field(default_factory=list)
    fabric_shift: float | None = None
    cloth: dict[str, Any] | None = None

    @property
    def cloth_span(self) -> tuple[int, int]:
        """``(x0, x1)`` px: the fabric across the frame, selvage to selvage where the frame
        shows its edge (:attr:`cloth`), else the whole frame width."""
        if self.cloth is None:
            return 0, self.width
        return int(self.cloth["box"][0]), int(self.cloth["box"][2])

    @property
    def name(self) -> str:
        """Bare file name (the Tianchi ``name``)."""
        return os.path.basename(self.path)

    @staticmethod
    def from_detections(
        path: str | os.PathLike[str], width: int, height: int, detections: Detections
    ) -> FrameRecord:
        """Convert a :class:`Detections` in frame pixels (masks as crops of this frame)."""
        boxes = detections.boxes.detach().float().cpu().tolist()
        labels = detections.labels.detach().cpu().tolist()
        scores = detections.scores.detach().float().cpu().tolist()
        k = len(scores)
        rles: list[dict[str, Any] | None] = [None] * k
        areas: list[float | None] = [None] * k
        uncertainty: list[float | None] = [None] * k
        masks = detections.masks
        if masks is not None:
            if (masks.height, masks.width) != (height, width):
                raise ValueError(
                    f"masks of a {masks.width}x{masks.height} frame, not {width}x{height}"
                )
            rles = list(masks.to_rle())
            areas = [float(v) for v in masks.area().tolist()]
            if "mask_uncertainty" in detections.extra:
                uncertainty = detections.extra["mask_uncertainty"].detach().float().cpu().tolist()
        return FrameRecord(
            path=os.path.abspath(path),
            width=int(width),
            height=int(height),
            detections=[
                DetectionRecord((b[0], b[1], b[2], b[3]), int(c), float(s), r, a, u)
                for b, c, s, r, a, u in zip(
                    boxes, labels, scores, rles, areas, uncertainty, strict=True
                )
            ],
        )


def roll_order(paths: Iterable[str]) -> list[str]:
    """Frame paths in roll order: natural sort (``frame2`` before ``frame10``)."""
    return sorted(paths, key=natural_key)


def along_offsets_px(frames: Iterable[tuple[str, int]]) -> dict[str, int]:
    """``(path, height)`` pairs -> pixel offset of each frame's top row from the roll start.

    Frames are stacked in :func:`roll_order` with no overlap between consecutive frames.
    """
    heights = dict(frames)
    offsets: dict[str, int] = {}
    total = 0
    for path in roll_order(heights):
        offsets[path] = total
        total += heights[path]
    return offsets
