"""``fabricnms predict`` as a function: frames in, detections, overlays and a roll report out.

Pipeline, streaming over any number of frames: :func:`~fabricnms.engine.sources.discover_frames`
(natural order, optional shard) -> lazy :func:`~fabricnms.data.frame_reader.read_frame_rgb` ->
:func:`~fabricnms.engine.tiling.detect_frames` (overlapping tiles, one suppression per frame) ->
:class:`~fabricnms.engine.writers.ResultWriter` (journal line per frame) -> optional overlay
JPEG per frame. At the end the writer turns its journal into the COCO / Tianchi / CSV files and,
for a roll, :func:`~fabricnms.report.roll.build_roll_report` grades it. Only the frames inside
one tiling batch are held in memory.

With ``masks`` (a checkpoint with a mask branch) every detection also gets a refined binary
mask (:mod:`fabricnms.model.mask_infer`): COCO RLE ``segmentation``, ``area`` in pixels (and
``area_mm2`` when calibrated) and ``mask_uncertainty`` in the results, mask columns in the CSV,
filled masks in the overlays.

Output folder (``runs/predict/<name>[N]`` or an exact ``out`` folder)::

    predictions.json, images.json     COCO results (bbox xywh px, category_id 1-based) + images
    submission.json                   Tianchi submission (bbox xyxy px, category 1-based)
    detections.csv                    one row per defect (+ mm columns when calibrated)
    detections.jsonl                  the per-frame journal (what --resume continues)
    overlays/<stem>.jpg               drawn frames (when overlays are on)
    roll_report.json, roll_report.html   roll position, points, grade, verdict (for a roll)
    config.yaml, summary.json         resolved settings; counts, timings, skipped frames

Frames are decoded one ahead in a background thread (:mod:`fabricnms.engine.prefetch`).
The frame loop is :mod:`fabricnms.engine.predict_stream`, ``summary.json`` (whole-run counts,
this session's timings) :mod:`fabricnms.engine.predict_summary`. The output folder is locked
(:class:`~fabricnms.engine.run_lock.RunLock`) for the whole run: a second run on it is refused.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fabricnms.config import EDGE_BAND, config_to_yaml, load_yaml_mapping, validate_config
from fabricnms.engine.backend import inference_threads, load_inference_model
from fabricnms.engine.checkpoint import DEFAULT_WEIGHTS
from fabricnms.engine.operating_point import ConfChoice, resolve_operating_point
from fabricnms.engine.predict_stream import FrameEvent, stream_frames
from fabricnms.engine.predict_summary import edge_summary, run_counts
from fabricnms.engine.run_lock import RunLock
from fabricnms.engine.shift import FabricStats, shift_summary, stats_from_meta
from fabricnms.engine.sources import discover_frames, parse_shard, shard_slice
from fabricnms.engine.thresholds import apply_overrides
from fabricnms.engine.tiling import TileSettings
from fabricnms.engine.writers import FORMATS, ResultWriter
from fabricnms.errors import FabricError, UsageError
from fabricnms.io import atomic_write_json, atomic_write_text, increment_run_dir
from fabricnms.log import get_logger
from fabricnms.model.mask_infer import require_mask_branch
from fabricnms.report.calibration import DEFAULT_PX_PER_MM, Calibration
from fabricnms.report.caveats import Caveat, operating_point_caveats
from fabricnms.report.grading import GradingRules
from fabricnms.report.roll import RollSettings
from fabricnms.report.roll_files import write_roll_files

log = get_logger("predict")

#: Overlays are drawn by default for runs of at most this many frames.
AUTO_OVERLAY_MAX_FRAMES = 200
GRADING_SYSTEMS = {"4": "4pt", "10": "10pt"}
#: Settings that change the detections: a resumed run must use the same values.
_RESUME_KEYS = (
    "weights",
    "nms",
    "conf",
    "per_class_conf",
    "classes",
    "max_det",
    "iou",
    "agnostic",
    "top_classes",
    "vote_iou",
    "tile",
    "overlap",
    "masks",
    "edge_band",
)


@dataclass
class PredictConfig:
    """Settings of ``fabricnms predict`` (the resolved values are saved as ``config.yaml``).

    ``overlays`` / ``roll`` ``None`` mean automatic: overlays for runs of at most
    :data:`AUTO_OVERLAY_MAX_FRAMES` frames; a roll report when the only source is a folder and
    the run is not sharded. ``px_per_mm`` is the camera scale on the fabric (both axes);
    ``max_points`` the acceptance limit in points per 100 yd² (``None``: the grading system's
    default, 40 per 100 yd² for 4-point, 100 per 100 linear yd for 10-point). ``masks``:
    refined defect masks (needs a checkpoint with a mask branch). ``conf`` ``None``: the
    checkpoint's operating point (:mod:`fabricnms.engine.operating_point`), resolved into
    ``conf`` and ``per_class_conf`` (class name -> threshold) in the saved config.
    ``threads``: CPU inference threads (0: :func:`~fabricnms.engine.backend.inference_threads`
    decides); ``prefetch``: frames decoded ahead in a background thread (0: decode in line;
    -1: one ahead only when inference leaves a core free; measured with
    ``benchmarks/bench_predict.py``, read-ahead is faster at 1 thread on 2 cores and slower at 2).
    ``calibrated``: ``px_per_mm`` was given (else it is an assumption the verdict states).
    ``edge_band``: detections within this many px inside a found fabric edge, or past it, are
    not reported (:mod:`fabricnms.data.cloth`; negative: edges are not looked for).
    ``report_info``: roll id, lot, operator, date ... for the roll report's header.
    """

    sources: list[str] = field(default_factory=list)
    weights: str = ""
    conf: float | None = None
    per_class_conf: dict[str, float] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    nms: str = "dnms"
    max_det: int = 300
    iou: float = 0.5
    agnostic: bool = False
    top_classes: int = 1
    vote_iou: float = 0.0
    tile: int = 1024
    overlap: float = 0.2
    batch: int = 4
    device: str = "auto"
    formats: list[str] = field(default_factory=lambda: list(FORMATS))
    overlays: bool | None = None
    recursive: bool = False
    shard: str = ""
    roll: bool | None = None
    px_per_mm: float = DEFAULT_PX_PER_MM
    calibrated: bool = False
    grading: str = "4"
    max_points: float | None = None
    masks: bool = False
    threads: int = 0
    prefetch: int = -1
    edge_band: int = EDGE_BAND
    report_info: dict[str, str] = field(default_factory=dict)


@dataclass
class PredictResult:
    """What a run produced: the output folder, ``summary.json``'s content, the roll verdict."""

    out_dir: Path
    summary: dict[str, Any]
    verdict: str | None


