"""Greedy (OpenCV) and Gaussian Soft-NMS baselines against plain reference loops."""

from __future__ import annotations

import math

import torch

from fabricnms.model.boxes import pairwise_iou
from fabricnms.model.nms import greedy_nms, soft_nms


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
