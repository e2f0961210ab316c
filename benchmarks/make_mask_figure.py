"""Render ``docs/masks.png``: refined masks of detections on synthetic defects with true masks.

One row per defect: the frame crop, the true mask (green), the raw branch mask
(``sigmoid(z) > 0.5``, blue) and the refined mask (red), each labelled with its IoU to the true
mask. A defect is shown when a detection's box overlaps its true mask's box (IoU >= 0.3);
the first ``--count`` such defects of the split are drawn, in frame order.

    python benchmarks/make_mask_figure.py --weights runs/train/masks/weights/best.pt \\
        --data data/heldout_coco/dataset.yaml --out docs/masks.png
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
from mask_table import mask_data_parser

from fabricnms.data.coco import load_coco
from fabricnms.data.dataset import frames_from_coco, read_frame
from fabricnms.data.dataset_yaml import load_data_yaml
from fabricnms.engine.checkpoint import load_detector
from fabricnms.engine.eval_run import true_mask_ground_truth
from fabricnms.engine.tiling import TileSettings, detect_frames
from fabricnms.model.boxes import pairwise_iou
from fabricnms.model.mask_head import paste_masks
from fabricnms.model.mask_infer import MaskSettings, require_mask_branch
from fabricnms.report.overlay import blend_mask, decode_segmentation

SIDE = 160  # panel side in pixels
COLORS = {"true": (60, 200, 60), "raw": (230, 120, 40), "refined": (40, 40, 230)}  # BGR


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def _panel(
    image: np.ndarray, mask: np.ndarray | None, window: tuple[int, ...], text: str
) -> np.ndarray:
    """The ``window`` (x0, y0, x1, y1) of the BGR ``image`` with ``mask`` blended, resized."""
    x0, y0, x1, y1 = window
    out = image[y0:y1, x0:x1].copy()
    if mask is not None:
        blend_mask(out, mask[y0:y1, x0:x1], COLORS[text.split()[0]], 0.5)
    out = cv2.resize(out, (SIDE, SIDE), interpolation=cv2.INTER_NEAREST)
    cv2.rectangle(out, (0, 0), (8 + 7 * len(text), 16), (0, 0, 0), -1)
    cv2.putText(out, text, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
    return out


def _rows(args: argparse.Namespace) -> Iterator[np.ndarray]:
    """One figure row (4 panels side by side) per shown defect."""
    model, _ = load_detector(args.weights, "cpu")
    require_mask_branch(model, args.weights)
    spec = load_data_yaml(args.data)
    gt = load_coco(spec.split_path(args.split))
    truth: dict[int, list[dict]] = {}
    for ann in true_mask_ground_truth(spec, gt)["annotations"]:
        truth.setdefault(ann["image_id"], []).append(ann)
    frames = frames_from_coco(gt, spec.image_root, spec.nc)
    settings = TileSettings(conf=args.conf, masks=MaskSettings())
    images = (read_frame(f) for f in frames)
    for frame, det in zip(frames, detect_frames(model, images, settings), strict=True):
        if len(det) == 0:
            continue
        rgb = read_frame(frame)
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        h, w = rgb.shape[:2]
        raw = paste_masks(torch.sigmoid(det.extra["mask_logits"]), det.boxes, h, w)
        for ann in truth.get(frame.image_id, []):
            x, y, bw, bh = ann["bbox"]
            ious = pairwise_iou(torch.tensor([[x, y, x + bw, y + bh]]), det.boxes)[0]
            k = int(ious.argmax())
            if float(ious[k]) < 0.3:
                continue
            true = decode_segmentation(ann["segmentation"], h, w)
            side = int(max(bw, bh) * 1.4 + 16)
            x0 = int(np.clip(x + bw / 2 - side / 2, 0, max(w - side, 0)))
            y0 = int(np.clip(y + bh / 2 - side / 2, 0, max(h - side, 0)))
            window = (x0, y0, min(x0 + side, w), min(y0 + side, h))
            masks = {"raw": raw.full(k).numpy(), "refined": det.masks.full(k).numpy()}
            yield np.hstack(
                [_panel(bgr, None, window, "frame"), _panel(bgr, true, window, "true mask")]
                + [_panel(bgr, m, window, f"{n} IoU {_iou(m, true):.2f}") for n, m in masks.items()]
            )


def main() -> None:
    parser = mask_data_parser(__doc__.splitlines()[0])
    parser.add_argument("--conf", type=float, default=0.1)
    parser.add_argument("--count", type=int, default=6, help="defects (rows) to show")
    parser.add_argument("--out", type=Path, default=Path("docs/masks.png"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [row for _, row in zip(range(args.count), _rows(args), strict=False)]
    if not rows:
        raise SystemExit("no detection overlaps a true mask; nothing to draw")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), np.vstack(rows))
    print(f"wrote {args.out} ({len(rows)} defects)")


if __name__ == "__main__":
    main()
