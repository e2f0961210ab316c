"""Where the synthetic defects go and how large their boxes are, drawn from real box statistics.

Sizes come from :mod:`fabricnms.data.synth_box_table` (generated from 2,396 real Tianchi
round-1 boxes by ``benchmarks/synth_geometry.py``): per raw name, the quantiles of the
annotated box width and height at 2446 x 1000 and the rank correlation between them. A size is
drawn with a Gaussian copula (correlated normal pair -> uniform -> log-linear interpolation of
the quantiles), so the marginals match the real ones and tall boxes stay narrow where real ones
do.

Each defect gets two boxes (xyxy pixel edges, inside the frame): the **annotation** box, the
real-sized box an annotator would draw, and the **tight** box inside it (10-40 % smaller per
axis, split unevenly between the sides) that the recipe paints in. A side spanning >= 95 % of
the reference frame spans the whole frame in both boxes. Frames of another size keep absolute
sizes for local defects (a crop keeps the scan resolution, capped at 60 % of the frame) and
scale frame-spanning ones (>= 90 % of the reference side) with the frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from fabricnms.data.classes import CATEGORY_BY_ID, RAW_BY_NAME
from fabricnms.data.synth_box_table import CATEGORY_REFERENCE, LEVELS, SIZE_TABLE
from fabricnms.data.synth_canvas import Box
from fabricnms.data.synth_priors import sample_raw_names

#: The frame size the real boxes were measured at.
REFERENCE_SIZE = (2446, 1000)
#: Categories with at least this many real boxes are held to the bounds.
MIN_REAL_BOXES = 30
_LEVELS = np.asarray(LEVELS)


@dataclass(frozen=True)
class PlannedDefect:
    """One defect before painting: raw name, annotation box and tight box (xyxy pixels)."""

    raw_name: str
    box: Box
    tight: Box


_erf = np.frompyfunc(math.erf, 1, 1)


def sample_sizes(rng: np.random.Generator, raw_name: str, n: int) -> np.ndarray:
    """``[n, 2]`` annotation box sizes ``(w, h)`` in px at 2446 x 1000 for ``raw_name``."""
    wq, hq, rho = SIZE_TABLE[raw_name]
    z = rng.standard_normal((n, 2))
    z[:, 1] = rho * z[:, 0] + math.sqrt(max(1.0 - rho * rho, 0.0)) * z[:, 1]
    u = 0.5 * (1.0 + _erf(z / math.sqrt(2.0)).astype(float))
    out = np.empty((n, 2))
    for axis, q in enumerate((wq, hq)):
        out[:, axis] = np.exp(np.interp(u[:, axis], _LEVELS, np.log(np.maximum(q, 1.0))))
    return out


def fit_sizes(
    wh: np.ndarray, width: int, height: int, scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Sizes ``[n, 2]`` sampled at 2446 x 1000 moved to a ``width`` x ``height`` frame:
    ``(sizes [n, 2], spans [n, 2] bool)``. A side spanning >= 95 % of the reference spans the
    frame; others keep their absolute px (times the difficulty ``scale`` if under 90 % of the
    reference), at most the same fraction of the frame as of the reference side or 60 % of
    the frame if that is more, at least 4 px."""
    ref = np.asarray(REFERENCE_SIZE, float)
    frame = np.asarray((width, height), float)
    spans = wh >= 0.95 * ref
    v = wh * np.where(wh < 0.9 * ref, scale, 1.0)
    cap = np.maximum(0.6 * frame, frame * np.minimum(wh / ref, 1.0))
    return np.where(spans, frame, np.maximum(np.minimum(v, cap), 4.0)), spans


def _sides(
    rng: np.random.Generator, size: float, frame: int, spans: bool
) -> tuple[float, float, float]:
    """``(annotation side, tight side, tight offset inside the annotation)`` along one axis."""
    if spans:
        return float(frame), float(frame), 0.0
    tight = max(size / float(rng.uniform(1.1, 1.4)), 3.0)
    size = max(size, tight + 1.0)
    return size, tight, (size - tight) * float(rng.uniform(0.2, 0.8))