def resolve_weights(weights: str) -> Path:
    """``weights`` if given, else the shipped model (predict's and eval's default); a one-line
    error when neither exists."""
    if weights:
        return Path(weights)
    if DEFAULT_WEIGHTS.is_file():
        return DEFAULT_WEIGHTS
    raise FabricError(
        f"no weights: the shipped default model {DEFAULT_WEIGHTS} is not installed; "
        "pass --weights PATH (e.g. runs/train/train/weights/best.pt)"
    )


def select_frames(cfg: PredictConfig) -> tuple[list[Path], list[Path]]:
    """``(all discovered frames, the frames of this shard)``, both in natural order."""
    frames = discover_frames(cfg.sources, cfg.recursive)
    if not cfg.shard:
        return frames, frames
    index, count = parse_shard(cfg.shard)
    return frames, [frames[i] for i in shard_slice(len(frames), index, count)]


def _check_resume_config(out_dir: Path, resolved: dict[str, Any]) -> None:
    path = out_dir / "config.yaml"
    if not path.is_file():
        return
    before = load_yaml_mapping(path)
    for key in _RESUME_KEYS:
        if key in before and before[key] != resolved[key]:
            raise FabricError(
                f"{path}: the run being resumed used {key}={before[key]!r}, not {resolved[key]!r}; "
                "resume with the same settings or start a new output folder"
            )


