"""A batch's way through a training run: the loader that makes the batches (repeat factors ->
:class:`~fabricnms.engine.sampler.EpochSampler` -> :class:`~fabricnms.data.dataset.TrainWindows`
-> DataLoader) and the tensor plumbing of one step (targets to the device, float32 outputs for
the loss under AMP, DDP's zero touch of every output).

Batches: images ``[B, 3, tile, tile]`` uint8, targets one dict per window (``boxes`` ``[M, 4]``
xyxy window pixels, ``labels`` ``[M]`` 0-based, ...), as :func:`~fabricnms.data.dataset.
collate_windows` makes them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from fabricnms.config import TrainConfig
from fabricnms.data.dataset import (
    FrameRecord,
    TrainWindows,
    WindowParams,
    build_augment,
    class_repeat_factors,
    collate_windows,
    frame_repeat_factors,
)
from fabricnms.engine.runtime import DistInfo
from fabricnms.engine.sampler import EpochSampler


@dataclass
class TrainLoader:
    """The epoch sampler, the DataLoader over its windows and the generator behind the loader's
    per-epoch random state."""

    sampler: EpochSampler
    loader: torch.utils.data.DataLoader
    generator: torch.Generator

    def start_epoch(self, seed: int, epoch: int) -> None:
        """Set the window order and the loader's random state of ``epoch`` (a function of
        ``(seed, epoch)``, so a resumed run sees the same batches)."""
        self.sampler.set_epoch(epoch)
        self.generator.manual_seed(seed * 100003 + epoch)


def build_loader(
    cfg: TrainConfig,
    frames: Sequence[FrameRecord],
    num_classes: int,
    dist: DistInfo,
    pin_memory: bool,
) -> TrainLoader:
    """Batches of ``cfg.batch`` windows of ``frames`` (repeat-factor sampling, this rank's
    shard)."""
    class_factors = class_repeat_factors(frames, num_classes, cfg.repeat_threshold)
    sampler = EpochSampler(
        frame_repeat_factors(frames, class_factors), cfg.seed, dist.rank, dist.world_size
    )
    params = WindowParams(
        tile=cfg.tile,
        random_window_prob=cfg.random_window_prob,
        scale_jitter=cfg.scale_jitter,
        min_visible_px=cfg.min_visible_px,
        min_visible_frac=cfg.min_visible_frac,
        min_thickness=cfg.min_thickness,
    )
    dataset = TrainWindows(frames, params, build_augment(cfg), class_factors=class_factors)
    generator = torch.Generator()
    loader = torch.utils.data.DataLoader(
        dataset,  # type: ignore[arg-type]
        batch_size=cfg.batch,
        sampler=sampler,  # type: ignore[arg-type]
        num_workers=cfg.workers,
        collate_fn=collate_windows,
        pin_memory=pin_memory,
        generator=generator,
        worker_init_fn=_single_threaded_worker,
        persistent_workers=cfg.workers > 0,
    )
    return TrainLoader(sampler, loader, generator)


def _single_threaded_worker(_worker_id: int) -> None:
    """Data workers decode with one OpenCV thread: N workers x cv2 threads would oversubscribe
    the cores the training step needs. Samples are seeded by their keys, not by the worker."""
    import cv2

    cv2.setNumThreads(1)


def targets_to(targets: list[dict[str, torch.Tensor]], device: torch.device) -> list[dict]:
    """The batch's target dicts on ``device``."""
    return [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]


def zero_touch(dense: Any) -> torch.Tensor:
    """0 x every differentiable output: each parameter gets a (zero) gradient on every rank.

    The loss skips some outputs for some batches (no defect in a window -> no embedding term);
    DistributedDataParallel would then wait forever for those parameters' gradients.
    """
    total = torch.zeros((), device=dense.boxes.device)
    for f in dataclasses.fields(dense):
        value = getattr(dense, f.name)
        if isinstance(value, torch.Tensor) and value.requires_grad:
            total = total + value.float().sum() * 0.0
    return total


def dense_float(dense: Any) -> Any:
    """A DenseOutput with float32 tensors (the loss runs outside autocast)."""
    return dataclasses.replace(
        dense,
        **{
            f.name: getattr(dense, f.name).float()
            for f in dataclasses.fields(dense)
            if isinstance(getattr(dense, f.name), torch.Tensor)
            and getattr(dense, f.name).is_floating_point()
        },
    )
