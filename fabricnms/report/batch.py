"""Batch overlays for ``fabricnms visualize``: sources -> drawn frames -> files and sheets.

Output layout in ``out_dir``: one ``<stem>.jpg`` per frame (``<folder>__<stem>.jpg`` when stems
repeat across folders) and, with ``grid > 0``, ``grid/sheet_001.jpg`` ... holding ``grid``
overlays each. Existing overlays are kept (resume) unless ``overwrite``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fabricnms.data.classes import class_names as default_class_names
from fabricnms.data.frame_reader import FrameReadError, read_frame_bgr
from fabricnms.engine.sources import discover_frames
from fabricnms.errors import FabricError
from fabricnms.io import atomic_write_bytes
from fabricnms.log import get_logger
from fabricnms.report.compose import contact_sheet, fit, side_by_side, titled
from fabricnms.report.label_layout import Rect
from fabricnms.report.labels import FrameLabels, LabelSet
from fabricnms.report.overlay import (
    DrawStyle,
    draw_boxes,
    draw_compare,
    shown_style,
    veil_outside,
)

log = get_logger("visualize")

MODES = ("overlay", "compare", "side-by-side")
GT_BGR = (255, 255, 255)
SHEET_CELL_W = 480
JPEG_QUALITY = 92


def resolve_sources(source: str) -> list[Path]:
    """An image file, a folder (searched recursively), a glob or a ``.txt`` list -> image
    paths, natural order (:func:`fabricnms.engine.sources.discover_frames`)."""
    return discover_frames([source], recursive=True)


def output_names(paths: list[Path]) -> list[str]:
    """``<stem>.jpg`` per path; paths relative to their common folder (``/`` -> ``__``) when
    stems collide."""
    stems = [p.stem for p in paths]
    if len(set(stems)) == len(stems):
        return [s + ".jpg" for s in stems]
    root = os.path.commonpath([str(p.parent.absolute()) for p in paths])
    rel = [os.path.relpath(str(p.absolute()), root) for p in paths]
    return [os.path.splitext(r)[0].replace(os.sep, "__") + ".jpg" for r in rel]


@dataclass
class VisualizeSummary:
    """Counts of a batch: frames drawn, kept from an earlier run, unreadable; TP/FP/FN totals
    in compare mode; the sheets written."""

    out_dir: Path
    drawn: int = 0
    kept: int = 0
    unreadable: list[str] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=lambda: {"tp": 0, "fp": 0, "fn": 0})
    sheets: list[Path] = field(default_factory=list)


def render_frame(
    image: np.ndarray,
    gt: FrameLabels | None,
    pred: FrameLabels | None,
    mode: str,
    class_names: list[str],
    iou_threshold: float = 0.5,
    style: DrawStyle | None = None,
) -> tuple[np.ndarray, dict[str, int]]:
    """Draw one frame. ``overlay``: ground truth (white, thin, ``GT`` labels when predictions
    are drawn too, class colours otherwise) and predictions in class colours; ``compare``:
    TP green / FP red / FN yellow; ``side-by-side``: ground truth left, predictions right.
    Where the predictions' frame showed the fabric's edge, what ``predict`` did not inspect is
    veiled (:func:`~fabricnms.report.overlay.veil_outside`), as in its own overlays.

    ``style``: line and label sizes (default: :func:`~fabricnms.report.overlay.style_for` the
    frame). Returns the image and TP/FP/FN counts (zeros outside compare mode).
    """
    counts = {"tp": 0, "fp": 0, "fn": 0}
    if pred is not None and pred.inspected is not None:  # predict looked only inside it
        image = image.copy()
        veil_outside(image, pred.inspected)
    if mode == "compare":
        assert gt is not None and pred is not None
        return draw_compare(
            image,
            gt.boxes,
            gt.labels,
            pred.boxes,
            pred.labels,
            pred.scores or [],
            class_names,
            iou_threshold,
            style,
        )

    taken: list[Rect] = []  # labels placed so far: predictions avoid the GT names

    def draw_gt(img: np.ndarray, plain: bool) -> np.ndarray:
        assert gt is not None
        colors = None if plain else [GT_BGR] * len(gt.boxes)
        return draw_boxes(img, gt.boxes, gt.labels, class_names, None, gt.segmentations, colors,
                          "" if plain else "GT ", not plain, style, taken)  # fmt: skip

    def draw_pred(img: np.ndarray) -> np.ndarray:
        assert pred is not None
        return draw_boxes(img, pred.boxes, pred.labels, class_names, pred.scores,
                          pred.segmentations, style=style, taken=taken)  # fmt: skip

    if mode == "side-by-side":
        assert gt is not None and pred is not None
        left = titled(draw_gt(image, True), f"ground truth: {len(gt.boxes)}")
        taken.clear()
        right = titled(draw_pred(image), f"predictions: {len(pred.boxes)}")
        return side_by_side(left, right), counts
    out = image
    if gt is not None:
        out = draw_gt(out, pred is None)
    if pred is not None:
        out = draw_pred(out)
    return (out.copy() if out is image else out), counts


def write_jpeg(path: Path, image: np.ndarray) -> None:
    """Encode a BGR ``image`` as JPEG (quality :data:`JPEG_QUALITY`) and write it atomically."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise FabricError(f"{path}: could not encode the overlay")
    atomic_write_bytes(path, buf.tobytes())


