"""``fabricnms convert``: tiny fake Tianchi releases in tmp_path -> COCO + dataset.yaml."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from fabricnms.cli import app
from fabricnms.data.coco import load_coco
from fabricnms.data.coco_eval import coco_eval
from fabricnms.data.dataset_yaml import load_data_yaml

runner = CliRunner()

KNOT, HOLE, WATER, OIL = "结头", "破洞", "水渍", "油渍"


def write_jpeg(path: Path, width: int = 64, height: int = 48, value: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((height, width, 3), value, np.uint8)
    img[::4, ::3] = 140  # some texture so the JPEG is not trivially flat
    assert cv2.imwrite(str(path), img)


def entry(name: str, defect: str, bbox: Sequence[float]) -> dict:
    return {"name": name, "defect_name": defect, "bbox": list(bbox)}


def write_labels(path: Path, entries: list[dict]) -> Path:
    """Write a label file the way Tianchi does: Chinese as \\u escapes, 4-space indent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries, ensure_ascii=True, indent=4), encoding="utf-8")
    return path


def make_release(
    root: Path,
    entries: list[dict],
    sizes: dict[str, tuple[int, int]] | None = None,
    normal: Sequence[str] = (),
    label_name: str = "anno_train.json",
) -> Path:
    """A round-1 part: defect_Images/ (one JPEG per listed name), normal_Images/, Annotations/."""
    sizes = sizes or {}
    for name in dict.fromkeys(e["name"] for e in entries):
        write_jpeg(root / "defect_Images" / name, *sizes.get(name, (64, 48)))
    for name in normal:
        write_jpeg(root / "normal_Images" / name, *sizes.get(name, (64, 48)))
    write_labels(root / "Annotations" / label_name, entries)
    return root


def convert(*args: object) -> tuple[int, str, str]:
    result = runner.invoke(app, ["convert", *map(str, args)])
    return result.exit_code, result.stdout, result.stderr


def convert_ok(*args: object) -> dict:
    code, out, err = convert(*args, "--json")
    assert code == 0, err
    return json.loads(out)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    return lines[0]


# ---------------------------------------------------------------------------------------------
# the happy path


def test_groups_boxes_by_image_with_header_sizes(tmp_path: Path) -> None:
    src = make_release(
        tmp_path / "train1",
        [
            entry("b.jpg", KNOT, [10.5, 20.25, 30.75, 40.0]),
            entry("a.jpg", HOLE, [1, 2, 11, 12]),
            entry("b.jpg", WATER, [100, 50, 250.33, 150.5]),
        ],
        sizes={"a.jpg": (64, 48), "b.jpg": (300, 200)},
    )
    assert "\\u7ed3\\u5934" in (src / "Annotations" / "anno_train.json").read_text()
    out = tmp_path / "out"
    summary = convert_ok(src, out, "--val-fraction", "0")
    train = read_json(out / "annotations" / "instances_train.json")
    val = read_json(out / "annotations" / "instances_val.json")
    assert val["images"] == [] and val["annotations"] == []

    assert [
        (i["id"], i["file_name"], i["width"], i["height"], i["name"]) for i in train["images"]
    ] == [
        (1, "defect_Images/a.jpg", 64, 48, "a.jpg"),
        (2, "defect_Images/b.jpg", 300, 200, "b.jpg"),
    ]
    anns = train["annotations"]
    assert [a["id"] for a in anns] == [1, 2, 3]
    assert [(a["image_id"], a["category_id"], a["defect_name"]) for a in anns] == [
        (1, 1, HOLE),
        (2, 4, KNOT),
        (2, 2, WATER),
    ]
    assert anns[1]["bbox"] == [10.5, 20.25, 20.25, 19.75]
    assert anns[2]["bbox"] == [100.0, 50.0, 250.33 - 100.0, 100.5]  # full float precision
    assert anns[2]["area"] == (250.33 - 100.0) * 100.5
    assert all(a["iscrowd"] == 0 and a["segmentation"] == [] for a in anns)
    assert [a["fine_category_id"] for a in anns] == [1, 6, 2]
    cats = {c["id"]: c for c in train["categories"]}
    assert sorted(cats) == list(range(1, 21))
    assert cats[2]["name"] == "stain" and cats[2]["raw_names"] == [WATER, OIL, "污渍"]
    assert cats[12]["aliases"] == ["粗纬"]
    assert "info" in train and train["licenses"] == []
    assert summary["images"]["defect"] == 2 and summary["boxes"]["train"] == 3
    assert summary["warnings"] == []


