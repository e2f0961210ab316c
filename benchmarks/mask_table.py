"""Mask quality three ways on the SAME detections: filled box, raw branch mask, refined mask.

Run::

    python benchmarks/mask_table.py --weights runs/train/masks/weights/best.pt \\
        --data data/heldout_coco/dataset.yaml [--split val] [--lambda-tv 0 0.5 2] \\
        [--edge-sigma 0 10] [--colour-kappa 0 1] [--max-frames 40]

``--data`` is a ``convert``-ed ``synth --masks`` release (its ``dataset.yaml`` lists the true
masks); the checkpoint needs a mask branch. The detector runs once per frame (tiled, the
``predict`` postprocess); every detection's mask logits on its box grid then become

- (a) the filled box,
- (b) the raw branch mask (``sigmoid(z) > 0.5``),
- (c) the refined mask (entropy-constrained Frank-Wolfe, one row per combination of
  ``--lambda-tv``, ``--edge-sigma`` (contrast-sensitive TV, 0 = plain) and ``--colour-kappa``
  (colour unary, 0 = off); see :mod:`fabricnms.model.mask_infer`),

all pasted into the frame and scored with pycocotools ``segm`` (mask AP, AP50) and the mean
best mask IoU against the true masks (:func:`fabricnms.engine.masks.evaluate_masks`).

The *matched* column isolates mask quality from detection quality: only detections matched to
a true defect (same class, box IoU >= 0.5 with the defect's tight box; the best such defect,
so several detections may match one defect) count, and it is the mean IoU of their mask with
that defect's true mask.

The refinement time is measured per frame (median) and per detection (total / detections):
the refinement call batched over each frame's detections, plus the colour sampling of the
frame (:func:`~fabricnms.model.mask_infer.box_colours`) for the rows that use the image.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from fabricnms.data.coco import load_coco
from fabricnms.data.dataset import frames_from_coco, read_frame
from fabricnms.data.dataset_yaml import DataSpec, load_data_yaml
from fabricnms.engine.checkpoint import load_detector
from fabricnms.engine.eval_run import true_mask_ground_truth
from fabricnms.engine.evaluate import detections_to_coco, restrict_images
from fabricnms.engine.masks import evaluate_masks, filled_box_rle, mask_iou_matrix
from fabricnms.engine.tiling import TileSettings, detect_frames
from fabricnms.model.mask_head import paste_masks
from fabricnms.model.mask_infer import (
    DEFAULT_COLOUR_KAPPA,
    DEFAULT_COLOUR_SCALE,
    DEFAULT_EDGE_SIGMA,
    DEFAULT_LAMBDA_TV,
    DEFAULT_TV_SMOOTH,
    MaskSettings,
    box_colours,
    refine_detections,
    require_mask_branch,
)
from fabricnms.model.refine import DEFAULT_H0
from fabricnms.model.types import Detections

Results = list[dict]


@dataclass
class _Refined:
    """COCO results of the refined masks with one :class:`MaskSettings` and the refinement
    seconds per frame."""

    settings: MaskSettings
    results: Results = field(default_factory=list)
    frame_s: list[float] = field(default_factory=list)

    @property
    def name(self) -> str:
        s = self.settings
        edge = f"edge sigma {s.edge_sigma:g}" if s.edge_sigma > 0 else "plain TV"
        colour = f", colour kappa {s.colour_kappa:g}" if s.colour_kappa != 0 else ""
        tv = f", {edge}, delta {s.tv_smooth:g}" if s.lambda_tv > 0 else ""
        return f"(c) refined, lambda_tv {s.lambda_tv:g}{tv}{colour}"


def _with_masks(image_id: int, det: Detections, probs: torch.Tensor, h: int, w: int) -> Results:
    """COCO rows of ``det`` with the masks ``probs [K, S, S] > 0.5`` pasted into its boxes."""
    masked = Detections(det.boxes, det.scores, det.labels, paste_masks(probs, det.boxes, h, w))
    return detections_to_coco(image_id, masked)


def _detections(
    args: argparse.Namespace, spec: DataSpec, gt: dict
) -> Iterator[tuple[int, np.ndarray, Detections]]:
    """``(image_id, RGB frame [H, W, 3], detections with mask logits)`` per evaluated frame."""
    model, _ = load_detector(args.weights, "cpu")
    require_mask_branch(model, args.weights)
    frames = frames_from_coco(gt, spec.image_root, spec.nc)[: args.max_frames or None]
    settings = TileSettings(
        tile=args.tile,
        overlap=args.overlap,
        nms=args.nms,
        conf=args.conf,
        masks=MaskSettings(lambda_tv=0.0, colour_kappa=0.0),  # only the logits are used
    )
    images = (read_frame(f) for f in frames)
    for frame, det in zip(frames, detect_frames(model, images, settings), strict=True):
        yield frame.image_id, read_frame(frame), det


def _settings(args: argparse.Namespace) -> list[MaskSettings]:
    """One :class:`MaskSettings` per combination of the swept flags (``lambda_tv = 0`` rows
    ignore ``--tv-smooth`` and ``--edge-sigma``: there is no TV)."""
    combos = itertools.product(args.lambda_tv, args.tv_smooth, args.edge_sigma, args.colour_kappa)
    out: list[MaskSettings] = []
    for lam, smooth, sigma, kappa in combos:
        s = MaskSettings(
            h0=args.h0,
            lambda_tv=lam,
            iters=args.iters,
            tv_smooth=smooth if lam > 0 else DEFAULT_TV_SMOOTH,
            edge_sigma=sigma if lam > 0 else 0.0,
            colour_kappa=kappa,
            colour_scale=args.colour_scale,
        )
        if s not in out:
            out.append(s)
    return out


def matched_mask_iou(
    segm_gt: dict, methods: dict[str, Results], min_box_iou: float = 0.5
) -> tuple[int, dict[str, float]]:
    """Mean mask IoU of each method over the detections matched to a true defect.

    ``methods`` maps a name to COCO result rows of the SAME detections in the same order (only
    their ``segmentation`` differs). A detection matches the true mask of its image and class
    whose tight ``bbox`` has the highest box IoU with its ``bbox``, if that is ``>=
    min_box_iou``. Returns ``(matched detections, {name: mean IoU with the matched mask})``.
    """
    from pycocotools import mask as mask_utils

    truth: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for ann in segm_gt["annotations"]:
        truth[ann["image_id"], ann["category_id"]].append(ann)
    sums = dict.fromkeys(methods, 0.0)
    matched = 0
    rows = next(iter(methods.values()), [])
    for i, row in enumerate(rows):
        cands = truth.get((row["image_id"], row["category_id"]), [])
        if not cands:
            continue
        ious = mask_utils.iou([row["bbox"]], [a["bbox"] for a in cands], [0] * len(cands))[0]
        best = int(np.argmax(ious))
        if ious[best] < min_box_iou:
            continue
        matched += 1
        true_mask = [cands[best]["segmentation"]]
        for name, results in methods.items():
            sums[name] += float(mask_iou_matrix([results[i]["segmentation"]], true_mask)[0, 0])
    return matched, {name: total / max(matched, 1) for name, total in sums.items()}


def run(args: argparse.Namespace) -> None:
    """Detect, build the three kinds of masks, print the table."""
    spec = load_data_yaml(args.data)
    gt = load_coco(spec.split_path(args.split))
    raw: Results = []
    boxes: Results = []
    refined = [_Refined(s) for s in _settings(args)]
    frames = detections = 0
    evaluated: set[int] = set()
    for image_id, image, det in _detections(args, spec, gt):
        h, w = image.shape[:2]
        evaluated.add(image_id)
        frames += 1
        detections += len(det)
        logits = det.extra["mask_logits"]
        rows = _with_masks(image_id, det, torch.sigmoid(logits), h, w)
        raw += rows
        boxes += [{**r, "segmentation": filled_box_rle(r["bbox"], h, w)} for r in rows]
        start = time.perf_counter()
        colours = box_colours(image, det.boxes, logits.shape[-1]) if len(det) else None
        colour_s = time.perf_counter() - start
        for out in refined:
            start = time.perf_counter()
            probs = refine_detections(logits, colours, out.settings).probs if len(det) else logits
            extra = colour_s if out.settings.uses_image else 0.0
            out.frame_s.append(time.perf_counter() - start + extra)
            out.results += _with_masks(image_id, det, probs, h, w)
    print(
        f"{args.weights} on {args.data} ({args.split}): {frames} frames, {detections} "
        f"detections (nms {args.nms}, conf {args.conf}), h0 {args.h0}, {args.iters} iterations, "
        f"colour scale {args.colour_scale:g}"
    )
    segm_gt = restrict_images(true_mask_ground_truth(spec, gt), evaluated)
    base = evaluate_masks(segm_gt, raw)
    methods = {"box": boxes, "raw": raw} | {out.name: out.results for out in refined}
    matched, matched_iou = matched_mask_iou(segm_gt, methods)
    print(
        f"true masks: {base.num_true_masks}; box ceiling IoU {base.box_ceiling_iou:.3f}; "
        f"{matched} detections matched to a true defect (same class, box IoU >= 0.5)\n"
    )
    print(
        "| mask | mask AP | AP50 | mean mask IoU | matched mask IoU | refine ms/frame "
        "| refine ms/det |"
    )
    print("|---|---|---|---|---|---|---|")
    print(_row("(a) filled box", base.box_segm.stats, base.box_mean_best_iou, matched_iou["box"]))
    print(_row("(b) raw branch (p > 0.5)", base.segm.stats, base.mean_best_iou, matched_iou["raw"]))
    for out in refined:
        report = evaluate_masks(segm_gt, out.results)
        per_frame = 1000 * statistics.median(out.frame_s) if out.frame_s else 0.0
        per_det = 1000 * sum(out.frame_s) / max(detections, 1)
        times = f"{per_frame:.1f} | {per_det:.2f}"
        print(_row(out.name, report.segm.stats, report.mean_best_iou, matched_iou[out.name], times))


def _row(name: str, stats: list[float], iou: float, matched: float, times: str = "- | -") -> str:
    return f"| {name} | {stats[0]:.3f} | {stats[1]:.3f} | {iou:.3f} | {matched:.3f} | {times} |"


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
    sweeps = (
        ("--lambda-tv", DEFAULT_LAMBDA_TV, "TV weights (0 = the closed form)"),
        ("--tv-smooth", DEFAULT_TV_SMOOTH, "Charbonnier delta of the TV"),
        ("--edge-sigma", DEFAULT_EDGE_SIGMA, "Lab scale of the edge-aware TV (0 = plain TV)"),
        ("--colour-kappa", DEFAULT_COLOUR_KAPPA, "weights of the colour unary (0 = off)"),
    )
    for flag, default, text in sweeps:
        parser.add_argument(flag, type=float, nargs="+", default=[default], help=text)
    parser.add_argument("--colour-scale", type=float, default=DEFAULT_COLOUR_SCALE)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--max-frames", type=int, default=0, help="0 = every frame")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run(args)


if __name__ == "__main__":
    main()
