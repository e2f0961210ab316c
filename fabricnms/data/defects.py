"""Visual recipes for the 34 raw Tianchi defect names (reference section 10.3).

Each :class:`Recipe` has two parts:

* ``extent(sizer) -> (w, h)``: the tight size of one instance in pixels. Sizes are quoted for a
  2446 x 1000 frame; small-defect sizes are absolute (a crop keeps the scan resolution) and
  clamped to 45 % of a small frame, while frame-spanning defects (warp lines, weft lines, bars)
  are fractions of the frame height or width, so a 320 x 256 crop still gets sensible defects;
* ``render(canvas, rng, box, k) -> (window, effect)``: paints the defect inside ``box`` (tight
  xyxy pixel edges, fully inside the frame) on the fabric ``canvas``; ``k`` scales the contrast
  (1.0 = ``normal`` difficulty). ``effect >= 0.5`` is the defect's true mask in ``window``.

Image x is the weft direction, y the warp direction: warp faults are vertical, weft faults
horizontal. Amplitudes are relative brightness changes; at ``k = 1`` most are 10-30 %, subtle on
a 15-20 % lattice contrast but clearly above the sensor noise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fabricnms.data.defect_paint import RenderFn
from fabricnms.data.defects_areas import bar, cloudy, mark, pattern_skip, stain
from fabricnms.data.defects_lines import crease, mispick, reed_mark, warp_line, weft_kink, weft_line
from fabricnms.data.defects_spots import fibre, floats, hole, knot, neps, size_spot, spandex


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


@dataclass(frozen=True)
class Recipe:
    """How one raw defect name is sized and drawn."""

    raw: str
    extent: Callable[[Sizer], tuple[float, float]]  # tight (w, h) in px
    render: RenderFn


# --------------------------------------------------------------------------- the table


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


def _recipes() -> dict[str, Recipe]:
    sq = (0.8, 1.25)
    warp, weft = _warp, _weft
    table: list[tuple[str, Extent, RenderFn]] = [
        ("破洞", lambda s: s.shaped(10, 56, (0.7, 1.4)), hole),
        ("水渍", lambda s: s.shaped(30, 220, (0.35, 1.6), 0.3), stain("water")),
        ("油渍", lambda s: s.shaped(24, 180, (0.4, 1.6), 0.3), stain("oil")),
        ("污渍", lambda s: s.shaped(24, 200, (0.35, 1.6), 0.3), stain("dirt")),
        ("三丝", lambda s: s.shaped(6, 28, (2.0, 5.0), 0.3), fibre),
        ("结头", lambda s: s.shaped(10, 24, sq), knot(1.0)),
        ("花板跳", lambda s: s.shaped(24, 110, (0.6, 1.6)), pattern_skip),
        ("百脚", weft(0.04, 1.0, 0.25, 6, 20), mispick),
        ("毛粒", lambda s: s.shaped(7, 16, sq), neps),
        ("粗经", warp(4, 10, 0.3, 1.0, 0.5), warp_line("thick")),
        ("松经", warp(6, 12, 0.1, 1.0, 0.35), warp_line("loose")),
        ("断经", warp(3, 8, 0.3, 1.0, 0.55), warp_line("broken")),
        ("吊经", warp(8, 20, 0.2, 1.0, 0.4), warp_line("tight")),
        ("粗维", weft(0.12, 1.0, 0.4, 4, 10), weft_line("thick")),
        ("纬缩", lambda s: (s.px(40, 320, "x"), s.px(6, 18, "y")), weft_kink),
        ("浆斑", lambda s: s.shaped(16, 120, (0.5, 2.0)), size_spot),
        ("整经结", lambda s: s.shaped(10, 22, (1.4, 2.4)), knot(1.6)),
        ("星跳", lambda s: s.shaped(12, 45, (0.6, 1.6)), floats("star")),
        ("跳花", lambda s: s.shaped(14, 48, (0.25, 0.8), 0.3), floats("float")),
        ("断氨纶", lambda s: s.shaped(12, 30, (0.7, 1.4)), spandex),
        ("稀密档", _bar_extent(0.04, 0.24), bar("density")),
        ("浪纹档", _bar_extent(0.05, 0.24), bar("wavy")),
        ("色差档", _bar_extent(0.04, 0.24), bar("shade")),
        ("磨痕", lambda s: s.shaped(25, 300, (0.2, 1.0), 0.5), mark("abrasion")),
        ("轧痕", lambda s: s.shaped(40, 320, (0.08, 0.35), 0.5), mark("crush")),
        ("修痕", lambda s: s.shaped(25, 160, (0.3, 1.0), 0.5), mark("mending")),
        ("烧毛痕", lambda s: s.shaped(25, 200, (0.3, 1.2), 0.3), mark("singe")),
        ("死皱", lambda s: _crease_extent(s), crease),
        ("云织", lambda s: s.shaped(100, 600, (0.4, 1.2)), cloudy),
        ("双纬", weft(0.15, 1.0, 0.35, 6, 12), weft_line("double")),
        ("双经", warp(6, 12, 0.3, 1.0, 0.4), warp_line("double")),
        ("跳纱", lambda s: s.shaped(20, 100, (0.05, 0.15), 0.3), floats("jump")),
        ("筘路", warp(14, 50, 0.3, 1.0, 0.4), reed_mark),
        ("纬纱不良", weft(0.1, 1.0, 0.3, 4, 12), weft_line("faulty")),
    ]
    return {raw: Recipe(raw, extent, render) for raw, extent, render in table}


def _crease_extent(s: Sizer) -> tuple[float, float]:
    """A crease runs mostly along the warp, sometimes along the weft; slanted by its width."""
    if s.rng.random() < 0.65:
        return s.px(10, 40, "x"), s.span(0.15, 1.0, "y", 0.3)
    return s.span(0.1, 0.6, "x"), s.px(10, 40, "y")


#: Raw Chinese name -> recipe, one per raw name of the 34.
RECIPES: dict[str, Recipe] = _recipes()
