"""The end of a training epoch: its mean loss terms, validation through the eval path, and the
epoch's weight files.

Validation tiles the val frames as ``eval`` and ``predict`` do (``val_tile``, ``val_overlap``,
half the training batch per forward pass) and scores them with
:func:`~fabricnms.engine.evaluate.evaluate_frames`. Weight files: ``last.pt`` (the whole
training state) every epoch; ``best.pt`` when the selection metric improved (or none exists
yet) and ``epoch<N>.pt`` every ``save_period`` epochs, both stripped of the training state. All
writes are atomic (:func:`~fabricnms.engine.checkpoint.save_checkpoint`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fabricnms.config import TrainConfig
from fabricnms.engine import checkpoint as ckpt_io
from fabricnms.engine.evaluate import EvalReport, evaluate_frames
from fabricnms.engine.runtime import DistInfo
from fabricnms.engine.tiling import TileSettings
from fabricnms.engine.train_progress import progress_bar
from fabricnms.engine.train_start import TrainData


def mean_terms(sums: dict[str, float], steps: int, dist: DistInfo) -> dict[str, float]:
    """Per-step means of the loss terms summed over ``steps``, over all ranks when distributed;
    the total (``loss``) first, then by name."""
    keys = sorted(sums, key=lambda k: (k != "loss", k))
    values = torch.tensor([sums[k] for k in keys] + [float(steps)], dtype=torch.float64)
    if dist.distributed:
        import torch.distributed as torch_dist

        torch_dist.all_reduce(values)
    count = max(1.0, float(values[-1]))
    return {k: float(v) / count for k, v in zip(keys, values[:-1].tolist(), strict=True)}


def validate(
    model: torch.nn.Module,
    data: TrainData,
    cfg: TrainConfig,
    epoch: int,
    device: torch.device,
    show: bool,
) -> EvalReport | None:
    """Score ``model`` (put in eval mode) on ``data``'s val frames after ``epoch``, with a
    progress bar when ``show``; ``None`` without val frames."""
    if not data.val_frames or data.val_coco is None:
        return None
    model.eval()
    settings = TileSettings(
        tile=cfg.val_tile,
        overlap=cfg.val_overlap,
        batch=max(1, cfg.batch // 2),
        nms=cfg.nms,
        conf=cfg.val_conf,
        max_det=cfg.max_det,
    )
    with progress_bar(show) as progress:
        task = progress.add_task(f"val {epoch}/{cfg.epochs}", total=len(data.val_frames), loss="")
        return evaluate_frames(
            model,
            data.val_frames,
            data.val_coco,
            data.spec.names,
            settings,
            acc_conf=cfg.acc_conf,
            device=device,
            on_frame=lambda _i: progress.advance(task),
        )


def save_epoch_weights(
    weights_dir: Path, ckpt: dict[str, Any], epoch: int, improved: bool, save_period: int
) -> None:
    """``last.pt``, and ``best.pt`` / ``epoch<N>.pt`` when due (module docstring)."""
    ckpt_io.save_checkpoint(weights_dir / "last.pt", ckpt)
    if improved or not (weights_dir / "best.pt").exists():
        ckpt_io.save_checkpoint(weights_dir / "best.pt", ckpt_io.strip_training_state(ckpt))
    if save_period and epoch % save_period == 0:
        ckpt_io.save_checkpoint(
            weights_dir / f"epoch{epoch}.pt", ckpt_io.strip_training_state(ckpt)
        )
