"""``adapt``'s self-check: does the adapted model find defects on the user's fabric at all?

The user has no labelled defects of the fabric, so the check uses generated ones: windows of
the frames' *held-out* parts (never trained on) with defects painted in, as for training
(:func:`fabricnms.engine.adapt_data.cut_windows`, its own seed). The check runs the predict
path (:func:`fabricnms.engine.tiling.detect_frames` with the calibration pass's settings,
:func:`fabricnms.engine.calibrate.scan_settings`) at the calibrated operating point and counts the
painted defects that a detection touches (box IoU at least
:data:`~fabricnms.engine.false_alarms.TOUCH_IOU`, whatever its class, the false-alarm rule's
criterion). It is one-sided: a low share means the model misses even the generator's defects
on this fabric (adapting did not take, or the false-alarm budget set the threshold above them),
while a high one says nothing about real defects, which can look unlike the generator's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fabricnms.engine.adapt_data import Window
from fabricnms.engine.calibrate import scan_settings
from fabricnms.engine.false_alarms import TOUCH_IOU
from fabricnms.engine.operating_point import OperatingPoint
from fabricnms.engine.tiling import detect_frames

#: Windows cut for the check (the defective ones among them are scanned).
CHECK_WINDOWS = 64
#: Seed offset of the check's windows (training windows use the run's seed, validation + 1).
CHECK_SEED_OFFSET = 2


def painted_recall(
    model: nn.Module,
    class_names: Sequence[str],
    point: OperatingPoint,
    windows: Sequence[Window],
    device: torch.device | str = "cpu",
) -> tuple[float | None, int]:
    """``(share of the windows' painted defects touched by a detection at ``point``, number of
    painted defects)``; ``(None, 0)`` when no window has one."""
    from fabricnms.model.boxes import pairwise_iou

    painted = [w for w in windows if len(w.boxes)]
    found = defects = 0
    detected = detect_frames(model, (w.image for w in painted), scan_settings(), device)
    for win, det in zip(painted, detected, strict=True):
        det = point.select(det.to("cpu"), class_names)
        defects += len(win.boxes)
        if len(det):
            touch = pairwise_iou(torch.from_numpy(win.boxes), det.boxes.float()) >= TOUCH_IOU
            found += int(touch.any(1).sum())
    if not defects:
        return None, 0
    return round(found / defects, 4), defects