def _rules(cfg: PredictConfig) -> GradingRules:
    if cfg.grading not in GRADING_SYSTEMS:
        raise UsageError(f"--grading {cfg.grading!r}: expected 4 or 10")
    if cfg.max_points is None:
        return GradingRules(system=GRADING_SYSTEMS[cfg.grading])
    return GradingRules(
        system=GRADING_SYSTEMS[cfg.grading], limit=cfg.max_points, limit_unit="100yd2"
    )


def run_predict(
    cfg: PredictConfig,
    project: str | Path = "runs",
    name: str = "predict",
    out: str | Path | None = None,
    resume: bool = False,
    on_frame: Callable[[FrameEvent], None] | None = None,
    model: nn.Module | None = None,
    class_names: list[str] | None = None,
) -> PredictResult:
    """Detect defects in the frames of ``cfg.sources`` and write the outputs (module docstring).

    Args:
        project / name: the run goes to ``project/predict/name[N]`` unless ``out`` names the
            exact folder; ``resume`` continues the journal in ``out``, skipping its frames.
        on_frame: called once per frame, in input order, including skipped ones.
        model / class_names: an already built detector (eval mode, on ``cfg.device``) and its
            class names instead of loading ``cfg.weights`` (used by benchmarks and tests).

    Raises :class:`FabricError` when no frame could be read (after writing ``summary.json``).
    """
    validate_config(cfg)
    if resume and out is None:
        raise FabricError("--resume needs --out DIR: the folder of the run to continue")
    unknown = [f for f in cfg.formats if f not in FORMATS]
    if unknown:
        raise UsageError(f"--format {unknown[0]!r}: expected any of {', '.join(FORMATS)}")
    _rules(cfg)  # a bad --grading fails before any work
    all_frames, frames = select_frames(cfg)
    from fabricnms.engine.runtime import resolve_device

    device = resolve_device(cfg.device)
    threads = inference_threads(cfg.threads)
    if model is None:
        weights = resolve_weights(cfg.weights)
        model, meta = load_inference_model(weights, device, cfg.masks, threads)
        class_names = list(meta["class_names"])
        weights_str = str(weights.resolve())
    else:
        if class_names is None:
            raise FabricError("run_predict: a model given without its class names")
        weights_str = cfg.weights
        meta = {}
        if cfg.masks:
            require_mask_branch(model, weights_str or "the model")
    choice = resolve_operating_point(cfg.conf, meta)
    choice = apply_overrides(choice, cfg.per_class_conf, cfg.classes, class_names)
    fabric = stats_from_meta(meta)
    roll = cfg.roll
    if roll is None:
        roll = len(cfg.sources) == 1 and Path(cfg.sources[0]).is_dir() and not cfg.shard
    elif roll and cfg.shard:
        log.warning(
            "roll report of shard %s: positions start at the shard's first frame", cfg.shard
        )
    overlays = cfg.overlays
    if overlays is None:
        overlays = len(frames) <= AUTO_OVERLAY_MAX_FRAMES
    resolved = dataclasses.replace(
        cfg,
        weights=weights_str,
        device=str(device),
        threads=threads,
        prefetch=cfg.prefetch if cfg.prefetch >= 0 else int(threads < (os.cpu_count() or 1)),
        overlays=overlays,
        roll=roll,
        conf=choice.point.conf,
        per_class_conf=dict(choice.point.per_class),
    )
    out_dir = Path(out) if out is not None else increment_run_dir(Path(project) / "predict", name)
    with RunLock(out_dir):
        if resume:
            _check_resume_config(out_dir, dataclasses.asdict(resolved))
        return _run_locked(
            resolved,
            model,
            class_names,
            device,
            (all_frames, frames),
            out_dir,
            resume,
            on_frame,
            (choice, fabric),
            cfg.roll is None,
        )


