"""Postprocess ablation over held-out seeds on cached candidates.

Step 1, ``cache``: run the detector once per frame of a converted synthetic split and save each
frame's dense candidates (all windows, frame pixels, before any suppression) to one file::

    python benchmarks/ablation.py cache DATA/dataset.yaml CACHE.pt [--weights W] [--split val]

Step 2, ``run``: every postprocess method runs on the caches. Each method's knobs (a small grid,
and the frame-accuracy threshold) are chosen on the selection cache only; the test caches are
then scored once with those choices (saved to ``--choices`` and reused when it exists), and
mean +- std over the test seeds is printed::

    python benchmarks/ablation.py run --select CACHE_100.pt --choices CHOICES.json \\
        --test CACHE_101.pt CACHE_102.pt ...

Detectors trained with different seeds (e.g. the ``--detach-plan`` ablation): cache each on the
same test seeds, ``run --out`` each with the same choices, then ``table --per-run A.json B.json
...`` gives mean +- std over the detectors (each averaged over its test seeds).

Metrics: COCO AP and AP50, the Tianchi score (0.2 frame accuracy + 0.8 mAP), frame accuracy at
the method's operating threshold (chosen on the selection seed) and detections per frame.
Candidates are stored in float16 (boxes float32): every method reads the same numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fabricnms.data.coco import load_coco
from fabricnms.data.dataset import frames_from_coco, read_frame
from fabricnms.data.dataset_yaml import load_data_yaml
from fabricnms.engine.checkpoint import DEFAULT_WEIGHTS, load_detector
from fabricnms.engine.evaluate import score_detections
from fabricnms.engine.tiling import TileSettings, clip_detections, frame_candidates
from fabricnms.model.dnms import DifferentiableNMS
from fabricnms.model.nms import NmsSettings
from fabricnms.model.postprocess import Candidates, suppress

_HALF = ("scores_o2o", "scores_o2m", "quality", "embed")


def cache(args: argparse.Namespace) -> None:
    """Detector once per frame; candidates of every frame (and the split's facts) to one file."""
    torch.set_num_threads(args.threads)
    spec = load_data_yaml(args.data)
    gt = load_coco(spec.split_path(args.split))
    frames = frames_from_coco(gt, spec.image_root, spec.nc)
    if args.frames:
        frames = frames[: args.frames]
        keep = {f.image_id for f in frames}
        gt = {**gt, "images": [i for i in gt["images"] if i["id"] in keep]}
        gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in keep]
    model, _ = load_detector(args.weights)
    start = time.perf_counter()
    rows = []
    images = (read_frame(f) for f in frames)
    for i, cand in enumerate(frame_candidates(model, images, TileSettings())):
        rows.append(
            {"boxes": cand.boxes.float().clone()}
            | {k: getattr(cand, k).half().clone() for k in _HALF}
        )
        if (i + 1) % 20 == 0:
            rate = (time.perf_counter() - start) / (i + 1)
            print(f"{i + 1}/{len(frames)} frames, {rate:.2f} s/frame", file=sys.stderr)
    sizes = [(int(f.width), int(f.height)) for f in frames]
    meta = {"data": str(spec.yaml_path), "split": args.split, "weights": str(args.weights)}
    tmp = Path(str(args.out) + ".tmp")
    torch.save({"meta": meta, "gt": gt, "sizes": sizes, "names": spec.names, "cands": rows}, tmp)
    tmp.replace(args.out)
    boxes = sum(len(f.labels) for f in frames)
    print(f"{args.out}: {len(frames)} frames, {boxes} boxes, {time.perf_counter() - start:.0f} s")


@dataclass(frozen=True)
class Method:
    """A postprocess and the knob settings tried on the selection seed (a short list, not a
    full grid: every setting costs one pass over the selection frames on a shared CPU)."""

    name: str
    configs: tuple[dict[str, Any], ...] = ({},)


