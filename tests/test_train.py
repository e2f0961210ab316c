"""Training runs on tiny data: outputs, plain checkpoints, exact resume, NaN stop, CLI errors."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import pytest
import torch
from helpers_engine import make_dataset
from typer.testing import CliRunner

from fabricnms.cli import app
from fabricnms.config import TrainConfig
from fabricnms.engine.checkpoint import load_checkpoint, load_detector
from fabricnms.engine.train import train
from fabricnms.errors import FabricError

runner = CliRunner()


def tiny_config(data: Path, **changes: object) -> TrainConfig:
    """4 train frames, 2 windows per step -> 2 steps per epoch, a very small model."""
    base = TrainConfig(
        data=str(data),
        epochs=2,
        batch=2,
        tile=64,
        workers=0,
        device="cpu",
        model_width="4",
        model={"embed_dim": 8},
        warmup_epochs=0.5,
        ema_decay=0.9,
    )
    return dataclasses.replace(base, **changes)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"), n_train=4, n_val=2, width=96, height=80)


@pytest.fixture(scope="module")
def full_run(data: Path, tmp_path_factory: pytest.TempPathFactory):
    project = tmp_path_factory.mktemp("runs")
    return train(tiny_config(data), project=project, name="full")


def test_run_directory_layout_and_metrics(full_run) -> None:
    run = full_run.run_dir
    assert run.name == "full" and run.parent.name == "train"
    for rel in ("weights/best.pt", "weights/last.pt", "config.yaml", "metrics.csv", "loss.png"):
        assert (run / rel).is_file(), rel
    with open(run / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"time_s", "lr", "train_loss", "val_tianchi_score", "val_AP_50_95"} <= set(rows[0])
    assert all(float(r["train_loss"]) > 0 for r in rows)
    assert (run / "metrics.png").is_file()
    assert full_run.epochs_done == 2 and not full_run.stopped_early
    scores = [float(r["val_tianchi_score"]) for r in rows]
    assert full_run.best_metric == max(scores)
    assert full_run.best_epoch == 1 + scores.index(max(scores))


def test_checkpoint_is_plain_and_rebuilds_the_detector(full_run, data: Path) -> None:
    ckpt = torch.load(full_run.last_path, map_location="cpu", weights_only=True)
    assert ckpt["format"] == "fabricnms-checkpoint" and ckpt["epoch"] == 2
    assert ckpt["class_names"] == ["knot", "warp_line", "weft_band"]
    assert ckpt["category_ids"] == [1, 2, 3]
    assert ckpt["data"] == str(data.resolve())
    assert ckpt["train_config"]["tile"] == 64 and ckpt["global_step"] == 4
    assert set(ckpt["rng"]) == {"python", "numpy", "torch", "cuda"}
    assert ckpt["optimizer_state"]["state"]
    best = torch.load(full_run.best_path, map_location="cpu", weights_only=True)
    assert "optimizer_state" not in best  # stripped for inference
    model, meta = load_detector(full_run.best_path)
    assert not model.training and meta["class_names"] == ckpt["class_names"]
    ema = best["ema_state"]
    for name, value in model.state_dict().items():
        assert torch.equal(value, ema[name])  # inference uses the EMA weights


def test_bad_checkpoints_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"definitely not a checkpoint")
    with pytest.raises(FabricError, match=r"junk\.pt: not a fabricnms checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(FabricError, match=r"other\.pt: not a fabricnms checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save({"x": torch.nn.Linear(2, 2)}, tmp_path / "pickled.pt")  # needs weights_only=False
    with pytest.raises(FabricError, match="not a fabricnms checkpoint"):
        load_checkpoint(tmp_path / "pickled.pt")
    with pytest.raises(FabricError, match="checkpoint file not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_interrupted_then_resumed_run_matches_uninterrupted(
    full_run, data: Path, tmp_path: Path
) -> None:
    def stop_after_third_step(step: int) -> None:
        if step == 3:  # in epoch 2: last.pt holds epoch 1
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(data), project=tmp_path, name="cut", on_step=stop_after_third_step)
    run = tmp_path / "train" / "cut"
    assert load_checkpoint(run / "weights" / "last.pt")["epoch"] == 1
    resumed = train(TrainConfig(device="cpu", workers=0), project=tmp_path, resume=str(run))
    assert resumed.run_dir == run and resumed.epochs_done == 2
    a = load_checkpoint(full_run.last_path)
    b = load_checkpoint(run / "weights" / "last.pt")
    for key in ("model_state", "ema_state"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name}"
    assert a["global_step"] == b["global_step"] == 4
    assert [r["train_loss"] for r in a["metrics_history"]] == [
        r["train_loss"] for r in b["metrics_history"]
    ]


def test_non_finite_loss_stops_with_message_and_keeps_last_good(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fabricnms.model.detector import Detector

    original = Detector.loss
    calls = {"n": 0}

    def loss_going_nan(self, dense, targets, progress, images=None):  # type: ignore[no-untyped-def]
        out = original(self, dense, targets, progress, images)
        calls["n"] += 1
        if calls["n"] == 3:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(Detector, "loss", loss_going_nan)
    with pytest.raises(FabricError, match=r"non-finite loss at epoch 2, step 3 .*last good"):
        train(tiny_config(data), project=tmp_path, name="nan")
    assert load_checkpoint(tmp_path / "train" / "nan" / "weights" / "last.pt")["epoch"] == 1


def test_weights_starts_a_new_run_and_checks_classes(full_run, tmp_path: Path) -> None:
    other = make_dataset(tmp_path / "other", n_train=2, n_val=0, width=96, height=80)
    text = other.read_text().replace("knot", "hole")
    other.write_text(text)
    with pytest.raises(FabricError, match=r"checkpoint classes .* differ from the dataset"):
        train(
            tiny_config(other, weights=str(full_run.best_path), epochs=1),
            project=tmp_path,
            name="ft",
        )


def test_cli_train_errors_are_one_line(tmp_path: Path, data: Path) -> None:
    result = runner.invoke(app, ["train", "--project", str(tmp_path)])
    assert result.exit_code == 1 and "pass --data" in result.output
    result = runner.invoke(app, ["train", "--data", str(data), "--set", "epoch=3"])
    assert (
        result.exit_code == 2
        and "--set: unknown key 'epoch'; did you mean 'epochs'" in result.output
    )
    result = runner.invoke(app, ["train", "--data", str(data), "--nms", "fast"])
    assert result.exit_code == 2 and "--nms 'fast': expected one of dnms" in result.output
    result = runner.invoke(app, ["train", "--resume", str(tmp_path / "none")])
    assert result.exit_code == 1 and "does not exist" in result.output
    result = runner.invoke(app, ["train", "--data", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 1 and "dataset file not found" in result.output
    assert "Traceback" not in result.output


def test_cli_train_runs_and_reports_save_dir(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "noval", n_train=3, n_val=0, width=96, height=80)
    config = tmp_path / "cfg.yaml"
    config.write_text("tile: 64\nbatch: 4\nworkers: 0\nmodel_width: '4'\nema: false\n")
    result = runner.invoke(
        app,
        [
            *("train", "--data", str(data), "--config", str(config), "--epochs", "1"),
            *("--project", str(tmp_path), "--name", "cli", "--device", "cpu", "--json"),
        ],
    )
    assert result.exit_code == 0, result.output
    run = tmp_path / "train" / "cli"
    assert f"Results saved to {run.resolve()}" in result.output
    saved = (run / "config.yaml").read_text()
    assert "batch: 4" in saved and "epochs: 1" in saved and "ema: false" in saved
    assert load_checkpoint(run / "weights" / "last.pt")["ema_state"] is None
    # without a val split the last epoch's weights are the best
    assert load_checkpoint(run / "weights" / "best.pt")["best_epoch"] == 1


def test_patience_stops_when_the_metric_stalls(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fabricnms.engine import train_epoch

    scores = iter([0.2, 0.3, 0.3, 0.25, 0.9])

    class Report:
        def flat_metrics(self) -> dict[str, float]:
            return {"val_tianchi_score": next(scores)}

    monkeypatch.setattr(train_epoch, "evaluate_frames", lambda *a, **k: Report())
    result = train(tiny_config(data, epochs=5, patience=2), project=tmp_path, name="pat")
    assert result.stopped_early and result.epochs_done == 4
    assert (result.best_epoch, result.best_metric) == (2, 0.3)
    assert load_checkpoint(result.best_path)["epoch"] == 2


def test_time_limit_stops_after_the_epoch_it_is_reached(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fabricnms.engine import train as train_module

    clock = iter(range(0, 10_000, 45))  # each reading 45 s after the last: 0.75 min per epoch

    monkeypatch.setattr(train_module.time, "perf_counter", lambda: float(next(clock)))
    result = train(tiny_config(data, epochs=6, max_minutes=1.0), project=tmp_path, name="cap")
    assert result.stopped_early and 1 <= result.epochs_done < 6
    assert load_checkpoint(result.last_path)["epoch"] == result.epochs_done


def test_cpu_threads_leave_cores_to_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    from fabricnms.engine.runtime import configure_cpu_threads

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {0, 1, 2, 3})
        assert configure_cpu_threads(0, workers=1) == 3 == torch.get_num_threads()
        assert configure_cpu_threads(0, workers=2, world_size=2) == 1
        assert configure_cpu_threads(0, workers=8) == 1
        assert configure_cpu_threads(2, workers=8) == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert configure_cpu_threads(0, workers=0) == torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
