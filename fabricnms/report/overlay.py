"""cv2 drawing: class-coloured boxes with labels that do not hide each other, masks, TP/FP/FN.

Images are ``uint8 [H, W, 3]`` BGR arrays as cv2 reads them; boxes are xyxy pixels of that
image; labels are 0-based class indices. Line and font sizes follow the frame size
(:func:`style_for`) so labels stay readable when a 2446x1000 frame is viewed shrunk to a
screen. Every function returns a new image and leaves its input untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from fabricnms.report.label_layout import Rect, place_labels
from fabricnms.report.palette import FN_BGR, FP_BGR, TP_BGR, class_bgr, text_bgr

Box = tuple[float, float, float, float]
BGR = tuple[int, int, int]
FONT = cv2.FONT_HERSHEY_SIMPLEX
MASK_ALPHA = 0.45
VEIL_ALPHA = 0.6
VEIL_EDGE_BGR = (0, 170, 255)  # amber: the border of the inspected area


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


def shown_style(height: int, width: int, shown_width: int) -> DrawStyle:
    """Style for an image that will be shown ``shown_width`` px wide (a contact-sheet cell):
    after the downscale, 2 px lines and labels about 12 px tall."""
    k = max(width, 1) / shown_width
    return DrawStyle(max(1, round(2 * k)), 0.45 * k, max(1, round(1.2 * k)))


def label_size(text: str, style: DrawStyle) -> tuple[int, int]:
    """``(w, h)`` in px of the filled label box of ``text``."""
    (tw, th), base = cv2.getTextSize(text, FONT, style.font_scale, style.font_thickness)
    pad = max(2, style.thickness)
    return tw + 2 * pad, th + base + 2 * pad


def _put_label(img: np.ndarray, text: str, rect: Rect, color: BGR, style: DrawStyle) -> None:
    """Filled label box ``rect`` (from :func:`label_size` / the layout) with ``text`` in it."""
    x1, y1, x2, y2 = rect
    pad = max(2, style.thickness)
    base = cv2.getTextSize(text, FONT, style.font_scale, style.font_thickness)[1]
    cv2.rectangle(img, (x1, y1), (x2 - 1, y2 - 1), color, cv2.FILLED)
    cv2.putText(
        img,
        text,
        (x1 + pad, y2 - base - pad),
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


def veil_outside(img: np.ndarray, box: Sequence[int]) -> None:
    """Grey out and hatch ``img`` outside the xyxy ``box`` (px; may be empty) and outline the
    box, in place: what was not inspected (the background past the fabric's edge and the
    selvedge band) against what was."""
    h, w = img.shape[:2]
    style = style_for(h, w)
    outside = np.ones((h, w), bool)
    x0, y0, x1, y1 = (int(v) for v in box)
    outside[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = False
    veil = (img * (1 - VEIL_ALPHA) + 128 * VEIL_ALPHA).astype(np.uint8)
    step = 12 * style.thickness
    for c in range(-h, w, step):
        cv2.line(veil, (c, 0), (c + h, h), (190, 190, 190), style.thickness, cv2.LINE_AA)
    img[outside] = veil[outside]
    if x1 > x0 and y1 > y0:
        cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), VEIL_EDGE_BGR, style.thickness)


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
    style: DrawStyle | None = None,
    taken: list[Rect] | None = None,
) -> np.ndarray:
    """Boxes with ``"<prefix><class> <score>"`` labels, coloured by class unless ``colors``
    gives one colour per box; masks from ``segmentations`` are blended in first. Labels are
    laid out highest score first so that none hides another (:mod:`.label_layout`), nor any
    rectangle of ``taken`` (which receives these labels); higher-scoring ones are drawn last."""
    out = image.copy()
    h, w = out.shape[:2]
    style = style or style_for(h, w)
    thickness = max(1, style.thickness // 2) if thin else style.thickness
    cols = list(colors) if colors is not None else [class_bgr(c) for c in labels]
    for seg, color in zip(segmentations or [None] * len(boxes), cols, strict=True):
        mask = decode_segmentation(seg, h, w)
        if mask is not None:
            blend_mask(out, mask, color)
    order = sorted(range(len(boxes)), key=lambda i: -scores[i]) if scores else range(len(boxes))
    texts = {}
    for i in order:
        label = labels[i]
        name = class_names[label] if 0 <= label < len(class_names) else str(label + 1)
        texts[i] = f"{prefix}{name}" + (f" {scores[i]:.2f}" if scores is not None else "")
    sizes = [label_size(texts[i], style) for i in order]
    rects = place_labels([boxes[i] for i in order], sizes, (w, h), taken)
    for i in reversed(order):  # lowest score first: the best box and label end on top
        x1, y1, x2, y2 = (round(v) for v in boxes[i])
        cv2.rectangle(out, (x1, y1), (x2, y2), cols[i], thickness, cv2.LINE_8)
    for i, rect in reversed(list(zip(order, rects, strict=True))):
        _put_label(out, texts[i], rect, cols[i], style)
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
    style: DrawStyle | None = None,
) -> tuple[np.ndarray, dict[str, int]]:
    """TP green, FP red (predictions), FN yellow (missed ground truth), plus a count legend
    (bottom left). The legend and the missed boxes' names are placed first, so no prediction
    label covers them.

    Returns the image and ``{"tp", "fp", "fn"}``.
    """
    tp, found = match_outcomes(
        gt_boxes, gt_labels, pred_boxes, pred_labels, pred_scores, iou_threshold
    )
    missed = [i for i, f in enumerate(found) if not f]
    counts = {"tp": sum(tp), "fp": len(tp) - sum(tp), "fn": len(missed)}
    style = style or style_for(*image.shape[:2])
    legend, taken, x = [], [], 0
    for key, color in (("tp", TP_BGR), ("fp", FP_BGR), ("fn", FN_BGR)):
        text = f"{key.upper()} {counts[key]}"
        lw, lh = label_size(text, style)
        legend.append((text, (x, image.shape[0] - lh, x + lw, image.shape[0]), color))
        taken.append(legend[-1][1])
        x += lw + 4 * (style.thickness + 2)
    fn_boxes, fn_labels = [gt_boxes[i] for i in missed], [gt_labels[i] for i in missed]
    fn_colors = [FN_BGR] * len(missed)
    out = draw_boxes(image, fn_boxes, fn_labels, class_names, None, None, fn_colors, "FN ",
                     style=style, taken=taken)  # fmt: skip
    colors = [TP_BGR if t else FP_BGR for t in tp]
    out = draw_boxes(out, pred_boxes, pred_labels, class_names, pred_scores, None, colors,
                     style=style, taken=taken)  # fmt: skip
    fn_rects = taken[len(legend) : len(legend) + len(missed)]
    for label, rect in zip(fn_labels, fn_rects, strict=True):  # over the prediction boxes too
        _put_label(out, f"FN {class_names[label]}", rect, FN_BGR, style)
    for text, rect, color in legend:
        _put_label(out, text, rect, color, style)
    return out, counts
