"""Area defect recipes: stains, pattern skips, full-width bars, marks, cloudy weaving.

Render functions of :mod:`fabricnms.data.defects` (signature
:data:`fabricnms.data.defect_paint.RenderFn`). Image x is the weft direction, y the warp.
"""

from __future__ import annotations

import cv2
import numpy as np

from fabricnms.data.defect_paint import (
    Paint,
    RenderFn,
    ellipse,
    sign,
    uniform,
    wobble,
)
from fabricnms.data.synth_canvas import (
    BlobShape,
    Box,
    Canvas,
    band,
    blob,
    ramp_ends,
)
from fabricnms.data.texture import smooth_noise


def stain(kind: str) -> RenderFn:
    """Water (pale tide mark), oil (darker, yellow-brown) or dirt (grey-brown, mottled) stain."""

    def render(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
        win = canvas.window(box, 2)
        cx, cy, rx, ry = ellipse(box, 0.5)
        a = blob(win, cx, cy, rx, ry, BlobShape.sample(rng, 0.3), 0.45)
        mott = smooth_noise(rng, *win.shape, cell=max(4.0, min(rx, ry) / 2))
        body = np.clip(a * (0.8 + 0.2 * mott), 0.0, 1.0)
        if kind == "water":
            canvas.gain(win, body, uniform(rng, 0.06, 0.12) * k)
            ring = 4.0 * a * (1.0 - a)
            canvas.gain(win, ring, -uniform(rng, 0.14, 0.22) * k * np.array([1.0, 1.0, 1.1]))
        elif kind == "oil":
            d = uniform(rng, 0.14, 0.26) * k
            canvas.gain(win, body, -d * np.array([0.75, 0.9, 1.3]))
        else:
            d = uniform(rng, 0.1, 0.2) * k
            fine = 0.75 + 0.25 * smooth_noise(rng, *win.shape, cell=3.0)
            canvas.gain(win, np.clip(body * fine, 0, 1), -d * np.array([0.9, 1.0, 1.25]))
        return win, a

    return render


def pattern_skip(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
    """Pattern-card skip: a patch woven with the wrong geometry (over-long floats)."""
    win = canvas.window(box, 2)
    cx, cy, rx, ry = ellipse(box, 0.5)
    a = band(win.x - np.float32(cx), rx - 1.0, 2.0) * band(win.y - np.float32(cy), ry - 1.0, 2.0)
    weave = canvas.fabric.params.weave
    phase = (uniform(rng, 0, 2 * np.pi), uniform(rng, 0, 2 * np.pi))
    if weave.kind == "twill":
        variant = canvas.fabric.variant(
            period=weave.period * uniform(rng, 1.3, 1.8),
            dot_period=weave.dot_period * uniform(rng, 2.0, 3.5),
            angle=weave.angle * sign(rng),
            phase=phase,
        )
    else:
        variant = canvas.fabric.variant(
            period=weave.period * uniform(rng, 1.5, 2.2),
            angle=uniform(rng, 25.0, 45.0),
            phase=phase,
        )
    new = canvas.lattice(win, variant) * np.float32(uniform(rng, 1.1, 1.4)) + np.float32(0.3)
    canvas.reweave(win, new, a * np.float32(min(1.0, 0.85 * k)))
    return win, a


def bar(kind: str) -> RenderFn:
    """Full-width bars: ``density`` (thin/thick place), ``wavy``, ``shade``."""

    def render(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
        win = canvas.window(box, 3)
        x0, y0, x1, y1 = box
        yc, hh = 0.5 * (y0 + y1), 0.5 * (y1 - y0)
        soft = min(uniform(rng, 3.0, 10.0), hh)
        env_x = ramp_ends(win.x, x0, x1, 30.0, canvas.width)
        if kind == "wavy":
            amp = min(uniform(rng, 3.0, 12.0), 0.3 * hh)
            wave = wobble(rng, amp, 150.0, 600.0)
            a = band(win.y - np.float32(yc) - wave(win.x), hh - amp - 0.5 * soft, soft) * env_x
            lam = uniform(rng, 15.0, 40.0)
            inner = np.sin((win.y - wave(win.x)) * np.float32(2 * np.pi / lam))
            canvas.gain(win, a * inner, uniform(rng, 0.06, 0.12) * k)
            canvas.gain(win, a, sign(rng) * 0.03 * k)
            return win, a
        a = band(win.y - np.float32(yc), hh - 0.5 * soft, soft) * env_x
        if kind == "density":
            sv = 1.0 + sign(rng) * uniform(rng, 0.08, 0.18)
            canvas.reweave(win, canvas.lattice(win, sv=sv), a)
            canvas.gain(win, a, sign(rng) * uniform(rng, 0.06, 0.12) * k)
        else:
            tint = rng.normal(0.0, 0.5, size=3) + sign(rng)
            tint /= np.abs(tint).max()
            canvas.gain(win, a, uniform(rng, 0.05, 0.11) * k * tint)
        return win, a

    return render


def mark(kind: str) -> RenderFn:
    """Marks: ``abrasion`` (fuzzy light), ``crush`` (shiny flat streak), ``mending``
    (irregular weave), ``singe`` (brown scorch)."""

    def render(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
        win = canvas.window(box, 3)
        cx, cy, rx, ry = ellipse(box, 0.5)
        rough = {"abrasion": 0.25, "crush": 0.1, "mending": 0.3, "singe": 0.35}[kind]
        a = blob(win, cx, cy, rx, ry, BlobShape.sample(rng, rough), 0.4)
        if kind == "abrasion":
            canvas.reweave(win, 0.0, 0.6 * a)
            fuzz = 1.0 + 0.5 * smooth_noise(rng, *win.shape, cell=2.5)
            canvas.gain(win, np.clip(a * fuzz, 0, 1.5), uniform(rng, 0.08, 0.15) * k)
        elif kind == "crush":
            flat = cv2.GaussianBlur(canvas.rgb[win.ys, win.xs], (0, 0), 2.0)
            canvas.blend(win, 0.8 * a, flat)
            canvas.gain(win, a, uniform(rng, 0.1, 0.2) * k)
            dist = (win.y - np.float32(cy)) if rx >= ry else (win.x - np.float32(cx))
            canvas.gain(win, band(dist, 1.0, 1.5) * a, 0.1 * k)
        elif kind == "mending":
            amp = uniform(rng, 1.2, 2.5)
            du = smooth_noise(rng, *win.shape, cell=5.0) * np.float32(amp)
            dv = smooth_noise(rng, *win.shape, cell=5.0) * np.float32(amp)
            canvas.reweave(win, canvas.lattice(win, du=du, dv=dv), a)
            canvas.gain(win, a, -uniform(rng, 0.03, 0.07) * k)
        else:
            scorch = np.clip(a * (0.7 + 0.3 * smooth_noise(rng, *win.shape, cell=4.0)), 0, 1)
            canvas.gain(win, scorch, -uniform(rng, 0.12, 0.25) * k * np.array([0.7, 0.95, 1.35]))
        return win, a

    return render


def cloudy(canvas: Canvas, rng: np.random.Generator, box: Box, k: float) -> Paint:
    """Cloudy weaving: uneven density blotches inside a soft region."""
    win = canvas.window(box, 3)
    cx, cy, rx, ry = ellipse(box, 0.5)
    a = blob(win, cx, cy, rx, ry, BlobShape.sample(rng, 0.3), 0.6)
    clouds = smooth_noise(rng, *win.shape, cell=uniform(rng, 12.0, 30.0))
    canvas.gain(win, a * clouds, uniform(rng, 0.06, 0.12) * k)
    canvas.gain(win, a, -0.03 * k)
    return win, a
