"""What ``train`` shows while it runs: a bar per epoch, a bar for validation, one line per epoch.

The epoch bar is ``epoch 3/30 ━━━━━━ 120/400 0:01:02 eta 0:02:40 loss 1.234``: the running
mean of the total loss only (the single terms are in ``metrics.csv``), and fixed-width columns,
so the bar fits an 80-column terminal instead of the loss text squeezing the description to
``epo…``. Validation gets its own bar (``val 3/30``, frames). After each epoch one line sums it
up (:func:`epoch_line`); every metric of the epoch is in ``metrics.csv``. Bars are shown on
rank 0 only and only on a terminal (rich disables them otherwise).
"""

from __future__ import annotations

from typing import Any

from fabricnms.log import console

#: Width of the bar itself; the other columns are a few characters each.
BAR_WIDTH = 24
_AP_FIELDS = (("AP", "val_AP_50_95"), ("AP50", "val_AP_50"))


def progress_bar(enabled: bool, out: Any = None) -> Any:
    """A rich Progress (on ``out``, default the package console) whose tasks carry a ``loss``
    field (text, may be empty)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Column

    return Progress(
        TextColumn("{task.description}", table_column=Column(no_wrap=True, min_width=11)),
        BarColumn(bar_width=BAR_WIDTH),
        MofNCompleteColumn(table_column=Column(no_wrap=True)),
        TimeElapsedColumn(table_column=Column(no_wrap=True)),
        TextColumn("eta", table_column=Column(no_wrap=True)),
        TimeRemainingColumn(table_column=Column(no_wrap=True)),
        TextColumn("{task.fields[loss]}", table_column=Column(no_wrap=True)),
        console=console if out is None else out,
        disable=not enabled,
        transient=False,
    )


def epoch_line(row: dict[str, Any], epochs: int, best: float | None, best_epoch: int) -> str:
    """``epoch 3/30: loss 1.234, val score 0.456 (AP 0.12, AP50 0.31), best 0.470 at epoch 2,
    62 s`` from a ``metrics.csv`` row (validation parts only when the epoch validated)."""
    parts = [f"loss {row.get('train_loss', float('nan')):.4g}"]
    if "val_tianchi_score" in row:
        aps = [f"{name} {row[key]:.3f}" for name, key in _AP_FIELDS if key in row]
        parts.append(
            f"val score {row['val_tianchi_score']:.3f}" + (f" ({', '.join(aps)})" if aps else "")
        )
    if best is not None:
        parts.append(f"best {best:.3f} at epoch {best_epoch}")
    parts.append(f"{row['time_s']:.0f} s")
    return f"epoch {row['epoch']}/{epochs}: " + ", ".join(parts)
