"""The fabric's edge: where a frame shows background beyond the cloth, detections there and in
the selvedge band inside it are dropped, the frame says so, and predict reports it."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers_engine import save_detector
from helpers_fake import DarkBoxDetector
from typer.testing import CliRunner

import fabricnms
from fabricnms.cli import app
from fabricnms.data.classes import class_names
from fabricnms.data.cloth import ClothRegion, find_cloth
from fabricnms.data.coco import coco_annotation, coco_dataset, coco_image
from fabricnms.data.convert_output import coco_categories
from fabricnms.data.dataset import FrameRecord as DatasetFrame
from fabricnms.engine.evaluate import evaluate_frames
from fabricnms.engine.predict_summary import edge_summary
from fabricnms.engine.tiling import TileSettings, detect_frames
from fabricnms.model.detector import Detector


def cloth(width: int = 640, height: int = 256, seed: int = 0) -> np.ndarray:
    """``[H, W, 3]`` uint8 textured cloth: per-pixel noise around grey 150."""
    rng = np.random.default_rng(seed)
    grey = rng.integers(110, 190, (height, width), dtype=np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def test_a_dark_table_beside_the_cloth_is_found() -> None:
    frame = cloth()
    frame[:, :150] = 20  # the table
    region = find_cloth(frame)
    assert region.edges == ("left",)
    assert (region.y0, region.x1, region.y1) == (0, 640, 256)
    assert 150 - 8 <= region.x0 <= 150  # within half the flatness window of the edge


def test_a_blank_white_scan_end_and_a_cloth_end_below_are_found() -> None:
    frame = cloth()
    frame[:, 560:] = 255
    assert find_cloth(frame).edges == ("right",)
    frame = cloth(height=400)
    frame[250:] = 15  # the cloth ends: the table fills the lower part of every column
    region = find_cloth(frame)
    assert region.edges == ("bottom",)  # not left / right, though each column is half table
    assert 250 <= region.y1 <= 250 + 8


def test_cloth_alone_and_a_smooth_patch_of_it_have_no_edge() -> None:
    frame = cloth()
    assert find_cloth(frame).edges == ()
    frame[:, :200] = 150  # flat, but as bright as the cloth: smooth cloth, not a table
    assert find_cloth(frame).edges == ()
    dark = cloth()
    dark[100:130, 0:40] = 20  # a small dark blot at the border: no margin
    assert find_cloth(dark).edges == ()
    dark[40:200, 0:60] = 20  # a dark flat stain over 62 % of the left side: still no table
    assert find_cloth(dark).edges == ()
    assert find_cloth(np.full((64, 64, 3), 20, np.uint8)).edges == ()  # all flat: no guess


def test_keep_uses_the_box_centre_and_the_band_on_found_edges_only() -> None:
    region = ClothRegion(100, 0, 640, 256, 640, 256)
    boxes = torch.tensor(
        [[80.0, 10, 100, 30], [150, 10, 170, 30], [250, 10, 270, 30], [600, 240, 640, 256]]
    )
    assert region.keep(boxes, 0).tolist() == [False, True, True, True]
    assert region.keep(boxes, 64).tolist() == [False, False, True, True]  # right/bottom: border
    assert region.share((0, 0, 200, 256)) == pytest.approx(0.5)


def test_detections_on_the_table_and_the_selvedge_band_are_dropped() -> None:
    frame = cloth(640, 128)  # one row of 128 px tiles
    frame[:, :128] = 20
    frame[50:66, 400:416] = 10  # a dark defect on the cloth
    model = DarkBoxDetector()
    found = {}
    for band in (-1, 0, 64, 300):
        settings = TileSettings(tile=128, overlap=0.0, nms="none", conf=0.5, edge_band=band)
        (det,) = detect_frames(model, [frame], settings)
        found[band] = sorted(round(float(b[0])) for b in det.boxes)
        assert (det.cloth is None) == (band < 0)
    assert found[-1] == [0, 400]  # edges not looked for: the table is a "defect"
    assert found[0] == found[64] == [400]
    assert found[300] == []  # the defect lies within 300 px of the edge


def test_predict_records_the_cloth_and_says_what_went_uninspected(tmp_path: Path) -> None:
    names = class_names(20)
    torch.manual_seed(0)
    model = Detector(num_classes=20, width=4, neck_channels=16, embed_dim=8)
    weights = save_detector(tmp_path / "cold.pt", model, names)
    frames = tmp_path / "roll"
    frames.mkdir()
    table = cloth(256, 128)
    table[:, :64] = 20
    cv2.imwrite(str(frames / "a.png"), table)
    cv2.imwrite(str(frames / "b.png"), cloth(256, 128, seed=1))
    out = tmp_path / "out"
    args = [frames, "--weights", weights, "--conf", 0.25, "--edge-band", 32, "--out", out]
    run = CliRunner().invoke(app, ["predict", *map(str, args)])
    assert run.exit_code == 0, run.output
    assert "Fabric edge: the fabric's edge is in view on 1 frame(s)" in run.stderr
    images = json.loads((out / "images.json").read_text())["images"]
    by_name = {im["name"]: im for im in images}
    cloth_a = by_name["a.png"]["cloth"]
    assert cloth_a["edges"] == ["left"] and cloth_a["inspected"][0] == cloth_a["box"][0] + 32
    assert "cloth" not in by_name["b.png"]
    edges = json.loads((out / "summary.json").read_text())["fabric_edges"]
    assert edges["frames"] == 1 and edges["band_px"] == 32
    assert "32 px inside it" in edges["warning"]
    caveats = json.loads((out / "roll_report.json").read_text())["summary"]["caveats"]
    assert "fabric_edge" in [c["code"] for c in caveats]  # the verdict is provisional
    overlay = cv2.imread(str(next((out / "overlays").glob("a*.jpg"))), 0)
    assert 60 < overlay[:, :50].mean() < 110  # the table (grey 20) veiled: not inspected
    assert abs(float(overlay[:, 200:].mean()) - float(table[:, 200:].mean())) < 5  # cloth as is
    (api_a,) = fabricnms.load(weights).predict([table], conf=0.25, edge_band=32)
    assert api_a.cloth == cloth_a
    # visualize draws the run's results with the same veil (images.json beside them), also
    # when the run found nothing (an empty predictions.json)
    assert json.loads((out / "predictions.json").read_text()) == []
    vis = tmp_path / "vis"
    args = [frames, "--predictions", out / "predictions.json", "--out", vis]
    run = CliRunner().invoke(app, ["visualize", *map(str, args)])
    assert run.exit_code == 0, run.output
    drawn = {p.name[0]: cv2.imread(str(p), 0) for p in vis.glob("*.jpg")}
    assert 60 < drawn["a"][:, :50].mean() < 110
    assert abs(float(drawn["a"][:, 200:].mean()) - float(table[:, 200:].mean())) < 5
    plain = cv2.imread(str(frames / "b.png"), 0)
    assert abs(float(drawn["b"].mean()) - float(plain.mean())) < 5  # no edge: nothing veiled


def test_edge_summary_is_silent_without_edges() -> None:
    assert edge_summary(0, 128) == {"frames": 0, "band_px": 128, "warning": None}
    assert edge_summary(0, 128, hidden=0)["warning"] is None
    assert "count as missed" not in edge_summary(2, 128, hidden=0)["warning"]
    assert "where 3 labelled defect(s) lie" in edge_summary(2, 128, hidden=3)["warning"]


def test_eval_counts_the_labelled_defects_it_could_not_inspect(tmp_path: Path) -> None:
    frame = cloth(640, 128)
    frame[:, :128] = 20
    frame[50:66, 400:416] = 10  # found
    frame[50:66, 150:166] = 10  # within the 64-px band: not inspected
    path = tmp_path / "f.png"
    cv2.imwrite(str(path), frame)
    boxes = np.array([[400, 50, 416, 66], [150, 50, 166, 66]], np.float32)
    record = DatasetFrame(path, "f.png", 1, 640, 128, boxes, np.zeros(2, np.int64))
    gt = coco_dataset(
        [coco_image(1, "f.png", 640, 128)],
        [coco_annotation(i + 1, 1, 1, [b[0], b[1], 16, 16]) for i, b in enumerate(boxes)],
        coco_categories(1),
    )
    settings = TileSettings(tile=128, overlap=0.0, nms="none", conf=0.5, edge_band=64)
    report = evaluate_frames(DarkBoxDetector(), [record], gt, ["hole"], settings)
    assert report.edges is not None
    assert (report.edges["frames"], report.edges["true_boxes_uninspected"]) == (1, 1)
    assert report.as_dict()["fabric_edges"]["band_px"] == 64
    assert len(report.results) == 1  # only the defect on the inspected cloth
