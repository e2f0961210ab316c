"""``fabricnms synth``: release layout, JSON schema, priors, determinism, every defect class."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fabricnms.cli import app
from fabricnms.data.classes import CATEGORIES, RAW_BY_NAME, RAW_CLASSES
from fabricnms.data.synth import ReleaseOptions, render_frame, write_release
from fabricnms.data.synth_box_table import FRAMES_PER_BOX_COUNT, RAW_BOXES
from fabricnms.data.synth_priors import (
    ABSENT_NAME_BOXES,
    parse_classes,
    raw_name_weights,
    sample_box_count,
    sample_raw_names,
)
from fabricnms.errors import FabricError

runner = CliRunner()
NAME = re.compile(r"^[0-9a-f]{16}[0-9]{10}\.jpg$")
W, H = 256, 192


def _synth(*args: str) -> object:
    return runner.invoke(app, ["synth", *args])


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("rel") / "out"
    res = _synth(
        str(out), "--images", "10", "--size", f"{W}x{H}", "--seed", "3", "--masks", "--json"
    )
    assert res.exit_code == 0, res.output
    return out, json.loads(res.stdout)


def _load(out: Path) -> list[dict]:
    return json.loads((out / "Annotations" / "anno_train.json").read_text("utf-8"))


def test_layout_and_file_names(release: tuple[Path, dict]) -> None:
    out, summary = release
    assert sorted(p.name for p in out.iterdir()) == [
        "Annotations",
        "README.md",
        "defect_Images",
        "normal_Images",
    ]
    defect = sorted(p.name for p in (out / "defect_Images").iterdir())
    normal = sorted(p.name for p in (out / "normal_Images").iterdir())
    assert len(defect) + len(normal) == 10
    assert len(normal) == round(10 * 0.38) == summary["normal_frames"]
    assert all(NAME.match(n) for n in defect + normal)
    assert not set(defect) & set(normal)
    for name in defect[:2] + normal[:1]:
        folder = "defect_Images" if name in defect else "normal_Images"
        with Image.open(out / folder / name) as im:
            assert im.format == "JPEG" and im.size == (W, H) and im.mode == "RGB"
            assert im.layer[0][1:3] == (2, 2)  # luma sampled 2x2 against chroma: 4:2:0
            assert "progressive" not in im.info and "exif" not in im.info
    readme = (out / "README.md").read_text("utf-8")
    assert "| seed | 3 |" in readme and f"{W} x {H}" in readme


def test_annotation_schema(release: tuple[Path, dict]) -> None:
    out, summary = release
    raw_bytes = (out / "Annotations" / "anno_train.json").read_bytes()
    raw_bytes.decode("ascii")  # Chinese names are \\uXXXX escapes, the file is pure ASCII
    entries = json.loads(raw_bytes)
    assert isinstance(entries, list) and len(entries) == summary["boxes"] > 0
    defect = {p.name for p in (out / "defect_Images").iterdir()}
    normal = {p.name for p in (out / "normal_Images").iterdir()}
    for e in entries:
        assert list(e) == ["name", "defect_name", "bbox"]
        assert e["name"] in defect and e["name"] not in normal
        assert e["defect_name"] in RAW_BY_NAME
        escaped = json.dumps(e["defect_name"]).encode("ascii")
        assert escaped.startswith(b'"\\u') and escaped in raw_bytes
        x0, y0, x1, y1 = e["bbox"]
        assert all(isinstance(v, float) and round(v, 2) == v for v in e["bbox"])
        assert 0.0 <= x0 < x1 <= W and 0.0 <= y0 < y1 <= H
    assert {e["name"] for e in entries} == defect  # every defect frame listed, normal never
    counts = Counter(RAW_BY_NAME[e["defect_name"]].category_id for e in entries)
    names = {c.id: c.name for c in CATEGORIES}
    assert summary["boxes_per_category"] == {names[c]: n for c, n in sorted(counts.items())}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools vs NumPy 2 copy kwarg
def test_masks_sidecar_decodes(release: tuple[Path, dict]) -> None:
    from pycocotools import mask as mask_utils

    out, _ = release
    entries = _load(out)
    sidecar = json.loads((out / "Annotations" / "masks.json").read_text("ascii"))["images"]
    seen = []
    for name, items in sidecar.items():
        for item in items:
            entry = entries[item["entry"]]
            assert entry["name"] == name and entry["defect_name"] == item["defect_name"]
            assert entry["bbox"] == item["bbox"]
            seg = item["segmentation"]
            m = mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode("ascii")})
            assert m.shape == (H, W) and m.any()
            ys, xs = np.nonzero(m)
            tight = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
            assert tight == item["tight_bbox"]
            x0, y0, x1, y1 = entry["bbox"]
            assert x0 <= tight[0] and y0 <= tight[1] and tight[2] <= x1 and tight[3] <= y1
            seen.append(item["entry"])
    assert sorted(seen) == list(range(len(entries)))


def test_same_seed_identical_any_workers_and_other_seed_differs(tmp_path: Path) -> None:
    opts = ReleaseOptions(n_images=5, seed=11, width=160, height=128, masks=True)
    write_release(tmp_path / "a", opts, workers=1)
    write_release(tmp_path / "b", opts, workers=2)
    write_release(tmp_path / "c", ReleaseOptions(n_images=5, seed=12, width=160, height=128))
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*"))
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.*"))
    assert files_a == files_b
    for rel in files_a:
        if rel.name != "README.md":  # the README records the elapsed time
            assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    anno = "Annotations/anno_train.json"
    assert (tmp_path / "a" / anno).read_bytes() != (tmp_path / "c" / anno).read_bytes()
    jpgs_c = {p.name for p in (tmp_path / "c").rglob("*.jpg")}
    assert not jpgs_c & {p.name for p in files_a}


def test_render_frame_is_pure_and_seed_dependent() -> None:
    a = render_frame(5, 200, 150, n_defects=2)
    b = render_frame(5, 200, 150, n_defects=2)
    c = render_frame(6, 200, 150, n_defects=2)
    assert np.array_equal(a.image, b.image)
    assert [d.box for d in a.defects] == [d.box for d in b.defects]
    assert not np.array_equal(a.image, c.image)
    assert a.image.dtype == np.uint8 and a.image.shape == (150, 200, 3)


@pytest.mark.parametrize("raw", [r.raw for r in RAW_CLASSES])
def test_every_raw_name_renders_inside_its_box(raw: str) -> None:
    seed = 1000 + RAW_BY_NAME[raw].fine_id
    frame = render_frame(seed, W, H, raw_names=[raw])
    clean = render_frame(seed, W, H, n_defects=0)  # same fabric and camera, no defect
    (d,) = frame.defects
    assert d.raw_name == raw and d.category_id == RAW_BY_NAME[raw].category_id
    assert d.mask.shape == (H, W) and d.mask.any()
    ys, xs = np.nonzero(d.mask)
    tx0, ty0, tx1, ty1 = d.tight_box
    assert (tx0, ty0, tx1, ty1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    x0, y0, x1, y1 = d.box
    assert 0 <= x0 <= tx0 < tx1 <= x1 <= W and 0 <= y0 <= ty0 < ty1 <= y1 <= H
    diff = np.abs(frame.image.astype(np.int16) - clean.image.astype(np.int16)).max(-1)
    assert diff[d.mask].mean() >= 3.0, "the defect barely changes its own pixels"
    far = np.ones((H, W), bool)  # beyond the loose box + a soft-edge margin nothing changes
    far[max(0, int(y0) - 6) : int(y1) + 7, max(0, int(x0) - 6) : int(x1) + 7] = False
    assert diff[far].max(initial=0) <= 2


def test_classes_subset_respected(tmp_path: Path) -> None:
    out = tmp_path / "o"
    res = _synth(str(out), "-n", "6", "--size", "192x160", "--classes", "10, hole", "--json")
    assert res.exit_code == 0, res.output
    cats = {RAW_BY_NAME[e["defect_name"]].category_id for e in _load(out)}
    assert cats and cats <= {1, 10}
    assert set(json.loads(res.stdout)["classes"]) == {1, 10}


@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0])
def test_normal_fraction_is_exact(tmp_path: Path, fraction: float) -> None:
    s = write_release(
        tmp_path / "o", ReleaseOptions(n_images=6, width=96, height=96, normal_fraction=fraction)
    )
    assert (
        s.normal_frames
        == round(6 * fraction)
        == len(list((tmp_path / "o/normal_Images").iterdir()))
    )
    if fraction == 1.0:
        assert _load(tmp_path / "o") == []


def test_class_and_count_priors() -> None:
    rng = np.random.default_rng(0)
    names = sample_raw_names(rng, 40000)
    raws = Counter(names)
    known = sum(n for n in RAW_BOXES.values())
    total = known + ABSENT_NAME_BOXES * sum(1 for n in RAW_BOXES.values() if n == 0)
    for raw, n in RAW_BOXES.items():  # each name as often as it has real boxes
        assert abs(raws[raw] / 40000 - (n or ABSENT_NAME_BOXES) / total) < 0.006
    for rare in ("色差档", "云织", "双经", "跳纱", "纬纱不良"):
        assert raws[rare] < raws["结头"] / 20
    counts = [sample_box_count(rng) for _ in range(20000)]
    real = np.arange(1, len(FRAMES_PER_BOX_COUNT) + 1) @ np.asarray(FRAMES_PER_BOX_COUNT)
    assert abs(np.mean(counts) - real / sum(FRAMES_PER_BOX_COUNT)) < 0.04  # 1.67 boxes
    assert min(counts) == 1 and max(counts) >= 6
    assert set(raw_name_weights([4])) == {"结头"}


def test_uniform_class_prior_draws_every_category_alike() -> None:
    names = sample_raw_names(np.random.default_rng(0), 40000, prior="uniform")
    cats = Counter(RAW_BY_NAME[n].category_id for n in names)
    assert len(cats) == 20
    for c in CATEGORIES:
        assert abs(cats[c.id] / 40000 - 1 / 20) < 0.006
    with pytest.raises(FabricError, match="class prior"):
        raw_name_weights(prior="flat")


def test_full_size_frame_statistics() -> None:
    """Calibration (reference 10.2): dark grey-blue, std 10-25, strong horizontal vignetting."""
    frame = render_frame(2, 2446, 160, n_defects=0)
    img = frame.image.astype(np.float32)
    assert 55 < img.mean() < 120 and 8 < img.std() < 25
    cols = img.mean(axis=(0, 2))
    ratio = (cols[:100].mean() + cols[-100:].mean()) / 2 / cols[1150:1300].mean()
    assert 0.65 < ratio < 0.88
    sharp = cv2.Laplacian(img.mean(-1), cv2.CV_32F).std()
    assert sharp > 5  # the weave is resolved, not a flat grey


def test_parse_classes() -> None:
    assert parse_classes("4, hole,4,Thick_Warp") == [1, 4, 8]
    with pytest.raises(FabricError, match="unknown class 'bogus'"):
        parse_classes("bogus")
    with pytest.raises(FabricError):
        parse_classes("21")


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["--size", "12x"], 2, "WxH"),
        (["--size", "40x40"], 1, "too small"),
        (["--classes", "nope"], 1, "unknown class"),
        (["--images", "-1"], 2, "images"),
        (["--normal-fraction", "1.5"], 2, "normal-fraction"),
        (["--difficulty", "extreme"], 2, "difficulty"),
        (["--layout", "spiral"], 2, "layout"),
        (["--geometry", "cubic"], 2, "geometry"),
    ],
)
def test_bad_options(tmp_path: Path, args: list[str], code: int, needle: str) -> None:
    res = _synth(str(tmp_path / "o"), "-n", "2", *args)
    assert res.exit_code == code, res.output
    assert needle in res.output
    if code == 1:
        assert res.output.startswith("error: ") and res.output.count("\n") == 1


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "o"
    assert _synth(str(out), "-n", "3", "--size", "96x96").exit_code == 0
    first = {p.name for p in out.rglob("*.jpg")}
    res = _synth(str(out), "-n", "2", "--size", "96x96", "--seed", "1")
    assert res.exit_code == 1 and "--overwrite" in res.output
    res = _synth(str(out), "-n", "2", "--size", "96x96", "--seed", "1", "--overwrite")
    assert res.exit_code == 0, res.output
    second = {p.name for p in out.rglob("*.jpg")}
    assert len(second) == 2 and not first & second  # the stale frames are gone
    (out / "notes.txt").write_text("mine")
    res = _synth(str(out), "-n", "2", "--size", "96x96", "--overwrite")
    assert res.exit_code == 1 and "notes.txt" in res.output
    assert (out / "notes.txt").exists()
