"""Per-epoch training history: ``metrics.csv`` (explicit header) and its PNG plots.

A row is a flat dict: ``epoch`` (1-based), ``time_s``, ``lr``, ``train_<term>`` loss terms and
``val_<metric>`` validation metrics (blank in epochs without validation).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fabricnms.engine.plots import integer_ticks, pyplot, save_png
from fabricnms.io import atomic_write_text


def _columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    return columns


def write_metrics_csv(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """Rewrite ``metrics.csv`` with one row per epoch (union of keys, first-seen order)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_columns(rows), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(v) for k, v in row.items()})
    atomic_write_text(path, buffer.getvalue())


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return value


def _series(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for row in rows:
        value = row.get(key)
        if isinstance(value, (int, float)) and not math.isnan(float(value)):
            xs.append(int(row["epoch"]))
            ys.append(float(value))
    return xs, ys


def plot_history(rows: Sequence[dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """Write ``loss.png`` (training loss terms) and ``metrics.png`` (validation) to ``out_dir``,
    one panel per column against whole-number epochs. Returns the files written (none when
    there is nothing to plot)."""
    plt = pyplot()
    columns = _columns(rows)
    written = []
    for file_name, prefix, title in (
        ("loss.png", "train_", "training loss terms"),
        ("metrics.png", "val_", "validation metrics"),
    ):
        keys = [k for k in columns if k.startswith(prefix)]
        series = [(k, *_series(rows, k)) for k in keys]
        series = [s for s in series if s[1]]
        if not series:
            continue
        cols = min(3, len(series))
        nrows = math.ceil(len(series) / cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3 * nrows), squeeze=False)
        for ax in axes.flat[len(series) :]:
            ax.axis("off")
        for ax, (key, xs, ys) in zip(axes.flat, series, strict=False):
            ax.plot(xs, ys, marker="o", markersize=3)
            ax.set_title(key, fontsize=9)
            ax.set_xlabel("epoch", fontsize=8)
            integer_ticks(ax)
            ax.grid(alpha=0.3)
        fig.suptitle(title)
        fig.tight_layout()
        written.append(save_png(fig, Path(out_dir) / file_name))
    return written
