"""COCO build / write / load-with-validation / check / pycocotools evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fabricnms.data.coco import (
    check_coco,
    coco_annotation,
    coco_dataset,
    coco_image,
    load_coco,
    validate_coco,
    write_coco,
)
from fabricnms.data.coco_eval import STAT_KEYS, coco_eval
from fabricnms.errors import FabricError


def small_gt() -> dict:
    """3 images 200x100 (the third a normal frame), 2 categories, 4 boxes."""
    images = [coco_image(i, f"f{i}.jpg", 200, 100) for i in (1, 2, 3)]
    boxes = [
        (1, 1, (10.0, 10.0, 40.0, 30.0)),
        (1, 2, (100.0, 20.0, 60.0, 50.0)),
        (2, 1, (0.5, 0.25, 12.3, 80.7)),
        (2, 2, (150.0, 0.0, 50.0, 100.0)),
    ]
    anns = [coco_annotation(k + 1, img, cat, box) for k, (img, cat, box) in enumerate(boxes)]
    cats = [
        {"id": 1, "name": "knot", "supercategory": "defect"},
        {"id": 2, "name": "hole", "supercategory": "defect"},
    ]
    return coco_dataset(images, anns, cats, "test")


def perfect_results(gt: dict) -> list[dict]:
    return [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": 0.9,
        }
        for a in gt["annotations"]
    ]


def test_builders_write_plain_types_and_full_precision(tmp_path: Path) -> None:
    ann = coco_annotation(np.int64(3), np.int64(1), np.int32(2), np.array([0.1, 0.2, 1 / 3, 2.5]))
    assert ann == {
        "id": 3,
        "image_id": 1,
        "category_id": 2,
        "bbox": [0.1, 0.2, 1 / 3, 2.5],
        "area": (1 / 3) * 2.5,
        "iscrowd": 0,
        "segmentation": [],
    }
    assert all(type(v) is int for v in (ann["id"], ann["image_id"], ann["category_id"]))
    gt = small_gt()
    gt["annotations"].append(ann | {"id": 5, "image_id": 3})
    path = tmp_path / "a" / "gt.json"
    write_coco(path, gt)
    loaded = load_coco(path)
    assert loaded["annotations"][-1]["bbox"][2] == 1 / 3
    assert loaded == json.loads(path.read_text(encoding="utf-8"))
    assert loaded["info"]["description"] == "test" and loaded["licenses"] == []


def test_write_rejects_non_json_values(tmp_path: Path) -> None:
    gt = small_gt()
    gt["annotations"][0]["score"] = np.float32(0.5)
    with pytest.raises(FabricError, match=r"gt\.json: cannot serialise"):
        write_coco(tmp_path / "gt.json", gt)
    gt["annotations"][0]["score"] = float("nan")
    with pytest.raises(FabricError, match="cannot serialise"):
        write_coco(tmp_path / "gt.json", gt)
    assert list(tmp_path.iterdir()) == []


def test_load_fills_missing_fields_without_mutating_input() -> None:
    doc = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 3]}],
        "categories": [{"id": 1, "name": "knot"}],
    }
    fixed = validate_coco(doc)
    ann = fixed["annotations"][0]
    assert (ann["area"], ann["iscrowd"], ann["segmentation"]) == (6.0, 0, [])
    assert fixed["info"] == {} and fixed["licenses"] == []
    assert "area" not in doc["annotations"][0] and "info" not in doc


def _with(mutate) -> dict:
    gt = small_gt()
    mutate(gt)
    return gt


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda g: g.pop("images"), "'images' is missing"),
        (lambda g: g["annotations"][1].update(id=1), r"annotations\[1\]: duplicate id 1"),
        (lambda g: g["annotations"][0].update(id=0), "ids must start at 1"),
        (lambda g: g["annotations"][0].update(id="7"), "'id' must be an integer"),
        (lambda g: g["annotations"][2].update(image_id=9), r"annotations\[2\].*image_id 9"),
        (lambda g: g["annotations"][2].update(category_id=0), "category_id 0 is not in"),
        (lambda g: g["annotations"][3].update(bbox=[1, 2, 3]), r"annotations\[3\].*'bbox'"),
        (lambda g: g["annotations"][3].update(bbox=[1, 2, -3, 4]), "w, h >= 0"),
        (lambda g: g["annotations"][3].update(iscrowd=2), "'iscrowd' must be 0 or 1"),
        (lambda g: g["images"][1].update(width=0), r"images\[1\] \(id 2\): 'width' must be > 0"),
        (lambda g: g["images"].append(g["images"][0]), r"images\[3\]: duplicate id 1"),
        (lambda g: g["categories"][0].pop("name"), r"categories\[0\].*'name'"),
    ],
)
def test_load_reports_file_entry_and_problem(tmp_path: Path, mutate, expected: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_with(mutate)), encoding="utf-8")
    with pytest.raises(FabricError, match=expected) as info:
        load_coco(path)
    assert str(info.value).startswith(f"{path}: ")
    assert "\n" not in str(info.value)


def test_load_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(FabricError, match=r"nope\.json: no such COCO file"):
        load_coco(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [\n  {"id": 1,}\n]}', encoding="utf-8")
    with pytest.raises(FabricError, match=r"bad\.json: malformed JSON at line 2, column 12"):
        load_coco(bad)
    bad.write_text("[]", encoding="utf-8")
    with pytest.raises(FabricError, match="must be a JSON object"):
        load_coco(bad)


def test_check_counts_tiny_out_of_bounds_duplicates_and_empty_images() -> None:
    gt = small_gt()
    gt["annotations"][0]["bbox"] = [10.0, 10.0, 1.0, 30.0]  # 1 px wide
    gt["annotations"][1]["bbox"] = [180.0, 20.0, 30.0, 50.0]  # beyond width 200
    gt["annotations"][2]["bbox"] = [-0.5, 0.0, 5.0, 5.0]  # left of 0
    gt["annotations"][3]["id"] = 1  # duplicate annotation id
    check = check_coco(gt)
    assert check.as_dict() == {
        "images": 3,
        "images_without_annotations": 1,
        "annotations": 4,
        "boxes_per_category": {"knot": 2, "hole": 2},
        "tiny_boxes": 1,
        "out_of_bounds": 2,
        "duplicate_ids": 1,
    }


def test_self_evaluation_is_perfect(tmp_path: Path, capsys) -> None:
    gt = small_gt()
    path = tmp_path / "gt.json"
    write_coco(path, gt)
    result = coco_eval(path, perfect_results(gt))
    assert result.stats[0] == pytest.approx(1.0)
    assert result.stats[1] == pytest.approx(1.0)
    assert result.stats[8] == pytest.approx(1.0)  # AR@100
    assert result.per_category == {
        1: {"AP": pytest.approx(1.0), "AP50": pytest.approx(1.0), "AP75": pytest.approx(1.0)},
        2: {"AP": pytest.approx(1.0), "AP50": pytest.approx(1.0), "AP75": pytest.approx(1.0)},
    }
    assert list(result.as_dict()) == list(STAT_KEYS)
    assert result.summary.count("Average Precision") == 6
    assert result.num_results == 4
    assert capsys.readouterr().out == ""  # pycocotools' prints are captured


def test_partial_and_wrong_results_score_lower() -> None:
    gt = small_gt()
    half = perfect_results(gt)[:2]  # image 1 only
    result = coco_eval(gt, half)
    assert result.stats[8] == pytest.approx(0.5)  # recall 2/4
    assert result.stats[0] == pytest.approx(51 / 101)  # precision 1 at recalls 0..0.5 of 101
    # a false positive on the normal frame with a higher score than every true positive
    fp = {"image_id": 3, "category_id": 1, "bbox": [1.0, 1.0, 20.0, 20.0], "score": 0.99}
    result = coco_eval(gt, [*perfect_results(gt), fp])
    assert result.per_category[1]["AP"] < 1.0 and result.per_category[2]["AP"] == pytest.approx(1)
    # boxes shifted to IoU 0.6 count at AP50 but not at AP75
    shifted = [
        r | {"bbox": [r["bbox"][0] + r["bbox"][2] / 4, *r["bbox"][1:]]} for r in perfect_results(gt)
    ]
    result = coco_eval(gt, shifted)
    assert result.stats[1] == pytest.approx(1.0) and result.stats[2] == pytest.approx(0.0)


def test_empty_results_give_zero_not_a_crash() -> None:
    result = coco_eval(small_gt(), [])
    assert result.num_results == 0
    assert result.stats[0] == 0.0 and result.stats[8] == 0.0
    # buckets without ground truth stay -1 (here: no large boxes of area > 96^2)
    assert result.stats[5] == -1.0
    assert all(v == {"AP": 0.0, "AP50": 0.0, "AP75": 0.0} for v in result.per_category.values())


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ({"image_id": 99, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}, "image_id 99"),
        ({"image_id": 1, "category_id": 7, "bbox": [0, 0, 1, 1], "score": 0.5}, "category_id 7"),
        ({"image_id": 1, "category_id": 1, "bbox": [0, 0, 1], "score": 0.5}, "'bbox'"),
        ({"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}, "'score'"),
    ],
)
def test_bad_results_are_reported(result: dict, expected: str) -> None:
    with pytest.raises(FabricError, match=rf"results\[1\]: .*{expected}"):
        coco_eval(small_gt(), [perfect_results(small_gt())[0], result])


def test_segm_needs_ground_truth_masks() -> None:
    with pytest.raises(FabricError, match="without segmentation"):
        coco_eval(small_gt(), [], iou_type="segm")
    with pytest.raises(FabricError, match="iou_type"):
        coco_eval(small_gt(), [], iou_type="keypoints")
