"""``fabricnms export`` to ONNX and ``predict --weights model.onnx`` through onnxruntime."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fabricnms.cli import app
from fabricnms.data.classes import class_names
from fabricnms.engine.checkpoint import (
    DEFAULT_WEIGHTS,
    inference_state,
    load_checkpoint,
    save_checkpoint,
)
from fabricnms.errors import FabricError
from fabricnms.model.boxes import pairwise_iou, xywh_to_xyxy

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

ROLL = Path(__file__).resolve().parents[1] / "examples" / "roll_scans"
runner = CliRunner()


def _export(*args: object) -> object:
    return runner.invoke(app, ["export", *(str(a) for a in args)])


@pytest.fixture(scope="module")
def small_frame(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 768 x 512 crop of an example-roll frame with two defects (a knot and a warp line)."""
    folder = tmp_path_factory.mktemp("frame")
    image = cv2.imread(str(ROLL / "frame_0004.jpg"))
    cv2.imwrite(str(folder / "crop.png"), image[100:612, 500:1268])
    return folder / "crop.png"


@pytest.fixture(scope="module")
def shipped_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "default.onnx"
    r = _export("--weights", DEFAULT_WEIGHTS, "--out", out, "--dynamic")
    assert r.exit_code == 0, r.output
    return out


def _predict(frame: Path, weights: Path, out: Path, *extra: str) -> list[dict]:
    args = ["predict", str(frame), "--weights", str(weights), "--out", str(out), "--conf", "0.05"]
    r = runner.invoke(app, [*args, "--no-overlays", "--threads", "1", *extra])
    assert r.exit_code == 0, r.output
    return json.loads((out / "predictions.json").read_text())


def _assert_same(onnx: list[dict], torch_: list[dict]) -> None:
    """Same count and classes, each box IoU >= 0.99 with its torch twin, scores within 1e-3."""
    assert len(onnx) == len(torch_) > 0
    onnx = sorted(onnx, key=lambda d: -d["score"])
    torch_ = sorted(torch_, key=lambda d: -d["score"])
    assert [d["category_id"] for d in onnx] == [d["category_id"] for d in torch_]
    a = xywh_to_xyxy(torch.tensor([d["bbox"] for d in onnx]))
    b = xywh_to_xyxy(torch.tensor([d["bbox"] for d in torch_]))
    assert pairwise_iou(a, b).diagonal().min() >= 0.99
    assert np.abs(np.array([d["score"] for d in onnx]) - [d["score"] for d in torch_]).max() <= 1e-3


def test_shipped_model_onnx_gives_the_torch_detections(
    shipped_onnx: Path, small_frame: Path, tmp_path: Path
) -> None:
    meta = json.loads(shipped_onnx.with_suffix(".json").read_text())
    assert meta["network"]["masks"] and meta["network"]["input_size"] is None
    assert meta["checkpoint"]["class_names"] == class_names(20)
    assert {"operating_point", "fabric_stats"} <= meta["checkpoint"].keys()  # carried over
    _assert_same(
        _predict(small_frame, shipped_onnx, tmp_path / "onnx"),
        _predict(small_frame, DEFAULT_WEIGHTS, tmp_path / "torch"),
    )


def test_onnx_masks_match_torch_masks(
    shipped_onnx: Path, small_frame: Path, tmp_path: Path
) -> None:
    onnx = _predict(small_frame, shipped_onnx, tmp_path / "onnx", "--masks")
    torch_ = _predict(small_frame, DEFAULT_WEIGHTS, tmp_path / "torch", "--masks")
    _assert_same(onnx, torch_)
    by_score = lambda ds: sorted(ds, key=lambda d: -d["score"])  # noqa: E731
    for a, b in zip(by_score(onnx), by_score(torch_), strict=True):
        assert abs(a["area"] - b["area"]) <= 0.02 * b["area"] + 2


def _without_mask_branch(path: Path) -> Path:
    """The shipped checkpoint with its mask branch removed (real weights, no masks)."""
    ckpt = load_checkpoint(DEFAULT_WEIGHTS)
    state = {k: v for k, v in inference_state(ckpt).items() if not k.startswith("mask_branch.")}
    config = {**ckpt["detector_config"], "mask_prototypes": 0}
    save_checkpoint(
        path, {**ckpt, "model_state": state, "ema_state": None, "detector_config": config}
    )
    return path


def test_checkpoint_without_mask_branch_exports_fixed_size(
    small_frame: Path, tmp_path: Path
) -> None:
    weights = _without_mask_branch(tmp_path / "boxes.pt")
    r = _export("--weights", weights, "--tile", "512")
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "boxes.json").read_text())
    assert meta["network"]["masks"] is False
    assert meta["network"]["input_size"] == [512, 512]
    assert meta["network"]["outputs"] == ["cls_o2m", "cls_o2o", "ltrb", "quality", "embed"]
    _assert_same(
        _predict(small_frame, tmp_path / "boxes.onnx", tmp_path / "o", "--tile", "512"),
        _predict(small_frame, weights, tmp_path / "t", "--tile", "512"),
    )
    # a fixed-size graph refuses another network input size with a one-line hint
    onnx = ["predict", str(small_frame), "--weights", str(tmp_path / "boxes.onnx")]
    r = runner.invoke(app, onnx)
    assert r.exit_code == 1
    assert "export with --dynamic" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = runner.invoke(app, [*onnx, "--tile", "512", "--masks"])
    assert r.exit_code == 1 and "no mask branch" in r.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "tflite"], "--format 'tflite': expected one of onnx"),
        ([], "not a fabricnms checkpoint"),
    ],
)
def test_bad_format_or_input_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    bogus = tmp_path / "notes.pt"
    bogus.write_text("not a checkpoint")
    weights = DEFAULT_WEIGHTS if args else bogus
    r = _export("--weights", weights, "--out", tmp_path / "m.onnx", *args)
    assert r.exit_code == 1
    assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_onnx_without_onnxruntime_is_a_one_line_hint(
    shipped_onnx: Path, small_frame: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    r = runner.invoke(app, ["predict", str(small_frame), "--weights", str(shipped_onnx)])
    assert r.exit_code == 1
    assert len(r.stderr.strip().splitlines()) == 1 and 'pip install "fabricnms[export]"' in r.stderr


def test_onnx_without_its_metadata_is_one_line(shipped_onnx: Path, tmp_path: Path) -> None:
    from fabricnms.engine.onnx_backend import read_onnx_meta

    lone = tmp_path / "lone.onnx"
    lone.write_bytes(shipped_onnx.read_bytes())
    with pytest.raises(FabricError, match=r"no metadata lone\.json beside it"):
        read_onnx_meta(lone)
