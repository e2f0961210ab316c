"""Grading rules, with every expected number worked out by hand from grading.md."""

from __future__ import annotations

import pytest

from fabricnms.errors import FabricError
from fabricnms.report.grading import (
    MM_PER_IN,
    MM_PER_YD,
    GradingRules,
    PhysicalDefect,
    defect_kind,
    grade,
    points_4pt,
    points_10pt,
)

IN = MM_PER_IN
YD = MM_PER_YD
W = 1500.0  # roll width mm: defects placed mid-width are far from the selvages


def weft(length_mm: float, at_mm: float = 100.0, kind: str = "normal") -> PhysicalDefect:
    """A defect ``length_mm`` across the roll, 2 mm along, centred at ``at_mm`` along."""
    return PhysicalDefect(300.0, at_mm - 1, 300.0 + length_mm, at_mm + 1, kind)


def warp(length_mm: float, start_mm: float = 100.0, kind: str = "normal") -> PhysicalDefect:
    """A defect 2 mm across and ``length_mm`` along the roll from ``start_mm``."""
    return PhysicalDefect(700.0, start_mm, 702.0, start_mm + length_mm, kind)


FOUR = GradingRules().resolved()


@pytest.mark.parametrize(
    ("length_in", "points"),
    [(0.5, 1), (3.0, 1), (3.01, 2), (6.0, 2), (6.01, 3), (9.0, 3), (9.01, 4), (40.0, 4)],
)
def test_4pt_length_bands_inch_boundaries(length_in: float, points: int) -> None:
    assert points_4pt(weft(length_in * IN), FOUR) == points
    assert points_4pt(warp(length_in * IN), FOUR) == points  # warp or weft alike


def test_4pt_industry_table_differs_at_rounded_thresholds() -> None:
    industry = GradingRules(unit_table="industry").resolved()
    assert points_4pt(weft(76.0), FOUR) == 1  # 76 mm <= 3 in = 76.2 mm
    assert points_4pt(weft(76.0), industry) == 2  # 76 mm > 75 mm
    assert points_4pt(weft(229.0), FOUR) == 4  # > 228.6 mm
    assert points_4pt(weft(229.0), industry) == 3  # <= 230 mm


def test_holes_flat_and_size_variants() -> None:
    size = GradingRules(hole_rule="size").resolved()
    assert points_4pt(weft(3.0, kind="hole"), FOUR) == 4  # variant B: any hole 4
    assert points_4pt(weft(25.4, kind="hole"), size) == 2  # variant A: <= 1 in
    assert points_4pt(weft(25.5, kind="hole"), size) == 4
    assert points_10pt(weft(3.0, kind="hole"), W, GradingRules(system="10pt").resolved()) == 10


@pytest.mark.parametrize(
    ("length_in", "points"),
    [(1.0, 1), (1.01, 3), (5.0, 3), (5.01, 5), (10.0, 5), (10.01, 10), (36.0, 10)],
)
def test_10pt_warp_bands(length_in: float, points: int) -> None:
    rules = GradingRules(system="10pt").resolved()
    assert points_10pt(warp(length_in * IN), W, rules) == points


@pytest.mark.parametrize(
    ("length_mm", "points"),
    [(IN, 1), (IN + 0.1, 3), (5 * IN, 3), (5 * IN + 0.1, 5), (W / 2, 5), (W / 2 + 0.1, 10)],
)
def test_10pt_weft_bands_half_width(length_mm: float, points: int) -> None:
    rules = GradingRules(system="10pt").resolved()
    assert points_10pt(weft(length_mm), W, rules) == points


def test_4pt_per_yard_cap_and_normalisation() -> None:
    # yard 0: three 2-point defects (5 in) = 6 -> capped at 4; yard 1: one 1-point defect
    defects = [weft(5 * IN, 100), weft(5 * IN, 300), weft(5 * IN, 500), weft(2 * IN, YD + 50)]
    r = grade(defects, W, 10 * YD, GradingRules())
    assert [g.points for g in r.defects] == [2, 2, 2, 1]
    assert r.unit_points == {0: (6.0, 4.0), 1: (1.0, 1.0)}
    assert r.total_points == 5
    assert r.per_100_yd2 == pytest.approx(5 * 3600 / ((W / IN) * 10))
    assert r.per_100_m2 == pytest.approx(5 * 100_000 / (W * 10 * 0.9144))
    assert r.per_100_linear_yd == pytest.approx(50.0)


def test_worked_example_12_points_per_100_yd2() -> None:
    # grading.md 1.4: 150 yd, 56 in wide, 28 points -> 12.0 points / 100 yd2
    defects = [weft(10 * IN, at_mm=(k + 0.5) * YD) for k in range(7)]  # 7 yards x 4 points
    r = grade(defects, 56 * IN, 150 * YD, GradingRules())
    assert r.total_points == 28
    assert r.per_100_yd2 == pytest.approx(12.0)
    assert r.per_100_m2 == pytest.approx(28 * 100_000 / (56 * IN * 150 * 0.9144))
    assert r.verdict == "PASS" and r.score == pytest.approx(12.0)
    strict = grade(defects, 56 * IN, 150 * YD, GradingRules(limit=10))
    assert strict.verdict == "FAIL"
    assert strict.reasons == ["12.0 points per 100 yd² exceeds the limit 10"]
    metric = grade(defects, 56 * IN, 150 * YD, GradingRules(limit=14, limit_unit="100m2"))
    assert metric.verdict == "FAIL"  # 14.35 per 100 m2


