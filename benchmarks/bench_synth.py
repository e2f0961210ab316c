"""Throughput of ``fabricnms synth`` at the real frame size (2446 x 1000).

Times ``write_release`` (render + JPEG encode + write) on a small number of frames for each
worker count, then extrapolates to 1,000 frames. Goal: 1,000 frames in under 5 minutes with
2 workers on a 2-core machine. Besides wall time it reports the CPU seconds per frame (this
process plus its worker processes), and the wall time that CPU cost implies on idle cores
(``cpu_per_frame * 1000 / workers``), which stays meaningful on a shared, loaded machine.

With ``--contrast`` it also prints how visible each defect category is at each difficulty:
the mean absolute change (5x5 box-filtered, grey levels) over the defect's true mask, divided
by the std of the same filter on the defect-free twin frame (same seed, ``n_defects=0``).

    python benchmarks/bench_synth.py --frames 30 --workers 1 2 --contrast
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from fabricnms.data.classes import CATEGORIES
from fabricnms.data.synth import ReleaseOptions, render_frame, write_release

GOAL_S_PER_1000 = 300.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30, help="frames per timing run")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--size", default="2446x1000")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--contrast", action="store_true", help="also print defect visibility")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    table = Table(
        title=f"fabricnms synth, {width}x{height}, {args.frames} frames per run "
        "(s / 1000 frames extrapolated linearly)",
        title_justify="left",
    )
    columns = (
        "workers",
        "frames",
        "wall s",
        "frames/s",
        "wall s / 1000",
        "CPU s / frame",
        "idle-core s / 1000",
        "goal < 300 s",
    )
    for col in columns:
        table.add_column(col, justify="right")
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as tmp:
            opts = ReleaseOptions(n_images=args.frames, seed=args.seed, width=width, height=height)
            cpu0 = _cpu_seconds()
            start = time.perf_counter()
            write_release(Path(tmp) / "out", opts, workers=workers)
            seconds = time.perf_counter() - start
            cpu = (_cpu_seconds() - cpu0) / args.frames
        per_1000 = seconds / args.frames * 1000.0
        idle = cpu * 1000.0 / min(workers, os.cpu_count() or 1)
        table.add_row(
            str(workers),
            str(args.frames),
            f"{seconds:.1f}",
            f"{args.frames / seconds:.2f}",
            f"{per_1000:.0f}",
            f"{cpu:.3f}",
            f"{idle:.0f}",
            "yes" if min(per_1000, idle) < GOAL_S_PER_1000 else "no",
        )
    Console(width=120).print(table)
    print(f"load average before the last run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if args.contrast:
        Console(width=120).print(contrast_table(args.seed))


def _cpu_seconds() -> float:
    """User + system CPU time of this process and of its finished children."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def visibility(seed: int, category: int, level: str) -> float:
    """Filtered defect change over its mask / filtered background std (see module docstring)."""
    frame = render_frame(seed, 1200, 600, classes=[category], n_defects=1, difficulty=level)
    clean = render_frame(seed, 1200, 600, n_defects=0)
    a = frame.image.astype(np.float32).mean(-1)
    b = clean.image.astype(np.float32).mean(-1)
    change = cv2.blur(a - b, (5, 5))
    return float(np.abs(change[frame.defects[0].mask]).mean() / cv2.blur(b, (5, 5)).std())


def contrast_table(seed: int, samples: int = 4) -> Table:
    """Mean visibility per category and difficulty over ``samples`` frames."""
    levels = ("easy", "normal", "hard")
    table = Table(
        title=f"defect visibility (|change| / background std, mean of {samples} frames, 1200x600)",
        title_justify="left",
    )
    table.add_column("id", justify="right")
    table.add_column("category")
    for level in levels:
        table.add_column(level, justify="right")
    for cat in CATEGORIES:
        cells = [
            np.mean([visibility(seed + s, cat.id, level) for s in range(samples)])
            for level in levels
        ]
        table.add_row(str(cat.id), cat.name, *(f"{v:.2f}" for v in cells))
    return table


if __name__ == "__main__":
    main()
