"""``fabricnms train``: train the detector end to end (differentiable NMS inside the loss).

Settings come from the defaults, then ``--config FILE.yaml``, then ``--set KEY=VALUE``, then the
named flags (a flag given wins over ``--set`` of its key). Every option left out keeps the value
from ``--set``, the file or the default shown in brackets. A bad ``--set`` or flag value is a
usage error (exit 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from fabricnms.config import MODEL_WIDTHS, NMS_METHODS, TrainConfig

_D = TrainConfig()
_RUN = "Run"
_DATA = "Data and sampling"
_OPT = "Optimisation"
_VAL = "Validation"


def _help(text: str, key: str) -> str:
    return f"{text} \\[default: {getattr(_D, key)}]"  # escaped: rich would eat [default]


def train(
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", help="dataset.yaml written by fabricnms convert.", rich_help_panel=_RUN
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="YAML file of training settings.", rich_help_panel=_RUN),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="Override any config key (repeatable), e.g. --set scale_jitter=0.1.",
            rich_help_panel=_RUN,
        ),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help=_help("Epochs.", "epochs"), rich_help_panel=_OPT)
    ] = None,
    batch: Annotated[
        int | None,
        typer.Option(help=_help("Windows per batch (per process).", "batch"), rich_help_panel=_OPT),
    ] = None,
    tile: Annotated[
        int | None,
        typer.Option(
            help=_help("Training window size in frame pixels.", "tile"), rich_help_panel=_DATA
        ),
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(help=_help("Peak AdamW learning rate.", "lr"), rich_help_panel=_OPT),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(help=_help("auto, cpu, cuda or cuda:N.", "device"), rich_help_panel=_RUN),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help=_help("Data-loading worker processes.", "workers"), rich_help_panel=_RUN),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help=_help("Random seed.", "seed"), rich_help_panel=_RUN)
    ] = None,
    name: Annotated[
        str, typer.Option(help="Run name: runs/train/NAME, NAME2, ...", rich_help_panel=_RUN)
    ] = "train",
    project: Annotated[
        Path, typer.Option(help="Root folder of all runs.", rich_help_panel=_RUN)
    ] = Path("runs"),
    patience: Annotated[
        int | None,
        typer.Option(
            help=_help("Epochs without improvement before stopping (0 disables).", "patience"),
            rich_help_panel=_OPT,
        ),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            help="Continue an interrupted run exactly: 'latest', a run directory or its last.pt "
            "(same run directory, original settings).",
            rich_help_panel=_RUN,
        ),
    ] = None,
    weights: Annotated[
        Path | None,
        typer.Option(
            help="Start from these weights with a fresh schedule in a new run directory.",
            rich_help_panel=_RUN,
        ),
    ] = None,
    nms: Annotated[
        str | None,
        typer.Option(
            help=_help(f"Postprocess for validation: {', '.join(NMS_METHODS)}.", "nms"),
            rich_help_panel=_VAL,
        ),
    ] = None,
    detach_plan: Annotated[
        bool | None,
        typer.Option(
            "--detach-plan/--no-detach-plan",
            help=_help("Stop gradients through the Sinkhorn plan (ablation).", "detach_plan"),
            rich_help_panel=_OPT,
        ),
    ] = None,
    model_width: Annotated[
        str | None,
        typer.Option(
            help=_help(
                f"Model size: {', '.join(MODEL_WIDTHS)} or a backbone width.", "model_width"
            ),
            rich_help_panel=_OPT,
        ),
    ] = None,
    ema: Annotated[
        bool | None,
        typer.Option(
            "--ema/--no-ema", help=_help("Keep an EMA of the weights.", "ema"), rich_help_panel=_OPT
        ),
    ] = None,
    amp: Annotated[
        bool | None,
        typer.Option(
            "--amp/--no-amp", help=_help("Mixed precision on CUDA.", "amp"), rich_help_panel=_OPT
        ),
    ] = None,
    repeat_threshold: Annotated[
        float | None,
        typer.Option(
            help=_help(
                "Class-balanced repeat-factor sampling threshold (0 off; e.g. 0.3).",
                "repeat_threshold",
            ),
            rich_help_panel=_DATA,
        ),
    ] = None,
    val_max_frames: Annotated[
        int | None,
        typer.Option(
            help=_help("Validate on at most this many val frames (0: all).", "val_max_frames"),
            rich_help_panel=_VAL,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the run summary as JSON on stdout.")
    ] = False,
) -> None:
    """Train the detector on a converted dataset; writes runs/train/NAME/."""
    from fabricnms.config import load_config
    from fabricnms.engine.train import train as run_training
    from fabricnms.errors import UsageError
    from fabricnms.log import console, print_json

    if resume and weights is not None:
        raise UsageError(
            "--resume continues a run from its own last.pt; --weights starts a new run from a "
            "checkpoint: pass one of them"
        )
    overrides: dict[str, Any] = {
        "data": None if data is None else str(data.expanduser().resolve()),
        "weights": None if weights is None else str(weights),
        "epochs": epochs,
        "batch": batch,
        "tile": tile,
        "lr": lr,
        "device": device,
        "workers": workers,
        "seed": seed,
        "patience": patience,
        "nms": nms,
        "detach_plan": detach_plan,
        "model_width": model_width,
        "ema": ema,
        "amp": amp,
        "repeat_threshold": repeat_threshold,
        "val_max_frames": val_max_frames,
    }
    cfg = load_config(TrainConfig, config, overrides, set_ or [])
    if resume:
        from fabricnms.engine.train_start import check_resumable

        check_resumable(resume, project)
    result = run_training(cfg, project=project, name=name, resume=resume)
    if not result.is_main:
        return
    summary = {
        "run_dir": str(result.run_dir.resolve()),
        "best": str(result.best_path.resolve()),
        "last": str(result.last_path.resolve()),
        "epochs": result.epochs_done,
        "best_epoch": result.best_epoch,
        "best_metric": result.best_metric,
        "stopped_early": result.stopped_early,
    }
    if as_json:
        print_json(summary)
    if result.best_metric is not None:
        console.print(
            f"best val_tianchi_score {result.best_metric:.4f} at epoch {result.best_epoch}",
            markup=False,
        )
    console.print(f"Results saved to {result.run_dir.resolve()}", markup=False, soft_wrap=True)
