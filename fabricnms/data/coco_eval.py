"""COCO evaluation of a results list against a ground truth, through pycocotools (boxes or
masks): the 12 ``COCOeval.stats`` (:data:`STAT_KEYS`), per-category AP and the printed summary.

Results are ``{image_id, category_id, bbox (xywh px), score}`` (plus ``segmentation`` RLE for
``iou_type="segm"``), checked before pycocotools sees them.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fabricnms.data.coco import is_number, is_xywh, load_coco, validate_coco
from fabricnms.errors import FabricError

#: Names of ``COCOeval.stats[0..11]`` (faster-coco-eval's keys).
STAT_KEYS: tuple[str, ...] = (
    "AP_all",
    "AP_50",
    "AP_75",
    "AP_small",
    "AP_medium",
    "AP_large",
    "AR_all",
    "AR_second",
    "AR_third",
    "AR_small",
    "AR_medium",
    "AR_large",
)


@dataclass
class CocoEvalResult:
    """pycocotools evaluation of a results list against a ground truth.

    ``stats`` are the 12 ``COCOeval.stats`` numbers in pycocotools order (-1: no ground truth
    in that bucket); ``per_category`` maps category id -> ``{"AP", "AP50", "AP75"}`` (area
    "all", 100 detections; -1 when the category has no ground truth); ``summary`` is the
    12-line text pycocotools prints.
    """

    stats: list[float]
    per_category: dict[int, dict[str, float]]
    summary: str
    num_results: int

    def as_dict(self) -> dict[str, float]:
        """``stats`` keyed by :data:`STAT_KEYS`."""
        return dict(zip(STAT_KEYS, self.stats, strict=True))


def coco_eval(
    gt: str | Path | dict, results: Sequence[dict], iou_type: str = "bbox"
) -> CocoEvalResult:
    """Evaluate ``results`` against ``gt`` (a COCO file path or document) with pycocotools.

    ``results``: ``{image_id, category_id, bbox [x, y, w, h] px, score}`` (plus
    ``segmentation`` as RLE for ``iou_type="segm"``). Every image of ``gt`` takes part, so
    detections on normal frames count as false positives. An empty ``results`` list gives
    AP/AR 0 wherever ground truth exists (``loadRes`` is never called, so it cannot crash).
    Nothing is printed: pycocotools' output is captured into ``summary``.
    """
    import numpy as np
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if iou_type not in ("bbox", "segm"):
        raise FabricError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    gt_doc = load_coco(gt) if isinstance(gt, (str, Path)) else validate_coco(gt, "<ground truth>")
    gt_name = str(gt) if isinstance(gt, (str, Path)) else "the ground truth"
    if iou_type == "segm" and any(not a["segmentation"] for a in gt_doc["annotations"]):
        raise FabricError(f"{gt_name}: annotations without segmentation; use iou_type='bbox'")
    detections = _result_annotations(gt_doc, results, gt_name, iou_type)

    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        gt_api, dt_api = COCO(), COCO()
        gt_api.dataset = gt_doc
        gt_api.createIndex()
        dt_api.dataset = {
            "info": gt_doc["info"],
            "licenses": [],
            "images": gt_doc["images"],
            "categories": gt_doc["categories"],
            "annotations": detections,
        }
        dt_api.createIndex()
        evaluator = COCOeval(gt_api, dt_api, iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
    with contextlib.redirect_stdout(summary := io.StringIO()):
        evaluator.summarize()

    precision = evaluator.eval["precision"]  # [T=10 IoUs, R=101 recalls, K, A=4 areas, M=3]
    per_category: dict[int, dict[str, float]] = {}
    for k, cat_id in enumerate(evaluator.params.catIds):
        values = {}
        for key, iou_index in (("AP", slice(None)), ("AP50", 0), ("AP75", 5)):
            p = np.asarray(precision[iou_index, :, k, 0, -1])
            valid = p[p > -1]
            values[key] = float(valid.mean()) if valid.size else -1.0
        per_category[int(cat_id)] = values
    return CocoEvalResult(
        stats=[float(s) for s in evaluator.stats],
        per_category=per_category,
        summary=summary.getvalue(),
        num_results=len(detections),
    )


def _result_annotations(
    gt_doc: dict, results: Sequence[dict], gt_name: str, iou_type: str
) -> list[dict]:
    """Validate results and turn them into detection annotations (ids from 1, area, iscrowd)."""
    image_ids = {img["id"] for img in gt_doc["images"]}
    category_ids = {cat["id"] for cat in gt_doc["categories"]}
    out = []
    for i, res in enumerate(results):
        where = f"results[{i}]"
        if not isinstance(res, dict):
            raise FabricError(f"{where}: must be an object, got {type(res).__name__}")
        if res.get("image_id") not in image_ids:
            raise FabricError(f"{where}: image_id {res.get('image_id')!r} is not in {gt_name}")
        if res.get("category_id") not in category_ids:
            raise FabricError(
                f"{where}: category_id {res.get('category_id')!r} is not in {gt_name}"
            )
        if not is_number(res.get("score")):
            raise FabricError(f"{where}: 'score' must be a finite number, got {res.get('score')!r}")
        det = dict(res)
        if iou_type == "segm":
            det.update(_segm_fields(res, where))
        elif not is_xywh(res.get("bbox")):
            raise FabricError(f"{where}: 'bbox' must be [x, y, w, h] with w, h >= 0")
        else:
            det["area"] = float(res["bbox"][2]) * float(res["bbox"][3])
        det["id"] = i + 1
        det["iscrowd"] = 0
        out.append(det)
    return out


def _segm_fields(res: dict, where: str) -> dict:
    from pycocotools import mask as mask_utils

    rle = res.get("segmentation")
    if not (isinstance(rle, dict) and "counts" in rle and "size" in rle):
        raise FabricError(f"{where}: 'segmentation' must be an RLE {{size, counts}} object")
    return {
        "area": float(mask_utils.area(rle)),
        "bbox": [float(v) for v in mask_utils.toBbox(rle)],
    }
