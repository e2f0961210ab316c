"""Defect recipes painted into real defect-free fabric photographs (``synth --background``).

Python API::

    from fabricnms.data.synth_background import render_on_background

    frame = render_on_background(image, seed=7, classes=[10])  # image: [H, W, 3] or [H, W]
    frame.image                  # [H, W, 3] uint8 RGB, the photograph with the defects in it
    frame.defects[0].box         # loose xyxy pixel box (what anno_train.json gets)
    frame.defects[0].mask        # [H, W] bool true mask, inside the box

The recipes of :mod:`fabricnms.data.defects` edit the photograph itself, through the same canvas
operations as on procedural fabric: relative gains (stains and marks tint and darken
multiplicatively, so the weave stays visible; holes, knots and fibres take their light from the
fabric around them) and re-weaving, which moves the fabric's own measured relief
(:mod:`fabricnms.data.weave_measure`) towards a target (a missing yarn, a thick pick) or
resamples it with another geometry (pattern skips, density bars, tight warps). The change is
blurred by the frame's optics (Gaussian, 0.6 px) and added back (brightening scaled by the
headroom ``(255 - v) / v`` where that is below 1, so light cloth does not glare), so pixels
change only within a few px of a defect and there are no seams. Local defect sizes are scaled by
the measured yarn period against the procedural twill's (:data:`REFERENCE_PERIOD`), clamped to
0.6-2, where the period is clear (:data:`MIN_STRENGTH`). Grey photographs stay grey. Image x is
taken as the weft and y as the warp direction (line-scan frames): a fabric photographed at an
angle gets axis-aligned warp and weft defects. Defects are placed on the cloth
(:func:`on_fabric`) where they fit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from fabricnms.data.cloth import flat_mask
from fabricnms.data.synth_canvas import Box, Canvas, Window
from fabricnms.data.synth_frame import MIN_SIZE, SynthFrame, draw_names, paint_defects
from fabricnms.data.synth_priors import difficulty as difficulty_level
from fabricnms.data.texture import WeaveParams
from fabricnms.data.weave_measure import WeaveEstimate, luminance, measure_weave, relief_maps
from fabricnms.errors import FabricError

#: Yarn period (px) of the procedural twill the recipes' stroke widths were drawn for.
REFERENCE_PERIOD = 6.5
#: A background whose luma std is below this (grey levels) is blank: nothing to weave into.
BLANK_STD = 2.0
#: Below this spectral peak share the measured period is not trusted for sizing defects.
MIN_STRENGTH = 0.02
#: Optics applied to the painted change (Gaussian sigma, px).
CHANGE_BLUR = 0.6


@dataclass(frozen=True)
class _Params:
    weave: WeaveParams


class BackgroundFabric:
    """A photograph in the role of :class:`fabricnms.data.texture.Fabric`: ``rgb`` ``[H, W, 3]``
    float32 0..255, ``lattice`` the measured relief ``[H, W]`` (edited by re-weaving), ``amp``
    ``[H, W, 3]`` its local RGB amplitude, ``params.weave`` the measured weave geometry."""

    def __init__(self, rgb: np.ndarray) -> None:
        self.rgb = rgb
        self.estimate: WeaveEstimate = measure_weave(rgb)
        est = self.estimate
        self._relief, self.amp = relief_maps(rgb, est.period)
        self.lattice = self._relief.copy()
        self.params = _Params(
            WeaveParams(
                kind="twill" if est.twill else "plain",
                period=est.period,
                angle=est.angle,
                dot_period=est.second_period,
                phase=(0.0, 0.0),
                dot_depth=0.5,
            )
        )

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    def coords(self, ys: slice, xs: slice) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre coordinates ``(u, v)`` ``[h, w]`` float32 of the window ``ys, xs``."""
        x = np.arange(xs.start, xs.stop, dtype=np.float32) + np.float32(0.5)
        y = np.arange(ys.start, ys.stop, dtype=np.float32) + np.float32(0.5)
        return np.broadcast_to(x[None, :], (y.size, x.size)), np.broadcast_to(
            y[:, None], (y.size, x.size)
        )

    def lattice_at(
        self, u: np.ndarray, v: np.ndarray, weave: WeaveParams | None = None
    ) -> np.ndarray:
        """The original relief resampled at ``(u, v)``; with ``weave``, first scaled by its
        period over the measured one, rotated by its angle minus the measured one about the
        window centre and shifted by its phase: the real weave with another geometry."""
        u = np.asarray(u, np.float32)
        v = np.asarray(v, np.float32)
        if weave is not None:
            base = self.params.weave
            s = max(weave.period, 1e-3) / max(base.period, 1e-3)
            t = np.radians(weave.angle - base.angle)
            cu, cv = float(u.mean()), float(v.mean())
            a = np.radians(base.angle)
            shift = weave.phase[0] / (2 * np.pi) * base.period
            du, dv = u - np.float32(cu), v - np.float32(cv)
            u = np.float32(cu + shift * np.cos(a)) + (du * np.cos(t) + dv * np.sin(t)) / s
            v = np.float32(cv + shift * np.sin(a)) + (dv * np.cos(t) - du * np.sin(t)) / s
        mx = np.ascontiguousarray(u - np.float32(0.5), np.float32)
        my = np.ascontiguousarray(v - np.float32(0.5), np.float32)
        return cv2.remap(self._relief, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)

    def variant(self, **changes: float | tuple[float, float]) -> WeaveParams:
        """The measured weave geometry with some fields replaced (period, angle, phase...)."""
        return replace(self.params.weave, **changes)  # type: ignore[arg-type]


