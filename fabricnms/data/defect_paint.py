"""Shared strokes and shapes of the defect recipes (:mod:`fabricnms.data.defects`).

A recipe's render function has the signature :data:`RenderFn`: ``(canvas, rng, box, k) ->
(window, effect)`` where ``box`` is tight xyxy pixel edges inside the frame, ``k`` scales the
contrast (1.0 = ``normal``) and ``effect >= 0.5`` is the true mask in ``window``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fabricnms.data.synth_canvas import Box, Canvas, Window, band, ramp_ends, stroke

Paint = tuple[Window, np.ndarray]
RenderFn = Callable[[Canvas, np.random.Generator, Box, float], Paint]


def uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def sign(rng: np.random.Generator, p_pos: float = 0.5) -> float:
    return 1.0 if rng.random() < p_pos else -1.0


def ellipse(box: Box, inset: float) -> tuple[float, float, float, float]:
    """Centre and radii of the ellipse inscribed in ``box`` shrunk by ``inset`` px."""
    x0, y0, x1, y1 = box
    rx = max(0.5 * (x1 - x0) - inset, 1.0)
    ry = max(0.5 * (y1 - y0) - inset, 1.0)
    return 0.5 * (x0 + x1), 0.5 * (y0 + y1), rx, ry


def gauss(win: Window, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    """Soft elliptical bump, 1 at the centre and 0.5 at 70 % of the radii."""
    dx = (win.x - np.float32(cx)) / np.float32(rx)
    dy = (win.y - np.float32(cy)) / np.float32(ry)
    return np.exp(-(dx * dx + dy * dy) * np.float32(1.4))


def line(
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


def wobble(rng: np.random.Generator, amp: float, lo: float, hi: float) -> Callable:
    """Sinusoidal centre offset ``amp * sin(2 pi t / period + phase)`` with period in [lo, hi]."""
    period, phase = uniform(rng, lo, hi), uniform(rng, 0.0, 2 * np.pi)
    k = np.float32(2 * np.pi / period)
    return lambda t: np.float32(amp) * np.sin(t * k + np.float32(phase))


def segment(win: Window, p0: np.ndarray, p1: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Along-line coordinate ``t`` (0 at ``p0``) and signed distance ``d`` to the line p0->p1."""
    direction = p1 - p0
    length = float(np.hypot(*direction))
    ux, uy = (direction / max(length, 1e-6)).astype(np.float32)
    rx, ry = win.x - np.float32(p0[0]), win.y - np.float32(p0[1])
    return rx * ux + ry * uy, rx * (-uy) + ry * ux, length


def bright_stroke(
    canvas: Canvas, win: Window, pts: np.ndarray, thickness: int, gain: float, k: float
) -> np.ndarray:
    """Draw a yarn-like stroke with a faint shadow below-right; returns its alpha."""
    a = stroke(win, pts, thickness)
    if gain > 0:
        shadow = stroke(win, pts + np.array([0.8, 1.2]), thickness) * (1.0 - a)
        canvas.gain(win, shadow, -0.18 * k)
    canvas.gain(win, a, gain)
    return a
