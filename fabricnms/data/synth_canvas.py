"""Painting primitives for synthetic defects: windows, alpha shapes and canvas edits.

Conventions: frame pixel ``(row i, column j)`` has its centre at ``(x, y) = (j + 0.5, i + 0.5)``;
boxes are ``(x0, y0, x1, y1)`` pixel-edge coordinates (xyxy, pixels, top-left origin). Every
defect draws inside a :class:`Window` (a clipped rectangle of the frame) and returns an
*effect* map ``[h, w]`` float32 whose pixels ``>= 0.5`` form the defect's true mask.
Alpha maps are float32 in [0, 1]; gains are relative (``+0.2`` = 20 % brighter).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from fabricnms.data.texture import Fabric, WeaveParams

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Window:
    """A rectangle of the frame: slices and pixel-centre coordinates ``x`` [1, w], ``y`` [h, 1]."""

    ys: slice
    xs: slice
    x: np.ndarray
    y: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return (self.ys.stop - self.ys.start, self.xs.stop - self.xs.start)


def smoothstep(t: np.ndarray) -> np.ndarray:
    """Hermite ramp: 0 for t <= 0, 1 for t >= 1, smooth in between (float32)."""
    t = np.clip(t, 0.0, 1.0).astype(np.float32, copy=False)
    return t * t * (np.float32(3.0) - np.float32(2.0) * t)


def band(dist: np.ndarray, half: float | np.ndarray, soft: float) -> np.ndarray:
    """Alpha of a band ``|dist| <= half`` with a ``soft`` px edge; 0.5 exactly at ``|dist| = half``.

    ``half`` may be an array broadcastable against ``dist`` (a band of varying width).
    """
    soft = max(float(soft), 1e-3)
    edge = np.asarray(half, np.float32) + np.float32(0.5 * soft)
    return smoothstep((edge - np.abs(dist)) / np.float32(soft))


def ramp_ends(along: np.ndarray, lo: float, hi: float, taper: float, limit: float) -> np.ndarray:
    """Envelope along a line from ``lo`` to ``hi``: 0.5 at either end, ramps over ``taper`` px.

    An end at the frame border (``lo <= 0.5`` or ``hi >= limit - 0.5``) is not tapered, so a
    line running the full frame keeps its full strength to the edge.
    """
    env = np.ones_like(along, dtype=np.float32)
    if lo > 0.5:
        env = env * smoothstep((along - np.float32(lo)) / np.float32(taper) + np.float32(0.5))
    if hi < limit - 0.5:
        env = env * smoothstep((np.float32(hi) - along) / np.float32(taper) + np.float32(0.5))
    return env


@dataclass(frozen=True)
class BlobShape:
    """Random outline of a blob: radius factor ``1 + sum a_k cos(k theta + phi_k)``, max <= 1."""

    amps: np.ndarray
    phases: np.ndarray
    scale: float

    @classmethod
    def sample(cls, rng: np.random.Generator, roughness: float) -> BlobShape:
        ks = np.arange(2, 7)
        amps = rng.uniform(0.3, 1.0, size=ks.size) * roughness / ks**0.8
        phases = rng.uniform(0.0, 2 * np.pi, size=ks.size)
        theta = np.linspace(0, 2 * np.pi, 720, endpoint=False)
        r = 1.0 + (amps[:, None] * np.cos(ks[:, None] * theta[None, :] + phases[:, None])).sum(0)
        return cls(amps=amps, phases=phases, scale=float(1.0 / r.max()))

    def radius(self, theta: np.ndarray) -> np.ndarray:
        r = np.ones_like(theta, dtype=np.float32)
        for k, (a, p) in enumerate(zip(self.amps, self.phases, strict=True), start=2):
            r += np.float32(a) * np.cos(np.float32(k) * theta + np.float32(p))
        return r * np.float32(self.scale)


def blob(
    win: Window, cx: float, cy: float, rx: float, ry: float, shape: BlobShape, soft: float
) -> np.ndarray:
    """Alpha ``[h, w]`` of an irregular blob inscribed in the ellipse ``(cx, cy, rx, ry)``.

    ``soft`` is the edge width as a fraction of the radius; alpha is 0.5 about ``soft/2``
    inside the outline and 0 outside the ellipse.
    """
    dx = (win.x - np.float32(cx)) / np.float32(max(rx, 0.5))
    dy = (win.y - np.float32(cy)) / np.float32(max(ry, 0.5))
    rho = np.sqrt(dx * dx + dy * dy)
    edge = shape.radius(np.arctan2(dy, dx))
    return smoothstep((edge - rho) / np.float32(max(soft, 1e-3)))


def stroke(win: Window, points: np.ndarray, thickness: int, supersample: int = 4) -> np.ndarray:
    """Anti-aliased alpha ``[h, w]`` of a polyline through ``points`` ``[N, 2]`` (frame x, y)."""
    h, w = win.shape
    s = supersample
    canvas = np.zeros((h * s, w * s), np.uint8)
    local = (points - np.array([win.xs.start, win.ys.start], np.float64)) * s
    pts = np.round(local * 16).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(canvas, [pts], False, 255, thickness=max(1, int(thickness * s)), shift=4)
    small = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32) * np.float32(1.0 / 255.0)


def smooth_curve(rng: np.random.Generator, n: int, curl: float) -> np.ndarray:
    """A smooth random open curve ``[n, 2]`` of unit steps, starting along +x.

    ``curl`` (radians, std of the per-step heading change before smoothing) sets how much it
    bends; the result is meant to be placed with :func:`fit_to_box`.
    """
    turn = np.convolve(rng.normal(0.0, curl, size=n), np.ones(5) / 5, mode="same")
    heading = np.cumsum(turn)
    heading -= heading.mean()
    return np.cumsum(np.stack([np.cos(heading), np.sin(heading)], 1), 0)


def fit_to_box(points: np.ndarray, box: Box, inset: float) -> np.ndarray:
    """Rotate ``points`` ``[N, 2]`` so their chord runs along the long side of ``box`` and scale
    them into the box (shrunk by ``inset`` px); the short axis is squashed only if needed."""
    chord = points[-1] - points[0]
    ang = np.arctan2(chord[1], chord[0])
    rot = np.array([[np.cos(-ang), -np.sin(-ang)], [np.sin(-ang), np.cos(-ang)]])
    p = (points - points[0]) @ rot.T
    x0, y0, x1, y1 = box[0] + inset, box[1] + inset, box[2] - inset, box[3] - inset
    long_side, short_side = max(x1 - x0, y1 - y0), min(x1 - x0, y1 - y0)
    span = np.maximum(p.max(0) - p.min(0), 1e-6)
    scale = long_side / span[0]
    p = (p - p.min(0)) * scale
    if span[1] * scale > short_side:
        p[:, 1] *= short_side / (span[1] * scale)
    p[:, 1] += 0.5 * (short_side - p[:, 1].max())
    if y1 - y0 > x1 - x0:
        p = p[:, ::-1]
    return p + np.array([x0, y0])


class Canvas:
    """Edits on a :class:`Fabric` reflectance: relative gains, blends and lattice changes.

    Every edit is local to a window; ``rgb`` is ``[H, W, 3]`` float32 RGB on 0..255.
    """

    def __init__(self, fabric: Fabric) -> None:
        self.fabric = fabric
        self.rgb = fabric.rgb
        self.width = fabric.width
        self.height = fabric.height

    def window(self, box: Box, margin: float) -> Window:
        """The frame rectangle covering ``box`` grown by ``margin`` px, clipped to the frame."""
        x0 = max(0, int(np.floor(box[0] - margin)))
        y0 = max(0, int(np.floor(box[1] - margin)))
        x1 = min(self.width, int(np.ceil(box[2] + margin)))
        y1 = min(self.height, int(np.ceil(box[3] + margin)))
        x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
        x = (np.arange(x0, x1, dtype=np.float32) + np.float32(0.5))[None, :]
        y = (np.arange(y0, y1, dtype=np.float32) + np.float32(0.5))[:, None]
        return Window(slice(y0, y1), slice(x0, x1), x, y)

    def gain(self, win: Window, alpha: np.ndarray, amount: float | np.ndarray) -> None:
        """``rgb *= 1 + alpha * amount``; ``amount`` scalar or per-channel ``[3]``."""
        amt = np.asarray(amount, np.float32).reshape(-1)
        self.rgb[win.ys, win.xs] *= np.float32(1.0) + alpha[:, :, None] * amt[None, None, :]

    def blend(self, win: Window, alpha: np.ndarray, target: np.ndarray) -> None:
        """``rgb = rgb + alpha * (target - rgb)`` with ``target`` ``[h, w, 3]``."""
        cur = self.rgb[win.ys, win.xs]
        cur += alpha[:, :, None] * (target - cur)

    def reweave(self, win: Window, target: np.ndarray | float, alpha: np.ndarray) -> None:
        """Move the lattice towards ``target`` by ``alpha`` and update the reflectance to match.

        ``target`` is a normalised lattice (0 = flat, negative = gaps, positive = floats).
        """
        lat = self.fabric.lattice[win.ys, win.xs]
        delta = alpha * (np.asarray(target, np.float32) - lat)
        lat += delta
        self.rgb[win.ys, win.xs] += delta[:, :, None] * self.fabric.gain[None, None, :]

    def lattice(
        self,
        win: Window,
        weave: WeaveParams | None = None,
        du: np.ndarray | float = 0.0,
        dv: np.ndarray | float = 0.0,
        sv: float = 1.0,
    ) -> np.ndarray:
        """The normalised lattice in ``win`` re-evaluated with another geometry.

        ``du, dv``: extra displacement (px); ``sv``: scale of the warp coordinate about the
        window centre (>1 = denser picks); ``weave``: replacement weave parameters.
        """
        u, v = self.fabric.coords(win.ys, win.xs)
        if sv != 1.0:
            vc = np.float32(0.5 * (win.ys.start + win.ys.stop))
            v = (v - vc) * np.float32(sv) + vc
        return self.fabric.lattice_at(u + du, v + dv, weave)
