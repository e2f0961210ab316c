"""Plain (tensor-free) per-frame detection records: what the writers journal and the roll
report reads.

Conventions: ``box`` is ``xyxy`` in pixels of the full frame (0-based pixel grid, top-left
origin); ``label`` is the 0-based class index in memory and becomes ``category_id = label + 1``
in every file; ``rle`` is an optional COCO RLE mask (``{"size": [h, w], "counts": str}``) in
frame pixels.
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
    """One detection: ``box`` xyxy frame pixels, 0-based ``label``, ``score`` in [0, 1]."""

    box: tuple[float, float, float, float]
    label: int
    score: float
    rle: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """File form: 1-based ``category_id``, ``bbox`` xyxy, optional ``segmentation`` RLE."""
        out: dict[str, Any] = {
            "category_id": self.label + 1,
            "bbox": [round(v, 3) for v in self.box],
            "score": round(self.score, 5),
        }
        if self.rle is not None:
            out["segmentation"] = self.rle
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
        )


@dataclass
class FrameRecord:
    """One frame and its detections. ``path`` is absolute; ``width``/``height`` in pixels."""

    path: str
    width: int
    height: int
    detections: list[DetectionRecord] = field(default_factory=list)

    @property
    def name(self) -> str:
        """Bare file name (the Tianchi ``name``)."""
        return os.path.basename(self.path)

    @staticmethod
    def from_detections(
        path: str | os.PathLike[str], width: int, height: int, detections: Detections
    ) -> FrameRecord:
        """Convert a :class:`Detections` in frame pixels (masks ``[K, height, width]``)."""
        boxes = detections.boxes.detach().float().cpu().tolist()
        labels = detections.labels.detach().cpu().tolist()
        scores = detections.scores.detach().float().cpu().tolist()
        rles: list[dict[str, Any] | None] = [None] * len(scores)
        if detections.masks is not None and len(scores) > 0:
            rles = list(encode_masks(detections.masks, width, height))
        return FrameRecord(
            path=os.path.abspath(path),
            width=int(width),
            height=int(height),
            detections=[
                DetectionRecord(box=(b[0], b[1], b[2], b[3]), label=int(c), score=float(s), rle=r)
                for b, c, s, r in zip(boxes, labels, scores, rles, strict=True)
            ],
        )


def encode_masks(masks: Any, width: int, height: int) -> list[dict[str, Any]]:
    """``[K, height, width]`` bool tensor or array -> K COCO RLEs with ``counts`` as str."""
    import numpy as np
    from pycocotools import mask as mask_utils

    arr = masks.detach().cpu().numpy() if hasattr(masks, "detach") else np.asarray(masks)
    if arr.ndim != 3 or arr.shape[1:] != (height, width):
        raise ValueError(f"masks must be [K, {height}, {width}], got {list(arr.shape)}")
    encoded = mask_utils.encode(np.asfortranarray(arr.transpose(1, 2, 0).astype(np.uint8)))
    return [{"size": list(e["size"]), "counts": e["counts"].decode("ascii")} for e in encoded]


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
