"""The simulated line-scan camera: illumination, optics, sensor noise and JPEG encoding.

Input is the fabric reflectance ``[H, W, 3]`` float32 RGB on 0..255 (with defects already
painted); output is the ``[H, W, 3]`` uint8 RGB frame a scanner would deliver, and the JPEG
bytes of the round-1 release (baseline, quality 95, 4:2:0 chroma subsampling).

Calibration (reference section 10.2): strong horizontal vignetting, edge/centre ~0.72-0.78;
a slight vertical gradient; low-frequency shading +-5 %; Gaussian blur sigma 0.5-0.8 px;
visible per-channel (demosaic) speckle. Frames narrower than a 2446 px scan line are treated
as crops of one, so their vignetting is a random slice of the full profile.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from fabricnms.data.texture import smooth_noise

#: Width of the real round-1 scan line, px.
SCAN_WIDTH = 2446
JPEG_QUALITY = 95


@dataclass(frozen=True)
class ScanParams:
    """Everything random about one frame's acquisition."""

    vignette_edge: float  # edge/centre brightness ratio of the full scan line
    vignette_centre: float  # optical centre as a fraction of the scan line
    tilt: float  # relative left-right brightness difference
    vertical: float  # relative top-bottom gradient
    shading: float  # amplitude of low-frequency shading blotches
    blur: float  # Gaussian sigma, px
    speckle: float  # per-channel demosaic noise std, 0..255 units
    noise: float  # luminance noise std, 0..255 units
    crop_x: int  # left offset of this frame within the scan line (0 for full frames)


def sample_scan(rng: np.random.Generator, width: int) -> ScanParams:
    """Draw one frame's acquisition parameters."""
    line = max(width, SCAN_WIDTH)
    return ScanParams(
        vignette_edge=float(rng.uniform(0.72, 0.8)),
        vignette_centre=float(rng.uniform(0.46, 0.54)),
        tilt=float(rng.uniform(-0.06, 0.06)),
        vertical=float(rng.uniform(-0.04, 0.04)),
        shading=float(rng.uniform(0.015, 0.04)),
        blur=float(rng.uniform(0.5, 0.8)),
        speckle=float(rng.uniform(9.0, 12.0)),
        noise=float(rng.uniform(1.5, 3.0)),
        crop_x=int(rng.integers(0, line - width + 1)),
    )


def illumination(
    params: ScanParams, rng: np.random.Generator, height: int, width: int
) -> np.ndarray:
    """Multiplicative light field ``[H, W]`` float32 (1.0 = centre of the scan line)."""
    line = max(width, SCAN_WIDTH)
    x = (np.arange(width, dtype=np.float32) + np.float32(params.crop_x + 0.5)) / np.float32(line)
    left = x < params.vignette_centre
    # distance from the optical centre, 0 at the centre and 1 at either end of the line
    d = np.where(
        left,
        (params.vignette_centre - x) / params.vignette_centre,
        (x - params.vignette_centre) / (1.0 - params.vignette_centre),
    )
    prof = 1.0 - (1.0 - params.vignette_edge) * np.sin(0.5 * np.pi * d) ** 2
    prof *= 1.0 + params.tilt * (x - 0.5)
    y = (np.arange(height, dtype=np.float32) + np.float32(0.5)) / np.float32(height)
    vert = 1.0 + params.vertical * (y - 0.5)
    light = smooth_noise(rng, height, width, 220.0) * np.float32(params.shading * 0.6)
    light += np.float32(1.0)
    light *= vert.astype(np.float32)[:, None]
    light *= prof.astype(np.float32)[None, :]
    return light


def expose(rgb: np.ndarray, params: ScanParams, rng: np.random.Generator) -> np.ndarray:
    """Light, blur, add sensor noise and quantise: ``[H, W, 3]`` float32 -> uint8 RGB.

    ``rgb`` is consumed (modified in place) to avoid copying a full frame.
    """
    height, width = rgb.shape[:2]
    rgb *= illumination(params, rng, height, width)[:, :, None]
    # demosaic speckle: independent per channel, correlated over ~2 px, then softened by optics
    hh, hw = (height + 1) // 2, (width + 1) // 2
    speckle = rng.standard_normal((hh, hw, 3), dtype=np.float32)
    speckle = cv2.resize(speckle, (width, height), interpolation=cv2.INTER_LINEAR)
    rgb += speckle * np.float32(params.speckle)
    cv2.GaussianBlur(rgb, (0, 0), params.blur, dst=rgb)
    grain = rng.standard_normal((height, width), dtype=np.float32)
    rgb += (grain * np.float32(params.noise))[:, :, None]
    np.clip(rgb, 0.0, 255.0, out=rgb)
    rgb += np.float32(0.5)
    return rgb.astype(np.uint8)


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """Baseline JFIF bytes of an ``[H, W, 3]`` uint8 RGB image, 4:2:0 chroma, no EXIF."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(
        ".jpg",
        bgr,
        [
            cv2.IMWRITE_JPEG_QUALITY,
            int(quality),
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
        ],
    )
    if not ok:  # cv2 reports failure without raising
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()
