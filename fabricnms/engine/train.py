"""The training loop: windows -> Detector.loss -> AdamW, validation through the eval path.

One call to :func:`train` runs (or resumes) a run in ``runs/train/<name>[N]/``:

- ``weights/last.pt`` at the end of every epoch and ``weights/best.pt`` when the selection
  metric (``val_tianchi_score``) improves, both atomic; ``weights/epoch<N>.pt`` every
  ``save_period`` epochs;
- ``config.yaml`` (the resolved :class:`~fabricnms.config.TrainConfig`), ``metrics.csv`` and
  ``loss.png`` / ``metrics.png``.

Resuming is exact on CPU: the window order is a function of ``(seed, epoch)``, every sample is a
function of its key, and model, EMA, optimizer, scheduler, scaler and RNG states come back from
``last.pt``; so an interrupted and resumed run ends with the same weights as an uninterrupted
one. Under ``torchrun`` the sampler shards windows over ranks, the model is wrapped in
DistributedDataParallel, and rank 0 alone validates, logs and writes.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fabricnms.config import TrainConfig, config_to_yaml
from fabricnms.engine import checkpoint as ckpt_io
from fabricnms.engine.history import plot_history, write_metrics_csv
from fabricnms.engine.optim import ModelEMA, build_optimizer, build_scheduler
from fabricnms.engine.run_lock import RunLock
from fabricnms.engine.runtime import (
    DistInfo,
    all_ranks_true,
    barrier,
    broadcast_flag,
    configure_cpu_threads,
    init_distributed,
    resolve_device,
    seed_everything,
    shutdown_distributed,
)
from fabricnms.engine.train_batch import build_loader, dense_float, targets_to, zero_touch
from fabricnms.engine.train_epoch import mean_terms, save_epoch_weights, validate
from fabricnms.engine.train_progress import epoch_line, progress_bar
from fabricnms.engine.train_start import (
    check_classes,
    load_resume_checkpoint,
    load_start_weights,
    load_train_data,
)
from fabricnms.errors import FabricError
from fabricnms.io import atomic_write_text, increment_run_dir
from fabricnms.log import get_logger

log = get_logger("train")

SELECTION_METRIC = "val_tianchi_score"


@dataclass
class TrainResult:
    """Where a run's outputs are and how it ended."""

    run_dir: Path
    best_path: Path
    last_path: Path
    epochs_done: int
    best_metric: float | None
    best_epoch: int
    stopped_early: bool
    is_main: bool


