"""Spot-like defect recipes: holes, foreign fibres, knots, neps, size spots, spandex, floats.

Render functions of :mod:`fabricnms.data.defects` (signature
:data:`fabricnms.data.defect_paint.RenderFn`). Image x is the weft direction, y the warp.
"""

from __future__ import annotations

import cv2
import numpy as np

from fabricnms.data.defect_paint import (
    Paint,
    RenderFn,
    bright_stroke,
    ellipse,
    gauss,
    sign,
    uniform,
)
from fabricnms.data.synth_canvas import (
    BlobShape,
    Box,
    Canvas,
    blob,
    fit_to_box,
    smooth_curve,
    stroke,
)


def hole(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
    win = canvas.window(box, 3)
    cx, cy, rx, ry = ellipse(box, 2.0)
    shape = BlobShape.sample(rng, 0.35)
    core = blob(win, cx, cy, rx, ry, shape, 0.25)
    outer = blob(win, cx, cy, rx + 1.8, ry + 1.8, shape, 0.25)
    ring = np.clip(outer - core, 0.0, 1.0)
    noise = rng.standard_normal(win.shape).astype(np.float32)
    canvas.reweave(win, -1.0 + 0.4 * noise, core)
    if rng.random() < 0.15:  # back-lit: light shines through the opening
        canvas.gain(win, core, uniform(rng, 0.4, 0.8) * k)
    else:
        canvas.gain(win, core, -float(np.clip(uniform(rng, 0.4, 0.8) * k, 0.15, 0.9)))
    canvas.gain(win, ring, 0.3 * k)
    for _ in range(int(rng.integers(2, 5))):  # frayed yarn ends poking into the opening
        ang = uniform(rng, 0, 2 * np.pi)
        r = float(shape.radius(np.array([ang], np.float32))[0])
        start = np.array([cx + rx * r * np.cos(ang), cy + ry * r * np.sin(ang)])
        end = start + (np.array([cx, cy]) - start) * uniform(rng, 0.3, 0.6)
        bright_stroke(canvas, win, np.stack([start, end]), 1, 0.3 * k, k)
    return win, np.maximum(core, ring)


def fibre(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
    win = canvas.window(box, 3)
    pts = fit_to_box(smooth_curve(rng, 80, uniform(rng, 0.15, 0.45)), box, 1.0)
    thickness = 1 if rng.random() < 0.5 else 2
    if rng.random() < 0.7:
        a = bright_stroke(canvas, win, pts, thickness, uniform(rng, 0.5, 0.9) * k, k)
    else:
        a = bright_stroke(canvas, win, pts, thickness, -uniform(rng, 0.35, 0.55) * k, k)
    return win, 2.0 * a


def knot(stretch: float) -> RenderFn:
    """A tight nub: bright core, dark shadow, optional tail along the warp (y)."""

    def render(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
        win = canvas.window(box, 3)
        x0, y0, x1, y1 = box
        w, h = x1 - x0, y1 - y0
        tail = h > 14 and rng.random() < 0.5
        rx = max(min(0.5 * w - 1.0, uniform(rng, 3.0, 7.5)), 1.5)
        ry = max(
            min(rx * stretch * uniform(rng, 0.85, 1.15), (0.35 if tail else 0.5) * h - 1.0), 1.5
        )
        up = rng.random() < 0.5
        cx = 0.5 * (x0 + x1)
        cy = (y1 - 1 - ry if up else y0 + 1 + ry) if tail else 0.5 * (y0 + y1)
        core = gauss(win, cx, cy, rx, ry)
        shadow = gauss(win, cx + 1.2, cy + 1.5, rx * 1.15, ry * 1.15) * (1.0 - core)
        canvas.reweave(win, 0.8, core)
        canvas.gain(win, core, uniform(rng, 0.35, 0.6) * k)
        canvas.gain(win, shadow, -0.3 * k)
        effect = np.maximum(core, shadow)
        if tail:
            end_y = y0 + 1 if up else y1 - 1
            ys = np.linspace(cy, end_y, 12)
            xs = cx + uniform(rng, -0.3, 0.3) * rx * np.sin(np.linspace(0, np.pi, 12))
            a = bright_stroke(canvas, win, np.stack([xs, ys], 1), 1, 0.3 * k, k)
            effect = np.maximum(effect, 2.0 * a)
        return win, effect

    return render


def neps(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
    win = canvas.window(box, 3)
    x0, y0, x1, y1 = box
    effect = np.zeros(win.shape, np.float32)
    for _ in range(int(rng.choice([1, 2, 3, 4], p=[0.4, 0.3, 0.2, 0.1]))):
        r = max(min(uniform(rng, 1.5, 3.5), 0.5 * min(x1 - x0, y1 - y0) - 0.5), 1.0)
        cx, cy = uniform(rng, x0 + r, x1 - r), uniform(rng, y0 + r, y1 - r)
        effect = np.maximum(effect, gauss(win, cx, cy, 1.4 * r, 1.4 * r))
    fuzz = 1.0 + 0.3 * rng.standard_normal(win.shape).astype(np.float32)
    canvas.gain(win, np.clip(effect * fuzz, 0, 1.2), uniform(rng, 0.35, 0.6) * k)
    return win, effect


def size_spot(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
    win = canvas.window(box, 3)
    cx, cy, rx, ry = ellipse(box, 0.5)
    a = blob(win, cx, cy, rx, ry, BlobShape.sample(rng, 0.2), 0.4)
    glossy = cv2.GaussianBlur(canvas.rgb[win.ys, win.xs], (0, 0), uniform(rng, 1.5, 3.0))
    glossy *= np.float32(1.0 + uniform(rng, 0.06, 0.14) * k)
    canvas.blend(win, a * np.float32(min(0.9, 0.6 + 0.25 * k)), glossy)
    return win, a


def spandex(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
    """Broken spandex: a small pucker (2-D ripple) or a short shading streak."""
    win = canvas.window(box, 3)
    cx, cy, rx, ry = ellipse(box, 0.5)
    if rng.random() < 0.6:
        env = gauss(win, cx, cy, rx, ry)
        ang, lam = uniform(rng, 0, np.pi), uniform(rng, 4.0, 8.0)
        phase = (win.x * np.float32(np.cos(ang)) + win.y * np.float32(np.sin(ang))) * np.float32(
            2 * np.pi / lam
        )
        canvas.gain(win, env * np.cos(phase), uniform(rng, 0.28, 0.4) * k)
        canvas.gain(win, env, -0.1 * k)
        return win, env
    x0, y0, x1, y1 = box
    if rng.random() < 0.5:
        pts = np.array([[x0 + 2, y0 + 2], [x1 - 2, y1 - 2]])
    else:
        pts = np.array([[x0 + 2, y1 - 2], [x1 - 2, y0 + 2]])
    a = cv2.GaussianBlur(stroke(win, pts, 2), (0, 0), 1.0)
    canvas.gain(win, a, sign(rng) * uniform(rng, 0.15, 0.25) * k)
    return win, 2.0 * a


def floats(style: str) -> RenderFn:
    """Yarn floats: ``star`` (2-5 short dashes), ``float`` (1-3 parallel), ``jump`` (1-2 long)."""

    def render(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
        win = canvas.window(box, 3)
        x0, y0, x1, y1 = box
        w, h = x1 - x0, y1 - y0
        effect = np.zeros(win.shape, np.float32)
        gain = uniform(rng, 0.35, 0.55) * k
        if style == "star":
            for _ in range(int(rng.integers(2, 6))):
                horizontal = rng.random() < 0.7
                length = min(uniform(rng, 5.0, 12.0), (w if horizontal else h) - 2)
                # the room left for the start; max(0, .): w - 2 - (w - 2) can round below 0
                room_x = max(w - 2 - (length if horizontal else 0), 0.0)
                room_y = max(h - 2 - (0 if horizontal else length), 0.0)
                sx = x0 + 1 + uniform(rng, 0.0, room_x)
                sy = y0 + 1 + uniform(rng, 0.0, room_y)
                end = (sx + length, sy) if horizontal else (sx, sy + length)
                a = bright_stroke(canvas, win, np.array([(sx, sy), end]), 1, gain, k)
                effect = np.maximum(effect, 2.0 * a)
            return win, effect
        n = int(rng.integers(1, 4)) if style == "float" else int(rng.integers(1, 3))
        thickness = 1 if style == "float" else 2
        horizontal = w >= h
        long_lo, long_hi = (x0, x1) if horizontal else (y0, y1)
        short_lo, short_hi = (y0, y1) if horizontal else (x0, x1)
        for i in range(n):
            length = (long_hi - long_lo - 2) * uniform(rng, 0.6, 1.0)
            start = long_lo + 1 + uniform(rng, 0.0, max(long_hi - long_lo - 2 - length, 0.0))
            pos = short_lo + (short_hi - short_lo) * (i + 0.5) / n
            seg = [(start, pos), (start + length, pos)]
            pts = np.array(seg if horizontal else [(p, q) for q, p in seg])
            a = bright_stroke(canvas, win, pts, thickness, gain, k)
            effect = np.maximum(effect, 2.0 * a)
        return win, effect

    return render
