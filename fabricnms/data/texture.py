"""Procedural woven-fabric reflectance for the synthetic Tianchi round-1 frames.

The fabric is built in two layers so that defects can edit the weave itself:

* the **lattice**: a zero-mean, roughly unit-variance relief of yarn crossings evaluated on
  displaced pixel coordinates (twill: "/" diagonal ribs of bright crossing dots; plain weave:
  a checkerboard of crossings). :meth:`Fabric.lattice_at` re-evaluates it on any coordinates,
  which is how structural defects (pattern skips, tight warps, density bars) re-weave a patch;
* the **reflectance** ``rgb`` ``[H, W, 3]`` float32 on the 0..255 scale, RGB order:
  ``base * (1 + contrast * lattice + irregularity)`` where the irregularity holds per-yarn
  thickness profiles, hairiness and mottling. Because the map is linear in the lattice, a
  lattice edit ``d`` changes the reflectance by exactly ``base * contrast * d``.

Coordinates: image x = weft (across the fabric), image y = warp (along the fabric); pixel
``(row i, column j)`` has its centre at ``(x, y) = (j + 0.5, i + 0.5)``. Illumination and the
camera (vignetting, blur, noise, JPEG) are applied later by :mod:`fabricnms.data.synth_scan`.
Calibration targets come from the two public round-1 sample frames (reference section 10.2).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

#: Hue families: (probability, base RGB mean on 0..255 before vignetting, per-channel spread).
_PALETTES: dict[str, tuple[float, tuple[float, float, float]]] = {
    "grey_blue": (0.72, (110.0, 109.0, 118.0)),
    "navy": (0.10, (78.0, 84.0, 108.0)),
    "khaki": (0.09, (122.0, 113.0, 94.0)),
    "charcoal": (0.09, (90.0, 89.0, 94.0)),
}


@dataclass(frozen=True)
class WeaveParams:
    """Geometry of the yarn lattice (all lengths in pixels, angles in degrees).

    ``angle`` is the direction of the dominant wave vector below the horizontal (image y points
    down), so twill ribs run "/" at ``90 - angle`` degrees. ``dot_period`` is the period of the
    crossings along a rib. For a plain weave, ``period`` is the yarn pitch and ``angle`` a
    small skew of the whole lattice.
    """

    kind: str  # "twill" or "plain"
    period: float
    angle: float
    dot_period: float
    phase: tuple[float, float]
    dot_depth: float  # 0..1, how strongly the crossings break a rib into dots


@dataclass(frozen=True)
class FabricParams:
    """Everything random about one frame's fabric."""

    weave: WeaveParams
    palette: str
    base: tuple[float, float, float]  # mean RGB reflectance, 0..255
    contrast: tuple[float, float, float]  # relative lattice contrast per channel
    displacement: float  # px, amplitude of the smooth lattice wobble
    yarn_irregularity: float  # relative std of the per-yarn brightness profiles
    hairiness: float  # relative std of fine fibre noise
    mottling: float  # relative amplitude of low-frequency density variation


def sample_fabric(rng: np.random.Generator) -> FabricParams:
    """Draw one frame's fabric parameters (~85 % twill, the rest plain weave)."""
    names = list(_PALETTES)
    probs = np.array([_PALETTES[n][0] for n in names])
    palette = names[int(rng.choice(len(names), p=probs / probs.sum()))]
    mean = np.array(_PALETTES[palette][1]) * rng.uniform(0.85, 1.12)
    mean += rng.normal(0.0, 1.0, size=3)
    if rng.random() < 0.85:
        weave = WeaveParams(
            kind="twill",
            period=float(rng.uniform(6.0, 7.5)),
            angle=float(rng.uniform(24.0, 34.0)),
            dot_period=float(rng.uniform(3.6, 4.6)),
            phase=(float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0, 2 * np.pi))),
            dot_depth=float(rng.uniform(0.35, 0.7)),
        )
    else:
        weave = WeaveParams(
            kind="plain",
            period=float(rng.uniform(4.2, 6.0)),
            angle=float(rng.uniform(-1.5, 1.5)),
            dot_period=0.0,
            phase=(float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0, 2 * np.pi))),
            dot_depth=float(rng.uniform(0.3, 0.6)),
        )
    contrast = rng.uniform(0.17, 0.23) * (1.0 + rng.normal(0.0, 0.06, size=3))
    return FabricParams(
        weave=weave,
        palette=palette,
        base=(float(mean[0]), float(mean[1]), float(mean[2])),
        contrast=(float(contrast[0]), float(contrast[1]), float(contrast[2])),
        displacement=float(rng.uniform(0.4, 1.1)),
        yarn_irregularity=float(rng.uniform(0.015, 0.035)),
        hairiness=float(rng.uniform(0.03, 0.06)),
        mottling=float(rng.uniform(0.005, 0.02)),
    )


