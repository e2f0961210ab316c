"""Visual recipes for the 34 raw Tianchi defect names (reference section 10.3).

A recipe is a render function ``(canvas, rng, box, k) -> (window, effect)``
(:data:`~fabricnms.data.defect_paint.RenderFn`): it paints the defect inside ``box`` (tight
xyxy pixel edges, fully inside the frame) on the fabric ``canvas``; ``k`` scales the contrast
(1.0 = ``normal`` difficulty). ``effect >= 0.5`` is the defect's true mask in ``window``. The
box itself comes from the real box statistics (:mod:`fabricnms.data.synth_geometry`); a recipe
draws a defect that fits the box it is given.

Image x is the weft direction, y the warp direction: warp faults are vertical, weft faults
horizontal. Amplitudes are relative brightness changes; at ``k = 1`` most are 10-30 %, subtle on
a 15-20 % lattice contrast but clearly above the sensor noise.
"""

from __future__ import annotations

from fabricnms.data.defect_paint import RenderFn
from fabricnms.data.defects_areas import bar, cloudy, mark, pattern_skip, stain
from fabricnms.data.defects_lines import crease, mispick, reed_mark, warp_line, weft_kink, weft_line
from fabricnms.data.defects_spots import fibre, floats, hole, knot, neps, size_spot, spandex

#: Raw Chinese name -> render function, one per raw name of the 34.
RECIPES: dict[str, RenderFn] = {
    "破洞": hole,
    "水渍": stain("water"),
    "油渍": stain("oil"),
    "污渍": stain("dirt"),
    "三丝": fibre,
    "结头": knot(1.0),
    "花板跳": pattern_skip,
    "百脚": mispick,
    "毛粒": neps,
    "粗经": warp_line("thick"),
    "松经": warp_line("loose"),
    "断经": warp_line("broken"),
    "吊经": warp_line("tight"),
    "粗维": weft_line("thick"),
    "纬缩": weft_kink,
    "浆斑": size_spot,
    "整经结": knot(1.6),
    "星跳": floats("star"),
    "跳花": floats("float"),
    "断氨纶": spandex,
    "稀密档": bar("density"),
    "浪纹档": bar("wavy"),
    "色差档": bar("shade"),
    "磨痕": mark("abrasion"),
    "轧痕": mark("crush"),
    "修痕": mark("mending"),
    "烧毛痕": mark("singe"),
    "死皱": crease,
    "云织": cloudy,
    "双纬": weft_line("double"),
    "双经": warp_line("double"),
    "跳纱": floats("jump"),
    "筘路": reed_mark,
    "纬纱不良": weft_line("faulty"),
}