class Trainer:
    """State of one training run; :meth:`fit` runs the remaining epochs."""

    def __init__(
        self,
        cfg: TrainConfig,
        project: Path,
        name: str,
        resume: str | None = None,
        on_step: Callable[[int], None] | None = None,
        run_dir: Path | None = None,
    ) -> None:
        self.dist: DistInfo = init_distributed(cfg.device)
        resume_ckpt = None
        if resume:
            path, resume_ckpt = load_resume_checkpoint(resume, project)
            # the original settings, except where the run may now execute
            cfg = dataclasses.replace(
                TrainConfig(**resume_ckpt["train_config"]),
                device=cfg.device,
                workers=cfg.workers,
                threads=cfg.threads,
            )
            self.run_dir = Path(resume_ckpt["run_dir"])
            if not self.run_dir.is_dir():
                self.run_dir = path.parent.parent
        self.lock: RunLock | None = None
        if resume_ckpt is not None and self.dist.is_main:
            self.lock = RunLock(self.run_dir, "run folder").acquire()  # one writer per run
        self.cfg = cfg
        self.on_step = on_step
        self.device = resolve_device(cfg.device, self.dist.local_rank)
        self.amp = cfg.amp and self.device.type == "cuda"
        if self.device.type == "cpu":
            self.threads = configure_cpu_threads(cfg.threads, cfg.workers, self.dist.world_size)
        seed_everything(cfg.seed, cfg.deterministic)
        self.data = load_train_data(cfg)
        from fabricnms.model.detector import Detector

        if cfg.freeze_detector and not (cfg.masks and cfg.weights):
            raise FabricError(
                "freeze_detector trains the mask branch alone: it needs masks=true and "
                "--weights (a trained detector)"
            )
        self.model = Detector(num_classes=self.data.spec.nc, **cfg.model_kwargs()).to(self.device)
        if cfg.weights and resume_ckpt is None:
            start = ckpt_io.load_checkpoint(cfg.weights)
            check_classes(start["class_names"], self.data.spec.names, cfg.weights)
            load_start_weights(self.model, ckpt_io.inference_state(start), cfg.weights)
        if cfg.freeze_detector:
            self.model.freeze_detector()
        self.optimizer = build_optimizer(self.model, cfg.lr, cfg.weight_decay)
        self.batches = build_loader(
            cfg, self.data.train_frames, self.data.spec.nc, self.dist, self.device.type == "cuda"
        )
        self.steps_per_epoch = math.ceil(len(self.batches.sampler) / cfg.batch)
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.scheduler = build_scheduler(
            self.optimizer,
            self.total_steps,
            round(cfg.warmup_epochs * self.steps_per_epoch),
            cfg.min_lr_ratio,
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.ema = ModelEMA(self.model, cfg.ema_decay) if cfg.ema else None
        self.epoch = 0
        self.global_step = 0
        self.best_metric: float | None = None
        self.best_epoch = 0
        self.history: list[dict[str, Any]] = []
        if resume_ckpt is not None:
            self._restore(resume_ckpt)
        elif self.dist.is_main:
            self.run_dir = run_dir or increment_run_dir(project / "train", name)
            self.lock = RunLock(self.run_dir, "run folder").acquire()
        if self.dist.distributed:
            self.run_dir = Path(self._broadcast_text(str(getattr(self, "run_dir", ""))))
        self.weights_dir = self.run_dir / "weights"
        self.ddp: torch.nn.Module = self.model
        if self.dist.distributed:
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )

    def _broadcast_text(self, text: str) -> str:
        import torch.distributed as dist

        box = [text]
        dist.broadcast_object_list(box, src=0)
        return str(box[0])

    def _restore(self, ckpt: dict[str, Any]) -> None:
        check_classes(ckpt["class_names"], self.data.spec.names, str(self.cfg.data))
        self.model.load_state_dict(ckpt["model_state"])
        self.optimizer.load_state_dict(ckpt["optimizer_state"])
        self.scheduler.load_state_dict(ckpt["scheduler_state"])
        self.scaler.load_state_dict(ckpt["scaler_state"])
        if self.ema is not None and ckpt.get("ema_state"):
            self.ema.load_state_dict(ckpt["ema_state"], int(ckpt["ema_updates"]))
        self.epoch = int(ckpt["epoch"])
        self.global_step = int(ckpt["global_step"])
        self.best_metric = ckpt["best_metric"]
        self.best_epoch = int(ckpt["best_epoch"])
        self.history = list(ckpt["metrics_history"])
        ckpt_io.restore_rng(ckpt["rng"])
        log.info("resuming %s after epoch %d (step %d)", self.run_dir, self.epoch, self.global_step)

    def _checkpoint(self) -> dict[str, Any]:
        return ckpt_io.make_checkpoint(
            model_state=self.model.state_dict(),
            ema_state=None if self.ema is None else self.ema.state_dict(),
            ema_updates=0 if self.ema is None else self.ema.updates,
            optimizer_state=self.optimizer.state_dict(),
            scheduler_state=self.scheduler.state_dict(),
            scaler_state=self.scaler.state_dict(),
            epoch=self.epoch,
            global_step=self.global_step,
            best_metric=self.best_metric,
            best_metric_name=SELECTION_METRIC,
            best_epoch=self.best_epoch,
            metrics_history=self.history,
            class_names=list(self.data.spec.names),
            category_ids=list(range(1, self.data.spec.nc + 1)),
            detector_config=self.model.config,
            train_config=dataclasses.asdict(self.cfg),
            data=str(self.data.spec.yaml_path),
            run_dir=str(self.run_dir.resolve()),
            rng=ckpt_io.capture_rng(),
        )

    def fit(self) -> TrainResult:
        """Train the remaining epochs; returns where the weights are."""
        cfg = self.cfg
        if self.dist.is_main:
            atomic_write_text(self.run_dir / "config.yaml", config_to_yaml(cfg))
            log.info(
                "training on %s: %d train frames, %d val frames, %d windows/epoch, %d steps/epoch",
                f"cpu ({torch.get_num_threads()} threads)"
                if self.device.type == "cpu"
                else str(self.device),
                len(self.data.train_frames),
                len(self.data.val_frames),
                len(self.batches.sampler) * self.dist.world_size,
                self.steps_per_epoch,
            )
        stopped_early = False
        clean = False
        started = time.perf_counter()
        try:
            while self.epoch < cfg.epochs and not stopped_early:
                row = self._train_epoch()
                self.epoch += 1
                stopped_early = self._end_epoch(row)
                spent = (time.perf_counter() - started) / 60
                if cfg.max_minutes and spent >= cfg.max_minutes and self.epoch < cfg.epochs:
                    log.warning(
                        "time limit: stopping after epoch %d/%d (%.1f of max_minutes %g)",
                        self.epoch,
                        cfg.epochs,
                        spent,
                        cfg.max_minutes,
                    )
                    stopped_early = True
            clean = True
        except KeyboardInterrupt:
            if self.dist.is_main:
                self._interrupt_hint()
            raise
        finally:
            shutdown_distributed(self.dist, clean)
            if self.lock is not None:
                self.lock.release()
        return TrainResult(
            run_dir=self.run_dir,
            best_path=self.weights_dir / "best.pt",
            last_path=self.weights_dir / "last.pt",
            epochs_done=self.epoch,
            best_metric=self.best_metric,
            best_epoch=self.best_epoch,
            stopped_early=stopped_early,
            is_main=self.dist.is_main,
        )

    def _interrupt_hint(self) -> None:
        if (self.weights_dir / "last.pt").is_file():
            log.warning(
                "interrupted in epoch %d; resume with: fabricnms train --resume %s",
                self.epoch + 1,
                self.run_dir,
            )
        else:
            log.warning(
                "interrupted in epoch %d, before the first checkpoint (%s); nothing to "
                "resume: run the same command again",
                self.epoch + 1,
                self.weights_dir / "last.pt",
            )

    def _train_epoch(self) -> dict[str, Any]:
        cfg = self.cfg
        self.batches.start_epoch(cfg.seed, self.epoch)
        self.ddp.train()
        sums: dict[str, float] = {}
        steps = 0
        start = time.perf_counter()
        progress = progress_bar(self.dist.is_main)
        with progress:
            task = progress.add_task(
                f"epoch {self.epoch + 1}/{cfg.epochs}", total=len(self.batches.loader), loss=""
            )
            for images, targets in self.batches.loader:
                terms = self._step(images, targets)
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + v
                steps += 1
                progress.update(task, advance=1, loss=f"loss {sums['loss'] / steps:.4g}")
                if self.on_step is not None:
                    self.on_step(self.global_step)
        means = mean_terms(sums, steps, self.dist)
        row: dict[str, Any] = {
            "epoch": self.epoch + 1,
            "time_s": round(time.perf_counter() - start, 2),
            "lr": self.optimizer.param_groups[0]["lr"],
        }
        row.update({f"train_{k}": v for k, v in means.items()})
        return row

    def _step(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]]) -> dict:
        cfg = self.cfg
        images = images.to(self.device, non_blocking=True).float().div_(255.0)
        targets = targets_to(targets, self.device)
        progress = min(1.0, self.global_step / max(1, self.total_steps))
        with torch.autocast(self.device.type, enabled=self.amp):
            dense = self.ddp(images)
        losses = self.model.loss(
            dense_float(dense) if self.amp else dense, targets, progress, images
        )
        loss = losses["loss"]
        if self.dist.distributed:
            loss = loss + zero_touch(dense)
        if not all_ranks_true(bool(torch.isfinite(loss).item()), self.dist, self.device):
            last = self.weights_dir / "last.pt"
            kept = f"last good checkpoint: {last}" if last.exists() else "no checkpoint yet"
            terms = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in losses.items())
            raise FabricError(
                f"non-finite loss at epoch {self.epoch + 1}, step {self.global_step + 1} "
                f"({terms}); {kept}; try a lower --lr"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.global_step += 1
        return {k: float(v.detach()) for k, v in losses.items()}

    def _end_epoch(self, row: dict[str, Any]) -> bool:
        """Validate, checkpoint, log; returns True when early stopping triggers."""
        cfg = self.cfg
        stop = False
        if self.dist.is_main:
            report = None
            if self.epoch % cfg.val_interval == 0 or self.epoch == cfg.epochs:
                model = self.ema.module if self.ema is not None else self.model
                report = validate(model, self.data, cfg, self.epoch, self.device, show=True)
            improved = False
            if report is not None:
                row.update(report.flat_metrics())
                metric = float(row[SELECTION_METRIC])
                # a frozen detector's metric stays put while its mask branch (which no
                # validation can score without true masks) trains: the latest epoch is best
                improved = (
                    self.best_metric is None or metric > self.best_metric or cfg.freeze_detector
                )
                if improved:
                    self.best_metric, self.best_epoch = metric, self.epoch
            elif not self.data.val_frames:
                improved, self.best_epoch = True, self.epoch
            self.history.append(row)
            save_epoch_weights(
                self.weights_dir, self._checkpoint(), self.epoch, improved, cfg.save_period
            )
            write_metrics_csv(self.run_dir / "metrics.csv", self.history)
            plot_history(self.history, self.run_dir)
            log.info("%s", epoch_line(row, cfg.epochs, self.best_metric, self.best_epoch))
            waited = self.epoch - self.best_epoch
            if cfg.patience and self.data.val_frames and waited >= cfg.patience:
                stop = self.epoch < cfg.epochs
                if stop:
                    log.warning(
                        "early stopping: no improvement of %s for %d epochs; best epoch %d (%.4f), "
                        "weights in %s; change with --patience N (0 disables)",
                        SELECTION_METRIC,
                        waited,
                        self.best_epoch,
                        self.best_metric or 0.0,
                        self.weights_dir / "best.pt",
                    )
        stop = broadcast_flag(stop, self.dist, self.device)
        barrier(self.dist)
        return stop


def train(
    cfg: TrainConfig,
    project: str | Path = "runs",
    name: str = "train",
    resume: str | None = None,
    on_step: Callable[[int], None] | None = None,
    run_dir: Path | None = None,
) -> TrainResult:
    """Run (or resume) a training run; see the module docstring for what it writes.
    ``run_dir``: an existing folder to write the run into instead of ``project/train/name[N]``."""
    trainer = Trainer(cfg, Path(project), name, resume=resume, on_step=on_step, run_dir=run_dir)
    return trainer.fit()
