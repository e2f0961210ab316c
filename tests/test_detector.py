"""The detector network: shapes, config round trip, cost, extreme boxes, losses, gradients."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from fabricnms.cli import app
from fabricnms.model.assign import assign_dense, candidate_mask
from fabricnms.model.detector import Detector
from fabricnms.model.head import LOG_LTRB_MAX, decode_ltrb, distances_to_boxes, encode_ltrb
from fabricnms.model.types import DenseOutput

TINY = dict(width=8, neck_channels=32)


def tiny(num_classes: int = 3, seed: int = 0, **kw) -> Detector:
    torch.manual_seed(seed)
    return Detector(num_classes, **{**TINY, **kw})


def targets_mixed() -> list[dict[str, torch.Tensor]]:
    return [
        {
            "boxes": torch.tensor([[8.0, 8.0, 30.0, 28.0], [40.0, 4.0, 46.0, 60.0]]),
            "labels": torch.tensor([0, 2]),
        },
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
    ]


def test_forward_shapes_and_conventions() -> None:
    model = tiny(num_classes=5, embed_dim=16)
    with torch.no_grad():
        out = model(torch.rand(2, 3, 64, 96))
    assert isinstance(out, DenseOutput)
    n_loc = 8 * 12 + 4 * 6 + 2 * 3
    assert out.cls_o2m.shape == out.cls_o2o.shape == (2, n_loc, 5)
    assert out.boxes.shape == (2, n_loc, 4)
    assert out.quality.shape == (2, n_loc)
    assert out.embed.shape == (2, n_loc, 16)
    assert out.points.shape == (n_loc, 2) and out.strides.shape == (n_loc,)
    assert out.image_size == (64, 96)
    assert torch.allclose(out.embed.norm(dim=-1), torch.ones(2, n_loc), atol=1e-5)
    assert (out.boxes[..., 2:] > out.boxes[..., :2]).all()
    assert out.points[0].tolist() == [4.0, 4.0] and out.strides[0] == 8
    assert out.points[-1].tolist() == [80.0, 48.0] and out.strides[-1] == 32
    # every box contains its own location (ltrb > 0)
    pts = out.points[None]
    assert ((out.boxes[..., :2] < pts) & (out.boxes[..., 2:] > pts)).all()
    # prior probability 0.01 at initialisation
    assert float(out.cls_o2m.sigmoid().mean()) == pytest.approx(0.01, rel=0.2)
    assert float(out.cls_o2o.sigmoid().mean()) == pytest.approx(0.01, rel=0.2)


def test_input_must_be_a_multiple_of_32() -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        tiny()(torch.rand(1, 3, 48, 64))


def test_config_rebuilds_the_same_model() -> None:
    model = tiny(num_classes=4, strides=(4, 8, 16, 32), detach_plan=True).eval()
    config = json.loads(json.dumps(model.config))  # plain values only
    clone = Detector(**config).eval()
    clone.load_state_dict(model.state_dict())
    assert clone.config == model.config
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a, b = model(x), clone(x)
    assert torch.equal(a.cls_o2o, b.cls_o2o) and torch.equal(a.boxes, b.boxes)
    assert a.cls_o2m.shape[1] == 16 * 16 + 8 * 8 + 4 * 4 + 2 * 2


def test_complexity_counts_params_and_flops() -> None:
    model = tiny()
    small, large = model.complexity(64, 64), model.complexity(128, 128)
    assert small["params"] == sum(p.numel() for p in model.parameters())
    assert set(small["params_by_part"]) == {"backbone", "neck", "head"}
    assert small["flops"] > 0
    assert large["flops"] / small["flops"] == pytest.approx(4.0, rel=0.05)
    assert model.training  # state restored


def test_default_model_budget() -> None:
    stats = Detector(20).complexity(1024, 1024)
    assert 1_000_000 <= stats["params"] <= 3_000_000
    assert stats["flops"] <= 10e9


def test_info_command_json() -> None:
    result = CliRunner().invoke(app, ["info", "--classes", "3", "--size", "64x32", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["input_size"] == {"height": 32, "width": 64}
    assert data["locations"] == 8 * 4 + 4 * 2 + 2 * 1
    assert data["config"]["num_classes"] == 3
    assert data["params"] == sum(data["params_by_part"].values())


def test_info_reports_what_a_checkpoint_carries(tmp_path) -> None:
    from helpers_engine import save_detector

    from fabricnms.engine.calibrate import write_calibration
    from fabricnms.engine.operating_point import OperatingPoint
    from fabricnms.engine.shift import FabricStats

    names = ["hole", "stain", "knot"]
    model = Detector(3, width=4, neck_channels=16, embed_dim=8)
    bare = save_detector(tmp_path / "bare.pt", model, names)
    data = json.loads(
        CliRunner().invoke(app, ["info", "--weights", str(bare), "--size", "64", "--json"]).stdout
    )
    assert data["config"]["num_classes"] == 3 and data["config"]["width"] == 4
    carried = data["checkpoint"]
    assert carried["class_names"] == names and carried["operating_point"] is None
    assert "built-in default" in carried["threshold"] and carried["fabric_stats"] is None
    point = OperatingPoint(0.4, source="held-out parts", area_frames=20.0)
    point = OperatingPoint(**{**point.to_dict(), "painted_recall": 0.05, "painted_defects": 40})
    stats = FabricStats.fit(torch.randn(8, 4), "clean frames").with_limit([1.0, 2.0])
    adapted = write_calibration(bare, point, stats, out=tmp_path / "adapted.pt")
    result = CliRunner().invoke(app, ["info", "--weights", str(adapted), "--size", "64"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "conf 0.4 from the checkpoint's operating point (held-out parts;" in text
    assert "finds 5% of 40 defects painted into held-out fabric" in text
    assert "Caveat: at its operating point the model finds only 5% of 40" in text
    assert "fabric statistics: clean frames (8 tiles), shift limit 2.5" in text


def test_info_command_rejects_bad_size() -> None:
    result = CliRunner().invoke(app, ["info", "--size", "100"])
    assert result.exit_code == 2  # a usage error
    assert "multiples of 32" in result.output


# A 2464 x 1024 padded frame (the Tianchi 2446 x 1000 frame, padded to multiples of 32).
FRAME_H, FRAME_W = 1024, 2464
EXTREME_BOXES = {
    "15x15": [1200.0, 500.0, 1215.0, 515.0],
    "35x1000": [600.0, 10.0, 635.0, 1010.0],
    "1000x35": [100.0, 300.0, 1100.0, 335.0],
    "2446x250": [0.0, 700.0, 2446.0, 950.0],
    "250x2446_clipped": [2000.0, 0.0, 2250.0, 1000.0],
    "100x100": [1500.0, 100.0, 1600.0, 200.0],
}


def test_extreme_boxes_get_positives_and_are_exactly_representable() -> None:
    model = tiny()
    points, strides = model.locations(FRAME_H, FRAME_W)
    gt = torch.tensor(list(EXTREME_BOXES.values()))
    cand = candidate_mask(points, strides, gt)
    # dense assignment with perfect box predictions: positives for every box
    for j, name in enumerate(EXTREME_BOXES):
        idx = torch.nonzero(cand[:, j]).squeeze(1)
        assert idx.numel() >= 1, name
        pts, s = points[idx], strides[idx]
        ltrb = torch.cat([pts - gt[j, :2], gt[j, 2:] - pts], dim=-1)
        assert (ltrb > 0).all(), name
        t = encode_ltrb(ltrb, s[:, None])
        assert (t < LOG_LTRB_MAX).all(), name  # not clamped
        decoded = distances_to_boxes(pts, decode_ltrb(t, s[:, None]))
        assert torch.allclose(decoded, gt[j].expand_as(decoded), atol=1e-2), name
        pred = torch.zeros(points.shape[0], 4)
        pred[:, :2] = points - 4.0
        pred[:, 2:] = points + 4.0
        pred[idx] = decoded
        a = assign_dense(
            points,
            strides,
            pred,
            torch.full((points.shape[0], 3), 0.2),
            gt[j : j + 1],
            torch.tensor([0]),
        )
        assert int(a.foreground.sum()) >= 1, name
        assert torch.allclose(
            pred[a.foreground], gt[j].expand(int(a.foreground.sum()), 4), atol=1e-2
        ), name
    # long boxes go to the coarsest level, the knot to the finest
    level = {n: set(strides[cand[:, j]].tolist()) for j, n in enumerate(EXTREME_BOXES)}
    assert level["15x15"] == {8.0}
    for name in ("35x1000", "1000x35", "2446x250", "250x2446_clipped"):
        assert level[name] == {32.0}, name


def test_loss_finite_on_random_init_with_empty_images() -> None:
    model = tiny()
    out = model.loss(model(torch.rand(2, 3, 64, 64)), targets_mixed(), progress=0.0)
    keys = {"cls", "box", "l1", "quality", "embed", "o2o_cls", "o2o_box", "o2o_l1", "loss"}
    assert set(out) == keys
    assert all(torch.isfinite(v) for v in out.values())
    assert float(out["box"]) > 0 and float(out["o2o_box"]) > 0
    out["loss"].backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_batch_without_any_defect_trains_background_only() -> None:
    model = tiny()
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
    out = model.loss(model(torch.rand(2, 3, 64, 64)), [empty, empty], progress=0.5)
    for k in ("box", "l1", "o2o_box", "o2o_l1", "embed"):
        assert float(out[k]) == 0.0, k
    assert float(out["cls"]) > 0 and float(out["o2o_cls"]) > 0
    out["loss"].backward()
    head = model.head.levels[0]
    assert head.cls_o2o.bias.grad is not None and float(head.cls_o2o.bias.grad.abs().sum()) > 0


def test_class_target_of_a_positive_does_not_wait_for_its_box() -> None:
    # every location predicts a box far from the defect (IoU 0): the class logit of the dense
    # positive is still pushed up (target 1), while the IoU-quality logit is pushed down
    model = tiny()
    dense = model(torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2)))
    dense.boxes = dense.boxes.detach() * 0 + torch.tensor([200.0, 200.0, 210.0, 210.0])
    dense.cls_o2m = dense.cls_o2m.detach().requires_grad_(True)
    dense.quality = dense.quality.detach().requires_grad_(True)
    target = [{"boxes": torch.tensor([[8.0, 8.0, 30.0, 28.0]]), "labels": torch.tensor([1])}]
    out = model.loss(dense, target, progress=0.0)
    out["loss"].backward()  # cls_o2m and quality only enter the "cls" and "quality" terms
    pos = torch.nonzero(dense.cls_o2m.grad[0, :, 1] < 0).flatten()
    assert pos.numel() >= 1  # a descent step raises the positive's class-1 logit
    assert (dense.cls_o2m.grad[0, :, [0, 2]] >= 0).all()  # the other classes only go down
    assert (dense.quality.grad[0] >= 0).all()  # quality target is the IoU, here 0


def _o2o_grads(detach_plan: bool) -> dict[str, torch.Tensor]:
    model = tiny(detach_plan=detach_plan)
    dense = model(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)))
    leaves = {}
    for name in ("cls_o2o", "boxes", "embed"):
        leaf = getattr(dense, name).detach().requires_grad_(True)
        setattr(dense, name, leaf)
        leaves[name] = leaf
    # the dense terms give both runs the same gradients; only the path through P differs
    model.loss(dense, targets_mixed(), progress=0.0)["loss"].backward()
    return {k: v.grad.clone() for k, v in leaves.items()}


def test_gradients_flow_through_the_plan() -> None:
    live, detached = _o2o_grads(False), _o2o_grads(True)
    for name in ("cls_o2o", "boxes", "embed"):
        diff = float((live[name] - detached[name]).abs().sum())
        assert diff > 1e-5, f"no gradient through the plan into {name}"


def test_deterministic_with_a_seed() -> None:
    def run() -> tuple[float, torch.Tensor]:
        model = tiny(seed=3)
        x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        out = model.loss(model(x), targets_mixed(), progress=0.3)
        out["loss"].backward()
        return float(out["loss"].detach()), model.head.levels[0].box.weight.grad.clone()

    (l1, g1), (l2, g2) = run(), run()
    assert l1 == l2 and torch.equal(g1, g2)
