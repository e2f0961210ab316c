"""``predict`` on 2446x1000 frames, side by side: torch before / after the inference changes,
onnxruntime, 1 vs 2 threads; frames/s, the time split and memory.

Run: ``python benchmarks/bench_predict.py [--frames 20] [--rounds 3] [--weights best.pt]``.
Frames are JPEGs of a synthetic weave (a few distinct images hard-linked under ``--frames``
names, so every frame is decoded from disk). Settings are ``predict``'s defaults (tile 1024,
overlap 0.2, batch 4, conf 0.25, DNMS, overlays on for runs of at most 200 frames). Weights:
``--weights``, else the shipped model.

Variants (each a full ``run_predict`` over the same frames; the rounds interleave them so a
change of load on a shared machine hits all alike; the table gives each variant's median):

- ``torch before``: the checkpoint's detector as trained (batch norm layers, explicit input
  normalisation, the mask branch running on every tile), frames decoded in line;
- ``torch folded``: :func:`~fabricnms.model.fuse.inference_copy` (what ``predict`` runs),
  frames decoded in line; ``torch folded + read-ahead``: the default ``predict`` path;
  ``..., no edge search``: the same with ``--edge-band -1`` (what looking for the fabric's
  edge costs: :mod:`fabricnms.data.cloth`, in *postprocess*);
- ``onnxruntime``: the folded network exported with ``fabricnms export --dynamic``;

each with 1 and 2 threads. The load average before and after is printed: ratios measured in
one run are meaningful on a shared machine, absolute frames/s only on an idle one.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from fabricnms.config import EDGE_BAND
from fabricnms.engine.checkpoint import load_detector
from fabricnms.engine.predict import DEFAULT_WEIGHTS, PredictConfig, run_predict

H, W = 1000, 2446
STAGES = ("preprocess", "inference", "postprocess", "write")
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


def make_frames(folder: Path, count: int, seed: int = 0) -> Path:
    """``count`` frame files in ``folder/roll`` (hard links to a few distinct JPEGs)."""
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
    return roll


@dataclass
class Variant:
    """One way of running predict: ``weights`` loaded by predict, or an explicit ``model``."""

    name: str
    threads: int
    weights: str = ""
    model: Any = None
    prefetch: int = 1
    edge_band: int = EDGE_BAND


def run(variant: Variant, roll: Path, out: Path, names: list[str]) -> dict[str, Any]:
    cfg = PredictConfig(
        sources=[str(roll)],
        weights=variant.weights,
        device="cpu",
        conf=0.25,  # one threshold for every variant (an explicit model carries no operating point)
        threads=variant.threads,
        prefetch=variant.prefetch,
        edge_band=variant.edge_band,
    )
    given = {"model": variant.model, "class_names": names} if variant.model is not None else {}
    return run_predict(cfg, out=out, **given).summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    parser.add_argument("--no-onnx", action="store_true", help="skip the onnxruntime rows")
    args = parser.parse_args()

    torch.manual_seed(0)
    before_model, meta = load_detector(args.weights)
    names = list(meta["class_names"])
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        roll = make_frames(root, args.frames)
        variants = []
        for threads in (1, 2):
            variants += [
                Variant(f"torch before, {threads} thr", threads, model=before_model, prefetch=0),
                Variant(f"torch folded, {threads} thr", threads, args.weights, prefetch=0),
                Variant(f"torch folded + read-ahead, {threads} thr", threads, args.weights),
                Variant(f"..., no edge search, {threads} thr", threads, args.weights, edge_band=-1),
            ]
        if not args.no_onnx:
            from fabricnms.engine.export import export_model

            onnx = export_model(args.weights, root / "model.onnx", dynamic=True).model
            for threads in (1, 2):
                name = f"onnxruntime + read-ahead, {threads} thr"
                variants.append(Variant(name, threads, str(onnx)))
        results: dict[str, list[dict[str, Any]]] = {v.name: [] for v in variants}
        for r in range(args.rounds):
            for i, variant in enumerate(variants):
                summary = run(variant, roll, root / f"out_{r}_{i}", names)
                results[variant.name].append(summary)
        load_end = os.getloadavg()

    print(f"weights {args.weights}; {args.frames} frames {W}x{H} per run, {args.rounds} rounds")
    print("predict defaults: tile 1024, overlap 0.2, batch 4, nms dnms, conf 0.25, overlays on")
    print(
        f"load average (1/5/15 min) before {load_start[0]:.1f}/{load_start[1]:.1f}/"
        f"{load_start[2]:.1f}, after {load_end[0]:.1f}/{load_end[1]:.1f}/{load_end[2]:.1f} "
        f"on {os.cpu_count()} cores"
    )
    print()
    print(
        "| variant | frames/s (median) | x torch before | preprocess | inference | "
        "postprocess | write ms/frame | detections |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    base: dict[int, float] = {}
    for variant in variants:
        runs = results[variant.name]
        fps = statistics.median(s["frames_per_second"] for s in runs)
        base.setdefault(variant.threads, fps)
        ms = {k: statistics.median(s["ms_per_frame"][k] for s in runs) for k in STAGES}
        dets = sorted({s["detections"] for s in runs})
        print(
            f"| {variant.name} | {fps:.2f} | {fps / base[variant.threads]:.2f} | "
            f"{ms['preprocess']:.0f} | {ms['inference']:.0f} | {ms['postprocess']:.0f} | "
            f"{ms['write']:.0f} | {'/'.join(map(str, dets))} |"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS of the whole benchmark: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
