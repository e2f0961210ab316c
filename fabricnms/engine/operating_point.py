"""The operating point a checkpoint carries: the score threshold(s) ``predict`` and ``eval`` use
when ``--conf`` / ``--acc-conf`` is not given.

Stored under the checkpoint key ``operating_point`` as plain values::

    {"conf": float, "per_class": {class name: float}, "source": str,
     "false_alarms_per_frame": float, "frames": int, "area_frames": float,
     "painted_recall": float | None, "painted_defects": int}

``conf`` applies to every class without its own entry in ``per_class``. ``source`` says what
the thresholds were calibrated on; ``false_alarms_per_frame`` is the budget they were chosen
for: detections touching no labelled defect (whatever its class), per 2446x1000 px of fabric
(:data:`FRAME_AREA_PX`). :func:`fabricnms.engine.false_alarms.calibrate` chooses them.
``painted_recall`` is the share of ``painted_defects`` generated defects, painted into held-out
fabric, that detections at these thresholds touch (``adapt``'s self-check,
:mod:`fabricnms.engine.adapt_check`; ``None`` when not checked).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from fabricnms.model.types import Detections

#: Checkpoint key of the operating point.
OP_KEY = "operating_point"
#: Threshold used when neither ``--conf`` nor the checkpoint gives one.
BUILTIN_CONF = 0.25
#: A Tianchi frame: the unit fabric area of false-alarm budgets.
FRAME_AREA_PX = 2446 * 1000
DEFAULT_FALSE_ALARMS = 0.1


@dataclass(frozen=True)
class OperatingPoint:
    """Score thresholds and where they came from (module docstring for the fields)."""

    conf: float
    per_class: dict[str, float] = field(default_factory=dict)
    source: str = ""
    false_alarms_per_frame: float = DEFAULT_FALSE_ALARMS
    frames: int = 0
    area_frames: float = 0.0
    painted_recall: float | None = None
    painted_defects: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain values for the checkpoint (``torch.load(weights_only=True)`` safe)."""
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(obj: dict[str, Any]) -> OperatingPoint:
        """Inverse of :meth:`to_dict` (unknown keys ignored)."""
        names = {f.name for f in dataclasses.fields(OperatingPoint)}
        values = {k: v for k, v in obj.items() if k in names}
        values["per_class"] = {str(k): float(v) for k, v in values.get("per_class", {}).items()}
        return OperatingPoint(**values)

    def thresholds(self, class_names: Sequence[str]) -> torch.Tensor:
        """``[C]`` threshold of each 0-based class."""
        return torch.tensor([self.per_class.get(n, self.conf) for n in class_names])

    def floor(self) -> float:
        """The lowest threshold of any class (what the suppression must keep)."""
        return min([self.conf, *self.per_class.values()])

    def select(self, det: Detections, class_names: Sequence[str]) -> Detections:
        """The detections scoring at least their class's threshold."""
        if not self.per_class or len(det) == 0:
            return det.select(det.scores >= self.conf)
        limits = self.thresholds(class_names).to(det.scores.device)
        return det.select(det.scores >= limits[det.labels])

    def unshown_rate(self) -> float | None:
        """False alarms per 2446x1000 this point may let through when its calibration fabric
        was too small to show its budget (``area_frames * false_alarms_per_frame < 1``: the
        threshold then sits just above the highest false alarm seen, which on new fabric lets
        through about one per that area), else ``None`` (also when the area is unknown)."""
        if self.area_frames <= 0 or self.area_frames * self.false_alarms_per_frame >= 1:
            return None
        return 1.0 / self.area_frames

    def unshown(self) -> str | None:
        """``0.06 frame-areas are too few to show it: it may let through about 16 per
        2446x1000`` when :meth:`unshown_rate` applies, else ``None``."""
        rate = self.unshown_rate()
        if rate is None:
            return None
        return (
            f"{self.area_frames:g} frame-areas are too few to show it: it may let through "
            f"about {rate:.2g} per 2446x1000"
        )

    def describe(self) -> str:
        """``conf 0.31 (+ 4 per-class thresholds)``."""
        text = f"conf {self.conf:g}"
        if self.per_class:
            text += f" (+ {len(self.per_class)} per-class thresholds)"
        return text


@dataclass(frozen=True)
class ConfChoice:
    """The thresholds in force for a run and where they came from (one line for the user)."""

    point: OperatingPoint
    origin: str  # "--conf", "checkpoint" or "built-in default"

    def line(self, option: str = "--conf") -> str:
        """E.g. ``Threshold: conf 0.31 from the checkpoint's operating point (...)``."""
        p = self.point
        if self.origin == "checkpoint":
            note = p.unshown()
            unshown = "" if note is None else f", but {note}"
            painted = ""
            if p.painted_recall is not None:
                painted = (
                    f"; at it the model finds {p.painted_recall:.0%} of {p.painted_defects} "
                    "defects painted into held-out fabric"
                )
            return (
                f"Threshold: {p.describe()} from the checkpoint's operating point "
                f"({p.source}; at most {p.false_alarms_per_frame:g} false alarms per 2446x1000 "
                f"of that fabric{unshown}{painted}); {option} overrides it"
            )
        if self.origin == option:
            return f"Threshold: {p.describe()} from {option}"
        return (
            f"Threshold: {p.describe()}, the built-in default: this checkpoint has no calibrated "
            f"operating point (pass {option}, or calibrate one with `fabricnms adapt`)"
        )


def resolve_operating_point(
    conf: float | None,
    meta: dict[str, Any],
    option: str = "--conf",
    default: float = BUILTIN_CONF,
) -> ConfChoice:
    """``conf`` when given, else the checkpoint's operating point, else ``default``."""
    if conf is not None:
        return ConfChoice(OperatingPoint(conf=float(conf), source=option), option)
    stored = meta.get(OP_KEY)
    if isinstance(stored, dict) and "conf" in stored:
        return ConfChoice(OperatingPoint.from_dict(stored), "checkpoint")
    return ConfChoice(OperatingPoint(conf=default, source="built-in default"), "default")