def raw_lattice(u: np.ndarray, v: np.ndarray, weave: WeaveParams) -> np.ndarray:
    """Un-normalised crossing relief in [0, 1] at coordinates ``(u, v)`` (float32 arrays, px)."""
    two_pi = np.float32(2.0 * np.pi)
    theta = np.deg2rad(weave.angle)
    c, s = np.float32(np.cos(theta)), np.float32(np.sin(theta))
    if weave.kind == "twill":
        k1 = two_pi / np.float32(weave.period)
        k2 = two_pi / np.float32(weave.dot_period)
        ridge = np.cos((u * c + v * s) * k1 + np.float32(weave.phase[0]))
        ridge += 1.0
        ridge *= 0.5
        ridge *= ridge
        dots = np.cos((v * c - u * s) * k2 + np.float32(weave.phase[1]))
        dots *= np.float32(0.5 * weave.dot_depth)
        dots += np.float32(1.0 - 0.5 * weave.dot_depth)
        ridge *= dots
        return ridge
    k = two_pi / np.float32(weave.period)
    uu = (u * c + v * s) * k + np.float32(weave.phase[0])
    vv = (v * c - u * s) * k + np.float32(weave.phase[1])
    cu, cv = np.cos(uu), np.cos(vv)
    out = cu * cv  # checkerboard of over/under crossings
    out *= np.float32(0.5 * weave.dot_depth)
    cu *= cu
    cv *= cv
    out += np.float32(0.25) * (cu + cv)  # the yarns themselves
    return out


def smooth_noise(
    rng: np.random.Generator, height: int, width: int, cell: float, dtype: type = np.float32
) -> np.ndarray:
    """Band-limited noise ``[height, width]``, zero mean, std ~1, correlation length ~``cell`` px.

    A coarse Gaussian grid upsampled with bicubic interpolation (cv2), so the cost is one resize.
    """
    gh = max(2, int(np.ceil(height / cell)) + 2)
    gw = max(2, int(np.ceil(width / cell)) + 2)
    grid = rng.standard_normal((gh, gw), dtype=np.float32)
    full_h, full_w = round((gh - 1) * cell) + 1, round((gw - 1) * cell) + 1
    big = cv2.resize(grid, (max(full_w, width), max(full_h, height)), interpolation=cv2.INTER_CUBIC)
    oy = int(rng.integers(0, big.shape[0] - height + 1))
    ox = int(rng.integers(0, big.shape[1] - width + 1))
    out = big[oy : oy + height, ox : ox + width]
    return (out / np.float32(0.75)).astype(dtype, copy=False)


