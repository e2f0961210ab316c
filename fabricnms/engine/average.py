"""Weight-space average of fine-tunes of one model (a "model soup").

Two fine-tunes that start from the same checkpoint usually lie in one basin of the loss, and
their uniform average keeps much of what each learnt: the shipped model's stage 4 is the average
of two fine-tunes (``examples/default_model.sh``), an adapted model the average of its
fine-tune and its start. Every floating-point tensor of ``model_state`` is
averaged, and of ``ema_state`` when any checkpoint has one (a checkpoint without it brings the
weights inference uses, its ``model_state``); integer buffers (batch-norm counters) are taken
from the first checkpoint. The result carries no training state, operating point or
fabric statistics: calibrate it (``fabricnms calibrate``) before use.

Run: ``python -m fabricnms.engine.average A.pt B.pt [...] OUT.pt``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from fabricnms.engine.checkpoint import (
    inference_state,
    load_checkpoint,
    save_checkpoint,
    strip_training_state,
)
from fabricnms.engine.operating_point import OP_KEY
from fabricnms.engine.shift import STATS_KEY
from fabricnms.errors import FabricError


def average_checkpoints(paths: Sequence[str | Path]) -> dict[str, Any]:
    """The uniform average of ``paths`` (at least two checkpoints of one architecture and
    class set; a one-line :class:`FabricError` naming the odd one out otherwise)."""
    if len(paths) < 2:
        raise FabricError("averaging needs at least two checkpoints")
    ckpts = [load_checkpoint(p) for p in paths]
    first = ckpts[0]
    for path, ckpt in zip(paths[1:], ckpts[1:], strict=True):
        for key in ("detector_config", "class_names"):
            if ckpt[key] != first[key]:
                raise FabricError(f"{path}: its {key} differs from that of {paths[0]}")
        if ckpt["model_state"].keys() != first["model_state"].keys():
            raise FabricError(f"{path}: its model_state tensors differ from those of {paths[0]}")
    out = strip_training_state(first)
    states = {"model_state": [c["model_state"] for c in ckpts]}
    if any(c.get("ema_state") for c in ckpts):
        states["ema_state"] = [inference_state(c) for c in ckpts]
    for key, group in states.items():
        out[key] = {
            name: (
                torch.stack([g[name].float() for g in group]).mean(0).to(tensor.dtype)
                if tensor.is_floating_point()
                else tensor
            )
            for name, tensor in group[0].items()
        }
    for key in (OP_KEY, STATS_KEY):
        out.pop(key, None)
    out["averaged_from"] = [str(p) for p in paths]
    return out


def main(argv: Sequence[str]) -> int:
    """``A.pt B.pt [...] OUT.pt``: write the average atomically; 1 with a one-line error."""
    if len(argv) < 3:
        print("usage: python -m fabricnms.engine.average A.pt B.pt [...] OUT.pt", file=sys.stderr)
        return 2
    try:
        save_checkpoint(argv[-1], average_checkpoints(argv[:-1]))
    except FabricError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"averaged {len(argv) - 1} checkpoints into {argv[-1]} (calibrate it before use)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
