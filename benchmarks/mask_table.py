"""Mask quality three ways on the SAME detections: filled box, raw branch mask, refined mask.

Run::

    python benchmarks/mask_table.py --weights runs/train/masks/weights/best.pt \\
        --data data/heldout_coco/dataset.yaml [--split val] [--lambda-tv 0.25 0.5 1]

``--data`` is a ``convert``-ed ``synth --masks`` release (its ``dataset.yaml`` lists the true
masks); the checkpoint needs a mask branch. The detector runs once per frame (tiled, the
``predict`` postprocess); every detection's mask logits on its box grid then become

- (a) the filled box,
- (b) the raw branch mask (``sigmoid(z) > 0.5``),
- (c) the refined mask (entropy-constrained Frank-Wolfe, one row per ``--lambda-tv``),

all pasted into the frame and scored with pycocotools ``segm`` (mask AP, AP50) and the mean
best mask IoU against the true masks (:func:`fabricnms.engine.masks.evaluate_masks`). The
refinement time is measured per frame (median) and per detection (total / detections): the
refinement call alone, batched over each frame's detections.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from fabricnms.config import DataSpec, load_data_yaml
from fabricnms.data.coco import load_coco
from fabricnms.data.dataset import frames_from_coco, read_frame
from fabricnms.engine.checkpoint import load_detector
from fabricnms.engine.eval_run import true_mask_ground_truth
from fabricnms.engine.evaluate import detections_to_coco, restrict_images
from fabricnms.engine.masks import evaluate_masks
from fabricnms.engine.tiling import TileSettings, detect_frames
from fabricnms.model.mask_head import paste_masks
from fabricnms.model.mask_infer import DEFAULT_LAMBDA_TV, MaskSettings, require_mask_branch
from fabricnms.model.refine import DEFAULT_H0, refine_masks
from fabricnms.model.types import Detections

Results = list[dict]


@dataclass
class _Refined:
    """COCO results of the refined masks at one ``lambda_tv`` and the refinement seconds per
    frame."""

    results: Results = field(default_factory=list)
    frame_s: list[float] = field(default_factory=list)


def _with_masks(image_id: int, det: Detections, probs: torch.Tensor, h: int, w: int) -> Results:
    """COCO rows of ``det`` with the masks ``probs [K, S, S] > 0.5`` pasted into its boxes."""
    masked = Detections(det.boxes, det.scores, det.labels, paste_masks(probs, det.boxes, h, w))
    return detections_to_coco(image_id, masked)


def _detections(
    args: argparse.Namespace, spec: DataSpec, gt: dict
) -> Iterator[tuple[int, int, int, Detections]]:
    """``(image_id, height, width, detections with mask logits)`` per evaluated frame."""
    model, _ = load_detector(args.weights, "cpu")
    require_mask_branch(model, args.weights)
    frames = frames_from_coco(gt, spec.image_root, spec.nc)[: args.max_frames or None]
    settings = TileSettings(
        tile=args.tile,
        overlap=args.overlap,
        nms=args.nms,
        conf=args.conf,
        masks=MaskSettings(h0=args.h0, iters=args.iters),
    )
    images = (read_frame(f) for f in frames)
    for frame, det in zip(frames, detect_frames(model, images, settings), strict=True):
        yield frame.image_id, frame.height, frame.width, det


def run(args: argparse.Namespace) -> None:
    """Detect, build the three kinds of masks, print the table."""
    spec = load_data_yaml(args.data)
    gt = load_coco(spec.split_path(args.split))
    raw: Results = []
    refined = {lam: _Refined() for lam in args.lambda_tv}
    frames = detections = 0
    evaluated: set[int] = set()
    for image_id, h, w, det in _detections(args, spec, gt):
        evaluated.add(image_id)
        frames += 1
        detections += len(det)
        logits = det.extra["mask_logits"]
        raw += _with_masks(image_id, det, torch.sigmoid(logits), h, w)
        for lam, out in refined.items():
            start = time.perf_counter()
            probs = (
                refine_masks(logits, None, args.h0, lam, args.iters).probs if len(det) else logits
            )
            out.frame_s.append(time.perf_counter() - start)
            out.results += _with_masks(image_id, det, probs, h, w)
    print(
        f"{args.weights} on {args.data} ({args.split}): {frames} frames, {detections} "
        f"detections (nms {args.nms}, conf {args.conf}), h0 {args.h0}, {args.iters} iterations"
    )
    segm_gt = restrict_images(true_mask_ground_truth(spec, gt), evaluated)
    base = evaluate_masks(segm_gt, raw)
    print(f"true masks: {base.num_true_masks}; box ceiling IoU {base.box_ceiling_iou:.3f}\n")
    print("| mask | mask AP | AP50 | mean mask IoU | refine ms/frame | refine ms/det |")
    print("|---|---|---|---|---|---|")
    print(_row("(a) filled box", base.box_segm.stats, base.box_mean_best_iou) + " - | - |")
    print(_row("(b) raw branch (p > 0.5)", base.segm.stats, base.mean_best_iou) + " - | - |")
    for lam, out in refined.items():
        report = evaluate_masks(segm_gt, out.results)
        per_frame = 1000 * statistics.median(out.frame_s) if out.frame_s else 0.0
        per_det = 1000 * sum(out.frame_s) / max(detections, 1)
        name = f"(c) refined, lambda_tv {lam:g}"
        print(
            _row(name, report.segm.stats, report.mean_best_iou)
            + f" {per_frame:.1f} | {per_det:.2f} |"
        )


def _row(name: str, stats: list[float], iou: float) -> str:
    return f"| {name} | {stats[0]:.3f} | {stats[1]:.3f} | {iou:.3f} |"


def mask_data_parser(description: str) -> argparse.ArgumentParser:
    """The arguments both mask benchmarks share: ``--weights``, ``--data``, ``--split``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--weights", required=True, help="checkpoint with a mask branch")
    parser.add_argument("--data", required=True, help="dataset.yaml of a synth --masks release")
    parser.add_argument("--split", default="val")
    return parser


def main() -> None:
    parser = mask_data_parser(__doc__.splitlines()[0])
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--overlap", type=float, default=0.2)
    parser.add_argument("--nms", default="dnms")
    parser.add_argument("--conf", type=float, default=0.05, help="score floor of detections")
    parser.add_argument("--h0", type=float, default=DEFAULT_H0)
    parser.add_argument("--lambda-tv", type=float, nargs="+", default=[DEFAULT_LAMBDA_TV])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--max-frames", type=int, default=0, help="0 = every frame")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run(args)


if __name__ == "__main__":
    main()
