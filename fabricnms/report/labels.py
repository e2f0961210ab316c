"""Read annotation and result files for drawing, keyed by bare image file name.

Accepted layouts (detected from the content):

- COCO dataset ``{"images", "annotations", "categories"}``: images matched by the basename of
  ``file_name``; ``bbox`` xywh pixels, ``category_id`` 1-based, optional ``segmentation``
  (RLE or polygons).
- COCO results list ``[{image_id, category_id, bbox xywh, score}]``: image ids resolved through
  a COCO dataset (``--annotations``, or the ``images.json`` that ``predict`` writes next to it;
  an empty list beside one is a run that found nothing). Where ``images.json`` gives a frame's
  ``cloth`` (predict saw the fabric's edge), its ``inspected`` box is kept (drawn veiled around).
- Tianchi annotations ``[{name, defect_name, bbox xyxy}]`` (raw Chinese names, aliases mapped;
  unknown names are skipped with a warning).
- Tianchi submission ``[{name, category 1-based, bbox xyxy, score}]``.

In memory every box is xyxy pixels and every label 0-based.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fabricnms.data.classes import class_names as default_class_names
from fabricnms.data.classes import resolve_raw
from fabricnms.data.coco import validate_coco
from fabricnms.data.tianchi import read_label_file
from fabricnms.errors import FabricError
from fabricnms.io import read_json
from fabricnms.log import get_logger

log = get_logger("labels")

IMAGES_JSON = "images.json"


@dataclass
class FrameLabels:
    """Boxes of one image: xyxy pixels, 0-based labels, scores (None for ground truth) and a
    COCO ``segmentation`` (or None) per box; ``inspected``: the xyxy px box ``predict``
    inspected where the frame showed the fabric's edge (its ``images.json`` ``cloth``), else
    None (the whole frame)."""

    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    scores: list[float] | None = None
    segmentations: list[Any] = field(default_factory=list)
    inspected: tuple[float, float, float, float] | None = None

    def add(
        self,
        box: tuple[float, float, float, float],
        label: int,
        score: float | None,
        segmentation: Any = None,
    ) -> None:
        """Append one box."""
        self.boxes.append(box)
        self.labels.append(label)
        if score is not None:
            if self.scores is None:
                self.scores = []
            self.scores.append(score)
        self.segmentations.append(segmentation)

    def above(self, conf: float) -> FrameLabels:
        """Only the boxes scoring at least ``conf`` (ground truth is returned unchanged)."""
        if self.scores is None:
            return self
        keep = [i for i, s in enumerate(self.scores) if s >= conf]
        return FrameLabels(
            boxes=[self.boxes[i] for i in keep],
            labels=[self.labels[i] for i in keep],
            scores=[self.scores[i] for i in keep],
            segmentations=[self.segmentations[i] for i in keep],
            inspected=self.inspected,
        )


@dataclass
class LabelSet:
    """Labels of many images keyed by bare file name, with the class names (0-based)."""

    source: Path
    layout: str
    class_names: list[str]
    frames: dict[str, FrameLabels]
    is_prediction: bool

    def get(self, name: str) -> FrameLabels:
        """Labels of image ``name`` (empty when the file lists none)."""
        return self.frames.get(name, FrameLabels(scores=[] if self.is_prediction else None))


def _bbox(path: Path, where: str, value: Any, xywh: bool) -> tuple[float, float, float, float]:
    ok = isinstance(value, (list, tuple)) and len(value) == 4
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    nums = [float(v) for v in value] if ok else []
    if len(nums) != 4 or not all(math.isfinite(v) for v in nums):
        raise FabricError(f"{path}: {where}: bbox must be 4 numbers, got {value!r}")
    x1, y1, a, b = nums
    x2, y2 = (x1 + a, y1 + b) if xywh else (a, b)
    if x2 < x1 or y2 < y1:
        raise FabricError(f"{path}: {where}: bbox {value!r} has negative size")
    return (x1, y1, x2, y2)


def _field(path: Path, where: str, entry: Any, key: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(entry, dict) or key not in entry:
        raise FabricError(f"{path}: {where}: missing '{key}'")
    value = entry[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise FabricError(f"{path}: {where}: '{key}' has the wrong type ({value!r})")
    return value


def _category(path: Path, where: str, value: int, names: list[str]) -> int:
    if not 1 <= value <= len(names):
        raise FabricError(f"{path}: {where}: category {value} outside 1..{len(names)}")
    return value - 1


def _coco_index(path: Path, data: Any) -> tuple[dict[str, Any], dict[int, str], list[str]]:
    """Validated COCO document, image id -> bare file name, class names by 0-based label."""
    doc = validate_coco(data, str(path))
    images = {img["id"]: os.path.basename(img["file_name"]) for img in doc["images"]}
    cats = {c["id"]: c["name"] for c in doc["categories"]}
    if not cats:
        return doc, images, default_class_names(20)
    if min(cats) < 1:
        raise FabricError(f"{path}: category ids must be 1-based, found {min(cats)}")
    return doc, images, [str(cats.get(i, f"class_{i}")) for i in range(1, max(cats) + 1)]


def _load_coco_dataset(path: Path, data: dict[str, Any]) -> LabelSet:
    doc, images, names = _coco_index(path, data)
    frames: dict[str, FrameLabels] = {n: FrameLabels() for n in images.values()}
    for ann in doc["annotations"]:
        x, y, w, h = (float(v) for v in ann["bbox"])
        frames[images[ann["image_id"]]].add(
            (x, y, x + w, y + h), ann["category_id"] - 1, None, ann["segmentation"] or None
        )
    return LabelSet(path, "coco", names, frames, is_prediction=False)


def _load_coco_results(path: Path, rows: list[Any], images_from: Path | None) -> LabelSet:
    if images_from is None:
        beside = path.parent / IMAGES_JSON
        if not beside.exists():
            raise FabricError(
                f"{path}: COCO results need an image list: pass a COCO --annotations file "
                f"or keep {IMAGES_JSON} next to it"
            )
        images_from = beside
    doc, images, names = _coco_index(images_from, read_json(images_from))
    frames: dict[str, FrameLabels] = {}
    for img in doc["images"]:
        if isinstance(img.get("cloth"), dict):
            where = f"image {img['id']} cloth"
            box = _bbox(images_from, where, img["cloth"].get("inspected"), xywh=False)
            frames[images[img["id"]]] = FrameLabels(scores=[], inspected=box)
    for i, row in enumerate(rows):
        where = f"entry {i}"
        image_id = _field(path, where, row, "image_id", int)
        if image_id not in images:
            raise FabricError(f"{path}: {where}: image_id {image_id} is not in {images_from}")
        label = _category(path, where, _field(path, where, row, "category_id", int), names)
        score = float(_field(path, where, row, "score", (int, float)))
        box = _bbox(path, where, row.get("bbox"), xywh=True)
        frame = frames.setdefault(images[image_id], FrameLabels(scores=[]))
        frame.add(box, label, score, row.get("segmentation"))
    return LabelSet(path, "coco-results", names, frames, is_prediction=True)


def _load_tianchi(path: Path) -> LabelSet:
    frames: dict[str, FrameLabels] = {}
    unknown: dict[str, int] = {}
    for entry in read_label_file(path):
        cls = resolve_raw(entry.defect_name)
        if cls is None:
            unknown[entry.defect_name] = unknown.get(entry.defect_name, 0) + 1
            continue
        frames.setdefault(entry.name, FrameLabels()).add(entry.bbox, cls.category_id - 1, None)
    for raw, n in unknown.items():
        log.warning("%s: skipped %d box(es) of unknown defect_name %r", path, n, raw)
    return LabelSet(path, "tianchi", default_class_names(20), frames, is_prediction=False)


def _load_tianchi_submission(path: Path, rows: list[Any]) -> LabelSet:
    names = default_class_names(20)
    frames: dict[str, FrameLabels] = {}
    for i, row in enumerate(rows):
        where = f"entry {i}"
        name = os.path.basename(_field(path, where, row, "name", str))
        label = _category(path, where, _field(path, where, row, "category", int), names)
        score = float(_field(path, where, row, "score", (int, float)))
        box = _bbox(path, where, row.get("bbox"), xywh=False)
        frames.setdefault(name, FrameLabels(scores=[])).add(box, label, score)
    return LabelSet(path, "tianchi-submission", names, frames, is_prediction=True)


def load_labels(path: str | Path, images_from: str | Path | None = None) -> LabelSet:
    """Read any accepted layout (module docstring); ``images_from`` resolves COCO results."""
    path = Path(path)
    data = read_json(path)
    if isinstance(data, dict):
        if "images" not in data:
            raise FabricError(f"{path}: a JSON object must be a COCO dataset with 'images'")
        return _load_coco_dataset(path, data)
    if not isinstance(data, list):
        raise FabricError(f"{path}: expected a COCO dataset or a list of boxes")
    first = data[0] if data else {}
    if not isinstance(first, dict):
        raise FabricError(f"{path}: entry 0 is not an object")
    if "image_id" in first or (not data and (path.parent / IMAGES_JSON).is_file()):
        # (an empty list beside predict's images.json: a run that found nothing)
        return _load_coco_results(path, data, Path(images_from) if images_from else None)
    if "defect_name" in first:
        return _load_tianchi(path)
    if "category" in first:
        return _load_tianchi_submission(path, data)
    if not data:
        return LabelSet(path, "empty", default_class_names(20), {}, is_prediction=False)
    raise FabricError(
        f"{path}: entry 0 is neither a COCO result, a Tianchi annotation nor a submission row"
    )
