"""Training windows: COCO -> frames, the box-survival rule, thin boxes, placement, determinism."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers_engine import make_dataset

from fabricnms.config import TrainConfig
from fabricnms.data.coco import load_coco
from fabricnms.data.dataset import (
    FrameRecord,
    TrainWindows,
    WindowParams,
    build_augment,
    class_repeat_factors,
    clip_boxes_to_window,
    frame_repeat_factors,
    frames_from_coco,
    pad_to,
    place_window,
    widen_thin_boxes,
)
from fabricnms.data.dataset_yaml import load_data_yaml
from fabricnms.data.frame_reader import read_frame_rgb as read_rgb
from fabricnms.engine.sampler import EpochSampler
from fabricnms.errors import FabricError


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> list[FrameRecord]:
    root = tmp_path_factory.mktemp("ds")
    spec = load_data_yaml(make_dataset(root, n_train=6, n_val=0, width=300, height=200))
    return frames_from_coco(load_coco(spec.split_path("train")), spec.image_root, spec.nc)


def test_frames_from_coco_converts_boxes_and_keeps_normal_frames(frames: list[FrameRecord]) -> None:
    coco = load_coco(frames[0].path.parent.parent / "annotations" / "instances_train.json")
    assert len(frames) == len(coco["images"]) == 6
    assert sum(len(f.labels) == 0 for f in frames) == 2  # every third frame is normal
    ann = coco["annotations"][0]
    frame = next(f for f in frames if f.image_id == ann["image_id"])
    x, y, w, h = ann["bbox"]
    np.testing.assert_allclose(frame.boxes[0], [x, y, x + w, y + h])
    assert frame.labels[0] == ann["category_id"] - 1
    assert frame.name == coco["images"][frames.index(frame)]["file_name"]


def test_frames_from_coco_rejects_unknown_category(tmp_path: Path) -> None:
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 10}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [0, 0, 2, 2]}],
    }
    with pytest.raises(FabricError, match=r"category_id 7 outside 1\.\.3"):
        frames_from_coco(coco, tmp_path, 3)


def test_clip_keeps_visible_part_of_long_thin_box_and_drops_slivers() -> None:
    boxes = np.array(
        [
            [100, 0, 103, 900],  # 3 px wide warp line, 900 long; window shows 60 px of it
            [50, 50, 70, 70],  # knot fully inside
            [196, 10, 216, 30],  # 20 px knot with a 4 px sliver (20 %) inside the window
            [190, 100, 230, 140],  # 40 px box, 10 px inside but 25 % of its area
        ],
        dtype=np.float32,
    )
    labels = np.arange(4)
    out, kept = clip_boxes_to_window(boxes, labels, (0, 840, 200, 1040), 8.0, 0.25)
    # only the warp line crosses this window
    assert kept.tolist() == [0]
    np.testing.assert_allclose(out[0], [100, 0, 103, 60])
    out, kept = clip_boxes_to_window(boxes, labels, (0, 0, 200, 200), 8.0, 0.25)
    assert kept.tolist() == [0, 1, 3]  # the 4 px sliver of the knot is dropped
    np.testing.assert_allclose(out[0], [100, 0, 103, 200])  # thin box kept, not by area
    np.testing.assert_allclose(out[2], [190, 100, 200, 140])


def test_widen_thin_boxes_gives_minimum_thickness_inside_image() -> None:
    boxes = np.array([[10, 5, 10.4, 50], [0, 0, 0.5, 9], [5, 5, 20, 20]], dtype=np.float32)
    out = widen_thin_boxes(boxes, 2.0, 64, 64)
    np.testing.assert_allclose(out[0], [9.2, 5, 11.2, 50], atol=1e-5)
    np.testing.assert_allclose(out[1], [0, 0, 2, 9])  # pushed inside the image
    np.testing.assert_allclose(out[2], boxes[2])


@pytest.mark.parametrize("seed", range(5))
def test_place_window_covers_box_or_lies_inside_it(seed: int) -> None:
    rng = np.random.default_rng(seed)
    small = np.array([900.0, 300.0, 930.0, 330.0])
    x0, y0 = place_window(rng, small, 256, 256, 2446, 1000)
    assert x0 <= 900 and x0 + 256 >= 930 and y0 <= 300 and y0 + 256 >= 330
    long_box = np.array([1200.0, 0.0, 1235.0, 1000.0])  # 35 x 1000 warp defect
    x0, y0 = place_window(rng, long_box, 256, 256, 2446, 1000)
    assert x0 <= 1200 and x0 + 256 >= 1235 and 0 <= y0 <= 1000 - 256
    edge = np.array([2430.0, 990.0, 2446.0, 1000.0])
    x0, y0 = place_window(rng, edge, 256, 256, 2446, 1000)
    assert (x0, y0) == (2446 - 256, 1000 - 256)


def test_read_rgb_converts_bgr_and_names_bad_files(tmp_path: Path) -> None:
    image = np.zeros((4, 5, 3), np.uint8)
    image[..., 0] = 255  # blue in BGR
    cv2.imwrite(str(tmp_path / "b.png"), image)
    rgb = read_rgb(tmp_path / "b.png")
    assert rgb.shape == (4, 5, 3) and rgb[0, 0].tolist() == [0, 0, 255]
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(FabricError, match=r"bad\.jpg: cannot be decoded"):
        read_rgb(tmp_path / "bad.jpg")
    with pytest.raises(FabricError, match="file not found"):
        read_rgb(tmp_path / "missing.jpg")


def test_pad_to_mirrors_at_bottom_right() -> None:
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    out = pad_to(image, 4, 5)
    assert out.shape == (4, 5, 3)
    np.testing.assert_array_equal(out[:2, :3], image)
    np.testing.assert_array_equal(out[2, :3], image[0])  # reflect-101: row 2 mirrors row 0


def test_windows_are_a_function_of_their_key(frames: list[FrameRecord]) -> None:
    params = WindowParams(tile=96, random_window_prob=0.0, scale_jitter=0.15)
    ds = TrainWindows(frames, params, build_augment(TrainConfig()))
    defective = next(i for i, f in enumerate(frames) if len(f.labels))
    img_a, tgt_a = ds[(defective, 123)]
    img_b, tgt_b = ds[(defective, 123)]
    img_c, _ = ds[(defective, 124)]
    assert img_a.shape == (3, 96, 96) and img_a.dtype.is_floating_point is False
    assert (img_a == img_b).all() and (tgt_a["boxes"] == tgt_b["boxes"]).all()
    assert not (img_a == img_c).all()
    # defect-centred windows contain a defect; boxes lie inside the window and are >= 2 px
    for seed in range(10):
        _, tgt = ds[(defective, seed)]
        boxes = tgt["boxes"]
        assert len(boxes) >= 1
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 96).all()
        assert ((boxes[:, 2:] - boxes[:, :2]) >= 2.0 - 1e-4).all()
        assert tgt["labels"].dtype.is_floating_point is False


def test_frame_smaller_than_tile_is_padded(frames: list[FrameRecord]) -> None:
    ds = TrainWindows(frames, WindowParams(tile=320, scale_jitter=0.0), None)
    image, target = ds[(0, 5)]
    assert image.shape == (3, 320, 320)
    assert (target["boxes"][:, 2] <= 300).all() and (target["boxes"][:, 3] <= 200).all()


def test_repeat_factors_favour_rare_classes() -> None:
    def frame(labels: list[int]) -> FrameRecord:
        return FrameRecord(
            Path("x"), "x", 0, 10, 10, np.zeros((len(labels), 4)), np.array(labels, dtype=np.int64)
        )

    frames = [frame([0])] * 8 + [frame([1])] + [frame([])]
    cf = class_repeat_factors(frames, 3, threshold=0.5)
    assert cf[0] == 1.0 and cf[1] == pytest.approx(np.sqrt(0.5 / 0.1)) and cf[2] == 1.0
    rf = frame_repeat_factors(frames, cf)
    assert rf.tolist() == [1.0] * 8 + [pytest.approx(np.sqrt(5))] + [1.0]
    assert class_repeat_factors(frames, 3, threshold=0.0).tolist() == [1.0, 1.0, 1.0]


def test_sampler_order_depends_only_on_seed_and_epoch_and_shards() -> None:
    factors = np.array([1.0, 1.0, 2.5, 1.0, 1.0])
    a = EpochSampler(factors, seed=3)
    b = EpochSampler(factors, seed=3)
    a.set_epoch(4)
    b.set_epoch(4)
    assert list(a) == list(b)
    a.set_epoch(5)
    assert list(a) != list(b)
    counts = np.bincount([i for i, _ in b], minlength=5)
    assert counts[2] in (2, 3) and (np.delete(counts, 2) == 1).all()
    ranks = [EpochSampler(factors, seed=3, rank=r, world_size=2) for r in range(2)]
    for s in ranks:
        s.set_epoch(4)
    assert len(ranks[0]) == len(ranks[1])
    merged = [k for pair in zip(ranks[0], ranks[1], strict=True) for k in pair]
    assert merged[: len(b)] == list(b)
