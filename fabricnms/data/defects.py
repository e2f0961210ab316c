"""Visual recipes for the 34 raw Tianchi defect names (reference section 10.3).

Each :class:`Recipe` has two parts:

* ``extent(sizer) -> (w, h)``: the tight size of one instance in pixels. Sizes are quoted for a
  2446 x 1000 frame; small-defect sizes are absolute (a crop keeps the scan resolution) and
  clamped to 45 % of a small frame, while frame-spanning defects (warp lines, weft lines, bars)
  are fractions of the frame height or width, so a 320 x 256 crop still gets sensible defects;
* ``render(canvas, rng, box, k) -> (window, effect)``: paints the defect inside ``box`` (tight
  xyxy pixel edges, fully inside the frame) on the fabric ``canvas``; ``k`` scales the contrast
  (1.0 = ``normal`` difficulty). ``effect >= 0.5`` is the defect's true mask in ``window``.

Image x is the weft direction, y the warp direction: warp faults are vertical, weft faults
horizontal. Amplitudes are relative brightness changes; at ``k = 1`` most are 10-30 %, subtle on
a 15-20 % lattice contrast but clearly above the sensor noise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from fabricnms.data.synth_canvas import (
    BlobShape,
    Box,
    Canvas,
    Window,
    band,
    blob,
    fit_to_box,
    ramp_ends,
    smooth_curve,
    stroke,
)
from fabricnms.data.texture import smooth_noise, smooth_profile

Paint = tuple[Window, np.ndarray]
RenderFn = Callable[[Canvas, np.random.Generator, Box, float], Paint]


class Sizer:
    """Draws defect extents for a ``width`` x ``height`` frame (see the module docstring)."""

    def __init__(self, rng: np.random.Generator, width: int, height: int, scale: float) -> None:
        self.rng = rng
        self.dims = {"x": float(width), "y": float(height)}
        self.scale = scale

    def clamp(self, value: float, axis: str) -> float:
        return float(min(max(value, 3.0), 0.45 * self.dims[axis]))

    def px(self, lo: float, hi: float, axis: str) -> float:
        """Log-uniform absolute size in ``[lo, hi]`` px (times the difficulty scale)."""
        v = float(np.exp(self.rng.uniform(np.log(lo), np.log(hi)))) * self.scale
        return self.clamp(v, axis)

    def span(self, lo: float, hi: float, axis: str, full: float = 0.0) -> float:
        """A fraction ``[lo, hi]`` of the frame along ``axis``; the whole frame w.p. ``full``."""
        if self.rng.random() < full:
            return self.dims[axis]
        return float(self.rng.uniform(lo, hi)) * self.dims[axis]

    def shaped(
        self, lo: float, hi: float, aspect: tuple[float, float], swap: float = 0.0
    ) -> tuple[float, float]:
        """Width log-uniform in ``[lo, hi]``, height = width * aspect; swapped w.p. ``swap``."""
        w = float(np.exp(self.rng.uniform(np.log(lo), np.log(hi)))) * self.scale
        h = w * float(self.rng.uniform(*aspect))
        if self.rng.random() < swap:
            w, h = h, w
        return self.clamp(w, "x"), self.clamp(h, "y")


@dataclass(frozen=True)
class Recipe:
    """How one raw defect name is sized and drawn."""

    raw: str
    extent: Callable[[Sizer], tuple[float, float]]  # tight (w, h) in px
    render: RenderFn


# --------------------------------------------------------------------------- helpers


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _sign(rng: np.random.Generator, p_pos: float = 0.5) -> float:
    return 1.0 if rng.random() < p_pos else -1.0


def _ellipse(box: Box, inset: float) -> tuple[float, float, float, float]:
    """Centre and radii of the ellipse inscribed in ``box`` shrunk by ``inset`` px."""
    x0, y0, x1, y1 = box
    rx = max(0.5 * (x1 - x0) - inset, 1.0)
    ry = max(0.5 * (y1 - y0) - inset, 1.0)
    return 0.5 * (x0 + x1), 0.5 * (y0 + y1), rx, ry


def _gauss(win: Window, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    """Soft elliptical bump, 1 at the centre and 0.5 at 70 % of the radii."""
    dx = (win.x - np.float32(cx)) / np.float32(rx)
    dy = (win.y - np.float32(cy)) / np.float32(ry)
    return np.exp(-(dx * dx + dy * dy) * np.float32(1.4))


def _line(
    canvas: Canvas,
    box: Box,
    vertical: bool,
    half: float | np.ndarray | Callable[[np.ndarray], np.ndarray],
    offset: Callable[[np.ndarray], np.ndarray] | None = None,
    soft: float = 1.2,
    taper: float = 8.0,
    margin: float = 3.0,
) -> Paint:
    """A straight (or ``offset``-wobbled) line through the middle of ``box`` along its long axis.

    ``half`` is the half width in px (a callable of the along-line coordinate for a line of
    varying width). The line ends taper over ``taper`` px unless they touch the frame border.
    """
    win = canvas.window(box, margin)
    if vertical:
        along, across = win.y, win.x
        lo, hi, limit, centre = box[1], box[3], canvas.height, 0.5 * (box[0] + box[2])
    else:
        along, across = win.x, win.y
        lo, hi, limit, centre = box[0], box[2], canvas.width, 0.5 * (box[1] + box[3])
    c = np.float32(centre) + (offset(along) if offset is not None else np.float32(0.0))
    width = half(along) if callable(half) else half
    alpha = band(across - c, width, soft) * ramp_ends(along, lo, hi, taper, limit)
    return win, np.broadcast_to(alpha, win.shape).astype(np.float32)


def _wobble(rng: np.random.Generator, amp: float, lo: float, hi: float) -> Callable:
    """Sinusoidal centre offset ``amp * sin(2 pi t / period + phase)`` with period in [lo, hi]."""
    period, phase = _u(rng, lo, hi), _u(rng, 0.0, 2 * np.pi)
    k = np.float32(2 * np.pi / period)
    return lambda t: np.float32(amp) * np.sin(t * k + np.float32(phase))


def _segment(win: Window, p0: np.ndarray, p1: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Along-line coordinate ``t`` (0 at ``p0``) and signed distance ``d`` to the line p0->p1."""
    direction = p1 - p0
    length = float(np.hypot(*direction))
    ux, uy = (direction / max(length, 1e-6)).astype(np.float32)
    rx, ry = win.x - np.float32(p0[0]), win.y - np.float32(p0[1])
    return rx * ux + ry * uy, rx * (-uy) + ry * ux, length


