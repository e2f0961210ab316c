"""Time of ``fabricnms adapt`` on clean full-size frames with the default budget.

Run (nothing is written into the repository; about 10 minutes at the defaults)::

    python benchmarks/bench_adapt.py [--frames 10] [--minutes 10] [--fabrics tianchi] \\
        [--seed 0] [--threads 2] [--work DIR]

1. ``fabricnms synth --normal-fraction 1`` writes ``--frames`` defect-free 2446x1000 frames;
2. :func:`fabricnms.engine.adapt.run_adapt` adapts the shipped model to them with the default
   settings (``--minutes`` budget);
3. one table row: frames, frame-areas read, window, epochs, the whole run's wall time against
   the budget, and its parts: training epochs (``metrics.csv``) and the rest (reading, rendering
   the windows, averaging, calibrating on the held-out parts, the self-check), and the adapted
   model's operating point and self-check (the share of defects painted into held-out windows
   it finds there: on the generator's own fabric, the reference for real fabric).

The issue's goal: up to 10 clean frames within 10 minutes on the 2-core CPU. Run it with
nothing else on the cores and say the load the figure was taken under.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from fabricnms.engine.adapt import AdaptConfig, run_adapt
from fabricnms.engine.operating_point import FRAME_AREA_PX


def clean_frames(out: Path, frames: int, fabrics: str, seed: int) -> Path:
    """``frames`` defect-free synthetic frames in ``out``; returns their folder."""
    subprocess.run(
        [
            sys.executable, "-m", "fabricnms", "synth", str(out), "--images", str(frames),
            "--normal-fraction", "1", "--fabrics", fabrics, "--seed", str(seed), "--workers", "2",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return out / "normal_Images"


def epoch_seconds(run_dir: Path) -> float:
    """Sum of the epochs' ``time_s`` in the run's ``metrics.csv``."""
    with (run_dir / "metrics.csv").open(newline="") as fh:
        return sum(float(row["time_s"]) for row in csv.DictReader(fh))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--minutes", type=float, default=10.0, help="adapt's time budget")
    parser.add_argument("--fabrics", default="tianchi", choices=["tianchi", "mixed"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: temp)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        source = clean_frames(work / "clean", args.frames, args.fabrics, args.seed)
        start = time.perf_counter()
        result = run_adapt(
            AdaptConfig(sources=[str(source)], minutes=args.minutes, seed=args.seed),
            project=work / "runs",
            name="bench",
        )
        wall = (time.perf_counter() - start) / 60
        s = result.summary
        area = sum(w * h for w, h in s["frame_sizes"]) / FRAME_AREA_PX
        train_min = epoch_seconds(result.run_dir) / 60
    point = s["operating_point"]
    print(
        "| frames | frame-areas | window | epochs | wall min (budget) | epochs min | rest min "
        "| conf | self-check |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {len(s['frame_sizes'])} of {args.frames} | {area:.2f} | {s['window']} | "
        f"{s['epochs']} | {wall:.2f} ({args.minutes:g}) | {train_min:.2f} | "
        f"{wall - train_min:.2f} | {point['conf']:g} | {point['painted_recall']:.0%} of "
        f"{point['painted_defects']} |"
    )
    return 0 if wall <= args.minutes else 1


if __name__ == "__main__":
    raise SystemExit(main())
