"""``fabricnms adapt``: a tiny run end to end, resumable, and its bad inputs."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers_engine import boosted_checkpoint
from typer.testing import CliRunner

from fabricnms.cli import app
from fabricnms.data.classes import class_names
from fabricnms.engine.adapt import AdaptConfig, run_adapt
from fabricnms.engine.adapt_data import CleanFrame, usable_frames
from fabricnms.engine.adapt_sources import read_clean_frames, spread_order
from fabricnms.engine.operating_point import OP_KEY
from fabricnms.engine.predict import PredictConfig, run_predict
from fabricnms.engine.shift import STATS_KEY
from fabricnms.errors import FabricError

runner = CliRunner()
NAMES = class_names(20)


@pytest.fixture(scope="module")
def start(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("adapt_start")
    return boosted_checkpoint(root / "tiny.pt", NAMES, root)[0]


def _clean_frame(folder: Path, width: int = 480, height: int = 200) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    grey = 130 + 14 * np.sin(2 * np.pi * xx / 5.0) * np.sin(2 * np.pi * yy / 5.0)
    grey = np.clip(grey + rng.normal(0, 3, (height, width)), 0, 255).astype(np.uint8)
    path = folder / "clean.png"
    cv2.imwrite(str(path), grey)
    return path


def test_tiny_adapt_writes_calibrated_checkpoint_predict_uses(start: Path, tmp_path: Path) -> None:
    frame = _clean_frame(tmp_path / "clean")
    cfg = AdaptConfig(
        sources=[str(frame)],
        weights=str(start),
        minutes=1.0,
        window=128,
        train_windows=8,
        val_windows=2,
        batch=4,
        epochs=1,
    )
    result = run_adapt(cfg, project=tmp_path / "runs", name="tiny")
    run = tmp_path / "runs" / "adapt" / "tiny"
    assert result.run_dir == run
    weights = ("weights/adapted.pt", "weights/best.pt", "weights/last.pt")
    for name in (*weights, "config.yaml", "metrics.csv", "adapt.json"):
        assert (run / name).is_file(), name
    assert result.weights == run / "weights" / "adapted.pt"
    ckpt = torch.load(result.weights, weights_only=True)
    # the uniform weight average of the fine-tune's best epoch and the start weights
    tuned = torch.load(run / "weights" / "best.pt", weights_only=True)["model_state"]
    first = torch.load(start, weights_only=True)["model_state"]
    for key, value in ckpt["model_state"].items():
        if value.is_floating_point():
            assert torch.allclose(value, (tuned[key] + first[key]) / 2, atol=1e-6), key
    op = ckpt[OP_KEY]
    assert 0.05 <= op["conf"] <= 1.0 and op["false_alarms_per_frame"] == 0.1
    assert op["area_frames"] == pytest.approx(480 * 0.3 * 200 / 2446000, abs=1e-3)
    assert ckpt[STATS_KEY]["limit"] > 0 and ckpt["class_names"] == NAMES
    # the self-check: defects painted into the held-out part, found at the operating point
    assert op["painted_defects"] > 0 and 0.0 <= op["painted_recall"] <= 1.0
    summary = json.loads((run / "adapt.json").read_text())
    assert summary["done"] and summary["window"] == 128
    # the same fabric: detections only above the operating point, no shift warning
    res = run_predict(
        PredictConfig(sources=[str(frame.parent)], weights=str(result.weights), overlays=False),
        out=tmp_path / "pred",
    )
    assert res.summary["threshold"]["origin"] == "checkpoint"
    # 0.012 frame-areas of held-out fabric cannot show 0.1 false alarms per frame: said so
    assert "too few to show it: it may let through about 85" in res.summary["threshold"]["line"]
    assert res.summary["conf"] == op["conf"]
    assert res.summary["fabric_shift"]["warning"] is None
    # resuming a finished run redoes only the calibration
    again = run_adapt(cfg, project=tmp_path / "runs", name="tiny", resume=True)
    assert again.run_dir == run and again.summary["epochs"] == result.summary["epochs"]


def test_cli_states_the_budget_per_frame_of_the_material(
    start: Path, tmp_path: Path, monkeypatch
) -> None:
    import fabricnms.engine.adapt as adapt

    real = adapt.run_adapt
    tiny = {"window": 128, "train_windows": 8, "val_windows": 2, "batch": 4, "epochs": 1}
    monkeypatch.setattr(
        adapt, "run_adapt", lambda cfg, **kw: real(dataclasses.replace(cfg, **tiny), **kw)
    )
    frame = _clean_frame(tmp_path / "clean")
    r = runner.invoke(
        app, ["adapt", str(frame), "--weights", str(start), "--project", str(tmp_path / "runs")]
    )
    assert r.exit_code == 0, r.output
    # 0.1 per 2446x1000 is 0.1 * 480 * 200 / 2446000 = 0.0039 per frame of this size
    assert "alarms per 2446x1000, 0.0039 per 480x200 frame, on 0.0118 frame-areas" in r.output
    assert "Caveat: " in r.output and "Next: fabricnms predict FRAMES --weights" in r.output
    assert "Self-check: at that point it finds" in r.output


def test_a_frame_too_small_is_skipped_and_the_window_fits_the_rest(caplog, monkeypatch) -> None:
    monkeypatch.setattr(logging.getLogger("fabricnms"), "propagate", True)  # after a CLI run
    big = CleanFrame(Path("big.png"), np.zeros((1000, 2446, 3), np.uint8))
    mid = CleanFrame(Path("mid.png"), np.zeros((500, 900, 3), np.uint8))  # held part 270 px
    small = CleanFrame(Path("small.png"), np.zeros((400, 400, 3), np.uint8))  # held part 120 px
    with caplog.at_level("WARNING"):
        frames, size = usable_frames([big, small, mid], 512)
    assert frames == [big, mid] and size == 256
    assert "small.png: frame 400x400 is too small" in caplog.text
    with pytest.raises(FabricError, match=r"small\.png: frame 400x400 is too small"):
        usable_frames([small], 512)


@pytest.mark.parametrize("n", [0, 1, 2, 5, 13, 64])
def test_spread_order_is_a_permutation_whose_prefixes_spread(n: int) -> None:
    order = spread_order(n)
    assert sorted(order) == list(range(n)) and order[:1] == [0][:n]
    if n >= 4:  # the first two halve the range, the first four quarter it
        assert order[1] == n // 2 and sorted(order[:4]) == [0, n // 4, n // 2, 3 * n // 4]


def test_clean_material_is_capped_by_area_not_frame_count(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    import fabricnms.engine.adapt_sources as adapt

    monkeypatch.setattr(logging.getLogger("fabricnms"), "propagate", True)  # after a CLI run
    folder = tmp_path / "crops"
    for i in range(12):  # twelve 200x480 crops: 0.47 frame-areas in all
        _clean_frame(folder).rename(folder / f"c{i:02d}.png")
    (folder / "c05.png").write_bytes(b"not an image")
    assert len(read_clean_frames([str(folder)], False)) == 11  # all readable ones (old cap: 10)
    monkeypatch.setattr(adapt, "MAX_FRAME_AREAS", 4 * 480 * 200 / (2446 * 1000))
    caplog.clear()
    with caplog.at_level("INFO"):
        frames = read_clean_frames([str(folder)], False)
    assert [f.path.name for f in frames] == ["c00.png", "c03.png", "c06.png", "c09.png"]
    assert "using 4 of 12 clean frames" in caplog.text and "c05.png" not in caplog.text


@pytest.mark.parametrize("case", ["unreadable", "small", "classes"])
def test_bad_input_is_one_line_and_writes_nothing(case: str, start: Path, tmp_path: Path) -> None:
    weights = start
    if case == "unreadable":
        (tmp_path / "clean").mkdir()
        (tmp_path / "clean" / "broken.jpg").write_bytes(b"not a jpeg")
        source = tmp_path / "clean"
        expect = "no readable clean frame"
    elif case == "small":
        source = _clean_frame(tmp_path / "clean", 150, 100)
        expect = "too small"
    else:
        source = _clean_frame(tmp_path / "clean")
        weights = boosted_checkpoint(tmp_path / "three.pt", ["a", "b", "c"], tmp_path)[0]
        expect = "not the 20 categories"
    project = tmp_path / "runs"
    r = runner.invoke(
        app, ["adapt", str(source), "--weights", str(weights), "--project", str(project)]
    )
    assert r.exit_code == 1
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], r.output
    assert not project.exists()
