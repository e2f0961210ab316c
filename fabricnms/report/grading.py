"""Textile grading: 4-point (ASTM D5430 option A as commonly described) and 10-point systems.

Pure functions over physical defects; see ``reference/grading.md`` for the sources and the
variants. Conventions: lengths in millimetres; ``x`` runs across the fabric from the left
selvage (weft), ``y`` along the roll from its start (warp). Every variant is a named field of
:class:`GradingRules`; :func:`grade` reports the resolved rules alongside its verdict.

How points are placed (``grade``):

- Points per defect: 4-point from the longest dimension (<= 3 / 6 / 9 in -> 1 / 2 / 3, else 4);
  10-point from the length in the defect's direction (warp when it is at least as long along
  the roll as across it): warp <= 1 / 5 / 10 in -> 1 / 3 / 5, else 10; weft <= 1 / 5 in ->
  1 / 3, <= half the fabric width -> 5, else 10.
- Holes (:data:`HOLE_CLASSES`): 4-point ``hole_rule="flat"`` (default, variant B) 4 points;
  ``"size"`` (variant A) 2 points up to 1 in, else 4. 10-point: 10 points.
- Running defects get the per-defect maximum (4 or 10) in **every** cap unit (yard or metre)
  their extent along the roll touches: continuing conditions (:data:`CONTINUING_CLASSES`:
  bars, set creases) whatever their size, and defects longer along the roll than 9 in
  (4-point) or 36 in (10-point). Every other defect puts its points in the unit holding its
  centre.
- Per cap unit at most 4 (4-point) or 10 (10-point) points; optionally scaled up in
  proportion to width above ``wide_fabric_ref_in``.
- Selvage exclusion: a defect lying entirely within the margin of either selvage scores 0.
- Normalisation: points / 100 yd2 = P * 3600 / (W[in] * L[yd]); points / 100 m2 =
  P * 100000 / (W[mm] * L[m]); points / 100 linear yd = P * 100 / L[yd].
- Verdict PASS when the score in ``limit_unit`` is <= ``limit``. Defaults: 4-point 40 points
  per 100 yd2 (the widely quoted general limit; agencies often use 28); 10-point 100 points
  per 100 linear yards, i.e. total points <= yards inspected.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from fabricnms.errors import FabricError

MM_PER_IN = 25.4
MM_PER_YD = 914.4
MM_PER_M = 1000.0

SYSTEMS = ("4pt", "10pt")
HOLE_RULES = ("flat", "size")
UNIT_TABLES = ("inch", "industry")
CAP_UNITS = ("yd", "m")
LIMIT_UNITS = ("100yd2", "100m2", "100linyd")
#: Human labels of the limit units, as reports print them.
LIMIT_UNIT_LABELS: dict[str, str] = {
    "100yd2": "100 yd²",
    "100m2": "100 m²",
    "100linyd": "100 linear yd",
}

#: Class names (20-category and 34-fine schemes) graded with the hole rule.
HOLE_CLASSES: frozenset[str] = frozenset({"hole"})
#: Continuing conditions: 4 (or 10) points in every yard they occur in. Category 18 "bar"
#: (thin/thick, wavy and shade bars: barre and shading) and the fine class "set_crease"
#: (category 20 mixes creases with point faults, so only the fine scheme can flag creases).
CONTINUING_CLASSES: frozenset[str] = frozenset(
    {"bar", "thin_thick_bar", "wavy_bar", "shade_bar", "set_crease"}
)

#: Length thresholds in mm per unit table: 4-point steps, the hole size step (1 in), the
#: 10-point warp steps and the 10-point weft steps (the last weft step is half the width).
_THRESHOLDS: dict[str, dict[str, tuple[float, ...]]] = {
    "inch": {
        "4pt": (3 * MM_PER_IN, 6 * MM_PER_IN, 9 * MM_PER_IN),
        "hole": (MM_PER_IN,),
        "10pt_warp": (MM_PER_IN, 5 * MM_PER_IN, 10 * MM_PER_IN, 36 * MM_PER_IN),
        "10pt_weft": (MM_PER_IN, 5 * MM_PER_IN),
    },
    "industry": {
        "4pt": (75.0, 150.0, 230.0),
        "hole": (25.0,),
        "10pt_warp": (25.0, 127.0, 254.0, 914.0),
        "10pt_weft": (25.0, 127.0),
    },
}
_TOL = 1e-6  # mm; a length exactly on a threshold belongs to the lower band


def defect_kind(class_name: str) -> str:
    """``"hole"``, ``"continuing"`` or ``"normal"`` for a class name of either scheme."""
    if class_name in HOLE_CLASSES:
        return "hole"
    if class_name in CONTINUING_CLASSES:
        return "continuing"
    return "normal"


@dataclass(frozen=True)
class GradingRules:
    """Rule set; ``None`` fields take the system's default (see :meth:`resolved`)."""

    system: str = "4pt"
    hole_rule: str = "flat"
    unit_table: str = "inch"
    selvage_margin_mm: float | None = None  # 4pt: 1 in, 10pt: 1/2 in
    cap_unit: str = "yd"
    cap_points: float | None = None  # per cap unit; 4pt: 4, 10pt: 10
    wide_fabric_ref_in: float | None = None  # scale the cap by width / ref above this width
    limit: float | None = None  # 4pt: 40, 10pt: 100
    limit_unit: str | None = None  # 4pt: "100yd2", 10pt: "100linyd"
    reject_running_over_yd: float | None = None  # buyer option: FAIL regardless of points

    def resolved(self) -> GradingRules:
        """Validate and fill the system defaults."""
        for name, allowed in (
            ("system", SYSTEMS),
            ("hole_rule", HOLE_RULES),
            ("unit_table", UNIT_TABLES),
            ("cap_unit", CAP_UNITS),
        ):
            if getattr(self, name) not in allowed:
                raise FabricError(
                    f"grading: {name} must be one of {', '.join(allowed)}, "
                    f"got {getattr(self, name)!r}"
                )
        if self.limit_unit is not None and self.limit_unit not in LIMIT_UNITS:
            raise FabricError(
                f"grading: limit_unit must be one of {', '.join(LIMIT_UNITS)}, "
                f"got {self.limit_unit!r}"
            )
        four = self.system == "4pt"
        out = replace(
            self,
            selvage_margin_mm=(
                (MM_PER_IN if four else MM_PER_IN / 2)
                if self.selvage_margin_mm is None
                else self.selvage_margin_mm
            ),
            cap_points=(4.0 if four else 10.0) if self.cap_points is None else self.cap_points,
            limit=(40.0 if four else 100.0) if self.limit is None else self.limit,
            limit_unit=("100yd2" if four else "100linyd")
            if self.limit_unit is None
            else self.limit_unit,
        )
        for name in ("selvage_margin_mm", "cap_points", "limit"):
            value = getattr(out, name)
            if not (math.isfinite(value) and value >= 0):
                raise FabricError(f"grading: {name} must be a number >= 0, got {value!r}")
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain values."""
        return asdict(self)


@dataclass(frozen=True)
class PhysicalDefect:
    """A defect on the roll: across ``x1_mm..x2_mm`` from the left selvage, along
    ``y1_mm..y2_mm`` from the roll start, and its ``kind`` (:func:`defect_kind`)."""

    x1_mm: float
    y1_mm: float
    x2_mm: float
    y2_mm: float
    kind: str = "normal"

    @property
    def across_mm(self) -> float:
        """Extent across the roll (weft direction)."""
        return self.x2_mm - self.x1_mm

    @property
    def along_mm(self) -> float:
        """Extent along the roll (warp direction)."""
        return self.y2_mm - self.y1_mm


@dataclass
class DefectGrade:
    """Grading of one defect: ``points`` it contributes before the per-unit caps (a running
    defect contributes in several units), the ``units`` it contributes to, the graded
    ``length_mm`` and ``direction``, and why it was ``excluded`` (or None)."""

    points: float
    units: list[int]
    length_mm: float
    direction: str
    running: bool
    excluded: str | None = None


@dataclass
class GradeResult:
    """Roll-level grading. ``unit_points`` maps cap-unit index -> (raw, capped) points for
    every unit holding points; the scores are normalised as the module docstring states."""

    rules: GradingRules
    width_mm: float
    length_mm: float
    defects: list[DefectGrade]
    unit_points: dict[int, tuple[float, float]]
    total_points: float
    per_100_yd2: float
    per_100_m2: float
    per_100_linear_yd: float
    score: float
    verdict: str
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the per-defect grades are reported with the defects)."""
        unit_mm = MM_PER_YD if self.rules.cap_unit == "yd" else MM_PER_M
        return {
            "rules": self.rules.to_dict(),
            "width_mm": self.width_mm,
            "length_m": self.length_mm / MM_PER_M,
            "total_points": self.total_points,
            "points_per_100_yd2": round(self.per_100_yd2, 3),
            "points_per_100_m2": round(self.per_100_m2, 3),
            "points_per_100_linear_yd": round(self.per_100_linear_yd, 3),
            "score": round(self.score, 3),
            "limit": self.rules.limit,
            "limit_unit": self.rules.limit_unit,
            "verdict": self.verdict,
            "reasons": self.reasons,
            "cap_units": [
                {
                    "index": i,
                    "start_m": i * unit_mm / MM_PER_M,
                    "raw_points": raw,
                    "points": capped,
                }
                for i, (raw, capped) in sorted(self.unit_points.items())
            ],
        }


