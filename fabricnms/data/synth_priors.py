"""Priors of the synthetic release: which defects, and how many per frame.

Both come from the real Tianchi round-1 box table (:mod:`fabricnms.data.synth_box_table`,
2,396 boxes of 1,435 frames of the 20190809 release): a raw name is drawn as often as it has
real boxes, and a defect frame holds as many boxes as a real frame drawn at random. The six
names that release lacks (整经结, 色差档, 云织, 双经, 跳纱, 纬纱不良) get
:data:`ABSENT_NAME_BOXES` boxes each **[assumption]**, so that every category can be drawn.
Category ids are 1-based (1..20) everywhere in this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fabricnms.data.classes import CATEGORIES, CATEGORY_BY_ID, CATEGORY_BY_NAME, RAW_CLASSES
from fabricnms.data.synth_box_table import FRAMES_PER_BOX_COUNT, RAW_BOXES
from fabricnms.errors import FabricError

#: Boxes a raw name absent from the real table counts as (~0.4 % of all boxes each).
ABSENT_NAME_BOXES = 10

#: Box geometries (:mod:`~fabricnms.data.synth_geometry`): ``real`` (measured) or ``v1``.
GEOMETRIES: tuple[str, ...] = ("real", "v1")

#: ``v1`` only: share of each raw name inside its category (alone in its category: 1.0); the
#: category weighs its train1 partA box count (``Category.box_prior``).
RAW_SHARES_V1: dict[str, float] = {
    "水渍": 0.3,
    "油渍": 0.35,
    "污渍": 0.35,
    "星跳": 0.4,
    "跳花": 0.6,
    "稀密档": 0.55,
    "浪纹档": 0.33,
    "色差档": 0.12,
    "磨痕": 0.35,
    "轧痕": 0.25,
    "修痕": 0.25,
    "烧毛痕": 0.15,
    "死皱": 0.3,
    "云织": 0.07,
    "双纬": 0.25,
    "双经": 0.07,
    "跳纱": 0.07,
    "筘路": 0.17,
    "纬纱不良": 0.07,
}
#: ``v1`` only: P(k boxes | defect frame) for k = 1..6 (mean 1.64).
BOXES_PER_FRAME_V1: tuple[float, ...] = (0.57, 0.29, 0.095, 0.03, 0.01, 0.005)


def check_geometry_name(geometry: str) -> None:
    """Raise :class:`FabricError` unless ``geometry`` is one of :data:`GEOMETRIES`."""
    if geometry not in GEOMETRIES:
        raise FabricError(f"unknown geometry {geometry!r}; expected one of {', '.join(GEOMETRIES)}")


@dataclass(frozen=True)
class Difficulty:
    """Multipliers on defect contrast and on the size of non-frame-spanning defects."""

    contrast: float
    size: float


DIFFICULTIES: dict[str, Difficulty] = {
    "easy": Difficulty(contrast=1.6, size=1.25),
    "normal": Difficulty(contrast=1.0, size=1.0),
    "hard": Difficulty(contrast=0.6, size=0.85),
}


def difficulty(name: str) -> Difficulty:
    """The :class:`Difficulty` called ``name`` (easy, normal, hard)."""
    try:
        return DIFFICULTIES[name]
    except KeyError:
        raise FabricError(
            f"unknown difficulty {name!r}; expected one of {', '.join(DIFFICULTIES)}"
        ) from None


def parse_classes(spec: str) -> list[int]:
    """Category ids (1..20, sorted, unique) from ``"4,hole,thick_warp"`` (ids or English names)."""
    ids: set[int] = set()
    for token in (t.strip() for t in spec.split(",")):
        if not token:
            continue
        if token.isdigit() and int(token) in CATEGORY_BY_ID:
            ids.add(int(token))
        elif token.lower() in CATEGORY_BY_NAME:
            ids.add(CATEGORY_BY_NAME[token.lower()].id)
        else:
            names = ", ".join(c.name for c in CATEGORIES)
            raise FabricError(f"--classes: unknown class {token!r}; use ids 1-20 or one of {names}")
    if not ids:
        raise FabricError("--classes: no class given")
    return sorted(ids)


#: Category priors a release can draw from: the Tianchi box frequencies, or every category alike.
CLASS_PRIORS: tuple[str, ...] = ("tianchi", "uniform")


def raw_name_weights(
    classes: Sequence[int] | None = None, prior: str = "tianchi", geometry: str = "real"
) -> dict[str, float]:
    """Probability of each raw name for one box, restricted to category ids ``classes``.

    Inside a category a raw name weighs its real box count (or :data:`ABSENT_NAME_BOXES`).
    ``prior`` ``"tianchi"`` weights a category by the sum of its names' counts, as the real
    table does; ``"uniform"`` gives every allowed category the same weight, which a training
    set for all 20 categories wants: the rarest Tianchi category is ~40x rarer than the commonest.
    ``geometry="v1"`` uses the older hand-set shares (:data:`RAW_SHARES_V1`).
    """
    if prior not in CLASS_PRIORS:
        expected = ", ".join(CLASS_PRIORS)
        raise FabricError(f"unknown class prior {prior!r}; expected one of {expected}")
    allowed = set(classes) if classes is not None else {c.id for c in CATEGORIES}
    unknown = allowed - set(CATEGORY_BY_ID)
    if unknown:
        raise FabricError(f"unknown category id(s) {sorted(unknown)}; expected 1-20")
    check_geometry_name(geometry)
    tianchi = prior == "tianchi"
    if geometry == "v1":
        share = {r.raw: RAW_SHARES_V1.get(r.raw, 1.0) for r in RAW_CLASSES}
        weight = {c.id: float(c.box_prior) if tianchi else 1.0 for c in CATEGORIES}
    else:
        share = {r.raw: float(RAW_BOXES.get(r.raw, 0) or ABSENT_NAME_BOXES) for r in RAW_CLASSES}
        totals = {c.id: 0.0 for c in CATEGORIES}
        for r in RAW_CLASSES:
            totals[r.category_id] += share[r.raw]
        weight = {c: 1.0 if tianchi else 1.0 / total for c, total in totals.items()}
    weights = {
        r.raw: share[r.raw] * weight[r.category_id] for r in RAW_CLASSES if r.category_id in allowed
    }
    total = sum(weights.values())
    return {raw: w / total for raw, w in weights.items()}


def sample_raw_names(
    rng: np.random.Generator,
    n: int,
    classes: Sequence[int] | None = None,
    prior: str = "tianchi",
    geometry: str = "real",
) -> list[str]:
    """``n`` raw defect names drawn independently from the class prior (see
    :func:`raw_name_weights`)."""
    weights = raw_name_weights(classes, prior, geometry)
    names = list(weights)
    probs = np.array([weights[k] for k in names])
    return [names[i] for i in rng.choice(len(names), size=n, p=probs)]


def sample_box_count(rng: np.random.Generator, geometry: str = "real") -> int:
    """Boxes on one defect frame, as often as real frames hold that many
    (:data:`~fabricnms.data.synth_box_table.FRAMES_PER_BOX_COUNT`; ``v1``:
    :data:`BOXES_PER_FRAME_V1`)."""
    p = np.asarray(BOXES_PER_FRAME_V1 if geometry == "v1" else FRAMES_PER_BOX_COUNT, float)
    return int(rng.choice(p.size, p=p / p.sum())) + 1
