"""Frame discovery (files, folders, globs, .txt lists, shards) and reading to RGB uint8."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fabricnms.data.frame_reader import FrameReadError, read_frame_rgb
from fabricnms.engine.sources import discover_frames, parse_shard, shard_slice
from fabricnms.errors import FabricError


def _write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    img = np.full((8, 10, 3), 100, np.uint8)
    for name in ("f10.jpg", "f2.png", "f1.bmp", "notes.md"):
        if name.endswith(".md"):
            (tmp_path / "roll" / name).write_text("x")
        else:
            _write(tmp_path / "roll" / name, img)
    _write(tmp_path / "roll" / "sub" / "f3.tif", img)
    return tmp_path


def names(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def test_folder_natural_order_and_recursion(tree: Path) -> None:
    assert names(discover_frames([str(tree / "roll")])) == ["f1.bmp", "f2.png", "f10.jpg"]
    deep = discover_frames([str(tree / "roll")], recursive=True)
    assert names(deep) == ["f1.bmp", "f2.png", "f10.jpg", "f3.tif"]  # roll/sub/... sorts last
    assert all(p.is_absolute() for p in deep)


def test_glob_list_and_deduplication(tree: Path) -> None:
    roll = tree / "roll"
    assert names(discover_frames([str(roll / "f*.png")])) == ["f2.png"]
    assert names(discover_frames([str(tree / "**" / "*.tif")], recursive=True)) == ["f3.tif"]
    listing = tree / "frames.txt"
    listing.write_text("# roll 7\nroll/f10.jpg\n\n" + str(roll / "f2.png") + "\nroll/missing.png\n")
    found = discover_frames([str(listing), str(roll / "f2.png")])
    # relative lines resolve against the list's folder; a missing listed frame is kept (it
    # becomes a per-frame read error), duplicates collapse
    assert names(found) == ["f2.png", "f10.jpg", "missing.png"]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("nowhere", "no such file, folder or pattern"),
        ("roll/notes.md", "not an image"),
        ("empty", "no images found (add --recursive"),
        ("roll/*.gif", "no images found"),
    ],
)
def test_bad_sources_name_the_problem(tree: Path, source: str, message: str) -> None:
    (tree / "empty").mkdir()
    with pytest.raises(FabricError, match=message.replace("(", r"\(")):
        discover_frames([str(tree / source)])


def test_list_with_a_non_image_line(tree: Path) -> None:
    listing = tree / "frames.txt"
    listing.write_text("roll/f2.png\nroll/notes.md\n")
    with pytest.raises(FabricError, match=r"frames.txt: line 2: 'roll/notes.md' is not an image"):
        discover_frames([str(listing)])


@pytest.mark.parametrize("count", [0, 1, 5, 7, 100])
@pytest.mark.parametrize("shards", [1, 3, 8])
def test_shards_partition_contiguously(count: int, shards: int) -> None:
    parts = [list(shard_slice(count, i, shards)) for i in range(shards)]
    assert [i for p in parts for i in p] == list(range(count))  # disjoint, complete, in order
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


def test_parse_shard() -> None:
    assert parse_shard("0/4") == (0, 4)
    assert parse_shard("3/4") == (3, 4)
    for bad in ("4/4", "-1/4", "1/0", "a/b", "1", "1/2/3"):
        with pytest.raises(FabricError, match="--shard"):
            parse_shard(bad)


def test_colour_is_rgb_and_alpha_dropped(tmp_path: Path) -> None:
    bgr = np.zeros((6, 9, 3), np.uint8)
    bgr[..., 0], bgr[..., 1], bgr[..., 2] = 10, 20, 30  # B, G, R
    rgb = read_frame_rgb(_write(tmp_path / "c.png", bgr))
    assert rgb.dtype == np.uint8 and rgb.shape == (6, 9, 3)
    assert rgb[0, 0].tolist() == [30, 20, 10]
    bgra = np.dstack([bgr, np.full((6, 9), 7, np.uint8)])
    assert read_frame_rgb(_write(tmp_path / "a.png", bgra))[0, 0].tolist() == [30, 20, 10]
    assert read_frame_rgb(_write(tmp_path / "c.bmp", bgr))[3, 4].tolist() == [30, 20, 10]


def test_grey_and_16_bit(tmp_path: Path) -> None:
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8)
    out = read_frame_rgb(_write(tmp_path / "g.png", grey))
    assert out.shape == (6, 8, 3) and (out == grey[..., None]).all()
    deep = np.array([[0, 257, 65535, 32896]], np.uint16)  # -> 0, 1, 255, 128
    for name in ("d.png", "d.tif"):
        assert read_frame_rgb(_write(tmp_path / name, deep))[0, :, 0].tolist() == [0, 1, 255, 128]
    deep_bgr = np.zeros((2, 3, 3), np.uint16)
    deep_bgr[..., 2] = 65535  # red
    assert read_frame_rgb(_write(tmp_path / "c16.png", deep_bgr))[0, 0].tolist() == [255, 0, 0]


def test_unreadable_frames_raise_frame_errors(tmp_path: Path) -> None:
    good = _write(tmp_path / "ok.jpg", np.full((40, 40, 3), 90, np.uint8))
    data = good.read_bytes()
    cases = {
        "trunc.jpg": (data[: len(data) // 2], "truncated JPEG"),
        "garbage.png": (b"not an image at all", "cannot be decoded"),
        "empty.png": (b"", "empty file"),
    }
    for name, (payload, message) in cases.items():
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(FrameReadError, match=message):
            read_frame_rgb(tmp_path / name)
    with pytest.raises(FrameReadError, match="file not found"):
        read_frame_rgb(tmp_path / "gone.png")
    assert read_frame_rgb(good).shape == (40, 40, 3)