def _band(length_mm: float, thresholds: tuple[float, ...], points: tuple[float, ...]) -> float:
    """``points[i]`` for the first threshold ``length_mm`` does not exceed, else the last."""
    for limit, pts in zip(thresholds, points, strict=False):
        if length_mm <= limit + _TOL:
            return pts
    return points[len(thresholds)]


def points_4pt(defect: PhysicalDefect, rules: GradingRules) -> float:
    """4-point points of one defect from its longest dimension (per-defect cap 4)."""
    table = _THRESHOLDS[rules.unit_table]
    length = max(defect.across_mm, defect.along_mm)
    if defect.kind == "hole":
        if rules.hole_rule == "flat":
            return 4.0
        return _band(length, table["hole"], (2.0, 4.0))
    return _band(length, table["4pt"], (1.0, 2.0, 3.0, 4.0))


def points_10pt(defect: PhysicalDefect, width_mm: float, rules: GradingRules) -> float:
    """10-point points of one defect from its length in its own direction (cap 10)."""
    table = _THRESHOLDS[rules.unit_table]
    if defect.kind == "hole":
        return 10.0
    if defect.along_mm >= defect.across_mm:
        return _band(defect.along_mm, table["10pt_warp"][:3], (1.0, 3.0, 5.0, 10.0))
    weft = (*table["10pt_weft"], width_mm / 2)
    return _band(defect.across_mm, weft, (1.0, 3.0, 5.0, 10.0))


