"""``fabricnms synth --layout roll``: one fabric in scan order, COCO labels, the shipped example."""

from __future__ import annotations

import json
import shlex
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from fabricnms.cli import app
from fabricnms.data.coco import load_coco
from fabricnms.data.synth import (
    ReleaseOptions,
    frame_seed,
    layout_frame,
    normal_indices,
    render_frame,
    roll_params,
    shift_weave,
    write_release,
)
from fabricnms.data.texture import raw_lattice
from fabricnms.errors import FabricError
from fabricnms.report.labels import load_labels

runner = CliRunner()
W, H, N, SEED = 256, 128, 4, 5
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "roll_scans"
SCRIPT = ROOT / "examples" / "make_roll_scans.sh"


@pytest.fixture(scope="module")
def roll(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, ReleaseOptions]:
    out = tmp_path_factory.mktemp("roll") / "out"
    args = ["synth", str(out), "--layout", "roll", "-n", str(N), "--size", f"{W}x{H}"]
    args += ["--seed", str(SEED), "--normal-fraction", "0.5", "--masks", "--json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    opts = ReleaseOptions(
        n_images=N, seed=SEED, width=W, height=H, normal_fraction=0.5, masks=True, layout="roll"
    )
    return out, json.loads(res.stdout), opts


def test_layout_and_determinism_across_workers(
    roll: tuple[Path, dict, ReleaseOptions], tmp_path: Path
) -> None:
    out, summary, opts = roll
    names = [f"frame_{i:04d}.jpg" for i in range(1, N + 1)]
    assert sorted(p.name for p in out.iterdir()) == [*names, "labels.json"]
    assert summary["layout"] == "roll" and summary["normal_frames"] == 2
    write_release(tmp_path / "w2", opts, workers=2)
    for name in [*names, "labels.json"]:
        assert (out / name).read_bytes() == (tmp_path / "w2" / name).read_bytes(), name


def test_frames_share_one_fabric(roll: tuple[Path, dict, ReleaseOptions]) -> None:
    out, _, opts = roll
    looks = [roll_params(SEED, W, H, i) for i in range(N)]
    first_fabric, first_scan = looks[0]
    for fabric, scan in looks[1:]:
        assert scan == first_scan
        assert replace(fabric, weave=first_fabric.weave) == first_fabric  # colour, texture
        assert replace(fabric.weave, phase=first_fabric.weave.phase) == first_fabric.weave
    means = np.array([cv2.imread(str(out / f"frame_{i:04d}.jpg")).mean((0, 1)) for i in (1, N)])
    assert np.abs(means[0] - means[1]).max() < 3.0
    other = replace(opts, layout="release")  # a release draws a fabric per frame
    assert layout_frame(other, 0, True).image.mean() != pytest.approx(
        layout_frame(opts, 0, True).image.mean(), abs=0.5
    )


@pytest.mark.parametrize("kind", ["twill", "plain"])
def test_shifted_weave_continues_the_lattice(kind: str) -> None:
    fabric, _ = roll_params(1, W, H, 0)
    weave = replace(fabric.weave, kind=kind)
    u, v = np.meshgrid(np.arange(64, dtype=np.float32), np.arange(32, dtype=np.float32))
    below = raw_lattice(u, v + np.float32(3 * 1000), weave)
    np.testing.assert_allclose(raw_lattice(u, v, shift_weave(weave, 3 * 1000)), below, atol=2e-3)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools vs NumPy 2 copy kwarg