def test_dataset_yaml_and_pycocotools_self_eval(tmp_path: Path) -> None:
    names = [f"{i:02d}.jpg" for i in range(10)]
    entries = [entry(n, KNOT if i % 2 else HOLE, [i, i, 20 + i, 30]) for i, n in enumerate(names)]
    entries.append(entry(names[3], WATER, [30, 5, 60, 40]))
    src = make_release(tmp_path / "train1", entries, normal=["n1.jpg", "n2.jpg"])
    out = tmp_path / "out"
    convert_ok(src, out)
    meta = yaml.safe_load((out / "dataset.yaml").read_text())
    assert meta["path"] == "."
    assert meta["image_root"] == "../train1"
    assert meta["train"] == "annotations/instances_train.json"
    assert meta["val"] == "annotations/instances_val.json"
    assert meta["nc"] == 20 and meta["scheme"] == 20
    assert meta["names"][:4] == ["hole", "stain", "foreign_fibre", "knot"]

    from pycocotools.coco import COCO

    for split in ("train", "val"):
        path = out / meta["path"] / meta[split]
        api = COCO(str(path))
        assert len(api.getImgIds()) > 0
        for img in api.dataset["images"]:
            assert (out / meta["image_root"] / img["file_name"]).is_file()
        doc = load_coco(path)
        results = [
            {
                "image_id": a["image_id"],
                "category_id": a["category_id"],
                "bbox": a["bbox"],
                "score": 1.0,
            }
            for a in doc["annotations"]
        ]
        stats = coco_eval(path, results)
        assert stats.stats[0] == pytest.approx(1.0)
        assert stats.stats[1] == pytest.approx(1.0)


def test_clipping_and_dropping(tmp_path: Path) -> None:
    src = make_release(
        tmp_path / "r",
        [
            entry("a.jpg", KNOT, [-5, 40, 20, 60]),  # clipped to [0, 40, 20, 48]
            entry("a.jpg", KNOT, [70, 10, 90, 20]),  # right of a 64 px image: dropped
            entry("a.jpg", HOLE, [30, 30, 20, 40]),  # xmax < xmin: dropped
            entry("a.jpg", HOLE, [5, 5, 5.5, 30]),  # 0.5 px wide: kept
        ],
    )
    out = tmp_path / "out"
    summary = convert_ok(src, out, "--val-fraction", "0")
    anns = read_json(out / "annotations" / "instances_train.json")["annotations"]
    assert [a["bbox"] for a in anns] == [[0.0, 40.0, 20.0, 8.0], [5.0, 5.0, 0.5, 25.0]]
    assert summary["boxes"]["clipped"] == 1
    assert summary["dropped_boxes"]["empty_after_clipping"] == 2
    assert summary["validation"]["train"]["tiny_boxes"] == 1
    assert summary["validation"]["train"]["out_of_bounds"] == 0
    kinds = {w["kind"]: w["count"] for w in summary["warnings"]}
    assert kinds == {"empty_box": 2}
    assert {n["kind"] for n in summary["notes"]} == {"clipped_box"}

    code, _, err = convert(src, tmp_path / "strict", "--strict")
    assert code == 1
    line = one_error_line(err)
    assert "anno_train.json[1]" in line and "a.jpg" in line and "empty" in line


