"""``fabricnms predict`` end to end on tiny frames and tiny checkpoints.

Two checkpoints: a random-init detector (scores ~0.01, so nothing passes ``--conf 0.25``) and a
"hot" one whose class-0 (``hole``) biases are raised so every frame gets a detection. The hot
model's candidates all carry the same score and random-init boxes, so how many holes a frame
gets depends on how float rounding breaks those ties: the tests check that every output
agrees with the count the run reports, not the count itself.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from helpers_fake import DarkBoxDetector
from pycocotools.coco import COCO
from typer.testing import CliRunner

from fabricnms.cli import app
from fabricnms.data.classes import class_names
from fabricnms.engine.checkpoint import make_checkpoint, save_checkpoint
from fabricnms.engine.predict import PredictConfig, run_predict
from fabricnms.engine.writer_sinks import CSV_CALIBRATED_COLUMNS, CSV_COLUMNS
from fabricnms.engine.writers import iter_journal
from fabricnms.errors import FabricError
from fabricnms.model.detector import Detector

runner = CliRunner()
NAMES = class_names(20)
W, H = 96, 64


def _checkpoint(path: Path, hot: bool) -> Path:
    torch.manual_seed(0)
    model = Detector(num_classes=len(NAMES), width=4, neck_channels=16, embed_dim=8)
    if hot:
        with torch.no_grad():
            for level in model.head.levels:
                for conv in (level.cls_o2m, level.cls_o2o):
                    conv.bias.fill_(-6.0)
                    conv.bias[0] = 3.0
                level.quality.bias.fill_(3.0)
    ckpt = make_checkpoint(
        model_state=model.state_dict(),
        ema_state=None,
        detector_config=model.config,
        class_names=NAMES,
        category_ids=list(range(1, len(NAMES) + 1)),
    )
    save_checkpoint(path, ckpt)
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("weights")
    return {"cold": _checkpoint(root / "cold.pt", False), "hot": _checkpoint(root / "hot.pt", True)}


def write_frames(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """``f1.png .. f<count>.png``, W x H grey-ish fabric noise."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(1, count + 1):
        path = folder / f"f{i}.png"
        cv2.imwrite(str(path), rng.integers(100, 160, (H, W, 3), dtype=np.uint8))
        paths.append(path)
    return paths


def invoke(*args: object) -> object:
    return runner.invoke(app, ["predict", *(str(a) for a in args)])


def journal_frames(out: Path) -> list[str]:
    return [rec.path for _, rec in iter_journal(out / "detections.jsonl")]


