"""Evaluate a detector on a COCO split: tiled full frames, the predict postprocess, three metrics.

The same :func:`fabricnms.engine.tiling.detect_frames` path as ``predict`` produces the
detections; they are scored with pycocotools (the 12 summary numbers and per-class
AP/AP50/AP75, via :func:`fabricnms.data.coco_eval.coco_eval`) and with the Tianchi metric
(:mod:`fabricnms.engine.metrics`). Used by ``fabricnms eval`` and by validation during training.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fabricnms.data.coco_eval import STAT_KEYS, CocoEvalResult, coco_eval
from fabricnms.data.dataset import FrameRecord, read_frame
from fabricnms.engine.metrics import FrameBoxes, TianchiResult, tianchi_metrics
from fabricnms.engine.tiling import TileSettings, detect_frames
from fabricnms.model.types import Detections


@dataclass
class EvalReport:
    """One evaluation: ``results`` the COCO results list, ``gts`` / ``preds`` the boxes scored."""

    coco: CocoEvalResult
    tianchi: TianchiResult
    results: list[dict[str, Any]]
    names: tuple[str, ...]
    num_frames: int
    num_defective_frames: int
    instances: np.ndarray  # [C] ground-truth boxes per class
    images_per_class: np.ndarray  # [C] frames containing the class
    seconds: float
    gts: list[FrameBoxes]
    preds: list[FrameBoxes]
    edges: dict[str, Any] | None = None  # frames showing the fabric's edge (evaluate_frames)

    def class_rows(self) -> list[dict[str, Any]]:
        """Per-class table rows: boxes, images, COCO AP/AP50/AP75, Tianchi AP, and recall and
        precision at IoU 0.5 of the detections scoring at least ``acc_conf`` (-1: no GT)."""
        rows = []
        for c, name in enumerate(self.names):
            coco = self.coco.per_category.get(c + 1, {"AP": -1.0, "AP50": -1.0, "AP75": -1.0})
            tianchi = self.tianchi.ap[c]
            rows.append(
                {
                    "class": name,
                    "category_id": c + 1,
                    "images": int(self.images_per_class[c]),
                    "boxes": int(self.instances[c]),
                    "AP": coco["AP"],
                    "AP50": coco["AP50"],
                    "AP75": coco["AP75"],
                    "tianchi_AP": -1.0 if np.isnan(tianchi).any() else float(tianchi.mean()),
                    "recall50_at_conf": _or_missing(self.tianchi.recall_at_conf[c]),
                    "precision50_at_conf": _or_missing(self.tianchi.precision_at_conf[c]),
                }
            )
        return rows

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (COCO stats with faster-coco-eval key names)."""
        return {
            "frames": self.num_frames,
            "defective_frames": self.num_defective_frames,
            "detections": len(self.results),
            "seconds": round(self.seconds, 3),
            "frames_per_second": self.num_frames / self.seconds if self.seconds > 0 else None,
            "coco": self.coco.as_dict(),
            "tianchi": self.tianchi.as_dict(self.names),
            "per_class": self.class_rows(),
            "fabric_edges": self.edges,
        }

    def flat_metrics(self) -> dict[str, float]:
        """Scalar metrics for ``metrics.csv`` (prefixed ``val_``)."""
        out = {
            "val_tianchi_score": self.tianchi.score,
            "val_tianchi_mAP": self.tianchi.map,
            "val_acc": self.tianchi.acc,
        }
        stats = dict(zip(STAT_KEYS, self.coco.stats, strict=True))
        out["val_AP_50_95"] = stats["AP_all"]
        out["val_AP_50"] = stats["AP_50"]
        out["val_AR_100"] = stats["AR_third"]
        return out


def _or_missing(value: float) -> float:
    """``value`` as a float, -1 for NaN (no ground truth)."""
    return -1.0 if np.isnan(value) else float(value)


def detections_to_coco(image_id: int, det: Detections) -> list[dict[str, Any]]:
    """COCO results rows of one frame: ``bbox`` xywh float px, ``category_id`` 1-based; with
    masks also ``segmentation`` (COCO RLE of the frame) and ``area`` (mask pixels)."""
    boxes = det.boxes.detach().cpu().double().tolist()
    scores = det.scores.detach().cpu().double().tolist()
    labels = det.labels.detach().cpu().tolist()
    rows = [
        {
            "image_id": int(image_id),
            "category_id": int(label) + 1,
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "score": float(score),
        }
        for (x1, y1, x2, y2), score, label in zip(boxes, scores, labels, strict=True)
    ]
    if det.masks is not None:
        for row, rle, area in zip(rows, det.masks.to_rle(), det.masks.area().tolist(), strict=True):
            row.update(segmentation=rle, area=float(area))
    return rows


