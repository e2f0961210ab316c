"""Checkpoints: a dict of plain tensors and plain values, loadable with ``weights_only=True``.

Keys (``format`` = ``"fabricnms-checkpoint"``, ``format_version`` = 1): ``model_state``,
``ema_state`` (or ``None``), ``optimizer_state``, ``scheduler_state``, ``scaler_state``,
``epoch`` (epochs completed), ``global_step``, ``best_metric``, ``best_metric_name``,
``best_epoch``, ``metrics_history`` (list of per-epoch dicts), ``class_names``,
``category_ids`` (1-based), ``detector_config`` (``Detector(**detector_config)`` rebuilds the
network), ``train_config`` (the resolved :class:`~fabricnms.config.TrainConfig` as a dict),
``data`` (dataset.yaml path as str), ``run_dir``, ``rng`` (python, numpy, torch, cuda states),
``fabricnms_version``, ``torch_version``, ``created_at``.
"""

from __future__ import annotations

import datetime as _dt
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fabricnms import __version__
from fabricnms.errors import FabricError
from fabricnms.io import atomic_torch_save

FORMAT = "fabricnms-checkpoint"
FORMAT_VERSION = 1
#: Keys holding training state only; stripped from exported (inference-only) checkpoints.
TRAINING_KEYS = ("optimizer_state", "scheduler_state", "scaler_state")


#: The model shipped inside the package, used when no ``--weights`` is given.
DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "default.pt"


def capture_rng() -> dict[str, Any]:
    """Python, NumPy and torch (CPU + CUDA) global RNG states as plain values/tensors."""
    version, state, gauss = random.getstate()
    np_state = np.random.get_state()
    return {
        "python": [version, list(state), gauss],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    version, values, gauss = state["python"]
    random.setstate((version, tuple(values), gauss))
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def make_checkpoint(**fields: Any) -> dict[str, Any]:
    """Add the format header, versions and timestamp to ``fields``."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **fields,
        "fabricnms_version": __version__,
        "torch_version": str(torch.__version__),
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> None:
    """Write atomically (temp file + rename)."""
    atomic_torch_save(path, checkpoint)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load on CPU with ``weights_only=True``; a one-line error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FabricError(f"{path}: checkpoint file not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise FabricError(
            f"{path}: not a fabricnms checkpoint: it holds pickled Python objects, which are "
            "not loaded because unpickling can run code (fabricnms checkpoints hold only "
            "tensors and plain values)."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, LookupError, TypeError) as exc:
        # (arbitrary bytes make torch's restricted unpickler fail in many ways: b"junk" KeyError)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        if isinstance(exc, (LookupError, TypeError)):  # their text alone can be a bare number
            first = f"{type(exc).__name__}: {first}"
        raise FabricError(f"{path}: not a fabricnms checkpoint ({first})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise FabricError(f"{path}: not a fabricnms checkpoint (no '{FORMAT}' header)")
    version = ckpt.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise FabricError(
            f"{path}: checkpoint format version {version} is newer than this fabricnms supports "
            f"({FORMAT_VERSION}); upgrade fabricnms"
        )
    for key in ("model_state", "detector_config", "class_names"):
        if key not in ckpt:
            raise FabricError(f"{path}: checkpoint lacks '{key}'")
    _check_class_names(path, ckpt)
    return ckpt


def _check_class_names(path: Path, ckpt: dict[str, Any]) -> None:
    """``class_names`` must be distinct non-empty strings, one per class of the head."""
    names = ckpt["class_names"]
    heads = (
        ckpt["detector_config"].get("num_classes")
        if isinstance(ckpt["detector_config"], dict)
        else None
    )
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise FabricError(f"{path}: checkpoint 'class_names' is not a list of class names")
    if len(set(names)) != len(names):
        raise FabricError(f"{path}: checkpoint 'class_names' repeats a name")
    if heads is not None and len(names) != heads:
        raise FabricError(
            f"{path}: checkpoint names {len(names)} classes but its detector head has {heads}; "
            "the file is inconsistent (re-export it from its training run)"
        )


def inference_state(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights inference should use: the EMA when the run kept one, else the raw model."""
    return ckpt.get("ema_state") or ckpt["model_state"]


def load_detector(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the detector of a checkpoint in eval mode on ``device``.

    Returns ``(detector, meta)``; ``meta`` is the checkpoint without the weight and training
    state tensors (class names, configs, epoch, metrics, versions, ``path``).
    """
    from fabricnms.model.detector import Detector

    ckpt = load_checkpoint(path)
    try:
        model = Detector(**ckpt["detector_config"])
        model.load_state_dict(inference_state(ckpt))
    except (TypeError, RuntimeError, KeyError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise FabricError(
            f"{path}: checkpoint does not match this fabricnms detector ({first})"
        ) from None
    model.to(device).eval()
    heavy = {"model_state", "ema_state", *TRAINING_KEYS, "rng"}
    meta = {k: v for k, v in ckpt.items() if k not in heavy}
    meta["path"] = str(Path(path).resolve())
    return model, meta


def strip_training_state(ckpt: dict[str, Any]) -> dict[str, Any]:
    """Copy without optimizer/scheduler/scaler state (inference-only export)."""
    return {k: v for k, v in ckpt.items() if k not in TRAINING_KEYS}
