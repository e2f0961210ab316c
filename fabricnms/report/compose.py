"""Composing drawn frames: title bars, side-by-side pairs, downscaling, contact sheets and
defect thumbnails. Images are ``uint8 [H, W, 3]`` BGR; boxes xyxy pixels."""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from fabricnms.report.overlay import BGR, FONT, Box, style_for


def titled(image: np.ndarray, title: str) -> np.ndarray:
    """``image`` with a dark title bar above it."""
    h, w = image.shape[:2]
    style = style_for(h, w)
    (_, th), base = cv2.getTextSize(title, FONT, style.font_scale, style.font_thickness)
    bar = np.full((th + base + 4 * style.thickness + 8, w, 3), 32, np.uint8)
    cv2.putText(
        bar,
        title,
        (8, th + 2 * style.thickness + 4),
        FONT,
        style.font_scale,
        (255, 255, 255),
        style.font_thickness,
        cv2.LINE_AA,
    )
    return np.vstack([bar, image])


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 8) -> np.ndarray:
    """Two images next to each other on a dark background (heights may differ)."""
    h = max(left.shape[0], right.shape[0])
    canvas = np.full((h, left.shape[1] + gap + right.shape[1], 3), 32, np.uint8)
    canvas[: left.shape[0], : left.shape[1]] = left
    canvas[: right.shape[0], left.shape[1] + gap :] = right
    return canvas


def fit(image: np.ndarray, max_w: int, max_h: int) -> np.ndarray:
    """Downscale (never upscale) to fit ``max_w x max_h`` keeping the aspect ratio."""
    h, w = image.shape[:2]
    s = min(max_w / w, max_h / h, 1.0)
    if s >= 1.0:
        return image
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def contact_sheet(
    tiles: Sequence[tuple[str, np.ndarray]], columns: int, cell_w: int = 480
) -> np.ndarray:
    """Grid of captioned thumbnails, ``columns`` per row, each ``cell_w`` px wide."""
    if not tiles:
        raise ValueError("contact_sheet needs at least one image")
    aspect = max(t.shape[0] / t.shape[1] for _, t in tiles)
    cell_h = max(1, round(cell_w * aspect))
    caption_h = 24
    rows = math.ceil(len(tiles) / columns)
    sheet = np.full((rows * (cell_h + caption_h), columns * cell_w, 3), 24, np.uint8)
    for n, (name, img) in enumerate(tiles):
        r, c = divmod(n, columns)
        thumb = fit(img, cell_w - 4, cell_h - 4)
        y0, x0 = r * (cell_h + caption_h), c * cell_w
        sheet[y0 : y0 + thumb.shape[0], x0 : x0 + thumb.shape[1]] = thumb
        cv2.putText(
            sheet,
            name[:48],
            (x0 + 4, y0 + cell_h + 17),
            FONT,
            0.5,
            (230, 230, 230),
            1,
            cv2.LINE_AA,
        )
    return sheet


def crop_thumbnail(
    image: np.ndarray, box: Box, color: BGR, max_w: int = 220, max_h: int = 160
) -> np.ndarray:
    """A crop around ``box`` (with context, aspect at most 4:1 where the frame allows) with
    the box outlined, fitted into ``max_w x max_h``."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    bw, bh = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    margin = 0.25 * max(bw, bh) + 16
    cw, ch = bw + 2 * margin, bh + 2 * margin
    cw, ch = max(cw, ch / 4), max(ch, cw / 4)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left = int(max(0, min(cx - cw / 2, w - cw)))
    top = int(max(0, min(cy - ch / 2, h - ch)))
    right, bottom = int(min(w, left + math.ceil(cw))), int(min(h, top + math.ceil(ch)))
    crop = image[top:bottom, left:right].copy()
    scale = min(max_w / crop.shape[1], max_h / crop.shape[0], 1.0)
    line = max(1, round(2 / scale))
    p1 = (round(x1 - left), round(y1 - top))
    p2 = (round(x2 - left), round(y2 - top))
    cv2.rectangle(crop, p1, p2, color, line, cv2.LINE_8)
    return fit(crop, max_w, max_h)
