"""``fabricnms predict`` as a function: frames in, detections, overlays and a roll report out.

Pipeline, streaming over any number of frames: :func:`~fabricnms.engine.sources.discover_frames`
(natural order, optional shard) -> lazy :func:`~fabricnms.engine.sources.read_frame_rgb` ->
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

Timings: *preprocess* = file decode and conversion to RGB (by default one frame ahead in a
background thread, overlapping the network; see :mod:`fabricnms.engine.prefetch`);
*inference* = the network's forward passes; *postprocess* = the rest of tiled detection
(cutting and padding windows, candidate selection, merging tiles, NMS); *write* = journal
and overlays.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fabricnms.config import config_to_yaml, load_yaml_mapping, validate_config
from fabricnms.engine.backend import inference_threads, load_inference_model
from fabricnms.engine.checkpoint import DEFAULT_WEIGHTS
from fabricnms.engine.operating_point import OperatingPoint, resolve_operating_point
from fabricnms.engine.prefetch import Prefetch
from fabricnms.engine.shift import FabricStats, FeatureTap, shift_summary, stats_from_meta
from fabricnms.engine.sources import (
    FrameReadError,
    discover_frames,
    parse_shard,
    read_frame_rgb,
    shard_slice,
)
from fabricnms.engine.thresholds import apply_overrides
from fabricnms.engine.tiling import TileSettings, detect_frames
from fabricnms.engine.writers import FORMATS, ResultWriter
from fabricnms.errors import FabricError
from fabricnms.io import atomic_write_json, atomic_write_text, increment_run_dir
from fabricnms.log import get_logger
from fabricnms.model.mask_infer import require_mask_branch
from fabricnms.report.calibration import DEFAULT_PX_PER_MM, Calibration
from fabricnms.report.caveats import NO_OPERATING_POINT, Caveat
from fabricnms.report.grading import GradingRules
from fabricnms.report.records import FrameRecord
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
    decides); ``prefetch``: frames decoded ahead in a background thread (0: decode in line).
    ``calibrated``: ``px_per_mm`` was given (else it is an assumption the verdict states).
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
    prefetch: int = 1
    report_info: dict[str, str] = field(default_factory=dict)


@dataclass
class FrameEvent:
    """One finished (or skipped) frame, for progress output. ``index`` is 1-based in this run;
    ``counts`` maps class name -> detections; ``error`` is set for a skipped frame."""

    index: int
    total: int
    path: Path
    width: int = 0
    height: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    ms: float = 0.0
    error: str | None = None


@dataclass
class PredictResult:
    """What a run produced: the output folder, ``summary.json``'s content, the roll verdict."""

    out_dir: Path
    summary: dict[str, Any]
    verdict: str | None


class _TimedModel(nn.Module):
    """Wraps a detector and adds up the wall time of its forward passes (CUDA synchronised)."""

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        super().__init__()
        self.model = model
        self.sync = device.type == "cuda"
        self.seconds = 0.0

    def forward(self, images: torch.Tensor) -> Any:
        start = time.perf_counter()
        out = self.model(images)
        if self.sync:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - start
        return out