def test_outputs_exist_and_read_back(tmp_path: Path, weights: dict[str, Path]) -> None:
    frames = write_frames(tmp_path / "roll", 3)
    out = tmp_path / "out"
    r = invoke(frames[0].parent, "--weights", weights["hot"], "--out", out)
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith(("1/3", "2/3", "3/3"))]
    assert len(lines) == 3
    counts = []
    for i, line in enumerate(lines):
        found = re.fullmatch(
            rf"{i + 1}/3 {re.escape(str(frames[i]))} {W}x{H}: (\d+) hole, .* ms", line
        )
        assert found, line
        counts.append(int(found.group(1)))
    total = sum(counts)
    assert min(counts) >= 1
    assert r.stderr.strip().splitlines()[-1] == f"Results saved to {out.resolve()}"

    coco = COCO(str(out / "images.json"))
    assert sorted(im["file_name"] for im in coco.dataset["images"]) == [
        "f1.png",
        "f2.png",
        "f3.png",
    ]
    results = coco.loadRes(str(out / "predictions.json"))
    anns = results.dataset["annotations"]
    assert len(anns) == total and {a["category_id"] for a in anns} == {1}
    assert all(a["bbox"][2] > 0 and a["bbox"][3] > 0 for a in anns)

    submission = json.loads((out / "submission.json").read_text())
    names = [f"f{i + 1}.png" for i, c in enumerate(counts) for _ in range(c)]
    assert sorted(s["name"] for s in submission) == names
    for s in submission:
        assert set(s) == {"name", "category", "bbox", "score"} and s["category"] == 1
        x1, y1, x2, y2 = s["bbox"]
        assert 0 <= x1 < x2 <= W and 0 <= y1 < y2 <= H and 0.25 <= s["score"] <= 1

    with open(out / "detections.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == CSV_COLUMNS + CSV_CALIBRATED_COLUMNS  # a roll: mm columns
    assert [r["class_name"] for r in rows] == ["hole"] * total
    # 2.0 px/mm by default: box width in mm is half its pixel width
    assert float(rows[0]["w_mm"]) == pytest.approx(
        (float(rows[0]["x2"]) - float(rows[0]["x1"])) / 2, abs=0.06
    )

    overlays = sorted((out / "overlays").iterdir())
    assert [p.name for p in overlays] == ["f1.jpg", "f2.jpg", "f3.jpg"]
    assert cv2.imread(str(overlays[0])).shape == (H, W, 3)
    report = json.loads((out / "roll_report.json").read_text())
    assert report["roll"]["frames"] == 3 and (out / "roll_report.html").is_file()
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["weights"] == str(weights["hot"].resolve()) and config["roll"] is True
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processed"] == 3 and summary["defects_by_class"] == {"hole": total}
    assert set(summary["ms_per_frame"]) == {"preprocess", "inference", "postprocess", "write"}


def test_run_dirs_increment_and_results_are_deterministic(
    tmp_path: Path, weights: dict[str, Path]
) -> None:
    frames = write_frames(tmp_path / "roll", 2)
    project = tmp_path / "runs"
    for _ in range(2):
        r = invoke(*frames, "--weights", weights["hot"], "--project", project)
        assert r.exit_code == 0, r.output
    first, second = project / "predict" / "predict", project / "predict" / "predict2"
    assert (first / "submission.json").read_bytes() == (second / "submission.json").read_bytes()
    assert not (first / "roll_report.json").exists()  # two file sources: not a roll


def test_glob_list_16_bit_and_grey_inputs(tmp_path: Path, weights: dict[str, Path]) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    ramp = np.linspace(0, 65535, W * H).reshape(H, W).astype(np.uint16)
    cv2.imwrite(str(folder / "deep.png"), np.dstack([ramp] * 3))
    cv2.imwrite(str(folder / "grey.png"), (ramp >> 8).astype(np.uint8))
    cv2.imwrite(str(folder / "small.jpg"), np.full((20, 30, 3), 128, np.uint8))
    listing = tmp_path / "list.txt"
    listing.write_text("mixed/small.jpg\n")
    r = invoke(
        folder / "*.png", listing, "--weights", weights["cold"], "--out", tmp_path / "o", "--json"
    )
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["processed"] == 3 and summary["skipped"] == [] and summary["detections"] == 0
    assert summary["roll"] is None
    assert (
        "1/3 " in r.stderr
        and f"{W}x{H}: no defects" in r.stderr
        and "30x20: no defects" in r.stderr
    )
    images = json.loads((tmp_path / "o" / "images.json").read_text())["images"]
    assert {(im["name"], im["width"], im["height"]) for im in images} == {
        ("deep.png", W, H),
        ("grey.png", W, H),
        ("small.jpg", 30, 20),
    }


def test_corrupt_frame_is_skipped_and_listed(tmp_path: Path, weights: dict[str, Path]) -> None:
    frames = write_frames(tmp_path / "roll", 2)
    bad = tmp_path / "roll" / "f3.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "out"
    args = [tmp_path / "roll", "--weights", weights["cold"], "--out", out, "--no-overlays"]
    r = runner.invoke(app, ["--quiet", "predict", *map(str, args)])
    assert r.exit_code == 0, r.output
    assert f"3/3 skipped: {bad}: cannot be decoded" in r.stderr
    assert "1/3 " not in r.stderr  # --quiet: only skipped frames get a line
    assert "Skipped 1 unreadable frame(s):" in r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processed"] == 2 and [s["path"] for s in summary["skipped"]] == [str(bad)]
    assert journal_frames(out) == [str(p) for p in frames]
    assert not (out / "overlays").exists()
    assert json.loads((out / "roll_report.json").read_text())["roll"]["frames"] == 2


def test_all_frames_corrupt_exits_1(tmp_path: Path, weights: dict[str, Path]) -> None:
    folder = tmp_path / "roll"
    folder.mkdir()
    for name in ("a.jpg", "b.png"):
        (folder / name).write_bytes(b"junk")
    r = invoke(folder, "--weights", weights["cold"], "--project", tmp_path / "runs")
    assert r.exit_code == 1
    last = r.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("error: no frame could be read: 2 unreadable")
        and "Traceback" not in r.output
    )


def test_shards_partition_the_frames(tmp_path: Path, weights: dict[str, Path]) -> None:
    frames = write_frames(tmp_path / "roll", 5)
    seen: list[str] = []
    for i in range(3):
        cfg = PredictConfig(
            sources=[str(tmp_path / "roll")], weights=str(weights["cold"]), shard=f"{i}/3"
        )
        result = run_predict(cfg, out=tmp_path / f"s{i}")
        assert result.verdict is None  # a shard is not graded as a roll by default
        seen += journal_frames(tmp_path / f"s{i}")
    assert seen == [str(p) for p in frames]  # union = all, disjoint, contiguous blocks in order


