"""The weave of a real fabric photograph, measured: yarn direction and period, and its relief.

:func:`measure_weave` finds the strongest periodic component of the luminance in the power
spectrum of a Hann-windowed central crop (frequencies below 1/64 cycle/px, shading and
vignetting, are ignored): its period (px) and the direction of its wave vector. Twill shows
one dominant diagonal wave vector, plain weave two near the image axes.

:func:`relief_maps` splits the frame into what the defect recipes edit: a zero-mean,
locally unit-variance relief ``[H, W]`` (the luminance minus its local mean, divided by the
local std over a few yarn periods) and the per-channel amplitude ``[H, W, 3]`` of that relief
in RGB (0..255 units), so that ``rgb ~ local mean + relief * amplitude`` near every pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Side of the central crop whose spectrum is measured (px; smaller frames use all of it).
CROP = 512
#: Periods measured are clamped to this range (px).
PERIOD_RANGE = (2.5, 48.0)


@dataclass(frozen=True)
class WeaveEstimate:
    """Measured weave: ``period`` (px) and ``angle`` (degrees of the wave vector below the
    horizontal; 0 = vertical yarns, i.e. warp stripes) of the strongest component, the period
    of the strongest component at least 30 degrees away from it (``second_period``), whether
    it looks like a twill (dominant wave vector diagonal), and ``strength``: the peak's share
    of the band-passed spectral power (0 = no periodic texture)."""

    period: float
    angle: float
    second_period: float
    twill: bool
    strength: float


def luminance(rgb: np.ndarray) -> np.ndarray:
    """``[H, W]`` float32 luma of ``[H, W, 3]`` RGB."""
    return cv2.cvtColor(np.ascontiguousarray(rgb, np.float32), cv2.COLOR_RGB2GRAY)


def _spectrum(lum: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Power, frequency x and frequency y (cycles/px) of the windowed central crop."""
    h, w = lum.shape
    ch, cw = min(h, CROP), min(w, CROP)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    crop = lum[y0 : y0 + ch, x0 : x0 + cw].astype(np.float64)
    crop = crop - cv2.GaussianBlur(crop, (0, 0), 8.0)
    crop *= np.outer(np.hanning(ch), np.hanning(cw))
    power = np.abs(np.fft.rfft2(crop)) ** 2
    fy = np.fft.fftfreq(ch)[:, None] * np.ones((1, power.shape[1]))
    fx = np.fft.rfftfreq(cw)[None, :] * np.ones((ch, 1))
    return power, fx, fy


def measure_weave(rgb: np.ndarray) -> WeaveEstimate:
    """The :class:`WeaveEstimate` of a ``[H, W, 3]`` frame (see the module docstring)."""
    power, fx, fy = _spectrum(luminance(rgb))
    f = np.hypot(fx, fy)
    lo, hi = 1.0 / PERIOD_RANGE[1], 1.0 / PERIOD_RANGE[0]
    band = (f >= max(lo, 1.0 / 64.0)) & (f <= hi)
    p = np.where(band, power, 0.0)
    total = float(p.sum())
    if total <= 0.0:
        return WeaveEstimate(8.0, 0.0, 8.0, False, 0.0)
    i = int(np.argmax(p))
    peak_angle = float(np.degrees(np.arctan2(fy.flat[i], fx.flat[i])))
    period = float(1.0 / f.flat[i])
    ang = np.degrees(np.arctan2(fy, fx))
    diff = np.abs((ang - peak_angle + 90.0) % 180.0 - 90.0)
    other = np.where(diff >= 30.0, p, 0.0)
    j = int(np.argmax(other))
    second = float(1.0 / f.flat[j]) if other.flat[j] > 0 else period
    # the peak and its immediate neighbours (windowing spreads it over ~3x3 bins)
    near = np.hypot(fx - fx.flat[i], fy - fy.flat[i]) <= 1.5 / min(power.shape[0], CROP)
    strength = float(p[near].sum() / total)
    folded = abs((peak_angle + 90.0) % 180.0 - 90.0)  # 0 = vertical yarns, 90 = horizontal
    twill = 15.0 <= folded <= 75.0
    return WeaveEstimate(period, folded, second, twill, strength)


def relief_maps(rgb: np.ndarray, period: float) -> tuple[np.ndarray, np.ndarray]:
    """``(relief [H, W], amplitude [H, W, 3])`` float32 of ``rgb`` (module docstring)."""
    sigma = float(np.clip(1.5 * period, 3.0, 40.0))
    rgb = np.ascontiguousarray(rgb, np.float32)
    high = rgb - cv2.GaussianBlur(rgb, (0, 0), sigma)
    lum_high = luminance(high)
    var = cv2.GaussianBlur(lum_high * lum_high, (0, 0), 2.0 * sigma)
    std = np.sqrt(np.maximum(var, 1e-6)) + np.float32(0.5)
    relief = lum_high / std
    amp = np.empty_like(rgb)
    for ch in range(3):
        cov = cv2.GaussianBlur(high[:, :, ch] * lum_high, (0, 0), 2.0 * sigma)
        amp[:, :, ch] = cov / std  # regression slope of the channel on the relief, x std
    return relief.astype(np.float32), amp
