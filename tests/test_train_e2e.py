"""synth -> convert -> train -> eval through the CLI, on a few small synthetic frames."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from fabricnms.cli import app

runner = CliRunner()


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_synth_convert_train_eval(tmp_path: Path) -> None:
    synth, coco, runs = tmp_path / "synth", tmp_path / "coco", tmp_path / "runs"
    _ok(["synth", str(synth), "--images", "8", "--size", "320x160", "--difficulty", "easy"])
    _ok(["convert", str(synth), str(coco), "--val-fraction", "0.3"])
    train = json.loads(
        _ok(
            [
                *("train", "--data", str(coco / "dataset.yaml"), "--epochs", "2", "--batch", "2"),
                *("--tile", "128", "--workers", "0", "--model-width", "4", "--device", "cpu"),
                *("--set", "val_tile=256", "--project", str(runs), "--json"),
            ]
        )
    )
    assert Path(train["best"]).is_file() and train["epochs"] == 2
    # eval reads the dataset stored in the checkpoint
    args = ["eval", "--weights", train["best"], "--project", str(runs), "--tile", "256", "--json"]
    report = json.loads(_ok(args))
    assert report["weights"] == train["best"]
    assert report["data"] == str((coco / "dataset.yaml").resolve())
    val = json.loads((coco / "annotations" / "instances_val.json").read_text())
    assert report["frames"] == len(val["images"])
    assert 0.0 <= report["tianchi"]["score"] <= 1.0
    assert len(report["coco"]) == 12 and len(report["per_class"]) == 20