def _units_touched(y1: float, y2: float, unit_mm: float, n_units: int) -> list[int]:
    first = math.floor(max(y1, 0.0) / unit_mm)
    last = math.floor(max(y2 - _TOL, y1, 0.0) / unit_mm)
    return list(range(min(first, n_units - 1), min(last, n_units - 1) + 1))


def grade(
    defects: list[PhysicalDefect], width_mm: float, length_mm: float, rules: GradingRules
) -> GradeResult:
    """Grade a roll ``width_mm`` wide and ``length_mm`` long holding ``defects``."""
    if not (width_mm > 0 and length_mm > 0):
        raise FabricError(
            f"grading: roll width and length must be > 0, got {width_mm} mm x {length_mm} mm"
        )
    r = rules.resolved()
    assert r.selvage_margin_mm is not None and r.cap_points is not None and r.limit is not None
    four = r.system == "4pt"
    unit_mm = MM_PER_YD if r.cap_unit == "yd" else MM_PER_M
    n_units = max(1, math.ceil(length_mm / unit_mm - 1e-9))
    per_defect_max = 4.0 if four else 10.0
    running_over = _THRESHOLDS[r.unit_table]["4pt" if four else "10pt_warp"][-1]

    grades: list[DefectGrade] = []
    raw_units: dict[int, float] = {}
    for d in defects:
        warp = d.along_mm >= d.across_mm
        length = max(d.across_mm, d.along_mm) if four else (d.along_mm if warp else d.across_mm)
        direction = "warp" if warp else "weft"
        margin = r.selvage_margin_mm
        if d.x2_mm <= margin + _TOL or d.x1_mm >= width_mm - margin - _TOL:
            grades.append(DefectGrade(0.0, [], length, direction, False, "selvage"))
            continue
        running = d.kind == "continuing" or d.along_mm > running_over + _TOL
        if running:
            units = _units_touched(d.y1_mm, d.y2_mm, unit_mm, n_units)
            each = per_defect_max
        else:
            centre = (d.y1_mm + d.y2_mm) / 2
            units = [min(max(int(centre // unit_mm), 0), n_units - 1)]
            each = points_4pt(d, r) if four else points_10pt(d, width_mm, r)
        for u in units:
            raw_units[u] = raw_units.get(u, 0.0) + each
        grades.append(DefectGrade(each * len(units), units, length, direction, running))

    cap = r.cap_points
    width_in = width_mm / MM_PER_IN
    if r.wide_fabric_ref_in is not None and width_in > r.wide_fabric_ref_in:
        cap *= width_in / r.wide_fabric_ref_in
    unit_points = {u: (raw, min(raw, cap)) for u, raw in raw_units.items()}
    total = sum(capped for _, capped in unit_points.values())
    length_yd = length_mm / MM_PER_YD
    per_100_yd2 = total * 3600 / (width_in * length_yd)
    per_100_m2 = total * 100_000 / (width_mm * length_mm / MM_PER_M)
    per_100_linear_yd = total * 100 / length_yd
    score = {"100yd2": per_100_yd2, "100m2": per_100_m2, "100linyd": per_100_linear_yd}[
        str(r.limit_unit)
    ]
    reasons: list[str] = []
    if score > r.limit + 1e-9:
        label = LIMIT_UNIT_LABELS[str(r.limit_unit)]
        reasons.append(f"{score:.1f} points per {label} exceeds the limit {r.limit:g}")
    if r.reject_running_over_yd is not None:
        longest = max(
            (d.along_mm for d, g in zip(defects, grades, strict=True) if g.running), default=0.0
        )
        if longest > r.reject_running_over_yd * MM_PER_YD + _TOL:
            reasons.append(
                f"a running defect spans {longest / MM_PER_YD:.1f} yd "
                f"(over {r.reject_running_over_yd:g} yd)"
            )
    return GradeResult(
        rules=r,
        width_mm=width_mm,
        length_mm=length_mm,
        defects=grades,
        unit_points=unit_points,
        total_points=total,
        per_100_yd2=per_100_yd2,
        per_100_m2=per_100_m2,
        per_100_linear_yd=per_100_linear_yd,
        score=score,
        verdict="FAIL" if reasons else "PASS",
        reasons=reasons,
    )