def test_scheme_20_vs_34_and_aliases(tmp_path: Path) -> None:
    src = make_release(
        tmp_path / "r",
        [
            entry("a.jpg", OIL, [1, 1, 10, 10]),
            entry("a.jpg", "粗纬", [1, 20, 60, 25]),  # alias of 粗维
            entry("a.jpg", " 双维", [1, 30, 60, 35]),  # alias of 双纬, stray space
        ],
    )
    got = {}
    for scheme in ("20", "34"):
        out = tmp_path / f"out{scheme}"
        summary = convert_ok(src, out, "--classes", scheme, "--val-fraction", "0")
        doc = read_json(out / "annotations" / "instances_train.json")
        got[scheme] = [(a["category_id"], a["fine_category_id"]) for a in doc["annotations"]]
        meta = yaml.safe_load((out / "dataset.yaml").read_text())
        assert meta["nc"] == int(scheme) == len(meta["names"]) == len(doc["categories"])
        assert summary["warnings"] == []
    assert got["20"] == [(2, 3), (12, 14), (20, 30)]
    assert got["34"] == [(3, 3), (14, 14), (30, 30)]
    doc34 = read_json(tmp_path / "out34" / "annotations" / "instances_train.json")
    cat14 = next(c for c in doc34["categories"] if c["id"] == 14)
    assert cat14["zh"] == "粗维" and cat14["supercategory"] == "thick_weft"


def test_normal_frames_kept_and_split(tmp_path: Path) -> None:
    normal = [f"n{i}.jpg" for i in range(10)]
    src = make_release(tmp_path / "r", [entry("a.jpg", KNOT, [1, 1, 9, 9])], normal=normal)
    out = tmp_path / "out"
    summary = convert_ok(src, out)
    assert summary["images"]["normal"] == 10
    assert summary["images"]["val"]["normal"] == 2 and summary["images"]["train"]["normal"] == 8
    train = read_json(out / "annotations" / "instances_train.json")
    annotated = {a["image_id"] for a in train["annotations"]}
    normal_imgs = [i for i in train["images"] if i["id"] not in annotated]
    assert len(normal_imgs) == 8
    assert all(i["file_name"].startswith("normal_Images/") for i in normal_imgs)


def test_missing_image_is_skipped_with_warning(tmp_path: Path) -> None:
    src = make_release(tmp_path / "r", [entry("a.jpg", KNOT, [1, 1, 9, 9])])
    labels = src / "Annotations" / "anno_train.json"
    write_labels(labels, [*read_json(labels), entry("gone.jpg", HOLE, [1, 1, 5, 5])])
    summary = convert_ok(src, tmp_path / "out", "--val-fraction", "0")
    assert summary["skipped_images"]["missing"] == 1
    assert summary["dropped_boxes"]["image_missing"] == 1
    assert summary["boxes"]["train"] == 1
    (warning,) = summary["warnings"]
    assert warning["kind"] == "missing_image" and "gone.jpg" in warning["examples"][0]

    code, _, err = convert(src, tmp_path / "strict", "--strict")
    assert code == 1
    line = one_error_line(err)
    assert "anno_train.json[1]" in line and "gone.jpg" in line
    assert not (tmp_path / "strict" / "annotations").exists()


def test_same_name_in_two_parts_is_merged(tmp_path: Path) -> None:
    """partA's and partB's label files both list a.jpg; the image lives in partB only."""
    shared = [entry("a.jpg", KNOT, [1, 1, 9, 9]), entry("a.jpg", HOLE, [20, 20, 30, 30])]
    train1 = tmp_path / "train1"
    part_a = train1 / "partA" / "partA"
    part_b = train1 / "partB" / "partB"
    make_release(part_a, [entry("x.jpg", KNOT, [2, 2, 8, 8])])
    write_labels(
        part_a / "Annotations" / "anno_train.json", [entry("x.jpg", KNOT, [2, 2, 8, 8]), *shared]
    )
    make_release(part_b, [*shared, entry("a.jpg", KNOT, [40, 1, 50, 9])])
    summary = convert_ok(train1, tmp_path / "out", "--val-fraction", "0")
    doc = read_json(tmp_path / "out" / "annotations" / "instances_train.json")
    by_name = {i["name"]: i["id"] for i in doc["images"]}
    boxes_a = sorted(a["bbox"] for a in doc["annotations"] if a["image_id"] == by_name["a.jpg"])
    assert boxes_a == [[1.0, 1.0, 8.0, 8.0], [20.0, 20.0, 10.0, 10.0], [40.0, 1.0, 10.0, 8.0]]
    assert [i["file_name"] for i in doc["images"]] == [
        "partA/partA/defect_Images/x.jpg",
        "partB/partB/defect_Images/a.jpg",
    ]
    assert summary["dropped_boxes"]["duplicate"] == 2
    (warning,) = summary["warnings"]
    assert warning["kind"] == "same_name_in_two_parts" and warning["count"] == 1

    code, _, err = convert(train1, tmp_path / "strict", "--strict")
    assert code == 1 and "a.jpg" in one_error_line(err)


