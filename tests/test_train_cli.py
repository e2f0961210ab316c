"""``train``'s settings and start: --set kept next to flags, usage errors, what --resume picks."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from fabricnms.cli import app
from fabricnms.config import TrainConfig
from fabricnms.engine import train as train_engine
from fabricnms.engine.checkpoint import make_checkpoint, save_checkpoint
from fabricnms.engine.run_lock import RunLock
from fabricnms.engine.train_start import check_resumable, find_resume_checkpoint
from fabricnms.errors import FabricError

runner = CliRunner()


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[TrainConfig]:
    """Replace the training run by recording its resolved config (the CLI's job ends there)."""
    seen: list[TrainConfig] = []

    def fake_train(cfg: TrainConfig, **_: object) -> object:
        seen.append(cfg)
        raise FabricError("stop here")

    monkeypatch.setattr(train_engine, "train", fake_train)
    return seen


def test_set_keys_that_also_have_flags_are_kept(
    tmp_path: Path, captured: list[TrainConfig]
) -> None:
    sets = ["epochs=2", "tile=256", "model_width=n", "val_max_frames=10", "lr=0.001", "ema=false"]
    args = ["train", "--data", str(tmp_path)]
    for item in sets:
        args += ["--set", item]
    runner.invoke(app, args)
    (cfg,) = captured
    assert (cfg.epochs, cfg.tile, cfg.model_width, cfg.val_max_frames) == (2, 256, "n", 10)
    assert (cfg.lr, cfg.ema) == (0.001, False)
    runner.invoke(app, ["train", "--data", str(tmp_path), "--set", "epochs=2", "--epochs", "5"])
    assert captured[1].epochs == 5  # a flag given wins over --set of its key


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "lr=abc"], "error: --set lr: expected a number, got 'abc'"),
        (["--set", "tile=10"], "error: --set tile 10: out of range [64, 8192]"),
        (["--set", "epochs"], "error: --set 'epochs': expected KEY=VALUE"),
        (
            ["--nms", "bogus"],
            "error: --nms 'bogus': expected one of dnms, greedy, soft, none, greedy+merge, "
            "soft+merge, dnms-no-merge",
        ),
        (["--device", "tpu"], "error: --device 'tpu': expected auto, cpu, cuda or cuda:N"),
        (
            ["--resume", "latest", "--weights", "x.pt"],
            "error: --resume continues a run from its own last.pt; --weights starts a new run "
            "from a checkpoint: pass one of them",
        ),
    ],
)
def test_bad_options_are_usage_errors(
    tmp_path: Path, captured: list[TrainConfig], args: list[str], message: str
) -> None:
    r = runner.invoke(app, ["train", "--data", str(tmp_path), *args])
    assert r.exit_code == 2 and r.stderr.strip() == message
    assert captured == []


def _last_pt(path: Path, epoch: int, epochs: int) -> Path:
    save_checkpoint(
        path,
        make_checkpoint(
            model_state={"w": torch.zeros(1)},
            detector_config={"num_classes": 1},
            class_names=["hole"],
            optimizer_state={},
            train_config={"epochs": epochs},
            epoch=epoch,
            run_dir=str(path.parent.parent),
        ),
    )
    return path


def test_resume_latest_is_the_newest_run_not_the_newest_last_pt(tmp_path: Path) -> None:
    done = tmp_path / "train" / "done"
    (done / "weights").mkdir(parents=True)
    _last_pt(done / "weights" / "last.pt", 3, 3)
    killed = tmp_path / "train" / "killed"
    killed.mkdir()
    (killed / "config.yaml").write_text("epochs: 3\n")
    os.utime(done, (1_000_000, 1_000_000))  # killed is the newer run
    with pytest.raises(FabricError, match=r"newest run .*killed has no weights/last\.pt"):
        find_resume_checkpoint("latest", tmp_path)
    os.utime(killed, (1_000, 1_000))
    assert find_resume_checkpoint("latest", tmp_path) == done / "weights" / "last.pt"


def test_resuming_a_finished_run_is_refused(tmp_path: Path) -> None:
    path = _last_pt(tmp_path / "last.pt", 3, 3)
    with pytest.raises(FabricError, match="has finished all 3 epochs; nothing to resume"):
        check_resumable(str(path), tmp_path)
    check_resumable(str(_last_pt(tmp_path / "half.pt", 1, 3)), tmp_path)  # half done: fine


def test_resume_of_a_running_run_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "train" / "busy"
    (run / "weights").mkdir(parents=True)
    _last_pt(run / "weights" / "last.pt", 1, 3)
    with RunLock(run, "run folder"):
        r = runner.invoke(app, ["train", "--resume", str(run), "--project", str(tmp_path)])
    assert r.exit_code == 1 and "in use by another fabricnms run" in r.stderr


def test_epoch_bar_fits_100_columns() -> None:
    from rich.console import Console

    from fabricnms.engine.train_progress import progress_bar

    out = Console(width=100, record=True, force_terminal=True, color_system=None)
    with progress_bar(True, out) as progress:
        task = progress.add_task("epoch 12/30", total=400, loss="")
        progress.update(task, advance=120, loss="loss 12.34")
    text = out.export_text()
    assert "epoch 12/30" in text and "loss 12.34" in text and "120/400" in text


def test_epoch_line_is_short() -> None:
    from fabricnms.engine.train_progress import epoch_line

    row = {"epoch": 3, "time_s": 61.7, "lr": 0.001, "train_loss": 1.2345, "train_cls": 0.5}
    row.update(val_tianchi_score=0.4567, val_AP_50_95=0.12, val_AP_50=0.31, val_acc=0.9)
    assert epoch_line(row, 30, 0.47, 2) == (
        "epoch 3/30: loss 1.234, val score 0.457 (AP 0.120, AP50 0.310), best 0.470 at "
        "epoch 2, 62 s"
    )


def test_interrupt_before_the_first_checkpoint_does_not_suggest_resume(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from helpers_engine import make_dataset

    monkeypatch.setattr(logging.getLogger("fabricnms"), "propagate", True)

    data = make_dataset(tmp_path / "data", n_train=2, n_val=0, width=96, height=80)
    cfg = TrainConfig(
        data=str(data), epochs=1, batch=2, tile=64, workers=0, device="cpu", model_width="4"
    )

    def stop(_step: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_engine.train(cfg, project=tmp_path, name="cut", on_step=stop)
    assert "before the first checkpoint" in caplog.text and "--resume" not in caplog.text
    assert not (tmp_path / "train" / "cut" / ".fabricnms.lock").exists()  # released
