"""Synthetic box geometry against the real Tianchi round-1 statistics (stored numbers only)."""

from __future__ import annotations

import numpy as np
import pytest

from fabricnms.data.classes import RAW_CLASSES
from fabricnms.data.synth import render_frame
from fabricnms.data.synth_box_table import CATEGORY_REFERENCE, SIZE_TABLE
from fabricnms.data.synth_geometry import (
    GeometryStats,
    check_geometry,
    geometry_stats,
    plan_defects,
    sample_release_geometry,
)


def test_sampled_geometry_meets_the_real_bounds() -> None:
    """Per category with >= 30 real boxes: median w/h +-25 %, p10/p90 +-50 %, share +-25 %."""
    stats = geometry_stats(sample_release_geometry(np.random.default_rng(0), 1_000_000))
    assert check_geometry(stats) == []
    assert len([c for c, r in CATEGORY_REFERENCE.items() if r[0] >= 30]) == 16


def test_check_geometry_catches_the_old_generator() -> None:
    """The gaps the issue reported (old medians) fail the bounds."""
    real = {c: GeometryStats(n, s, w, h) for c, (n, s, w, h) in CATEGORY_REFERENCE.items()}
    old = dict(real)
    old[5] = GeometryStats(100, real[5].share, (60.0, 98.0, 160.0), (40.0, 70.0, 110.0))
    old[12] = GeometryStats(100, real[12].share, (900.0, 2370.0, 2446.0), (12.0, 19.0, 26.0))
    fails = check_geometry(old)
    assert any(f.startswith("pattern_skip: w p50") for f in fails)
    assert any(f.startswith("thick_weft: w p50") for f in fails)
    assert not any(f.startswith("hole") for f in fails)
    old[1] = GeometryStats(100, 2 * real[1].share, real[1].width, real[1].height)
    assert any(f.startswith("hole: share") for f in check_geometry(old))


def test_every_raw_name_has_a_size_table() -> None:
    assert set(SIZE_TABLE) == {r.raw for r in RAW_CLASSES}
    for wq, hq, rho in SIZE_TABLE.values():
        assert list(wq) == sorted(wq) and list(hq) == sorted(hq) and -1.0 <= rho <= 1.0


@pytest.mark.parametrize(("width", "height"), [(2446, 1000), (320, 256)])
def test_planned_boxes_fit_the_frame(width: int, height: int) -> None:
    rng = np.random.default_rng(1)
    names = [r.raw for r in RAW_CLASSES]
    for _ in range(30):
        for d in plan_defects(rng, names[:6] if width < 500 else names, width, height):
            x0, y0, x1, y1 = d.box
            tx0, ty0, tx1, ty1 = d.tight
            assert 0 <= x0 <= tx0 < tx1 <= x1 <= width + 1e-6
            assert 0 <= y0 <= ty0 < ty1 <= y1 <= height + 1e-6
            for lo, hi, tlo, thi, side in ((x0, x1, tx0, tx1, width), (y0, y1, ty0, ty1, height)):
                if hi - lo >= side - 1e-6:  # spanning: the defect runs the whole frame
                    assert (tlo, thi) == (lo, hi)
                else:  # the annotation is 10-40 % larger than the painted extent
                    assert 1.1 - 1e-6 <= (hi - lo) / (thi - tlo) <= 1.4 + 1e-6 or thi - tlo == 3.0
    names_1 = [d.raw_name for d in plan_defects(rng, ["粗经"] * 50, width, height)]
    assert names_1 == ["粗经"] * 50


def test_written_boxes_are_the_planned_real_sized_boxes() -> None:
    """Rendered full-size frames: a box is its planned size unless the mask pokes out."""
    frame = render_frame(4, 2446, 1000, raw_names=["粗维", "花板跳", "三丝", "断经"])
    for d in frame.defects:
        x0, y0, x1, y1 = d.box
        tx0, ty0, tx1, ty1 = d.tight_box
        assert x0 <= tx0 and y0 <= ty0 and tx1 <= x1 and ty1 <= y1
    skip = frame.defects[1]
    assert skip.box[2] - skip.box[0] > 600  # a pattern skip is a wide band, as real ones
