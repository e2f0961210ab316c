"""The Tianchi metric against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from helpers_synthetic import class_ap

from fabricnms.engine.metrics import FrameBoxes, frame_accuracy, tianchi_metrics, voc_ap


def _gt(*boxes_labels: tuple[list[float], int]) -> FrameBoxes:
    boxes = np.array([b for b, _ in boxes_labels], dtype=np.float64).reshape(-1, 4)
    return FrameBoxes(boxes, np.array([c for _, c in boxes_labels], dtype=np.int64))


def _pred(*rows: tuple[list[float], int, float]) -> FrameBoxes:
    boxes = np.array([b for b, _, _ in rows], dtype=np.float64).reshape(-1, 4)
    labels = np.array([c for _, c, _ in rows], dtype=np.int64)
    return FrameBoxes(boxes, labels, np.array([s for _, _, s in rows], dtype=np.float64))


def test_voc_ap_all_point_interpolation() -> None:
    # TP, FP, TP with 2 positives: recall .5 .5 1, precision 1 .5 2/3
    ap = voc_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3]))
    assert ap == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)
    # the envelope lifts an early dip: precision .5 then 1 at higher recall
    assert voc_ap(np.array([0.5, 1.0]), np.array([0.5, 1.0])) == pytest.approx(1.0)
    assert voc_ap(np.zeros(0), np.zeros(0)) == 0.0


def test_class_ap_ranks_across_frames_and_counts_duplicates() -> None:
    gts = [np.array([[0, 0, 10, 10.0]]), np.array([[20, 20, 30, 30.0]])]
    dets = [
        (np.array([[0, 0, 10, 10.0], [0, 0, 10, 10.0]]), np.array([0.9, 0.6])),  # TP, duplicate
        (np.array([[50, 50, 60, 60.0], [20, 20, 30, 30.0]]), np.array([0.8, 0.7])),  # FP, TP
    ]
    # order: .9 TP, .8 FP, .7 TP, .6 FP -> recall .5 .5 1 1, precision 1 .5 2/3 .5
    ap = class_ap(gts, dets, [0.5])
    assert ap[0] == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_class_ap_thresholds_and_voc_taken_rule() -> None:
    gt = [np.array([[0, 0, 10, 10.0], [6, 0, 16, 10.0]])]
    # det A: IoU 1 with gt0; det B: IoU 0.6 with gt0 and 4/16=0.25 with gt1... best is gt0 (taken)
    det_a = [0, 0, 10, 10.0]
    det_b = [2, 0, 12, 10.0]  # IoU with gt0: 8/12, with gt1: 6/14
    ap = class_ap(gt, [(np.array([det_a, det_b]), np.array([0.9, 0.8]))], [0.1, 0.5])
    # VOC: B's best overlap (gt0) is taken -> FP at every threshold; recall stops at .5
    np.testing.assert_allclose(ap, [0.5, 0.5])
    # a loose box: IoU 0.4 with its ground truth counts at 0.1 and 0.3, not at 0.5
    loose = np.array([[0, 0, 10, 4.0]])  # IoU 40/100
    ap = class_ap([np.array([[0, 0, 10, 10.0]])], [(loose, np.array([0.5]))], [0.1, 0.3, 0.5])
    np.testing.assert_allclose(ap, [1.0, 1.0, 0.0])


def test_class_ap_without_ground_truth_is_nan_and_without_detections_zero() -> None:
    assert np.isnan(class_ap([np.zeros((0, 4))], [(np.zeros((1, 4)), np.ones(1))], [0.5])).all()
    assert class_ap([np.array([[0, 0, 1, 1.0]])], [(np.zeros((0, 4)), np.zeros(0))], [0.5])[0] == 0


def test_recall_and_precision_at_the_operating_score() -> None:
    """Per class, IoU 0.5, detections scoring >= acc_conf; a wrong-class box counts for neither."""
    gts = [_gt(([0, 0, 10, 10], 0), ([20, 0, 30, 10], 0)), _gt(([0, 0, 10, 10], 1))]
    preds = [
        _pred(([0, 0, 10, 10], 0, 0.9), ([20, 0, 30, 4], 0, 0.8), ([20, 0, 30, 10], 0, 0.2)),
        _pred(([0, 0, 10, 10], 0, 0.7)),  # right place, wrong class
    ]
    res = tianchi_metrics(gts, preds, 3, acc_conf=0.5)
    # class 0 at 0.5: three kept, one hit at IoU 0.5 (the 0.8 box has IoU 0.4; the 0.7 box is
    # a false positive in frame 1) -> recall 1/2, precision 1/3; at 0.1 the 0.2 box adds a hit
    np.testing.assert_allclose(res.recall_at_conf[:2], [0.5, 0.0])
    np.testing.assert_allclose(res.precision_at_conf[:2], [1 / 3, 0.0])
    assert np.isnan(res.recall_at_conf[2]) and np.isnan(res.precision_at_conf[2])
    low = tianchi_metrics(gts, preds, 3, acc_conf=0.1)
    np.testing.assert_allclose(low.recall_at_conf[:2], [1.0, 0.0])
    np.testing.assert_allclose(low.precision_at_conf[0], 2 / 4)


def test_frame_accuracy_uses_the_confidence_threshold() -> None:
    gts = [_gt(([0, 0, 5, 5], 0)), _gt(), _gt(), _gt(([0, 0, 5, 5], 1))]
    preds = [
        _pred(([0, 0, 5, 5], 0, 0.5)),  # defective, flagged: correct
        _pred(([0, 0, 5, 5], 0, 0.2)),  # normal, below 0.3: correct
        _pred(([0, 0, 5, 5], 0, 0.4)),  # normal, flagged: wrong
        _pred(),  # defective, nothing: wrong
    ]
    assert frame_accuracy(gts, preds, 0.3) == 0.5
    assert frame_accuracy(gts, preds, 0.1) == 0.25  # frame 1 (0.2) now counts as defective
    assert frame_accuracy(gts, preds, 0.45) == 0.75


def test_tianchi_score_combines_acc_and_map_over_present_classes() -> None:
    gts = [_gt(([0, 0, 10, 10], 0)), _gt(([20, 20, 30, 30], 0), ([0, 0, 4, 40], 2)), _gt()]
    preds = [
        _pred(([0, 0, 10, 10], 0, 0.9)),
        _pred(([20, 20, 30, 30], 0, 0.8), ([0, 20, 4, 40], 2, 0.6), ([0, 0, 5, 5], 1, 0.9)),
        _pred(([0, 0, 5, 5], 0, 0.05)),
    ]
    result = tianchi_metrics(gts, preds, num_classes=3, acc_conf=0.3)
    # class 0: AP 1 at every IoU; class 2: IoU 0.5 -> TP at .1/.3/.5; class 1 has no GT (ignored)
    assert np.isnan(result.ap[1]).all()
    np.testing.assert_allclose(result.ap[0], [1, 1, 1])
    np.testing.assert_allclose(result.ap[2], [1, 1, 1])
    assert result.map == pytest.approx(1.0)
    assert result.acc == pytest.approx(1.0)
    assert result.score == pytest.approx(1.0)
    # shift class 2's box: IoU 0.25 -> counts only at 0.1
    preds[1] = _pred(([20, 20, 30, 30], 0, 0.8), ([0, 30, 4, 40], 2, 0.6))
    result = tianchi_metrics(gts, preds, num_classes=3, acc_conf=0.3)
    np.testing.assert_allclose(result.ap[2], [1, 0, 0])
    assert result.map_per_iou == pytest.approx((1.0, 0.5, 0.5))
    assert result.map == pytest.approx(2 / 3)
    assert result.score == pytest.approx(0.2 * 1.0 + 0.8 * 2 / 3)
    as_dict = result.as_dict(["a", "b", "c"])
    assert as_dict["AP_per_class"] == {"a": 1.0, "b": None, "c": pytest.approx(1 / 3)}
    assert as_dict["mAP_per_iou"] == {"0.1": 1.0, "0.3": 0.5, "0.5": 0.5}