def _overlap(a: Box, b: Box) -> float:
    """Intersection over the smaller box's area."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / max(small, 1e-6)


#: Where a defect may go: ``where(box) -> bool`` for a tight xyxy box (``None``: anywhere).
Where = Callable[[Box], bool] | None


def place(
    rng: np.random.Generator,
    w: float,
    h: float,
    width: int,
    height: int,
    taken: list[Box],
    where: Where = None,
) -> tuple[float, float]:
    """Top-left corner of a ``w`` x ``h`` box inside the frame, avoiding ``taken`` boxes and
    keeping to ``where`` if it can (30 tries; else the last one)."""
    x0 = y0 = 0.0
    for _ in range(30):
        x0 = float(rng.uniform(0.0, width - w))
        y0 = float(rng.uniform(0.0, height - h))
        box = (x0, y0, x0 + w, y0 + h)
        if all(_overlap(box, t) < 0.1 for t in taken) and (where is None or where(box)):
            break
    return x0, y0


def _shifted(where: Callable[[Box], bool], ox: float, oy: float, tw: float, th: float) -> Where:
    """``where`` of the tight box at offset ``(ox, oy)``, size ``tw x th`` in an annotation box."""
    return lambda b: where((b[0] + ox, b[1] + oy, b[0] + ox + tw, b[1] + oy + th))


def plan_defects(
    rng: np.random.Generator,
    names: Sequence[str],
    width: int,
    height: int,
    size_scale: float = 1.0,
    where: Where = None,
) -> list[PlannedDefect]:
    """Annotation and tight boxes for defects ``names`` on a ``width`` x ``height`` frame,
    whose tight boxes keep to ``where`` where they can.

    ``size_scale`` multiplies the sides of local (not frame-spanning) defects (difficulty).
    """
    taken: list[Box] = []
    out = []
    for name in names:
        sizes, spans = fit_sizes(sample_sizes(rng, name, 1), width, height, size_scale)
        bw, tw, ox = _sides(rng, float(sizes[0, 0]), width, bool(spans[0, 0]))
        bh, th, oy = _sides(rng, float(sizes[0, 1]), height, bool(spans[0, 1]))
        inner = None if where is None else _shifted(where, ox, oy, tw, th)
        x0, y0 = place(rng, bw, bh, width, height, taken, inner)
        box = (x0, y0, x0 + bw, y0 + bh)
        taken.append(box)
        out.append(PlannedDefect(name, box, (x0 + ox, y0 + oy, x0 + ox + tw, y0 + oy + th)))
    return out


def annotation_box(planned: Box, mask_box: Box, width: int, height: int) -> Box:
    """The box written to the labels: the planned annotation box grown to hold the true mask's
    bounds ``mask_box`` (a soft edge may reach past the tight box), clipped, 2 decimals."""
    x0, y0 = max(0.0, min(planned[0], mask_box[0])), max(0.0, min(planned[1], mask_box[1]))
    x1 = min(float(width), max(planned[2], mask_box[2]))
    y1 = min(float(height), max(planned[3], mask_box[3]))
    return (round(x0, 2), round(y0, 2), round(x1, 2), round(y1, 2))


def sample_release_geometry(
    rng: np.random.Generator, boxes: int, width: int = 2446, height: int = 1000
) -> dict[int, np.ndarray]:
    """Annotation box sizes ``[n, 2]`` (w, h px) per category id of ``boxes`` boxes drawn as a
    Tianchi-prior release draws them (raw names, sizes, fit to the frame), without painting.

    These are the sizes :func:`plan_defects` gives; a written box can only grow past its
    planned one where the painted mask pokes out of it (:func:`annotation_box`).
    """
    names = np.asarray(sample_raw_names(rng, boxes))
    sizes: dict[int, list[np.ndarray]] = {}
    for name in sorted(set(names.tolist())):
        wh, _ = fit_sizes(sample_sizes(rng, name, int((names == name).sum())), width, height)
        sizes.setdefault(RAW_BY_NAME[name].category_id, []).append(wh)
    return {c: np.concatenate(v) for c, v in sizes.items()}


@dataclass(frozen=True)
class GeometryStats:
    """Boxes of one category: count, share of all boxes, width and height p10/p50/p90 (px)."""

    n: int
    share: float
    width: tuple[float, float, float]
    height: tuple[float, float, float]


def geometry_stats(sizes: dict[int, np.ndarray]) -> dict[int, GeometryStats]:
    """Per category id: :class:`GeometryStats` of its ``[n, 2]`` (w, h) box sizes."""
    total = sum(len(v) for v in sizes.values())
    out = {}
    for cat, wh in sizes.items():
        if len(wh) == 0:
            continue
        q = np.quantile(np.asarray(wh, float), [0.1, 0.5, 0.9], axis=0)
        out[cat] = GeometryStats(
            len(wh), len(wh) / total, tuple(q[:, 0].tolist()), tuple(q[:, 1].tolist())
        )
    return out


def reference_stats() -> dict[int, GeometryStats]:
    """The real table's :class:`GeometryStats` per category id (stored numbers)."""
    return {c: GeometryStats(n, s, w, h) for c, (n, s, w, h) in CATEGORY_REFERENCE.items()}


def check_geometry(
    synth: dict[int, GeometryStats], real: dict[int, GeometryStats] | None = None
) -> list[str]:
    """What breaks the bounds (module ``benchmarks/synth_geometry.py``), one line each, as
    ``"<category name>: <what>"``; empty when every category with enough real boxes passes."""
    real = reference_stats() if real is None else real
    failures = []
    for cat, r in sorted(real.items()):
        if r.n < MIN_REAL_BOXES:
            continue
        name = CATEGORY_BY_ID[cat].name
        s = synth.get(cat)
        if s is None:
            failures.append(f"{name}: no synthetic boxes")
            continue
        checks = [("share", s.share, r.share, 0.25)]
        for axis, sv, rv in (("w", s.width, r.width), ("h", s.height, r.height)):
            checks += [
                (f"{axis} p10", sv[0], rv[0], 0.5),
                (f"{axis} p50", sv[1], rv[1], 0.25),
                (f"{axis} p90", sv[2], rv[2], 0.5),
            ]
        for what, sv, rv, tol in checks:
            if abs(sv / rv - 1.0) > tol:
                failures.append(f"{name}: {what} {sv:.4g} vs real {rv:.4g} (+-{tol:.0%})")
    return failures
