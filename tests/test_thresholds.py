"""Per-class --conf and the --classes filter: parsing, merging, and what predict keeps."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers_fake import DarkBoxDetector
from typer.testing import CliRunner

from fabricnms.cli import app
from fabricnms.data.classes import class_names
from fabricnms.engine.operating_point import resolve_operating_point
from fabricnms.engine.predict import PredictConfig, run_predict
from fabricnms.engine.thresholds import EXCLUDED, apply_overrides, parse_classes, parse_conf
from fabricnms.errors import FabricError

NAMES = class_names(20)


def test_parse_conf_and_classes() -> None:
    assert parse_conf(["0.3", "hole=0.5", " stain = 0.1"]) == (0.3, {"hole": 0.5, "stain": 0.1})
    assert parse_conf(None) == (None, {})
    for bad in (["1.5"], ["hole=abc"], ["=0.2"], ["x"]):
        with pytest.raises(FabricError, match="--conf"):
            parse_conf(bad)
    assert parse_classes(" hole, stain ,") == ["hole", "stain"]


def test_overrides_keep_the_base_and_filter_classes() -> None:
    choice = resolve_operating_point(0.3, {})
    out = apply_overrides(choice, {"hole": 0.5}, ["hole", "stain"], NAMES)
    assert out.point.conf == 0.3 and out.origin == choice.origin
    assert out.point.per_class["hole"] == 0.5 and "stain" not in out.point.per_class
    assert out.point.per_class["knot"] == EXCLUDED and len(out.point.per_class) == 19
    with pytest.raises(FabricError, match="no class 'hol'"):
        apply_overrides(choice, {"hol": 0.5}, [], NAMES)


def test_predict_applies_per_class_thresholds_and_the_filter(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    img = np.full((64, 96, 3), 150, np.uint8)
    img[20:40, 30:50] = 0  # one dark defect: the fake model reports a class-0 (hole) box
    cv2.imwrite(str(folder / "f1.png"), img)

    def run(**kw: object) -> int:
        cfg = PredictConfig(sources=[str(folder)], overlays=False, roll=False, conf=0.25, **kw)
        out = tmp_path / f"o{len(list(tmp_path.iterdir()))}"
        result = run_predict(cfg, out=out, model=DarkBoxDetector(), class_names=NAMES)
        return result.summary["detections"]

    assert run() == 1
    assert run(per_class_conf={"hole": 1.0}) == 0  # hole's own threshold above its score
    assert run(classes=["hole"]) == 1 and run(classes=["stain"]) == 0


def test_cli_rejects_a_bad_conf_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["predict", str(tmp_path), "--conf", "hole=2"])
    text = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2 and "expected a score in [0, 1]" in text
    assert "Traceback" not in result.output
