"""``predict`` on 2446x1000 frames: frames/s, the time split and memory over a long run.

Run: ``python benchmarks/bench_predict.py [--frames 1000] [--weights best.pt]``. Frames are
JPEGs of a synthetic weave (a few distinct images hard-linked under ``--frames`` names, so
every frame is decoded from disk). Settings are ``predict``'s defaults (tile 1024, overlap 0.2,
batch 4, conf 0.25, DNMS; overlays only for runs of at most 200 frames, as in ``predict``).
Weights: ``--weights``, else the shipped model, else a random-init default-size detector (said
in the output: its scores sit near the 0.01 prior, so the postprocess sees candidates but
almost no hypotheses and is faster than with a trained model).

Prints the per-frame preprocess / inference / postprocess / write milliseconds, end-to-end
frames/s and the resident memory after 10 %, 50 % and 100 % of the frames (flat = streaming).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

from fabricnms.data.classes import class_names
from fabricnms.engine.predict import DEFAULT_WEIGHTS, FrameEvent, PredictConfig, run_predict
from fabricnms.model.detector import Detector

H, W = 1000, 2446
DISTINCT = 8


def fabric(rng: np.random.Generator) -> np.ndarray:
    """A grey plain weave with noise and a few dark warp/weft streaks (BGR uint8)."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    base = rng.uniform(110, 150)
    img = base + 14 * np.sin(2 * np.pi * xx / 5.0) * np.sin(2 * np.pi * yy / 6.0)
    img += rng.normal(0, 5, (H, W))
    for _ in range(int(rng.integers(0, 4))):
        if rng.random() < 0.5:
            x = int(rng.integers(0, W - 6))
            img[:, x : x + int(rng.integers(2, 6))] -= 50
        else:
            y = int(rng.integers(0, H - 6))
            img[y : y + int(rng.integers(2, 6)), :] -= 40
    grey = np.clip(img, 0, 255).astype(np.uint8)
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)


def make_frames(folder: Path, count: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    sources = []
    for i in range(min(DISTINCT, count)):
        path = folder / f"src_{i}.jpg"
        cv2.imwrite(str(path), fabric(rng), [cv2.IMWRITE_JPEG_QUALITY, 92])
        sources.append(path)
    roll = folder / "roll"
    roll.mkdir()
    for i in range(count):
        os.link(sources[i % len(sources)], roll / f"frame_{i + 1:05d}.jpg")


def rss_mib() -> float:
    """Current resident set size (Linux)."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--weights", default="")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = None
    names = None
    weights = args.weights or (str(DEFAULT_WEIGHTS) if DEFAULT_WEIGHTS.is_file() else "")
    if weights:
        label = f"weights {weights}"
    else:
        names = class_names(20)
        model = Detector(num_classes=len(names)).eval()
        label = "random-init default-size Detector (no trained weights found)"
    memory: dict[int, float] = {}
    marks = {max(1, args.frames // 10), max(1, args.frames // 2), args.frames}

    def on_frame(event: FrameEvent) -> None:
        if event.index in marks:
            memory[event.index] = rss_mib()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_frames(root, args.frames)
        before = rss_mib()
        cfg = PredictConfig(sources=[str(root / "roll")], weights=weights, device=args.device)
        if model is not None:
            model.to("cuda" if args.device == "cuda" else "cpu")
        result = run_predict(
            cfg,
            out=root / "out",
            on_frame=on_frame,
            model=model,
            class_names=names,
        )
    s = result.summary
    ms = s["ms_per_frame"]
    print(f"model: {label}; device {s['device']}; torch threads {torch.get_num_threads()}")
    print(f"{args.frames} frames {W}x{H}, tile 1024, overlap 0.2, batch 4, nms dnms, conf 0.25")
    print()
    print("| stage | ms / frame |")
    print("|---|---:|")
    for key in ("preprocess", "inference", "postprocess", "write"):
        print(f"| {key} | {ms[key]:.1f} |")
    print(f"| end to end | {1000 * s['seconds'] / max(s['processed'], 1):.1f} |")
    print()
    print(f"frames/s end to end: {s['frames_per_second']:.3f}; detections: {s['detections']}")
    print("| after frames | RSS MiB |")
    print("|---:|---:|")
    print(f"| 0 (model built, frames written) | {before:.0f} |")
    for index in sorted(memory):
        print(f"| {index} | {memory[index]:.0f} |")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