@dataclass
class _Pending:
    index: int
    path: Path
    image: np.ndarray | None = None
    error: str | None = None
    started: float = 0.0


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
        raise FabricError(f"--grading {cfg.grading!r}: expected 4 or 10")
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
        raise FabricError(f"--format {unknown[0]!r}: expected any of {', '.join(FORMATS)}")
    rules = _rules(cfg)
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
        overlays=overlays,
        roll=roll,
        conf=choice.point.conf,
        per_class_conf=dict(choice.point.per_class),
    )
    calibration = Calibration(cfg.px_per_mm, cfg.px_per_mm, assumed=not cfg.calibrated)
    mm_calibration = calibration if cfg.calibrated or roll else None
    if out is not None:
        out_dir = Path(out)
        if resume:
            _check_resume_config(out_dir, dataclasses.asdict(resolved))
    else:
        out_dir = increment_run_dir(Path(project) / "predict", name)
    with ResultWriter(
        out_dir,
        class_names,
        resolved.formats,
        mm_calibration,
        resume=resume,
        masks=resolved.masks,
    ) as writer:
        atomic_write_text(out_dir / "config.yaml", config_to_yaml(resolved))
        todo = [p for p in frames if not writer.is_done(p)]
        stats = _stream(
            model,
            class_names,
            todo,
            all_frames,
            writer,
            resolved,
            device,
            out_dir,
            on_frame,
            choice.point,
            fabric,
        )
        outputs = {k: str(v) for k, v in writer.finalize().items()}
    shift = None
    if fabric is not None:
        shift = shift_summary([rec.fabric_shift for _, rec in writer.records()], fabric)
    caveats = [Caveat("fabric_shift", shift["warning"])] if shift and shift["warning"] else []
    if choice.origin == "default":
        caveats.append(NO_OPERATING_POINT)
    verdict = None
    roll_summary = None
    if roll and stats.processed + len(frames) - len(todo) > 0:
        settings = RollSettings(calibration, rules, roll_assumed=cfg.roll is None)
        records = [rec for _, rec in writer.records()]
        roll_summary, paths = write_roll_files(
            records, class_names, settings, cfg.report_info, out_dir, caveats
        )
        verdict = roll_summary["verdict"]
        outputs.update({f"roll_{k}": str(v) for k, v in paths.items()})
    if overlays and stats.processed:
        outputs["overlays"] = str(out_dir / "overlays")
    summary = stats.summary(resolved, len(all_frames), len(frames) - len(todo), mm_calibration)
    summary.update(
        out_dir=str(out_dir.resolve()),
        outputs=outputs,
        roll=roll_summary,
        verdict=verdict,
        threshold={**choice.point.to_dict(), "origin": choice.origin, "line": choice.line()},
        fabric_shift=shift,
    )
    atomic_write_json(out_dir / "summary.json", summary)
    if stats.skipped and stats.processed == 0 and len(frames) == len(todo):
        first = stats.skipped[0]
        raise FabricError(
            f"no frame could be read: {len(stats.skipped)} unreadable "
            f"(first: {first['error']}); see {out_dir / 'summary.json'}"
        )
    return PredictResult(out_dir=out_dir, summary=summary, verdict=verdict)


@dataclass
class _Stats:
    """Running totals of one run (no per-frame data is kept except the skipped list)."""

    processed: int = 0
    with_defects: int = 0
    detections: int = 0
    rows_px: int = 0
    by_class: Counter[str] = field(default_factory=Counter)
    skipped: list[dict[str, str]] = field(default_factory=list)
    read_s: float = 0.0
    wait_s: float = 0.0
    infer_s: float = 0.0
    detect_s: float = 0.0
    write_s: float = 0.0
    wall_s: float = 0.0

    def summary(
        self,
        cfg: PredictConfig,
        discovered: int,
        resumed: int,
        calibration: Calibration | None,
    ) -> dict[str, Any]:
        """``summary.json`` content (milliseconds per processed frame); metres of fabric per
        minute when the scale was given or a roll report assumes one."""
        n = max(self.processed, 1)
        post_s = max(self.detect_s - self.infer_s - self.wait_s, 0.0)
        fps = self.processed / self.wall_s if self.wall_s > 0 else None
        metres = calibration.mm_y(self.rows_px) / 1000.0 if calibration is not None else None
        return {
            "discovered": discovered,
            "shard": cfg.shard or None,
            "processed": self.processed,
            "resumed": resumed,
            "skipped": self.skipped,
            "frames_with_defects": self.with_defects,
            "detections": self.detections,
            "defects_by_class": dict(sorted(self.by_class.items())),
            "ms_per_frame": {
                "preprocess": round(1000 * self.read_s / n, 2),
                "inference": round(1000 * self.infer_s / n, 2),
                "postprocess": round(1000 * post_s / n, 2),
                "write": round(1000 * self.write_s / n, 2),
            },
            "seconds": round(self.wall_s, 3),
            "frames_per_second": None if fps is None else round(fps, 3),
            "metres_per_minute": (
                round(metres / (self.wall_s / 60), 3)
                if metres is not None and self.wall_s
                else None
            ),
            "weights": cfg.weights,
            "device": cfg.device,
            "threads": cfg.threads,
            "nms": cfg.nms,
            "conf": cfg.conf,
            "tile": cfg.tile,
            "px_per_mm": None if calibration is None else calibration.px_per_mm_x,
            "px_per_mm_assumed": calibration is not None and calibration.assumed,
        }


