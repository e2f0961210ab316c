"""The shared postprocess path: candidate selection, tiling helpers and every NMS method."""

from __future__ import annotations

import pytest
import torch

from fabricnms.errors import FabricError
from fabricnms.model.boxes import pairwise_iou
from fabricnms.model.nms import NmsSettings
from fabricnms.model.postprocess import (
    METHODS,
    Candidates,
    concat_candidates,
    postprocess,
    select_candidates,
    suppress,
)
from fabricnms.model.proposals import simulate
from fabricnms.model.types import DenseOutput


def _logit(p: torch.Tensor) -> torch.Tensor:
    return torch.logit(p.clamp(1e-4, 1 - 1e-4))


def _dense(embed_dim: int = 8) -> tuple[DenseOutput, torch.Tensor]:
    """Batch of 2: image 0 has 3 defects (+ clutter), image 1 only faint clutter."""
    gen = torch.Generator().manual_seed(0)
    gt = torch.tensor([[50.0, 40, 120, 90], [300, 200, 330, 600], [500, 500, 560, 540]])
    ps = simulate(
        gt,
        torch.tensor([0, 2, 1]),
        3,
        gen,
        per_object=12,
        clutter=30,
        embed_dim=embed_dim,
        width=640,
        height=640,
    )
    n = ps.boxes.shape[0]
    o2m = torch.stack([ps.scores_o2m, ps.scores_o2m * 0.001])
    o2o = torch.stack([ps.scores_o2o, ps.scores_o2o * 0.001])
    dense = DenseOutput(
        cls_o2m=_logit(o2m),
        cls_o2o=_logit(o2o),
        boxes=torch.stack([ps.boxes, ps.boxes]),
        quality=_logit(torch.stack([ps.quality, ps.quality])),
        embed=torch.stack([ps.embed, ps.embed]),
        points=torch.zeros(n, 2),
        strides=torch.full((n,), 8.0),
        image_size=(640, 640),
    )
    return dense, gt


def test_select_candidates_top_k_and_floor():
    dense, _ = _dense()
    cands = select_candidates(dense, max_candidates=20, score_floor=0.01)
    assert len(cands) == 2 and len(cands[0]) == 20
    key = torch.maximum(cands[0].scores_o2m.amax(1), cands[0].scores_o2o.amax(1))
    all_key = torch.sigmoid(torch.maximum(dense.cls_o2m[0].amax(1), dense.cls_o2o[0].amax(1)))
    assert float(key.min()) >= float(all_key.topk(20).values.min()) - 1e-6
    # Image 1 is faint: everything below the 0.01 floor is dropped (variable count).
    faint = select_candidates(dense, score_floor=0.01)
    assert len(faint[1]) == 0 and len(faint[0]) > 0
    c = cands[0]
    assert c.embed.shape == (20, 8) and c.quality.shape == (20,)
    assert ((c.scores_o2m >= 0) & (c.scores_o2m <= 1)).all()


def test_shifted_and_concat_for_tiles():
    dense, _ = _dense()
    a, b = select_candidates(dense, max_candidates=10)
    moved = a.shifted(100.0, -5.0)
    assert torch.allclose(moved.boxes - a.boxes, torch.tensor([100.0, -5, 100, -5]).expand(10, 4))
    assert torch.equal(moved.scores_o2o, a.scores_o2o)
    both = concat_candidates([moved, b])
    assert len(both) == len(a) + len(b) and torch.equal(both.boxes[:10], moved.boxes)
    with pytest.raises(ValueError):
        concat_candidates([])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("embed_dim", [8, 0])
def test_every_method_gives_compact_detections(method: str, embed_dim: int):
    dense, gt = _dense(embed_dim)
    dets = postprocess(dense, method=method, conf=0.05, max_det=50)
    assert len(dets) == 2
    d = dets[0]
    assert d.boxes.shape == (len(d), 4) and d.labels.dtype == torch.long
    assert ((d.scores >= 0.05) & (d.scores <= 1)).all() and len(d) <= 50
    assert (d.scores[:-1] >= d.scores[1:]).all()
    assert len(dets[1]) == 0  # the faint image stays empty above conf
    best = pairwise_iou(gt, d.boxes).max(dim=1).values
    assert (best > 0.5).all()  # every defect found
    assert len(postprocess(dense, method=method, conf=0.05, max_det=2)[0]) <= 2


def test_dnms_removes_duplicates_that_greedy_keeps():
    dense, gt = _dense()
    strong = {m: int((postprocess(dense, method=m)[0].scores >= 0.3).sum()) for m in METHODS}
    assert strong["dnms"] == len(gt)
    assert strong["greedy"] >= strong["dnms"]


