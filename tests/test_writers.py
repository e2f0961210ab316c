"""Streaming result writers: journal, resume, COCO / Tianchi / CSV files read back."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from fabricnms.data.classes import class_names
from fabricnms.engine.writer_sinks import CSV_CALIBRATED_COLUMNS, CSV_COLUMNS
from fabricnms.engine.writers import JOURNAL_NAME, ResultWriter
from fabricnms.errors import FabricError
from fabricnms.model.mask_head import MaskCrops
from fabricnms.model.types import Detections
from fabricnms.report.calibration import Calibration

NAMES = class_names(20)


def dets(rows: list[tuple[float, float, float, float, int, float]]) -> Detections:
    if not rows:
        return Detections.empty()
    t = torch.tensor(rows, dtype=torch.float32)
    return Detections(boxes=t[:, :4], scores=t[:, 5], labels=t[:, 4].long())


FRAMES = {
    "frame2.jpg": [(10.0, 20.0, 40.0, 60.0, 3, 0.9), (100.5, 0.0, 130.25, 1000.0, 9, 0.55)],
    "frame10.jpg": [(5.0, 5.0, 25.0, 15.0, 0, 0.7)],
    "frame1.jpg": [],
}


def write_all(out: Path, frames_dir: Path, **kw: object) -> dict[str, Path]:
    with ResultWriter(out, NAMES, **kw) as w:  # type: ignore[arg-type]
        for name, rows in FRAMES.items():
            assert w.add(frames_dir / name, 2446, 1000, dets(rows))
        return w.finalize()


def test_all_formats_read_back(tmp_path: Path) -> None:
    paths = write_all(tmp_path / "out", tmp_path / "roll", calibration=Calibration(2.0, 4.0))
    assert {"journal", "coco", "images", "tianchi", "csv"} <= set(paths)

    images = json.loads(paths["images"].read_text())
    # every frame, zero-detection ones included, ids in journal order
    assert [(i["id"], i["name"]) for i in images["images"]] == [
        (1, "frame2.jpg"),
        (2, "frame10.jpg"),
        (3, "frame1.jpg"),
    ]
    assert images["images"][0]["file_name"] == "frame2.jpg"
    assert images["info"]["image_root"] == str(tmp_path / "roll")
    assert [c["id"] for c in images["categories"]] == list(range(1, 21))

    preds = json.loads(paths["coco"].read_text())
    assert isinstance(preds, list) and len(preds) == 3
    assert preds[0] == {
        "image_id": 1,
        "category_id": 4,
        "bbox": [10.0, 20.0, 30.0, 40.0],
        "score": 0.9,
    }
    assert preds[1]["bbox"] == [100.5, 0.0, 29.75, 1000.0] and preds[1]["category_id"] == 10
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(paths["images"]))
        res = gt.loadRes(str(paths["coco"]))
    assert sorted(res.getImgIds()) == [1, 2, 3]
    assert len(res.getAnnIds(imgIds=[1])) == 2 and len(res.getAnnIds(imgIds=[3])) == 0
    assert res.loadAnns(res.getAnnIds(imgIds=[2]))[0]["area"] == pytest.approx(200.0)

    sub = json.loads(paths["tianchi"].read_text())
    assert [set(r) for r in sub] == [{"name", "category", "bbox", "score"}] * 3
    assert sub[1] == {
        "name": "frame2.jpg",
        "category": 10,
        "bbox": [100.5, 0.0, 130.25, 1000.0],
        "score": 0.55,
    }
    assert sub[2]["name"] == "frame10.jpg" and sub[2]["category"] == 1

    with open(paths["csv"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == [*CSV_COLUMNS, *CSV_CALIBRATED_COLUMNS]
    assert len(rows) == 3  # one row per defect
    first = rows[0]
    assert (first["frame"], first["image_id"], first["class_id"], first["class_name"]) == (
        "frame2.jpg",
        "1",
        "4",
        "knot",
    )
    # 30 px across at 2 px/mm; 40 px along at 4 px/mm; centre x 25 px -> 12.5 mm
    assert float(first["w_mm"]) == 15.0 and float(first["h_mm"]) == 10.0
    assert float(first["x_mm"]) == 12.5
    # natural roll order frame1, frame2, frame10: frame2 starts at 1000 px; centre y 40 px
    assert float(first["y_along_m"]) == pytest.approx((1000 + 40) / 4 / 1000)
    last = rows[2]  # frame10 starts at 2000 px; centre y 10 px
    assert float(last["y_along_m"]) == pytest.approx((2000 + 10) / 4 / 1000)


def test_csv_without_calibration_has_no_physical_columns(tmp_path: Path) -> None:
    paths = write_all(tmp_path / "out", tmp_path, formats=("csv",))
    assert set(paths) == {"journal", "csv"}
    header = paths["csv"].read_text().splitlines()[0].split(",")
    assert header == list(CSV_COLUMNS)


def test_resume_skips_journaled_frames(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with ResultWriter(out, NAMES) as w:
        w.add(tmp_path / "a.jpg", 64, 32, dets([(1, 2, 3, 4, 1, 0.5)]))
        w.add(tmp_path / "b.jpg", 64, 32, dets([]))
    with pytest.raises(FabricError, match="earlier run"):
        ResultWriter(out, NAMES)
    with ResultWriter(out, NAMES, resume=True) as w:
        assert w.done_frames() == {str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")}
        assert w.is_done(tmp_path / "a.jpg") and not w.is_done(tmp_path / "c.jpg")
        assert not w.add(tmp_path / "a.jpg", 64, 32, dets([(9, 9, 19, 19, 2, 0.9)]))
        assert w.add(tmp_path / "c.jpg", 64, 32, dets([(5, 5, 9, 9, 2, 0.8)]))
        paths = w.finalize()
    images = json.loads(paths["images"].read_text())["images"]
    assert [(i["id"], i["name"]) for i in images] == [(1, "a.jpg"), (2, "b.jpg"), (3, "c.jpg")]
    preds = json.loads(paths["coco"].read_text())
    assert [(p["image_id"], p["category_id"]) for p in preds] == [(1, 2), (3, 3)]


def test_torn_last_line_is_dropped_on_resume(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with ResultWriter(out, NAMES) as w:
        w.add(tmp_path / "a.jpg", 64, 32, dets([]))
    journal = out / JOURNAL_NAME
    intact = journal.stat().st_size
    with open(journal, "a") as fh:
        fh.write('{"image_id": 2, "frame": "/x/b.jpg", "wid')
    with ResultWriter(out, NAMES, resume=True) as w:
        assert w.done_frames() == {str(tmp_path / "a.jpg")}
    assert journal.stat().st_size == intact


def test_broken_middle_line_and_class_mismatch_are_errors(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with ResultWriter(out, NAMES) as w:
        w.add(tmp_path / "a.jpg", 64, 32, dets([]))
    with pytest.raises(FabricError, match="journal was written with classes"):
        ResultWriter(out, ["a", "b"], resume=True)
    lines = (out / JOURNAL_NAME).read_text().splitlines()
    (out / JOURNAL_NAME).write_text("\n".join([lines[0], "{oops", lines[1]]) + "\n")
    with pytest.raises(FabricError, match=r"detections.jsonl: line 2 is not valid JSON"):
        ResultWriter(out, NAMES, resume=True)


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(FabricError, match="unknown output format 'yolo'"):
        ResultWriter(tmp_path / "o1", NAMES, formats=("coco", "yolo"))
    with (
        ResultWriter(tmp_path / "o2", NAMES) as w,
        pytest.raises(FabricError, match="class index 20"),
    ):
        w.add(tmp_path / "a.jpg", 64, 32, dets([(1, 1, 5, 5, 20, 0.5)]))


def test_masks_become_rle_segmentation(tmp_path: Path) -> None:
    mask = torch.zeros(1, 32, 64, dtype=torch.bool)
    mask[0, 4:10, 8:20] = True
    crops = MaskCrops(torch.tensor([[8, 4]]), [mask[0, 4:10, 8:20]], 32, 64)
    det = Detections(
        boxes=torch.tensor([[8.0, 4.0, 20.0, 10.0]]),
        scores=torch.tensor([0.8]),
        labels=torch.tensor([1]),
        masks=crops,
    )
    with ResultWriter(tmp_path / "out", NAMES, formats=("coco",)) as w:
        w.add(tmp_path / "a.jpg", 64, 32, det)
        paths = w.finalize()
    (row,) = json.loads(paths["coco"].read_text())
    seg = row["segmentation"]
    assert seg["size"] == [32, 64]
    decoded = mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()})
    assert decoded.sum() == 72 and np.array_equal(decoded.astype(bool), mask[0].numpy())
    assert row["area"] == 72
