"""Prototype mask branch, RoI resampling and pasting (fabricnms.model.mask_head)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from fabricnms.model.mask_head import (
    MaskBranch,
    MaskCrops,
    assemble_masks,
    paste_masks,
    roi_sample,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_branch_shapes_follow_the_dense_output_layout() -> None:
    torch.manual_seed(0)
    branch = MaskBranch(channels=16, strides=(8, 16, 32), num_protos=6, hidden=8)
    feats = {s: torch.randn(2, 16, 64 // s, 96 // s) for s in (8, 16, 32)}
    protos, coeffs = branch(feats)
    assert branch.stride == 4
    assert protos.shape == (2, 6, 16, 24)
    assert coeffs.shape == (2, 8 * 12 + 4 * 6 + 2 * 3, 6)
    assert coeffs.abs().max() < 1
    # location 0 of level 16 follows the 8 * 12 locations of level 8
    level16 = branch.coeffs.levels["16"](feats[16])
    assert torch.allclose(coeffs[:, 96], torch.tanh(level16[:, :, 0, 0]))


def test_roi_sample_is_exact_on_a_linear_map() -> None:
    stride = 4.0
    h, w = 20, 30
    ys, xs = torch.meshgrid(
        (torch.arange(h) + 0.5) * stride, (torch.arange(w) + 0.5) * stride, indexing="ij"
    )
    maps = torch.stack([0.3 * xs - 0.2 * ys + 1.0, xs * 0 + 2.0]).double()
    boxes = torch.tensor([[10.0, 12.0, 60.0, 30.0], [40.5, 20.0, 42.5, 70.0]], dtype=torch.float64)
    out = roi_sample(maps, boxes, stride, size=7, samples=3)
    assert out.shape == (2, 2, 7, 7)
    frac = (torch.arange(7, dtype=torch.float64) + 0.5) / 7
    for k, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        cx = x1 + frac * (x2 - x1)
        cy = y1 + frac * (y2 - y1)
        expected = 0.3 * cx[None, :] - 0.2 * cy[:, None] + 1.0
        assert torch.allclose(out[k, 0], expected, atol=1e-5)
        assert torch.allclose(out[k, 1], torch.full((7, 7), 2.0, dtype=torch.float64))


def test_assemble_equals_sampling_the_combined_masks() -> None:
    gen = torch.Generator().manual_seed(1)
    protos = torch.randn(5, 16, 24, generator=gen, requires_grad=True)
    coeffs = torch.randn(3, 5, generator=gen, requires_grad=True)
    boxes = torch.tensor(
        [[0.0, 0.0, 96.0, 64.0], [10.0, 5.0, 30.0, 60.0], [50.0, 20.0, 52.0, 22.0]]
    )
    logits = assemble_masks(protos, coeffs, boxes, stride=4, size=14)
    assert logits.shape == (3, 14, 14)
    full = torch.einsum("kp,phw->khw", coeffs, protos)  # only affordable in a test
    for k in range(3):
        direct = roi_sample(full[k][None], boxes[k : k + 1], 4, 14)[0, 0]
        assert torch.allclose(logits[k], direct, atol=1e-5)
    logits.sum().backward()
    assert protos.grad is not None and coeffs.grad is not None
    assert protos.grad.abs().sum() > 0 and coeffs.grad.abs().sum() > 0
    assert assemble_masks(protos, coeffs[:0], boxes[:0], 4, 14).shape == (0, 14, 14)


def test_paste_reproduces_a_disk_without_frame_sized_tensors() -> None:
    size, height, width = 28, 120, 200
    box = torch.tensor([[50.3, 20.7, 110.9, 81.2]])
    cells = (torch.arange(size, dtype=torch.float64) + 0.5) / size * 2 - 1
    grid_disk = (cells[None, :] ** 2 + cells[:, None] ** 2 <= 1).double()
    crops = paste_masks(grid_disk[None], box, height, width)
    assert crops.offsets.tolist() == [[50, 20]]
    assert crops.crops[0].shape == (62, 61)  # rows 20..81, columns 50..110
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    cx, cy, rx, ry = (50.3 + 110.9) / 2, (20.7 + 81.2) / 2, (110.9 - 50.3) / 2, (81.2 - 20.7) / 2
    truth = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1
    full = crops.full(0)
    iou = (full & truth).sum() / (full | truth).sum()
    assert iou > 0.95
    assert int(crops.area()[0]) == int(full.sum())


def test_paste_clips_to_the_frame_and_handles_degenerate_boxes() -> None:
    probs = torch.ones(3, 8, 8)
    boxes = torch.tensor(
        [[-10.0, -5.0, 10.0, 6.0], [95.0, 45.0, 130.0, 70.0], [5.0, 5.0, 5.0, 9.0]]
    )
    crops = paste_masks(probs, boxes, 50, 100)
    assert crops.crops[0].shape == (6, 10) and crops.crops[0].all()
    assert crops.offsets[1].tolist() == [95, 45] and crops.crops[1].shape == (5, 5)
    assert crops.crops[2].numel() == 0
    assert crops.area().tolist() == [60, 25, 0]
    assert crops.tight_boxes().tolist() == [[0, 0, 10, 6], [95, 45, 100, 50], [0, 0, 0, 0]]


def test_rle_from_crops_matches_pycocotools_on_the_full_mask() -> None:
    gen = torch.Generator().manual_seed(2)
    height, width = 37, 53
    offsets, crops = [], []
    for x0, y0, h, w in (
        (0, 0, 37, 5),
        (10, 0, 20, 7),
        (40, 30, 7, 13),
        (3, 4, 0, 5),
        (8, 9, 6, 6),
    ):
        crop = torch.rand(h, w, generator=gen) > 0.4
        if h == 37:
            crop[:, 1:3] = True  # full columns: runs continue across column boundaries
        offsets.append([x0, y0])
        crops.append(crop)
    crops[-1][:] = False  # an empty mask
    masks = MaskCrops(torch.tensor(offsets), crops, height, width)
    rles = masks.to_rle()
    for k, rle in enumerate(rles):
        full = masks.full(k).numpy()
        expected = mask_utils.encode(np.asfortranarray(full.astype(np.uint8)))
        assert rle["size"] == [height, width]
        assert rle["counts"] == expected["counts"].decode("ascii"), k
        decoded = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
        assert np.array_equal(decoded.astype(bool), full)
        assert mask_utils.area(expected) == int(masks.area()[k])
        if full.any():
            x, y, w, h = mask_utils.toBbox(expected).tolist()
            assert masks.tight_boxes()[k].tolist() == pytest.approx([x, y, x + w, y + h])


def test_refined_area_matches_the_pasted_mask() -> None:
    """The wiring path: assemble -> refine -> paste; refine's area estimate agrees with paste."""
    from fabricnms.model.boxes import box_area
    from fabricnms.model.refine import refine_masks

    size = 28
    boxes = torch.tensor([[100.0, 50.0, 180.0, 90.0], [10.0, 10.0, 40.0, 400.0]])
    cells = (torch.arange(size) + 0.5) / size * 2 - 1
    disk = (cells[None, :] ** 2 + cells[:, None] ** 2 <= 1).float() * 8 - 4
    refined = refine_masks(disk.expand(2, size, size), h0=0.1, pixel_area=box_area(boxes) / size**2)
    pasted = paste_masks(refined.probs, boxes, 480, 640)
    assert torch.allclose(refined.area, pasted.area().float(), rtol=0.05)
    expected = torch.pi / 4 * box_area(boxes)
    assert torch.allclose(pasted.area().float(), expected, rtol=0.05)
