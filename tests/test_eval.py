"""``fabricnms eval``: numbers equal pycocotools on the written files; defaults; bad input."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_engine import NAMES, boosted_checkpoint, make_dataset
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from typer.testing import CliRunner

from fabricnms.cli import app
from fabricnms.data.coco import coco_annotation, load_coco, write_coco
from fabricnms.data.dataset import frames_from_coco, read_frame
from fabricnms.data.dataset_yaml import load_data_yaml
from fabricnms.engine.checkpoint import save_checkpoint
from fabricnms.engine.tiling import TileSettings, detect_frames

runner = CliRunner()
TILE = ["--tile", "128", "--nms", "greedy", "--device", "cpu"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | float]:
    """A random detector and a val split whose ground truth is that detector's own top
    detections (score >= t): evaluated at --conf t / --acc-conf t, every metric must be 1."""
    root = tmp_path_factory.mktemp("eval")
    data = make_dataset(root / "data", n_train=1, n_val=4, width=200, height=120)
    weights, model = boosted_checkpoint(root / "model.pt", NAMES, data)
    spec = load_data_yaml(data)
    val = load_coco(spec.split_path("val"))
    frames = frames_from_coco(val, spec.image_root, spec.nc)
    settings = TileSettings(tile=128, nms="greedy", conf=0.0)
    dets = list(detect_frames(model, (read_frame(f) for f in frames), settings))
    scores = np.sort(np.concatenate([d.scores.numpy() for d in dets]))[::-1]
    k = 4 + int(np.argmax(scores[4:12] - scores[5:13]))  # cut at the widest gap below 5th
    t = float((scores[k] + scores[k + 1]) / 2)
    anns = []
    for frame, det in zip(frames, dets, strict=True):
        for box, score, label in zip(
            det.boxes.tolist(), det.scores.tolist(), det.labels.tolist(), strict=True
        ):
            if score >= t:
                x1, y1, x2, y2 = box
                anns.append(
                    coco_annotation(
                        len(anns) + 1, frame.image_id, label + 1, [x1, y1, x2 - x1, y2 - y1]
                    )
                )
    val["annotations"] = anns
    write_coco(spec.split_path("val"), val)
    assert 0 < len(anns) < 20 and len({a["image_id"] for a in anns}) < len(frames)
    return {"data": data, "weights": weights, "t": t, "root": root}


def _pycocotools_stats(gt_path: Path, results_path: Path) -> list[float]:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        dt = gt.loadRes(str(results_path))
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(s) for s in ev.stats]


def test_eval_json_equals_pycocotools_and_self_consistent_gt_scores_one(setup: dict) -> None:
    t = repr(setup["t"])
    project = setup["root"] / "runs"
    result = runner.invoke(
        app,
        [
            *("eval", "--weights", str(setup["weights"]), "--conf", t, "--acc-conf", t),
            *("--json", *TILE, "--project", str(project)),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    run = project / "eval" / "eval"
    assert summary["run_dir"] == str(run.resolve())
    assert json.loads((run / "eval.json").read_text()) == summary
    assert (run / "config.yaml").is_file()
    plots = summary["diagnostics"]["files"]
    assert sorted(plots) == ["confusion_matrix", "f1_curve", "pr_curves"]
    assert all(Path(p).parent == run.resolve() and Path(p).is_file() for p in plots.values())
    counts = np.array(summary["diagnostics"]["confusion_matrix"]["counts"])
    assert np.trace(counts[:-1, :-1]) == counts[:-1].sum() == counts[:, :-1].sum()  # all right
    stats = _pycocotools_stats(Path(summary["ground_truth"]), run / "results.json")
    assert list(summary["coco"].values()) == stats
    # detections == ground truth: COCO AP, Tianchi mAP, ACC and score are all exactly 1
    assert summary["coco"]["AP_all"] == pytest.approx(1.0)
    assert summary["tianchi"]["mAP"] == pytest.approx(1.0)
    assert summary["tianchi"]["acc"] == 1.0 and summary["tianchi"]["score"] == pytest.approx(1.0)
    rows = {r["class"]: r for r in summary["per_class"]}
    assert sum(r["boxes"] for r in rows.values()) == len(
        json.loads((run / "results.json").read_text())
    )


def test_eval_text_report_and_lower_conf(setup: dict) -> None:
    project = setup["root"] / "runs_text"
    result = runner.invoke(
        app, ["eval", "--weights", str(setup["weights"]), *TILE, "--project", str(project)]
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("Average Precision") == 6
    assert result.output.count("Average Recall") == 6
    assert "Tianchi score" in result.output and "per class" in result.output
    assert "Diagnostics: confusion_matrix.png, pr_curves.png, f1_confidence.png" in result.output
    assert f"Results saved to {(project / 'eval' / 'eval').resolve()}" in result.output
    summary = json.loads((project / "eval" / "eval" / "eval.json").read_text())
    # all detections down to conf 0.001 are scored: extra false positives, AP below 1
    assert summary["detections"] > sum(r["boxes"] for r in summary["per_class"])
    stats = _pycocotools_stats(Path(summary["ground_truth"]), Path(summary["results_file"]))
    assert list(summary["coco"].values()) == stats


def test_default_weights_are_the_shipped_model_as_in_predict(
    setup: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fabricnms.engine import predict

    shipped = tmp_path / "shipped.pt"
    shipped.write_bytes(Path(setup["weights"]).read_bytes())
    monkeypatch.setattr(predict, "DEFAULT_WEIGHTS", shipped)
    newer = tmp_path / "train" / "exp" / "weights" / "best.pt"  # a training run does not count
    newer.parent.mkdir(parents=True)
    newer.write_bytes(shipped.read_bytes())
    result = runner.invoke(app, ["eval", *TILE, "--project", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["weights"] == str(shipped.resolve())
    assert summary["acc_conf"] == 0.25  # predict's default threshold


def test_eval_bad_input_is_one_line(
    setup: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fabricnms.engine import predict

    monkeypatch.setattr(predict, "DEFAULT_WEIGHTS", tmp_path / "none.pt")
    result = runner.invoke(app, ["eval", "--project", str(tmp_path)])
    assert result.exit_code == 1 and "pass --weights PATH" in result.output

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 64)
    result = runner.invoke(app, ["eval", "--weights", str(junk), "--project", str(tmp_path)])
    assert result.exit_code == 1 and "junk.pt: not a fabricnms checkpoint" in result.output

    def eval_other() -> object:
        args = ["eval", "--weights", str(setup["weights"]), "--data", str(other)]
        return runner.invoke(app, [*args, "--project", str(tmp_path)])

    other = make_dataset(tmp_path / "other", n_train=1, n_val=1, width=64, height=64)
    other.write_text(other.read_text().replace("weft_band", "hole"))
    result = eval_other()
    assert result.exit_code == 1 and "classes" in result.output and "differ" in result.output

    (tmp_path / "other" / "annotations" / "instances_val.json").unlink()
    other.write_text(other.read_text().replace("hole", "weft_band"))
    result = eval_other()
    assert result.exit_code == 1 and "instances_val.json does not exist" in result.output

    ckpt = torch.load(setup["weights"], weights_only=True)
    ckpt["data"] = str(tmp_path / "gone" / "dataset.yaml")
    save_checkpoint(tmp_path / "nodata.pt", ckpt)
    result = runner.invoke(
        app, ["eval", "--weights", str(tmp_path / "nodata.pt"), "--project", str(tmp_path)]
    )
    assert result.exit_code == 1 and "pass --data" in result.output
    assert "Traceback" not in result.output