def test_resume_skips_written_frames(tmp_path: Path, weights: dict[str, Path]) -> None:
    frames = write_frames(tmp_path / "roll", 4)
    out = tmp_path / "out"
    listing = tmp_path / "first.txt"
    listing.write_text("\n".join(str(p) for p in frames[:2]))
    assert invoke(listing, "--weights", weights["hot"], "--out", out).exit_code == 0

    again = invoke(tmp_path / "roll", "--weights", weights["hot"], "--out", out)
    assert again.exit_code == 1 and "results of an earlier run exist" in again.stderr
    other = invoke(
        tmp_path / "roll", "--weights", weights["hot"], "--out", out, "--resume", "--conf", "0.5"
    )
    assert other.exit_code == 1 and "used conf=0.25, not 0.5" in other.stderr
    no_out = invoke(tmp_path / "roll", "--weights", weights["hot"], "--resume")
    assert no_out.exit_code == 2

    r = invoke(tmp_path / "roll", "--weights", weights["hot"], "--out", out, "--resume")
    assert r.exit_code == 0, r.output
    assert "1/2 " in r.stderr and f"2/2 {frames[3]}" in r.stderr  # only the two new frames
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processed"] == 4 and summary["resumed"] == 2  # the whole run counts
    assert "4 frames (2 written before the resume)" in r.stderr
    assert journal_frames(out) == [str(p) for p in frames]
    images = json.loads((out / "images.json").read_text())["images"]
    assert [im["id"] for im in images] == [1, 2, 3, 4]
    per_frame = [len(rec.detections) for _, rec in iter_journal(out / "detections.jsonl")]
    assert min(per_frame) >= 1
    assert len(json.loads((out / "predictions.json").read_text())) == sum(per_frame)
    assert summary["detections"] == sum(per_frame)
    assert json.loads((out / "roll_report.json").read_text())["roll"]["frames"] == 4


def test_fail_exit_code(tmp_path: Path, weights: dict[str, Path]) -> None:
    write_frames(tmp_path / "roll", 2)
    base = [tmp_path / "roll", "--weights", weights["hot"], "--project", tmp_path / "runs"]
    strict = invoke(*base, "--max-points", "0.001", "--fail-exit-code")
    assert strict.exit_code == 3, strict.output
    assert "Roll: FAIL" in strict.stderr
    assert invoke(*base, "--max-points", "0.001").exit_code == 0
    lenient = invoke(*base, "--max-points", "1e9", "--fail-exit-code")
    assert lenient.exit_code == 0 and "Roll: PASS (provisional)" in lenient.stderr
    assert "caveat: scale assumed" in lenient.stderr  # no --px-per-mm
    strictest = invoke(*base, "--max-points", "1e9", "--fail-on-provisional")
    assert strictest.exit_code == 3 and "provisional (--fail-on-provisional)" in strictest.stderr
    measured = [*base, "--max-points", "1e9", "--px-per-mm", "2", "--roll", "--conf", "0.25"]
    assert invoke(*measured, "--fail-on-provisional").exit_code == 0


def test_missing_weights_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_frames(tmp_path / "roll", 1)
    r = invoke(tmp_path / "roll", "--weights", tmp_path / "nope.pt", "--project", tmp_path / "runs")
    assert r.exit_code == 1
    assert r.stderr.strip() == f"error: {tmp_path / 'nope.pt'}: checkpoint file not found"
    monkeypatch.setattr("fabricnms.engine.predict.DEFAULT_WEIGHTS", tmp_path / "default.pt")
    r = invoke(tmp_path / "roll", "--project", tmp_path / "runs")
    assert r.exit_code == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "pass --weights PATH" in r.stderr
    assert not (tmp_path / "runs").exists()  # nothing created before the model loaded


@pytest.mark.parametrize(("nms", "expected"), [("dnms", 1), ("none", 3)])
def test_line_across_tiles_is_one_defect(tmp_path: Path, nms: str, expected: int) -> None:
    frame = np.full((320, 64, 3), 150, np.uint8)
    frame[10:310, 26:38] = 20  # a warp line through all three 128 px tiles
    cv2.imwrite(str(tmp_path / "line.png"), frame)
    cfg = PredictConfig(sources=[str(tmp_path / "line.png")], tile=128, overlap=0.25, nms=nms)
    result = run_predict(
        cfg, out=tmp_path / nms, model=DarkBoxDetector().eval(), class_names=["broken_warp"]
    )
    assert result.summary["detections"] == expected
    if nms == "dnms":
        (det,) = json.loads((tmp_path / nms / "submission.json").read_text())
        x1, y1, x2, y2 = det["bbox"]
        assert 24 <= x1 <= 28 and 36 <= x2 <= 40  # on the line
        assert y1 < 128 - 32 and y2 > 192 + 32  # longer than any one tile's fragment


def test_model_without_class_names_is_rejected(tmp_path: Path) -> None:
    write_frames(tmp_path / "roll", 1)
    with pytest.raises(FabricError, match="class names"):
        run_predict(PredictConfig(sources=[str(tmp_path / "roll")]), model=DarkBoxDetector())
