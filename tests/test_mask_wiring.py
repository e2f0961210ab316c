"""The mask branch wired into the detector, the training loss, the suppression and tiling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fabricnms.engine.tiling import tile_windows
from fabricnms.engine.train_start import load_start_weights
from fabricnms.errors import FabricError
from fabricnms.model.detector import MASK_BRANCH_PREFIX, Detector
from fabricnms.model.dnms import DifferentiableNMS
from fabricnms.model.mask_infer import (
    MaskSettings,
    ProtoMosaic,
    box_colours,
    colour_logits,
    frame_masks,
)
from fabricnms.model.types import Detections

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = {"num_classes": 3, "width": 4, "neck_channels": 16, "embed_dim": 8}


def test_branch_off_keeps_the_state_dict_and_old_configs_rebuild() -> None:
    plain = Detector(**TINY)
    assert plain.mask_branch is None
    assert not any(k.startswith(MASK_BRANCH_PREFIX) for k in plain.state_dict())
    old_config = {k: v for k, v in plain.config.items() if k != "mask_prototypes"}
    old_config["loss_weights"] = {
        k: v for k, v in old_config["loss_weights"].items() if k != "mask"
    }
    rebuilt = Detector(**old_config)  # a config saved before the branch existed
    rebuilt.load_state_dict(plain.state_dict())  # strict
    assert list(rebuilt.state_dict()) == list(plain.state_dict())
    dense = plain.eval()(torch.rand(1, 3, 64, 64))
    assert dense.prototypes is None and dense.mask_coeffs is None


def test_branch_on_rebuilds_from_config_and_outputs_shapes() -> None:
    model = Detector(**TINY, mask_prototypes=4)
    again = Detector(**model.config)
    again.load_state_dict(model.state_dict())
    dense = model.eval()(torch.rand(2, 3, 64, 96))
    assert dense.proto_stride == 4
    assert dense.prototypes.shape == (2, 4, 16, 24)
    assert dense.mask_coeffs.shape == (2, dense.boxes.shape[1], 4)


def test_box_only_loss_reaches_prototypes_and_coefficients_alone() -> None:
    torch.manual_seed(0)
    model = Detector(**TINY, mask_prototypes=4)
    model.freeze_detector()
    model.train()
    assert not model.backbone.training and model.mask_branch.training
    images = torch.rand(2, 3, 64, 64)
    targets = [
        {"boxes": torch.tensor([[8.0, 10.0, 40.0, 30.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
    ]
    losses = model.loss(model(images), targets, 0.5, images)
    assert set(losses) == {"loss", "mask", "mask_projection", "mask_pairwise"}
    losses["loss"].backward()
    for part in (model.mask_branch.protonet, model.mask_branch.coeffs):
        assert sum(float(p.grad.abs().sum()) for p in part.parameters()) > 0
    assert all(p.grad is None for p in model.backbone.parameters())
    with pytest.raises(ValueError, match="mask branch"):
        Detector(**TINY).freeze_detector()


def test_full_loss_adds_the_mask_term_only_with_images() -> None:
    model = Detector(**TINY, mask_prototypes=4)
    images = torch.rand(1, 3, 64, 64)
    targets = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]), "labels": torch.tensor([0])}]
    dense = model(images)
    assert "mask" not in model.loss(dense, targets, 0.0)
    with_masks = model.loss(dense, targets, 0.0, images)
    assert float(with_masks["mask"]) > 0 and "o2o_cls" in with_masks


def test_no_mask_checkpoint_loads_into_a_mask_model_missing_mask_keys_only() -> None:
    plain = Detector(**TINY)
    masked = Detector(**TINY, mask_prototypes=4)
    fresh = {k: v.clone() for k, v in masked.state_dict().items() if k.startswith("mask_branch")}
    load_start_weights(masked, plain.state_dict(), "plain.pt")
    for key, value in plain.state_dict().items():
        assert torch.equal(masked.state_dict()[key], value)
    for key, value in fresh.items():
        assert torch.equal(masked.state_dict()[key], value)
    broken = {k: v for k, v in plain.state_dict().items() if not k.startswith("head.")}
    with pytest.raises(FabricError, match=r"^broken\.pt: weights do not fit.*missing: head\."):
        load_start_weights(masked, broken, "broken.pt")
    with pytest.raises(FabricError, match="unexpected"):
        load_start_weights(plain, masked.state_dict(), "masked.pt")


def test_dnms_fuses_coefficients_as_the_plan_quality_weighted_mean() -> None:
    gen = torch.Generator().manual_seed(0)
    n = 6
    boxes = torch.tensor([[10.0, 10.0, 50.0, 40.0]]).repeat(n, 1)
    boxes += torch.rand(n, 4, generator=gen) * 4
    o2m = torch.full((1, n, 2), 0.05)
    o2m[0, :, 1] = torch.linspace(0.5, 0.9, n)
    o2o = torch.full((1, n, 2), 0.01)
    o2o[0, 0, 1] = 0.9  # one hypothesis
    quality = torch.linspace(0.3, 0.8, n)[None]
    coeffs = torch.randn(1, n, 5, generator=gen)
    dnms = DifferentiableNMS()
    (det,) = dnms(boxes[None], o2m, o2o, quality, coeffs=coeffs)
    assert len(det) == 1
    plan = dnms.match(boxes[None], o2m, o2o, quality).plan[0, :, 0]
    weight = plan * quality[0]
    expected = (weight[:, None] * coeffs[0]).sum(0) / weight.sum()
    torch.testing.assert_close(det.extra["mask_coeffs"][0], expected, rtol=1e-4, atol=1e-5)


def test_mosaic_takes_each_cell_from_the_tile_it_lies_deepest_in() -> None:
    width, height, stride, tile = 300, 200, 4, 128
    windows = tile_windows(width, height, tile, 0.25)
    mosaic = ProtoMosaic(width, height, stride, 2)
    for t, (x0, y0, x1, y1) in enumerate(windows):
        h, w = -(-(y1 - y0) // 32) * 32 // stride, -(-(x1 - x0) // 32) * 32 // stride
        xs = (torch.arange(w) + 0.5) * stride + x0  # frame x of each tile cell centre
        protos = torch.stack([xs[None, :].expand(h, w), torch.full((h, w), float(t))])
        mosaic.add(protos, (x0, y0, x1, y1))
    cx = ((torch.arange(mosaic.protos.shape[2]) + 0.5) * stride).clamp(max=width - 0.5)
    torch.testing.assert_close(mosaic.protos[0], cx[None].expand_as(mosaic.protos[0]))
    for i, j in ((2, 2), (10, 40), (45, 70)):  # cells: check the deepest tile won
        x, y = float(cx[j]), (i + 0.5) * stride
        depth = [
            min(
                x - x0 if x0 > 0 else 1e9,
                x1 - x if x1 < width else 1e9,
                y - y0 if y0 > 0 else 1e9,
                y1 - y if y1 < height else 1e9,
            )
            if x0 <= x < x1 and y0 <= y < y1
            else -1.0
            for x0, y0, x1, y1 in windows
        ]
        assert int(mosaic.protos[1, i, j]) == max(range(len(windows)), key=depth.__getitem__)


def test_frame_masks_are_crops_with_area_and_uncertainty() -> None:
    mosaic = ProtoMosaic(80, 60, 4, 1)
    mosaic.protos[0, 3:9, 4:12] = 5.0  # a bright rectangle: frame x 16..48, y 12..36
    mosaic.protos[0][mosaic.protos[0] == 0] = -5.0
    det = Detections(
        boxes=torch.tensor([[8.0, 4.0, 56.0, 44.0]]),
        scores=torch.tensor([0.9]),
        labels=torch.tensor([0]),
        extra={"mask_coeffs": torch.tensor([[1.0]])},
    )
    out = frame_masks(det, mosaic, MaskSettings(lambda_tv=0.5, iters=5))
    full = out.masks.full(0)
    assert full.shape == (60, 80) and int(full.sum()) == int(out.extra["mask_area"][0])
    ys, xs = torch.nonzero(full, as_tuple=True)
    assert 14 <= int(xs.min()) <= 18 and 46 <= int(xs.max()) <= 50
    assert 10 <= int(ys.min()) <= 14 and 34 <= int(ys.max()) <= 38
    assert 0.0 < float(out.extra["mask_uncertainty"][0]) < 0.5
    empty = frame_masks(Detections.empty(), mosaic, MaskSettings())
    assert len(empty.masks) == 0 and empty.extra["mask_area"].shape == (0,)


def test_image_terms_sample_the_frame_on_the_box_grid() -> None:
    image = np.full((60, 80, 3), 200, dtype=np.uint8)
    image[12:36, 16:48] = (120, 40, 40)  # a dark red rectangle: frame x 16..48, y 12..36
    boxes = torch.tensor([[8.0, 4.0, 56.0, 44.0], [60.0, 40.0, 80.0, 60.0]])
    lab = box_colours(image, boxes, 12)
    assert lab.shape == (2, 3, 12, 12)
    assert torch.allclose(lab[1], lab[1, :, :1, :1].expand(3, 12, 12), atol=1e-2)  # uniform
    unary = colour_logits(lab, scale=10.0)
    assert (unary[0, 4:8, 4:8] > 1).all()
    assert torch.allclose(unary[0, 0], torch.tensor(-1.0)) and torch.allclose(
        unary[1], torch.tensor(-1.0)
    )

    mosaic = ProtoMosaic(80, 60, 4, 1)
    mosaic.protos[0] = 0.3  # an uninformative branch: weakly "defect" everywhere
    det = Detections(
        boxes=boxes[:1],
        scores=torch.tensor([0.9]),
        labels=torch.tensor([0]),
        extra={"mask_coeffs": torch.tensor([[1.0]])},
    )
    settings = MaskSettings(lambda_tv=0.5, iters=5, edge_sigma=10.0, colour_kappa=2.0)
    assert settings.uses_image and not MaskSettings(lambda_tv=0.0, edge_sigma=10.0).uses_image
    with pytest.raises(ValueError, match="colours"):
        frame_masks(det, mosaic, settings)
    ys, xs = torch.nonzero(frame_masks(det, mosaic, settings, image).masks.full(0), as_tuple=True)
    assert 14 <= int(xs.min()) <= 18 and 46 <= int(xs.max()) <= 50  # the colour decides
    assert 10 <= int(ys.min()) <= 14 and 34 <= int(ys.max()) <= 38
