"""Real fabric before and after ``fabricnms adapt``: per set, the shipped model vs the model
adapted on that set's clean material, scored by the real-fabric benchmark.

Run (one adapt run per set, ``--minutes`` each; nothing is written into the repository)::

    python benchmarks/adapt_real.py ../shared/real --work /tmp/adapt_real [--minutes 10] \\
        [--lr 0.001] [--seeds 0 1 2] [--false-alarms 0.1] \\
        [--sets greige_2448x1200 aitex_4096x256 stains_512 inspection_table_unlabelled]

With several ``--seeds`` each set is adapted once per seed (the seed cuts the windows and
draws the defects) and the adapted rows are followed by their mean +- std: on sets of a few
frames one adapt run is a noisy measurement.

The clean material of each set, and what the adapted model is tested on:

- a set with one clean frame (greige, AITEX): the clean frame is cut in two halves across its
  longer side; ``adapt`` sees the first half only, the second half is the held-out clean frame
  the false alarms are counted on, next to the set's defective frames;
- a set with annotated boxes and no clean frame (stains): the clean material is, per frame,
  the largest rectangle keeping :data:`BOX_MARGIN` px away from every labelled box; the test
  set is the whole set (so its clean areas were seen by adapt, as the issue allows);
- an unlabelled set (inspection table): adapt on its frames (up to ten frame-areas of them,
  spread evenly; a few carry flecks or snags), report detections per frame.

Both models are run through the ``predict`` path at their own operating point (the checkpoint's,
as ``predict`` does without ``--conf``) and scored by ``benchmarks/real_frames.py``
(:func:`score_set`: recall at IoU >= 0.1, false alarms per clean frame, stray detections per
labelled frame, frame accuracy, detections per frame); the table also gives adapt's
self-check (*painted found*: the share of defects painted into the held-out parts found at the
operating point), the median ``fabric_shift`` and whether ``predict`` would warn. Adapt runs are
CPU-heavy: run this under ``nice`` with nothing else on the cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_frames import FrameResult, score_set
from real_sets import RealSet, load_set

from fabricnms.data.frame_reader import read_frame_rgb
from fabricnms.engine.adapt import AdaptConfig, run_adapt
from fabricnms.engine.calibrate import scan, scan_settings
from fabricnms.engine.checkpoint import DEFAULT_WEIGHTS, load_detector
from fabricnms.engine.operating_point import resolve_operating_point
from fabricnms.engine.shift import shift_summary, stats_from_meta
from fabricnms.report.records import FrameRecord

#: Clean rectangles of a boxed set keep this far (px) from every labelled box.
BOX_MARGIN = 16
#: Clean rectangles smaller than this on their short side are not used.
MIN_CLEAN_SIDE = 160


def _write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


def _halves(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = image.shape[:2]
    if w >= h:
        return image[:, : w // 2], image[:, w // 2 :]
    return image[: h // 2], image[h // 2 :]


def largest_clean_rect(height: int, width: int, boxes: np.ndarray) -> tuple[int, int, int, int]:
    """Largest-area ``(x0, y0, x1, y1)`` rectangle of a frame keeping :data:`BOX_MARGIN` px from
    every ``[x0, y0, x1, y1]`` box (maximal rectangle in the free-pixel histogram)."""
    free = np.ones((height, width), bool)
    for x0, y0, x1, y1 in boxes:
        free[
            max(0, int(y0) - BOX_MARGIN) : int(np.ceil(y1)) + BOX_MARGIN,
            max(0, int(x0) - BOX_MARGIN) : int(np.ceil(x1)) + BOX_MARGIN,
        ] = False
    best, rect = 0, (0, 0, 0, 0)
    run = np.zeros(width, int)
    for y in range(height):
        run = np.where(free[y], run + 1, 0)
        stack: list[int] = []
        for x in range(width + 1):
            cur = run[x] if x < width else 0
            while stack and run[stack[-1]] >= cur:
                top = stack.pop()
                left = stack[-1] + 1 if stack else 0
                area = int(run[top]) * (x - left)
                if area > best:
                    best, rect = area, (left, y - int(run[top]) + 1, x, y + 1)
            stack.append(x)
    return rect


def prepare(real_root: Path, name: str, work: Path) -> tuple[list[str], RealSet]:
    """Clean material (paths) for adapt and the set the models are tested on."""
    folder = real_root / name
    real = load_set(folder)
    clean_dir = work / name / "clean"
    if clean_dir.exists():
        shutil.rmtree(clean_dir)
    clean = [f for f in real.frames if f.defective is False]
    if real.categories and len(clean) == 1 and not any(f.categories for f in real.frames):
        first, second = _halves(read_frame_rgb(clean[0].path))
        material = [str(_write(clean_dir / "adapt_half.png", first))]
        held = _write(work / name / "test" / "held_out_half.png", second)
        clean[0].path = held
        return material, real
    if real.categories:
        material = []
        for f in real.frames:
            image = read_frame_rgb(f.path)
            x0, y0, x1, y1 = largest_clean_rect(*image.shape[:2], f.boxes.numpy())
            if min(x1 - x0, y1 - y0) >= MIN_CLEAN_SIDE:
                material.append(str(_write(clean_dir / f"{f.path.stem}.png", image[y0:y1, x0:x1])))
        return material, real
    return [str(f.path) for f in real.frames], real


def evaluate(real: RealSet, weights: Path) -> dict[str, Any]:
    """The predict path at the checkpoint's operating point; real_frames' figures + shift."""
    model, meta = load_detector(weights, "cpu")
    names = list(meta["class_names"])
    point = resolve_operating_point(None, meta).point
    stats = stats_from_meta(meta)
    settings = scan_settings()
    images = [read_frame_rgb(f.path) for f in real.frames]  # sets are small
    results, shifts = [], []
    for truth, image, (det, desc) in zip(
        real.frames, images, scan(model, images, settings), strict=True
    ):
        h, w = image.shape[:2]
        record = FrameRecord.from_detections(truth.path, w, h, point.select(det, names))
        results.append(FrameResult(truth, record))
        shifts.append(stats.frame_score(desc) if stats else None)
    row = score_set(real, results, names, [])
    row.update(conf=point.conf, painted_recall=point.painted_recall)
    if stats is not None:
        s = shift_summary(shifts, stats)
        row.update(shift_median=s["median"], shift_limit=s["limit"], warns=s["warning"] is not None)
    return row


COLUMNS = (
    ("model", "model"),
    ("conf", "conf"),
    ("painted_recall", "painted found"),
    ("recall_any_class", "recall"),
    ("false_alarms_per_clean_frame", "FA/clean"),
    ("stray_per_labelled_frame", "stray/lab."),
    ("frame_accuracy", "frame acc"),
    ("detections_per_frame", "det/frame"),
    ("shift_median", "shift"),
    ("warns", "warns"),
)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)


def render(rows: list[dict[str, Any]]) -> str:
    """Markdown table, one row per set and model."""
    head = "| set | " + " | ".join(c[1] for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for r in rows:
        cells = [_cell(r.get(k)) for k, _ in COLUMNS]
        lines.append(f"| {r['set']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean +- std (population) of the numeric columns of the adapted ``rows`` of one set."""
    out: dict[str, Any] = {"set": rows[0]["set"], "model": f"adapted, {len(rows)} seeds"}
    for key, _ in COLUMNS[1:]:
        values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
        if values and not isinstance(values[0], bool):
            out[key] = f"{np.mean(values):.3g} +- {np.std(values):.2g}"
        elif values:
            out[key] = f"{sum(values)}/{len(values)}"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("real_root", type=Path, help="folder of the real sets")
    parser.add_argument(
        "--work", type=Path, required=True, help="scratch folder (outside the repo)"
    )
    parser.add_argument("--sets", nargs="+", default=None, help="set folder names (default: all)")
    parser.add_argument("--minutes", type=float, default=10.0, help="adapt budget per set")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr", type=float, default=AdaptConfig.lr, help="adapt learning rate")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="adapt seeds")
    parser.add_argument(
        "--false-alarms",
        type=float,
        default=AdaptConfig.false_alarms,
        help="adapt's false-alarm budget per 2446x1000 px",
    )
    parser.add_argument(
        "--weights", type=Path, default=DEFAULT_WEIGHTS, help="start model (default: shipped)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = args.sets or sorted(p.name for p in args.real_root.iterdir() if p.is_dir())
    rows = []
    for name in names:
        material, real = prepare(args.real_root, name, args.work)
        before = evaluate(real, args.weights)
        runs = []
        for seed in args.seeds:
            start = time.perf_counter()
            adapted = run_adapt(
                AdaptConfig(
                    sources=material,
                    weights=str(args.weights),
                    minutes=args.minutes,
                    lr=args.lr,
                    seed=seed,
                    false_alarms=args.false_alarms,
                ),
                project=args.work / name,
                name=f"seed{seed}",
            )
            after = evaluate(real, adapted.weights)
            after["adapt_minutes"] = round((time.perf_counter() - start) / 60, 2)
            after["clean_inputs"] = len(material)
            runs.append({**after, "model": f"adapted (seed {seed})"})
        rows += [{**before, "model": "shipped"}, *runs]
        if len(runs) > 1:
            rows.append(summarise(runs))
        print(render(rows[-len(runs) - 1 - (len(runs) > 1) :]), file=sys.stderr, flush=True)
    print(render(rows))
    (args.work / "adapt_real.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
