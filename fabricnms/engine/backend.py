"""The network ``predict`` and ``eval`` run: a checkpoint as a folded torch copy, or an
exported ONNX graph run with onnxruntime; and how many CPU threads it gets.

Both kinds map a ``[B, 3, H, W]`` float RGB [0, 1] batch to a
:class:`~fabricnms.model.types.DenseOutput` (boxes xyxy pixels of the input), so tiling, DNMS,
masks and the writers do not know which one runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fabricnms.engine.runtime import configure_cpu_threads, usable_cores
from fabricnms.log import get_logger

log = get_logger("backend")

#: Suffix of an exported graph (its metadata lies beside it, see :mod:`fabricnms.engine.export`).
ONNX_SUFFIX = ".onnx"


def load_inference_model(
    weights: str | Path, device: torch.device, masks: bool, threads: int = 1
) -> tuple[nn.Module, dict[str, Any]]:
    """``(model, meta)`` for ``weights``: a ``.onnx`` export through onnxruntime (CPU, with
    ``threads`` intra-op threads), else a checkpoint's
    :func:`~fabricnms.model.fuse.inference_copy` (mask branch kept only with ``masks``).

    ``meta`` carries at least ``class_names``; one-line :class:`FabricError` for a missing or
    foreign file, and for ``masks`` with a network that has no mask branch.
    """
    weights = Path(weights)
    if weights.suffix.lower() == ONNX_SUFFIX:
        from fabricnms.engine.onnx_backend import load_onnx

        return load_onnx(weights, device, masks, threads)
    from fabricnms.engine.checkpoint import load_detector
    from fabricnms.model.fuse import inference_copy
    from fabricnms.model.mask_infer import require_mask_branch

    model, meta = load_detector(weights, device)
    if masks:
        require_mask_branch(model, str(weights))
    return inference_copy(model, masks), meta


def inference_threads(requested: int = 0) -> int:
    """Set and return torch's intra-op CPU threads for inference.

    ``requested > 0`` is taken as is, and so is an explicit ``OMP_NUM_THREADS``; otherwise the
    usable cores that the 1-minute load average leaves idle (at least 1): OpenMP threads wait
    for their slowest sibling, so on cores other jobs keep busy one thread beats two that are
    descheduled in turn.
    """
    if requested <= 0 and not os.environ.get("OMP_NUM_THREADS"):
        cores = usable_cores()
        busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        requested = max(1, min(cores, round(cores - busy)))
        if requested < cores:
            log.debug("load %.1f on %d cores: %d inference thread(s)", busy, cores, requested)
    return configure_cpu_threads(requested, workers=0)