def _as_frame_boxes(det: Detections) -> FrameBoxes:
    return FrameBoxes(
        boxes=det.boxes.detach().cpu().double().numpy().reshape(-1, 4),
        labels=det.labels.detach().cpu().numpy().reshape(-1),
        scores=det.scores.detach().cpu().double().numpy().reshape(-1),
    )


def evaluate_frames(
    model: torch.nn.Module,
    frames: Sequence[FrameRecord],
    gt_coco: dict[str, Any],
    names: Sequence[str],
    settings: TileSettings,
    acc_conf: float = 0.3,
    device: torch.device | str = "cpu",
    on_frame: Callable[[int], None] | None = None,
) -> EvalReport:
    """Run tiled detection on ``frames`` and score it against ``gt_coco`` (validated COCO dict).

    ``on_frame(i)`` is called after each frame (progress display). ``gt_coco`` may list more
    images than ``frames`` (a capped validation); COCO metrics then use only evaluated images.
    The report's ``edges`` say on how many frames the fabric's edge was in view and how many
    labelled defects lay off what was inspected (:func:`~fabricnms.engine.predict_summary.
    edge_summary`).
    """
    from fabricnms.engine.predict_summary import edge_summary

    start = time.perf_counter()
    images = (read_frame(f) for f in frames)
    dets: list[Detections] = []
    edged = hidden = 0
    for i, det in enumerate(detect_frames(model, images, settings, device)):
        dets.append(det.to("cpu"))
        if det.cloth is not None and det.cloth.edges:
            edged += 1
            truths = torch.from_numpy(frames[i].boxes.astype(np.float32)).reshape(-1, 4)
            hidden += int((~det.cloth.keep(truths, settings.edge_band)).sum())
        if on_frame is not None:
            on_frame(i)
    report = score_detections(
        frames, dets, gt_coco, names, acc_conf, seconds=time.perf_counter() - start
    )
    report.edges = edge_summary(edged, settings.edge_band, hidden)
    return report


def score_detections(
    frames: Sequence[FrameRecord],
    dets: Sequence[Detections],
    gt_coco: dict[str, Any],
    names: Sequence[str],
    acc_conf: float = 0.3,
    seconds: float = 0.0,
) -> EvalReport:
    """Score one :class:`Detections` per frame (xyxy frame px, on the CPU) against ``gt_coco``:
    COCO stats and the Tianchi metric with frame accuracy at ``acc_conf``."""
    results: list[dict[str, Any]] = []
    preds: list[FrameBoxes] = []
    for frame, det in zip(frames, dets, strict=True):
        results.extend(detections_to_coco(frame.image_id, det))
        preds.append(_as_frame_boxes(det))
    gts = [FrameBoxes(boxes=f.boxes.astype(np.float64), labels=f.labels) for f in frames]
    nc = len(names)
    tianchi = tianchi_metrics(gts, preds, nc, acc_conf=acc_conf)
    coco = coco_eval(restrict_images(gt_coco, {f.image_id for f in frames}), results)
    images_per_class = np.zeros(nc, dtype=np.int64)
    for f in frames:
        images_per_class[np.unique(f.labels)] += 1
    return EvalReport(
        coco=coco,
        tianchi=tianchi,
        results=results,
        names=tuple(names),
        num_frames=len(frames),
        num_defective_frames=sum(1 for f in frames if len(f.labels)),
        instances=tianchi.num_gt,
        images_per_class=images_per_class,
        seconds=seconds,
        gts=gts,
        preds=preds,
    )


def restrict_images(coco: dict[str, Any], image_ids: set[int]) -> dict[str, Any]:
    """The COCO document limited to ``image_ids`` (unchanged when it has no other images)."""
    if all(im["id"] in image_ids for im in coco["images"]):
        return coco
    return {
        **coco,
        "images": [im for im in coco["images"] if im["id"] in image_ids],
        "annotations": [a for a in coco["annotations"] if a["image_id"] in image_ids],
    }