def test_legacy_gt_result_in_doubled_folders_and_two_sources(tmp_path: Path) -> None:
    legacy = tmp_path / "data" / "train1_0809" / "train1_0809"
    make_release(legacy, [entry("a.jpg", KNOT, [1, 1, 9, 9])], label_name="gt_result.json")
    train2 = tmp_path / "data" / "train2"
    make_release(train2, [entry("b.jpg", HOLE, [1, 1, 9, 9])], normal=["n.jpg"])
    # a doubled Annotations level (round-2 style) is found too
    (train2 / "Annotations" / "anno_train.json").rename(train2 / "labels.tmp")
    (train2 / "Annotations" / "Annotations").mkdir()
    (train2 / "labels.tmp").rename(train2 / "Annotations" / "Annotations" / "anno_train.json")
    out = tmp_path / "out"
    summary = convert_ok(legacy.parent, train2, out, "--val-fraction", "0")
    assert len(summary["label_files"]) == 2
    doc = read_json(out / "annotations" / "instances_train.json")
    assert [i["file_name"] for i in doc["images"]] == [
        "train1_0809/train1_0809/defect_Images/a.jpg",
        "train2/defect_Images/b.jpg",
        "train2/normal_Images/n.jpg",
    ]
    meta = yaml.safe_load((out / "dataset.yaml").read_text())
    assert meta["image_root"] == "../data"


def _many_images_release(root: Path) -> Path:
    """40 defect images over 4 classes (one class in exactly 2 images) + 10 normal frames."""
    entries = []
    for i in range(40):
        name = f"img{i:02d}.jpg"
        entries.append(entry(name, KNOT if i % 2 else HOLE, [1, 1, 9, 9]))
        if i % 5 == 0:
            entries.append(entry(name, WATER, [10, 10, 20, 20]))
        if i in (7, 33):
            entries.append(entry(name, "断经", [30, 0, 34, 48]))
    normal = [f"n{i}.jpg" for i in range(10)]
    for name in [*dict.fromkeys(e["name"] for e in entries), *normal]:
        write_jpeg(root / ("normal_Images" if name in normal else "defect_Images") / name, 32, 48)
    write_labels(root / "Annotations" / "anno_train.json", entries)
    return root


def test_split_is_deterministic_and_stratified(tmp_path: Path) -> None:
    src = _many_images_release(tmp_path / "r")
    docs = {}
    for run, seed in (("a", 0), ("b", 0), ("c", 1)):
        convert_ok(src, tmp_path / run, "--seed", seed)
        docs[run] = [
            (tmp_path / run / "annotations" / f"instances_{s}.json").read_bytes()
            for s in ("train", "val")
        ]
    assert docs["a"] == docs["b"]
    assert docs["a"] != docs["c"]
    for run in ("a", "c"):
        train, val = (json.loads(b) for b in docs[run])
        assert len(val["images"]) == 10  # 8 of 40 defect + 2 of 10 normal
        val_classes = {a["category_id"] for a in val["annotations"]}
        train_classes = {a["category_id"] for a in train["annotations"]}
        assert val_classes == train_classes == {1, 2, 4, 10}
        names = {i["name"] for i in train["images"]} | {i["name"] for i in val["images"]}
        assert len(names) == 50 == len(train["images"]) + len(val["images"])


