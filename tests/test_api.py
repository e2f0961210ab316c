"""The Python API: the README's example runs as written, and eval mirrors the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

import fabricnms
from fabricnms.errors import FabricError
from tests.helpers_engine import NAMES, boosted_checkpoint, make_dataset

ROOT = Path(__file__).resolve().parents[1]


def _readme_api_example() -> str:
    section = (ROOT / "README.md").read_text().split("## Python API", 1)[1]
    return re.findall(r"```python\n(.*?)```", section, re.S)[0]


def test_readme_api_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_readme_api_example(), "README.md", "exec"), namespace)
    real, blank = namespace["results"]
    assert real.source.endswith("frame_0004.jpg") and blank.source == "array[1]"
    assert (real.width, real.height) == (2446, 1000)
    assert len(real) >= 1 and real.boxes.shape == (len(real), 4) and real.masks is not None
    assert real.mask(0).shape == (1000, 2446) and real.mask(0).any()
    assert isinstance(real.fabric_shift, float)  # the shipped model carries fabric statistics
    assert (tmp_path / "default.onnx").is_file() and (tmp_path / "default.json").is_file()


def test_api_predict_matches_the_cli_engine_and_checks_arrays(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", n_train=1, n_val=2)
    weights, _ = boosted_checkpoint(tmp_path / "w.pt", NAMES, data)
    model = fabricnms.load(weights)
    assert model.class_names == NAMES
    grey = np.full((64, 96), 120, np.uint8)
    (result,) = model.predict(grey, conf=0.001, tile=64)
    assert (result.width, result.height) == (96, 64)
    assert all(n in NAMES for n in result.class_names)
    with pytest.raises(FabricError, match=r"array\[0\]: expected \[H, W, 3\]"):
        model.predict([np.zeros((8, 8, 3), np.float32)])
    with pytest.raises(FabricError, match=r"missing\.jpg"):
        model.predict([tmp_path / "missing.jpg"])
    run = model.eval(data, project=tmp_path / "runs", tile=64)
    assert run.summary["weights"] == str(weights.resolve())
    assert (run.run_dir / "eval.json").is_file()


def test_api_scores_fabric_shift_and_applies_the_operating_point_as_predict_does(
    tmp_path: Path,
) -> None:
    from fabricnms.engine.calibrate import LabelledImage, calibrate_model, write_calibration
    from fabricnms.engine.predict import PredictConfig, run_predict

    rng = np.random.default_rng(0)
    weave = [rng.integers(120, 145, (96, 160, 3), dtype=np.uint8) for _ in range(14)]
    weights, model = boosted_checkpoint(tmp_path / "w.pt", NAMES, tmp_path)
    held = [LabelledImage(im, np.zeros((0, 4)), np.zeros(0)) for im in weave[12:]]
    point, stats = calibrate_model(model, NAMES, weave[:12], held, "noise", 0.1)
    calibrated = write_calibration(weights, point, stats, tmp_path / "cal.pt")
    frame = tmp_path / "f.png"
    cv2.imwrite(str(frame), weave[0])
    (result,) = fabricnms.load(calibrated).predict([frame])
    run = run_predict(
        PredictConfig(sources=[str(frame)], weights=str(calibrated)), out=tmp_path / "o"
    )
    (image,) = json.loads((run.out_dir / "images.json").read_text())["images"]
    assert isinstance(result.fabric_shift, float)
    assert result.fabric_shift == pytest.approx(image["fabric_shift"], abs=1e-3)
    assert len(result) == run.summary["detections"]
    assert (result.scores >= point.conf).all()
