"""Priors of the synthetic release: which defects, how many per frame, how loosely boxed.

Category frequencies are the train1 partA box counts (:data:`fabricnms.data.classes.CATEGORIES`
``box_prior``); inside a merged category the raw names get the shares below **[assumption]**:
no per-name table is published, and the six names missing from the early 20190809 release
(整经结, 色差档, 云织, 双经, 跳纱, 纬纱不良) are kept rare where their category allows it.
Category ids are 1-based (1..20) everywhere in this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fabricnms.data.classes import CATEGORIES, CATEGORY_BY_ID, CATEGORY_BY_NAME, RAW_CLASSES
from fabricnms.data.synth_canvas import Box
from fabricnms.errors import FabricError

#: Share of each raw name inside its category (names alone in their category get 1.0).
RAW_SHARES: dict[str, float] = {
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

#: P(k boxes | defect frame) for k = 1..6: mean 1.64, long tail (train1 partA: 1.64).
BOXES_PER_FRAME: tuple[float, ...] = (0.57, 0.29, 0.095, 0.03, 0.01, 0.005)


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
    classes: Sequence[int] | None = None, prior: str = "tianchi"
) -> dict[str, float]:
    """Probability of each raw name for one box, restricted to category ids ``classes``.

    ``prior`` ``"tianchi"`` weights a category by its train1 box count; ``"uniform"`` gives every
    allowed category the same weight (raw names keep their shares inside it), which a training
    set for all 20 categories wants: the rarest Tianchi category is ~60x rarer than the commonest.
    """
    if prior not in CLASS_PRIORS:
        expected = ", ".join(CLASS_PRIORS)
        raise FabricError(f"unknown class prior {prior!r}; expected one of {expected}")
    allowed = set(classes) if classes is not None else {c.id for c in CATEGORIES}
    unknown = allowed - set(CATEGORY_BY_ID)
    if unknown:
        raise FabricError(f"unknown category id(s) {sorted(unknown)}; expected 1-20")
    weights = {
        r.raw: (CATEGORY_BY_ID[r.category_id].box_prior if prior == "tianchi" else 1.0)
        * RAW_SHARES.get(r.raw, 1.0)
        for r in RAW_CLASSES
        if r.category_id in allowed
    }
    total = sum(weights.values())
    return {raw: w / total for raw, w in weights.items()}


def sample_raw_names(
    rng: np.random.Generator, n: int, classes: Sequence[int] | None = None, prior: str = "tianchi"
) -> list[str]:
    """``n`` raw defect names drawn independently from the class prior (see
    :func:`raw_name_weights`)."""
    weights = raw_name_weights(classes, prior)
    names = list(weights)
    probs = np.array([weights[k] for k in names])
    return [names[i] for i in rng.choice(len(names), size=n, p=probs)]


def sample_box_count(rng: np.random.Generator) -> int:
    """Boxes on one defect frame (1..6, see :data:`BOXES_PER_FRAME`)."""
    p = np.asarray(BOXES_PER_FRAME)
    return int(rng.choice(p.size, p=p / p.sum())) + 1


def loose_box(rng: np.random.Generator, tight: Box, width: int, height: int) -> Box:
    """The box an annotator would draw around ``tight`` (xyxy pixels): 10-40 % larger per axis,
    split unevenly between the two sides, at least 12-20 px a side (boxes were drawn on a view
    scaled by ~1/1.83), clipped to the frame and rounded to 2 decimals."""
    out = []
    min_side = float(rng.uniform(12.0, 20.0))
    for lo, hi, limit in ((tight[0], tight[2], width), (tight[1], tight[3], height)):
        size = hi - lo
        grow = max(size * float(rng.uniform(0.1, 0.4)), min_side - size, 1.0)
        left = grow * float(rng.uniform(0.2, 0.8))
        out.append((max(0.0, lo - left), min(float(limit), hi + grow - left)))
    (x0, x1), (y0, y1) = out
    return (round(x0, 2), round(y0, 2), round(x1, 2), round(y1, 2))
