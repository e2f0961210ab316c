"""COCO detection JSON: build, write atomically, load with validation, check.

Conventions (the rules of ``ux_conventions.md`` section 9):

- ``bbox`` is ``[x, y, w, h]`` in absolute pixels from the top-left corner (xywh), full float
  precision, never rounded on export.
- every id (image, annotation, category) is a plain ``int``; annotation ids start at 1
  (COCOeval reads id 0 as "unmatched"); category ids are 1-based, there is no background class.
- every annotation has ``area = w * h``, ``iscrowd`` (0) and ``segmentation`` (``[]`` for
  box-only data); ``info`` and ``licenses`` are always present (some ``loadRes`` need them).
- images without annotations (normal frames) are kept.

Results (predictions) are a list of ``{image_id, category_id, bbox (xywh), score}``;
:mod:`fabricnms.data.coco_eval` evaluates them.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fabricnms import __version__
from fabricnms.errors import FabricError
from fabricnms.io import atomic_write_text, read_json

# ---------------------------------------------------------------------------------------------
# building and writing


def coco_image(image_id: int, file_name: str, width: int, height: int, **extra: Any) -> dict:
    """One ``images[]`` entry; ``extra`` fields (plain JSON values) are appended."""
    return {
        "id": int(image_id),
        "file_name": str(file_name),
        "width": int(width),
        "height": int(height),
        **extra,
    }


def coco_annotation(
    ann_id: int,
    image_id: int,
    category_id: int,
    bbox_xywh: Sequence[float],
    **extra: Any,
) -> dict:
    """One ``annotations[]`` entry from an xywh pixel box; ``area = w * h``, ``iscrowd = 0``."""
    x, y, w, h = (float(v) for v in bbox_xywh)
    return {
        "id": int(ann_id),
        "image_id": int(image_id),
        "category_id": int(category_id),
        "bbox": [x, y, w, h],
        "area": w * h,
        "iscrowd": 0,
        "segmentation": [],
        **extra,
    }


def coco_dataset(
    images: list[dict], annotations: list[dict], categories: list[dict], description: str = ""
) -> dict:
    """A complete COCO document with ``info`` and ``licenses`` (deterministic: no timestamp)."""
    return {
        "info": {"description": description, "version": __version__, "contributor": "fabricnms"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def coco_to_json(coco: dict, where: str = "<coco>") -> str:
    """Serialise a COCO document: compact UTF-8 JSON, full float precision, no NaN/inf.

    Raises :class:`FabricError` (naming ``where``) for values JSON cannot hold exactly, such
    as NumPy scalars or NaN; builders cast to plain ``int`` / ``float`` so this never happens
    for documents made with :func:`coco_image` / :func:`coco_annotation`.
    """
    try:
        return json.dumps(coco, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n"
    except (TypeError, ValueError) as exc:
        raise FabricError(f"{where}: cannot serialise COCO document ({exc})") from None


def write_coco(path: str | Path, coco: dict) -> None:
    """Write a COCO document atomically (see :func:`coco_to_json`)."""
    atomic_write_text(path, coco_to_json(coco, str(path)))


# ---------------------------------------------------------------------------------------------
# loading and validation


def load_coco(path: str | Path) -> dict:
    """Read and validate a COCO detection file; see :func:`validate_coco`.

    Raises :class:`FabricError` naming the file (and the offending entry) on any problem.
    """
    path = Path(path)
    data = read_json(path, missing="no such COCO file")
    return validate_coco(data, str(path))


def validate_coco(coco: object, source: str = "<coco>") -> dict:
    """Check a COCO detection document and return a normalised copy.

    Errors (:class:`FabricError`, ``<source>: <section>[i] ...: problem``): not an object;
    ``images`` / ``annotations`` / ``categories`` missing or not lists; non-integer or
    duplicate ids; annotation id < 1; an annotation whose ``image_id`` or ``category_id`` is
    not listed; a ``bbox`` that is not 4 finite numbers with ``w, h >= 0``; an image without
    a positive ``width`` / ``height``. Filled in when missing: ``area = w * h``,
    ``iscrowd = 0``, ``segmentation = []``, empty ``info`` and ``licenses``. The input is not
    modified.
    """
    if not isinstance(coco, dict):
        raise FabricError(f"{source}: top level must be a JSON object with images/annotations")
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            raise FabricError(f"{source}: '{key}' is missing or not a list")

    image_ids: set[int] = set()
    for i, img in enumerate(coco["images"]):
        where = f"{source}: images[{i}]"
        _require_dict(img, where)
        image_id = _require_id(img, "id", where, image_ids)
        if not isinstance(img.get("file_name"), str):
            raise FabricError(f"{where} (id {image_id}): 'file_name' missing or not a string")
        for key in ("width", "height"):
            value = img.get(key)
            if not (is_number(value) and value > 0):
                raise FabricError(f"{where} (id {image_id}): '{key}' must be > 0, got {value!r}")

    category_ids: set[int] = set()
    for i, cat in enumerate(coco["categories"]):
        where = f"{source}: categories[{i}]"
        _require_dict(cat, where)
        cat_id = _require_id(cat, "id", where, category_ids)
        if not isinstance(cat.get("name"), str):
            raise FabricError(f"{where} (id {cat_id}): 'name' missing or not a string")

    ann_ids: set[int] = set()
    annotations = []
    for i, ann in enumerate(coco["annotations"]):
        where = f"{source}: annotations[{i}]"
        _require_dict(ann, where)
        ann_id = _require_id(ann, "id", where, ann_ids)
        where = f"{where} (id {ann_id})"
        if ann_id < 1:
            raise FabricError(f"{where}: annotation ids must start at 1 (COCOeval ignores id 0)")
        if ann.get("image_id") not in image_ids:
            raise FabricError(f"{where}: image_id {ann.get('image_id')!r} is not in images")
        if ann.get("category_id") not in category_ids:
            raise FabricError(
                f"{where}: category_id {ann.get('category_id')!r} is not in categories"
            )
        bbox = ann.get("bbox")
        if not is_xywh(bbox):
            raise FabricError(f"{where}: 'bbox' must be [x, y, w, h] with w, h >= 0, got {bbox!r}")
        fixed = dict(ann)
        if not is_number(fixed.get("area")):
            fixed["area"] = float(bbox[2]) * float(bbox[3])
        fixed.setdefault("iscrowd", 0)
        if fixed["iscrowd"] not in (0, 1):
            raise FabricError(f"{where}: 'iscrowd' must be 0 or 1, got {fixed['iscrowd']!r}")
        fixed.setdefault("segmentation", [])
        annotations.append(fixed)

    out = dict(coco)
    out.setdefault("info", {})
    out.setdefault("licenses", [])
    out["annotations"] = annotations
    return out


def _require_dict(entry: object, where: str) -> None:
    if not isinstance(entry, dict):
        raise FabricError(f"{where}: must be an object, got {type(entry).__name__}")


def _require_id(entry: dict, key: str, where: str, seen: set[int]) -> int:
    value = entry.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise FabricError(f"{where}: '{key}' must be an integer, got {value!r}")
    if value in seen:
        raise FabricError(f"{where}: duplicate id {value}")
    seen.add(value)
    return value


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_xywh(bbox: object) -> bool:
    return (
        isinstance(bbox, list)
        and len(bbox) == 4
        and all(is_number(v) for v in bbox)
        and bbox[2] >= 0
        and bbox[3] >= 0
    )


# ---------------------------------------------------------------------------------------------
# dataset checks


@dataclass
class CocoCheck:
    """Counts a user should see before training on a COCO file.

    ``tiny_boxes``: w <= 1 px or h <= 1 px (other tools drop them); ``out_of_bounds``: boxes
    reaching outside ``[0, width] x [0, height]``; ``duplicate_ids``: repeated image,
    annotation or category ids; ``boxes_per_category`` is keyed by category name.
    """

    images: int
    images_without_annotations: int
    annotations: int
    boxes_per_category: dict[str, int]
    tiny_boxes: int
    out_of_bounds: int
    duplicate_ids: int

    def as_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)


def check_coco(coco: dict, tolerance: float = 1e-6) -> CocoCheck:
    """Count tiny, out-of-bounds and duplicate-id entries of a structurally valid document."""
    sizes = {img["id"]: (img["width"], img["height"]) for img in coco["images"]}
    names = {cat["id"]: cat["name"] for cat in coco["categories"]}
    per_cat: Counter[str] = Counter()
    annotated: set[int] = set()
    tiny = out = 0
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        per_cat[names.get(ann["category_id"], str(ann["category_id"]))] += 1
        annotated.add(ann["image_id"])
        tiny += int(w <= 1 or h <= 1)
        width, height = sizes.get(ann["image_id"], (math.inf, math.inf))
        out += int(
            x < -tolerance
            or y < -tolerance
            or x + w > width + tolerance
            or y + h > height + tolerance
        )
    duplicates = sum(
        len(ids) - len(set(ids))
        for ids in (
            [e["id"] for e in coco["images"]],
            [e["id"] for e in coco["annotations"]],
            [e["id"] for e in coco["categories"]],
        )
    )
    ordered = {names[c]: per_cat[names[c]] for c in sorted(names) if per_cat[names[c]]}
    return CocoCheck(
        images=len(coco["images"]),
        images_without_annotations=len(sizes.keys() - annotated),
        annotations=len(coco["annotations"]),
        boxes_per_category=ordered,
        tiny_boxes=tiny,
        out_of_bounds=out,
        duplicate_ids=duplicates,
    )
