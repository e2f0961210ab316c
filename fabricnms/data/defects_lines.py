"""Line-like defect recipes: warp and weft faults, mispicks, kinks, creases, reed marks.

Render functions of :mod:`fabricnms.data.defects` (signature
:data:`fabricnms.data.defect_paint.RenderFn`). Image x is the weft direction, y the warp.
"""

from __future__ import annotations

import numpy as np

from fabricnms.data.defect_paint import (
    Paint,
    RenderFn,
    bright_stroke,
    line,
    segment,
    sign,
    uniform,
    wobble,
)
from fabricnms.data.synth_canvas import (
    Box,
    Canvas,
    band,
    fit_to_box,
    ramp_ends,
    smooth_curve,
)
from fabricnms.data.texture import smooth_profile


def warp_line(kind: str) -> RenderFn:
    """Vertical (warp) faults: ``thick``, ``double``, ``loose``, ``broken``, ``tight`` ends."""

    def render(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
        room = 0.5 * (box[2] - box[0]) - 1.0
        taper = uniform(rng, 6.0, 15.0)
        if kind in ("thick", "double"):
            half = min(uniform(rng, 1.0, 2.0), room)
            drift = wobble(rng, uniform(rng, 0.0, 0.6), 200.0, 600.0)
            if kind == "thick":
                win, a = line(canvas, box, True, half, drift, taper=taper)
            else:
                gap = min(uniform(rng, 1.5, 2.5), room - 1.0)
                win, a1 = line(canvas, box, True, 1.0, lambda t: drift(t) - gap, taper=taper)
                _, a2 = line(canvas, box, True, 1.0, lambda t: drift(t) + gap, taper=taper)
                a = np.maximum(a1, a2)
            canvas.reweave(win, 0.3, 0.7 * a)
            canvas.gain(win, a, sign(rng) * uniform(rng, 0.12, 0.25) * k)
            return win, a
        if kind == "loose":
            half = min(uniform(rng, 0.8, 1.5), room)
            amp = max(min(uniform(rng, 1.0, 3.0), room - half), 0.0)
            win, a = line(canvas, box, True, half, wobble(rng, amp, 20.0, 60.0), taper=taper)
            canvas.reweave(win, 0.3, 0.5 * a)
            canvas.gain(win, a, uniform(rng, 0.18, 0.3) * k)
            return win, a
        if kind == "broken":
            half = min(uniform(rng, 0.6, 1.4), room)
            win, a = line(canvas, box, True, half, taper=taper, margin=10)
            canvas.reweave(win, -1.2, 0.9 * a)
            canvas.gain(win, a, -uniform(rng, 0.1, 0.22) * k)
            inside = [y for y in (box[1], box[3]) if 0.5 < y < canvas.height - 0.5]
            if inside and rng.random() < 0.7:  # the loose end of the broken yarn curls away
                end_y = inside[int(rng.integers(len(inside)))]
                direction = 1.0 if end_y == box[3] else -1.0
                cx, length = 0.5 * (box[0] + box[2]), uniform(rng, 8.0, 20.0)
                y_lo = end_y if direction > 0 else end_y - length
                curl = (cx - 4.0, y_lo, cx + 4.0, y_lo + length)
                pts = fit_to_box(smooth_curve(rng, 30, 0.6), curl, 0.0)
                if np.hypot(*(pts[0] - [cx, end_y])) > np.hypot(*(pts[-1] - [cx, end_y])):
                    pts = pts[::-1]
                tail = bright_stroke(canvas, win, pts, 1, 0.3 * k, k)
                a = np.maximum(a, 2.0 * tail)
            return win, a
        # tight warp: compressed crossings in a narrow vertical strip, plus a contrast line
        half = min(uniform(rng, 3.0, 7.0), room)
        win, a = line(canvas, box, True, half, soft=2.5, taper=10.0)
        canvas.reweave(win, canvas.lattice(win, sv=1.0 + uniform(rng, 0.2, 0.35)), a * min(1.0, k))
        _, core = line(canvas, box, True, 1.2, taper=10.0)
        canvas.gain(win, core, sign(rng) * uniform(rng, 0.14, 0.22) * k)
        return win, a

    return render


def weft_line(kind: str) -> RenderFn:
    """Horizontal (weft) faults: ``thick`` pick, ``double`` pick, ``faulty`` (irregular) weft."""

    def render(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
        room = 0.5 * (box[3] - box[1]) - 1.0
        drift = wobble(rng, uniform(rng, 0.0, 0.8), 300.0, 900.0)
        taper = uniform(rng, 10.0, 30.0)
        amount = sign(rng) * uniform(rng, 0.15, 0.3) * k
        if kind == "thick":
            win, a = line(canvas, box, False, min(uniform(rng, 1.0, 2.5), room), drift, taper=taper)
            canvas.reweave(win, 0.3, 0.7 * a)
            canvas.gain(win, a, amount)
            return win, a
        if kind == "double":
            gap = min(uniform(rng, 1.5, 2.5), room - 1.0)
            win, a1 = line(canvas, box, False, 1.0, lambda t: drift(t) - gap, taper=taper)
            _, a2 = line(canvas, box, False, 1.0, lambda t: drift(t) + gap, taper=taper)
            a = np.maximum(a1, a2)
            canvas.reweave(win, 0.3, 0.7 * a)
            canvas.gain(win, a, amount)
            return win, a
        prof = smooth_profile(rng, canvas.width, 25.0)
        base = min(uniform(rng, 1.0, 2.0), room / 1.5)

        def half(t: np.ndarray) -> np.ndarray:
            return np.float32(base) * (1.0 + 0.5 * np.clip(prof[t.astype(np.int64)], -1, 1))

        win, a = line(canvas, box, False, half, drift, taper=taper)
        strength = 0.7 + 0.3 * np.clip(prof[win.x.astype(np.int64)], -1, 1)
        canvas.reweave(win, 0.3, 0.6 * a)
        canvas.gain(win, a * strength, amount)
        return win, a

    return render


def mispick(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
    """Centipede: a weft line of periodic short floats and gaps with short vertical legs."""
    win = canvas.window(box, 3)
    yc, hh = 0.5 * (box[1] + box[3]), 0.5 * (box[3] - box[1])
    period, phase = uniform(rng, 6.0, 10.0), uniform(rng, 0, 2 * np.pi)
    dashes = np.tanh(3.0 * np.cos(win.x * np.float32(2 * np.pi / period) + np.float32(phase)))
    env = ramp_ends(win.x, box[0], box[2], 8.0, canvas.width)
    core = band(win.y - np.float32(yc), min(uniform(rng, 1.0, 2.0), hh - 0.5), 1.0) * env
    legs = band(win.y - np.float32(yc), max(hh - 1.0, 1.0), 1.5) * env
    canvas.reweave(win, 1.2 * dashes, legs * min(1.0, 0.7 * k))
    canvas.gain(win, core, -uniform(rng, 0.12, 0.22) * k)
    return win, legs


def weft_kink(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
    """Kinky weft: a horizontal chain of small curls (a trochoid) along a darkened pick."""
    win = canvas.window(box, 3)
    x0, y0, x1, y1 = box
    yc = 0.5 * (y0 + y1)
    r = max(min(uniform(rng, 2.0, 4.5), 0.5 * (y1 - y0) - 1.5), 1.0)
    pitch, phase = uniform(rng, 6.0, 12.0), uniform(rng, 0, 2 * np.pi)
    t = np.arange(x0 + r + 1, x1 - r - 1, 0.5)
    ang = 2 * np.pi * t / pitch + phase
    pts = np.stack([t + 0.8 * r * np.cos(ang), yc + r * np.sin(ang)], 1)
    a = bright_stroke(canvas, win, pts, 1, uniform(rng, 0.45, 0.7) * k, k)
    pick = band(win.y - np.float32(yc), 1.5, 1.0) * ramp_ends(win.x, x0, x1, 6.0, canvas.width)
    canvas.gain(win, pick, -0.08 * k)
    return win, np.maximum(2.0 * a, pick)


def crease(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
    """Set crease: a long shading ridge (bright on one side, dark on the other)."""
    x0, y0, x1, y1 = box
    sigma = uniform(rng, 2.0, 5.0)
    win = canvas.window(box, 2.0 * sigma)
    m = min(1.5 * sigma, 0.25 * min(x1 - x0, y1 - y0))
    if x1 - x0 <= y1 - y0:
        p0, p1 = np.array([x0 + m, y0]), np.array([x1 - m, y1])
    else:
        p0, p1 = np.array([x0, y0 + m]), np.array([x1, y1 - m])
    if rng.random() < 0.5:  # the other diagonal of the box
        p0, p1 = np.array([p1[0], p0[1]]), np.array([p0[0], p1[1]])
    t, d, length = segment(win, p0, p1)
    touches = min(x0, y0) <= 0.5 or x1 >= canvas.width - 0.5 or y1 >= canvas.height - 0.5
    env = np.exp(-(d * d) / np.float32(2 * sigma * sigma))
    if not touches:
        env = env * ramp_ends(t, 0.0, length, 12.0, length + 1.0)
    ridge = -(d / np.float32(sigma)) * env * np.float32(1.65)
    canvas.gain(win, ridge, uniform(rng, 0.1, 0.18) * k)
    canvas.gain(win, env, -0.03 * k)
    return win, env


def reed_mark(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
    """Reed mark: a vertical strip of fine periodic streaks (a damaged reed dent)."""
    win = canvas.window(box, 3)
    xc, half = 0.5 * (box[0] + box[2]), 0.5 * (box[2] - box[0]) - 1.0
    env = band(win.x - np.float32(xc), half, 2.0) * ramp_ends(
        win.y, box[1], box[3], 15.0, canvas.height
    )
    period, phase = uniform(rng, 4.0, 8.0), uniform(rng, 0, 2 * np.pi)
    stripes = np.cos(win.x * np.float32(2 * np.pi / period) + np.float32(phase))
    canvas.gain(win, env * stripes, uniform(rng, 0.12, 0.2) * k)
    canvas.gain(win, env, -0.06 * k)
    return win, env