def _run_locked(
    cfg: PredictConfig,
    model: nn.Module,
    class_names: list[str],
    device: torch.device,
    selected: tuple[list[Path], list[Path]],
    out_dir: Path,
    resume: bool,
    on_frame: Callable[[FrameEvent], None] | None,
    model_meta: tuple[ConfChoice, FabricStats | None],
    roll_assumed: bool,
) -> PredictResult:
    """The body of :func:`run_predict` once ``out_dir`` is locked (``cfg`` resolved;
    ``selected``: all discovered frames and those of this shard; ``model_meta``: the operating
    point in force and the model's fabric statistics; ``roll_assumed``: the folder was taken
    as a roll without ``--roll``, which the verdict states)."""
    all_frames, frames = selected
    choice, fabric = model_meta
    calibration = Calibration(cfg.px_per_mm, cfg.px_per_mm, assumed=not cfg.calibrated)
    mm_calibration = calibration if cfg.calibrated or cfg.roll else None
    with ResultWriter(
        out_dir,
        class_names,
        cfg.formats,
        mm_calibration,
        resume=resume,
        masks=cfg.masks,
    ) as writer:
        atomic_write_text(out_dir / "config.yaml", config_to_yaml(cfg))
        todo = [p for p in frames if not writer.is_done(p)]
        overlay_paths = None
        if cfg.overlays:
            overlay_paths = {p: out_dir / "overlays" / n for p, n in _overlay_names(all_frames)}
        stats = stream_frames(
            model,
            class_names,
            todo,
            writer,
            TileSettings.from_config(cfg),
            device,
            overlay_paths,
            on_frame,
            (choice.point, fabric),
            cfg.prefetch,
        )
        outputs = {k: str(v) for k, v in writer.finalize().items()}
        records = [rec for _, rec in writer.records()]
    shift = None
    if fabric is not None:
        shift = shift_summary([rec.fabric_shift for rec in records], fabric)
    caveats = [Caveat("fabric_shift", shift["warning"])] if shift and shift["warning"] else []
    edges = edge_summary(sum(rec.cloth is not None for rec in records), cfg.edge_band)
    caveats += [Caveat("fabric_edge", edges["warning"])] if edges["warning"] else []
    caveats += operating_point_caveats(choice)
    verdict = None
    roll = None
    if cfg.roll and records:
        settings = RollSettings(calibration, _rules(cfg), roll_assumed=roll_assumed)
        roll, paths = write_roll_files(
            records, class_names, settings, cfg.report_info, out_dir, caveats
        )
        verdict = roll["verdict"]
        outputs.update({f"roll_{k}": str(v) for k, v in paths.items()})
    if cfg.overlays and stats.processed:
        outputs["overlays"] = str(out_dir / "overlays")
    summary: dict[str, Any] = {
        "discovered": len(all_frames),
        "shard": cfg.shard or None,
        **run_counts(records, class_names),
        "resumed": len(frames) - len(todo),
        "skipped": stats.skipped,
        **stats.timings(mm_calibration),
        "weights": cfg.weights,
        "device": cfg.device,
        "threads": cfg.threads,
        "nms": cfg.nms,
        "conf": cfg.conf,
        "tile": cfg.tile,
        "px_per_mm": None if mm_calibration is None else calibration.px_per_mm_x,
        "px_per_mm_assumed": mm_calibration is not None and calibration.assumed,
        "out_dir": str(out_dir.resolve()),
        "outputs": outputs,
        "roll": roll,
        "verdict": verdict,
        "threshold": {**choice.point.to_dict(), "origin": choice.origin, "line": choice.line()},
        "fabric_shift": shift,
        "fabric_edges": edges,
    }
    atomic_write_json(out_dir / "summary.json", summary)
    if stats.skipped and not records:
        first = stats.skipped[0]
        raise FabricError(
            f"no frame could be read: {len(stats.skipped)} unreadable "
            f"(first: {first['error']}); see {out_dir / 'summary.json'}"
        )
    return PredictResult(out_dir=out_dir, summary=summary, verdict=verdict)


def _overlay_names(frames: list[Path]) -> list[tuple[Path, str]]:
    from fabricnms.report.batch import output_names

    return list(zip(frames, output_names(frames), strict=True))
