"""Box-supervised mask losses (fabricnms.model.mask_losses)."""

from __future__ import annotations

import pytest
import torch

from fabricnms.model.mask_head import roi_sample
from fabricnms.model.mask_losses import (
    box_coverage,
    box_mask_loss,
    box_mask_targets,
    expand_boxes,
    pairwise_loss,
    projection_loss,
    rgb_to_lab,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_lab_reference_colours() -> None:
    rgb = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]).T.reshape(3, 1, 3)
    lab = rgb_to_lab(rgb)[:, 0].T
    assert lab[0].tolist() == pytest.approx([100.0, 0.0, 0.0], abs=0.05)
    assert lab[1].tolist() == pytest.approx([0.0, 0.0, 0.0], abs=0.05)
    assert lab[2].tolist() == pytest.approx([53.24, 80.09, 67.20], abs=0.1)


def test_expand_and_coverage() -> None:
    boxes = torch.tensor([[10.0, 20.0, 30.0, 60.0], [0.0, 0.0, 2.0, 2.0]])
    crop = expand_boxes(boxes, ratio=2.0, min_pad=4.0)
    assert crop.tolist() == [[0.0, 0.0, 40.0, 80.0], [-4.0, -4.0, 6.0, 6.0]]
    cover_x, cover_y = box_coverage(boxes, crop, size=8)
    assert cover_x[0].tolist() == [0, 0, 1, 1, 1, 1, 0, 0]
    assert cover_y[0].tolist() == [0, 0, 1, 1, 1, 1, 0, 0]
    # a box of 2 px on a 10 px crop of 8 cells: 1.6 cells, fractional at both ends
    assert cover_x[1].sum().item() == pytest.approx(1.6)
    assert ((cover_x[1] > 0) & (cover_x[1] < 1)).sum() == 2


def test_perfect_box_shaped_mask_has_no_projection_loss() -> None:
    boxes = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
    crop = expand_boxes(boxes, ratio=2.0)
    cover_x, cover_y = box_coverage(boxes, crop, size=8)
    inside = cover_y[0][:, None] * cover_x[0][None, :]
    perfect = (inside * 40 - 20)[None]
    assert projection_loss(perfect, cover_x, cover_y).item() < 1e-4
    shifted = torch.roll(perfect, 1, dims=2)
    empty = torch.full_like(perfect, -20.0)
    assert projection_loss(shifted, cover_x, cover_y) > 0.2
    assert projection_loss(empty, cover_x, cover_y).item() == pytest.approx(2.0, abs=1e-3)


def test_pairwise_loss_is_finite_and_respects_the_threshold() -> None:
    logits = torch.tensor([[[60.0, -60.0], [60.0, 60.0]]], requires_grad=True)
    similar = torch.ones(1, 8, 2, 2)
    loss = pairwise_loss(logits, similar)
    assert torch.isfinite(loss).all() and loss.item() > 10  # confident disagreement is costly
    loss.sum().backward()
    assert torch.isfinite(logits.grad).all()
    assert pairwise_loss(logits, similar * 0.2, tau=0.3).item() == 0.0
    agree = torch.full((1, 2, 2), 8.0)
    assert pairwise_loss(agree, similar).item() < 1e-3


def _disk_scene() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    h = w = 64
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    disk = (ys - 30) ** 2 + (xs - 34) ** 2 <= 12**2
    image = torch.full((3, h, w), 0.5)
    image[:, disk] = torch.tensor([0.8, 0.3, 0.3])[:, None]
    gen = torch.Generator().manual_seed(0)
    image = (image + 0.02 * torch.randn(3, h, w, generator=gen)).clamp(0, 1)
    rows, cols = torch.nonzero(disk, as_tuple=True)
    box = torch.tensor([[cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]]).float()
    return image, box, disk


def test_colour_affinity_turns_a_box_mask_into_the_object() -> None:
    image, box, disk = _disk_scene()
    targets = box_mask_targets(image, box, size=28)
    truth = roi_sample(disk.float()[None], targets.crop_boxes, 1.0, 28)[:, 0] > 0.5

    def iou(mask: torch.Tensor) -> float:
        return float((mask & truth).sum() / (mask | truth).sum())

    filled_box = (targets.cover_x[:, None, :] > 0.5) & (targets.cover_y[:, :, None] > 0.5)
    logits = (filled_box.float() * 4 - 2).requires_grad_()
    optimiser = torch.optim.Adam([logits], lr=0.1)
    first = None
    for _ in range(80):
        losses = box_mask_loss(logits, targets)
        first = first or {k: float(v.detach()) for k, v in losses.items()}
        optimiser.zero_grad()
        losses["loss"].backward()
        assert torch.isfinite(logits.grad).all()
        optimiser.step()
    assert iou(filled_box) < 0.83
    assert iou(logits.detach() > 0) > 0.88
    assert float(losses["pairwise"]) < 0.5 * first["pairwise"]
    assert float(losses["projection"]) < 0.01


def test_targets_select_and_empty_batches() -> None:
    image, box, _ = _disk_scene()
    targets = box_mask_targets(image, torch.cat([box, box + 3]), size=16)
    assert targets.similarity.shape == (2, 8, 16, 16)
    picked = targets.select(torch.tensor([1, 1, 0]))
    assert torch.equal(picked.crop_boxes[0], targets.crop_boxes[1])
    assert picked.cover_x.shape == (3, 16)
    logits = torch.zeros(0, 16, 16, requires_grad=True)
    out = box_mask_loss(logits, targets.select(torch.zeros(0, dtype=torch.long)))
    assert out["loss"].item() == 0.0
    out["loss"].backward()
    assert logits.grad is not None
