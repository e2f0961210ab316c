"""Fabric-shift score: statistics of one fabric, a calibrated limit, scores in predict's outputs."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers_engine import boosted_checkpoint

from fabricnms.data.classes import class_names
from fabricnms.engine.calibrate import (
    LabelledImage,
    calibrate_model,
    scan,
    scan_settings,
    write_calibration,
)
from fabricnms.engine.checkpoint import load_checkpoint
from fabricnms.engine.operating_point import OP_KEY
from fabricnms.engine.predict import PredictConfig, run_predict
from fabricnms.engine.shift import (
    SHIFT_WARNING,
    STATS_KEY,
    FabricStats,
    FeatureTap,
    shift_summary,
    stats_from_meta,
)
from fabricnms.engine.tiling import TileSettings
from fabricnms.model.detector import Detector

NAMES = class_names(20)
W, H = 160, 96


def weave(seed: int) -> np.ndarray:
    """A fine grey plain weave with sensor noise (the 'known' fabric), RGB."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    tex = 14 * np.sin(2 * np.pi * xx / 4.0) * np.sin(2 * np.pi * yy / 4.0)
    grey = np.clip(rng.uniform(125, 140) + tex + rng.normal(0, 3, (H, W)), 0, 255)
    return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)


def coarse_twill(seed: int) -> np.ndarray:
    """A texture family the tiny model never saw: coarse, dark, high-contrast diagonal twill."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    tex = 60 * np.sign(np.sin(2 * np.pi * (xx + yy) / 22.0))
    grey = np.clip(70 + tex + rng.normal(0, 12, (H, W)), 0, 255).astype(np.uint8)
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Detector]:
    path = tmp_path_factory.mktemp("shift") / "tiny.pt"
    return boosted_checkpoint(path, NAMES, path.parent)


def test_tap_gives_one_descriptor_per_tile_and_costs_no_extra_forward(tiny) -> None:
    _, model = tiny
    settings = TileSettings(tile=64, overlap=0.2, conf=0.05)
    calls = []
    handle = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        out = list(scan(model, [weave(0), weave(1)], settings))
    finally:
        handle.remove()
    tiles = 3 * 2  # 160 x 96 at tile 64: 3 columns x 2 rows
    assert [d.shape[0] for _, d in out] == [tiles, tiles]
    assert out[0][1].shape[1] == 2 * 3 * 16  # mean + std x 3 levels x 16 channels
    assert len(calls) == -(-2 * tiles // settings.batch)  # the detection forwards only
    with FeatureTap(model) as tap:
        assert tap.handle is not None
    assert tap.handle is None


def test_unknown_texture_scores_far_above_the_limit_known_one_below(tiny) -> None:
    _, model = tiny
    held = [LabelledImage(weave(s), np.zeros((0, 4)), np.zeros(0)) for s in (50, 51)]
    point, stats = calibrate_model(
        model, NAMES, [weave(s) for s in range(12)], held, "tiny weave", 0.1
    )
    assert stats.limit > 0
    assert point.frames == 2 and point.per_class == {}
    settings = TileSettings(tile=1024, conf=0.05)
    known = [
        stats.frame_score(d) for _, d in scan(model, [weave(s) for s in (60, 61, 62)], settings)
    ]
    unknown = [
        stats.frame_score(d) for _, d in scan(model, [coarse_twill(s) for s in (0, 1, 2)], settings)
    ]
    assert max(known) < stats.limit < min(unknown)
    assert shift_summary(known, stats)["warning"] is None
    summary = shift_summary(unknown, stats)
    assert summary["warning"] == SHIFT_WARNING and summary["frames_above"] == 3


def test_limit_is_a_high_quantile_of_the_held_out_scores_not_one_odd_frame() -> None:
    stats = FabricStats.fit(torch.randn(50, 6), "x")
    assert stats.with_limit([0.4, 0.8, 0.5]).limit == pytest.approx(1.0)  # few: the highest
    scores = [0.3 + 0.005 * i for i in range(79)] + [2.0]  # 80 frames, one odd
    assert stats.with_limit(scores).limit == pytest.approx(1.25 * (0.3 + 0.005 * 75), abs=1e-4)


def test_stats_round_trip_and_uncalibrated_stats_are_ignored() -> None:
    stats = FabricStats.fit(torch.randn(50, 6), "x").with_limit([1.0, 2.0])
    back = FabricStats.from_dict(stats.to_dict())
    assert back.limit == pytest.approx(2.5) and back.windows == 50
    assert torch.allclose(back.precision, stats.precision)
    raw = FabricStats.fit(torch.randn(50, 6), "x")
    assert stats_from_meta({STATS_KEY: raw.to_dict()}) is None
    assert stats_from_meta({}) is None


def test_predict_writes_fabric_shift_and_warns_once_on_unknown_fabric(tiny, tmp_path: Path) -> None:
    path, model = tiny
    held = [LabelledImage(weave(s), np.zeros((0, 4)), np.zeros(0)) for s in (50, 51)]
    point, stats = calibrate_model(model, NAMES, [weave(s) for s in range(12)], held, "tiny", 0.1)
    calibrated = write_calibration(path, point, stats, tmp_path / "cal.pt")
    ckpt = torch.load(calibrated, weights_only=True)
    assert ckpt[OP_KEY]["conf"] == point.conf and STATS_KEY in ckpt
    assert (
        load_checkpoint(calibrated)["model_state"].keys()
        == load_checkpoint(path)["model_state"].keys()
    )
    for family, draw in (("known", weave), ("unknown", coarse_twill)):
        folder = tmp_path / family
        folder.mkdir()
        for i in range(3):
            cv2.imwrite(str(folder / f"f{i}.png"), cv2.cvtColor(draw(70 + i), cv2.COLOR_RGB2BGR))
        res = run_predict(
            PredictConfig(sources=[str(folder)], weights=str(calibrated), overlays=False),
            out=tmp_path / f"out_{family}",
        )
        images = json.loads((res.out_dir / "images.json").read_text())["images"]
        assert all(isinstance(im["fabric_shift"], float) for im in images)
        shift = res.summary["fabric_shift"]
        assert res.summary["threshold"]["origin"] == "checkpoint"
        assert res.summary["conf"] == point.conf
        roll = json.loads((res.out_dir / "roll_report.json").read_text())
        if family == "known":
            codes = [c["code"] for c in roll["summary"]["caveats"]]
            assert shift["warning"] is None and "fabric_shift" not in codes
        else:
            assert shift["warning"] == SHIFT_WARNING
            shifts = [c for c in roll["summary"]["caveats"] if c["code"] == "fabric_shift"]
            assert shifts == [{"code": "fabric_shift", "message": SHIFT_WARNING}]
            assert SHIFT_WARNING.split(":")[0] in (res.out_dir / "roll_report.html").read_text()


def test_limit_frames_set_the_limit_of_the_fit_fabric(tiny) -> None:
    """Operating point from one fabric's held-out frames, statistics and limit from another's:
    the limit is 1.25 x the highest score of ``limit_frames`` (not of the held-out frames)."""
    _, model = tiny
    held = [LabelledImage(coarse_twill(s), np.zeros((0, 4)), np.zeros(0)) for s in (60, 61)]
    fit, limit = [weave(s) for s in range(12)], [weave(s) for s in (50, 51)]
    point, plain = calibrate_model(model, NAMES, fit, held, "twill", 0.1)
    same_point, split = calibrate_model(
        model, NAMES, fit, held, "twill", 0.1, limit_frames=limit, stats_source="weave val"
    )
    weave_scores = [split.frame_score(d) for _, d in scan(model, limit, scan_settings())]
    assert split.limit == pytest.approx(1.25 * max(weave_scores), abs=1e-3)
    assert split.source == "weave val" and plain.source == "twill"
    assert split.limit < plain.limit  # the twill held-out frames are far from the weave stats
    assert same_point == point  # the operating point still comes from the held-out frames
