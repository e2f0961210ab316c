"""``fabricnms adapt`` as a function: learn a new fabric from its clean frames.

Steps, into ``runs/adapt/<name>[N]/``:

1. read the clean frames (:mod:`fabricnms.engine.adapt_sources`: up to ten frame-areas of
   them; unreadable ones and ones too small for a window are reported and skipped) and check them
   and the start weights *before* anything is written (no usable frame, or weights of another
   class set: one-line :class:`FabricError`);
2. build ``data/`` (:mod:`fabricnms.engine.adapt_data`): windows of the frames' training
   parts, most with defects rendered into the real fabric, plus validation windows of the
   held-out parts;
3. fine-tune from the start weights with the training engine (:func:`fabricnms.engine.train.
   train`: same checkpoints, progress, ``metrics.csv``, ``config.yaml``; resumable) for a
   number of epochs sized to the time budget, stopped by ``max_minutes`` at the latest;
4. average the best epoch with the start weights (:mod:`fabricnms.engine.average`: alone, the
   fine-tune forgets real defects the start model found) into ``weights/adapted.pt``, calibrated
   (:mod:`fabricnms.engine.calibrate`): fabric statistics from the training parts and the first
   :data:`FIT_WINDOWS` windows, the operating point (lowest threshold with at most
   ``false_alarms`` per 2446x1000 px) and the shift limit from the held-out parts, which
   training never saw, and the self-check (:mod:`fabricnms.engine.adapt_check`: the share of
   defects painted into the held-out parts found at that point); ``adapt.json`` records the run.

``resume`` continues the newest ``runs/adapt/<name>*`` run: the data is rebuilt only when
incomplete (it is deterministic), training resumes from ``weights/last.pt``, calibration is redone.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fabricnms.engine.adapt_data import cut_windows, usable_frames, write_dataset
from fabricnms.engine.adapt_sources import read_clean_frames
from fabricnms.errors import FabricError
from fabricnms.log import get_logger

log = get_logger("adapt")

#: Windows per second the epoch count is sized with: cautious (an idle 2-core machine trains ~14
#: of 512 px), so adapt ends well inside its budget on purpose (25-82 epochs did worse on real
#: fabric).
WINDOWS_PER_SECOND = 3.0
#: Minutes kept for building the data and calibrating.
OVERHEAD_MINUTES = 1.5
ADAPT_JSON = "adapt.json"
ADAPTED = "adapted.pt"
#: Training windows (the first ones) whose tiles join the training parts' in the statistics.
FIT_WINDOWS = 64


@dataclass
class AdaptConfig:
    """Settings of ``fabricnms adapt`` (saved in ``adapt.json``)."""

    sources: list[str] = field(default_factory=list)
    weights: str = ""
    minutes: float = 10.0
    false_alarms: float = 0.1
    window: int = 512
    train_windows: int = 240
    val_windows: int = 24
    lr: float = 1e-3
    batch: int = 8
    epochs: int = 0  # 0: as many as the time budget allows
    seed: int = 0
    device: str = "cpu"
    recursive: bool = False


@dataclass
class AdaptResult:
    """Where the adapted weights are and what was calibrated."""

    run_dir: Path
    weights: Path
    summary: dict[str, Any]


def _start_checkpoint(weights: str) -> tuple[Path, dict[str, Any]]:
    """The start checkpoint (default: the shipped model); it must know the 20 categories."""
    from fabricnms.data.classes import CATEGORIES
    from fabricnms.engine.checkpoint import load_checkpoint
    from fabricnms.engine.predict import resolve_weights

    path = resolve_weights(weights)
    ckpt = load_checkpoint(path)
    names = [c.name for c in CATEGORIES]
    if list(ckpt["class_names"]) != names:
        have = ", ".join(ckpt["class_names"][:3])
        raise FabricError(
            f"{path}: the checkpoint detects {len(ckpt['class_names'])} classes ({have}, ...), "
            f"not the 20 categories adapt renders ({', '.join(names[:3])}, ...)"
        )
    return path, ckpt


def _latest_run(project: Path, name: str) -> Path:
    runs = sorted(project.glob(f"adapt/{name}*/{ADAPT_JSON}"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise FabricError(f"--resume: no {project / 'adapt' / name}* run to continue")
    return runs[-1].parent


def _train_config(
    cfg: AdaptConfig, data: Path, start: Path, ckpt: dict, epochs: int, minutes: float
):
    from fabricnms.config import TrainConfig

    arch = {k: v for k, v in ckpt["detector_config"].items() if k != "num_classes"}
    return TrainConfig(
        data=str(data),
        weights=str(start),
        epochs=epochs,
        batch=cfg.batch,
        tile=cfg.window,
        lr=cfg.lr,
        warmup_epochs=0.3,
        device=cfg.device,
        workers=0,  # a forked loader worker can deadlock on the locks the data step left
        seed=cfg.seed,
        patience=0,
        model_width=str(ckpt.get("train_config", {}).get("model_width", "n")),
        model=arch,
        repeat_threshold=0.0,
        random_window_prob=0.0,
        val_interval=1,
        val_tile=1024,
        max_minutes=round(minutes, 2),
    )


def run_adapt(
    cfg: AdaptConfig, project: str | Path = "runs", name: str = "adapt", resume: bool = False
) -> AdaptResult:
    """Adapt ``cfg.weights`` to the fabric of ``cfg.sources`` (module docstring)."""
    from fabricnms.engine.adapt_check import CHECK_SEED_OFFSET, CHECK_WINDOWS, painted_recall
    from fabricnms.engine.average import average_checkpoints
    from fabricnms.engine.calibrate import LabelledImage, calibrate_model, write_calibration
    from fabricnms.engine.checkpoint import load_detector, save_checkpoint
    from fabricnms.engine.train import train
    from fabricnms.io import atomic_write_json, increment_run_dir

    started = time.perf_counter()
    project = Path(project)
    frames = read_clean_frames(cfg.sources, cfg.recursive)
    start, ckpt = _start_checkpoint(cfg.weights)
    frames, size = usable_frames(frames, cfg.window)
    cfg = dataclasses.replace(cfg, window=size, weights=str(start.resolve()))
    run_dir = _latest_run(project, name) if resume else increment_run_dir(project / "adapt", name)
    atomic_write_json(run_dir / ADAPT_JSON, {"config": dataclasses.asdict(cfg), "done": False})
    data_yaml = run_dir / "data" / "dataset.yaml"
    train_parts, held_parts = ([f.parts()[i] for f in frames] for i in (0, 1))
    if not data_yaml.is_file():
        log.info("rendering %d + %d windows of %d px", cfg.train_windows, cfg.val_windows, size)
        train_windows = cut_windows(train_parts, cfg.train_windows, size, cfg.seed)
        val_windows = cut_windows(held_parts, cfg.val_windows, size, cfg.seed + 1)
        write_dataset(run_dir / "data", train_windows, val_windows)
    else:  # the same seed cuts the same first windows
        train_windows = cut_windows(
            train_parts, min(FIT_WINDOWS, cfg.train_windows), size, cfg.seed
        )
    budget = max(cfg.minutes - (time.perf_counter() - started) / 60 - OVERHEAD_MINUTES, 0.5)
    epochs = cfg.epochs or max(2, int(budget * 60 * WINDOWS_PER_SECOND / cfg.train_windows))
    last = run_dir / "weights" / "last.pt"
    result = train(
        _train_config(cfg, data_yaml, start, ckpt, epochs, budget),
        project=project,
        name=name,
        resume=str(last) if resume and last.is_file() else None,
        run_dir=run_dir,
    )
    adapted = run_dir / "weights" / ADAPTED
    save_checkpoint(adapted, average_checkpoints([result.best_path, start]))
    model, meta = load_detector(adapted, cfg.device)
    fit = [*train_parts, *(w.image for w in train_windows[:FIT_WINDOWS])]
    held = [
        LabelledImage(p, np.zeros((0, 4), np.float32), np.zeros(0, np.int64)) for p in held_parts
    ]
    source = f"{len(frames)} clean frame(s) of {Path(frames[0].path).parent.name}, held-out parts"
    point, stats = calibrate_model(
        model, list(meta["class_names"]), fit, held, source, cfg.false_alarms, device=cfg.device
    )
    check = cut_windows(held_parts, CHECK_WINDOWS, size, cfg.seed + CHECK_SEED_OFFSET)
    recall, painted = painted_recall(model, meta["class_names"], point, check, cfg.device)
    point = dataclasses.replace(point, painted_recall=recall, painted_defects=painted)
    write_calibration(adapted, point, stats)
    summary = {
        "config": dataclasses.asdict(cfg),
        "done": True,
        "run_dir": str(run_dir.resolve()),
        "weights": str(adapted.resolve()),
        "frames": [str(f.path) for f in frames],
        "frame_sizes": [[f.image.shape[1], f.image.shape[0]] for f in frames],  # [W, H] px
        "window": size,
        "epochs": result.epochs_done,
        "operating_point": point.to_dict(),
        "shift_limit": stats.limit,
        "minutes": round((time.perf_counter() - started) / 60, 2),
    }
    atomic_write_json(run_dir / ADAPT_JSON, summary)
    return AdaptResult(run_dir=run_dir, weights=adapted, summary=summary)
