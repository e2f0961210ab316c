"""The real-fabric sets of ``benchmarks/real_frames.py``: a folder of frames and its labels.

A set is a folder with a COCO ``labels.json`` (category ids 1-20, every image with a
``defective`` flag; ``bbox`` xywh pixels where a defect's location is known; optional
``masks/`` of same-stem PNGs, 255 = defect pixels), or a folder without one: an unlabelled set
of the frames ``predict`` finds in it. Boxes are held as ``[G, 4]`` xyxy float64 pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from fabricnms.engine.sources import discover_frames
from fabricnms.errors import FabricError
from fabricnms.io import read_json
from fabricnms.model.boxes import xywh_to_xyxy


@dataclass
class FrameTruth:
    """One frame: ``path``, ``defective`` (``None``: unlabelled set), annotated ``boxes``
    ``[G, 4]`` xyxy pixels with their 1-based ``categories``, its ``mask`` file (or ``None``)."""

    image_id: int
    path: Path
    defective: bool | None
    boxes: torch.Tensor
    categories: list[int]
    mask: Path | None = None


@dataclass
class RealSet:
    """A folder of real frames and its labels (``categories``: class name -> id; empty for an
    unlabelled set)."""

    name: str
    frames: list[FrameTruth]
    categories: dict[str, int] = field(default_factory=dict)


def load_set(folder: Path, labels: str = "labels.json") -> RealSet:
    """Read ``folder / labels`` (COCO, see the module docstring); without a labels file (and
    the default name) the folder is an unlabelled set of the frames ``predict`` finds in it."""
    path = folder / labels
    if not path.is_file():
        if labels != "labels.json":
            raise FabricError(f"{path}: no such labels file")
        frames = discover_frames([str(folder)])
        empty = torch.zeros(0, 4, dtype=torch.float64)
        return RealSet(
            folder.name, [FrameTruth(i, p, None, empty, []) for i, p in enumerate(frames, 1)]
        )
    doc = read_json(path)
    try:
        categories = {str(c["name"]): int(c["id"]) for c in doc["categories"]}
        anns: dict[int, list[dict]] = {}
        for ann in doc["annotations"]:
            anns.setdefault(int(ann["image_id"]), []).append(ann)
        frames = []
        for img in doc["images"]:
            own = anns.get(int(img["id"]), [])
            xywh = torch.tensor([[float(v) for v in a["bbox"]] for a in own], dtype=torch.float64)
            mask = path.parent / "masks" / (Path(img["file_name"]).stem + ".png")
            frames.append(
                FrameTruth(
                    image_id=int(img["id"]),
                    path=path.parent / img["file_name"],
                    defective=bool(img.get("defective", bool(own))),
                    boxes=xywh_to_xyxy(xywh.reshape(-1, 4)),
                    categories=[int(a["category_id"]) for a in own],
                    mask=mask if mask.is_file() else None,
                )
            )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise FabricError(f"{path}: not a COCO labels file ({type(exc).__name__}: {exc})") from None
    return RealSet(folder.name, frames, categories)


def read_mask(path: Path, height: int, width: int) -> np.ndarray:
    """``[H, W]`` uint8 0/1 defect pixels (> 127) of a mask PNG the size of its frame."""
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise FabricError(f"{path}: cannot be read as a mask image")
    if mask.shape != (height, width):
        raise FabricError(
            f"{path}: mask is {mask.shape[1]}x{mask.shape[0]}, frame {width}x{height}"
        )
    return (mask > 127).astype(np.uint8)
