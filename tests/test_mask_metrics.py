"""Mask metrics against synthetic true masks (fabricnms.engine.masks)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from fabricnms.data.coco import coco_annotation, coco_dataset, coco_image
from fabricnms.data.convert import convert_release
from fabricnms.data.convert_output import coco_categories
from fabricnms.data.convert_types import ConvertOptions
from fabricnms.data.synth import ReleaseOptions, write_release
from fabricnms.engine.masks import (
    evaluate_masks,
    filled_box_rle,
    load_true_masks,
    mask_iou_matrix,
    segm_ground_truth,
)
from fabricnms.errors import FabricError

H, W = 60, 80


def _rle(mask: np.ndarray) -> dict:
    enc = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in enc["size"]], "counts": enc["counts"].decode("ascii")}


def _disk(cx: float, cy: float, r: float) -> np.ndarray:
    ys, xs = np.mgrid[0:H, 0:W] + 0.5
    return (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r


def _box_of(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [
        float(xs.min()),
        float(ys.min()),
        float(xs.max() + 1 - xs.min()),
        float(ys.max() + 1 - ys.min()),
    ]


def _scene(tmp_path: Path) -> tuple[dict, Path, list[np.ndarray]]:
    """Two defect images (a disk of hole, a disk of stain) and one normal image."""
    disks = [_disk(30, 25, 10), _disk(50, 35, 12)]
    images = [
        coco_image(1, "defect_Images/a.jpg", W, H, name="a.jpg"),
        coco_image(2, "defect_Images/b.jpg", W, H, name="b.jpg"),
        coco_image(3, "normal_Images/c.jpg", W, H, name="c.jpg"),
    ]
    anns = [
        coco_annotation(1, 1, 1, _box_of(disks[0])),
        coco_annotation(2, 2, 2, _box_of(disks[1])),
    ]
    gt = coco_dataset(images, anns, coco_categories(20))
    sidecar = {
        "info": "test",
        "images": {
            "a.jpg": [
                {
                    "entry": 0,
                    "defect_name": "破洞",
                    "category_id": 1,
                    "segmentation": _rle(disks[0]),
                }
            ],
            "b.jpg": [
                {
                    "entry": 1,
                    "defect_name": "水渍",
                    "category_id": 2,
                    "segmentation": _rle(disks[1]),
                }
            ],
        },
    }
    path = tmp_path / "masks.json"
    path.write_text(json.dumps(sidecar, ensure_ascii=False), encoding="utf-8")
    return gt, path, disks


def test_mask_iou_matrix_hand_numbers() -> None:
    a = np.zeros((H, W), bool)
    a[10:20, 10:20] = True  # 100 px
    b = np.zeros((H, W), bool)
    b[15:25, 10:20] = True  # overlaps a in 50 px
    ious = mask_iou_matrix([_rle(a), _rle(b)], [_rle(b)])
    assert ious.shape == (2, 1)
    assert ious[0, 0] == pytest.approx(50 / 150) and ious[1, 0] == pytest.approx(1.0)
    assert mask_iou_matrix([], [_rle(a)]).shape == (0, 1)
    box = filled_box_rle([10, 10, 10, 10], H, W)
    assert mask_iou_matrix([box], [_rle(a)])[0, 0] == pytest.approx(1.0)


def test_perfect_masks_beat_the_filled_box_baseline(tmp_path: Path) -> None:
    gt, path, disks = _scene(tmp_path)
    segm = segm_ground_truth(gt, load_true_masks(path), str(path))
    assert [a["category_id"] for a in segm["annotations"]] == [1, 2]
    assert segm["annotations"][0]["area"] == disks[0].sum()
    assert segm["annotations"][0]["bbox"] == _box_of(disks[0])
    results = [
        {
            "image_id": i + 1,
            "category_id": i + 1,
            "bbox": _box_of(d),
            "score": 0.9,
            "segmentation": _rle(d),
        }
        for i, d in enumerate(disks)
    ]
    results.append(  # a false positive on the normal frame
        {
            "image_id": 3,
            "category_id": 1,
            "bbox": [5, 5, 10, 10],
            "score": 0.1,
            "segmentation": filled_box_rle([5, 5, 10, 10], H, W),
        }
    )
    report = evaluate_masks(segm, results)
    assert report.segm.stats[0] == pytest.approx(1.0)
    assert report.mean_best_iou == pytest.approx(1.0)
    # a filled box covers a disk with IoU ~ pi / 4: matched at IoU 0.50..0.75, missed above
    assert 0.74 < report.box_mean_best_iou < 0.81
    assert report.box_ceiling_iou == pytest.approx(report.box_mean_best_iou)
    assert report.box_segm.stats[1] == pytest.approx(1.0)  # AP50
    assert report.box_segm.stats[0] == pytest.approx(0.6, abs=0.05)
    assert report.as_dict()["true_masks"] == 2
    # shrinking one predicted mask lowers IoU and AP
    results[0]["segmentation"] = _rle(_disk(30, 25, 6))
    worse = evaluate_masks(segm, results)
    assert worse.mean_best_iou == pytest.approx((1 + (6 / 10) ** 2) / 2, abs=0.05)
    assert worse.segm.stats[0] < 0.6


def test_bad_inputs_name_the_file_and_entry(tmp_path: Path) -> None:
    gt, path, _ = _scene(tmp_path)
    with pytest.raises(FabricError, match="no such masks file"):
        load_true_masks(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{", encoding="utf-8")
    with pytest.raises(FabricError, match="malformed JSON"):
        load_true_masks(bad)
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["images"]["b.jpg"][0]["segmentation"] = {"size": [H], "counts": "x"}
    bad.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(FabricError, match=r"images\['b.jpg'\]\[0\]: 'segmentation'"):
        load_true_masks(bad)
    doc["images"]["b.jpg"][0]["segmentation"] = _rle(np.zeros((H + 1, W), bool))
    bad.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(FabricError, match="mask size"):
        segm_ground_truth(gt, load_true_masks(bad), str(bad))
    del doc["images"]["b.jpg"]
    bad.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(FabricError, match=r"no true masks for annotated image 'b\.jpg'"):
        segm_ground_truth(gt, load_true_masks(bad), str(bad))
    segm = segm_ground_truth(gt, load_true_masks(path))
    with pytest.raises(FabricError, match=r"results\[0\]: no RLE 'segmentation'"):
        evaluate_masks(segm, [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}])


@pytest.mark.parametrize("scheme", [20, 34])
def test_synth_sidecar_matches_the_converted_split(tmp_path: Path, scheme: int) -> None:
    release = tmp_path / "synth"
    opts = ReleaseOptions(
        n_images=5, width=160, height=128, masks=True, normal_fraction=0.2, seed=3
    )
    summary = write_release(release, opts)
    converted = convert_release(
        [release], tmp_path / "out", ConvertOptions(scheme=scheme, val_fraction=0.0)
    )
    masks = load_true_masks(release / "Annotations" / "masks.json")
    segm = segm_ground_truth(converted.train, masks)
    assert len(segm["annotations"]) == summary.boxes == len(converted.train["annotations"])
    # the true mask lies inside its loose annotation box
    loose = {(a["image_id"], a["category_id"]): a["bbox"] for a in converted.train["annotations"]}
    for ann in segm["annotations"]:
        x, y, w, h = ann["bbox"]
        lx, ly, lw, lh = loose[(ann["image_id"], ann["category_id"])]
        assert (
            lx - 1e-6 <= x
            and x + w <= lx + lw + 1e-6
            and ly - 1e-6 <= y
            and y + h <= ly + lh + 1e-6
        )
    results = [
        {**{k: ann[k] for k in ("image_id", "category_id", "bbox", "segmentation")}, "score": 1.0}
        for ann in segm["annotations"]
    ]
    report = evaluate_masks(segm, results)
    assert report.segm.stats[0] == pytest.approx(1.0)
    assert 0 < report.box_ceiling_iou <= 1 and not math.isnan(report.box_ceiling_iou)