def test_dataset_survives_moving_its_tree(tmp_path: Path) -> None:
    src = make_release(tmp_path / "tree" / "rel", [entry("a.jpg", KNOT, [1, 1, 9, 9])])
    convert_ok(src, tmp_path / "tree" / "coco", "--val-fraction", "0")
    moved = tmp_path / "elsewhere"
    (tmp_path / "tree").rename(moved)
    spec = load_data_yaml(moved / "coco")
    assert spec.image_root == (moved / "rel").resolve()
    doc = read_json(spec.split_path("train"))
    assert (spec.image_root / doc["images"][0]["file_name"]).is_file()


def test_copy_puts_images_under_out(tmp_path: Path) -> None:
    src = make_release(tmp_path / "r", [entry("a.jpg", KNOT, [1, 1, 9, 9])], normal=["n.jpg"])
    out = tmp_path / "out"
    convert_ok(src, out, "--copy", "--val-fraction", "0")
    doc = read_json(out / "annotations" / "instances_train.json")
    assert [i["file_name"] for i in doc["images"]] == ["images/a.jpg", "images/n.jpg"]
    meta = yaml.safe_load((out / "dataset.yaml").read_text())
    assert meta["image_root"] == "."
    assert (out / "images" / "a.jpg").read_bytes() == (src / "defect_Images" / "a.jpg").read_bytes()
    # a second run with OUT inside the source does not index its own copies
    summary = convert_ok(src, src / "coco", "--copy", "--val-fraction", "0")
    summary = convert_ok(src, src / "coco", "--copy", "--val-fraction", "0")
    assert summary["warnings"] == []


def test_human_summary_and_check_only(tmp_path: Path) -> None:
    src = make_release(tmp_path / "r", [entry("a.jpg", KNOT, [-1, 1, 9, 9])], normal=["n.jpg"])
    code, out, err = convert(src, tmp_path / "out")
    assert code == 0 and out == ""
    for text in ("Images", "Boxes per class", "knot", "clipped", "Validation", "Results saved to"):
        assert text in err
    code, out, err = convert(src, tmp_path / "checked", "--check")
    assert code == 0 and "nothing written" in err
    assert not (tmp_path / "checked").exists()


def test_unknown_defect_name_is_counted_then_strict_error(tmp_path: Path) -> None:
    src = make_release(
        tmp_path / "r",
        [entry("a.jpg", KNOT, [1, 1, 9, 9]), entry("a.jpg", "外星疵点", [1, 1, 5, 5])],
    )
    summary = convert_ok(src, tmp_path / "out", "--val-fraction", "0")
    assert summary["unknown_defect_names"] == {"外星疵点": 1}
    assert summary["dropped_boxes"]["unknown_class"] == 1
    assert summary["boxes"]["train"] == 1
    code, _, err = convert(src, tmp_path / "strict", "--strict")
    assert code == 1
    line = one_error_line(err)
    assert "anno_train.json[1]" in line and "外星疵点" in line


def test_unreadable_image_is_counted_then_strict_error(tmp_path: Path) -> None:
    src = make_release(
        tmp_path / "r", [entry("a.jpg", KNOT, [1, 1, 9, 9]), entry("bad.jpg", KNOT, [1, 1, 9, 9])]
    )
    (src / "defect_Images" / "bad.jpg").write_bytes(b"not a jpeg at all")
    summary = convert_ok(src, tmp_path / "out", "--val-fraction", "0")
    assert summary["skipped_images"]["unreadable"] == 1
    assert summary["dropped_boxes"]["image_unreadable"] == 1
    code, _, err = convert(src, tmp_path / "strict", "--strict")
    assert code == 1
    assert "bad.jpg" in one_error_line(err)


# ---------------------------------------------------------------------------------------------
# bad input: exit code 1, one line naming the file, no traceback, nothing written


