"""Mask quality against the true masks of a synthetic release (``Annotations/masks.json``).

``fabricnms synth --masks`` writes, next to ``anno_train.json``, a sidecar
``{"info": str, "images": {name: [{"entry", "defect_name", "bbox", "category_id",
"tight_bbox", "segmentation"}, ...]}}`` where ``entry`` is the index of the box in
``anno_train.json``, ``category_id`` is 1-based (20 categories) and ``segmentation`` is a COCO
RLE ``{"size": [height, width], "counts": str}`` of the full frame. Training never sees it.

Here it becomes a COCO ground truth with segmentations (:func:`segm_ground_truth`, matched to
the converted COCO split by the images' ``name``), and predicted masks (COCO results with
``segmentation`` RLE) are scored with pycocotools ``segm`` AP (via
:func:`fabricnms.data.coco_eval.coco_eval`) and with the mean best mask IoU, next to the baseline
*filled box*: the same detections with their box as the mask (:func:`evaluate_masks`).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fabricnms.data.classes import CATEGORY_BY_ID, resolve_raw
from fabricnms.data.coco import validate_coco
from fabricnms.data.coco_eval import CocoEvalResult, coco_eval
from fabricnms.errors import FabricError
from fabricnms.io import read_json


@dataclass(frozen=True)
class TrueMask:
    """One true defect mask: ``entry`` index in ``anno_train.json``, raw Chinese name, its
    English fine-class name, 1-based ``category_id`` (20 categories) and a full-frame COCO RLE
    (``counts`` str)."""

    entry: int
    raw_name: str
    fine_name: str
    category_id: int
    rle: dict[str, Any]


def load_true_masks(path: str | Path) -> dict[str, list[TrueMask]]:
    """Read and validate a ``masks.json`` sidecar -> ``{image name: [TrueMask, ...]}``.

    Raises :class:`FabricError` naming the file (and image / entry) on any problem.
    """
    path = Path(path)
    data = read_json(path, missing="no such masks file (make it with `synth --masks`)")
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, dict):
        raise FabricError(f"{path}: expected an object with an 'images' object")
    out: dict[str, list[TrueMask]] = {}
    for name, entries in images.items():
        if not isinstance(entries, list):
            raise FabricError(f"{path}: images[{name!r}] must be a list")
        out[name] = [_true_mask(e, f"{path}: images[{name!r}][{i}]") for i, e in enumerate(entries)]
    return out


def _true_mask(entry: object, where: str) -> TrueMask:
    if not isinstance(entry, dict):
        raise FabricError(f"{where}: must be an object")
    index, cat, raw = entry.get("entry"), entry.get("category_id"), entry.get("defect_name")
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise FabricError(f"{where}: 'entry' must be a non-negative integer, got {index!r}")
    if cat not in CATEGORY_BY_ID:
        raise FabricError(f"{where}: 'category_id' must be 1..20, got {cat!r}")
    fine = resolve_raw(raw) if isinstance(raw, str) else None
    if fine is None:
        raise FabricError(f"{where}: unknown 'defect_name' {raw!r}")
    rle = entry.get("segmentation")
    size = rle.get("size") if isinstance(rle, dict) else None
    if not (
        isinstance(size, list)
        and len(size) == 2
        and all(isinstance(v, int) and v > 0 for v in size)
        and isinstance(rle.get("counts"), str)
    ):
        raise FabricError(f"{where}: 'segmentation' must be an RLE {{size: [h, w], counts: str}}")
    return TrueMask(index, raw, fine.name, cat, {"size": list(size), "counts": rle["counts"]})


def segm_ground_truth(
    gt: dict, masks: dict[str, list[TrueMask]], source: str = "masks.json"
) -> dict:
    """A COCO ground truth for ``segm`` evaluation: ``gt``'s images, the true masks as objects.

    ``gt`` is a converted split (images carry ``name``, else the ``file_name`` base name is
    used). Category ids follow ``gt``'s scheme (34 categories: fine classes, else the 20). Each
    annotation has the RLE ``segmentation``, ``area`` = mask pixels and ``bbox`` = the mask's
    tight xywh box. Errors (:class:`FabricError` naming ``source``): an annotated image without
    true masks, or a mask whose size differs from its image.
    """
    from pycocotools import mask as mask_utils

    doc = validate_coco(gt, "<ground truth>")
    fine = len(doc["categories"]) == 34
    ids = {c["name"]: c["id"] for c in doc["categories"]}
    annotated = {a["image_id"] for a in doc["annotations"]}
    annotations: list[dict] = []
    for img in doc["images"]:
        name = img.get("name") or os.path.basename(img["file_name"])
        if name not in masks:
            if img["id"] in annotated:
                raise FabricError(f"{source}: no true masks for annotated image {name!r}")
            continue
        for m in masks[name]:
            if m.rle["size"] != [img["height"], img["width"]]:
                raise FabricError(
                    f"{source}: images[{name!r}] entry {m.entry}: mask size {m.rle['size']} "
                    f"differs from the image ({img['height']} x {img['width']})"
                )
            label = m.fine_name if fine else CATEGORY_BY_ID[m.category_id].name
            if label not in ids:
                raise FabricError(f"{source}: category {label!r} is not in the ground truth")
            encoded = {"size": m.rle["size"], "counts": m.rle["counts"].encode("ascii")}
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": img["id"],
                    "category_id": ids[label],
                    "bbox": [float(v) for v in mask_utils.toBbox(encoded)],
                    "area": float(mask_utils.area(encoded)),
                    "iscrowd": 0,
                    "segmentation": m.rle,
                }
            )
    return {**doc, "annotations": annotations}


def filled_box_rle(bbox_xywh: Sequence[float], height: int, width: int) -> dict[str, Any]:
    """COCO RLE (``counts`` str) of a filled ``[x, y, w, h]`` pixel box in a frame."""
    from pycocotools import mask as mask_utils

    x, y, w, h = (float(v) for v in bbox_xywh)
    rle = mask_utils.frPyObjects(np.array([[x, y, w, h]], dtype=np.float64), height, width)[0]
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def mask_iou_matrix(dt: Sequence[dict], gt: Sequence[dict]) -> np.ndarray:
    """Pairwise IoU ``[D, G]`` of two lists of COCO RLEs (``counts`` str or bytes)."""
    from pycocotools import mask as mask_utils

    if not dt or not gt:
        return np.zeros((len(dt), len(gt)))
    return np.asarray(mask_utils.iou(_rles(dt), _rles(gt), [0] * len(gt)), dtype=np.float64)


def _rles(items: Sequence[dict]) -> list[dict]:
    return [
        {"size": r["size"], "counts": r["counts"].encode("ascii")}
        if isinstance(r["counts"], str)
        else r
        for r in items
    ]


@dataclass
class MaskReport:
    """Mask quality of one set of results against a ``segm`` ground truth.

    ``segm`` / ``box_segm``: pycocotools ``segm`` evaluation of the predicted masks / of the
    filled predicted boxes. ``mean_best_iou`` / ``box_mean_best_iou``: mean over true masks of
    the best IoU with a prediction of the same image and class (0 when there is none).
    ``box_ceiling_iou``: mean IoU of each true mask with its own filled tight box, the best a
    box-shaped mask can do.
    """

    segm: CocoEvalResult
    box_segm: CocoEvalResult
    mean_best_iou: float
    box_mean_best_iou: float
    box_ceiling_iou: float
    num_true_masks: int

    def as_dict(self) -> dict[str, Any]:
        """Plain-JSON form (``mask_AP``: segm AP@[.5:.95], ``mask_AP50``...)."""
        return {
            "mask_AP": self.segm.stats[0],
            "mask_AP50": self.segm.stats[1],
            "mask_AP75": self.segm.stats[2],
            "box_as_mask_AP": self.box_segm.stats[0],
            "box_as_mask_AP50": self.box_segm.stats[1],
            "mean_best_iou": self.mean_best_iou,
            "box_mean_best_iou": self.box_mean_best_iou,
            "box_ceiling_iou": self.box_ceiling_iou,
            "true_masks": self.num_true_masks,
        }


def evaluate_masks(gt_segm: dict, results: Sequence[dict]) -> MaskReport:
    """Score ``results`` (``{image_id, category_id, bbox xywh, score, segmentation RLE}``).

    ``gt_segm`` comes from :func:`segm_ground_truth`. Raises :class:`FabricError` for a result
    without an RLE ``segmentation`` or on an unknown image.
    """
    sizes = {img["id"]: (img["height"], img["width"]) for img in gt_segm["images"]}
    boxes = []
    for i, res in enumerate(results):
        if not isinstance(res, dict) or not isinstance(res.get("segmentation"), dict):
            raise FabricError(f"results[{i}]: no RLE 'segmentation'; predict with masks enabled")
        if res.get("image_id") not in sizes:
            raise FabricError(f"results[{i}]: image_id {res.get('image_id')!r} is not in the GT")
        boxes.append({**res, "segmentation": filled_box_rle(res["bbox"], *sizes[res["image_id"]])})
    true = gt_segm["annotations"]
    ceiling = [
        float(
            mask_iou_matrix(
                [filled_box_rle(a["bbox"], *sizes[a["image_id"]])], [a["segmentation"]]
            )[0, 0]
        )
        for a in true
    ]
    return MaskReport(
        segm=coco_eval(gt_segm, results, iou_type="segm"),
        box_segm=coco_eval(gt_segm, boxes, iou_type="segm"),
        mean_best_iou=_mean_best_iou(true, results),
        box_mean_best_iou=_mean_best_iou(true, boxes),
        box_ceiling_iou=float(np.mean(ceiling)) if ceiling else 0.0,
        num_true_masks=len(true),
    )


def _mean_best_iou(true: Sequence[dict], results: Sequence[dict]) -> float:
    """Mean over ``true`` annotations of the best mask IoU with a same-image, same-class result."""
    if not true:
        return 0.0
    by_key: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for res in results:
        by_key[(res["image_id"], res["category_id"])].append(res["segmentation"])
    gt_by_key: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for ann in true:
        gt_by_key[(ann["image_id"], ann["category_id"])].append(ann["segmentation"])
    total = 0.0
    for key, gts in gt_by_key.items():
        ious = mask_iou_matrix(by_key.get(key, []), gts)
        if ious.size:
            total += float(ious.max(axis=0).sum())
    return total / len(true)
