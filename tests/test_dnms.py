"""DifferentiableNMS on seeded synthetic proposal sets (no network).

Protocol of the quality test (``test_dnms_beats_greedy``): for each o2o flavour ("trained": one
good member per defect has a high one-to-one score; "noisy": o2o is a weak noisy copy of o2m,
so several members per defect look like hypotheses) and seeds 0-3, a 2446 x 1000 frame gets 10
true defects (30 % long thin lines of ~30 x 600-1200 px, the rest 15-200 px blobs) of 20
classes, 14 jittered candidates per defect (lines: half of them fragments covering 20-50 % of
the line), and 40 low-scoring background candidates (see :mod:`fabricnms.model.proposals`).
DNMS and greedy NMS (OpenCV, IoU 0.5, dense score ``sqrt(o2m * quality)``) run on the same
candidates. Counting only detections with score >= FLOOR = 0.3, and matching class-aware:
DNMS returns at most 1.05 detections per defect, its recall at IoU 0.5 is at least greedy's,
and its mean best-match IoU to the true boxes is higher than greedy's.
"""

from __future__ import annotations

import pytest
import torch

from fabricnms.model.boxes import pairwise_iou
from fabricnms.model.dnms import DifferentiableNMS
from fabricnms.model.merge import greedy_keep
from fabricnms.model.nms import greedy_nms
from fabricnms.model.proposals import ProposalSet, random_defects, simulate

FLOOR = 0.3
NUM_CLASSES = 20


def _scene(seed: int, o2o: str, num: int = 10) -> ProposalSet:
    gen = torch.Generator().manual_seed(seed)
    gt_boxes, gt_labels = random_defects(num, NUM_CLASSES, gen)
    return simulate(gt_boxes, gt_labels, NUM_CLASSES, gen, per_object=14, clutter=40, o2o=o2o)


def _batch(ps: ProposalSet, dtype: torch.dtype = torch.float32):
    return (
        ps.boxes[None].to(dtype),
        ps.scores_o2m[None].to(dtype),
        ps.scores_o2o[None].to(dtype),
        ps.quality[None].to(dtype),
        ps.embed[None].to(dtype),
    )


def _measure(boxes, scores, labels, gt_boxes, gt_labels) -> tuple[float, float, float]:
    """(detections per defect, recall at IoU 0.5, mean best IoU), class-aware, above FLOOR."""
    sel = scores >= FLOOR
    boxes, labels = boxes[sel], labels[sel]
    if boxes.shape[0] == 0:
        return 0.0, 0.0, 0.0
    iou = pairwise_iou(gt_boxes, boxes.float()) * (gt_labels[:, None] == labels[None, :])
    best = iou.max(dim=1).values
    return boxes.shape[0] / len(gt_boxes), float((best >= 0.5).float().mean()), float(best.mean())


@pytest.mark.parametrize("o2o", ["trained", "noisy"])
def test_dnms_beats_greedy(o2o: str):
    dnms = DifferentiableNMS()
    ours, greedy = [], []
    for seed in range(4):
        ps = _scene(seed, o2o)
        det = dnms(*_batch(ps))[0]
        ours.append(_measure(det.boxes, det.scores, det.labels, ps.gt_boxes, ps.gt_labels))
        score, label = (ps.scores_o2m * ps.quality[:, None]).sqrt().max(dim=1)
        keep = greedy_nms(ps.boxes, score, label)
        greedy.append(_measure(ps.boxes[keep], score[keep], label[keep], ps.gt_boxes, ps.gt_labels))
    _, recall, miou = (sum(x) / len(ours) for x in zip(*ours, strict=True))
    g_per_obj, g_recall, g_miou = (sum(x) / len(greedy) for x in zip(*greedy, strict=True))
    assert max(x[0] for x in ours) <= 1.05, ours
    assert recall >= g_recall
    assert miou > g_miou + 0.02, (miou, g_miou)
    assert g_per_obj > 1.2  # the scene really has duplicates that greedy NMS keeps


