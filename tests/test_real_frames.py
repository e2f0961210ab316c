"""``benchmarks/real_frames.py``: the figures on hand-made detections, and end to end on tiny
generated sets (never on real frames) with a tiny fake checkpoint, against ``predict``."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest
import torch
from helpers_engine import save_detector

from fabricnms.data.coco import coco_annotation, coco_dataset, coco_image, write_coco
from fabricnms.engine.masks import filled_box_rle
from fabricnms.engine.operating_point import OP_KEY, OperatingPoint
from fabricnms.engine.predict import PredictConfig, run_predict
from fabricnms.model.detector import Detector
from fabricnms.report.records import DetectionRecord, FrameRecord

pytestmark = pytest.mark.usefixtures("one_thread")
NAMES = ["hole", "stain"]
BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "real_frames.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("real_frames", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["real_frames"] = module  # dataclasses resolve their annotations there
    spec.loader.exec_module(module)
    return module


def _truth(bench: ModuleType, image_id: int, defective: bool, boxes: list, cats: list) -> object:
    xyxy = torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4)
    return bench.FrameTruth(image_id, Path(f"f{image_id}.png"), defective, xyxy, cats)


def _result(bench: ModuleType, truth: object, dets: list[tuple], size: int = 100) -> object:
    records = [DetectionRecord(tuple(map(float, box)), label, score) for box, label, score in dets]
    return bench.FrameResult(truth, FrameRecord(str(truth.path), size, size, records))


def test_figures_on_hand_made_detections(bench: ModuleType) -> None:
    real = bench.RealSet("hand", [], {"hole": 1, "stain": 2})
    results = [
        # two stains: one found with the right class, one by a hole box at IoU 1/6 >= 0.1;
        # the third detection touches nothing (stray)
        _result(
            bench,
            _truth(bench, 1, True, [[10, 10, 20, 20], [50, 50, 80, 80]], [2, 2]),
            [([10, 10, 20, 20], 1, 0.9), ([50, 50, 80, 60], 0, 0.5), ([0, 90, 5, 95], 1, 0.4)],
        ),
        # frame-level defective, not flagged; counts for frame accuracy only
        _result(bench, _truth(bench, 2, True, [], []), []),
        # clean frames: one with two false alarms (flagged, wrong), one right
        _result(bench, _truth(bench, 3, False, [], []), [([0, 0, 5, 5], 0, 0.3)] * 2),
        _result(bench, _truth(bench, 4, False, [], []), []),
    ]
    s = bench.score_set(real, results, NAMES, [])
    assert (s["frames"], s["boxes"], s["boxed_frames"], s["clean_frames"]) == (4, 2, 1, 2)
    assert s["recall_any_class"] == 1.0 and s["recall_right_class"] == 0.5
    assert s["stray_per_labelled_frame"] == 1.0
    assert s["false_alarms_per_clean_frame"] == 1.0
    assert s["frame_accuracy"] == 0.5  # frames 1 and 4 right
    assert s["detections_per_frame"] == 1.25 and s["by_class"] == {"stain": 2, "hole": 3}
    unlabelled = bench.RealSet("u", [])
    t = bench.FrameTruth(1, Path("u.png"), None, torch.zeros(0, 4, dtype=torch.float64), [])
    u = bench.score_set(unlabelled, [_result(bench, t, [([0, 0, 5, 5], 1, 0.3)])], NAMES, [])
    assert u["frame_accuracy"] is None and u["recall_any_class"] is None
    assert u["detections_per_frame"] == 1.0
    with pytest.raises(Exception, match="'knot' is not a category"):
        bench.score_set(real, results, ["hole", "knot"], [])


def test_mask_figures_on_hand_made_masks(bench: ModuleType, tmp_path: Path) -> None:
    mask = np.zeros((100, 100), np.uint8)
    mask[10:20, 10:30] = 255  # the stain fills the left half of its 40 x 10 box
    cv2.imwrite(str(tmp_path / "m.png"), mask)
    truth = _truth(bench, 1, True, [[10, 10, 50, 20]], [2])
    truth.mask = tmp_path / "m.png"
    res = _result(bench, truth, [([10, 10, 50, 20], 1, 0.9)])
    exact = filled_box_rle([10, 10, 20, 10], 100, 100)
    box = filled_box_rle([10, 10, 40, 10], 100, 100)
    res.masks = {"raw": [exact], "refined": [box], "box": [box]}
    m = bench.score_masks(bench.RealSet("hand", [], {"hole": 1, "stain": 2}), [res])
    assert (m["frames"], m["defects"], m["matched"]) == (1, 1, 1)
    assert m["raw"]["matched_mask_iou"] == 1.0 and m["raw"]["mask_AP"] == pytest.approx(1.0)
    assert m["box"]["matched_mask_iou"] == 0.5 and m["box"]["mask_AP50"] == pytest.approx(1.0)
    assert m["refined"]["mask_AP"] < m["raw"]["mask_AP"]


def _write_set(root: Path, labelled: bool, seed: int) -> Path:
    """Three 96x64 frames (dark blobs on noise): two defective with boxes and masks, one clean."""
    rng = np.random.default_rng(seed)
    (root / "masks").mkdir(parents=True)
    images, anns = [], []
    for i in range(3):
        frame = rng.normal(140, 8, (64, 96)).clip(0, 255).astype(np.uint8)
        mask = np.zeros_like(frame)
        if i < 2:
            x, y = 10 + 30 * i, 20
            frame[y : y + 12, x : x + 16] = 30
            mask[y : y + 12, x : x + 16] = 255
            anns.append(coco_annotation(len(anns) + 1, i + 1, 2, [x, y, 16, 12]))
        cv2.imwrite(str(root / f"f{i}.png"), frame)
        cv2.imwrite(str(root / "masks" / f"f{i}.png"), mask)
        images.append(coco_image(i + 1, f"f{i}.png", 96, 64, defective=i < 2))
    if labelled:
        cats = [{"id": i + 1, "name": n} for i, n in enumerate(NAMES)]
        write_coco(root / "labels.json", coco_dataset(images, anns, cats))
    return root


def _hot_checkpoint(path: Path) -> Path:
    """A random tiny detector with a mask branch whose ``stain`` scores are raised, so every
    frame gets detections."""
    torch.manual_seed(0)
    model = Detector(num_classes=2, width=4, neck_channels=16, embed_dim=8, mask_prototypes=4)
    with torch.no_grad():
        for level in model.head.levels:
            for conv in (level.cls_o2m, level.cls_o2o):
                conv.bias.copy_(torch.tensor([-6.0, 3.0]))
            level.quality.bias.fill_(3.0)
    return save_detector(path, model, NAMES)


def test_end_to_end_agrees_with_predict(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sets = [_write_set(tmp_path / "boxes", True, 0), _write_set(tmp_path / "plain", False, 1)]
    weights = _hot_checkpoint(tmp_path / "w.pt")
    flags = ["--weights", str(weights), "--conf", "0.3", "--tile", "64", "--masks"]
    assert bench.main([*map(str, sets), *flags, "--json"]) == 0
    out = capsys.readouterr()
    report = json.loads(out.out)
    assert "| boxes | 3 | 2 |" in out.err and "| boxes | raw |" in out.err
    boxed, plain = report["sets"]
    assert boxed["detections"] > 0 and plain["detections"] > 0
    assert (boxed["set"], boxed["labelled"], boxed["boxes"], boxed["clean_frames"]) == (
        "boxes",
        True,
        2,
        1,
    )
    assert plain["labelled"] is False and plain["frame_accuracy"] is None
    assert boxed["masks"]["defects"] == 2 and plain["masks"] is None
    for entry, folder in zip(report["sets"], sets, strict=True):
        cfg = PredictConfig(
            sources=[str(folder)],
            weights=str(weights),
            conf=0.3,
            tile=64,
            masks=True,
            device="cpu",
            overlays=False,
            roll=False,
        )
        summary = run_predict(cfg, out=tmp_path / f"pred_{folder.name}").summary
        assert entry["detections"] == summary["detections"]
        assert entry["by_class"] == summary["defects_by_class"]
    assert bench.main([str(tmp_path / "nowhere"), "--weights", str(weights)]) == 1
    assert "nowhere: not a folder" in capsys.readouterr().err


def test_own_operating_point_applies_per_class_thresholds_as_predict(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --conf the checkpoint's operating point is used with its per-class thresholds:
    a ``stain`` threshold above every score silences the (stain-only) hot detector, in the
    benchmark as in ``predict``."""
    folder = _write_set(tmp_path / "boxes", True, 0)
    weights = _hot_checkpoint(tmp_path / "w.pt")
    ckpt = torch.load(weights, weights_only=True)
    ckpt[OP_KEY] = OperatingPoint(0.3, {"stain": 1.0}, "test", 0.1).to_dict()
    torch.save(ckpt, weights)
    assert bench.main([str(folder), "--weights", str(weights), "--tile", "64", "--json"]) == 0
    entry = json.loads(capsys.readouterr().out)["sets"][0]
    cfg = PredictConfig(
        sources=[str(folder)], weights=str(weights), tile=64, device="cpu", overlays=False
    )
    summary = run_predict(cfg, out=tmp_path / "pred").summary
    assert entry["detections"] == summary["detections"] == 0
