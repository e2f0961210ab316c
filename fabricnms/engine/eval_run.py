"""``fabricnms eval`` as a function: find the weights and data, evaluate, save the run.

Writes ``runs/eval/<name>[N]/``: ``eval.json`` (everything printed), ``results.json`` (COCO
results list: ``bbox`` xywh px, ``category_id`` 1-based; with masks also ``segmentation`` RLE)
and ``config.yaml``.

With ``masks`` the checkpoint's mask branch gives every detection a refined mask, scored
against the true masks the dataset lists (``masks`` in ``dataset.yaml``, written by
``convert`` for ``synth --masks`` releases) with pycocotools ``segm`` and the mean best mask IoU
(:func:`fabricnms.engine.masks.evaluate_masks`, next to the filled-box baseline).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from fabricnms.config import EvalConfig, config_to_yaml
from fabricnms.data.coco import load_coco
from fabricnms.data.dataset import frames_from_coco
from fabricnms.data.dataset_yaml import DataSpec, load_data_yaml
from fabricnms.engine.backend import inference_threads, load_inference_model
from fabricnms.engine.diagnostics import write_diagnostics
from fabricnms.engine.evaluate import EvalReport, evaluate_frames
from fabricnms.engine.masks import (
    MaskReport,
    TrueMask,
    evaluate_masks,
    load_true_masks,
    segm_ground_truth,
)
from fabricnms.engine.operating_point import resolve_operating_point
from fabricnms.engine.predict import resolve_weights
from fabricnms.engine.runtime import resolve_device
from fabricnms.engine.tiling import TileSettings
from fabricnms.errors import FabricError
from fabricnms.io import atomic_write_json, atomic_write_text, increment_run_dir
from fabricnms.log import console, get_logger

log = get_logger("eval")


@dataclass
class EvalRun:
    """An evaluation and where it was saved."""

    report: EvalReport
    run_dir: Path
    summary: dict[str, Any]
    masks: MaskReport | None = None


def resolve_data(data: str, meta: dict[str, Any]) -> DataSpec:
    """``data`` if given, else the dataset the checkpoint was trained on."""
    if data:
        return load_data_yaml(data)
    stored = meta.get("data")
    if stored and Path(stored).is_file():
        return load_data_yaml(stored)
    where = f" (the checkpoint's {stored} does not exist)" if stored else ""
    raise FabricError(f"no dataset{where}: pass --data OUT/dataset.yaml")


def run_eval(cfg: EvalConfig, project: str | Path = "runs", name: str = "eval") -> EvalRun:
    """Evaluate ``cfg.weights`` on ``cfg.split`` of ``cfg.data`` and save ``runs/eval/<name>``."""
    project = Path(project)
    weights = resolve_weights(cfg.weights)
    device = resolve_device(cfg.device)
    model, meta = load_inference_model(weights, device, cfg.masks, inference_threads(cfg.threads))
    choice = resolve_operating_point(cfg.acc_conf, meta, "--acc-conf")
    cfg = dataclasses.replace(cfg, acc_conf=choice.point.conf)
    log.info("%s (eval applies one threshold to every class)", choice.line("--acc-conf"))
    spec = resolve_data(cfg.data, meta)
    names = list(meta["class_names"])
    if names != list(spec.names):
        raise FabricError(
            f"{weights}: the checkpoint's {len(names)} classes ({', '.join(names[:3])}, ...) "
            f"differ from {spec.yaml_path}'s {spec.nc} ({', '.join(spec.names[:3])}, ...)"
        )
    gt_path = spec.split_path(cfg.split)
    gt = load_coco(gt_path)
    segm_gt = None
    if cfg.masks:
        segm_gt = true_mask_ground_truth(spec, gt)
    frames = frames_from_coco(gt, spec.image_root, spec.nc)
    if not frames:
        raise FabricError(f"{gt_path}: the {cfg.split} split has no images")
    settings = TileSettings.from_config(cfg)
    with Progress(
        "eval", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
    ) as progress:
        task = progress.add_task("eval", total=len(frames))
        report = evaluate_frames(
            model,
            frames,
            gt,
            spec.names,
            settings,
            acc_conf=cfg.acc_conf,
            device=device,
            on_frame=lambda _i: progress.advance(task),
        )
    if not report.instances.sum():
        log.warning(
            "%s: the %s split has no labelled defects: mAP is 0 and the COCO stats are -1; "
            "only the frame accuracy is meaningful",
            gt_path,
            cfg.split,
        )
    resolved = dataclasses.replace(cfg, weights=str(weights), data=str(spec.yaml_path))
    run_dir = increment_run_dir(project / "eval", name)
    atomic_write_json(run_dir / "results.json", report.results, indent=None)
    atomic_write_text(run_dir / "config.yaml", config_to_yaml(resolved))
    diag, plots = write_diagnostics(run_dir, report.gts, report.preds, spec.names, cfg.acc_conf)
    summary = {
        "weights": str(weights.resolve()),
        "data": str(spec.yaml_path),
        "split": cfg.split,
        "nms": cfg.nms,
        "acc_conf": cfg.acc_conf,
        "acc_conf_origin": choice.origin,
        "ground_truth": str(gt_path),
        "run_dir": str(run_dir.resolve()),
        "results_file": str((run_dir / "results.json").resolve()),
        **report.as_dict(),
        "diagnostics": {**diag.as_dict(spec.names), "files": {k: str(v) for k, v in plots.items()}},
    }
    mask_report = None
    if segm_gt is not None:
        mask_report = evaluate_masks(segm_gt, report.results)
        summary["masks"] = mask_report.as_dict()
    atomic_write_json(run_dir / "eval.json", summary)
    return EvalRun(report=report, run_dir=run_dir, summary=summary, masks=mask_report)


def true_mask_ground_truth(spec: DataSpec, gt: dict[str, Any]) -> dict[str, Any]:
    """A ``segm`` ground truth of the split ``gt`` from the true masks ``spec`` lists.

    A one-line :class:`FabricError` when the dataset has no true masks.
    """
    if not spec.masks:
        raise FabricError(
            f"{spec.yaml_path}: no true masks to evaluate against ('masks' lists none); "
            "convert a release made by `fabricnms synth --masks`"
        )
    masks: dict[str, list[TrueMask]] = {}
    for path in spec.masks:
        masks.update(load_true_masks(path))
    return segm_ground_truth(gt, masks, ", ".join(str(p) for p in spec.masks))
