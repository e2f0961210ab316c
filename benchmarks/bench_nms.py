"""Latency and peak memory of DNMS, greedy NMS and Soft-NMS on one image's candidates.

Candidates are realistic synthetic sets (:mod:`fabricnms.model.proposals`): clustered around
20 defects (30 % long thin lines) of 20 classes in a 2446 x 1000 frame, about 10 % clutter,
D = 32 embeddings, a trained-like one-to-one branch (``--o2o noisy`` for the hard case).

``dnms`` is what ``suppress`` runs at inference: the compiled fast path
(:mod:`fabricnms.model.dnms_fast`). ``dnms torch (forced)`` is the same ``suppress`` with the
DNMS forced onto its differentiable torch path (``DifferentiableNMS(compiled=False)``, the
training path), on the same candidates. The ``opencv`` row is
``cv2.dnn.NMSBoxesBatched`` alone (best class per candidate, IoU 0.5, no ``top_k``): the floor
any suppression is compared with.

The "many hypotheses" rows use an untrained one-to-one branch (every o2o score 0.1-0.5, as
from a random init or early in training), so the DNMS works at its hypothesis cap: ``K = 100``
(the default ``max_hyp``) and ``K = 300``. The "tiny" line is one 128 x 128 frame full of
candidates (3 defects, N = 126, untrained o2o), where every candidate overlaps most hypotheses
and per-op overhead dominates.

Latency: median and minimum wall time (ms) over ``--repeats`` runs after one warm-up, under
``torch.no_grad()``, the full ``suppress`` path of :mod:`fabricnms.model.postprocess`. All
methods of one table column run side by side in this one process, interleaved (run ``r`` of
every method, then run ``r + 1``), so that a shared machine's load hits them alike; the load
average is printed with the table. Peak memory (Linux): the peak resident set of one call over
the resident set before it (``VmHWM`` reset through ``/proc/self/clear_refs`` after
``malloc_trim``), in a fresh subprocess per cell after a warm-up call on 100 candidates (so
that loading torch's and the compiled kernels' code is not counted). (Torch's CPU allocator
bypasses ``tracemalloc``, and the profiler reports no CPU peak.)

``--cache FILE`` (a cache of :mod:`benchmarks.ablation`) times instead the real candidate sets
of detector frames (about 3,000 per 2446 x 1000 frame): median and range over the cached
frames, methods interleaved per frame.

If ``fabricnms.model.detector.Detector`` is importable, the detector forward on one 1024 x 1024
image is timed too, for scale. Usage:
``python benchmarks/bench_nms.py [--repeats 20] [--o2o noisy] [--threads 1] [--cache C.pt]``.
On a machine shared with other jobs, use ``--threads 1``: OpenMP threads that wait for busy
cores make every small torch op 10-100x slower (the compiled DNMS runs on one thread whatever
the setting, and its few torch ops are too small for torch to split).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SIZES = (100, 1000, 5000)
TINY = 128  # side of the "tiny" frame, px
TINY_N = 126
DNMS_TORCH = "dnms torch (forced)"


def _rows(o2o: str) -> list[tuple[str, str, str, int]]:
    """Table rows: (label, method, o2o flavour, DNMS max_hyp)."""
    return [
        ("dnms", "dnms", o2o, 100),
        (DNMS_TORCH, DNMS_TORCH, o2o, 100),
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


def _peak_mb(method: str, n: int, o2o: str, max_hyp: int, side: int) -> float:
    """Run in a fresh process: peak RSS growth (MB) of one call, after a warm-up call."""
    import ctypes

    import torch

    from fabricnms.model.dnms import DifferentiableNMS

    torch.manual_seed(0)
    run = _runner(method, DifferentiableNMS(max_hyp=max_hyp))
    with torch.no_grad():
        run(_candidates(100, o2o, side))
        cands = _candidates(n, o2o, side)
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # free heap back to the OS, then
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS to the current one
        before = _status_kb("VmRSS")
        run(cands)
        return (_status_kb("VmHWM") - before) / 1024


def _status_kb(key: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``: resident now, ``VmHWM``: peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def _interleaved(runs: list, inputs: list, repeats: int) -> list[list[float]]:
    """Times (ms) of ``runs[m](inputs[m])``, one warm-up each, then ``repeats`` rounds of all."""
    import torch

    times: list[list[float]] = [[] for _ in runs]
    with torch.no_grad():
        for run, arg in zip(runs, inputs, strict=True):
            run(arg)
        for _ in range(repeats):
            for m, (run, arg) in enumerate(zip(runs, inputs, strict=True)):
                t0 = time.perf_counter()
                run(arg)
                times[m].append(1000 * (time.perf_counter() - t0))
    return times


def _runner(method: str, dnms):
    """``candidates -> detection count`` for a method of ``suppress``, ``"opencv"`` or the
    DNMS forced onto its torch path."""
    import cv2
    import numpy as np

    from fabricnms.model.boxes import xyxy_to_xywh
    from fabricnms.model.postprocess import suppress

    if method == DNMS_TORCH:
        dnms, method = copy.copy(dnms), "dnms"
        dnms.compiled = False

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
    """Median (min-max) ms per real cached frame of each method, one process, interleaved."""
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
    methods = ("dnms", DNMS_TORCH, "opencv", "greedy", "greedy+merge")
    runs = [_runner(m, DifferentiableNMS()) for m in methods]
    times: list[list[float]] = [[] for _ in methods]
    for c in frames:
        for m, t in enumerate(_interleaved(runs, [c] * len(runs), 1)):
            times[m] += t
    for method, t in zip(methods, times, strict=True):
        med = statistics.median(t)
        print(f"{method:<28}{med:>10.2f} ms median ({min(t):.2f}-{max(t):.2f})")


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


def _peak_cell(args: argparse.Namespace, method: str, n: int, o2o: str, k: int) -> float:
    cmd = [sys.executable, __file__, "--cell", method, str(n), o2o, str(k), "0"]
    cmd += ["--threads", str(args.threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


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
        print(_peak_mb(method, int(n), o2o, int(k), int(side)))
        return

    import torch

    from fabricnms.model.dnms import DifferentiableNMS

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {load}")
    if args.cache:
        _real_frames(args.cache, args.repeats)
        return
    print(f"o2o={args.o2o}; latency: median (min) ms, no_grad, methods interleaved in one")
    print("process; peak: resident-set growth (VmHWM) of one call after a warm-up, MB")
    rows = _rows(args.o2o)
    cells: dict[tuple[str, int], str] = {}
    for n in SIZES:
        cands = {o2o: _candidates(n, o2o, 0) for o2o in {r[2] for r in rows}}
        runs = [_runner(method, DifferentiableNMS(max_hyp=k)) for _, method, _, k in rows]
        reps = args.repeats if n <= 1000 else max(3, args.repeats // 4)
        times = _interleaved(runs, [cands[r[2]] for r in rows], reps)
        for (label, method, o2o, k), t in zip(rows, times, strict=True):
            peak = _peak_cell(args, method, n, o2o, k)
            med = statistics.median(t)
            cells[label, n] = f"{med:>10.2f} ({min(t):.2f}) ms {peak:>6.1f} MB"
    print(f"{'method':<28}" + "".join(f"{'N=' + str(n):>30}" for n in SIZES))
    for label, *_ in rows:
        print(f"{label:<28}" + "".join(cells[label, n] for n in SIZES))
    methods = ("dnms", DNMS_TORCH, "opencv", "greedy")
    runs = [_runner(m, DifferentiableNMS()) for m in methods]
    tiny = _candidates(TINY_N, "untrained", TINY)
    parts = []
    for method, t, run in zip(
        methods, _interleaved(runs, [tiny] * 4, args.repeats), runs, strict=True
    ):
        with torch.no_grad():
            dets = run(tiny)
        parts.append(f"{method} {statistics.median(t):.2f} ({min(t):.2f}) ms, {dets} dets")
    print(f"tiny {TINY}x{TINY} frame, N={TINY_N}, untrained o2o: " + "; ".join(parts))
    print(f"detector forward 1x3x1024x1024: {_detector_ms(args.repeats)}")
    print(f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