def _two_tile_line() -> Candidates:
    """A 30 x 900 line cut by two overlapping tiles: each tile sees a truncated piece."""
    gen = torch.Generator().manual_seed(2)
    pieces = []
    for x0, x1 in ((0.0, 620.0), (400.0, 900.0)):
        n = 10
        boxes = torch.tensor([x0, 300.0, x1, 330.0]) + torch.randn(n, 4, generator=gen) * 2
        o2m = torch.zeros(n, 3)
        o2m[:, 2] = 0.8
        o2o = torch.zeros(n, 3)
        o2o[0, 2] = 0.9
        tile = Candidates(
            boxes - torch.tensor([x0, 0, x0, 0]), o2o, o2m, torch.full((n,), 0.8), torch.zeros(n, 0)
        )
        pieces.append(tile.shifted(x0, 0.0))
    return concat_candidates(pieces)


def test_tiled_line_comes_out_once():
    frame = _two_tile_line()
    dnms = suppress([frame], method="dnms", conf=0.3)[0]
    assert len(dnms) == 1
    assert float(pairwise_iou(torch.tensor([[0.0, 300, 900, 330]]), dnms.boxes)[0, 0]) > 0.85
    assert len(suppress([frame], method="greedy", conf=0.3)[0]) == 2


def test_unknown_method_and_empty_inputs():
    with pytest.raises(FabricError, match="unknown NMS method 'fast'"):
        suppress([], method="fast")
    assert suppress([], method="dnms") == []
    empty = Candidates(
        torch.zeros(0, 4), torch.zeros(0, 3), torch.zeros(0, 3), torch.zeros(0), torch.zeros(0, 4)
    )
    for method in METHODS:
        assert [len(d) for d in suppress([empty, empty], method=method)] == [0, 0]
    with pytest.raises(ValueError, match="quality"):
        Candidates(
            torch.zeros(2, 4),
            torch.zeros(2, 3),
            torch.zeros(2, 3),
            torch.zeros(3),
            torch.zeros(2, 0),
        )


def _cands(boxes: list[list[float]], o2m: list[list[float]]) -> Candidates:
    """Candidates with quality 1 (so the greedy score is ``sqrt(o2m)``) and o2o = o2m."""
    b, s = torch.tensor(boxes), torch.tensor(o2m)
    return Candidates(b, s, s, torch.ones(len(b)), torch.zeros(len(b), 0))


def test_top_classes_knob_gives_multi_class_detections():
    c = _cands([[0.0, 0, 10, 10]], [[0.64, 0.36, 0.0]])
    one = suppress([c], "greedy", conf=0.1)[0]
    two = suppress([c], "greedy", conf=0.1, nms=NmsSettings(top_classes=2))[0]
    assert one.labels.tolist() == [0]
    assert two.labels.tolist() == [0, 1] and torch.allclose(two.scores, torch.tensor([0.8, 0.6]))


def test_vote_iou_knob_moves_the_greedy_box():
    c = _cands([[0.0, 0, 10, 10], [1, 0, 11, 10]], [[0.81], [0.09]])
    plain = suppress([c], "greedy", conf=0.05)[0]
    voted = suppress([c], "greedy", conf=0.05, nms=NmsSettings(vote_iou=0.5))[0]
    assert len(plain) == len(voted) == 1 and torch.equal(plain.boxes[0], c.boxes[0])
    assert torch.allclose(voted.boxes[0], torch.tensor([0.25, 0, 10.25, 10]))  # 0.9 / 0.3 weights


def test_merge_stage_joins_segments_and_duplicates_after_any_suppression():
    # two collinear pieces of one vertical line, and a small box inside a large one
    c = _cands(
        [[10.0, 0, 20, 100], [10, 90, 20, 200], [300, 300, 340, 340], [290, 290, 390, 390]],
        [[0.81], [0.64], [0.81], [0.25]],
    )
    for base in ("greedy", "soft"):
        plain = suppress([c], base, conf=0.2)[0]
        merged = suppress([c], f"{base}+merge", conf=0.2)[0]
        assert len(plain) == 4 and len(merged) == 2
        assert torch.allclose(merged.boxes[0], torch.tensor([10.0, 0, 20, 200]))  # the line
        assert torch.allclose(merged.boxes[1], torch.tensor([300.0, 300, 340, 340]))  # not grown
        assert torch.allclose(merged.scores, plain.scores[[0, 1]])


def test_dnms_without_merge_keeps_the_tiles_pieces():
    frame = _two_tile_line()
    assert len(suppress([frame], "dnms", conf=0.3)[0]) == 1
    assert len(suppress([frame], "dnms-no-merge", conf=0.3)[0]) == 2
