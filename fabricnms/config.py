"""Settings for ``train`` and ``eval``: typed dataclasses, YAML in/out, validated overrides.

Precedence is dataclass default < ``--config FILE.yaml`` < command-line flags. Unknown keys get a
"did you mean" suggestion and out-of-range values name the valid range, as one-line
:class:`~fabricnms.errors.FabricError` messages. This module imports no torch or cv2.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fabricnms.errors import FabricError, UsageError

NMS_METHODS = ("dnms", "greedy", "soft", "none", "greedy+merge", "soft+merge", "dnms-no-merge")
DEVICES = ("auto", "cpu", "cuda")
#: Band (px) inside a found fabric edge where detections are not reported (the selvedge; see
#: :mod:`fabricnms.data.cloth`); a negative band turns edge finding off.
EDGE_BAND = 128
#: ``--model-width`` presets -> Detector keyword arguments (an integer backbone width ``w`` is
#: accepted too and gives ``neck_channels = 4 * w``).
MODEL_WIDTHS: dict[str, dict[str, int]] = {
    "n": {"width": 8, "neck_channels": 32},
    "s": {"width": 16, "neck_channels": 64},
    "m": {"width": 24, "neck_channels": 96},
    "l": {"width": 32, "neck_channels": 128},
}


@dataclass
class TrainConfig:
    """Everything a training run depends on; written to ``runs/train/<name>/config.yaml``.

    Pixel sizes are in frame pixels. ``model`` holds extra keyword arguments for
    ``Detector(num_classes, **model)`` on top of those implied by ``model_width`` and
    ``detach_plan``. ``weights`` is the checkpoint training started from (empty: from scratch).
    ``threads``: torch CPU threads of the training step (0: the cores the workers leave free).
    ``masks`` adds the prototype mask branch (``mask_prototypes`` prototypes, trained with
    box-only losses); ``freeze_detector`` trains that branch alone on top of ``weights`` (a
    detector trained without masks: its weights load, the branch starts fresh).
    """

    data: str = ""
    weights: str = ""
    epochs: int = 30
    batch: int = 8
    tile: int = 640
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.05
    grad_clip: float = 10.0
    ema: bool = True
    ema_decay: float = 0.999
    amp: bool = True
    device: str = "auto"
    workers: int = 2
    threads: int = 0
    seed: int = 0
    deterministic: bool = True
    patience: int = 20
    nms: str = "dnms"
    detach_plan: bool = False
    model_width: str = "s"
    model: dict[str, Any] = field(default_factory=dict)
    masks: bool = False
    mask_prototypes: int = 8
    freeze_detector: bool = False
    # sampling
    random_window_prob: float = 0.25
    repeat_threshold: float = 0.0
    min_visible_px: float = 8.0
    min_visible_frac: float = 0.25
    min_thickness: float = 2.0
    # augmentation
    scale_jitter: float = 0.15
    hflip: float = 0.5
    vflip: float = 0.5
    brightness: float = 0.15
    contrast: float = 0.15
    blur: float = 0.1
    noise: float = 0.2
    # validation
    val_interval: int = 1
    val_tile: int = 1024
    val_overlap: float = 0.2
    val_conf: float = 0.001
    acc_conf: float = 0.3
    max_det: int = 300
    val_max_frames: int = 0
    save_period: int = 0
    max_minutes: float = 0.0  # stop after the epoch that passes this many minutes (0: no limit)

    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``Detector`` besides ``num_classes`` (``model`` wins)."""
        return {
            **model_width_kwargs(self.model_width),
            "detach_plan": self.detach_plan,
            **({"mask_prototypes": self.mask_prototypes} if self.masks else {}),
            **self.model,
        }


@dataclass
class EvalConfig:
    """Settings of ``fabricnms eval`` (saved as ``runs/eval/<name>/config.yaml``)."""

    weights: str = ""
    data: str = ""
    split: str = "val"
    nms: str = "dnms"
    conf: float = 0.001
    acc_conf: float | None = None  # None: the checkpoint's operating point, else 0.25 (as predict)
    max_det: int = 300
    iou: float = 0.5
    agnostic: bool = False
    top_classes: int = 1
    vote_iou: float = 0.0
    tile: int = 1024
    overlap: float = 0.2
    batch: int = 4
    device: str = "auto"
    masks: bool = False
    threads: int = 0
    edge_band: int = EDGE_BAND


# (low, high) inclusive bounds; None = unbounded on that side.
_RANGES: dict[str, tuple[float | None, float | None]] = {
    "epochs": (1, None),
    "batch": (1, None),
    "tile": (64, 8192),
    "lr": (0.0, 1.0),
    "weight_decay": (0.0, 1.0),
    "warmup_epochs": (0.0, None),
    "min_lr_ratio": (0.0, 1.0),
    "grad_clip": (0.0, None),
    "ema_decay": (0.0, 0.99999),
    "workers": (0, 64),
    "threads": (0, 256),
    "prefetch": (-1, 64),
    "seed": (0, 2**32 - 1),
    "patience": (0, None),
    "random_window_prob": (0.0, 1.0),
    "repeat_threshold": (0.0, 1.0),
    "min_visible_px": (0.0, None),
    "min_visible_frac": (0.0, 1.0),
    "min_thickness": (0.0, 64.0),
    "scale_jitter": (0.0, 0.5),
    "hflip": (0.0, 1.0),
    "vflip": (0.0, 1.0),
    "brightness": (0.0, 1.0),
    "contrast": (0.0, 1.0),
    "blur": (0.0, 1.0),
    "noise": (0.0, 1.0),
    "val_interval": (1, None),
    "val_tile": (64, 8192),
    "val_overlap": (0.0, 0.9),
    "val_conf": (0.0, 1.0),
    "acc_conf": (0.0, 1.0),
    "max_det": (1, None),
    "val_max_frames": (0, None),
    "save_period": (0, None),
    "max_minutes": (0.0, None),
    "mask_prototypes": (1, 64),
    "conf": (0.0, 1.0),
    "overlap": (0.0, 0.9),
    "iou": (0.01, 1.0),
    "top_classes": (1, 64),
    "vote_iou": (0.0, 1.0),
    "edge_band": (-1, None),
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "nms": NMS_METHODS,
    "device": DEVICES,
    "split": ("train", "val"),
}


