"""``fabricnms visualize`` and the drawing it relies on: colours, sizes, inputs, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fabricnms.cli import app
from fabricnms.data.classes import class_names
from fabricnms.engine.writers import ResultWriter
from fabricnms.errors import FabricError
from fabricnms.model.types import Detections
from fabricnms.report.batch import render_frame
from fabricnms.report.compose import contact_sheet
from fabricnms.report.labels import FrameLabels, load_labels
from fabricnms.report.overlay import draw_boxes, style_for
from fabricnms.report.palette import FN_BGR, FP_BGR, TP_BGR, class_bgr

runner = CliRunner()
NAMES = class_names(20)
H, W = 200, 320
GREY = 100


def grey(h: int = H, w: int = W) -> np.ndarray:
    return np.full((h, w, 3), GREY, np.uint8)


@pytest.fixture()
def frames(tmp_path: Path) -> Path:
    folder = tmp_path / "frames"
    (folder / "sub").mkdir(parents=True)
    for name in ("f1.jpg", "f2.jpg", "sub/f3.png"):
        cv2.imwrite(str(folder / name), grey())
    return folder


def tianchi_anno(path: Path) -> Path:
    rows = [
        {"name": "f1.jpg", "defect_name": "结头", "bbox": [40.0, 50.0, 80.0, 90.0]},
        {"name": "f2.jpg", "defect_name": "破洞", "bbox": [200.0, 20.0, 260.0, 60.0]},
        {"name": "f2.jpg", "defect_name": "no such class", "bbox": [1.0, 1.0, 9.0, 9.0]},
    ]
    path.write_text(json.dumps(rows, ensure_ascii=True))
    return path


def test_draw_boxes_changes_pixels_on_the_box_only() -> None:
    img = grey(1000, 2446)
    out = draw_boxes(img, [(1000.0, 500.0, 1100.0, 600.0)], [3], NAMES, scores=[0.9])
    assert out.shape == img.shape and np.array_equal(img, grey(1000, 2446))  # input untouched
    assert tuple(out[550, 1000]) == class_bgr(3)  # left edge of the box
    assert tuple(out[550, 1050]) == (GREY,) * 3  # inside, away from label and edges
    assert tuple(out[900, 300]) == (GREY,) * 3  # far away
    label = out[440:500, 1000:1150]  # label sits above the box
    assert (label != GREY).any(axis=2).mean() > 0.3
    assert style_for(1000, 2446).thickness >= 3 and style_for(1000, 2446).font_scale > 1.0


def test_masks_are_blended() -> None:
    seg = [[10.0, 10.0, 60.0, 10.0, 60.0, 60.0, 10.0, 60.0]]  # polygon
    out = draw_boxes(grey(), [(10.0, 10.0, 60.0, 60.0)], [0], NAMES, segmentations=[seg])
    inside = out[40, 35].astype(int)
    expected = (np.full(3, GREY) * 0.55 + np.array(class_bgr(0)) * 0.45).astype(int)
    assert np.abs(inside - expected).max() <= 1
    assert tuple(out[150, 200]) == (GREY,) * 3


def test_compare_colours_tp_fp_fn() -> None:
    gt = FrameLabels()
    gt.add((20.0, 20.0, 60.0, 60.0), 3, None)
    gt.add((200.0, 100.0, 240.0, 140.0), 1, None)  # missed -> FN
    pred = FrameLabels(scores=[])
    pred.add((22.0, 21.0, 61.0, 60.0), 3, 0.9)  # IoU > 0.5, same class -> TP
    pred.add((120.0, 120.0, 160.0, 160.0), 3, 0.8)  # nothing there -> FP
    pred.add((200.0, 100.0, 240.0, 140.0), 2, 0.7)  # right place, wrong class -> FP
    out, counts = render_frame(grey(), gt, pred, "compare", NAMES)
    assert counts == {"tp": 1, "fp": 2, "fn": 1}
    assert tuple(out[40, 22]) == TP_BGR
    assert tuple(out[140, 120]) == FP_BGR
    assert tuple(out[120, 240]) == FP_BGR  # the wrong-class box is drawn over the FN box
    assert tuple(out[139, 200]) in (FP_BGR, FN_BGR)
    # FN alone
    only_gt = FrameLabels()
    only_gt.add((200.0, 100.0, 240.0, 140.0), 1, None)
    out2, counts2 = render_frame(grey(), only_gt, FrameLabels(scores=[]), "compare", NAMES)
    assert counts2 == {"tp": 0, "fp": 0, "fn": 1} and tuple(out2[120, 200]) == FN_BGR


def test_side_by_side_and_contact_sheet_sizes() -> None:
    gt, pred = FrameLabels(), FrameLabels(scores=[])
    out, _ = render_frame(grey(), gt, pred, "side-by-side", NAMES)
    assert out.shape[1] == 2 * W + 8 and out.shape[0] > H
    sheet = contact_sheet([(f"f{i}", grey()) for i in range(5)], columns=3, cell_w=160)
    assert sheet.shape[1] == 3 * 160 and sheet.shape[0] == 2 * (100 + 24)


def test_cli_tianchi_overlays_grid_and_resume(frames: Path, tmp_path: Path) -> None:
    anno = tianchi_anno(tmp_path / "anno_train.json")
    out = tmp_path / "vis"
    args = ["visualize", str(frames), "-a", str(anno), "--out", str(out), "--grid", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "3 drawn" in result.output and f"Results saved to {out}" in result.output
    f1 = cv2.imread(str(out / "f1.jpg"))
    assert f1.shape == (H, W, 3)
    b, _, r = f1[70, 40].astype(int)  # knot box edge: blue #4363d8 (through JPEG)
    assert b - r > 40 and b > GREY + 40
    assert np.abs(f1[150, 250].astype(int) - GREY).max() < 6  # far from any box
    f3 = cv2.imread(str(out / "f3.jpg"))
    assert np.abs(f3.astype(int) - GREY).max() < 6  # no labels: frame unchanged
    assert sorted(p.name for p in (out / "grid").iterdir()) == ["sheet_001.jpg", "sheet_002.jpg"]
    f2 = cv2.imread(str(out / "f2.jpg"))  # the unknown class's box (1..9 px) is not drawn
    assert np.abs(f2[5, 1].astype(int) - GREY).max() < 6
    b, _, r = f2[40, 200].astype(int)  # the hole is: red #e6194b
    assert r - b > 40 and r > GREY + 40

    stamp = (out / "f1.jpg").stat().st_mtime_ns
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "0 drawn, 3 already there" in again.output
    assert (out / "f1.jpg").stat().st_mtime_ns == stamp
    redo = runner.invoke(app, [*args, "--overwrite"])
    assert redo.exit_code == 0 and "3 drawn" in redo.output


def test_cli_coco_annotations_and_predictions_compare(frames: Path, tmp_path: Path) -> None:
    coco = {
        "images": [
            {"id": 1, "file_name": "frames/f1.jpg", "width": W, "height": H},
            {"id": 2, "file_name": "frames/f2.jpg", "width": W, "height": H},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 4, "bbox": [40, 50, 40, 40], "area": 1600}
        ],
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(NAMES)],
    }
    gt_path = tmp_path / "instances.json"
    gt_path.write_text(json.dumps(coco))
    # predictions from the predict writer: predictions.json + images.json
    pred_dir = tmp_path / "pred"
    with ResultWriter(pred_dir, NAMES, formats=("coco", "tianchi")) as w:
        w.add(
            frames / "f1.jpg",
            W,
            H,
            Detections(
                boxes=torch.tensor([[41.0, 50.0, 80.0, 91.0], [200.0, 100.0, 230.0, 130.0]]),
                scores=torch.tensor([0.9, 0.6]),
                labels=torch.tensor([3, 5]),
            ),
        )
        w.add(frames / "f2.jpg", W, H, Detections.empty())
        paths = w.finalize()
    assert load_labels(paths["coco"]).get("f1.jpg").scores == [0.9, 0.6]

    out = tmp_path / "cmp"
    result = runner.invoke(
        app,
        ["visualize", str(frames / "f1.jpg"), "-a", str(gt_path), "-p", str(paths["coco"]),
         "--mode", "compare", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "TP 1 FP 1 FN 0" in result.output
    img = cv2.imread(str(out / "f1.jpg"))
    assert img.shape == (H, W, 3)
    b, g, r = img[115, 200].astype(int)  # FP box edge: red
    assert r - g > 60 and r - b > 60

    # the Tianchi submission works as predictions too; --conf hides the 0.6 box
    sbs = tmp_path / "sbs"
    result = runner.invoke(
        app,
        ["visualize", str(frames / "f1.jpg"), "-a", str(gt_path), "-p", str(paths["tianchi"]),
         "--mode", "side-by-side", "--conf", "0.7", "--out", str(sbs)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    both = cv2.imread(str(sbs / "f1.jpg"))
    assert both.shape[1] == 2 * W + 8
    right = both[-H:, W + 8 :]
    assert np.abs(right[115, 200].astype(int) - GREY).max() < 8  # 0.6 box not drawn


def test_cli_default_run_dir_increments(frames: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(frames.parent)
    for expected in ("visualize", "visualize2"):
        result = runner.invoke(app, ["visualize", str(frames / "f1.jpg")])
        assert result.exit_code == 0, result.output
        assert (frames.parent / "runs" / "visualize" / expected / "f1.jpg").exists()


def test_cli_corrupt_frames_and_errors(frames: Path, tmp_path: Path) -> None:
    (frames / "bad.jpg").write_bytes(b"not a jpeg")
    result = runner.invoke(app, ["visualize", str(frames), "--out", str(tmp_path / "o1")])
    assert result.exit_code == 0
    assert "3 drawn, 1 unreadable" in result.output

    only_bad = runner.invoke(
        app, ["visualize", str(frames / "bad.jpg"), "--out", str(tmp_path / "o2")]
    )
    assert only_bad.exit_code == 1
    assert "error: " in only_bad.output and "no frame could be drawn" in only_bad.output
    assert "Traceback" not in only_bad.output

    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    r = runner.invoke(app, ["visualize", str(frames), "-a", str(broken)])
    assert r.exit_code == 1 and "broken.json" in r.output

    bad_entry = tmp_path / "sub.json"
    bad_entry.write_text(
        json.dumps([{"name": "f1.jpg", "category": 40, "bbox": [1, 1, 2, 2], "score": 1}])
    )
    r = runner.invoke(app, ["visualize", str(frames), "-p", str(bad_entry)])
    assert r.exit_code == 1 and "sub.json: entry 0: category 40 outside 1..20" in r.output

    r = runner.invoke(app, ["visualize", str(frames), "--mode", "compare"])
    assert r.exit_code == 1 and "needs --annotations and --predictions" in r.output
    r = runner.invoke(app, ["visualize", str(tmp_path / "nowhere")])
    assert r.exit_code == 1 and "no such file, folder or pattern" in r.output
    r = runner.invoke(app, ["visualize", str(tmp_path / "nothing*.jpg")])
    assert r.exit_code == 1 and "no images found" in r.output
    r = runner.invoke(app, ["visualize", str(frames), "--mode", "sideways"])
    assert r.exit_code == 2


def test_coco_results_need_an_image_list(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_text(
        json.dumps([{"image_id": 1, "category_id": 2, "bbox": [1, 1, 4, 4], "score": 0.5}])
    )
    with pytest.raises(FabricError, match=r"results\.json: COCO results need an image list"):
        load_labels(results)
    images = {
        "images": [{"id": 1, "file_name": "a/x.jpg", "width": 9, "height": 9}],
        "annotations": [],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }
    (tmp_path / "images.json").write_text(json.dumps(images))
    labels = load_labels(results)
    assert labels.class_names == ["a", "b"] and labels.is_prediction
    got = labels.get("x.jpg")
    assert got.boxes == [(1.0, 1.0, 5.0, 5.0)] and got.labels == [1] and got.scores == [0.5]
    assert labels.get("other.jpg").boxes == []
    results.write_text(
        json.dumps([{"image_id": 7, "category_id": 2, "bbox": [1, 1, 4, 4], "score": 0.5}])
    )
    with pytest.raises(FabricError, match="entry 0: image_id 7 is not in"):
        load_labels(results)
