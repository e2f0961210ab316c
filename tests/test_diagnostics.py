"""Eval diagnostics on a hand-made case: confusion matrix counts, F1 at the threshold, PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fabricnms.engine.diagnostics import DIAGNOSTIC_FILES, confusion_matrix, write_diagnostics
from fabricnms.engine.history import plot_history
from fabricnms.engine.metrics import FrameBoxes

A, B, C, EMPTY = [0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30], [80, 0, 90, 10]


def boxes(*rows: tuple[list[int], int, float]) -> FrameBoxes:
    return FrameBoxes(
        boxes=np.array([b for b, _, _ in rows], dtype=np.float64).reshape(-1, 4),
        labels=np.array([c for _, c, _ in rows], dtype=np.int64),
        scores=np.array([s for _, _, s in rows], dtype=np.float64),
    )


# frame 1: a on A, b on B; frame 2: a on C (never found)
GTS = [boxes((A, 0, 1), (B, 1, 1)), boxes((C, 0, 1))]
PREDS = [
    boxes(
        (A, 0, 0.9),  # right: [a, a]
        (B, 0, 0.8),  # the b box called a: [b, a]
        (EMPTY, 1, 0.7),  # a false alarm called b: [background, b]
        (A, 1, 0.1),  # under the threshold: not counted
    ),
    boxes(),
]


def test_confusion_matrix_counts_with_background_row_and_column() -> None:
    matrix = confusion_matrix(GTS, PREDS, num_classes=2, conf=0.25)
    # rows true a, b, background; columns predicted a, b, background
    assert matrix.tolist() == [[1, 0, 1], [1, 0, 0], [0, 1, 0]]
    # every ground-truth box is counted once in its row, every kept detection once in a column
    assert matrix[:2].sum() == 3 and matrix[:, :2].sum() == 3
    low = confusion_matrix(GTS, PREDS, num_classes=2, conf=0.05)
    assert low.tolist() == [[1, 0, 1], [1, 0, 0], [0, 2, 0]]  # the 0.1 b on the taken A box


def test_diagnostics_files_and_f1_at_the_operating_threshold(tmp_path: Path) -> None:
    diag, files = write_diagnostics(tmp_path, GTS, PREDS, ["a", "b"], conf=0.25)
    assert {k: p.name for k, p in files.items()} == DIAGNOSTIC_FILES
    for path in files.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # class a at 0.25: 1 of its 2 boxes found, 1 of its 2 detections right -> F1 0.5; b: 0
    assert diag.f1_at_conf == pytest.approx(0.25)
    data = diag.as_dict(["a", "b"])
    assert data["confusion_matrix"]["labels"] == ["a", "b", "background"]
    assert data["confusion_matrix"]["counts"][2] == [0, 1, 0]
    assert diag.best_f1 >= diag.f1_at_conf


def test_training_plots_use_whole_epochs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fabricnms.engine.history as history

    ticks: list[list[float]] = []

    def keep(fig, path):  # type: ignore[no-untyped-def]
        fig.canvas.draw()
        ticks.extend(list(ax.get_xticks()) for ax in fig.axes if ax.lines)
        return Path(path)

    monkeypatch.setattr(history, "save_png", keep)
    rows = [{"epoch": e, "train_loss": 1.0 / e, "val_AP_50": 0.1 * e} for e in (1, 2, 3)]
    written = plot_history(rows, tmp_path)
    assert [p.name for p in written] == ["loss.png", "metrics.png"]
    assert ticks and all(float(t).is_integer() for row in ticks for t in row)