def model_width_kwargs(value: str) -> dict[str, int]:
    """``n``/``s``/``m``/``l`` or an integer backbone width (4..128) -> Detector kwargs."""
    text = str(value).strip().lower()
    if text in MODEL_WIDTHS:
        return dict(MODEL_WIDTHS[text])
    if text.isdigit() and 4 <= int(text) <= 128:
        return {"width": int(text), "neck_channels": 4 * int(text)}
    raise FabricError(
        f"model_width {value!r} is not one of {', '.join(MODEL_WIDTHS)} or an integer in [4, 128]"
    )


def _where(source: str, key: str) -> str:
    """How an error names a setting: ``FILE: key 'k'`` from a config file, ``--set k`` from
    ``--set``, ``--k`` (the option) otherwise."""
    if source == "--set":
        return f"--set {key}"
    if source:
        return f"{source}: key '{key}'"
    return "--" + key.replace("_", "-")


def _error(source: str, message: str) -> FabricError:
    """A bad value from a file is a :class:`FabricError` (exit 1), one from the command line a
    :class:`UsageError` (exit 2)."""
    return FabricError(message) if source and source != "--set" else UsageError(message)


def _coerce(source: str, key: str, value: Any, default: Any) -> Any:
    """Convert ``value`` to the type of ``default`` or raise a one-line error."""
    where = _where(source, key)
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise _error(source, f"{where}: expected true/false, got {value!r}")
    if isinstance(default, int):
        if isinstance(value, bool) or not (
            isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        ):
            raise _error(source, f"{where}: expected an integer, got {value!r}")
        return int(value)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _error(source, f"{where}: expected a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise _error(source, f"{where}: expected a string, got {value!r}")
        return str(value)
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise _error(source, f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    return value


def _check(source: str, key: str, value: Any) -> None:
    where = _where(source, key)
    if key in _RANGES and value is not None:
        lo, hi = _RANGES[key]
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            lo_s = "-inf" if lo is None else lo
            hi_s = "inf" if hi is None else hi
            raise _error(source, f"{where} {value}: out of range [{lo_s}, {hi_s}]")
    if key == "device":
        if not (value in DEVICES or re.fullmatch(r"cuda:\d+", str(value))):
            raise _error(source, f"{where} {value!r}: expected auto, cpu, cuda or cuda:N")
    elif key in _CHOICES and value not in _CHOICES[key]:
        raise _error(source, f"{where} {value!r}: expected one of {', '.join(_CHOICES[key])}")
    if key == "model_width":
        try:
            model_width_kwargs(value)
        except FabricError as exc:
            raise _error(source, f"{where}: {exc}") from None


def merge_config(config: Any, updates: dict[str, Any], source: str = "") -> Any:
    """Return a copy of the dataclass ``config`` with ``updates`` applied and validated.

    ``None`` values are ignored (an option the user did not pass). ``source`` says where the
    updates come from, for error messages: a file path, ``"--set"``, or empty for the
    command line's named options (errors then name the option and are usage errors).
    """
    fields = {f.name: f for f in dataclasses.fields(config)}
    changes: dict[str, Any] = {}
    for key, value in updates.items():
        if value is None:
            continue
        key = key.replace("-", "_")
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            where = f"{source}: unknown key" if source else "unknown setting"
            raise _error(source, f"{where} '{key}'{hint}")
        value = _coerce(source, key, value, getattr(config, key))
        _check(source, key, value)
        changes[key] = value
    return dataclasses.replace(config, **changes)


def validate_config(config: Any, source: str = "") -> Any:
    """Check every field of a dataclass config against its range/choices; returns it.
    ``source`` as in :func:`merge_config` (default: the command line's options)."""
    for f in dataclasses.fields(config):
        _check(source, f.name, getattr(config, f.name))
    return config


def load_yaml_mapping(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; one-line errors (naming ``what``) otherwise."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FabricError(f"{path}: {what} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FabricError(f"{path}: not valid YAML ({first})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise FabricError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return data


def parse_set_options(items: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> dict; values are parsed as YAML scalars/lists/mappings."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise UsageError(f"--set {item!r}: value is not valid YAML") from None
    return out


def load_config(
    cls: type,
    path: str | Path | None,
    overrides: dict[str, Any],
    set_items: list[str] | None = None,
) -> Any:
    """Defaults of ``cls``, then the YAML file at ``path`` (if any), then ``set_items``
    (``--set KEY=VALUE`` strings), then ``overrides`` (named options; ``None`` = not given)."""
    config = cls()
    if path is not None:
        config = merge_config(config, load_yaml_mapping(path), source=str(path))
    config = merge_config(config, parse_set_options(set_items or []), source="--set")
    config = merge_config(config, overrides)
    return validate_config(config)


def config_to_yaml(config: Any) -> str:
    """The dataclass as YAML text (keys in field order)."""
    import yaml

    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False, allow_unicode=True)