def test_confident_duplicates_collapse_to_one_per_object():
    """Flaw 2 of the reference code: 3 objects x 10 jittered proposals, all confident."""
    gen = torch.Generator().manual_seed(11)
    gt = torch.tensor([[100.0, 100, 180, 160], [400, 300, 440, 700], [800, 50, 900, 120]])
    ps = simulate(gt, torch.tensor([0, 1, 2]), 4, gen, per_object=10, clutter=20, o2o="noisy")
    o2o = ps.scores_o2m * 2.0  # every candidate a confident hypothesis
    o2o = o2o.clamp(max=0.99)[None]
    det = DifferentiableNMS()(ps.boxes[None], ps.scores_o2m[None], o2o, ps.quality[None])[0]
    strong = det.scores >= FLOOR
    assert int(strong.sum()) == 3
    assert float(pairwise_iou(gt, det.boxes[strong]).max(dim=1).values.min()) > 0.7


def test_line_fragments_become_one_detection():
    """Two overlapping tile fragments of one 30 x 900 warp line, no full-length candidate."""
    line = torch.tensor([100.0, 400.0, 1000.0, 430.0])
    gen = torch.Generator().manual_seed(3)
    parts = []
    for x1, x2 in ((100.0, 620.0), (420.0, 1000.0)):
        base = torch.tensor([x1, 400.0, x2, 430.0])
        parts.append(base + torch.randn(8, 4, generator=gen) * torch.tensor([4.0, 1.5, 4.0, 1.5]))
    boxes = torch.cat(parts)
    o2m = torch.zeros(16, 3)
    o2m[:, 1] = 0.8
    o2o = torch.zeros(16, 3)
    o2o[[0, 8], 1] = 0.9  # one hypothesis per tile fragment
    det = DifferentiableNMS()(boxes[None], o2m[None], o2o[None], torch.full((1, 16), 0.8))[0]
    assert len(det) == 1
    assert float(pairwise_iou(line[None], det.boxes)[0, 0]) > 0.85


def test_line_class_comes_from_its_rows_not_its_seed():
    """The o2o class scores of a long line are nearly flat; its o2m rows agree on class 2.

    Both tile pieces are seeded by hypotheses of a wrong class (0 and 1, one each): the pieces
    are still labelled by their rows, join as one line, and the detection is class 2.
    """
    gen = torch.Generator().manual_seed(5)
    parts = []
    for y1, y2 in ((0.0, 520.0), (480.0, 1000.0)):
        base = torch.tensor([400.0, y1, 412.0, y2])
        parts.append(base + torch.randn(8, 4, generator=gen) * torch.tensor([1.0, 4.0, 1.0, 4.0]))
    boxes = torch.cat(parts)
    o2m = torch.full((16, 3), 0.2)
    o2m[:, 2] = 0.5
    o2o = torch.full((16, 3), 0.05)
    o2o[0, 0] = o2o[8, 1] = 0.3
    det = DifferentiableNMS()(boxes[None], o2m[None], o2o[None], torch.full((1, 16), 0.8))[0]
    assert det.labels.tolist() == [2]
    assert float(pairwise_iou(torch.tensor([[400.0, 0, 412, 1000]]), det.boxes)[0, 0]) > 0.8
    # The rows' evidence decides: make class 1 the rows' favourite and the label follows.
    o2m[:, 1] = 0.6
    det = DifferentiableNMS()(boxes[None], o2m[None], o2o[None], torch.full((1, 16), 0.8))[0]
    assert det.labels.tolist() == [1]


