"""Process-level setup: device choice, seeding and determinism, torch.distributed.

Under ``torchrun`` (``WORLD_SIZE > 1`` in the environment) :func:`init_distributed` joins the
process group (gloo on CPU, NCCL on CUDA); rank 0 alone logs and writes files.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch

from fabricnms.errors import FabricError, UsageError


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (``world_size == 1`` when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on the process that logs and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` -> the GPU of this rank; ``cuda:N``
    -> GPU ``N``. A CUDA device this machine lacks is a one-line error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    kind, _, index = name.partition(":")
    if kind != "cuda" or not (index == "" or index.isdigit()):
        raise UsageError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise FabricError(f"--device {name}: no CUDA device is available (use --device cpu)")
    if index == "":
        return torch.device("cuda", local_rank % count)
    if int(index) >= count:
        raise FabricError(
            f"--device {name}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
        )
    return torch.device("cuda", int(index))


def configure_cpu_threads(requested: int, workers: int, world_size: int = 1) -> int:
    """Set torch's intra-op CPU threads; returns the number used.

    ``requested > 0`` is taken as is. ``0`` (auto) keeps an explicit ``OMP_NUM_THREADS`` (torchrun
    sets it) and otherwise uses the cores of this process's share that the data workers leave
    free: on a 2-core machine with one worker that is one thread, which measured 4x faster per
    step than two threads fighting the worker for the cores (spinning OpenMP threads).
    """
    if requested > 0:
        threads = requested
    elif os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    else:
        threads = max(1, usable_cores() // max(1, world_size) - workers)
    torch.set_num_threads(threads)
    return threads


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cores or 1


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed python, NumPy and torch; optionally request deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def init_distributed(device_name: str) -> DistInfo:
    """Join the process group when launched by torchrun; a no-op for a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name.startswith("cuda") or (
        device_name == "auto" and torch.cuda.is_available()
    )
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank)


def shutdown_distributed(info: DistInfo, clean: bool = True) -> None:
    """Leave the process group: after a barrier when every rank finished (``clean``); at once
    after an error, so the failing rank exits and torchrun stops the others instead of this
    rank waiting forever for peers that wait for it."""
    if info.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            if clean:
                dist.barrier()
            dist.destroy_process_group()


def broadcast_flag(value: bool, info: DistInfo, device: torch.device) -> bool:
    """Rank 0's ``value`` on every rank."""
    if not info.distributed:
        return value
    import torch.distributed as dist

    flag = torch.tensor([1 if value else 0], device=device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def all_ranks_true(value: bool, info: DistInfo, device: torch.device) -> bool:
    """True when ``value`` holds on every rank (min-reduction)."""
    if not info.distributed:
        return value
    import torch.distributed as dist

    flag = torch.tensor([1 if value else 0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def barrier(info: DistInfo) -> None:
    """Wait for every rank."""
    if info.distributed:
        import torch.distributed as dist

        dist.barrier()