_GREEDY = (
    {"iou": 0.5, "top_classes": 1},
    {"iou": 0.5, "top_classes": 3},
    {"iou": 0.5, "top_classes": 3, "vote_iou": 0.6},
    {"iou": 0.6, "top_classes": 3, "vote_iou": 0.6},
    {"iou": 0.5, "top_classes": 1, "vote_iou": 0.6},
    {"iou": 0.5, "top_classes": 1, "agnostic": True},
)
_SOFT = ({"top_classes": 1}, {"top_classes": 3})
METHODS = (
    Method("none"),
    Method("greedy", _GREEDY),
    Method("soft", _SOFT),
    Method("greedy+merge", _GREEDY[1:5]),
    Method("soft+merge", _SOFT),
    Method("dnms-no-merge", ({"match_cost": 1.5}, {"match_cost": 2.0})),
    Method(
        "dnms",
        ({"match_cost": 1.5}, {"match_cost": 2.0}, {"match_cost": 2.0, "top_classes": 3}),
    ),
)
_DNMS_KNOBS = ("match_cost", "dup_overlap")


@dataclass
class Cache:
    """One seed's cached candidates, ground truth and frame records."""

    path: Path
    frames: list[Any]
    gt: dict[str, Any]
    names: list[str]
    sizes: list[tuple[int, int]]
    cands: list[Candidates]

    @classmethod
    def load(cls, path: Path) -> Cache:
        blob = torch.load(path, weights_only=True)
        frames = frames_from_coco(blob["gt"], Path("."), len(blob["names"]))
        cands = [
            Candidates(boxes=r["boxes"], **{k: r[k].float() for k in _HALF}) for r in blob["cands"]
        ]
        return cls(path, frames, blob["gt"], blob["names"], blob["sizes"], cands)


def detect(cache: Cache, method: str, knobs: dict[str, Any]) -> list[Any]:
    """Detections of every cached frame (conf 0.001, the 100 best per frame as COCO AP counts
    them, clipped to the frame)."""
    dnms_kw = {k: v for k, v in knobs.items() if k in _DNMS_KNOBS}
    nms_kw = {k: v for k, v in knobs.items() if k not in _DNMS_KNOBS}
    dnms = DifferentiableNMS(**dnms_kw) if method.startswith("dnms") else None
    settings = NmsSettings(**nms_kw)
    out = []
    with torch.inference_mode():
        for cand, (w, h) in zip(cache.cands, cache.sizes, strict=True):
            det = suppress([cand], method, 0.001, 100, dnms=dnms, nms=settings)[0]
            out.append(clip_detections(det, w, h))
    return out


def best_threshold(cache: Cache, dets: list[Any]) -> float:
    """The score threshold with the best frame accuracy (defective = a detection >= it)."""
    top = np.array([float(d.scores.max()) if len(d) else 0.0 for d in dets])
    defective = np.array([len(f.labels) > 0 for f in cache.frames])
    grid = np.round(np.arange(0.05, 0.96, 0.01), 2)
    acc = [float(((top >= t) == defective).mean()) for t in grid]
    return float(grid[int(np.argmax(acc))])


def measure(cache: Cache, dets: list[Any], acc_conf: float) -> dict[str, float]:
    """AP, AP50, Tianchi score, frame accuracy at ``acc_conf``, detections per frame."""
    rep = score_detections(cache.frames, dets, cache.gt, cache.names, acc_conf)
    return {
        "AP": float(rep.coco.stats[0]),
        "AP50": float(rep.coco.stats[1]),
        "tianchi": float(rep.tianchi.score),
        "acc": float(rep.tianchi.acc),
        "det": len(rep.results) / max(len(dets), 1),
    }


def choose(select: Cache, m: Method) -> dict[str, Any]:
    """The knobs with the best COCO AP on the selection cache, and that run's threshold."""
    best: dict[str, Any] = {}
    for knobs in m.configs:
        dets = detect(select, m.name, knobs)
        t = best_threshold(select, dets)
        ap = measure(select, dets, t)["AP"]
        print(f"select {m.name} {knobs} AP {ap:.4f} thr {t}", file=sys.stderr)
        if not best or ap > best["AP"]:
            best = {"AP": ap, "knobs": knobs, "acc_conf": t}
    return best