def test_labels_are_coco_and_match_render_frame(roll: tuple[Path, dict, ReleaseOptions]) -> None:
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    out, _, opts = roll
    coco = COCO(str(out / "labels.json"))
    load_coco(out / "labels.json")
    assert len(coco.getCatIds()) == 20
    normal = normal_indices(opts)
    assert len(normal) == 2
    for index, img in enumerate(coco.loadImgs(sorted(coco.getImgIds()))):
        assert (img["file_name"], img["width"], img["height"]) == (
            f"frame_{index + 1:04d}.jpg",
            W,
            H,
        )
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]]))
        fabric, scan = roll_params(SEED, W, H, index)
        frame = render_frame(
            frame_seed(SEED, index),
            W,
            H,
            n_defects=0 if index in normal else None,
            fabric=fabric,
            scan=scan,
        )
        assert (not anns) == (index in normal) == (not frame.defects)
        assert len(anns) == len(frame.defects)
        for ann, d in zip(anns, frame.defects, strict=True):
            x, y, w, h = ann["bbox"]
            np.testing.assert_allclose([x, y, x + w, y + h], d.box, atol=1e-6)
            assert ann["category_id"] == d.category_id and ann["iscrowd"] == 0
            assert ann["area"] == pytest.approx(w * h) and ann["defect_name"] == d.raw_name
            assert np.array_equal(coco.annToMask(ann).astype(bool), d.mask)
            assert np.array_equal(mask_utils.decode(ann["segmentation"]).astype(bool), d.mask)
    labels = load_labels(out / "labels.json")  # what visualize --annotations reads
    assert labels.layout == "coco" and len(labels.class_names) == 20
    assert sum(len(f.boxes) for f in labels.frames.values()) == len(coco.getAnnIds())


def test_roll_overwrite_keeps_foreign_files(roll: tuple[Path, dict, ReleaseOptions]) -> None:
    out, _, _ = roll
    res = runner.invoke(app, ["synth", str(out), "--layout", "roll", "-n", "2", "--size", "96x96"])
    assert res.exit_code == 1 and "--overwrite" in res.output
    res = runner.invoke(app, ["synth", str(out), "-n", "2", "--size", "96x96", "--overwrite"])
    assert res.exit_code == 1 and "frame_0001.jpg" in res.output  # not a release's
    with pytest.raises(FabricError, match="unknown layout"):
        write_release(out.parent / "spiral", ReleaseOptions(n_images=1, layout="spiral"))


def _shipped_options() -> ReleaseOptions:
    """The options ``examples/make_roll_scans.sh`` passes to ``fabricnms synth``."""
    words = shlex.split(SCRIPT.read_text("utf-8").replace("\\\n", " "), comments=True)
    args = words[words.index("synth") + 2 :]
    flags = {a: b for a, b in zip(args, [*args[1:], ""], strict=True) if a.startswith("--")}
    width, height = (int(v) for v in flags["--size"].split("x"))
    return ReleaseOptions(
        n_images=int(flags["--images"]),
        seed=int(flags["--seed"]),
        width=width,
        height=height,
        normal_fraction=float(flags["--normal-fraction"]),
        difficulty=flags["--difficulty"],
        class_prior=flags["--class-prior"],
        layout=flags["--layout"],
        geometry=flags["--geometry"],
    )


def test_shipped_example_is_fresh() -> None:
    """A regeneration of one shipped frame gives the shipped boxes and pixels (else rerun
    examples/make_roll_scans.sh)."""
    opts = _shipped_options()
    doc = load_coco(EXAMPLE / "labels.json")
    names = [img["file_name"] for img in doc["images"]]
    assert names == [f"frame_{i:04d}.jpg" for i in range(1, opts.n_images + 1)]
    assert sorted(p.name for p in EXAMPLE.iterdir()) == [*names, "labels.json"]
    boxes: dict[int, list[list[float]]] = {}
    for ann in doc["annotations"]:
        x, y, w, h = ann["bbox"]
        boxes.setdefault(ann["image_id"] - 1, []).append([x, y, x + w, y + h])
    assert set(range(opts.n_images)) - set(boxes) == normal_indices(opts)
    index = max(boxes, key=lambda i: len(boxes[i]))
    frame = layout_frame(opts, index, normal=False)
    np.testing.assert_allclose(boxes[index], [d.box for d in frame.defects], atol=1e-6)
    shipped = cv2.cvtColor(cv2.imread(str(EXAMPLE / names[index])), cv2.COLOR_BGR2RGB)
    # JPEG noise averages out over 8x8 blocks (mean ~0.3); another frame differs by 4-13
    blocks = [
        cv2.resize(im, None, fx=1 / 8, fy=1 / 8, interpolation=cv2.INTER_AREA).astype(float)
        for im in (shipped, frame.image)
    ]
    assert np.abs(blocks[0] - blocks[1]).mean() < 1.0
