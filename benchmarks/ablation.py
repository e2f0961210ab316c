"""Postprocess ablation over held-out seeds on cached candidates.

Step 1, ``cache``: run the detector once per frame of a converted synthetic split and save each
frame's dense candidates (all windows, frame pixels, before any suppression) to one file::

    python benchmarks/ablation.py cache DATA/dataset.yaml CACHE.pt [--weights W] [--split val]

Step 2, ``run``: every postprocess method runs on the caches. Each method's knobs (a small grid,
and the frame-accuracy threshold) are chosen on the selection cache only; the test caches are
then scored once with those choices, and mean +- std over the test seeds is printed::

    python benchmarks/ablation.py run --select CACHE_100.pt --test CACHE_101.pt CACHE_102.pt ...

Metrics: COCO AP and AP50, the Tianchi score (0.2 frame accuracy + 0.8 mAP), frame accuracy at
the method's operating threshold (chosen on the selection seed) and detections per frame.
Candidates are stored in float16 (boxes float32): every method reads the same numbers.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from fabricnms.config import load_data_yaml
from fabricnms.data.coco import load_coco
from fabricnms.data.dataset import frames_from_coco, read_frame
from fabricnms.engine.checkpoint import DEFAULT_WEIGHTS, load_detector
from fabricnms.engine.tiling import TileSettings, frame_candidates

_HALF = ("scores_o2o", "scores_o2m", "quality", "embed")


def cache(args: argparse.Namespace) -> None:
    """Detector once per frame; candidates of every frame (and the split's facts) to one file."""
    torch.set_num_threads(args.threads)
    spec = load_data_yaml(args.data)
    gt = load_coco(spec.split_path(args.split))
    frames = frames_from_coco(gt, spec.image_root, spec.nc)
    model, _ = load_detector(args.weights)
    start = time.perf_counter()
    rows = []
    images = (read_frame(f) for f in frames)
    for i, cand in enumerate(frame_candidates(model, images, TileSettings())):
        rows.append(
            {"boxes": cand.boxes.float().clone()}
            | {k: getattr(cand, k).half().clone() for k in _HALF}
        )
        if (i + 1) % 20 == 0:
            rate = (time.perf_counter() - start) / (i + 1)
            print(f"{i + 1}/{len(frames)} frames, {rate:.2f} s/frame", file=sys.stderr)
    sizes = [(int(f.width), int(f.height)) for f in frames]
    meta = {"data": str(spec.yaml_path), "split": args.split, "weights": str(args.weights)}
    tmp = Path(str(args.out) + ".tmp")
    torch.save({"meta": meta, "gt": gt, "sizes": sizes, "names": spec.names, "cands": rows}, tmp)
    tmp.replace(args.out)
    boxes = sum(len(f.labels) for f in frames)
    print(f"{args.out}: {len(frames)} frames, {boxes} boxes, {time.perf_counter() - start:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cache", help="run the detector once and cache candidates")
    c.add_argument("data", type=Path, help="dataset.yaml of a converted synthetic split")
    c.add_argument("out", type=Path, help="cache file to write (.pt)")
    c.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    c.add_argument("--split", default="val")
    c.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.cmd == "cache":
        cache(args)


if __name__ == "__main__":
    main()
