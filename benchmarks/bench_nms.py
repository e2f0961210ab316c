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

The ``opencv`` row is ``cv2.dnn.NMSBoxesBatched`` alone (best class per candidate, IoU 0.5,
no ``top_k``) on the same candidates: the floor any suppression is compared with, side by side
in the same process. ``--cache FILE`` (a cache of :mod:`benchmarks.ablation`) times instead the
real candidate sets of detector frames (about 3,000 per 2446 x 1000 frame): median and range
over the cached frames.

If ``fabricnms.model.detector.Detector`` is importable, the detector forward on one 1024 x 1024
image is timed too, for scale. Usage:
``python benchmarks/bench_nms.py [--repeats 20] [--o2o noisy] [--threads 1] [--cache C.pt]``.
On a machine shared with other jobs, use ``--threads 1``: OpenMP threads that wait for busy
cores make every small op 10-100x slower.
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
        ("opencv NMSBoxesBatched", "opencv", o2o, 100),
        ("greedy", "greedy", o2o, 100),
        ("greedy+merge", "greedy+merge", o2o, 100),
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

    torch.manual_seed(0)
    cands = [_candidates(n, o2o, side)]
    run = _runner(method, DifferentiableNMS(max_hyp=max_hyp))
    with torch.no_grad():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        dets = run(cands[0])
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            run(cands[0])
            times.append(time.perf_counter() - t0)
    return {
        "n": len(cands[0]),
        "ms": 1000 * statistics.median(times),
        "min_ms": 1000 * min(times),
        "peak_mb": peak_kb / 1024,
        "dets": dets,
    }


def _runner(method: str, dnms):
    """``candidates -> detection count`` for a method of ``suppress`` or ``"opencv"``."""
    import cv2
    import numpy as np

    from fabricnms.model.boxes import xyxy_to_xywh
    from fabricnms.model.postprocess import suppress

    def opencv(c) -> int:
        score, label = (c.scores_o2m * c.quality[:, None]).sqrt().max(dim=1)
        xywh = xyxy_to_xywh(c.boxes).double().numpy()
        keep = cv2.dnn.NMSBoxesBatched(
            xywh, score.numpy(), label.numpy().astype(np.int32), 0.001, 0.5
        )
        return len(keep)

    def other(c) -> int:
        return len(suppress([c], method=method, conf=0.001, dnms=dnms)[0])

    return opencv if method == "opencv" else other


def _real_frames(path: str, repeats: int) -> None:
    """Median (min-max) ms per real cached frame of each method, one process, side by side."""
    import torch

    from fabricnms.model.dnms import DifferentiableNMS
    from fabricnms.model.postprocess import Candidates

    blob = torch.load(path, weights_only=True)
    keys = ("scores_o2o", "scores_o2m", "quality", "embed")
    frames = [
        Candidates(boxes=r["boxes"], **{k: r[k].float() for k in keys}) for r in blob["cands"]
    ][: max(repeats, 5)]
    sizes = sorted(len(c) for c in frames)
    print(f"{path}: {len(frames)} real frames, N = {sizes[0]}-{sizes[-1]} candidates")
    for method in ("dnms", "opencv", "greedy", "greedy+merge"):
        run = _runner(method, DifferentiableNMS())
        times = []
        with torch.no_grad():
            run(frames[0])
            for c in frames:
                t0 = time.perf_counter()
                run(c)
                times.append(1000 * (time.perf_counter() - t0))
        med = statistics.median(times)
        print(f"{method:<28}{med:>10.2f} ms median ({min(times):.2f}-{max(times):.2f})")


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
    parser.add_argument("--cache", help="time real cached frames (benchmarks/ablation.py)")
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

    if args.cache:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
        _real_frames(args.cache, args.repeats)
        return
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
    for method in ("dnms", "opencv", "greedy"):
        cell = _run_cell(args, method, TINY_N, "untrained", 100, TINY)
        tiny.append(f"{method} {cell['ms']:.2f} ({cell['min_ms']:.2f}) ms, {cell['dets']} dets")
    print(f"tiny {TINY}x{TINY} frame, N={TINY_N}, untrained o2o: " + "; ".join(tiny))
    print(f"detector forward 1x3x1024x1024: {_detector_ms(args.repeats)}")


if __name__ == "__main__":
    main()