class BackgroundCanvas(Canvas):
    """:class:`~fabricnms.data.synth_canvas.Canvas` on a photograph: re-weaving changes the
    RGB by the local relief amplitude instead of one fabric-wide gain."""

    fabric: BackgroundFabric

    def reweave(self, win: Window, target: np.ndarray | float, alpha: np.ndarray) -> None:
        lat = self.fabric.lattice[win.ys, win.xs]
        delta = alpha * (np.asarray(target, np.float32) - lat)
        lat += delta
        self.rgb[win.ys, win.xs] += delta[:, :, None] * self.fabric.amp[win.ys, win.xs]


def as_rgb_float(frame: np.ndarray) -> tuple[np.ndarray, bool]:
    """``([H, W, 3] float32 RGB 0..255, grey)`` of an ``[H, W]`` / ``[H, W, 1|3]`` uint8 or
    uint16 frame (uint16 scaled by 255 / 65535); ``grey`` when all channels are equal."""
    image = np.asarray(frame)
    if image.dtype == np.uint16:
        image = image.astype(np.float32) * np.float32(255.0 / 65535.0)
    elif image.dtype != np.uint8:
        raise FabricError(f"background pixel type {image.dtype} unsupported; use uint8 or uint16")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise FabricError(f"background of shape {list(image.shape)}; expected [H, W] or [H, W, 3]")
    grey = bool(
        (image[:, :, 0] == image[:, :, 1]).all() and (image[:, :, 1] == image[:, :, 2]).all()
    )
    return image.astype(np.float32), grey


def background_problem(rgb: np.ndarray) -> str | None:
    """Why ``rgb`` ``[H, W, 3]`` cannot take defects (too small, blank), or ``None``."""
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SIZE:
        return f"too small ({w}x{h}; need at least {MIN_SIZE} px a side)"
    std = float(luminance(rgb).std())
    if std < BLANK_STD:
        return f"blank (grey-level std {std:.2f} < {BLANK_STD}): no fabric texture to weave into"
    return None


