"""Inference copies: batch norm and the input normalisation folded, the mask branch gated."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
import torch
from torch import nn

from fabricnms.engine.checkpoint import DEFAULT_WEIGHTS, load_detector
from fabricnms.engine.tiling import TileSettings, detect_frames
from fabricnms.model.boxes import pairwise_iou
from fabricnms.model.detector import Detector
from fabricnms.model.fuse import inference_copy

ROLL = Path(__file__).resolve().parents[1] / "examples" / "roll_scans"


def _trained_looking(model: Detector) -> Detector:
    """Random BatchNorm statistics and affine terms, so folding has something to fold."""
    gen = torch.Generator().manual_seed(0)
    for bn in model.modules():
        if isinstance(bn, nn.BatchNorm2d):
            c = bn.num_features
            bn.running_mean.copy_(torch.randn(c, generator=gen) * 0.5)
            bn.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            bn.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            bn.bias.data.copy_(torch.randn(c, generator=gen) * 0.2)
    return model.eval()


def test_folded_copy_gives_the_same_dense_output_borders_included(one_thread: None) -> None:
    torch.manual_seed(0)
    model = _trained_looking(Detector(4, width=8, neck_channels=16, embed_dim=8, mask_prototypes=4))
    folded = inference_copy(model, masks=True)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    images = torch.rand(2, 3, 96, 128)
    with torch.inference_mode():
        a, b = model(images), folded(images)
    for key in ("cls_o2m", "cls_o2o", "boxes", "quality", "embed", "mask_coeffs", "prototypes"):
        torch.testing.assert_close(getattr(b, key), getattr(a, key), atol=2e-4, rtol=1e-4)
    # the trained model is untouched: still normalises its input and keeps its BatchNorm layers
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model.mask_branch is not None


def test_mask_branch_runs_only_when_masks_are_asked_for() -> None:
    model = Detector(2, width=8, neck_channels=16, embed_dim=8, mask_prototypes=4).eval()
    calls = []
    model.mask_branch.register_forward_hook(lambda *_: calls.append(1))
    boxes_only = inference_copy(model)
    with torch.inference_mode():
        dense = boxes_only(torch.rand(1, 3, 64, 64))
    assert boxes_only.mask_branch is None and dense.prototypes is None and not calls
    with_masks = inference_copy(model, masks=True)
    with torch.inference_mode():
        assert with_masks(torch.rand(1, 3, 64, 64)).prototypes is not None


def test_shipped_checkpoint_gives_identical_detections_folded(one_thread: None) -> None:
    model, _ = load_detector(DEFAULT_WEIGHTS)
    image = cv2.cvtColor(cv2.imread(str(ROLL / "frame_0004.jpg")), cv2.COLOR_BGR2RGB)
    frame = image[100:612, 500:1268]  # 512 x 768 crop with two defects: one tile, fast
    settings = TileSettings(tile=1024, conf=0.05)
    (before,) = detect_frames(model, [frame], settings)
    (after,) = detect_frames(inference_copy(model), [frame], settings)
    assert len(before) > 0
    assert len(after) == len(before)
    assert torch.equal(after.labels, before.labels)
    assert pairwise_iou(after.boxes, before.boxes).diagonal().min() >= 0.999
    assert (after.scores - before.scores).abs().max() <= 1e-4


@pytest.mark.parametrize("masks", [False, True])
def test_folded_copy_is_inference_only_and_leaves_the_model_trainable(masks: bool) -> None:
    model = Detector(2, width=8, neck_channels=16, embed_dim=8, mask_prototypes=2)
    folded = inference_copy(model, masks=masks)
    assert not folded.training
    assert not any(p.requires_grad for p in folded.parameters())
    assert all(p.requires_grad for p in model.parameters())
