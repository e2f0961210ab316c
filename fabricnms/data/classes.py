"""The Tianchi round-1 class map: 34 raw Chinese defect names -> 20 categories.

Ids are 1-based everywhere outside memory (COCO ``category_id``, Tianchi ``category``):
``fine`` ids 1..34 follow the official README row order, category ids 1..20 are the
competition's. A 0-based index (``category_id - 1``) exists only inside models.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RawClass:
    """One of the 34 raw Tianchi defect names."""

    fine_id: int  # 1..34
    raw: str  # Chinese name as written in anno_train.json
    name: str  # English snake_case name
    category_id: int  # 1..20


@dataclass(frozen=True)
class Category:
    """One of the 20 competition categories."""

    id: int  # 1..20
    name: str  # English snake_case name
    zh: str  # Chinese name(s) joined with "_" (as community converters write merged names)
    box_prior: int  # boxes of this category in train1 partA (3,916 boxes), the frequency prior


RAW_CLASSES: tuple[RawClass, ...] = (
    RawClass(1, "破洞", "hole", 1),
    RawClass(2, "水渍", "water_stain", 2),
    RawClass(3, "油渍", "oil_stain", 2),
    RawClass(4, "污渍", "dirt_stain", 2),
    RawClass(5, "三丝", "foreign_fibre", 3),
    RawClass(6, "结头", "knot", 4),
    RawClass(7, "花板跳", "pattern_skip", 5),
    RawClass(8, "百脚", "mispick", 6),
    RawClass(9, "毛粒", "neps", 7),
    RawClass(10, "粗经", "thick_warp", 8),
    RawClass(11, "松经", "loose_warp", 9),
    RawClass(12, "断经", "broken_warp", 10),
    RawClass(13, "吊经", "tight_warp", 11),
    RawClass(14, "粗维", "thick_weft", 12),
    RawClass(15, "纬缩", "weft_kink", 13),
    RawClass(16, "浆斑", "size_spot", 14),
    RawClass(17, "整经结", "warping_knot", 15),
    RawClass(18, "星跳", "star_float", 16),
    RawClass(19, "跳花", "float", 16),
    RawClass(20, "断氨纶", "broken_spandex", 17),
    RawClass(21, "稀密档", "thin_thick_bar", 18),
    RawClass(22, "浪纹档", "wavy_bar", 18),
    RawClass(23, "色差档", "shade_bar", 18),
    RawClass(24, "磨痕", "abrasion_mark", 19),
    RawClass(25, "轧痕", "crush_mark", 19),
    RawClass(26, "修痕", "mending_mark", 19),
    RawClass(27, "烧毛痕", "singeing_mark", 19),
    RawClass(28, "死皱", "set_crease", 20),
    RawClass(29, "云织", "cloudy_weaving", 20),
    RawClass(30, "双纬", "double_pick", 20),
    RawClass(31, "双经", "double_end", 20),
    RawClass(32, "跳纱", "jumped_yarn", 20),
    RawClass(33, "筘路", "reed_mark", 20),
    RawClass(34, "纬纱不良", "faulty_weft", 20),
)

#: Spelling variants seen in the wild -> official raw name.
ALIASES: dict[str, str] = {"粗纬": "粗维", "双维": "双纬"}

_CATEGORY_NAMES = (
    "hole",
    "stain",
    "foreign_fibre",
    "knot",
    "pattern_skip",
    "mispick",
    "neps",
    "thick_warp",
    "loose_warp",
    "broken_warp",
    "tight_warp",
    "thick_weft",
    "weft_kink",
    "size_spot",
    "warping_knot",
    "float",
    "broken_spandex",
    "bar",
    "mark",
    "weave_fault",
)
_BOX_PRIOR = (
    149,
    217,
    528,
    782,
    56,
    57,
    89,
    99,
    162,
    119,
    71,
    332,
    147,
    100,
    141,
    76,
    297,
    168,
    181,
    145,
)

CATEGORIES: tuple[Category, ...] = tuple(
    Category(
        id=i + 1,
        name=_CATEGORY_NAMES[i],
        zh="_".join(r.raw for r in RAW_CLASSES if r.category_id == i + 1),
        box_prior=_BOX_PRIOR[i],
    )
    for i in range(20)
)

RAW_BY_NAME: dict[str, RawClass] = {r.raw: r for r in RAW_CLASSES}
CATEGORY_BY_ID: dict[int, Category] = {c.id: c for c in CATEGORIES}
CATEGORY_BY_NAME: dict[str, Category] = {c.name: c for c in CATEGORIES}


def resolve_raw(defect_name: str) -> RawClass | None:
    """Map a raw ``defect_name`` (aliases included, surrounding whitespace ignored) to its class.

    Returns ``None`` for an unknown name; callers decide whether that is a warning or an error.
    """
    name = defect_name.strip()
    return RAW_BY_NAME.get(ALIASES.get(name, name))


def class_names(scheme: int = 20) -> list[str]:
    """English class names in id order for the 20-category or the 34-fine-class scheme."""
    if scheme == 20:
        return [c.name for c in CATEGORIES]
    if scheme == 34:
        return [r.name for r in RAW_CLASSES]
    raise ValueError(f"unknown class scheme {scheme}; expected 20 or 34")
