"""Greedy (OpenCV) and Gaussian Soft-NMS baselines against plain reference loops."""

from __future__ import annotations

import math

import torch

from fabricnms.model.boxes import pairwise_iou
from fabricnms.model.nms import expand_classes, greedy_nms, soft_nms, vote_boxes


def _random_boxes(gen: torch.Generator, n: int) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=gen) * 200
    wh = 10 + torch.rand(n, 2, generator=gen) * 60
    return torch.cat([xy, xy + wh], dim=1)


def _reference_greedy(boxes, scores, labels, thr):
    order = scores.argsort(descending=True).tolist()
    iou = pairwise_iou(boxes, boxes)
    kept: list[int] = []
    for i in order:
        if all(labels[i] != labels[k] or iou[i, k] <= thr for k in kept):
            kept.append(i)
    return kept


def test_greedy_matches_reference_per_class():
    gen = torch.Generator().manual_seed(0)
    boxes = _random_boxes(gen, 120)
    scores = torch.rand(120, generator=gen)
    labels = torch.randint(0, 3, (120,), generator=gen)
    keep = greedy_nms(boxes, scores, labels, iou_threshold=0.5)
    assert sorted(keep.tolist()) == sorted(_reference_greedy(boxes, scores, labels, 0.5))
    assert (scores[keep][:-1] >= scores[keep][1:]).all()
    assert len(greedy_nms(boxes, scores, labels, max_det=5)) == 5


def test_greedy_score_threshold_and_empty():
    boxes = torch.tensor([[0.0, 0, 10, 10], [100, 100, 120, 120]])
    keep = greedy_nms(boxes, torch.tensor([0.9, 0.05]), torch.tensor([0, 0]), score_threshold=0.1)
    assert keep.tolist() == [0]
    assert (
        greedy_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long)).numel() == 0
    )


def test_soft_nms_decays_by_gaussian_of_iou():
    boxes = torch.tensor([[0.0, 0, 10, 10], [2, 0, 12, 10], [0, 0, 10, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    labels = torch.tensor([0, 0, 1])  # the third box is another class: untouched
    idx, rescored = soft_nms(boxes, scores, labels, sigma=0.5)
    iou = float(pairwise_iou(boxes[:1], boxes[1:2])[0, 0])
    expect = {0: 0.9, 1: 0.8 * math.exp(-(iou**2) / 0.5), 2: 0.7}
    assert idx.tolist() == [0, 2, 1]
    for i, s in zip(idx.tolist(), rescored.tolist(), strict=True):
        assert abs(s - expect[i]) < 1e-6


def test_soft_nms_matches_reference_loop_and_floor():
    gen = torch.Generator().manual_seed(1)
    boxes = _random_boxes(gen, 60)
    scores = torch.rand(60, generator=gen)
    labels = torch.randint(0, 2, (60,), generator=gen)
    idx, rescored = soft_nms(boxes, scores, labels, sigma=0.5, score_floor=0.05, max_det=1000)
    cur = scores.clone().tolist()
    alive = set(range(60))
    iou = pairwise_iou(boxes, boxes)
    ref = []
    while alive:
        best = max(alive, key=lambda i: cur[i])
        if cur[best] < 0.05:
            break
        ref.append((best, cur[best]))
        alive.remove(best)
        for j in list(alive):
            if labels[j] == labels[best]:
                cur[j] *= math.exp(-(float(iou[best, j]) ** 2) / 0.5)
            if cur[j] < 0.05:
                alive.remove(j)
    assert idx.tolist() == [i for i, _ in ref]
    assert torch.allclose(rescored, torch.tensor([s for _, s in ref]), atol=1e-6)
    top, _ = soft_nms(boxes, scores, labels, sigma=0.5, score_floor=0.05, max_det=7)
    assert top.tolist() == idx.tolist()[:7]


def test_greedy_keeps_a_low_ranked_box_that_overlaps_no_kept_box():
    """OpenCV's top_k cuts before suppressing: the 301st box must still be seen."""
    gen = torch.Generator().manual_seed(3)
    cluster = torch.tensor([0.0, 0, 50, 50]) + torch.rand(300, 4, generator=gen)
    boxes = torch.cat([cluster, torch.tensor([[500.0, 500, 540, 540]])])
    scores = torch.cat([0.5 + 0.4 * torch.rand(300, generator=gen), torch.tensor([0.1])])
    keep = greedy_nms(boxes, scores, torch.zeros(301, dtype=torch.long), max_det=300)
    assert 300 in keep.tolist() and len(keep) == 2
    assert greedy_nms(boxes, scores, torch.zeros(301, dtype=torch.long), max_det=1).tolist() == [
        int(scores[:300].argmax())
    ]


def test_greedy_iou_and_agnostic_knobs():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 8], [0, 0, 10, 10]])  # IoU(0, 1) = 0.8
    scores = torch.tensor([0.9, 0.8, 0.7])
    labels = torch.tensor([0, 0, 1])
    assert greedy_nms(boxes, scores, labels, iou_threshold=0.5).tolist() == [0, 2]
    assert greedy_nms(boxes, scores, labels, iou_threshold=0.85).tolist() == [0, 1, 2]
    assert greedy_nms(boxes, scores, labels, iou_threshold=0.5, agnostic=True).tolist() == [0]


def test_soft_agnostic_decays_other_classes():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10]])
    scores, labels = torch.tensor([0.9, 0.8]), torch.tensor([0, 1])
    _, aware = soft_nms(boxes, scores, labels)
    _, agnostic = soft_nms(boxes, scores, labels, agnostic=True)
    assert abs(float(aware[1]) - 0.8) < 1e-6
    assert abs(float(agnostic[1]) - 0.8 * math.exp(-1 / 0.5)) < 1e-6


def test_expand_classes_and_vote_boxes():
    class_scores = torch.tensor([[0.8, 0.6, 0.01], [0.3, 0.0, 0.2]])
    rows, labels = expand_classes(class_scores, top_classes=2, floor=0.1)
    assert rows.tolist() == [0, 0, 1, 1] and labels.tolist() == [0, 1, 0, 2]
    rows, labels = expand_classes(class_scores, top_classes=1, floor=0.1)
    assert rows.tolist() == [0, 1] and labels.tolist() == [0, 0]
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10]])
    scores = torch.tensor([0.9, 0.3, 0.5])
    labels = torch.tensor([0, 0, 1])
    voted = vote_boxes(torch.tensor([0]), boxes, scores, labels, vote_iou=0.5)
    assert torch.allclose(voted, torch.tensor([[0.25, 0, 10.25, 10]]))  # (0.9*0 + 0.3*1) / 1.2
    agnostic = vote_boxes(torch.tensor([0]), boxes, scores, labels, 0.5, agnostic=True)
    assert torch.allclose(agnostic, torch.tensor([[0.3 / 1.7, 0, 10 + 0.3 / 1.7, 10]]))
    alone = vote_boxes(torch.tensor([0]), boxes, scores, labels, vote_iou=0.95)
    assert torch.equal(alone, boxes[:1])
