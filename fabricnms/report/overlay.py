"""cv2 drawing: class-coloured boxes with labels, masks, TP/FP/FN colouring, contact sheets.

Images are ``uint8 [H, W, 3]`` BGR arrays as cv2 reads them; boxes are xyxy pixels of that
image; labels are 0-based class indices. Line and font sizes follow the frame size
(:func:`style_for`) so labels stay readable when a 2446x1000 frame is viewed shrunk to a
screen. Every function returns a new image and leaves its input untouched.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from fabricnms.report.palette import FN_BGR, FP_BGR, TP_BGR, class_bgr, text_bgr

Box = tuple[float, float, float, float]
BGR = tuple[int, int, int]
FONT = cv2.FONT_HERSHEY_SIMPLEX
MASK_ALPHA = 0.45


@dataclass(frozen=True)
class DrawStyle:
    """Box line thickness, label font scale and font thickness, all in pixels of the image."""

    thickness: int
    font_scale: float
    font_thickness: int


def style_for(height: int, width: int) -> DrawStyle:
    """Style scaled with the long side: 1 px lines and 0.4 font at 320 px, 3 px / 1.2 at
    2446 px (a frame shown at half size keeps ~11 px tall labels)."""
    long_side = max(height, width)
    scale = max(0.4, long_side / 2000)
    return DrawStyle(
        thickness=max(1, round(long_side / 800)),
        font_scale=scale,
        font_thickness=max(1, round(scale * 1.6)),
    )


def _put_label(img: np.ndarray, text: str, x: int, y: int, color: BGR, style: DrawStyle) -> None:
    """Filled label box with its bottom-left at (x, y), moved inside the image."""
    (tw, th), base = cv2.getTextSize(text, FONT, style.font_scale, style.font_thickness)
    pad = max(2, style.thickness)
    h, w = img.shape[:2]
    x = int(min(max(x, 0), max(w - tw - 2 * pad, 0)))
    y = int(min(max(y, th + base + 2 * pad), h))
    cv2.rectangle(img, (x, y - th - base - 2 * pad), (x + tw + 2 * pad, y), color, cv2.FILLED)
    cv2.putText(
        img,
        text,
        (x + pad, y - base - pad),
        FONT,
        style.font_scale,
        text_bgr(color),
        style.font_thickness,
        cv2.LINE_AA,
    )


def blend_mask(img: np.ndarray, mask: np.ndarray, color: BGR, alpha: float = MASK_ALPHA) -> None:
    """Alpha-blend ``color`` into ``img`` where the bool ``mask [H, W]`` is set (in place)."""
    if mask.shape != img.shape[:2]:
        raise ValueError(f"mask {mask.shape} does not match image {img.shape[:2]}")
    region = img[mask]
    img[mask] = (region * (1 - alpha) + np.asarray(color) * alpha).astype(np.uint8)


def decode_segmentation(seg: Any, height: int, width: int) -> np.ndarray | None:
    """COCO ``segmentation`` (RLE, uncompressed RLE or polygons) -> bool ``[H, W]``; None if
    empty."""
    if not seg:
        return None
    from pycocotools import mask as mask_utils

    if isinstance(seg, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    elif isinstance(seg.get("counts"), list):
        rle = mask_utils.frPyObjects(seg, height, width)
    else:
        rle = {"size": seg["size"], "counts": seg["counts"]}
    mask = mask_utils.decode(rle).astype(bool)
    return mask if mask.shape == (height, width) else None


def draw_boxes(
    image: np.ndarray,
    boxes: Sequence[Box],
    labels: Sequence[int],
    class_names: Sequence[str],
    scores: Sequence[float] | None = None,
    segmentations: Sequence[Any] | None = None,
    colors: Sequence[BGR] | None = None,
    prefix: str = "",
    thin: bool = False,
) -> np.ndarray:
    """Boxes with ``"<prefix><class> <score>"`` labels, coloured by class unless ``colors``
    gives one colour per box; masks from ``segmentations`` are blended in first."""
    out = image.copy()
    h, w = out.shape[:2]
    style = style_for(h, w)
    thickness = max(1, style.thickness // 2) if thin else style.thickness
    cols = list(colors) if colors is not None else [class_bgr(c) for c in labels]
    for seg, color in zip(segmentations or [None] * len(boxes), cols, strict=True):
        mask = decode_segmentation(seg, h, w)
        if mask is not None:
            blend_mask(out, mask, color)
    for i, (box, label) in enumerate(zip(boxes, labels, strict=True)):
        x1, y1, x2, y2 = (round(v) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), cols[i], thickness, cv2.LINE_8)
        name = class_names[label] if 0 <= label < len(class_names) else str(label + 1)
        text = f"{prefix}{name}" + (f" {scores[i]:.2f}" if scores is not None else "")
        _put_label(out, text, x1, y1, cols[i], style)
    return out


def match_outcomes(
    gt_boxes: Sequence[Box],
    gt_labels: Sequence[int],
    pred_boxes: Sequence[Box],
    pred_labels: Sequence[int],
    pred_scores: Sequence[float],
    iou_threshold: float = 0.5,
) -> tuple[list[bool], list[bool]]:
    """Greedy COCO-style matching, highest score first, same class, IoU >= ``iou_threshold``.

    Returns ``(pred_is_tp [P], gt_is_found [G])``; unmatched predictions are false positives,
    unfound ground truth boxes false negatives.
    """
    import torch

    from fabricnms.model.boxes import pairwise_iou

    tp = [False] * len(pred_boxes)
    found = [False] * len(gt_boxes)
    if not pred_boxes or not gt_boxes:
        return tp, found
    iou = pairwise_iou(
        torch.tensor(pred_boxes, dtype=torch.float64), torch.tensor(gt_boxes, dtype=torch.float64)
    )
    for p in sorted(range(len(pred_boxes)), key=lambda i: -pred_scores[i]):
        best, best_iou = -1, iou_threshold
        for g in range(len(gt_boxes)):
            if found[g] or gt_labels[g] != pred_labels[p]:
                continue
            v = float(iou[p, g])
            if v >= best_iou:
                best, best_iou = g, v
        if best >= 0:
            tp[p], found[best] = True, True
    return tp, found


def draw_compare(
    image: np.ndarray,
    gt_boxes: Sequence[Box],
    gt_labels: Sequence[int],
    pred_boxes: Sequence[Box],
    pred_labels: Sequence[int],
    pred_scores: Sequence[float],
    class_names: Sequence[str],
    iou_threshold: float = 0.5,
) -> tuple[np.ndarray, dict[str, int]]:
    """TP green, FP red (predictions), FN yellow (missed ground truth), plus a count legend.

    Returns the image and ``{"tp", "fp", "fn"}``.
    """
    tp, found = match_outcomes(
        gt_boxes, gt_labels, pred_boxes, pred_labels, pred_scores, iou_threshold
    )
    missed = [i for i, f in enumerate(found) if not f]
    out = draw_boxes(
        image,
        [gt_boxes[i] for i in missed],
        [gt_labels[i] for i in missed],
        class_names,
        colors=[FN_BGR] * len(missed),
        prefix="FN ",
    )
    out = draw_boxes(
        out,
        pred_boxes,
        pred_labels,
        class_names,
        scores=pred_scores,
        colors=[TP_BGR if t else FP_BGR for t in tp],
    )
    counts = {"tp": sum(tp), "fp": len(tp) - sum(tp), "fn": len(missed)}
    style = style_for(*out.shape[:2])
    x = 0
    for key, color in (("tp", TP_BGR), ("fp", FP_BGR), ("fn", FN_BGR)):
        text = f"{key.upper()} {counts[key]}"
        _put_label(out, text, x, out.shape[0], color, style)
        x += cv2.getTextSize(text, FONT, style.font_scale, style.font_thickness)[0][0] + 6 * (
            style.thickness + 2
        )
    return out, counts


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
