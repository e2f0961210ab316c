"""Latency and peak memory of DNMS, greedy NMS and Soft-NMS on one image's candidates.

Candidates are realistic synthetic sets (:mod:`fabricnms.model.proposals`): clustered around
20 defects (30 % long thin lines) of 20 classes in a 2446 x 1000 frame, about 10 % clutter,
D = 32 embeddings, a trained-like one-to-one branch (``--o2o noisy`` for the hard case).

The "many hypotheses" rows use an untrained one-to-one branch (every o2o score 0.1-0.5, as
from a random init or early in training), so the DNMS works at its hypothesis cap: ``K = 100``
(the default ``max_hyp``) and ``K = 300``. The "tiny" line is one 128 x 128 frame full of
candidates (3 defects, N = 126, untrained o2o), where every candidate overlaps most hypotheses
and per-op overhead dominates.

Latency: median and minimum wall time (ms) over ``--repeats`` runs after one warm-up, under
``torch.no_grad()``, the full ``suppress`` path of :mod:`fabricnms.model.postprocess`.
Peak memory: growth of the process's peak resident set (``ru_maxrss``) during the first
(warm-up) run, measured in a fresh subprocess per cell so earlier cells do not mask it. (Torch's
CPU allocator bypasses ``tracemalloc``, and the profiler reports no CPU peak.)

If ``fabricnms.model.detector.Detector`` is importable, the detector forward on one 1024 x 1024
image is timed too, for scale. Usage:
``python benchmarks/bench_nms.py [--repeats 20] [--o2o noisy] [--threads 1]``. On a machine
shared with other jobs, use ``--threads 1``: OpenMP threads that wait for busy cores make every
small op 10-100x slower.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

SIZES = (100, 1000, 5000)
TINY = 128  # side of the "tiny" frame, px
TINY_N = 126


def _rows(o2o: str) -> list[tuple[str, str, str, int]]:
    """Table rows: (label, method, o2o flavour, DNMS max_hyp)."""
    return [
        ("dnms", "dnms", o2o, 100),
        ("greedy", "greedy", o2o, 100),
        ("soft", "soft", o2o, 100),
        ("dnms many hypotheses K<=100", "dnms", "untrained", 100),
        ("dnms many hypotheses K<=300", "dnms", "untrained", 300),
    ]


def _candidates(n: int, o2o: str, side: int):
    """``n`` candidates in a 2446 x 1000 frame (20 defects), or a ``side``-px square (3)."""
    import torch

    from fabricnms.model.postprocess import Candidates
    from fabricnms.model.proposals import random_defects, simulate

    gen = torch.Generator().manual_seed(n)
    width, height = (2446, 1000) if side == 0 else (side, side)
    num = 20 if side == 0 else 3
    lines = 0.3 if side == 0 else 0.0
    gt_boxes, gt_labels = random_defects(num, 20, gen, width, height, line_fraction=lines)
    clutter = n // 10
    per_object = (n - clutter) // num
    ps = simulate(
        gt_boxes,
        gt_labels,
        20,
        gen,
        per_object=per_object,
        clutter=clutter,
        o2o=o2o,
        width=width,
        height=height,
    )
    return Candidates(ps.boxes, ps.scores_o2o, ps.scores_o2m, ps.quality, ps.embed)


def _cell(method: str, n: int, o2o: str, max_hyp: int, side: int, repeats: int) -> dict:
    """Run in a fresh process: peak RSS growth of the first call, then median latency."""
    import torch

    from fabricnms.model.dnms import DifferentiableNMS
    from fabricnms.model.postprocess import suppress

    torch.manual_seed(0)
    cands = [_candidates(n, o2o, side)]
    dnms = DifferentiableNMS(max_hyp=max_hyp)
    with torch.no_grad():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        dets = suppress(cands, method=method, conf=0.001, dnms=dnms)
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            suppress(cands, method=method, conf=0.001, dnms=dnms)
            times.append(time.perf_counter() - t0)
    return {
        "n": len(cands[0]),
        "ms": 1000 * statistics.median(times),
        "min_ms": 1000 * min(times),
        "peak_mb": peak_kb / 1024,
        "dets": len(dets[0]),
    }


def _detector_ms(repeats: int) -> str:
    try:
        from fabricnms.model.detector import Detector
    except ImportError:
        return "n/a"
    import torch

    model = Detector(num_classes=20).eval()
    x = torch.rand(1, 3, 1024, 1024)
    with torch.no_grad():
        model(x)
        times = []
        for _ in range(max(3, repeats // 5)):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return f"{1000 * statistics.median(times):.1f} ms"


def _run_cell(args: argparse.Namespace, method: str, n: int, o2o: str, k: int, side: int) -> dict:
    reps = args.repeats if n <= 1000 else max(3, args.repeats // 4)
    cmd = [sys.executable, __file__, "--cell", method, str(n), o2o, str(k), str(side)]
    cmd += ["--repeats", str(reps), "--threads", str(args.threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--o2o", choices=("trained", "noisy"), default="trained")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)"
    )
    parser.add_argument("--cell", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.cell:
        method, n, o2o, k, side = args.cell
        print(json.dumps(_cell(method, int(n), o2o, int(k), int(side), args.repeats)))
        return

    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, o2o={args.o2o}")
    print("latency: median (min) ms, no_grad; peak: ru_maxrss growth of the first call, MB")
    print(f"{'method':<28}" + "".join(f"{'N=' + str(n):>30}" for n in SIZES))
    for label, method, o2o, k in _rows(args.o2o):
        row = f"{label:<28}"
        for n in SIZES:
            cell = _run_cell(args, method, n, o2o, k, 0)
            row += f"{cell['ms']:>10.2f} ({cell['min_ms']:.2f}) ms {cell['peak_mb']:>6.1f} MB"
        print(row)
    tiny = []
    for method in ("dnms", "greedy"):
        cell = _run_cell(args, method, TINY_N, "untrained", 100, TINY)
        tiny.append(f"{method} {cell['ms']:.2f} ({cell['min_ms']:.2f}) ms, {cell['dets']} dets")
    print(f"tiny {TINY}x{TINY} frame, N={TINY_N}, untrained o2o: " + "; ".join(tiny))
    print(f"detector forward 1x3x1024x1024: {_detector_ms(args.repeats)}")


if __name__ == "__main__":
    main()
