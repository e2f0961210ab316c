"""One procedural Tianchi round-1 frame: fabric, defects, camera (:func:`render_frame`).

A frame is a pure function of its arguments. The fabric, the defects and the camera draw from
independent child seeds, so the same seed with ``n_defects=0`` gives the identical defect-free
frame (same weave, same sensor noise).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from fabricnms.data.classes import CATEGORY_BY_ID, RAW_BY_NAME
from fabricnms.data.defects import RECIPES
from fabricnms.data.fabric_families import (
    TIANCHI,
    Look,
    add_side,
    apply_look,
    look_rng,
    sample_look,
    side_pixels,
)
from fabricnms.data.synth_canvas import Box, Canvas
from fabricnms.data.synth_geometry import Where, annotation_box, plan_defects
from fabricnms.data.synth_geometry_v1 import loose_box, plan_defects_v1
from fabricnms.data.synth_priors import (
    Difficulty,
    raw_name_weights,
    sample_box_count,
    sample_raw_names,
)
from fabricnms.data.synth_priors import difficulty as difficulty_level
from fabricnms.data.synth_scan import ScanParams, expose, sample_scan
from fabricnms.data.texture import Fabric, FabricParams, sample_fabric
from fabricnms.errors import FabricError

#: Frames narrower or lower than this cannot hold the defect recipes.
MIN_SIZE = 64


@dataclass(frozen=True)
class SynthDefect:
    """One generated defect.

    ``box`` is the loose annotation (xyxy pixels, 2 decimals, inside the frame), ``tight_box``
    the pixel-edge bounds of ``mask`` (``[H, W]`` bool), ``category_id`` is 1-based (1..20).
    """

    raw_name: str
    category_id: int
    box: Box
    tight_box: Box
    mask: np.ndarray = field(repr=False)

    @property
    def name(self) -> str:
        """English category name."""
        return CATEGORY_BY_ID[self.category_id].name


@dataclass(frozen=True)
class SynthFrame:
    """One generated frame: ``image`` ``[H, W, 3]`` uint8 RGB and its defects (empty = normal)."""

    seed: int
    image: np.ndarray = field(repr=False)
    defects: list[SynthDefect]

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


def _mask_box(mask: np.ndarray) -> Box:
    """Pixel-edge xyxy bounds of a non-empty ``[H, W]`` bool mask."""
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


def _shifted(defect: SynthDefect, dx: int, pad: int) -> SynthDefect:
    """``defect`` of a frame that got ``pad`` columns, ``dx`` of them on its left."""
    x0, y0, x1, y1 = defect.box
    t0, u0, t1, u1 = defect.tight_box
    mask = np.pad(defect.mask, ((0, 0), (dx, pad - dx)))
    box = (round(x0 + dx, 2), y0, round(x1 + dx, 2), y1)  # annotations keep 2 decimals
    return replace(defect, box=box, tight_box=(t0 + dx, u0, t1 + dx, u1), mask=mask)


def render_frame(
    seed: int,
    width: int = 2446,
    height: int = 1000,
    *,
    difficulty: str = "normal",
    classes: Sequence[int] | None = None,
    n_defects: int | None = None,
    raw_names: Sequence[str] | None = None,
    class_prior: str = "tianchi",
    fabric: FabricParams | None = None,
    scan: ScanParams | None = None,
    geometry: str = "real",
    fabrics: str = "mixed",
    look: Look | None = None,
) -> SynthFrame:
    """Render one synthetic round-1 frame.

    Args:
        seed: any non-negative int; the frame is a pure function of the arguments.
        width, height: frame size in pixels (>= 64 each).
        difficulty: ``easy``, ``normal`` or ``hard`` (defect contrast and size).
        classes: allowed category ids (1..20); ``None`` = all, drawn with the class prior.
        n_defects: number of defects; ``None`` draws as many as a real frame has (mean 1.67),
            0 gives a normal frame.
        raw_names: exact raw Chinese names to draw (overrides ``classes`` and ``n_defects``).
        class_prior: ``tianchi`` (box frequencies of the real release) or ``uniform``.
        fabric: fabric parameters to weave; ``None`` draws them from the seed.
        scan: camera parameters; ``None`` draws them from the seed. Either way the per-frame
            shading blotches and sensor noise come from the seed.
        geometry: ``real`` (box sizes, class and box-count frequencies measured on real
            Tianchi boxes) or ``v1`` (the older hand-set ones, for reproducing old outputs).
        fabrics: ``mixed`` (a fabric family per frame, :mod:`fabricnms.data.fabric_families`;
            a given ``fabric`` is always ``tianchi``) or ``tianchi`` (the original look only).
        look: the family to render (``None``: drawn from the seed); a look with a side strip
            renders the fabric narrower and adds the selvedge and background beside it.

    Returns:
        A :class:`SynthFrame` whose ``image`` is the frame before JPEG encoding.
    """
    if width < MIN_SIZE or height < MIN_SIZE:
        raise FabricError(f"frame size {width}x{height} too small; need at least {MIN_SIZE} px")
    if n_defects is not None and n_defects < 0:
        raise FabricError(f"n_defects must be >= 0, got {n_defects}")
    level = difficulty_level(difficulty)
    fabric_ss, defect_ss, scan_ss = np.random.SeedSequence(seed).spawn(3)
    fab_rng = np.random.default_rng(fabric_ss)
    family_rng = look_rng(seed)
    if look is None:
        look = sample_look(family_rng, fabrics) if fabric is None else TIANCHI
        pad = side_pixels(look, width, MIN_SIZE)
        if pad:
            inner = render_frame(
                seed,
                width - pad,
                height,
                difficulty=difficulty,
                classes=classes,
                n_defects=n_defects,
                raw_names=raw_names,
                class_prior=class_prior,
                scan=scan,
                geometry=geometry,
                look=look,
            )
            image, dx = add_side(look, inner.image, pad, family_rng)
            return SynthFrame(inner.seed, image, [_shifted(d, dx, pad) for d in inner.defects])
    cloth = Fabric.render(fabric or look.fabric or sample_fabric(fab_rng), fab_rng, width, height)
    canvas = Canvas(cloth)

    plan_rng = np.random.default_rng(defect_ss)
    names = draw_names(plan_rng, raw_names, n_defects, classes, class_prior, geometry)
    defects = paint_defects(canvas, plan_rng, defect_ss, names, level, geometry)
    apply_look(look, canvas, family_rng)
    scan_rng = np.random.default_rng(scan_ss)
    image = expose(cloth.rgb, look.scan(scan or sample_scan(scan_rng, width)), scan_rng)
    return SynthFrame(seed=int(seed), image=image, defects=defects)


def draw_names(
    rng: np.random.Generator,
    raw_names: Sequence[str] | None,
    n_defects: int | None,
    classes: Sequence[int] | None,
    class_prior: str,
    geometry: str = "real",
) -> list[str]:
    """The raw names of one frame's defects: ``raw_names`` as given (checked), else
    ``n_defects`` (``None``: drawn like a real frame) names drawn from the class prior."""
    if raw_names is not None:
        unknown = [n for n in raw_names if n not in RECIPES]
        if unknown:
            raise FabricError(f"unknown raw defect name(s) {unknown}")
        return list(raw_names)
    raw_name_weights(classes, class_prior, geometry)  # validates the ids before drawing
    if n_defects is None:
        n_defects = sample_box_count(rng, geometry)
    return sample_raw_names(rng, n_defects, classes, class_prior, geometry)


def paint_defects(
    canvas: Canvas,
    plan_rng: np.random.Generator,
    defect_ss: np.random.SeedSequence,
    names: Sequence[str],
    level: Difficulty,
    geometry: str = "real",
    where: Where = None,
) -> list[SynthDefect]:
    """Place (:func:`~fabricnms.data.synth_geometry.plan_defects`, keeping to ``where`` if it
    can) and paint ``names`` on ``canvas``; each defect paints from its own child seed of
    ``defect_ss``."""
    width, height = canvas.width, canvas.height
    planner = plan_defects_v1 if geometry == "v1" else plan_defects
    plans = planner(plan_rng, names, width, height, level.size, where)
    defects: list[SynthDefect] = []
    for plan, child in zip(plans, defect_ss.spawn(len(plans)), strict=True):
        rng = np.random.default_rng(child)
        win, effect = RECIPES[plan.raw_name](canvas, rng, plan.tight, level.contrast)
        local = effect >= 0.5
        if not local.any():  # a recipe drew only faint pixels: keep its strongest ones
            peak = float(effect.max())
            if peak <= 0.0:
                raise RuntimeError(f"defect recipe {plan.raw_name} drew nothing in {plan.tight}")
            local = effect >= 0.5 * peak
        mask = np.zeros((height, width), bool)
        mask[win.ys, win.xs] = local
        tight = _mask_box(mask)
        if geometry == "v1":
            box = loose_box(rng, tight, width, height)
        else:
            box = annotation_box(plan.box, tight, width, height)
        cat = RAW_BY_NAME[plan.raw_name].category_id
        defects.append(SynthDefect(plan.raw_name, cat, box, tight, mask))
    return defects
