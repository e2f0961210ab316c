"""Time ``fabricnms convert`` on a fake round-1 release of Tianchi size.

Builds, in a temp dir, two parts (train1, train2) with ``--images`` real 2446x1000 JPEG files
(one encoded frame hard-linked under every name, so the release costs ~0.1 MB of disk; the
converter still opens every file's header) and an ``anno_train.json`` per part with
``--entries`` boxes in total, then times the converter phase by phase and end to end.

    python benchmarks/bench_convert.py [--images 6000] [--entries 10000] [--repeat 3]

Goal: 10,000 entries in under 10 s.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from fabricnms.data.classes import RAW_CLASSES
from fabricnms.data.convert import convert_release
from fabricnms.data.convert_output import write_outputs
from fabricnms.data.convert_types import ConvertOptions
from fabricnms.data.images import read_image_size
from fabricnms.data.tianchi import discover, read_label_file


def build_release(root: Path, n_images: int, n_entries: int, seed: int) -> None:
    """Two parts with defect_Images / normal_Images / Annotations, 38 % normal frames."""
    rng = random.Random(seed)
    frame = np.random.default_rng(seed).integers(60, 120, (1000, 2446, 3), dtype=np.uint8)
    root.mkdir(parents=True, exist_ok=True)
    master = root / "frame.jpg"
    cv2.imwrite(str(master), cv2.GaussianBlur(frame, (0, 0), 3), [cv2.IMWRITE_JPEG_QUALITY, 95])
    n_normal = round(0.38 * n_images)
    names = [f"{rng.getrandbits(64):016x}{rng.randrange(10**10):010d}.jpg" for _ in range(n_images)]
    defect, normal = names[n_normal:], names[:n_normal]
    part_of = {name: ("train1", "train2")[i % 2] for i, name in enumerate(defect)}
    entries: dict[str, list[dict]] = {"train1": [], "train2": []}
    for k in range(n_entries):
        name = defect[k % len(defect)] if k < len(defect) else rng.choice(defect)
        w, h = rng.uniform(10, 400), rng.uniform(10, 300)
        x, y = rng.uniform(0, 2446 - w), rng.uniform(0, 1000 - h)
        if rng.random() < 0.03:  # a few boxes pushed out, some over the border
            x, y = x + w / 2 if x > 1223 else x - w / 2, y + h / 2 if y > 500 else y - h / 2
        part = part_of[name]
        entries[part].append(
            {
                "name": name,
                "defect_name": rng.choice(RAW_CLASSES).raw,
                "bbox": [round(x, 2), round(y, 2), round(x + w, 2), round(y + h, 2)],
            }
        )
    for part, part_entries in entries.items():
        base = root / part
        for sub in ("defect_Images", "normal_Images", "Annotations"):
            (base / sub).mkdir(parents=True)
        part_names = {e["name"] for e in part_entries}
        for name in part_names:
            _link(master, base / "defect_Images" / name)
        for name in normal[: len(normal) // 2] if part == "train1" else normal[len(normal) // 2 :]:
            _link(master, base / "normal_Images" / name)
        text = json.dumps(part_entries, ensure_ascii=True, indent=4)
        (base / "Annotations" / "anno_train.json").write_text(text)


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def timed(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--entries", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.getLogger("fabricnms").setLevel(logging.ERROR)  # counted warnings only

    with tempfile.TemporaryDirectory(prefix="bench_convert_") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        build_release(root / "release", args.images, args.entries, args.seed)
        build_s = time.perf_counter() - t0
        sources = [root / "release" / "train1", root / "release" / "train2"]
        out = root / "coco"
        options = ConvertOptions()

        rows = []
        t, release = timed(lambda: discover(sources, exclude=[out]), args.repeat)
        rows.append(("discover (walk folders)", t))
        t, _ = timed(lambda: [read_label_file(p) for p in release.label_files], args.repeat)
        rows.append(("read + validate label files", t))
        paths = [files[0].path for files in release.frames.values()]
        t, _ = timed(lambda: [read_image_size(p) for p in paths], args.repeat)
        rows.append((f"read {len(paths)} image headers", t))
        t, result = timed(lambda: convert_release(sources, out, options), args.repeat)
        rows.append(("convert_release (all of the above + split)", t))
        t, _ = timed(lambda: write_outputs(result, out, options), args.repeat)
        rows.append(("write COCO + dataset.yaml", t))
        cmd = [sys.executable, "-m", "fabricnms", "convert", *map(str, sources), str(out), "--json"]
        t, proc = timed(lambda: subprocess.run(cmd, capture_output=True, check=True), 1)
        rows.append(("CLI end to end (python -m fabricnms convert)", t))
        summary = json.loads(proc.stdout)

    print(
        f"fake release: {args.images} frames 2446x1000 JPEG, {args.entries} entries, "
        f"built in {build_s:.1f} s"
    )
    print(
        f"converted: {summary['images']['defect']} defect + {summary['images']['normal']} "
        f"normal images, {summary['boxes']['train'] + summary['boxes']['val']} boxes, "
        f"{summary['boxes']['clipped']} clipped, "
        f"{summary['dropped_boxes']['empty_after_clipping']} dropped"
    )
    print(f"\n| {'phase':<46} | {'best s':>8} |\n|{'-' * 48}|{'-' * 10}|")
    for name, seconds in rows:
        print(f"| {name:<46} | {seconds:8.3f} |")
    verdict = "PASS" if rows[-1][1] < 10.0 else "FAIL"
    print(f"\ngoal: {args.entries} entries end to end < 10 s: {verdict}")


if __name__ == "__main__":
    main()
