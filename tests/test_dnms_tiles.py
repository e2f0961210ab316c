"""DNMS behind tiled inference: a line cut by several tiles comes out as one full-length defect.

The detector is a fake: in each window, the bounding box of the dark pixels is one defect
(class 0) that every stride-8 location inside it predicts, and the location nearest its centre
carries the one-to-one score. A line crossing windows therefore reaches the suppression as one
fragment per window, each with its own hypothesis, in frame coordinates.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers_fake import DarkBoxDetector

from fabricnms.engine.tiling import TileSettings, detect_frames
from fabricnms.model.boxes import pairwise_iou


def _line_frame(vertical: bool) -> tuple[np.ndarray, torch.Tensor]:
    """A 400 px long, 12 px thick dark line in a 64 x 400 frame (four 128 px tiles)."""
    frame = np.full((400, 64, 3), 150, np.uint8)
    frame[10:390, 26:38] = 20
    line = torch.tensor([[26.0, 10.0, 38.0, 390.0]])
    if not vertical:
        frame = np.ascontiguousarray(frame.transpose(1, 0, 2))
        line = line[:, [1, 0, 3, 2]]
    return frame, line


@pytest.mark.parametrize("vertical", [True, False])
def test_line_across_four_tiles_is_one_full_length_detection(vertical: bool) -> None:
    frame, line = _line_frame(vertical)
    settings = TileSettings(tile=128, overlap=0.25, nms="dnms", conf=0.3)
    (det,) = list(detect_frames(DarkBoxDetector().eval(), [frame], settings))
    assert len(det) == 1
    assert float(pairwise_iou(line, det.boxes)[0, 0]) >= 0.95
    assert (det.boxes[0] - line[0]).abs().max() < 2.0  # both ends of the line, not a fragment's
    greedy = TileSettings(tile=128, overlap=0.25, nms="greedy", conf=0.3)
    (per_tile,) = list(detect_frames(DarkBoxDetector().eval(), [frame], greedy))
    assert len(per_tile) == 4  # the fragments really arrive one per tile