def test_running_defect_scores_every_unit_it_touches() -> None:
    # 0.95 m .. 2.05 m along: yards 1 and 2 (8 points), metres 0, 1 and 2 (12 points)
    d = warp(1100.0, start_mm=950.0)
    by_yard = grade([d], W, 5000.0, GradingRules())
    assert by_yard.defects[0].running and by_yard.defects[0].units == [1, 2]
    assert by_yard.total_points == 8
    by_metre = grade([d], W, 5000.0, GradingRules(cap_unit="m"))
    assert by_metre.defects[0].units == [0, 1, 2] and by_metre.total_points == 12
    # exactly 9 in along is not running: one unit, 3 points
    short = grade([warp(9 * IN, start_mm=10.0)], W, 5000.0, GradingRules())
    assert not short.defects[0].running and short.total_points == 3


def test_continuing_class_gets_4_points_whatever_its_size() -> None:
    assert defect_kind("bar") == "continuing" and defect_kind("hole") == "hole"
    assert defect_kind("knot") == "normal"
    r = grade([weft(50.0, kind="continuing")], W, 5000.0, GradingRules())
    assert r.defects[0].running and r.total_points == 4


def test_selvage_exclusion_edges() -> None:
    inside = PhysicalDefect(0.0, 100.0, 25.4, 110.0)  # ends exactly on the 1 in margin
    across_edge = PhysicalDefect(0.0, 100.0, 25.5, 110.0)
    right = PhysicalDefect(W - 25.4, 300.0, W, 310.0)
    r = grade([inside, across_edge, right], W, 2000.0, GradingRules())
    assert [g.excluded for g in r.defects] == ["selvage", None, "selvage"]
    assert r.total_points == 1  # only across_edge scores: 25.5 mm long, 1 point
    # 10-point margin is 1/2 in: a defect ending at 20 mm counts there
    ten = grade([PhysicalDefect(0.0, 100.0, 20.0, 110.0)], W, 2000.0, GradingRules("10pt"))
    assert ten.defects[0].excluded is None


def test_10pt_cap_and_points_vs_yards_verdict() -> None:
    rules = GradingRules(system="10pt")
    # yard 0: 5 + 5 + 3 = 13 -> 10; a 10 yd roll with 10 points passes, 11 fails
    yard0 = [warp(7 * IN, 10.0), warp(7 * IN, 300.0), warp(3 * IN, 600.0)]
    r = grade(yard0, W, 10 * YD, rules)
    assert r.unit_points[0] == (13.0, 10.0) and r.total_points == 10
    assert r.per_100_linear_yd == pytest.approx(100.0) and r.verdict == "PASS"
    r2 = grade([*yard0, warp(0.5 * IN, YD + 10)], W, 10 * YD, rules)
    assert r2.total_points == 11 and r2.verdict == "FAIL"
    # a warp defect over 36 in runs: 10 points in every yard it touches
    long = grade([warp(40 * IN, 10.0)], W, 10 * YD, rules)
    assert long.defects[0].units == [0, 1] and long.total_points == 20


def test_wide_fabric_cap_scaling_and_running_rejection() -> None:
    defects = [weft(5 * IN, 100), weft(5 * IN, 300), weft(5 * IN, 500)]  # 6 raw in yard 0
    wide = 72 * IN
    assert grade(defects, wide, 10 * YD, GradingRules()).total_points == 4
    scaled = grade(defects, wide, 10 * YD, GradingRules(wide_fabric_ref_in=60))
    assert scaled.total_points == pytest.approx(4 * 72 / 60)
    run = [warp(11 * YD, 0.0)]
    ok = grade(run, W, 100 * YD, GradingRules(limit=1000))
    assert ok.verdict == "PASS"
    rejected = grade(run, W, 100 * YD, GradingRules(limit=1000, reject_running_over_yd=10))
    assert rejected.verdict == "FAIL" and "spans 11.0 yd" in rejected.reasons[0]


def test_invalid_rules_and_roll_size() -> None:
    with pytest.raises(FabricError, match="system must be one of 4pt, 10pt"):
        grade([], W, 1000.0, GradingRules(system="5pt"))
    with pytest.raises(FabricError, match="limit_unit"):
        grade([], W, 1000.0, GradingRules(limit_unit="yd"))
    with pytest.raises(FabricError, match="must be > 0"):
        grade([], 0.0, 1000.0, GradingRules())
    empty = grade([], W, 1000.0, GradingRules())
    assert empty.total_points == 0 and empty.verdict == "PASS"
