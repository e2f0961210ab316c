"""Mask path cost per frame: assemble (prototypes -> box grids), refine, paste + RLE.

Run: ``python benchmarks/bench_refine.py [--device cpu|cuda] [--repeats 5] [--threads N]``.
A 2446x1000 frame with K detections of mixed sizes (15-400 px sides, a few long thin ones),
stride-4 prototypes (8 x 250 x 612), noisy disk-shaped logits on S x S grids. Prints the
median wall time per frame and per detection for each (K, S, lambda_tv, TV weights: plain or
contrast-sensitive from a random colour grid, whose weight computation is included), the mean
number of Frank-Wolfe steps, and the time to paste the masks back and encode them as COCO RLE.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch

from fabricnms.model.mask_head import assemble_masks, paste_masks
from fabricnms.model.refine import RefineResult, refine_masks
from fabricnms.model.refine_ops import contrast_weights

H, W = 1000, 2446


def random_boxes(k: int, gen: torch.Generator) -> torch.Tensor:
    """``[K, 4]`` xyxy frame boxes: mostly 15-400 px, every fifth a long thin line."""
    wh = 15 + torch.rand(k, 2, generator=gen) * 385
    wh[::5] = torch.tensor([30.0, 900.0])
    xy = torch.rand(k, 2, generator=gen) * (torch.tensor([W, H]) - wh)
    return torch.cat([xy, xy + wh], 1)


def noisy_disks(k: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """``[K, S, S]`` logits: +-3 inside / outside an ellipse filling the grid, plus N(0, 2)."""
    c = (torch.arange(size) + 0.5) / size * 2 - 1
    inside = (c[None, :] ** 2 + c[:, None] ** 2 <= 0.8).float()
    return inside * 6 - 3 + torch.randn(k, size, size, generator=gen) * 2


def timed(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    """Median seconds of ``fn`` over ``repeats`` runs after one warm-up."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    gen = torch.Generator().manual_seed(0)
    protos = torch.randn(8, H // 4, (W + 3) // 4, generator=gen).to(device)

    print(f"device {device}, torch threads {torch.get_num_threads()}, frame {W}x{H}")
    header = (
        f"{'K':>4} {'S':>4} {'lambda':>6} {'TV':>5} {'assemble ms':>11} {'refine ms':>10} "
        f"{'ms/det':>7} {'FW steps':>8} {'paste+RLE ms':>12}"
    )
    print(header)
    print("-" * len(header))
    with torch.no_grad():
        for k in (10, 50):
            boxes = random_boxes(k, gen).to(device)
            coeffs = (torch.rand(k, 8, generator=gen) * 2 - 1).to(device)
            for size in (28, 56):
                logits = noisy_disks(k, size, gen).to(device)
                assemble = partial(assemble_masks, protos, coeffs, boxes, 4, size)
                t_asm = timed(assemble, args.repeats, sync)
                colours = torch.randn(k, 3, size, size, generator=gen).to(device) * 10
                for lam, edge in ((0.0, False), (0.5, False), (0.5, True)):
                    refine = partial(_refine, logits, colours if edge else None, lam)
                    t_ref = timed(refine, args.repeats, sync)
                    res = refine()
                    steps = float(res.iterations.float().mean())
                    t_paste = timed(partial(_paste_rle, res.probs, boxes), args.repeats, sync)
                    print(
                        f"{k:>4} {size:>4} {lam:>6.2f} {'edge' if edge else 'plain':>5} "
                        f"{t_asm * 1e3:>11.2f} {t_ref * 1e3:>10.2f} "
                        f"{t_ref * 1e3 / k:>7.3f} {steps:>8.1f} {t_paste * 1e3:>12.2f}"
                    )


def _refine(logits: torch.Tensor, colours: torch.Tensor | None, lam: float) -> RefineResult:
    """Refine ``[K, S, S]`` logits, with TV weights from ``colours [K, 3, S, S]`` if given."""
    weights = None if colours is None else contrast_weights(colours, 10.0)
    return refine_masks(logits, None, 0.1, lam, 20, edge_weights=weights)


def _paste_rle(probs: torch.Tensor, boxes: torch.Tensor) -> list[dict]:
    return paste_masks(probs, boxes, H, W).to_rle()


if __name__ == "__main__":
    main()
