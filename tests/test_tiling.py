"""Tiled inference: window grid, shifting/clipping to frame coords, batching, one suppression."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from fabricnms.engine import tiling
from fabricnms.engine.tiling import TileSettings, detect_frames, padded_size, tile_windows
from fabricnms.model import postprocess
from fabricnms.model.detector import Detector
from fabricnms.model.postprocess import METHODS, suppress
from fabricnms.model.types import DenseOutput


def test_grid_of_a_tianchi_frame_covers_it_with_overlap() -> None:
    windows = tile_windows(2446, 1000, 1024, 0.2)
    assert windows == [(0, 0, 1024, 1000), (819, 0, 1843, 1000), (1422, 0, 2446, 1000)]
    covered = np.zeros((1000, 2446), bool)
    for x0, y0, x1, y1 in windows:
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    for (a, *_), (b, *_) in itertools.pairwise(windows):
        assert (a + 1024) - b >= 0.2 * 1024  # neighbours overlap by at least 20 %


@pytest.mark.parametrize(
    ("w", "h", "tile", "overlap"), [(2446, 1000, 640, 0.2), (700, 1900, 256, 0.5)]
)
def test_grid_windows_stay_inside_and_cover(w: int, h: int, tile: int, overlap: float) -> None:
    windows = tile_windows(w, h, tile, overlap)
    covered = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in windows:
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        assert (x1 - x0, y1 - y0) == (min(tile, w), min(tile, h))
        covered[y0:y1, x0:x1] = True
    assert covered.all()


def test_small_frame_is_one_padded_window() -> None:
    assert tile_windows(100, 50, 1024, 0.2) == [(0, 0, 100, 50)]
    assert padded_size(100, 50) == (128, 64)
    assert padded_size(1024, 1000) == (1024, 1024)


class WindowProbe(nn.Module):
    """Returns one candidate per image: its whole (padded) input, class 1, high score."""

    def __init__(self, fraction: float = 1.0) -> None:
        super().__init__()
        self.calls: list[tuple[int, ...]] = []
        self.fraction = fraction  # the box covers this fraction of the input from its origin

    def forward(self, images: torch.Tensor) -> DenseOutput:
        b, _, h, w = images.shape
        self.calls.append(tuple(images.shape))
        logits = torch.full((b, 1, 2), -9.0)
        logits[..., 1] = 4.0 + images.mean(dim=(1, 2, 3))[:, None]  # brighter window, higher
        return DenseOutput(
            cls_o2m=logits,
            cls_o2o=logits.clone(),
            boxes=torch.tensor([0.0, 0.0, w * self.fraction, h * self.fraction])
            .expand(b, 1, 4)
            .clone(),
            quality=torch.full((b, 1), 4.0),
            embed=torch.ones(b, 1, 2) / 2**0.5,
            points=torch.tensor([[w / 2, h / 2]]),
            strides=torch.tensor([32.0]),
            image_size=(h, w),
        )


def test_windows_are_shifted_clipped_batched_and_frames_stay_in_order() -> None:
    rng = np.random.default_rng(0)
    frames = [
        rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        for w, h in [(300, 100), (300, 100), (90, 60)]
    ]
    probe = WindowProbe()
    settings = TileSettings(tile=128, overlap=0.25, batch=4, nms="none", conf=0.0)
    dets = list(detect_frames(probe, iter(frames), settings))
    assert len(dets) == 3
    for det, frame in zip(dets, frames, strict=True):
        h, w = frame.shape[:2]
        expected = sorted(tile_windows(w, h, 128, 0.25))
        got = sorted(tuple(int(v) for v in box) for box in det.boxes.round().tolist())
        assert got == expected  # one box per window, in frame coords, clipped to the frame
        assert (det.labels == 1).all()
    # windows of equal size share batches across frames; a size change flushes the batch
    assert probe.calls == [(4, 3, 128, 128), (2, 3, 128, 128), (1, 3, 64, 96)]


def test_windows_are_stretched_not_mirrored_when_a_few_rows_short() -> None:
    rng = np.random.default_rng(1)
    window = rng.integers(0, 255, (1000, 1024, 3), dtype=np.uint8)
    net, scale = tiling.network_input(window)
    assert net.shape == (1024, 1024, 3) and scale == (1.0, 1.024)
    # the last rows are a stretch of the window's own last rows, not a mirrored fold
    assert np.abs(net[-1].astype(int) - window[-1].astype(int)).mean() < 2.0
    small = rng.integers(0, 255, (40, 70, 3), dtype=np.uint8)
    net, scale = tiling.network_input(small)  # 64 / 40 and 96 / 70: too much, mirror-pad
    assert net.shape == (64, 96, 3) and scale == (1.0, 1.0)
    assert np.array_equal(net[:40, :70], small)
    # boxes found on the stretched input come back in frame pixels
    probe = WindowProbe(fraction=0.5)
    settings = TileSettings(tile=1024, overlap=0.2, nms="none", conf=0.0)
    (det,) = detect_frames(probe, iter([window]), settings)
    assert probe.calls == [(1, 3, 1024, 1024)]
    assert torch.allclose(det.boxes, torch.tensor([[0.0, 0.0, 512.0, 500.0]]))


def test_one_suppression_per_frame_over_all_tiles(monkeypatch: pytest.MonkeyPatch) -> None:
    from fabricnms.model import postprocess

    seen: list[int] = []
    original = postprocess.suppress

    def counting(cands, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(sum(len(c) for c in cands))
        return original(cands, *args, **kwargs)

    monkeypatch.setattr(postprocess, "suppress", counting)
    frame = np.zeros((100, 300, 3), np.uint8)
    list(
        detect_frames(
            WindowProbe(), [frame, frame], TileSettings(tile=128, overlap=0.25, nms="greedy")
        )
    )
    assert seen == [3, 3]  # three windows per frame, one call per frame


def test_real_detector_results_do_not_depend_on_batching() -> None:
    torch.manual_seed(0)
    model = Detector(num_classes=3, width=4, neck_channels=16, embed_dim=8).eval()
    rng = np.random.default_rng(1)
    frames = [rng.integers(60, 200, (150, 260, 3), dtype=np.uint8) for _ in range(2)]
    a = list(
        detect_frames(
            model, frames, TileSettings(tile=128, batch=1, nms="greedy", conf=0.0, score_floor=0.0)
        )
    )
    b = list(
        detect_frames(
            model, frames, TileSettings(tile=128, batch=8, nms="greedy", conf=0.0, score_floor=0.0)
        )
    )
    for da, db in zip(a, b, strict=True):
        assert len(da) > 0
        torch.testing.assert_close(da.boxes, db.boxes, rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(da.scores, db.scores, rtol=1e-4, atol=1e-5)
        assert (da.boxes[:, 0] >= 0).all() and (da.boxes[:, 2] <= 260).all()
        assert (da.boxes[:, 3] <= 150).all() and (da.boxes[:, 2] > da.boxes[:, 0]).all()


def test_clip_detections_drops_boxes_in_the_padding() -> None:
    from fabricnms.model.types import Detections

    det = Detections(
        boxes=torch.tensor([[10.0, 10, 50, 50], [95, 5, 120, 40], [110, 0, 128, 20]]),
        scores=torch.tensor([0.9, 0.8, 0.7]),
        labels=torch.tensor([0, 1, 2]),
    )
    out = tiling.clip_detections(det, 100, 64)
    assert out.boxes.tolist() == [[10, 10, 50, 50], [95, 5, 100, 40]]
    assert out.labels.tolist() == [0, 1]


@pytest.mark.parametrize("method", METHODS)
def test_warm_up_runs_the_suppression_of_every_method(method: str, monkeypatch) -> None:
    calls: list[int] = []

    def spy(cands, *args, **kwargs):
        calls.append(len(cands[0].boxes))
        return suppress(cands, *args, **kwargs)

    monkeypatch.setattr(postprocess, "suppress", spy)
    tiling.warm_up(TileSettings(nms=method), num_classes=20)
    assert calls == [3]