def visualize_batch(
    sources: list[Path],
    out_dir: Path,
    annotations: LabelSet | None = None,
    predictions: LabelSet | None = None,
    mode: str = "overlay",
    conf: float = 0.25,
    grid: int = 0,
    overwrite: bool = False,
    iou_threshold: float = 0.5,
    advance: Callable[[], None] | None = None,
) -> VisualizeSummary:
    """Draw every source frame into ``out_dir``; see the module docstring for the layout.

    Predictions below ``conf`` are not drawn. Unreadable frames are logged and skipped.
    ``advance`` is called once per frame (progress bars).
    """
    if mode not in MODES:
        raise FabricError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    if mode != "overlay" and (annotations is None or predictions is None):
        raise FabricError(f"mode {mode} needs both annotations and predictions")
    labelled = annotations or predictions
    class_names = labelled.class_names if labelled is not None else default_class_names(20)
    summary = VisualizeSummary(out_dir=out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sheet: list[tuple[str, np.ndarray]] = []

    def flush_sheet() -> None:
        if sheet:
            path = out_dir / "grid" / f"sheet_{len(summary.sheets) + 1:03d}.jpg"
            write_jpeg(path, contact_sheet(sheet, math.ceil(math.sqrt(grid)), SHEET_CELL_W))
            summary.sheets.append(path)
            sheet.clear()

    for src, name in zip(sources, output_names(sources), strict=True):
        target = out_dir / name
        kept = target.exists() and not overwrite
        image: np.ndarray | None = None
        if grid or not kept:
            try:
                image = read_frame_bgr(src)
            except FrameReadError as exc:
                log.warning("%s, skipped", exc)
                summary.unreadable.append(str(src))
        gt = annotations.get(src.name) if annotations else None
        pred = predictions.get(src.name).above(conf) if predictions else None
        if kept:
            summary.kept += 1
        elif image is not None:
            drawn, counts = render_frame(image, gt, pred, mode, class_names, iou_threshold)
            for k, v in counts.items():
                summary.outcomes[k] += v
            write_jpeg(target, drawn)
            summary.drawn += 1
        if grid and image is not None:  # drawn again with labels sized for the sheet's cell
            shown = SHEET_CELL_W // (2 if mode == "side-by-side" else 1)
            style = shown_style(*image.shape[:2], shown)
            cell, _ = render_frame(image, gt, pred, mode, class_names, iou_threshold, style)
            sheet.append((src.name, fit(cell, SHEET_CELL_W, SHEET_CELL_W)))
            if len(sheet) == grid:
                flush_sheet()
        if advance is not None:
            advance()
    flush_sheet()
    return summary
