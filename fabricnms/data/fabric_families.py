"""Fabric families: the looks of real inspection frames beyond the Tianchi denim of ``texture``.

A frame's family is drawn from its own random stream (child 3 of the frame seed's
``SeedSequence``; the fabric, defect and camera streams are children 0-2), so a frame whose
family is ``tianchi`` is byte-identical to what the generator made before families existed.
Families (with ``fabrics="mixed"``, the default; ``"tianchi"`` keeps the old look for every
frame):

- ``tianchi``: :func:`~fabricnms.data.texture.sample_fabric` and
  :func:`~fabricnms.data.synth_scan.sample_scan` unchanged (grey-blue / navy / khaki twill);
- ``denim``: dark indigo twill with coarse ribs (period 8-14 px, strong relief), heavy
  demosaicing colour noise and sparse single bright fibres in saturated colours;
- ``greige``: a grey (mono sensor) plain weave of fine, low-contrast yarns under uneven light,
  with faint line-scan column streaks and, on about half the frames, a selvedge and the dark
  background beyond it at one side (never over a defect);
- ``line_scan``: a grey strip of a line-scan camera: a clearly visible plain or twill weave,
  per-column gain streaks and per-row gain flicker, sometimes a bright background at one side;
- ``factory_grey``: grey cloth whose weave is barely resolved (period 2.5-4 px, low contrast,
  soft optics), blotchy shading, broad soft streaks and sparse pale lint fibres.

Grey families are rendered with equal channels (a monochrome camera: no per-channel speckle;
defect tints become grey too). All effects act on the reflectance ``[H, W, 3]`` float32 RGB
(0..255) after the defects are painted and before the camera (:func:`apply_look`), as gains,
so the defects stay visible and their masks stay true. Frame size is whatever the caller asks
(line-scan strips are wide: ask e.g. ``--size 4096x256``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fabricnms.data.synth_canvas import Canvas, fit_to_box, smooth_curve, stroke
from fabricnms.data.synth_scan import ScanParams
from fabricnms.data.texture import (
    FabricParams,
    WeaveParams,
    smooth_noise,
    smooth_profile,
)

#: Family probabilities of ``fabrics="mixed"``.
FAMILIES: dict[str, float] = {
    "tianchi": 0.25,
    "denim": 0.10,
    "greige": 0.25,
    "line_scan": 0.15,
    "factory_grey": 0.25,
}
FABRIC_CHOICES = ("mixed", "tianchi")


@dataclass(frozen=True)
class Look:
    """A family and its frame-level effects (relative gains unless stated).

    ``mono``: grey camera; ``column_streaks`` / ``row_flicker``: std of the per-column /
    per-row gain; ``uneven_light``: amplitude of large-scale light, ``shading`` of blotches
    120-400 px across; ``side`` 0 none, -1 left,
    +1 right, ``side_width`` its fraction of the frame width and ``side_level`` the background
    reflectance (0..255); ``fibres``: single bright fibres per megapixel, ``fibre_colour`` in
    saturated colours (else pale grey lint)."""

    family: str
    fabric: FabricParams | None = None
    speckle: float | None = None  # replaces the camera's demosaic noise std when set
    noise: float | None = None  # replaces the camera's luminance noise std when set
    blur: float | None = None  # replaces the camera's blur sigma (px) when set
    mono: bool = False
    column_streaks: float = 0.0
    row_flicker: float = 0.0
    uneven_light: float = 0.0
    shading: float = 0.0
    side: int = 0
    side_width: float = 0.0
    side_level: float = 0.0
    fibres: float = 0.0
    fibre_colour: bool = False

    def scan(self, params: ScanParams) -> ScanParams:
        """The camera of this look: ``params`` with its noise levels replaced where set."""
        changes = {"speckle": self.speckle, "noise": self.noise, "blur": self.blur}
        return replace(params, **{k: v for k, v in changes.items() if v is not None})


TIANCHI = Look("tianchi")


def look_rng(seed: int) -> np.random.Generator:
    """The family stream of frame ``seed`` (child 3 of its ``SeedSequence``)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(3,)))


def sample_look(rng: np.random.Generator, fabrics: str = "mixed") -> Look:
    """Draw a frame's family and its parameters (:data:`FAMILIES`; ``"tianchi"``: always it)."""
    if fabrics not in FABRIC_CHOICES:
        raise ValueError(f"fabrics must be one of {FABRIC_CHOICES}, got {fabrics!r}")
    names = list(FAMILIES)
    probs = np.array([FAMILIES[n] for n in names])
    family = names[int(rng.choice(len(names), p=probs / probs.sum()))]
    if fabrics == "tianchi" or family == "tianchi":
        return TIANCHI
    return _SAMPLERS[family](rng)


def _weave(rng: np.random.Generator, kind: str, period: tuple[float, float]) -> WeaveParams:
    twill = kind == "twill"
    return WeaveParams(
        kind=kind,
        period=float(rng.uniform(*period)),
        angle=float(rng.uniform(24.0, 34.0) if twill else rng.uniform(-1.0, 1.0)),
        dot_period=float(rng.uniform(0.55, 0.7) * period[0]) if twill else 0.0,
        phase=(float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0, 2 * np.pi))),
        dot_depth=float(rng.uniform(0.3, 0.6)),
    )