def _tiled_line(length: float, pieces: int, vertical: bool, seed: int):
    """A 30 px thick line of ``length`` cut into ``pieces`` overlapping fragments, as tiles cut it.

    Each fragment gets 8 jittered candidates (o2m 0.8, quality 0.8) and one o2o hypothesis of
    its own (0.6-0.95); there is no full-length candidate. Returns the line box and the batch.
    """
    gen = torch.Generator().manual_seed(seed)
    start, thick = 150.0, 30.0
    step = length / pieces
    boxes = []
    for p in range(pieces):  # fragment p: its tile's share of the line plus 15 % overlap
        lo = max(start, start + p * step - 0.15 * step)
        hi = min(start + length, start + (p + 1) * step + 0.15 * step)
        frag = torch.tensor([lo, 400.0, hi, 400.0 + thick])
        noise = torch.randn(8, 4, generator=gen) * torch.tensor([3.0, 1.5, 3.0, 1.5])
        boxes.append(frag + noise)
    boxes = torch.cat(boxes)
    line = torch.tensor([[start, 400.0, start + length, 400.0 + thick]])
    if vertical:  # transpose x and y
        boxes, line = boxes[:, [1, 0, 3, 2]], line[:, [1, 0, 3, 2]]
    n = boxes.shape[0]
    o2m = torch.zeros(n, 3)
    o2m[:, 1] = 0.8
    o2o = torch.zeros(n, 3)
    picks = torch.arange(pieces) * 8 + torch.randint(0, 8, (pieces,), generator=gen)
    o2o[picks, 1] = 0.6 + 0.35 * torch.rand(pieces, generator=gen)
    embed = torch.nn.functional.normalize(1 + 0.1 * torch.randn(n, 4, generator=gen), dim=1)
    batch = (boxes[None], o2m[None], o2o[None], torch.full((1, n), 0.8), embed[None])
    return line, batch


@pytest.mark.parametrize("vertical", [False, True])
@pytest.mark.parametrize(("length", "pieces"), [(700.0, 3), (900.0, 4), (2000.0, 5)])
def test_tiled_line_fragments_join_to_the_full_line(vertical: bool, length: float, pieces: int):
    """Fragments joined as one line span the union of their extents, not a robust average."""
    line, batch = _tiled_line(length, pieces, vertical, seed=pieces)
    det = DifferentiableNMS()(*batch)[0]
    assert len(det) == 1
    assert float(pairwise_iou(line, det.boxes)[0, 0]) >= 0.8
    along = [1, 3] if vertical else [0, 2]
    assert (det.boxes[0, along] - line[0, along]).abs().max() < 0.03 * length  # both ends
    across = [0, 2] if vertical else [1, 3]
    assert (det.boxes[0, across] - line[0, across]).abs().max() < 3.0  # still robust across


def _two_lines(offset: list[float], nms: DifferentiableNMS) -> int:
    """Confident detections of two 600 px lines, the second shifted by ``offset`` (xyxy)."""
    _, (boxes, o2m, o2o, quality, embed) = _tiled_line(600.0, 1, False, seed=0)
    both = torch.cat([boxes, boxes + torch.tensor(offset)], dim=1)
    dets = nms(
        both,
        torch.cat([o2m, o2m], 1),
        torch.cat([o2o, o2o], 1),
        torch.cat([quality, quality], 1),
        torch.cat([embed, embed], 1),
    )[0]
    return int((dets.scores >= FLOOR).sum())


def test_line_span_does_not_join_parallel_or_distant_lines():
    """Parallel lines side by side, and collinear ones further apart than the shorter one's
    length (``line_gap`` 1), stay two each."""
    assert _two_lines([0.0, 60.0, 0.0, 60.0], DifferentiableNMS()) == 2
    assert _two_lines([1300.0, 0.0, 1300.0, 0.0], DifferentiableNMS()) == 2


def test_collinear_pieces_join_across_a_gap_up_to_line_gap():
    """Two 600 px pieces of one line 100 px apart (a stretch the detector missed) are one
    detection by default and two with ``line_gap=0`` (touching pieces only)."""
    assert _two_lines([700.0, 0.0, 700.0, 0.0], DifferentiableNMS()) == 1
    assert _two_lines([700.0, 0.0, 700.0, 0.0], DifferentiableNMS(line_gap=0.0)) == 2


