"""Training and evaluation throughput on CPU (or the given device), on synthetic 2446x1000 frames.

Run: ``python benchmarks/bench_train.py [--frames 24] [--steps 6] [--model-width s]
[--tile 640] [--batch 8] [--workers 2] [--weights best.pt]``.

1. ``fabricnms synth`` + ``fabricnms convert`` write a small dataset into a temp folder.
2. Training: :func:`fabricnms.engine.train.train` with the given settings (validation off); the
   time of optimizer steps 1..N after the first gives windows/s at the training tile.
3. Evaluation: :func:`fabricnms.engine.evaluate.evaluate_frames` on the val frames (tile 1024,
   overlap 0.2, batch 4) for each postprocess, frames/s end to end (decode + tiles + model +
   suppression + metrics). ``--weights`` evaluates a trained checkpoint; otherwise the
   just-trained (nearly untrained) model is used, whose low scores make suppression cheaper
   than with a trained model (said in the output).
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from fabricnms.config import TrainConfig
from fabricnms.data.coco import load_coco
from fabricnms.data.dataset import frames_from_coco
from fabricnms.data.dataset_yaml import load_data_yaml
from fabricnms.engine.checkpoint import load_detector
from fabricnms.engine.evaluate import evaluate_frames
from fabricnms.engine.tiling import TileSettings
from fabricnms.engine.train import train


class _Enough(Exception):
    """Stops the benchmark run after the measured steps."""


def make_data(root: Path, frames: int) -> Path:
    """Synthetic release -> COCO; returns dataset.yaml."""
    cli = [sys.executable, "-m", "fabricnms", "--quiet"]
    subprocess.run(
        [*cli, "synth", str(root / "synth"), "--images", str(frames), "--seed", "0"], check=True
    )
    subprocess.run(
        [*cli, "convert", str(root / "synth"), str(root / "coco"), "--val-fraction", "0.25"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return root / "coco" / "dataset.yaml"


def bench_train(data: Path, args: argparse.Namespace, project: Path) -> tuple[float, float]:
    """Windows/s and seconds/step over steps 2..N."""
    stamps: list[float] = []

    def on_step(step: int) -> None:
        stamps.append(time.perf_counter())
        if step >= args.steps:
            raise _Enough

    cfg = TrainConfig(
        data=str(data),
        epochs=1000,
        batch=args.batch,
        tile=args.tile,
        workers=args.workers,
        device=args.device,
        model_width=args.model_width,
        val_interval=10**6,  # no validation between the timed steps
    )
    with contextlib.suppress(_Enough):
        train(cfg, project=project, name="bench", on_step=on_step)
    per_step = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
    return args.batch / per_step, per_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--tile", type=int, default=TrainConfig.tile)
    parser.add_argument("--batch", type=int, default=TrainConfig.batch)
    parser.add_argument("--workers", type=int, default=TrainConfig.workers)
    parser.add_argument("--model-width", default=TrainConfig.model_width)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--weights", type=Path, default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = make_data(root, args.frames)
        rate, per_step = bench_train(data, args, root / "runs")
        weights = args.weights or next((root / "runs" / "train").glob("*/weights/last.pt"), None)
        model, _meta = load_detector(weights, args.device)
        spec = load_data_yaml(data)
        gt = load_coco(spec.split_path("val"))
        frames = frames_from_coco(gt, spec.image_root, spec.nc)
        rows = []
        for nms in ("dnms", "greedy", "soft", "none"):
            settings = TileSettings(tile=1024, overlap=0.2, batch=4, nms=nms)
            start = time.perf_counter()
            report = evaluate_frames(model, frames, gt, spec.names, settings, device=args.device)
            seconds = time.perf_counter() - start
            rows.append((nms, len(frames) / seconds, len(report.results) / len(frames)))

    print(
        f"device {args.device}, torch threads {torch.get_num_threads()}, model {args.model_width}"
    )
    print(f"train: tile {args.tile}, batch {args.batch}, workers {args.workers}")
    print(f"{'measure':<34}{'value':>12}")
    print(f"{'train windows/s':<34}{rate:>12.2f}")
    print(f"{'train s/step':<34}{per_step:>12.2f}")
    source = "checkpoint" if args.weights else "untrained (few steps)"
    print(f"eval on {len(frames)} val frames 2446x1000, tile 1024, {source} weights")
    print(f"{'postprocess':<14}{'frames/s':>10}{'detections/frame':>20}")
    for nms, fps, per_frame in rows:
        print(f"{nms:<14}{fps:>10.2f}{per_frame:>20.1f}")


if __name__ == "__main__":
    main()