def _bad_labels(tmp_path: Path, text: str) -> Path:
    src = make_release(tmp_path / "r", [entry("a.jpg", KNOT, [1, 1, 9, 9])])
    (src / "Annotations" / "anno_train.json").write_text(text, encoding="utf-8")
    return src


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[{"name": "a.jpg", "defect_name": "x",\n  "bbox": [1, 2, 3,]}]', "line 2, column"),
        ("", "line 1, column 1"),
        ('{"name": "a.jpg"}', "top level must be a list"),
        ('[{"name": "a.jpg", "bbox": [1, 2, 3, 4]}]', "[0]: entry has no 'defect_name'"),
        ('[{"name": "a.jpg", "defect_name": "x", "bbox": [1, 2, 3]}]', "'bbox' must be 4 numbers"),
        ('[{"name": "a.jpg", "defect_name": "x", "bbox": [1, 2, "3", 4]}]', "must be 4 numbers"),
        ('[{"name": "a.jpg", "defect_name": "x", "bbox": [1, 2, NaN, 4]}]', "must be 4 numbers"),
        ('[{"name": "", "defect_name": "x", "bbox": [1, 2, 3, 4]}]', "'name' must be"),
        ("[1]", "[0]: entry must be an object"),
    ],
)
def test_malformed_label_file(tmp_path: Path, text: str, expected: str) -> None:
    src = _bad_labels(tmp_path, text)
    code, out, err = convert(src, tmp_path / "out")
    assert code == 1 and out == ""
    line = one_error_line(err)
    assert str(src / "Annotations" / "anno_train.json") in line
    assert expected in line
    assert not (tmp_path / "out").exists()


def test_missing_source_folder(tmp_path: Path) -> None:
    code, _, err = convert(tmp_path / "nope", tmp_path / "out")
    assert code == 1
    line = one_error_line(err)
    assert str(tmp_path / "nope") in line and "no such folder" in line


def test_real_process_prints_one_line_without_traceback(tmp_path: Path) -> None:
    """CliRunner hides how the console script ends; run the real entry point once."""
    proc = subprocess.run(
        [sys.executable, "-m", "fabricnms", "convert", str(tmp_path / "nope"), str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: {tmp_path / 'nope'}: no such folder"


def test_source_without_label_file(tmp_path: Path) -> None:
    write_jpeg(tmp_path / "testA" / "x.jpg")
    code, _, err = convert(tmp_path / "testA", tmp_path / "out")
    assert code == 1
    line = one_error_line(err)
    assert "testA" in line and "anno_train.json" in line


def test_failed_write_keeps_previous_output_whole(tmp_path: Path, monkeypatch) -> None:
    src = make_release(tmp_path / "r", [entry("a.jpg", KNOT, [1, 1, 9, 9])])
    out = tmp_path / "out"
    convert_ok(src, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    write_labels(src / "Annotations" / "anno_train.json", [entry("a.jpg", HOLE, [1, 1, 9, 9])])

    import fabricnms.data.convert_output as conv

    real_atomic_open = conv.atomic_open

    @contextlib.contextmanager
    def disk_full_on_train(path: Path, mode: str = "wb") -> Iterator[IO[Any]]:
        with real_atomic_open(path, mode) as fh:
            if path.name == "instances_train.json":  # yaml and val are already written
                raise OSError(28, "No space left on device")
            yield fh

    monkeypatch.setattr(conv, "atomic_open", disk_full_on_train)
    result = runner.invoke(app, ["convert", str(src), str(out)])
    assert isinstance(result.exception, OSError)
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # no file replaced, no temp file left behind


# ---------------------------------------------------------------------------------------------
# integration with the generator


def _synth_registered() -> bool:
    return any(cmd.name == "synth" for cmd in app.registered_commands)


@pytest.mark.skipif(not _synth_registered(), reason="fabricnms synth is not registered yet")
def test_synth_output_converts(tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    result = runner.invoke(
        app,
        ["synth", str(tmp_path / "synth"), "--images", "12", "--size", "320x256", "--seed", "1"],
    )
    assert result.exit_code == 0, result.output
    summary = convert_ok(tmp_path / "synth", tmp_path / "coco")
    assert summary["images"]["defect"] + summary["images"]["normal"] > 0
    for split in ("train", "val"):
        api = COCO(str(tmp_path / "coco" / "annotations" / f"instances_{split}.json"))
        assert all(img["width"] == 320 and img["height"] == 256 for img in api.dataset["images"])