def _fabric(
    rng: np.random.Generator,
    family: str,
    weave: WeaveParams,
    base: np.ndarray,
    contrast: float,
    texture: float,
) -> FabricParams:
    """Fabric parameters; ``texture`` scales the yarn irregularity, hairiness and mottling."""
    spread = 1.0 + rng.normal(0.0, 0.04, size=3) if family == "denim" else np.ones(3)
    c = contrast * spread
    return FabricParams(
        weave=weave,
        palette=family,
        base=(float(base[0]), float(base[1]), float(base[2])),
        contrast=(float(c[0]), float(c[1]), float(c[2])),
        displacement=float(rng.uniform(0.3, 1.0) * min(1.0, weave.period / 7.0)),
        yarn_irregularity=float(rng.uniform(0.015, 0.035) * texture),
        hairiness=float(rng.uniform(0.03, 0.06) * texture),
        mottling=float(rng.uniform(0.005, 0.02) * texture),
    )


def _grey(rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    return np.full(3, rng.uniform(lo, hi))


def _denim(rng: np.random.Generator) -> Look:
    base = np.array([38.0, 48.0, 78.0]) * rng.uniform(0.8, 1.25) + rng.normal(0, 2, 3)
    weave = _weave(rng, "twill", (8.0, 14.0))
    return Look(
        "denim",
        fabric=_fabric(rng, "denim", weave, base, float(rng.uniform(0.3, 0.45)), 1.3),
        speckle=float(rng.uniform(14.0, 20.0)),
        uneven_light=float(rng.uniform(0.0, 0.04)),
        fibres=float(rng.uniform(8.0, 40.0)),
        fibre_colour=True,
    )


def _greige(rng: np.random.Generator) -> Look:
    weave = _weave(rng, "plain", (2.8, 4.5))
    with_side = rng.random() < 0.5
    return Look(
        "greige",
        fabric=_fabric(
            rng, "greige", weave, _grey(rng, 95, 150), float(rng.uniform(0.03, 0.08)), 0.6
        ),
        speckle=0.0,
        noise=float(rng.uniform(0.8, 2.0)),
        mono=True,
        column_streaks=float(rng.uniform(0.001, 0.006)),
        uneven_light=float(rng.uniform(0.1, 0.25)),
        shading=float(rng.uniform(0.04, 0.08)),
        fibres=float(rng.uniform(0.0, 4.0)),
        side=int(rng.choice((-1, 1))) if with_side else 0,
        side_width=float(rng.uniform(0.08, 0.4)),
        side_level=float(rng.uniform(8.0, 25.0)),
    )


def _line_scan(rng: np.random.Generator) -> Look:
    kind = "twill" if rng.random() < 0.3 else "plain"
    weave = _weave(rng, kind, (4.0, 8.0))
    with_side = rng.random() < 0.25
    return Look(
        "line_scan",
        fabric=_fabric(
            rng, "line_scan", weave, _grey(rng, 50, 140), float(rng.uniform(0.1, 0.25)), 0.8
        ),
        speckle=0.0,
        noise=float(rng.uniform(0.8, 2.0)),
        blur=float(rng.uniform(0.7, 1.1)),
        mono=True,
        column_streaks=float(rng.uniform(0.004, 0.02)),
        row_flicker=float(rng.uniform(0.003, 0.015)),
        uneven_light=float(rng.uniform(0.0, 0.08)),
        shading=float(rng.uniform(0.02, 0.05)),
        fibres=float(rng.uniform(0.0, 4.0)),
        side=int(rng.choice((-1, 1))) if with_side else 0,
        side_width=float(rng.uniform(0.1, 0.35)),
        side_level=float(rng.uniform(230.0, 255.0)),
    )


def _factory_grey(rng: np.random.Generator) -> Look:
    weave = _weave(rng, "plain", (2.5, 4.0))
    return Look(
        "factory_grey",
        fabric=_fabric(
            rng, "factory_grey", weave, _grey(rng, 60, 225), float(rng.uniform(0.04, 0.08)), 0.4
        ),
        speckle=0.0,
        blur=float(rng.uniform(0.8, 1.3)),
        noise=float(rng.uniform(1.0, 2.5)),
        mono=True,
        column_streaks=float(rng.uniform(0.0, 0.004)),
        uneven_light=float(rng.uniform(0.04, 0.12)),
        shading=float(rng.uniform(0.05, 0.1)),
        fibres=float(rng.uniform(0.0, 6.0)),
    )


_SAMPLERS = {
    "denim": _denim,
    "greige": _greige,
    "line_scan": _line_scan,
    "factory_grey": _factory_grey,
}


def apply_look(look: Look, canvas: Canvas, rng: np.random.Generator) -> None:
    """Apply ``look``'s frame effects but the side strip (:func:`add_side`) to ``canvas.rgb``
    in place (nothing for ``tianchi``)."""
    if look.family == "tianchi":
        return
    rgb = canvas.rgb
    height, width = rgb.shape[:2]
    gain = np.ones((height, width), np.float32)
    if look.uneven_light > 0:
        light = smooth_noise(rng, height, width, float(rng.uniform(500.0, 1200.0)))
        theta = rng.uniform(0.0, 2.0 * np.pi)  # a linear light gradient in any direction
        ys = np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None]
        xs = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :]
        ramp = np.float32(np.sin(theta)) * ys + np.float32(np.cos(theta) * height / width) * xs
        gain *= np.float32(1.0) + np.float32(look.uneven_light) * (light * 0.6 + ramp)
    if look.shading > 0:
        blotches = smooth_noise(rng, height, width, float(rng.uniform(120.0, 400.0)))
        gain *= np.float32(1.0) + np.float32(look.shading) * blotches
    if look.column_streaks > 0:
        cols = smooth_profile(rng, width, float(rng.uniform(1.0, 6.0)))
        gain *= (np.float32(1.0) + np.float32(look.column_streaks) * cols)[None, :]
    if look.row_flicker > 0:
        rows = smooth_profile(rng, height, float(rng.uniform(0.8, 3.0)))
        gain *= (np.float32(1.0) + np.float32(look.row_flicker) * rows)[:, None]
    rgb *= gain[:, :, None]
    if look.fibres > 0:
        _fibres(look, canvas, rng)
    if look.mono:
        rgb[:] = rgb.mean(axis=2, keepdims=True)


