"""Evaluation diagnostics: a confusion matrix, per-class PR curves and an F1-vs-confidence curve.

Inputs are the aligned per-frame :class:`~fabricnms.engine.metrics.FrameBoxes` of an
evaluation (ground truth: ``boxes [M, 4]`` xyxy px, ``labels [M]`` 0-based; detections also
``scores [N]``).

- Confusion matrix ``[C + 1, C + 1]``: rows are the true class, columns the predicted class,
  index ``C`` is *background*. Only detections scoring at least the operating threshold
  ``conf`` count. Per frame, detections in descending score order each take the unmatched
  ground-truth box they overlap most, whatever its class, when that IoU is at least ``iou``
  (0.5): ``[true, predicted]`` += 1 (the diagonal: right class). A detection left over is a
  false alarm, ``[C, predicted]``; a ground-truth box left over is missed, ``[true, C]``.
- PR curves: per class, precision against recall down the score ranking at IoU 0.5 (the
  matching of :func:`~fabricnms.engine.metrics.class_curve`, as mAP scores it).
- F1 vs confidence: per class with ground truth, F1 = 2PR / (P + R) of the detections
  scoring at least each threshold on a 0..1 grid, and their mean; the operating threshold and
  the threshold of the best mean F1 are marked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fabricnms.engine.metrics import ClassCurve, FrameBoxes, box_iou, class_curves
from fabricnms.engine.plots import pyplot, save_png

#: File names written into an eval run folder.
DIAGNOSTIC_FILES = {
    "confusion_matrix": "confusion_matrix.png",
    "pr_curves": "pr_curves.png",
    "f1_curve": "f1_confidence.png",
}
#: Confidence grid of the F1 curve.
CONF_GRID = np.linspace(0.0, 1.0, 101)


def confusion_matrix(
    gts: Sequence[FrameBoxes],
    preds: Sequence[FrameBoxes],
    num_classes: int,
    conf: float,
    iou: float = 0.5,
) -> np.ndarray:
    """``[C + 1, C + 1]`` int64 counts, rows true class, columns predicted (module docstring)."""
    bg = num_classes
    matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    for gt, pred in zip(gts, preds, strict=True):
        scores = pred.scores if pred.scores is not None else np.ones(len(pred.labels))
        keep = np.nonzero(scores >= conf)[0]
        keep = keep[np.argsort(-scores[keep], kind="mergesort")]
        taken = np.zeros(len(gt.labels), dtype=bool)
        overlaps = box_iou(pred.boxes[keep], gt.boxes) if len(keep) and len(gt.labels) else None
        for row, k in enumerate(keep):
            predicted = int(pred.labels[k])
            if overlaps is not None:
                free = np.where(taken, -1.0, overlaps[row])
                j = int(np.argmax(free))
                if free[j] >= iou:
                    taken[j] = True
                    matrix[int(gt.labels[j]), predicted] += 1
                    continue
            matrix[bg, predicted] += 1
        np.add.at(matrix[:, bg], gt.labels[~taken].astype(np.int64), 1)
    return matrix


def f1_by_conf(curve: ClassCurve, grid: np.ndarray = CONF_GRID) -> np.ndarray:
    """F1 ``[len(grid)]`` of the detections scoring at least each threshold (0 with none)."""
    out = np.zeros(len(grid))
    for i, conf in enumerate(grid):
        recall, precision = curve.at_conf(float(conf), 0)
        if recall + precision > 0:
            out[i] = 2 * recall * precision / (recall + precision)
    return out


@dataclass(frozen=True)
class Diagnostics:
    """What :func:`diagnose` found: the confusion matrix, the mean F1 curve over
    :data:`CONF_GRID`, the operating ``conf`` and the F1 there, the best threshold."""

    matrix: np.ndarray
    mean_f1: np.ndarray
    conf: float
    f1_at_conf: float
    best_conf: float
    best_f1: float

    def as_dict(self, names: Sequence[str]) -> dict[str, Any]:
        """JSON values: the matrix with its row/column labels (``names`` + background)."""
        return {
            "confusion_matrix": {
                "labels": [*names, "background"],
                "rows": "true class",
                "columns": "predicted class",
                "iou": 0.5,
                "conf": self.conf,
                "counts": self.matrix.tolist(),
            },
            "f1_at_conf": round(self.f1_at_conf, 4),
            "best_f1": round(self.best_f1, 4),
            "best_f1_conf": round(self.best_conf, 2),
        }


def diagnose(
    gts: Sequence[FrameBoxes], preds: Sequence[FrameBoxes], names: Sequence[str], conf: float
) -> tuple[Diagnostics, list[ClassCurve | None]]:
    """Confusion matrix at ``conf``, per-class curves and the mean F1 curve."""
    curves = class_curves(gts, preds, len(names), (0.5,))
    present = [c for c in curves if c is not None]
    mean_f1 = (
        np.mean([f1_by_conf(c) for c in present], axis=0) if present else np.zeros(len(CONF_GRID))
    )
    best = int(np.argmax(mean_f1))
    at = [f1_by_conf(c, np.array([conf]))[0] for c in present]
    return (
        Diagnostics(
            matrix=confusion_matrix(gts, preds, len(names), conf),
            mean_f1=mean_f1,
            conf=conf,
            f1_at_conf=float(np.mean(at)) if at else 0.0,
            best_conf=float(CONF_GRID[best]),
            best_f1=float(mean_f1[best]),
        ),
        curves,
    )


def write_diagnostics(
    out_dir: str | Path,
    gts: Sequence[FrameBoxes],
    preds: Sequence[FrameBoxes],
    names: Sequence[str],
    conf: float,
) -> tuple[Diagnostics, dict[str, Path]]:
    """Compute the diagnostics and write the three PNGs of :data:`DIAGNOSTIC_FILES`."""
    out = Path(out_dir)
    diag, curves = diagnose(gts, preds, names, conf)
    files = {
        "confusion_matrix": _plot_matrix(diag, names, out / DIAGNOSTIC_FILES["confusion_matrix"]),
        "pr_curves": _plot_pr(curves, names, out / DIAGNOSTIC_FILES["pr_curves"]),
        "f1_curve": _plot_f1(diag, curves, names, out / DIAGNOSTIC_FILES["f1_curve"]),
    }
    return diag, files


def _used_classes(matrix: np.ndarray) -> list[int]:
    """Indices of the rows/columns with any count (background always)."""
    c = matrix.shape[0] - 1
    used = [i for i in range(c) if matrix[i].any() or matrix[:, i].any()]
    return [*used, c]


def _plot_matrix(diag: Diagnostics, names: Sequence[str], path: Path) -> Path:
    plt = pyplot()
    idx = _used_classes(diag.matrix)
    sub = diag.matrix[np.ix_(idx, idx)]
    labels = [[*names, "background"][i] for i in idx]
    size = 2.5 + 0.45 * len(idx)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(sub, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    for (i, j), v in np.ndenumerate(sub):
        if v:
            dark = v > sub.max() / 2
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8, color="w" if dark else "k")
    ax.set_xticks(range(len(idx)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(idx)), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion matrix (IoU 0.5, score >= {diag.conf:g}; classes seen)", fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)


def _plot_pr(curves: Sequence[ClassCurve | None], names: Sequence[str], path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 5.5))
    for name, curve in zip(names, curves, strict=True):
        if curve is None or len(curve.scores) == 0:
            continue
        recall, precision = curve.recall_precision()
        ax.plot(recall[:, 0], precision[:, 0], linewidth=1.2, label=name)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision")
    ax.set_title("Precision-recall per class (IoU 0.5)", fontsize=10)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7, ncol=2, loc="lower left")
    fig.tight_layout()
    return save_png(fig, path)


def _plot_f1(
    diag: Diagnostics, curves: Sequence[ClassCurve | None], names: Sequence[str], path: Path
) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    for curve in curves:
        if curve is not None:
            ax.plot(CONF_GRID, f1_by_conf(curve), color="#9aa3ab", linewidth=0.7)
    ax.plot(CONF_GRID, diag.mean_f1, color="#1f4e9c", linewidth=2.2, label="mean over classes")
    ax.axvline(diag.conf, color="#c5221f", linestyle="--")
    ax.plot([diag.conf], [diag.f1_at_conf], "o", color="#c5221f",
            label=f"operating threshold {diag.conf:g}: F1 {diag.f1_at_conf:.3f}")  # fmt: skip
    ax.plot([diag.best_conf], [diag.best_f1], "^", color="#1e8e3e",
            label=f"best mean F1 {diag.best_f1:.3f} at {diag.best_conf:.2f}")  # fmt: skip
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="confidence threshold", ylabel="F1 (IoU 0.5)")
    ax.set_title("F1 vs confidence (grey: each class)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return save_png(fig, path)
