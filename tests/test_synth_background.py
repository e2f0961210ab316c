"""``render_on_background``: defects painted into a given defect-free frame (ours, generated)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from fabricnms.cli import app
from fabricnms.data.synth import render_frame
from fabricnms.data.synth_background import load_background, render_on_background
from fabricnms.errors import FabricError

W, H = 256, 192


@pytest.fixture(scope="module")
def background() -> np.ndarray:
    """A defect-free frame of our own making."""
    return render_frame(21, W, H, n_defects=0).image


def test_deterministic_and_seed_dependent(background: np.ndarray) -> None:
    a = render_on_background(background, 3, n_defects=2)
    b = render_on_background(background, 3, n_defects=2)
    c = render_on_background(background, 4, n_defects=2)
    assert np.array_equal(a.image, b.image) and [d.box for d in a.defects] == [
        d.box for d in b.defects
    ]
    assert not np.array_equal(a.image, c.image)
    assert a.image.shape == (H, W, 3) and a.image.dtype == np.uint8


@pytest.mark.parametrize(
    "raw", ["破洞", "三丝", "断经", "粗维", "油渍", "花板跳", "稀密档", "吊经"]
)
def test_boxes_masks_and_changes_stay_local(background: np.ndarray, raw: str) -> None:
    before = background.copy()
    frame = render_on_background(background, 7, raw_names=[raw])
    assert np.array_equal(background, before)  # the input is not modified
    (d,) = frame.defects
    x0, y0, x1, y1 = d.box
    assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H
    ys, xs = np.nonzero(d.mask)
    assert (
        xs.size and x0 <= xs.min() and xs.max() + 1 <= x1 and y0 <= ys.min() and ys.max() + 1 <= y1
    )
    diff = np.abs(frame.image.astype(np.int16) - background.astype(np.int16)).max(-1)
    assert diff[d.mask].mean() >= 2.0, "the defect barely changes its own pixels"
    far = np.ones((H, W), bool)
    far[max(0, int(y0) - 14) : int(y1) + 15, max(0, int(x0) - 14) : int(x1) + 15] = False
    assert diff[far].max(initial=0) == 0


def test_grey_and_16_bit_backgrounds(background: np.ndarray) -> None:
    grey = background.mean(-1).astype(np.uint8)
    out = render_on_background(grey, 5, n_defects=2).image
    assert np.array_equal(out[:, :, 0], out[:, :, 1]) and np.array_equal(out[:, :, 1], out[:, :, 2])
    deep = grey.astype(np.uint16) * 257
    out16 = render_on_background(deep, 5, n_defects=2)
    assert np.abs(out16.image.astype(int) - out.astype(int)).max() <= 1


def test_bad_backgrounds_are_refused(tmp_path: Path, background: np.ndarray) -> None:
    with pytest.raises(FabricError, match="too small"):
        render_on_background(background[:40, :40], 1)
    with pytest.raises(FabricError, match="blank"):
        render_on_background(np.full((128, 128, 3), 90, np.uint8), 1)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really")
    with pytest.raises(FabricError, match=r"broken\.jpg"):
        load_background(bad)


def _write_backgrounds(folder: Path, background: np.ndarray) -> None:
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), cv2.cvtColor(background, cv2.COLOR_RGB2BGR))
    grey16 = (background.mean(-1) * 257).astype(np.uint16)
    cv2.imwrite(str(folder / "b16.png"), grey16)
    cv2.imwrite(str(folder / "tiny.png"), background[:30, :30])
    cv2.imwrite(str(folder / "blank.png"), np.full((100, 100), 128, np.uint8))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really")


def _synth(*args: str) -> object:
    return CliRunner().invoke(app, ["synth", *args])


def test_cli_release_on_backgrounds_skips_bad_ones(tmp_path: Path, background: np.ndarray) -> None:
    src = tmp_path / "bg"
    _write_backgrounds(src, background)
    args = ["-n", "6", "--background", str(src), "--window", "160x128", "--seed", "2", "--json"]
    res = _synth(str(tmp_path / "a"), *args)
    assert res.exit_code == 0, res.output
    for bad in ("tiny.png", "blank.png", "broken.jpg"):
        assert f"{bad}" in res.output and "skipped" in res.output
    summary = json.loads(res.stdout)
    assert summary["backgrounds"] == 2 and len(summary["skipped_backgrounds"]) == 3
    assert _synth(str(tmp_path / "b"), *args).exit_code == 0
    entries = json.loads((tmp_path / "a/Annotations/anno_train.json").read_text())
    assert entries and entries == json.loads(
        (tmp_path / "b/Annotations/anno_train.json").read_text()
    )
    for p in (tmp_path / "a").rglob("*.jpg"):
        assert (tmp_path / "b" / p.relative_to(tmp_path / "a")).read_bytes() == p.read_bytes()
        assert cv2.imread(str(p)).shape[:2] == (128, 160)
    for e in entries:
        x0, y0, x1, y1 = e["bbox"]
        assert 0 <= x0 < x1 <= 160 and 0 <= y0 < y1 <= 128


def test_cli_without_usable_background_is_a_one_line_error(tmp_path: Path) -> None:
    src = tmp_path / "bg"
    src.mkdir()
    cv2.imwrite(str(src / "blank.png"), np.full((100, 100), 128, np.uint8))
    res = _synth(str(tmp_path / "o"), "-n", "2", "--background", str(src))
    assert res.exit_code == 1
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("error: no usable background") and "blank" in last
    res = _synth(str(tmp_path / "o"), "-n", "2", "--background", str(tmp_path / "nothing"))
    assert res.exit_code == 1 and "nothing" in res.output


def test_defects_go_on_the_cloth_not_the_dark_side(background: np.ndarray) -> None:
    """Like a greige scan with dark background beside the selvedge: small defects avoid it."""
    half = background.copy()
    half[:, : W // 2] = 12
    for seed in range(6):
        frame = render_on_background(half, seed, raw_names=["破洞", "结头", "毛粒"])
        for d in frame.defects:
            assert d.tight_box[0] >= W // 2 - 8, (d.raw_name, d.tight_box)


@pytest.mark.parametrize("style", ["star", "float", "jump"])
def test_floats_fit_boxes_barely_wider_than_a_dash(style: str) -> None:
    """A dash that fills its box leaves the start a range ``w - 2 - length`` that can round
    just below zero: it must not raise (it did for this star float in a 192-px adapt window)."""
    from fabricnms.data.defects_spots import floats
    from fabricnms.data.synth_background import BackgroundCanvas, BackgroundFabric

    image = np.random.default_rng(0).integers(90, 170, (192, 192, 3)).astype(np.float32)
    box = (5.706327912216833, 74.2323780442965, 16.65811757513945, 157.52999369006108)
    for seed in range(20):
        canvas = BackgroundCanvas(BackgroundFabric(image.copy()))
        floats(style)(canvas, np.random.default_rng(seed), box, 1.0)
