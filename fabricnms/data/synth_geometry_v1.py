"""The hand-set box geometry of fabricnms before the real box table (``--geometry v1``).

Kept only so that outputs made with it stay reproducible byte for byte: the shipped example
roll (``examples/roll_scans``) and the synthetic sets the default model was trained and
measured on. Remove it when the default model is retrained on the measured geometry
(:mod:`fabricnms.data.synth_geometry`).

Sizes are quoted for a 2446 x 1000 frame; small-defect sizes are absolute and clamped to 45 %
of a small frame, frame-spanning defects (warp lines, weft lines, bars) are fractions of the
frame. The painted box is the tight box; the annotation box is grown from the true mask's
bounds afterwards (:func:`loose_box`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from fabricnms.data.synth_canvas import Box
from fabricnms.data.synth_geometry import PlannedDefect, Where, place

_SQ = (0.8, 1.25)


class Sizer:
    """Draws defect extents for a ``width`` x ``height`` frame (see the module docstring)."""

    def __init__(self, rng: np.random.Generator, width: int, height: int, scale: float) -> None:
        self.rng = rng
        self.dims = {"x": float(width), "y": float(height)}
        self.scale = scale

    def clamp(self, value: float, axis: str) -> float:
        return float(min(max(value, 3.0), 0.45 * self.dims[axis]))

    def px(self, lo: float, hi: float, axis: str) -> float:
        """Log-uniform absolute size in ``[lo, hi]`` px (times the difficulty scale)."""
        v = float(np.exp(self.rng.uniform(np.log(lo), np.log(hi)))) * self.scale
        return self.clamp(v, axis)

    def span(self, lo: float, hi: float, axis: str, full: float = 0.0) -> float:
        """A fraction ``[lo, hi]`` of the frame along ``axis``; the whole frame w.p. ``full``."""
        if self.rng.random() < full:
            return self.dims[axis]
        return float(self.rng.uniform(lo, hi)) * self.dims[axis]

    def shaped(
        self, lo: float, hi: float, aspect: tuple[float, float], swap: float = 0.0
    ) -> tuple[float, float]:
        """Width log-uniform in ``[lo, hi]``, height = width * aspect; swapped w.p. ``swap``."""
        w = float(np.exp(self.rng.uniform(np.log(lo), np.log(hi)))) * self.scale
        h = w * float(self.rng.uniform(*aspect))
        if self.rng.random() < swap:
            w, h = h, w
        return self.clamp(w, "x"), self.clamp(h, "y")


Extent = Callable[[Sizer], tuple[float, float]]


def _warp(lo: float, hi: float, flo: float, fhi: float, full: float) -> Extent:
    """Vertical line: ``lo..hi`` px wide, ``flo..fhi`` of the frame high (full w.p. ``full``)."""
    return lambda s: (s.px(lo, hi, "x"), s.span(flo, fhi, "y", full))


def _weft(flo: float, fhi: float, full: float, lo: float, hi: float) -> Extent:
    """Horizontal line: ``flo..fhi`` of the frame wide (full w.p. ``full``), ``lo..hi`` px high."""
    return lambda s: (s.span(flo, fhi, "x", full), s.px(lo, hi, "y"))


def _bar_extent(flo: float, fhi: float) -> Extent:
    """Full-width bar (80-100 % of the width, whole width w.p. 0.6), ``flo..fhi`` of the height."""
    return lambda s: (s.span(0.8, 1.0, "x", 0.6), s.span(flo, fhi, "y"))


def _crease_extent(s: Sizer) -> tuple[float, float]:
    """A crease runs mostly along the warp, sometimes along the weft; slanted by its width."""
    if s.rng.random() < 0.65:
        return s.px(10, 40, "x"), s.span(0.15, 1.0, "y", 0.3)
    return s.span(0.1, 0.6, "x"), s.px(10, 40, "y")


#: Raw name -> extent ``sizer -> (w, h)`` of the tight box in px.
EXTENTS: dict[str, Extent] = {
    "破洞": lambda s: s.shaped(10, 56, (0.7, 1.4)),
    "水渍": lambda s: s.shaped(30, 220, (0.35, 1.6), 0.3),
    "油渍": lambda s: s.shaped(24, 180, (0.4, 1.6), 0.3),
    "污渍": lambda s: s.shaped(24, 200, (0.35, 1.6), 0.3),
    "三丝": lambda s: s.shaped(6, 28, (2.0, 5.0), 0.3),
    "结头": lambda s: s.shaped(10, 24, _SQ),
    "花板跳": lambda s: s.shaped(24, 110, (0.6, 1.6)),
    "百脚": _weft(0.04, 1.0, 0.25, 6, 20),
    "毛粒": lambda s: s.shaped(7, 16, _SQ),
    "粗经": _warp(4, 10, 0.3, 1.0, 0.5),
    "松经": _warp(6, 12, 0.1, 1.0, 0.35),
    "断经": _warp(3, 8, 0.3, 1.0, 0.55),
    "吊经": _warp(8, 20, 0.2, 1.0, 0.4),
    "粗维": _weft(0.12, 1.0, 0.4, 4, 10),
    "纬缩": lambda s: (s.px(40, 320, "x"), s.px(6, 18, "y")),
    "浆斑": lambda s: s.shaped(16, 120, (0.5, 2.0)),
    "整经结": lambda s: s.shaped(10, 22, (1.4, 2.4)),
    "星跳": lambda s: s.shaped(12, 45, (0.6, 1.6)),
    "跳花": lambda s: s.shaped(14, 48, (0.25, 0.8), 0.3),
    "断氨纶": lambda s: s.shaped(12, 30, (0.7, 1.4)),
    "稀密档": _bar_extent(0.04, 0.24),
    "浪纹档": _bar_extent(0.05, 0.24),
    "色差档": _bar_extent(0.04, 0.24),
    "磨痕": lambda s: s.shaped(25, 300, (0.2, 1.0), 0.5),
    "轧痕": lambda s: s.shaped(40, 320, (0.08, 0.35), 0.5),
    "修痕": lambda s: s.shaped(25, 160, (0.3, 1.0), 0.5),
    "烧毛痕": lambda s: s.shaped(25, 200, (0.3, 1.2), 0.3),
    "死皱": lambda s: _crease_extent(s),
    "云织": lambda s: s.shaped(100, 600, (0.4, 1.2)),
    "双纬": _weft(0.15, 1.0, 0.35, 6, 12),
    "双经": _warp(6, 12, 0.3, 1.0, 0.4),
    "跳纱": lambda s: s.shaped(20, 100, (0.05, 0.15), 0.3),
    "筘路": _warp(14, 50, 0.3, 1.0, 0.4),
    "纬纱不良": _weft(0.1, 1.0, 0.3, 4, 12),
}


def plan_defects_v1(
    rng: np.random.Generator,
    names: Sequence[str],
    width: int,
    height: int,
    scale: float,
    where: Where = None,
) -> list[PlannedDefect]:
    """Tight boxes for ``names`` (the annotation box is made later by :func:`loose_box`)."""
    sizer = Sizer(rng, width, height, scale)
    taken: list[Box] = []
    out = []
    for name in names:
        w, h = EXTENTS[name](sizer)
        x0, y0 = place(rng, w, h, width, height, taken, where)
        box = (x0, y0, x0 + w, y0 + h)
        taken.append(box)
        out.append(PlannedDefect(name, box, box))
    return out


def loose_box(rng: np.random.Generator, tight: Box, width: int, height: int) -> Box:
    """The box an annotator would draw around ``tight`` (xyxy pixels): 10-40 % larger per axis,
    split unevenly between the two sides, at least 12-20 px a side, clipped to the frame and
    rounded to 2 decimals."""
    out = []
    min_side = float(rng.uniform(12.0, 20.0))
    for lo, hi, limit in ((tight[0], tight[2], width), (tight[1], tight[3], height)):
        size = hi - lo
        grow = max(size * float(rng.uniform(0.1, 0.4)), min_side - size, 1.0)
        left = grow * float(rng.uniform(0.2, 0.8))
        out.append((max(0.0, lo - left), min(float(limit), hi + grow - left)))
    (x0, x1), (y0, y1) = out
    return (round(x0, 2), round(y0, 2), round(x1, 2), round(y1, 2))
