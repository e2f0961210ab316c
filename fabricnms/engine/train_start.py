"""Where a training run starts from: its dataset, the run it resumes, the weights it loads.

``--resume latest`` is the newest run folder under ``<project>/train`` (by modification time;
a run rewrites ``metrics.csv`` in it every epoch), not the newest ``last.pt`` anywhere: a run
killed before its first checkpoint is then reported as such instead of silently resuming an
older, finished run. ``train --resume`` of a run that has finished all its epochs is refused
(:func:`check_resumable`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fabricnms.config import TrainConfig
from fabricnms.data.coco import load_coco
from fabricnms.data.dataset import FrameRecord, frames_from_coco
from fabricnms.data.dataset_yaml import DataSpec, load_data_yaml
from fabricnms.data.frame_reader import check_frame_file
from fabricnms.engine import checkpoint as ckpt_io
from fabricnms.errors import FabricError
from fabricnms.log import get_logger

log = get_logger("train")


@dataclass
class TrainData:
    """The dataset of a run: its spec, train and val frames, the val COCO document."""

    spec: DataSpec
    train_frames: list[FrameRecord]
    val_frames: list[FrameRecord]
    val_coco: dict[str, Any] | None


def load_train_data(cfg: TrainConfig) -> TrainData:
    """Read ``cfg.data`` (a dataset.yaml) and its splits; ``val_max_frames`` caps val. Every
    frame passes the reader's no-decode checks first (a truncated JPEG stops the run before
    it starts, naming the file, instead of failing inside a data worker mid-epoch)."""
    if not cfg.data:
        raise FabricError("no dataset: pass --data OUT/dataset.yaml (written by fabricnms convert)")
    spec = load_data_yaml(cfg.data)
    train_coco = load_coco(spec.split_path("train"))
    train_frames = frames_from_coco(train_coco, spec.image_root, spec.nc)
    if not train_frames:
        raise FabricError(f"{spec.split_path('train')}: the train split has no images")
    val_frames: list[FrameRecord] = []
    val_coco = None
    if "val" in spec.splits:
        val_coco = load_coco(spec.split_path("val"))
        val_frames = frames_from_coco(val_coco, spec.image_root, spec.nc)
        if cfg.val_max_frames:
            val_frames = val_frames[: cfg.val_max_frames]
    for frame in train_frames + val_frames:
        check_frame_file(frame.path)
    return TrainData(spec, train_frames, val_frames, val_coco)


def find_resume_checkpoint(resume: str, project: Path) -> Path:
    """``latest`` -> the newest run folder's ``weights/last.pt``; a run dir -> its last.pt; a
    file -> itself. One-line errors when that run has no checkpoint yet."""
    if resume == "latest":
        runs = [p for p in (project / "train").glob("*") if p.is_dir()]
        if not runs:
            raise FabricError(
                f"--resume latest: no run in {project / 'train'}; pass a run directory or a last.pt"
            )
        newest = max(runs, key=lambda p: p.stat().st_mtime)
        path = newest / "weights" / "last.pt"
        if not path.is_file():
            raise FabricError(
                f"--resume latest: the newest run {newest} has no weights/last.pt (it stopped "
                "before its first epoch ended); start it again, or pass --resume RUN_DIR for "
                "an older run"
            )
        return path
    path = Path(resume)
    if path.is_dir():
        path = path / "weights" / "last.pt"
    if not path.is_file():
        raise FabricError(f"--resume {resume}: {path} does not exist")
    return path


def load_resume_checkpoint(resume: str, project: Path) -> tuple[Path, dict[str, Any]]:
    """The checkpoint to resume (path, content); one without training state is refused."""
    path = find_resume_checkpoint(resume, project)
    ckpt = ckpt_io.load_checkpoint(path)
    if "optimizer_state" not in ckpt or "train_config" not in ckpt:
        raise FabricError(f"--resume {resume}: {path} holds no training state (not a last.pt)")
    return path, ckpt


def check_resumable(resume: str, project: Path) -> None:
    """``train --resume``: refuse a run that has finished all its epochs (nothing to do; the
    engine itself allows it, for ``adapt --resume`` after an interrupted calibration)."""
    path, ckpt = load_resume_checkpoint(resume, project)
    epochs = int(ckpt["train_config"].get("epochs", 0))
    if int(ckpt.get("epoch", 0)) >= epochs:
        raise FabricError(
            f"--resume {resume}: the run of {path} has finished all {epochs} epochs; nothing "
            "to resume (use --weights to train further in a new run)"
        )


def check_classes(names: list[str], data_names: tuple[str, ...], source: str) -> None:
    """The checkpoint's classes must be the dataset's, in order."""
    if list(names) != list(data_names):
        raise FabricError(
            f"{source}: checkpoint classes ({len(names)}: {', '.join(names[:4])}...) differ from "
            f"the dataset's ({len(data_names)}: {', '.join(data_names[:4])}...)"
        )


def load_start_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model``; only mask-branch parameters may be missing from it.

    A detector trained without masks thus starts a run with ``masks=true``: its weights load
    and the mask branch keeps its fresh initialisation (logged). Any other mismatch is a
    :class:`FabricError` naming ``source``.
    """
    from fabricnms.model.detector import MASK_BRANCH_PREFIX

    try:
        result = model.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if not k.startswith(MASK_BRANCH_PREFIX)]
        if missing or result.unexpected_keys:
            first = (missing or result.unexpected_keys)[0]
            kind = "missing" if missing else "unexpected"
            raise RuntimeError(
                f"{len(missing)} missing, {len(result.unexpected_keys)} unexpected keys "
                f"({kind}: {first})"
            )
    except RuntimeError as exc:
        raise FabricError(
            f"{source}: weights do not fit the model (--model-width or model keys "
            f"differ): {str(exc).splitlines()[0]}"
        ) from None
    if result.missing_keys:
        log.info(
            "%s has no mask branch: loaded the detector, the mask branch (%d tensors) starts fresh",
            source,
            len(result.missing_keys),
        )