def run(args: argparse.Namespace) -> None:
    """Choose knobs on the selection cache (or read the choices file), score the test caches,
    print mean +- std."""
    torch.set_num_threads(args.threads)
    methods = [m for m in METHODS if not args.methods or m.name in args.methods]
    choices = json.loads(args.choices.read_text()) if args.choices.is_file() else {}
    todo = [m for m in methods if m.name not in choices]
    if todo:
        select = Cache.load(args.select)
        print(f"{select.path}: {len(select.frames)} frames (selection)", file=sys.stderr)
        for m in todo:
            choices[m.name] = choose(select, m)
            tmp = args.choices.with_suffix(".tmp")
            tmp.write_text(json.dumps({"select": str(args.select), **choices}, indent=1))
            tmp.replace(args.choices)
    tests = [Cache.load(p) for p in args.test]
    for c in tests:
        boxes = sum(len(f.labels) for f in c.frames)
        print(f"{c.path}: {len(c.frames)} frames, {boxes} boxes", file=sys.stderr)
    rows = []
    for m in methods:
        knobs, thr = choices[m.name]["knobs"], choices[m.name]["acc_conf"]
        start = time.perf_counter()
        per_seed = [measure(c, detect(c, m.name, knobs), thr) for c in tests]
        frames = sum(len(c.frames) for c in tests)
        ms = 1000 * (time.perf_counter() - start) / max(frames, 1)
        rows.append({"method": m.name, "knobs": knobs, "acc_conf": thr, "seeds": per_seed})
        print(f"test {m.name}: {per_seed} ({ms:.0f} ms/frame incl. scoring)", file=sys.stderr)
    if args.out:
        args.out.write_text(json.dumps({"select": str(args.select), "rows": rows}, indent=1))
    if rows and tests:
        print_table(rows, len(tests))


def table(args: argparse.Namespace) -> None:
    """One table from several ``run --out`` files: their test seeds pooled (test seeds run
    separately, same choices), or with ``--per-run`` each file averaged over its test seeds
    first (files = detectors trained with different seeds: the spread is over training)."""
    runs = [json.loads(p.read_text())["rows"] for p in args.runs]
    if args.per_run:
        runs = [[{**r, "seeds": [_mean(r["seeds"])]} for r in run] for run in runs]
    rows = [
        {**r, "seeds": [s for run in runs for s in run[i]["seeds"]]} for i, r in enumerate(runs[0])
    ]
    print_table(rows, len(rows[0]["seeds"]))


def _mean(seeds: list[dict[str, float]]) -> dict[str, float]:
    """Metric-wise mean of per-seed metric dicts."""
    return {k: float(np.mean([s[k] for s in seeds])) for k in seeds[0]}


def print_table(rows: list[dict[str, Any]], seeds: int) -> None:
    """Markdown table: mean +- std (over the test seeds) of each metric."""
    keys = ("AP", "AP50", "tianchi", "acc", "det")
    print(f"| method | knobs (selection seed) | thr | {' | '.join(keys)} |  ({seeds} seeds)")
    print("|---" * (len(keys) + 3) + "|")
    for r in rows:
        cells = []
        for k in keys:
            v = np.array([s[k] for s in r["seeds"]])
            fmt = ".1f" if k == "det" else ".3f"
            cells.append(f"{v.mean():{fmt}} +- {v.std(ddof=1) if len(v) > 1 else 0.0:{fmt}}")
        knobs = ", ".join(f"{k}={v}" for k, v in r["knobs"].items()) or "-"
        print(f"| {r['method']} | {knobs} | {r['acc_conf']:.2f} | {' | '.join(cells)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cache", help="run the detector once and cache candidates")
    c.add_argument("data", type=Path, help="dataset.yaml of a converted synthetic split")
    c.add_argument("out", type=Path, help="cache file to write (.pt)")
    c.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    c.add_argument("--split", default="val")
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--frames", type=int, default=0, help="only the split's first N frames")
    r = sub.add_parser("run", help="every postprocess on the caches")
    r.add_argument("--select", type=Path, required=True, help="selection-seed cache")
    r.add_argument("--choices", type=Path, required=True, help="knob choices (JSON; made once)")
    r.add_argument("--test", type=Path, nargs="*", default=[], help="test-seed caches")
    r.add_argument("--methods", nargs="*", default=[], help="only these methods")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--out", type=Path, help="also write the rows as JSON")
    t = sub.add_parser("table", help="one table from several run --out files")
    t.add_argument("runs", type=Path, nargs="+")
    t.add_argument("--per-run", action="store_true", help="average each file's seeds first")
    args = parser.parse_args()
    {"cache": cache, "run": run, "table": table}[args.cmd](args)


if __name__ == "__main__":
    main()
