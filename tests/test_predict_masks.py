"""``predict --masks`` and ``eval --masks`` end to end on a tiny synth release with true masks."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from helpers_engine import boosted_checkpoint
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from typer.testing import CliRunner

from fabricnms.cli import app
from fabricnms.data.coco import load_coco
from fabricnms.data.convert import convert_release
from fabricnms.data.convert_output import write_outputs
from fabricnms.data.convert_types import ConvertOptions
from fabricnms.data.dataset_yaml import load_data_yaml
from fabricnms.data.synth import ReleaseOptions, write_release
from fabricnms.engine.masks import load_true_masks, segm_ground_truth

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")
FAST = ["--tile", "128", "--device", "cpu", "--nms", "greedy"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("masks")
    release = root / "synth"
    write_release(
        release,
        ReleaseOptions(n_images=4, width=192, height=128, masks=True, normal_fraction=0.0, seed=1),
    )
    options = ConvertOptions(val_fraction=0.5)
    write_outputs(convert_release([release], root / "coco", options), root / "coco", options)
    data = root / "coco" / "dataset.yaml"
    names = list(load_data_yaml(data).names)
    return {
        "root": root,
        "data": data,
        "frames": release,
        "masked": boosted_checkpoint(root / "masked.pt", names, data, mask_prototypes=4)[0],
        "plain": boosted_checkpoint(root / "plain.pt", names, data)[0],
    }


def test_convert_lists_the_true_masks(setup: dict[str, Path]) -> None:
    spec = load_data_yaml(setup["data"])
    assert spec.masks == ((setup["frames"] / "Annotations" / "masks.json").resolve(),)


def test_predict_masks_writes_decodable_rle_with_matching_area(setup: dict[str, Path]) -> None:
    out = setup["root"] / "pred"
    result = runner.invoke(
        app,
        [
            *("predict", str(setup["frames"]), "-r", "--weights", str(setup["masked"]), "--masks"),
            *("--out", str(out), "--conf", "0.0", "--max-det", "5", "--px-per-mm", "2", *FAST),
        ],
    )
    assert result.exit_code == 0, result.output
    preds = json.loads((out / "predictions.json").read_text())
    sizes = {
        im["id"]: (im["height"], im["width"])
        for im in json.loads((out / "images.json").read_text())["images"]
    }
    assert preds and all("segmentation" in p for p in preds)
    for p in preds:
        rle = p["segmentation"]
        assert tuple(rle["size"]) == sizes[p["image_id"]]
        mask = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
        assert mask.shape == sizes[p["image_id"]]
        assert p["area"] == int(mask.sum())
        assert p["area_mm2"] == pytest.approx(p["area"] / 4, abs=0.01)
        assert 0.0 <= p["mask_uncertainty"] <= 1.0
        x, y, w, h = p["bbox"]  # the mask lies in its box
        ys, xs = np.nonzero(mask)
        if len(xs):
            assert xs.min() >= np.floor(x) and xs.max() < np.ceil(x + w)
            assert ys.min() >= np.floor(y) and ys.max() < np.ceil(y + h)
    with open(out / "detections.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["mask_area_px"]) for r in rows] == [p["area"] for p in preds]
    assert "mask_area_mm2" in rows[0] and "mask_uncertainty" in rows[0]
    assert (out / "overlays").is_dir()


def test_masks_need_a_mask_branch(setup: dict[str, Path]) -> None:
    for command in (
        ["predict", str(setup["frames"]), "-r", "--out", str(setup["root"] / "p2")],
        ["eval", "--data", str(setup["data"]), "--project", str(setup["root"] / "runs")],
    ):
        result = runner.invoke(app, [*command, "--weights", str(setup["plain"]), "--masks", *FAST])
        assert result.exit_code == 1
        assert "plain.pt: the checkpoint has no mask branch" in result.output


def test_eval_masks_needs_true_masks(setup: dict[str, Path], tmp_path: Path) -> None:
    text = setup["data"].read_text().split("masks:")[0]
    bare = setup["data"].parent / "bare.yaml"  # beside it: its paths are relative to its folder
    bare.write_text(text)
    result = runner.invoke(
        app,
        [
            *("eval", "--data", str(bare), "--weights", str(setup["masked"]), "--masks"),
            *("--project", str(tmp_path / "runs"), *FAST),
        ],
    )
    assert result.exit_code == 1
    assert "no true masks to evaluate against" in result.output


def test_eval_masks_equals_pycocotools_on_the_written_results(setup: dict[str, Path]) -> None:
    result = runner.invoke(
        app,
        [
            *("eval", "--data", str(setup["data"]), "--weights", str(setup["masked"]), "--masks"),
            *("--split", "train", "--project", str(setup["root"] / "runs"), "--json", *FAST),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{") :].split("\nResults saved")[0])
    results = json.loads(Path(summary["results_file"]).read_text())
    assert results and all("segmentation" in r for r in results)
    spec = load_data_yaml(setup["data"])
    segm = segm_ground_truth(load_coco(spec.split_path("train")), load_true_masks(spec.masks[0]))
    gt = COCO()
    gt.dataset = segm
    gt.createIndex()
    evaluator = COCOeval(gt, gt.loadRes(results), "segm")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    masks = summary["masks"]
    assert masks["mask_AP"] == pytest.approx(evaluator.stats[0], abs=1e-9)
    assert masks["mask_AP50"] == pytest.approx(evaluator.stats[1], abs=1e-9)
    assert masks["true_masks"] == len(segm["annotations"]) > 0