def on_fabric(rgb: np.ndarray, share: float = 0.9) -> Callable[[Box], bool]:
    """``where(box)``: whether at least ``share`` of the tight xyxy ``box`` is fabric, i.e.
    neither clipped (luma <= 6 or >= 249) nor flat (local luma std over ~15 px below a third of
    the frame's median): defects go on the cloth, not on a selvedge gap, the table or glare."""
    ok = ~flat_mask(luminance(rgb))[1]
    table = np.pad(ok.astype(np.float64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    h, w = ok.shape

    def where(box: Box) -> bool:
        x0, y0 = int(np.clip(box[0], 0, w)), int(np.clip(box[1], 0, h))
        x1, y1 = int(np.clip(np.ceil(box[2]), x0 + 1, w)), int(np.clip(np.ceil(box[3]), y0 + 1, h))
        inside = table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]
        return bool(inside >= share * (x1 - x0) * (y1 - y0))

    return where


def render_on_background(
    frame: np.ndarray,
    seed: int,
    *,
    classes: list[int] | tuple[int, ...] | None = None,
    n_defects: int | None = None,
    raw_names: list[str] | None = None,
    class_prior: str = "tianchi",
    difficulty: str = "normal",
    geometry: str = "real",
) -> SynthFrame:
    """Paint defects into the defect-free photograph ``frame`` (module docstring).

    Args:
        frame: ``[H, W]`` or ``[H, W, 1|3]`` RGB uint8 or uint16, at least 64 px a side, not
            blank. Not modified.
        seed: any non-negative int; the result is a pure function of the arguments.
        classes, n_defects, raw_names, class_prior, difficulty, geometry: as for
            :func:`fabricnms.data.synth_frame.render_frame`.

    Returns:
        A :class:`SynthFrame`: ``image`` ``[H, W, 3]`` uint8 RGB, ``defects`` with loose xyxy
        pixel boxes, tight boxes and ``[H, W]`` bool masks inside their boxes.
    """
    rgb, grey = as_rgb_float(frame)
    problem = background_problem(rgb)
    if problem is not None:
        raise FabricError(f"background {problem}")
    level = difficulty_level(difficulty)
    fabric = BackgroundFabric(rgb.copy())
    est = fabric.estimate
    periodic = est.strength >= MIN_STRENGTH
    scale = float(np.clip(est.period / REFERENCE_PERIOD, 0.6, 2.0)) if periodic else 1.0
    defect_ss = np.random.SeedSequence(seed)
    plan_rng = np.random.default_rng(defect_ss)
    names = draw_names(plan_rng, raw_names, n_defects, classes, class_prior, geometry)
    canvas = BackgroundCanvas(fabric)
    level = replace(level, size=level.size * scale)
    where = on_fabric(rgb)
    defects = paint_defects(canvas, plan_rng, defect_ss, names, level, geometry, where)
    change = canvas.rgb - rgb
    # brightening saturates towards white: on light cloth a bright fibre barely shows
    headroom = np.clip((np.float32(255.0) - rgb) / (rgb + np.float32(1.0)), 0.0, 1.0)
    change = np.where(change > 0, change * headroom, change)
    change = cv2.GaussianBlur(change, (0, 0), CHANGE_BLUR)
    out = rgb + change
    if grey:
        out = np.repeat(luminance(out)[:, :, None], 3, axis=2)
    image = np.clip(out + np.float32(0.5), 0.0, 255.0).astype(np.uint8)
    return SynthFrame(seed=int(seed), image=image, defects=defects)


def cut_window(
    rgb: np.ndarray, window: tuple[int, int] | None, rng: np.random.Generator
) -> np.ndarray:
    """A ``window`` ``(w, h)`` px part of ``rgb`` at a random position (the whole frame where it
    is smaller than the window along an axis, or without ``window``)."""
    if window is None:
        return rgb
    h, w = rgb.shape[:2]
    ww, wh = min(window[0], w), min(window[1], h)
    x0 = int(rng.integers(0, w - ww + 1))
    y0 = int(rng.integers(0, h - wh + 1))
    return rgb[y0 : y0 + wh, x0 : x0 + ww]


def load_background(path: str | Path) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB of the background file ``path``; :class:`FabricError` naming
    the file when it is unreadable, too small or blank."""
    from fabricnms.data.frame_reader import read_frame_rgb

    image = read_frame_rgb(path)
    problem = background_problem(image.astype(np.float32))
    if problem is not None:
        raise FabricError(f"{path}: {problem}")
    return image


def background_frame(
    path: str | Path,
    window: tuple[int, int] | None,
    seed: int,
    normal: bool,
    **render: object,
) -> SynthFrame:
    """One release frame from the background file ``path``: a ``window`` cut at a position
    drawn from ``seed`` (or the whole frame), left as it is when ``normal``, else with defects
    painted from ``seed`` (``render``: keyword arguments of :func:`render_on_background`)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7,)))
    image = cut_window(load_background(path), window, rng)
    if normal:
        return SynthFrame(seed=int(seed), image=np.ascontiguousarray(image), defects=[])
    return render_on_background(image, seed, n_defects=None, **render)  # type: ignore[arg-type]


def usable_backgrounds(paths: list[str]) -> tuple[list[str], list[str]]:
    """``(usable paths, one problem line per skipped file)`` of background files ``paths``
    (unreadable, too small or blank ones are skipped)."""
    usable, problems = [], []
    for path in paths:
        try:
            load_background(path)
        except FabricError as exc:
            problems.append(str(exc))
        else:
            usable.append(path)
    return usable, problems