def smooth_profile(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """1-D Gaussian noise of length ``n`` smoothed with a Gaussian of ``sigma`` px, std ~1."""
    x = rng.standard_normal(n + 8 * int(sigma + 1)).astype(np.float32)
    k = int(3 * sigma) * 2 + 1
    y = cv2.GaussianBlur(x[None, :], (k, 1), sigma).ravel()
    pad = 4 * int(sigma + 1)
    y = y[pad : pad + n]
    return y / np.float32(max(float(y.std()), 1e-6))


class Fabric:
    """One frame's fabric: lattice ``[H, W]``, displacement fields and reflectance ``[H, W, 3]``.

    Build it with :meth:`render`. ``rgb`` is float32 RGB on 0..255 (no illumination yet);
    ``lattice`` is the normalised relief (zero mean, std ~1) that ``rgb`` was made from.
    """

    def __init__(
        self,
        params: FabricParams,
        disp_x: np.ndarray,
        disp_y: np.ndarray,
        norm: tuple[float, float],
        lattice: np.ndarray,
        rgb: np.ndarray,
    ) -> None:
        self.params = params
        self.disp_x = disp_x
        self.disp_y = disp_y
        self._norm = norm
        self.lattice = lattice
        self.rgb = rgb
        self.gain = np.asarray(params.base, np.float32) * np.asarray(params.contrast, np.float32)

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @classmethod
    def render(
        cls, params: FabricParams, rng: np.random.Generator, width: int, height: int
    ) -> Fabric:
        """Weave the fabric of ``params`` on a ``width`` x ``height`` frame."""
        amp = np.float32(params.displacement)
        # smooth wobble of the whole lattice plus uneven yarn spacing (per row / per column)
        disp_x = smooth_noise(rng, height, width, 48.0) * amp
        disp_x += smooth_profile(rng, width, 6.0)[None, :] * np.float32(0.15)
        disp_y = smooth_noise(rng, height, width, 48.0) * amp
        disp_y += smooth_profile(rng, height, 6.0)[:, None] * np.float32(0.15)
        u = disp_x + (np.arange(width, dtype=np.float32) + np.float32(0.5))[None, :]
        v = disp_y + (np.arange(height, dtype=np.float32) + np.float32(0.5))[:, None]
        raw = raw_lattice(u, v, params.weave)
        del u, v
        mu, sd = float(raw.mean()), float(raw.std()) + 1e-6
        raw -= np.float32(mu)
        raw *= np.float32(1.0 / sd)
        lattice = raw

        # relative brightness irregularity: warp (per column) and weft (per row) yarn
        # thickness, fine hairiness, and low-frequency mottling of the cloth
        ir = np.float32(params.yarn_irregularity)
        irr = smooth_noise(rng, height, width, 160.0) * np.float32(params.mottling)
        irr += (smooth_profile(rng, width, 1.2) * ir)[None, :]
        irr += (smooth_profile(rng, height, 1.2) * (ir * np.float32(0.8)))[:, None]
        hair = rng.standard_normal((height, width), dtype=np.float32)
        hair = cv2.GaussianBlur(hair, (0, 0), 0.9)
        irr += hair * np.float32(params.hairiness * 1.6)
        base = np.asarray(params.base, np.float32)
        contrast = np.asarray(params.contrast, np.float32)
        rgb = np.empty((height, width, 3), np.float32)
        for ch in range(3):
            np.multiply(lattice, contrast[ch], out=rgb[:, :, ch])
            rgb[:, :, ch] += irr
            rgb[:, :, ch] += np.float32(1.0)
            rgb[:, :, ch] *= base[ch]
        return cls(params, disp_x, disp_y, (mu, sd), lattice, rgb)

    def coords(self, ys: slice, xs: slice) -> tuple[np.ndarray, np.ndarray]:
        """Displaced lattice coordinates ``(u, v)`` ``[h, w]`` float32 of the window ``ys, xs``."""
        x = np.arange(xs.start, xs.stop, dtype=np.float32) + np.float32(0.5)
        y = np.arange(ys.start, ys.stop, dtype=np.float32) + np.float32(0.5)
        return self.disp_x[ys, xs] + x[None, :], self.disp_y[ys, xs] + y[:, None]

    def lattice_at(
        self, u: np.ndarray, v: np.ndarray, weave: WeaveParams | None = None
    ) -> np.ndarray:
        """Normalised lattice at coordinates ``(u, v)``, optionally with another weave geometry."""
        raw = raw_lattice(u, v, weave or self.params.weave)
        mu, sd = self._norm
        return (raw - np.float32(mu)) * np.float32(1.0 / sd)

    def variant(self, **changes: float | tuple[float, float]) -> WeaveParams:
        """This frame's weave geometry with some fields replaced (period, angle, phase...)."""
        return replace(self.params.weave, **changes)  # type: ignore[arg-type]
