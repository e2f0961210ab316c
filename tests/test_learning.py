"""Evidence that the detector learns through the Sinkhorn matching, end to end through DNMS.

A tiny detector is trained for 200 steps on eight 128 x 128 synthetic fabric crops
(``fabricnms.data.synth.render_frame``: holes, knots and thick-weft lines, 1-3 per crop) and
must reach AP50 >= 0.9 on them through ``postprocess(method="dnms")``, the path eval and
predict use, with about one detection per defect.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers_synthetic import voc_ap50

from fabricnms.data.synth import render_frame
from fabricnms.model.detector import Detector
from fabricnms.model.postprocess import postprocess

CATEGORIES = (1, 4, 12)  # hole, knot, thick_weft (1-based category ids)
SIZE = 128
STEPS = 200


def synth_batch(n: int = 8) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """``[n, 3, SIZE, SIZE]`` images in [0, 1] and targets with 0-based labels of CATEGORIES."""
    images, targets = [], []
    for seed in range(n):
        frame = render_frame(
            seed, SIZE, SIZE, difficulty="easy", classes=CATEGORIES, n_defects=1 + seed % 3
        )
        images.append(torch.from_numpy(np.ascontiguousarray(frame.image)).permute(2, 0, 1))
        boxes = torch.tensor([d.box for d in frame.defects], dtype=torch.float32).reshape(-1, 4)
        labels = torch.tensor([CATEGORIES.index(d.category_id) for d in frame.defects])
        targets.append({"boxes": boxes, "labels": labels})
    return torch.stack(images).float() / 255.0, targets


def train(model: Detector, images: torch.Tensor, targets: list[dict], steps: int) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    model.train()
    for step in range(steps):
        out = model.loss(model(images), targets, progress=step / steps)
        opt.zero_grad()
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        sched.step()


def test_detector_learns_synthetic_defects_through_dnms() -> None:
    torch.manual_seed(0)
    images, targets = synth_batch()
    model = Detector(len(CATEGORIES), width=8, neck_channels=32)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is faster, and immune to busy cores
    try:
        train(model, images, targets, STEPS)
        model.eval()
        with torch.no_grad():
            dets = postprocess(model(images), method="dnms", conf=0.001)
    finally:
        torch.set_num_threads(threads)
    preds = [(d.boxes, d.scores, d.labels) for d in dets]
    gts = [(t["boxes"], t["labels"]) for t in targets]
    ap50 = voc_ap50(preds, gts, len(CATEGORIES))
    assert ap50 >= 0.9, f"AP50 {ap50:.3f}"
    # one confident detection per defect: no duplicates above 0.3
    n_gt = sum(len(t["labels"]) for t in targets)
    confident = sum(int((d.scores > 0.3).sum()) for d in dets)
    assert n_gt - 1 <= confident <= n_gt + 1, (confident, n_gt)


def test_voc_ap50_counts_misses_duplicates_and_wrong_classes() -> None:
    gt = (torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 40.0, 30.0]]), torch.tensor([0, 0]))
    perfect = (gt[0], torch.tensor([0.9, 0.8]), torch.tensor([0, 0]))
    assert voc_ap50([perfect], [gt], 2) == 1.0
    half = (gt[0][:1], torch.tensor([0.9]), torch.tensor([0]))
    assert voc_ap50([half], [gt], 2) == 0.5
    # a duplicate scored above the second object costs precision at full recall
    dup = (
        torch.cat([gt[0][:1], gt[0][:1] + 0.5, gt[0][1:]]),
        torch.tensor([0.9, 0.85, 0.8]),
        torch.tensor([0, 0, 0]),
    )
    assert voc_ap50([dup], [gt], 2) == pytest.approx(0.5 + 0.5 * 2 / 3)
    wrong = (gt[0], torch.tensor([0.9, 0.8]), torch.tensor([1, 1]))
    assert voc_ap50([wrong], [gt], 2) == 0.0
