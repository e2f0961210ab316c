"""``adapt``'s self-check: painted defects touched by detections at the operating point."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fabricnms.engine.adapt_check as check
from fabricnms.engine.adapt_data import Window
from fabricnms.engine.operating_point import OperatingPoint
from fabricnms.model.types import Detections

NAMES = ["hole", "stain"]


def _window(boxes: list[list[float]]) -> Window:
    image = np.zeros((64, 64, 3), np.uint8)
    arr = np.array(boxes, np.float32).reshape(-1, 4)
    return Window(image, arr, np.zeros(len(arr), np.int64))


def _dets(boxes: list[list[float]], scores: list[float], labels: list[int]) -> Detections:
    return Detections(
        boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        scores=torch.tensor(scores, dtype=torch.float32),
        labels=torch.tensor(labels, dtype=torch.int64),
    )


def test_counts_painted_defects_touched_at_the_point(monkeypatch) -> None:
    windows = [
        _window([[0, 0, 10, 10], [30, 30, 40, 40]]),
        _window([]),  # a clean window is not scanned
        _window([[5, 5, 25, 25]]),
    ]
    answers = [
        # touches the first box (IoU 0.47, above 0.1) at a passing score; the second box only
        # by a stain below its own threshold
        _dets([[0, 0, 10, 7], [30, 30, 40, 40]], [0.6, 0.6], [0, 1]),
        # a detection nowhere near the box
        _dets([[50, 50, 60, 60]], [0.9], [0]),
    ]
    scanned: list[np.ndarray] = []

    def fake_detect(model, images, settings, device):
        for image, det in zip(images, answers, strict=False):
            scanned.append(image)
            yield det

    monkeypatch.setattr(check, "detect_frames", fake_detect)
    point = OperatingPoint(conf=0.5, per_class={"stain": 0.7})
    recall, defects = check.painted_recall(None, NAMES, point, windows)
    assert defects == 3 and recall == pytest.approx(0.3333)
    assert len(scanned) == 2
    # without the per-class threshold the stain detection finds the second box too
    recall, _ = check.painted_recall(None, NAMES, OperatingPoint(conf=0.5), windows)
    assert recall == pytest.approx(0.6667)
    assert check.painted_recall(None, NAMES, point, [_window([])]) == (None, 0)
