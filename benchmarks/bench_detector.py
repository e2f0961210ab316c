"""Detector size, FLOPs and CPU forward latency at the input sizes prediction uses.

Rows: the default model (strides 8/16/32), the same with a stride-4 level (for 15 px defects),
and the tiny test model (width 8). Sizes: one 1024 x 1024 tile and one padded 2464 x 1024
Tianchi frame (2446 x 1000 padded to multiples of 32). Latency: median and minimum wall time
(ms) of ``Detector.forward`` in eval mode under ``torch.inference_mode()`` over ``--repeats``
runs after one warm-up, batch 1, float32, at the given thread count (default: torch's).

Usage: ``python benchmarks/bench_detector.py [--repeats 5] [--threads N] [--json]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from fabricnms.model.detector import Detector

MODELS = {
    "default (8/16/32)": {},
    "default + stride 4": {"strides": (4, 8, 16, 32)},
    "tiny test (width 8)": {"width": 8, "neck_channels": 32},
}
SIZES = ((1024, 1024), (1024, 2464))  # (H, W)


def time_forward(model: Detector, h: int, w: int, repeats: int) -> tuple[float, float]:
    """Median and minimum forward time in ms for one ``[1, 3, h, w]`` image."""
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    times = []
    with torch.inference_mode():
        model(x)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="0 = torch default")
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print JSON rows instead")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    rows = []
    for name, kw in MODELS.items():
        torch.manual_seed(0)
        model = Detector(args.classes, **kw).eval()
        for h, w in SIZES:
            stats = model.complexity(h, w)
            med, best = time_forward(model, h, w, args.repeats)
            rows.append(
                {
                    "model": name,
                    "size": f"{w}x{h}",
                    "params": stats["params"],
                    "gflops": stats["flops"] / 1e9,
                    "median_ms": med,
                    "min_ms": best,
                }
            )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"threads={torch.get_num_threads()} repeats={args.repeats} torch={torch.__version__}")
    header = (
        f"{'model':<22}{'size WxH':>11}{'params':>11}{'GFLOPs':>9}{'median ms':>11}{'min ms':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['model']:<22}{r['size']:>11}{r['params']:>11,}{r['gflops']:>9.2f}"
            f"{r['median_ms']:>11.1f}{r['min_ms']:>9.1f}"
        )


if __name__ == "__main__":
    main()
