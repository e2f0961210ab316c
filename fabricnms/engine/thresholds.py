"""Score thresholds from the command line: per-class ``--conf`` and a class filter.

``--conf 0.3 --conf hole=0.5`` gives every class 0.3 and ``hole`` 0.5; a per-class value alone
(``--conf hole=0.5``) overrides that class on top of the checkpoint's operating point (or the
built-in default). ``--classes hole,stain`` keeps only those classes: every other class gets
the threshold :data:`EXCLUDED`, which no score reaches. Class names are checked against the
model's.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from fabricnms.engine.operating_point import ConfChoice
from fabricnms.errors import FabricError

#: Threshold of a class left out by ``--classes`` (scores are at most 1).
EXCLUDED = 2.0


def _score(text: str, item: str, option: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise FabricError(f"{option} {item!r}: expected a score in [0, 1]")
    return value


def parse_conf(
    values: Sequence[str] | None, option: str = "--conf"
) -> tuple[float | None, dict[str, float]]:
    """``(threshold for every class or None, {class name: threshold})`` from ``values`` such as
    ``["0.3", "hole=0.5"]``; a one-line :class:`FabricError` for a malformed item."""
    base: float | None = None
    per_class: dict[str, float] = {}
    for item in values or []:
        name, sep, score = item.partition("=")
        if sep:
            if not name.strip():
                raise FabricError(f"{option} {item!r}: expected CLASS=SCORE")
            per_class[name.strip()] = _score(score, item, option)
        else:
            base = _score(item, item, option)
    return base, per_class


def parse_classes(text: str) -> list[str]:
    """``"hole, stain"`` -> ``["hole", "stain"]`` (empty text: no filter)."""
    return [n.strip() for n in text.split(",") if n.strip()]


def apply_overrides(
    choice: ConfChoice,
    per_class: dict[str, float],
    classes: Sequence[str],
    class_names: Sequence[str],
) -> ConfChoice:
    """``choice`` with the per-class thresholds and the class filter on top; the base
    threshold and its origin stay. Unknown class names are a one-line error."""
    for option, names in (("--conf", per_class), ("--classes", classes)):
        unknown = [n for n in names if n not in class_names]
        if unknown:
            known = ", ".join(class_names)
            raise FabricError(f"{option}: no class {unknown[0]!r} in the model (classes: {known})")
    if not per_class and not classes:
        return choice
    merged = {**choice.point.per_class, **per_class}
    if classes:
        merged.update({n: EXCLUDED for n in class_names if n not in classes})
    return ConfChoice(dataclasses.replace(choice.point, per_class=merged), choice.origin)
