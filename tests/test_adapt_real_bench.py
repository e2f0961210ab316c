"""``benchmarks/adapt_real.py``: the clean rectangle of a boxed frame and the seed summary."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "adapt_real.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    sys.path.insert(0, str(BENCH.parent))
    spec = importlib.util.spec_from_file_location("adapt_real", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_largest_clean_rect_keeps_the_margin(bench: ModuleType) -> None:
    m = bench.BOX_MARGIN
    # one box in the top-left corner: the largest free rectangle is below or right of it
    x0, y0, x1, y1 = bench.largest_clean_rect(100, 200, np.array([[0, 0, 50, 40]]))
    assert (x0, y0, x1, y1) == (50 + m, 0, 200, 100)
    assert bench.largest_clean_rect(64, 64, np.zeros((0, 4))) == (0, 0, 64, 64)


def test_summarise_gives_mean_and_std_over_seeds(bench: ModuleType) -> None:
    rows = [
        {"set": "s", "conf": 0.2, "painted_recall": 0.1, "recall_any_class": 0.5, "warns": False},
        {"set": "s", "conf": 0.4, "painted_recall": 0.3, "recall_any_class": 0.7, "warns": True},
    ]
    out = bench.summarise(rows)
    assert out["model"] == "adapted, 2 seeds"
    assert out["conf"] == "0.3 +- 0.1"
    assert out["recall_any_class"] == "0.6 +- 0.1"
    assert out["warns"] == "1/2"
    assert "shift_median" not in out
    row = "| s | adapted, 2 seeds | 0.3 +- 0.1 | 0.2 +- 0.1 | 0.6 +- 0.1 | - |"
    assert row in bench.render([out])
