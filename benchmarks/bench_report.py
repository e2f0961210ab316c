"""Writers and roll report at roll scale: time per frame and memory while streaming.

Run: ``python benchmarks/bench_report.py [--frames 10000]``. Frames are 2446x1000 with
0-5 random detections each (no image files: thumbnails are off). Prints a table: wall time,
per-frame cost and the process's peak resident memory after each phase; the journal phase
must stay flat between 10 % and 100 % of the frames.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch

from fabricnms.data.classes import class_names
from fabricnms.engine.writers import ResultWriter
from fabricnms.model.types import Detections
from fabricnms.report.calibration import Calibration
from fabricnms.report.roll import build_roll_report
from fabricnms.report.roll_files import write_roll_report

H, W = 1000, 2446


def random_detections(gen: torch.Generator) -> Detections:
    k = int(torch.randint(0, 6, (1,), generator=gen))
    xy = torch.rand(k, 2, generator=gen) * torch.tensor([W - 200.0, H - 200.0])
    wh = 15 + torch.rand(k, 2, generator=gen) * 180
    return Detections(
        boxes=torch.cat([xy, xy + wh], 1),
        scores=torch.rand(k, generator=gen),
        labels=torch.randint(0, 20, (k,), generator=gen),
    )


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(n_frames: int) -> list[tuple[str, float, float, float]]:
    names = class_names(20)
    gen = torch.Generator().manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        t0 = time.perf_counter()
        with ResultWriter(out, names, calibration=Calibration()) as writer:
            checkpoints = {n_frames // 10, n_frames}
            for i in range(1, n_frames + 1):
                writer.add(f"/roll/frame{i}.jpg", W, H, random_detections(gen))
                if i in checkpoints:
                    peak = peak_rss_mib()
                    dt = time.perf_counter() - t0
                    rows.append((f"journal {i} frames", dt, dt / i * 1e3, peak))
            t1 = time.perf_counter()
            writer.finalize()
            dt = time.perf_counter() - t1
            peak = peak_rss_mib()
            rows.append(("finalize (coco+tianchi+csv)", dt, dt / n_frames * 1e3, peak))
            t2 = time.perf_counter()
            records = [rec for _, rec in writer.records()]
            report = build_roll_report(records, names)
            write_roll_report(report, out, thumbnails=False)
            dt = time.perf_counter() - t2
            peak = peak_rss_mib()
            rows.append(("roll report (json+html)", dt, dt / n_frames * 1e3, peak))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=10_000)
    args = parser.parse_args()
    print(f"{'phase':32s} {'wall s':>8s} {'ms/frame':>9s} {'peak RSS MiB':>13s}")
    for name, wall, per_frame, peak in run(args.frames):
        print(f"{name:32s} {wall:8.2f} {per_frame:9.3f} {peak:13.1f}")


if __name__ == "__main__":
    main()
