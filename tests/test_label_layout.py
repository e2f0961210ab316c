"""Overlay labels never hide each other: placement order, collisions, compare mode, sheets."""

from __future__ import annotations

import numpy as np

from fabricnms.report.label_layout import overlap_area, place_labels
from fabricnms.report.overlay import (
    draw_boxes,
    draw_compare,
    label_size,
    shown_style,
    style_for,
)
from fabricnms.report.palette import FN_BGR, class_bgr

NAMES = ["hole", "stain", "knot"]


def grey(h: int = 400, w: int = 800) -> np.ndarray:
    return np.full((h, w, 3), 128, np.uint8)


def test_stacked_boxes_get_labels_that_do_not_overlap() -> None:
    boxes = [(300, 200, 340, 240)] * 6 + [(310, 205, 350, 245)] * 4
    rects = place_labels(boxes, [(90, 20)] * len(boxes), (800, 400))
    arr = np.array(rects)
    for i, r in enumerate(rects):
        assert overlap_area(r, np.delete(arr, i, axis=0)) == 0
        assert r[0] >= 0 and r[2] <= 800 and r[1] >= 0 and r[3] <= 400
    assert rects[0] == (300, 180, 390, 200)  # the first gets the spot above the top-left corner


def test_higher_score_takes_the_best_spot_and_is_drawn_on_top() -> None:
    box = (300, 200, 360, 260)
    img = grey()
    out = draw_boxes(img, [box, box], [1, 0], NAMES, scores=[0.3, 0.9])
    # just above the top-left corner, in the label's padding: the 0.9 hole's colour
    assert tuple(out[198, 301]) == class_bgr(0)
    swapped = draw_boxes(img, [box, box], [0, 1], NAMES, scores=[0.9, 0.3])
    assert tuple(swapped[198, 301]) == class_bgr(0)
    assert (img == 128).all()  # input untouched


def test_compare_keeps_missed_names_readable_under_false_alarms() -> None:
    img = grey()
    gt = [(300, 200, 360, 260)]
    alone, _ = draw_compare(img, gt, [0], [], [], [], NAMES)
    # three false alarms of another class on the same spot
    preds = [(302, 198, 362, 258), (298, 202, 358, 262), (300, 200, 360, 260)]
    crowded, counts = draw_compare(img, gt, [0], preds, [1, 1, 2], [0.9, 0.8, 0.7], NAMES)
    assert counts == {"tp": 0, "fp": 3, "fn": 1}

    # the FN label (first placed: above the box's top-left corner) is untouched by the others
    lw, lh = label_size("FN hole", style_for(400, 800))
    label = (slice(200 - lh, 200), slice(300, 300 + lw))
    assert (crowded[label] == alone[label]).all()
    assert (alone[label] == np.array(FN_BGR)).all(axis=2).mean() > 0.5


def test_contact_sheet_labels_are_legible() -> None:
    h, w, cell = 1000, 2446, 480
    _, frame_h = label_size("stain 0.87", style_for(h, w))
    _, sheet_h = label_size("stain 0.87", shown_style(h, w, cell))
    assert frame_h * cell / w < 8  # the frame's own labels shrunk into a cell: unreadable
    assert sheet_h * cell / w >= 11  # labels drawn for the cell: ~12 px tall once shown