def _fibres(look: Look, canvas: Canvas, rng: np.random.Generator) -> None:
    """Single bright fibres: thin curved strokes 15-80 px long, 1 px thick."""
    count = int(rng.poisson(look.fibres * canvas.width * canvas.height / 1e6))
    for _ in range(count):
        length = float(rng.uniform(15.0, 80.0))
        cx, cy = rng.uniform(0, canvas.width), rng.uniform(0, canvas.height)
        angle = rng.uniform(0, np.pi)
        half = 0.5 * length * np.array([abs(np.cos(angle)), abs(np.sin(angle))]) + 2.0
        box = (cx - half[0], cy - half[1], cx + half[0], cy + half[1])
        win = canvas.window(box, 2.0)
        points = fit_to_box(smooth_curve(rng, 24, 0.15), box, 1.0)
        alpha = stroke(win, points, 1) * np.float32(rng.uniform(0.5, 0.9))
        if look.fibre_colour:
            target = rng.choice([[235, 235, 230], [230, 60, 50], [240, 210, 60], [90, 200, 230]])
        else:
            target = np.full(3, rng.uniform(170, 230))
        canvas.blend(win, alpha, np.broadcast_to(np.asarray(target, np.float32), (*alpha.shape, 3)))


def side_pixels(look: Look, width: int, min_inner: int) -> int:
    """Width (px) of the strip :func:`add_side` puts beside a frame of this look: selvedge and
    background, 0 for none; the fabric keeps at least half the frame and ``min_inner`` px."""
    if look.side == 0:
        return 0
    pad = round(look.side_width * width)
    return max(0, min(pad, width - max(min_inner, width // 2)))


def add_side(
    look: Look, image: np.ndarray, pad: int, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """``image`` ``[H, W, 3]`` uint8 with a ``pad`` px strip at ``look.side``: the fabric's
    selvedge (brighter edge cords, ragged outline) and the background beyond it. Returns the
    ``[H, W + pad, 3]`` frame and the x offset of ``image`` in it."""
    height = image.shape[0]
    left = look.side < 0
    edge = image[:, :8] if left else image[:, -8:]
    fabric = edge.astype(np.float32).mean(axis=1)  # [H, 3] the fabric's own edge colour
    selvedge = min(float(rng.uniform(20.0, 60.0)), 0.5 * pad)
    depth = np.arange(pad, dtype=np.float32)[None, :] + np.float32(0.5)  # from the fabric edge
    if left:
        depth = depth[:, ::-1]
    ragged = np.float32(selvedge) + smooth_profile(rng, height, 12.0)[:, None] * np.float32(
        rng.uniform(1.0, 4.0)
    )
    cords = 1.0 + 0.12 * np.cos(2 * np.pi * depth / np.float32(rng.uniform(3.0, 6.0)))
    lift = np.float32(1.0 + rng.uniform(0.08, 0.25)) * cords
    cloth = np.clip(0.5 + ragged - depth, 0.0, 1.0)[:, :, None]  # 1 px soft fabric outline
    strip = cloth * fabric[:, None, :] * lift[:, :, None]
    strip += (1.0 - cloth) * np.float32(look.side_level)
    strip += rng.standard_normal((height, pad, 1)).astype(np.float32) * np.float32(2.0)
    if look.mono:
        strip = np.repeat(strip.mean(axis=2, keepdims=True), 3, axis=2)
    strip = np.clip(strip + 0.5, 0, 255).astype(np.uint8)
    parts = (strip, image) if left else (image, strip)
    return np.concatenate(parts, axis=1), pad if left else 0