def _stream(
    model: nn.Module,
    class_names: list[str],
    todo: list[Path],
    all_frames: list[Path],
    writer: ResultWriter,
    cfg: PredictConfig,
    device: torch.device,
    out_dir: Path,
    on_frame: Callable[[FrameEvent], None] | None,
    point: OperatingPoint,
    fabric: FabricStats | None,
) -> _Stats:
    """Read, detect, journal and draw ``todo`` frame by frame, in order; keep the detections
    above ``point``'s thresholds; score each frame's ``fabric_shift`` against ``fabric``."""
    stats = _Stats()
    timed = _TimedModel(model, device).eval()
    pending: deque[_Pending] = deque()
    overlay_names = _overlay_names(all_frames) if cfg.overlays else {}
    total = len(todo)
    start = time.perf_counter()
    last = start

    def images() -> Iterator[np.ndarray]:
        for i, path in enumerate(todo, start=1):
            t0 = time.perf_counter()
            try:
                image = read_frame_rgb(path)
            except FrameReadError as exc:
                pending.append(_Pending(i, path, error=str(exc)))
                continue
            finally:
                stats.read_s += time.perf_counter() - t0
            pending.append(_Pending(i, path, image=image, started=t0))
            yield image

    def report(event: FrameEvent) -> None:
        if on_frame is not None:
            on_frame(event)

    def drain_errors() -> None:
        while pending and pending[0].error is not None:
            item = pending.popleft()
            stats.skipped.append({"path": str(item.path), "error": item.error or ""})
            log.debug("skipped %s", item.error)
            report(FrameEvent(item.index, total, item.path, error=item.error))

    settings = dataclasses.replace(TileSettings.from_config(cfg), conf=point.floor())
    tap = FeatureTap(model if fabric is not None else None)
    source = Prefetch(images(), cfg.prefetch)
    detections = detect_frames(timed, source, settings, device)
    while True:
        t0 = time.perf_counter()
        det = next(detections, None)
        stats.detect_s += time.perf_counter() - t0
        drain_errors()
        if det is None:
            break
        item = pending.popleft()
        assert item.image is not None
        height, width = item.image.shape[:2]
        t1 = time.perf_counter()
        det = point.select(det.to("cpu"), class_names)
        record = FrameRecord.from_detections(item.path, width, height, det)
        if fabric is not None:
            desc = tap.take_frame(width, height, settings.tile, settings.overlap)
            record.fabric_shift = fabric.frame_score(desc)
        writer.add_record(record)
        if cfg.overlays:
            _draw_overlay(
                item.image, record, class_names, out_dir / "overlays" / overlay_names[item.path]
            )
        stats.write_s += time.perf_counter() - t1
        counts = Counter(class_names[c] for c in det.labels.tolist())
        stats.processed += 1
        stats.rows_px += height
        stats.detections += len(det)
        stats.with_defects += len(det) > 0
        stats.by_class.update(counts)
        now = time.perf_counter()
        report(
            FrameEvent(
                item.index, total, item.path, width, height, dict(counts), 1000 * (now - last)
            )
        )
        last = now
    tap.close()
    source.close()
    stats.infer_s = timed.seconds
    stats.wait_s = source.wait_s
    stats.wall_s = time.perf_counter() - start
    return stats


def _overlay_names(frames: list[Path]) -> dict[Path, str]:
    from fabricnms.report.batch import output_names

    return dict(zip(frames, output_names(frames), strict=True))


def _draw_overlay(
    image: np.ndarray, record: FrameRecord, class_names: list[str], path: Path
) -> None:
    """Boxes, class names, scores and masks (when present) on the RGB ``image``, as a JPEG."""
    import cv2

    from fabricnms.report.batch import write_jpeg
    from fabricnms.report.overlay import draw_boxes

    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    dets = record.detections
    drawn = draw_boxes(
        bgr,
        [d.box for d in dets],
        [d.label for d in dets],
        class_names,
        [d.score for d in dets],
        segmentations=[d.rle for d in dets],
    )
    write_jpeg(path, drawn)