def test_hypotheses_are_capped_and_both_solvers_agree():
    """Untrained o2o: every candidate is a hypothesis; K stops at max_hyp, paths agree."""
    gen = torch.Generator().manual_seed(13)
    gt_boxes, gt_labels = random_defects(10, NUM_CLASSES, gen)
    ps = simulate(gt_boxes, gt_labels, NUM_CLASSES, gen, per_object=14, o2o="untrained")
    assert int((ps.scores_o2o.amax(1) >= 0.05).sum()) == len(ps.boxes) > 150
    batch = _batch(ps)
    assert DifferentiableNMS(max_hyp=40).match(*batch).hyp_index.shape[1] == 40
    dense = DifferentiableNMS(sparse_ratio=0.0, tol=None, iters=30, compiled=False)(*batch)[0]
    sparse = DifferentiableNMS(sparse_ratio=1.0, tol=None, iters=30, compiled=False)(*batch)[0]
    assert 0 < len(sparse) <= 100 and len(sparse) == len(dense)
    assert torch.allclose(sparse.boxes, dense.boxes, atol=1e-2)
    assert torch.allclose(sparse.scores, dense.scores, atol=1e-4)


def test_greedy_keep_is_exact_greedy_suppression():
    gen = torch.Generator().manual_seed(14)
    k = 60
    sup = (torch.rand(3, k, k, generator=gen) < 0.08).triu(diagonal=1)
    valid = torch.rand(3, k, generator=gen) < 0.9
    sup = sup & valid[:, :, None] & valid[:, None, :]
    keep = greedy_keep(sup, valid)
    for b in range(3):
        kept: list[int] = []
        for j in range(
            k
        ):  # the textbook loop: in score order, keep j unless a kept k suppresses it
            if bool(valid[b, j]) and not any(bool(sup[b, i, j]) for i in kept):
                kept.append(j)
        assert keep[b].nonzero().flatten().tolist() == kept


@pytest.mark.parametrize("name", ["alpha", "beta", "gamma"])
def test_every_cost_term_changes_the_plan(name: str):
    gen = torch.Generator().manual_seed(5)  # a crowded frame: defects of several classes overlap
    gt_boxes, gt_labels = random_defects(8, 4, gen, width=500, height=400, line_fraction=0.0)
    ps = simulate(gt_boxes, gt_labels, 4, gen, o2o="noisy", width=500, height=400)
    base = DifferentiableNMS(tol=None, iters=30).match(*_batch(ps)).plan
    changed = DifferentiableNMS(tol=None, iters=30, **{name: 0.0}).match(*_batch(ps)).plan
    assert base.shape == changed.shape
    assert float((base - changed).abs().max()) > 1e-2


def test_class_agreement_term_steers_rows_to_their_class():
    """Rows of two classes on one spot: with delta > 0 each goes to its own class's hypothesis."""
    boxes = torch.tensor([[10.0, 10, 50, 50]]).repeat(8, 1) + torch.arange(8.0)[:, None] * 0.5
    o2m = torch.zeros(8, 2)
    o2m[:4, 0], o2m[4:, 1] = 0.8, 0.8
    o2o = torch.zeros(8, 2)
    o2o[0, 0], o2o[4, 1] = 0.9, 0.9
    args = (boxes[None], o2m[None], o2o[None], torch.full((1, 8), 0.8))

    def cross_mass(delta: float) -> float:
        m = DifferentiableNMS(delta=delta, tol=None, iters=50).match(*args)
        right = m.hyp_label[0][None, :] == o2m.argmax(1)[:, None]  # [N, K]
        return float(m.plan[0, :, :2][~right].sum() / m.plan[0, :, :2].sum())

    without, with_term = cross_mass(0.0), cross_mass(1.0)
    assert without > 0.15, without
    assert with_term < without / 4, (with_term, without)


def test_outputs_differentiable_in_scores_boxes_and_embeddings():
    ps = _scene(6, "trained", num=3)
    boxes, o2m, o2o, quality, embed = (t.clone().requires_grad_(True) for t in _batch(ps))
    dets = DifferentiableNMS(tol=None, iters=20)(boxes, o2m, o2o, quality, embed)
    total = dets[0].boxes.sum() + 100 * dets[0].scores.sum()
    total.backward()
    for t in (boxes, o2m, o2o, quality, embed):
        assert t.grad is not None and torch.isfinite(t.grad).all()
        assert float(t.grad.abs().sum()) > 0
    # Flaw 1 of the reference code: the fused *boxes* must depend on the scores.
    o2m2 = _batch(ps)[1].clone().requires_grad_(True)
    dets = DifferentiableNMS(tol=None, iters=20)(_batch(ps)[0], o2m2, *_batch(ps)[2:])
    (gb,) = torch.autograd.grad(dets[0].boxes.sum(), o2m2)
    assert float(gb.abs().sum()) > 1e-3