def _bright_stroke(
    canvas: Canvas, win: Window, pts: np.ndarray, thickness: int, gain: float, k: float
) -> np.ndarray:
    """Draw a yarn-like stroke with a faint shadow below-right; returns its alpha."""
    a = stroke(win, pts, thickness)
    if gain > 0:
        shadow = stroke(win, pts + np.array([0.8, 1.2]), thickness) * (1.0 - a)
        canvas.gain(win, shadow, -0.18 * k)
    canvas.gain(win, a, gain)
    return a


# --------------------------------------------------------------------------- spot-like


def _hole(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
    win = canvas.window(box, 3)
    cx, cy, rx, ry = _ellipse(box, 2.0)
    shape = BlobShape.sample(rng, 0.35)
    core = blob(win, cx, cy, rx, ry, shape, 0.25)
    outer = blob(win, cx, cy, rx + 1.8, ry + 1.8, shape, 0.25)
    ring = np.clip(outer - core, 0.0, 1.0)
    noise = rng.standard_normal(win.shape).astype(np.float32)
    canvas.reweave(win, -1.0 + 0.4 * noise, core)
    if rng.random() < 0.15:  # back-lit: light shines through the opening
        canvas.gain(win, core, _u(rng, 0.4, 0.8) * k)
    else:
        canvas.gain(win, core, -float(np.clip(_u(rng, 0.4, 0.8) * k, 0.15, 0.9)))
    canvas.gain(win, ring, 0.3 * k)
    for _ in range(int(rng.integers(2, 5))):  # frayed yarn ends poking into the opening
        ang = _u(rng, 0, 2 * np.pi)
        r = float(shape.radius(np.array([ang], np.float32))[0])
        start = np.array([cx + rx * r * np.cos(ang), cy + ry * r * np.sin(ang)])
        end = start + (np.array([cx, cy]) - start) * _u(rng, 0.3, 0.6)
        _bright_stroke(canvas, win, np.stack([start, end]), 1, 0.3 * k, k)
    return win, np.maximum(core, ring)


def _stain(kind: str) -> RenderFn:
    """Water (pale tide mark), oil (darker, yellow-brown) or dirt (grey-brown, mottled) stain."""

    def render(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
        win = canvas.window(box, 2)
        cx, cy, rx, ry = _ellipse(box, 0.5)
        a = blob(win, cx, cy, rx, ry, BlobShape.sample(rng, 0.3), 0.45)
        mott = smooth_noise(rng, *win.shape, cell=max(4.0, min(rx, ry) / 2))
        body = np.clip(a * (0.8 + 0.2 * mott), 0.0, 1.0)
        if kind == "water":
            canvas.gain(win, body, _u(rng, 0.06, 0.12) * k)
            ring = 4.0 * a * (1.0 - a)
            canvas.gain(win, ring, -_u(rng, 0.14, 0.22) * k * np.array([1.0, 1.0, 1.1]))
        elif kind == "oil":
            d = _u(rng, 0.14, 0.26) * k
            canvas.gain(win, body, -d * np.array([0.75, 0.9, 1.3]))
        else:
            d = _u(rng, 0.1, 0.2) * k
            fine = 0.75 + 0.25 * smooth_noise(rng, *win.shape, cell=3.0)
            canvas.gain(win, np.clip(body * fine, 0, 1), -d * np.array([0.9, 1.0, 1.25]))
        return win, a

    return render


def _fibre(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
    win = canvas.window(box, 3)
    pts = fit_to_box(smooth_curve(rng, 80, _u(rng, 0.15, 0.45)), box, 1.0)
    thickness = 1 if rng.random() < 0.5 else 2
    if rng.random() < 0.7:
        a = _bright_stroke(canvas, win, pts, thickness, _u(rng, 0.5, 0.9) * k, k)
    else:
        a = _bright_stroke(canvas, win, pts, thickness, -_u(rng, 0.35, 0.55) * k, k)
    return win, 2.0 * a


def _knot(stretch: float) -> RenderFn:
    """A tight nub: bright core, dark shadow, optional tail along the warp (y)."""

    def render(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
        win = canvas.window(box, 3)
        x0, y0, x1, y1 = box
        w, h = x1 - x0, y1 - y0
        tail = h > 14 and rng.random() < 0.5
        rx = max(min(0.5 * w - 1.0, _u(rng, 3.0, 7.5)), 1.5)
        ry = max(min(rx * stretch * _u(rng, 0.85, 1.15), (0.35 if tail else 0.5) * h - 1.0), 1.5)
        up = rng.random() < 0.5
        cx = 0.5 * (x0 + x1)
        cy = (y1 - 1 - ry if up else y0 + 1 + ry) if tail else 0.5 * (y0 + y1)
        core = _gauss(win, cx, cy, rx, ry)
        shadow = _gauss(win, cx + 1.2, cy + 1.5, rx * 1.15, ry * 1.15) * (1.0 - core)
        canvas.reweave(win, 0.8, core)
        canvas.gain(win, core, _u(rng, 0.35, 0.6) * k)
        canvas.gain(win, shadow, -0.3 * k)
        effect = np.maximum(core, shadow)
        if tail:
            end_y = y0 + 1 if up else y1 - 1
            ys = np.linspace(cy, end_y, 12)
            xs = cx + _u(rng, -0.3, 0.3) * rx * np.sin(np.linspace(0, np.pi, 12))
            a = _bright_stroke(canvas, win, np.stack([xs, ys], 1), 1, 0.3 * k, k)
            effect = np.maximum(effect, 2.0 * a)
        return win, effect

    return render


def _neps(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
    win = canvas.window(box, 3)
    x0, y0, x1, y1 = box
    effect = np.zeros(win.shape, np.float32)
    for _ in range(int(rng.choice([1, 2, 3, 4], p=[0.4, 0.3, 0.2, 0.1]))):
        r = max(min(_u(rng, 1.5, 3.5), 0.5 * min(x1 - x0, y1 - y0) - 0.5), 1.0)
        cx, cy = _u(rng, x0 + r, x1 - r), _u(rng, y0 + r, y1 - r)
        effect = np.maximum(effect, _gauss(win, cx, cy, 1.4 * r, 1.4 * r))
    fuzz = 1.0 + 0.3 * rng.standard_normal(win.shape).astype(np.float32)
    canvas.gain(win, np.clip(effect * fuzz, 0, 1.2), _u(rng, 0.35, 0.6) * k)
    return win, effect


def _size_spot(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
    win = canvas.window(box, 3)
    cx, cy, rx, ry = _ellipse(box, 0.5)
    a = blob(win, cx, cy, rx, ry, BlobShape.sample(rng, 0.2), 0.4)
    glossy = cv2.GaussianBlur(canvas.rgb[win.ys, win.xs], (0, 0), _u(rng, 1.5, 3.0))
    glossy *= np.float32(1.0 + _u(rng, 0.06, 0.14) * k)
    canvas.blend(win, a * np.float32(min(0.9, 0.6 + 0.25 * k)), glossy)
    return win, a


def _spandex(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
    """Broken spandex: a small pucker (2-D ripple) or a short shading streak."""
    win = canvas.window(box, 3)
    cx, cy, rx, ry = _ellipse(box, 0.5)
    if rng.random() < 0.6:
        env = _gauss(win, cx, cy, rx, ry)
        ang, lam = _u(rng, 0, np.pi), _u(rng, 4.0, 8.0)
        phase = (win.x * np.float32(np.cos(ang)) + win.y * np.float32(np.sin(ang))) * np.float32(
            2 * np.pi / lam
        )
        canvas.gain(win, env * np.cos(phase), _u(rng, 0.28, 0.4) * k)
        canvas.gain(win, env, -0.1 * k)
        return win, env
    x0, y0, x1, y1 = box
    if rng.random() < 0.5:
        pts = np.array([[x0 + 2, y0 + 2], [x1 - 2, y1 - 2]])
    else:
        pts = np.array([[x0 + 2, y1 - 2], [x1 - 2, y0 + 2]])
    a = cv2.GaussianBlur(stroke(win, pts, 2), (0, 0), 1.0)
    canvas.gain(win, a, _sign(rng) * _u(rng, 0.15, 0.25) * k)
    return win, 2.0 * a


def _floats(style: str) -> RenderFn:
    """Yarn floats: ``star`` (2-5 short dashes), ``float`` (1-3 parallel), ``jump`` (1-2 long)."""

    def render(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
        win = canvas.window(box, 3)
        x0, y0, x1, y1 = box
        w, h = x1 - x0, y1 - y0
        effect = np.zeros(win.shape, np.float32)
        gain = _u(rng, 0.35, 0.55) * k
        if style == "star":
            for _ in range(int(rng.integers(2, 6))):
                horizontal = rng.random() < 0.7
                length = min(_u(rng, 5.0, 12.0), (w if horizontal else h) - 2)
                sx = _u(rng, x0 + 1, x1 - 1 - (length if horizontal else 0))
                sy = _u(rng, y0 + 1, y1 - 1 - (0 if horizontal else length))
                end = (sx + length, sy) if horizontal else (sx, sy + length)
                a = _bright_stroke(canvas, win, np.array([(sx, sy), end]), 1, gain, k)
                effect = np.maximum(effect, 2.0 * a)
            return win, effect
        n = int(rng.integers(1, 4)) if style == "float" else int(rng.integers(1, 3))
        thickness = 1 if style == "float" else 2
        horizontal = w >= h
        long_lo, long_hi = (x0, x1) if horizontal else (y0, y1)
        short_lo, short_hi = (y0, y1) if horizontal else (x0, x1)
        for i in range(n):
            length = (long_hi - long_lo - 2) * _u(rng, 0.6, 1.0)
            start = _u(rng, long_lo + 1, long_hi - 1 - length)
            pos = short_lo + (short_hi - short_lo) * (i + 0.5) / n
            seg = [(start, pos), (start + length, pos)]
            pts = np.array(seg if horizontal else [(p, q) for q, p in seg])
            a = _bright_stroke(canvas, win, pts, thickness, gain, k)
            effect = np.maximum(effect, 2.0 * a)
        return win, effect

    return render


# --------------------------------------------------------------------------- line-like


def _warp_line(kind: str) -> RenderFn:
    """Vertical (warp) faults: ``thick``, ``double``, ``loose``, ``broken``, ``tight`` ends."""

    def render(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
        room = 0.5 * (box[2] - box[0]) - 1.0
        taper = _u(rng, 6.0, 15.0)
        if kind in ("thick", "double"):
            half = min(_u(rng, 1.0, 2.0), room)
            drift = _wobble(rng, _u(rng, 0.0, 0.6), 200.0, 600.0)
            if kind == "thick":
                win, a = _line(canvas, box, True, half, drift, taper=taper)
            else:
                gap = min(_u(rng, 1.5, 2.5), room - 1.0)
                win, a1 = _line(canvas, box, True, 1.0, lambda t: drift(t) - gap, taper=taper)
                _, a2 = _line(canvas, box, True, 1.0, lambda t: drift(t) + gap, taper=taper)
                a = np.maximum(a1, a2)
            canvas.reweave(win, 0.3, 0.7 * a)
            canvas.gain(win, a, _sign(rng) * _u(rng, 0.12, 0.25) * k)
            return win, a
        if kind == "loose":
            half = min(_u(rng, 0.8, 1.5), room)
            amp = max(min(_u(rng, 1.0, 3.0), room - half), 0.0)
            win, a = _line(canvas, box, True, half, _wobble(rng, amp, 20.0, 60.0), taper=taper)
            canvas.reweave(win, 0.3, 0.5 * a)
            canvas.gain(win, a, _u(rng, 0.18, 0.3) * k)
            return win, a
        if kind == "broken":
            half = min(_u(rng, 0.6, 1.4), room)
            win, a = _line(canvas, box, True, half, taper=taper, margin=10)
            canvas.reweave(win, -1.2, 0.9 * a)
            canvas.gain(win, a, -_u(rng, 0.1, 0.22) * k)
            inside = [y for y in (box[1], box[3]) if 0.5 < y < canvas.height - 0.5]
            if inside and rng.random() < 0.7:  # the loose end of the broken yarn curls away
                end_y = inside[int(rng.integers(len(inside)))]
                direction = 1.0 if end_y == box[3] else -1.0
                cx, length = 0.5 * (box[0] + box[2]), _u(rng, 8.0, 20.0)
                y_lo = end_y if direction > 0 else end_y - length
                curl = (cx - 4.0, y_lo, cx + 4.0, y_lo + length)
                pts = fit_to_box(smooth_curve(rng, 30, 0.6), curl, 0.0)
                if np.hypot(*(pts[0] - [cx, end_y])) > np.hypot(*(pts[-1] - [cx, end_y])):
                    pts = pts[::-1]
                tail = _bright_stroke(canvas, win, pts, 1, 0.3 * k, k)
                a = np.maximum(a, 2.0 * tail)
            return win, a
        # tight warp: compressed crossings in a narrow vertical strip, plus a contrast line
        half = min(_u(rng, 3.0, 7.0), room)
        win, a = _line(canvas, box, True, half, soft=2.5, taper=10.0)
        canvas.reweave(win, canvas.lattice(win, sv=1.0 + _u(rng, 0.2, 0.35)), a * min(1.0, k))
        _, core = _line(canvas, box, True, 1.2, taper=10.0)
        canvas.gain(win, core, _sign(rng) * _u(rng, 0.14, 0.22) * k)
        return win, a

    return render


def _weft_line(kind: str) -> RenderFn:
    """Horizontal (weft) faults: ``thick`` pick, ``double`` pick, ``faulty`` (irregular) weft."""

    def render(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
        room = 0.5 * (box[3] - box[1]) - 1.0
        drift = _wobble(rng, _u(rng, 0.0, 0.8), 300.0, 900.0)
        taper = _u(rng, 10.0, 30.0)
        amount = _sign(rng) * _u(rng, 0.15, 0.3) * k
        if kind == "thick":
            win, a = _line(canvas, box, False, min(_u(rng, 1.0, 2.5), room), drift, taper=taper)
            canvas.reweave(win, 0.3, 0.7 * a)
            canvas.gain(win, a, amount)
            return win, a
        if kind == "double":
            gap = min(_u(rng, 1.5, 2.5), room - 1.0)
            win, a1 = _line(canvas, box, False, 1.0, lambda t: drift(t) - gap, taper=taper)
            _, a2 = _line(canvas, box, False, 1.0, lambda t: drift(t) + gap, taper=taper)
            a = np.maximum(a1, a2)
            canvas.reweave(win, 0.3, 0.7 * a)
            canvas.gain(win, a, amount)
            return win, a
        prof = smooth_profile(rng, canvas.width, 25.0)
        base = min(_u(rng, 1.0, 2.0), room / 1.5)

        def half(t: np.ndarray) -> np.ndarray:
            return np.float32(base) * (1.0 + 0.5 * np.clip(prof[t.astype(np.int64)], -1, 1))

        win, a = _line(canvas, box, False, half, drift, taper=taper)
        strength = 0.7 + 0.3 * np.clip(prof[win.x.astype(np.int64)], -1, 1)
        canvas.reweave(win, 0.3, 0.6 * a)
        canvas.gain(win, a * strength, amount)
        return win, a

    return render


def _mispick(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
    """Centipede: a weft line of periodic short floats and gaps with short vertical legs."""
    win = canvas.window(box, 3)
    yc, hh = 0.5 * (box[1] + box[3]), 0.5 * (box[3] - box[1])
    period, phase = _u(rng, 6.0, 10.0), _u(rng, 0, 2 * np.pi)
    dashes = np.tanh(3.0 * np.cos(win.x * np.float32(2 * np.pi / period) + np.float32(phase)))
    env = ramp_ends(win.x, box[0], box[2], 8.0, canvas.width)
    core = band(win.y - np.float32(yc), min(_u(rng, 1.0, 2.0), hh - 0.5), 1.0) * env
    legs = band(win.y - np.float32(yc), max(hh - 1.0, 1.0), 1.5) * env
    canvas.reweave(win, 1.2 * dashes, legs * min(1.0, 0.7 * k))
    canvas.gain(win, core, -_u(rng, 0.12, 0.22) * k)
    return win, legs


def _weft_kink(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
    """Kinky weft: a horizontal chain of small curls (a trochoid) along a darkened pick."""
    win = canvas.window(box, 3)
    x0, y0, x1, y1 = box
    yc = 0.5 * (y0 + y1)
    r = max(min(_u(rng, 2.0, 4.5), 0.5 * (y1 - y0) - 1.5), 1.0)
    pitch, phase = _u(rng, 6.0, 12.0), _u(rng, 0, 2 * np.pi)
    t = np.arange(x0 + r + 1, x1 - r - 1, 0.5)
    ang = 2 * np.pi * t / pitch + phase
    pts = np.stack([t + 0.8 * r * np.cos(ang), yc + r * np.sin(ang)], 1)
    a = _bright_stroke(canvas, win, pts, 1, _u(rng, 0.45, 0.7) * k, k)
    pick = band(win.y - np.float32(yc), 1.5, 1.0) * ramp_ends(win.x, x0, x1, 6.0, canvas.width)
    canvas.gain(win, pick, -0.08 * k)
    return win, np.maximum(2.0 * a, pick)


def _crease(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
    """Set crease: a long shading ridge (bright on one side, dark on the other)."""
    x0, y0, x1, y1 = box
    sigma = _u(rng, 2.0, 5.0)
    win = canvas.window(box, 2.0 * sigma)
    m = min(1.5 * sigma, 0.25 * min(x1 - x0, y1 - y0))
    if x1 - x0 <= y1 - y0:
        p0, p1 = np.array([x0 + m, y0]), np.array([x1 - m, y1])
    else:
        p0, p1 = np.array([x0, y0 + m]), np.array([x1, y1 - m])
    if rng.random() < 0.5:  # the other diagonal of the box
        p0, p1 = np.array([p1[0], p0[1]]), np.array([p0[0], p1[1]])
    t, d, length = _segment(win, p0, p1)
    touches = min(x0, y0) <= 0.5 or x1 >= canvas.width - 0.5 or y1 >= canvas.height - 0.5
    env = np.exp(-(d * d) / np.float32(2 * sigma * sigma))
    if not touches:
        env = env * ramp_ends(t, 0.0, length, 12.0, length + 1.0)
    ridge = -(d / np.float32(sigma)) * env * np.float32(1.65)
    canvas.gain(win, ridge, _u(rng, 0.1, 0.18) * k)
    canvas.gain(win, env, -0.03 * k)
    return win, env


def _reed_mark(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
    """Reed mark: a vertical strip of fine periodic streaks (a damaged reed dent)."""
    win = canvas.window(box, 3)
    xc, half = 0.5 * (box[0] + box[2]), 0.5 * (box[2] - box[0]) - 1.0
    env = band(win.x - np.float32(xc), half, 2.0) * ramp_ends(
        win.y, box[1], box[3], 15.0, canvas.height
    )
    period, phase = _u(rng, 4.0, 8.0), _u(rng, 0, 2 * np.pi)
    stripes = np.cos(win.x * np.float32(2 * np.pi / period) + np.float32(phase))
    canvas.gain(win, env * stripes, _u(rng, 0.12, 0.2) * k)
    canvas.gain(win, env, -0.06 * k)
    return win, env


# --------------------------------------------------------------------------- areas


def _pattern_skip(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
    """Pattern-card skip: a patch woven with the wrong geometry (over-long floats)."""
    win = canvas.window(box, 2)
    cx, cy, rx, ry = _ellipse(box, 0.5)
    a = band(win.x - np.float32(cx), rx - 1.0, 2.0) * band(win.y - np.float32(cy), ry - 1.0, 2.0)
    weave = canvas.fabric.params.weave
    phase = (_u(rng, 0, 2 * np.pi), _u(rng, 0, 2 * np.pi))
    if weave.kind == "twill":
        variant = canvas.fabric.variant(
            period=weave.period * _u(rng, 1.3, 1.8),
            dot_period=weave.dot_period * _u(rng, 2.0, 3.5),
            angle=weave.angle * _sign(rng),
            phase=phase,
        )
    else:
        variant = canvas.fabric.variant(
            period=weave.period * _u(rng, 1.5, 2.2), angle=_u(rng, 25.0, 45.0), phase=phase
        )
    new = canvas.lattice(win, variant) * np.float32(_u(rng, 1.1, 1.4)) + np.float32(0.3)
    canvas.reweave(win, new, a * np.float32(min(1.0, 0.85 * k)))
    return win, a


def _bar(kind: str) -> RenderFn:
    """Full-width bars: ``density`` (thin/thick place), ``wavy``, ``shade``."""

    def render(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
        win = canvas.window(box, 3)
        x0, y0, x1, y1 = box
        yc, hh = 0.5 * (y0 + y1), 0.5 * (y1 - y0)
        soft = min(_u(rng, 3.0, 10.0), hh)
        env_x = ramp_ends(win.x, x0, x1, 30.0, canvas.width)
        if kind == "wavy":
            amp = min(_u(rng, 3.0, 12.0), 0.3 * hh)
            wave = _wobble(rng, amp, 150.0, 600.0)
            a = band(win.y - np.float32(yc) - wave(win.x), hh - amp - 0.5 * soft, soft) * env_x
            lam = _u(rng, 15.0, 40.0)
            inner = np.sin((win.y - wave(win.x)) * np.float32(2 * np.pi / lam))
            canvas.gain(win, a * inner, _u(rng, 0.06, 0.12) * k)
            canvas.gain(win, a, _sign(rng) * 0.03 * k)
            return win, a
        a = band(win.y - np.float32(yc), hh - 0.5 * soft, soft) * env_x
        if kind == "density":
            sv = 1.0 + _sign(rng) * _u(rng, 0.08, 0.18)
            canvas.reweave(win, canvas.lattice(win, sv=sv), a)
            canvas.gain(win, a, _sign(rng) * _u(rng, 0.06, 0.12) * k)
        else:
            tint = rng.normal(0.0, 0.5, size=3) + _sign(rng)
            tint /= np.abs(tint).max()
            canvas.gain(win, a, _u(rng, 0.05, 0.11) * k * tint)
        return win, a

    return render


def _mark(kind: str) -> RenderFn:
    """Marks: ``abrasion`` (fuzzy light), ``crush`` (shiny flat streak), ``mending``
    (irregular weave), ``singe`` (brown scorch)."""

    def render(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
        win = canvas.window(box, 3)
        cx, cy, rx, ry = _ellipse(box, 0.5)
        rough = {"abrasion": 0.25, "crush": 0.1, "mending": 0.3, "singe": 0.35}[kind]
        a = blob(win, cx, cy, rx, ry, BlobShape.sample(rng, rough), 0.4)
        if kind == "abrasion":
            canvas.reweave(win, 0.0, 0.6 * a)
            fuzz = 1.0 + 0.5 * smooth_noise(rng, *win.shape, cell=2.5)
            canvas.gain(win, np.clip(a * fuzz, 0, 1.5), _u(rng, 0.08, 0.15) * k)
        elif kind == "crush":
            flat = cv2.GaussianBlur(canvas.rgb[win.ys, win.xs], (0, 0), 2.0)
            canvas.blend(win, 0.8 * a, flat)
            canvas.gain(win, a, _u(rng, 0.1, 0.2) * k)
            dist = (win.y - np.float32(cy)) if rx >= ry else (win.x - np.float32(cx))
            canvas.gain(win, band(dist, 1.0, 1.5) * a, 0.1 * k)
        elif kind == "mending":
            amp = _u(rng, 1.2, 2.5)
            du = smooth_noise(rng, *win.shape, cell=5.0) * np.float32(amp)
            dv = smooth_noise(rng, *win.shape, cell=5.0) * np.float32(amp)
            canvas.reweave(win, canvas.lattice(win, du=du, dv=dv), a)
            canvas.gain(win, a, -_u(rng, 0.03, 0.07) * k)
        else:
            scorch = np.clip(a * (0.7 + 0.3 * smooth_noise(rng, *win.shape, cell=4.0)), 0, 1)
            canvas.gain(win, scorch, -_u(rng, 0.12, 0.25) * k * np.array([0.7, 0.95, 1.35]))
        return win, a

    return render


def _cloudy(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
    """Cloudy weaving: uneven density blotches inside a soft region."""
    win = canvas.window(box, 3)
    cx, cy, rx, ry = _ellipse(box, 0.5)
    a = blob(win, cx, cy, rx, ry, BlobShape.sample(rng, 0.3), 0.6)
    clouds = smooth_noise(rng, *win.shape, cell=_u(rng, 12.0, 30.0))
    canvas.gain(win, a * clouds, _u(rng, 0.06, 0.12) * k)
    canvas.gain(win, a, -0.03 * k)
    return win, a


# --------------------------------------------------------------------------- the table


Extent = Callable[[Sizer], tuple[float, float]]


def _warp(lo: float, hi: float, flo: float, fhi: float, full: float) -> Extent:
    """Vertical line: ``lo..hi`` px wide, ``flo..fhi`` of the frame high (full w.p. ``full``)."""
    return lambda s: (s.px(lo, hi, "x"), s.span(flo, fhi, "y", full))


def _weft(flo: float, fhi: float, full: float, lo: float, hi: float) -> Extent:
    """Horizontal line: ``flo..fhi`` of the frame wide (full w.p. ``full``), ``lo..hi`` px high."""
    return lambda s: (s.span(flo, fhi, "x", full), s.px(lo, hi, "y"))


def _bar_extent(flo: float, fhi: float) -> Extent:
    """Full-width bar (80-100 % of the width, whole width w.p. 0.6), ``flo..fhi`` of the height."""
    return lambda s: (s.span(0.8, 1.0, "x", 0.6), s.span(flo, fhi, "y"))


def _recipes() -> dict[str, Recipe]:
    sq = (0.8, 1.25)
    warp, weft = _warp, _weft
    table: list[tuple[str, Extent, RenderFn]] = [
        ("破洞", lambda s: s.shaped(10, 56, (0.7, 1.4)), _hole),
        ("水渍", lambda s: s.shaped(30, 220, (0.35, 1.6), 0.3), _stain("water")),
        ("油渍", lambda s: s.shaped(24, 180, (0.4, 1.6), 0.3), _stain("oil")),
        ("污渍", lambda s: s.shaped(24, 200, (0.35, 1.6), 0.3), _stain("dirt")),
        ("三丝", lambda s: s.shaped(6, 28, (2.0, 5.0), 0.3), _fibre),
        ("结头", lambda s: s.shaped(10, 24, sq), _knot(1.0)),
        ("花板跳", lambda s: s.shaped(24, 110, (0.6, 1.6)), _pattern_skip),
        ("百脚", weft(0.04, 1.0, 0.25, 6, 20), _mispick),
        ("毛粒", lambda s: s.shaped(7, 16, sq), _neps),
        ("粗经", warp(4, 10, 0.3, 1.0, 0.5), _warp_line("thick")),
        ("松经", warp(6, 12, 0.1, 1.0, 0.35), _warp_line("loose")),
        ("断经", warp(3, 8, 0.3, 1.0, 0.55), _warp_line("broken")),
        ("吊经", warp(8, 20, 0.2, 1.0, 0.4), _warp_line("tight")),
        ("粗维", weft(0.12, 1.0, 0.4, 4, 10), _weft_line("thick")),
        ("纬缩", lambda s: (s.px(40, 320, "x"), s.px(6, 18, "y")), _weft_kink),
        ("浆斑", lambda s: s.shaped(16, 120, (0.5, 2.0)), _size_spot),
        ("整经结", lambda s: s.shaped(10, 22, (1.4, 2.4)), _knot(1.6)),
        ("星跳", lambda s: s.shaped(12, 45, (0.6, 1.6)), _floats("star")),
        ("跳花", lambda s: s.shaped(14, 48, (0.25, 0.8), 0.3), _floats("float")),
        ("断氨纶", lambda s: s.shaped(12, 30, (0.7, 1.4)), _spandex),
        ("稀密档", _bar_extent(0.04, 0.24), _bar("density")),
        ("浪纹档", _bar_extent(0.05, 0.24), _bar("wavy")),
        ("色差档", _bar_extent(0.04, 0.24), _bar("shade")),
        ("磨痕", lambda s: s.shaped(25, 300, (0.2, 1.0), 0.5), _mark("abrasion")),
        ("轧痕", lambda s: s.shaped(40, 320, (0.08, 0.35), 0.5), _mark("crush")),
        ("修痕", lambda s: s.shaped(25, 160, (0.3, 1.0), 0.5), _mark("mending")),
        ("烧毛痕", lambda s: s.shaped(25, 200, (0.3, 1.2), 0.3), _mark("singe")),
        ("死皱", lambda s: _crease_extent(s), _crease),
        ("云织", lambda s: s.shaped(100, 600, (0.4, 1.2)), _cloudy),
        ("双纬", weft(0.15, 1.0, 0.35, 6, 12), _weft_line("double")),
        ("双经", warp(6, 12, 0.3, 1.0, 0.4), _warp_line("double")),
        ("跳纱", lambda s: s.shaped(20, 100, (0.05, 0.15), 0.3), _floats("jump")),
        ("筘路", warp(14, 50, 0.3, 1.0, 0.4), _reed_mark),
        ("纬纱不良", weft(0.1, 1.0, 0.3, 4, 12), _weft_line("faulty")),
    ]
    return {raw: Recipe(raw, extent, render) for raw, extent, render in table}


def _crease_extent(s: Sizer) -> tuple[float, float]:
    """A crease runs mostly along the warp, sometimes along the weft; slanted by its width."""
    if s.rng.random() < 0.65:
        return s.px(10, 40, "x"), s.span(0.15, 1.0, "y", 0.3)
    return s.span(0.1, 0.6, "x"), s.px(10, 40, "y")


#: Raw Chinese name -> recipe, one per raw name of the 34.
RECIPES: dict[str, Recipe] = _recipes()
