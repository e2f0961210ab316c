"""Operating point: calibration within a false-alarm budget, resolution order, per-class use."""

from __future__ import annotations

import pytest
import torch

from fabricnms.engine.false_alarms import MIN_CONF, CalibrationFrame, calibrate
from fabricnms.engine.operating_point import (
    BUILTIN_CONF,
    FRAME_AREA_PX,
    OP_KEY,
    ConfChoice,
    OperatingPoint,
    resolve_operating_point,
)
from fabricnms.model.types import Detections

NAMES = ["hole", "stain", "knot"]


def _dets(boxes: list[list[float]], scores: list[float], labels: list[int]) -> Detections:
    return Detections(
        boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        scores=torch.tensor(scores, dtype=torch.float32),
        labels=torch.tensor(labels, dtype=torch.int64),
    )


def _clean(scores: list[float], label: int = 0) -> CalibrationFrame:
    boxes = [[10.0 * i, 0.0, 10.0 * i + 5, 5.0] for i in range(len(scores))]
    return CalibrationFrame(
        _dets(boxes, scores, [label] * len(scores)),
        torch.zeros(0, 4),
        torch.zeros(0, dtype=torch.int64),
        float(FRAME_AREA_PX),
    )


def test_clean_frames_threshold_just_above_the_allowed_false_alarms() -> None:
    # 10 frames, budget 0.1/frame -> 1 false alarm allowed: threshold above the 2nd highest
    frames = [_clean([0.9, 0.6, 0.3])] + [_clean([0.2]) for _ in range(9)]
    point = calibrate(frames, NAMES, false_alarms=0.1, source="ten clean frames")
    assert point.per_class == {}
    assert point.conf == pytest.approx(0.6001, abs=2e-4)
    kept = sum(int((f.detections.scores >= point.conf).sum()) for f in frames)
    assert kept == 1
    assert point.area_frames == pytest.approx(10.0)
    # nothing above the floor: the floor
    assert calibrate([_clean([0.01])], NAMES).conf == MIN_CONF


def test_detections_touching_a_labelled_box_are_not_false_alarms() -> None:
    gt = torch.tensor([[0.0, 0.0, 100.0, 100.0]])
    frame = CalibrationFrame(
        _dets([[5, 5, 95, 95], [500, 500, 520, 520]], [0.95, 0.4], [1, 1]),
        gt,
        torch.tensor([1]),
        float(FRAME_AREA_PX),
    )
    point = calibrate([frame], NAMES, false_alarms=0.1)
    assert point.conf == pytest.approx(0.4001, abs=2e-4)  # the 0.95 hit does not count


def test_per_class_thresholds_only_for_supported_classes_and_budget_held() -> None:
    gt = torch.tensor([[0.0, 0.0, 50.0, 50.0]])
    frames = []
    for _ in range(30):  # class 0 labelled in every frame; its false alarms score 0.5
        frames.append(
            CalibrationFrame(
                _dets(
                    [[0, 0, 50, 50], [900, 0, 950, 50], [0, 900, 50, 950]],
                    [0.9, 0.5, 0.7],
                    [0, 0, 2],
                ),
                gt,
                torch.tensor([0]),
                float(FRAME_AREA_PX),
            )
        )
    point = calibrate(frames, NAMES, false_alarms=0.3)
    assert set(point.per_class) == {"hole"}
    assert point.per_class["hole"] == pytest.approx(0.5001, abs=2e-4)
    assert point.conf == pytest.approx(0.7001, abs=2e-4)  # knot's false alarms, pooled with stain
    limits = point.thresholds(NAMES)
    kept_false = sum(
        int(((f.detections.scores >= limits[f.detections.labels])[1:]).sum()) for f in frames
    )
    assert kept_false <= 0.3 * 30


def test_a_class_without_false_alarms_gets_the_pooled_threshold_not_the_floor() -> None:
    gt = torch.tensor([[0.0, 0.0, 50.0, 50.0]])
    frames = [  # hole and knot labelled in every frame; only knot raises false alarms
        CalibrationFrame(
            _dets([[0, 0, 50, 50], [900, 0, 950, 50]], [0.9, 0.6 if i < 10 else 0.2], [0, 2]),
            gt.repeat(2, 1),
            torch.tensor([0, 2]),
            float(FRAME_AREA_PX),
        )
        for i in range(20)
    ]
    point = calibrate(frames, NAMES, false_alarms=0.3)  # 6 allowed in all, 2 per class
    # knot: 20 false alarms, threshold above its 3rd highest; hole: none at all -> all false
    # alarms together within 6 (above the 7th highest, 0.6), not MIN_CONF
    assert point.per_class["knot"] == pytest.approx(0.6001, abs=2e-4)
    assert point.per_class["hole"] == pytest.approx(0.6001, abs=2e-4)
    assert point.per_class["hole"] > MIN_CONF


def test_resolution_order_and_select() -> None:
    stored = OperatingPoint(0.4, {"stain": 0.7}, "val of x", 0.1).to_dict()
    meta = {OP_KEY: stored}
    assert resolve_operating_point(0.2, meta).point.conf == 0.2
    choice = resolve_operating_point(None, meta)
    assert choice.origin == "checkpoint" and "operating point" in choice.line()
    assert resolve_operating_point(None, {}).point.conf == BUILTIN_CONF
    assert "built-in default" in resolve_operating_point(None, {}).line()
    det = _dets([[0, 0, 1, 1]] * 4, [0.5, 0.8, 0.5, 0.3], [0, 1, 1, 2])
    kept = choice.point.select(det, NAMES)
    assert kept.scores.tolist() == pytest.approx([0.5, 0.8])
    assert choice.point.floor() == 0.4


def test_a_point_on_too_little_fabric_says_what_it_may_let_through() -> None:
    thin = OperatingPoint(conf=0.3, false_alarms_per_frame=0.1, area_frames=0.25, source="s")
    assert thin.unshown_rate() == pytest.approx(4.0)
    line = ConfChoice(thin, "checkpoint").line()
    assert "0.25 frame-areas are too few to show it: it may let through about 4" in line
    shown = OperatingPoint(conf=0.3, false_alarms_per_frame=0.1, area_frames=10.0)
    assert shown.unshown_rate() is None and "too few" not in ConfChoice(shown, "checkpoint").line()
    assert OperatingPoint(conf=0.3).unshown_rate() is None  # area unknown: nothing claimed
    # a zero budget can never be shown on finite fabric
    assert OperatingPoint(conf=0.3, false_alarms_per_frame=0.0, area_frames=50.0).unshown_rate()