def test_variable_counts_per_image_and_empty_image():
    a, b = _scene(7, "trained", num=5), _scene(8, "trained", num=2)
    n = max(len(a.boxes), len(b.boxes))

    def pad(t: torch.Tensor) -> torch.Tensor:
        return torch.cat([t, t.new_zeros((n - t.shape[0], *t.shape[1:]))])

    sets = (a, b, b)
    stack = [
        torch.stack([pad(getattr(p, k)) for p in sets])
        for k in ("boxes", "scores_o2m", "scores_o2o", "quality", "embed")
    ]
    valid = torch.zeros(3, n, dtype=torch.bool)
    valid[0, : len(a.boxes)] = True
    valid[1, : len(b.boxes)] = True  # image 2: no candidates at all
    dnms = DifferentiableNMS(tol=None)  # same iteration count in the batch and alone
    dets = dnms(*stack, valid=valid)
    assert len(dets) == 3 and len(dets[2]) == 0
    alone_a, alone_b = dnms(*_batch(a))[0], dnms(*_batch(b))[0]
    # No batch-shared K: each image gets what it gets alone.
    assert len(dets[0]) == len(alone_a) and len(dets[1]) == len(alone_b)
    assert torch.allclose(dets[1].boxes, alone_b.boxes, atol=1e-3)
    assert int((dets[0].scores >= FLOOR).sum()) == 5 and int((dets[1].scores >= FLOOR).sum()) == 2
    for d in dets:
        assert ((d.scores >= 0) & (d.scores <= 1)).all()
        assert (d.scores[:-1] >= d.scores[1:]).all()


def test_no_candidates_and_optional_inputs():
    dnms = DifferentiableNMS()
    out = dnms(torch.zeros(2, 0, 4), torch.zeros(2, 0, 5), torch.zeros(2, 0, 5))
    assert [len(d) for d in out] == [0, 0]
    ps = _scene(9, "trained", num=3)
    boxes, o2m, o2o, quality, _ = _batch(ps)
    for embed in (None, torch.zeros(1, boxes.shape[1], 0)):
        det = dnms(boxes, o2m, o2o, quality, embed)[0]
        assert int((det.scores >= FLOOR).sum()) == 3
    det = dnms(boxes, o2m, o2o)[0]  # no quality either
    assert int((det.scores >= FLOOR).sum()) == 3
    low = dnms(boxes, o2m, o2o * 0.01, quality)[0]  # no hypothesis above the floor
    assert len(low) == 0


def test_float64_matches_float32():
    ps = _scene(10, "trained", num=4)
    d32 = DifferentiableNMS()(*_batch(ps))[0]
    d64 = DifferentiableNMS()(*_batch(ps, torch.float64))[0]
    assert d64.boxes.dtype == torch.float64 and len(d64) == len(d32)
    assert torch.allclose(d64.boxes.float(), d32.boxes, atol=0.05)


def test_bad_inputs_raise():
    dnms = DifferentiableNMS()
    with pytest.raises(ValueError, match="boxes"):
        dnms(torch.zeros(1, 3, 5), torch.zeros(1, 3, 2), torch.zeros(1, 3, 2))
    with pytest.raises(ValueError, match="scores_o2o"):
        dnms(torch.zeros(1, 3, 4), torch.zeros(1, 3, 2), torch.zeros(1, 3, 3))
    with pytest.raises(ValueError, match="eps"):
        DifferentiableNMS(eps=0.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    ps = _scene(12, "noisy", num=5)
    cpu = DifferentiableNMS()(*_batch(ps))[0]
    gpu = DifferentiableNMS()(*(t.cuda() for t in _batch(ps)))[0]
    assert gpu.boxes.device.type == "cuda" and len(gpu) == len(cpu)
    assert torch.allclose(gpu.boxes.cpu(), cpu.boxes, atol=0.05)
