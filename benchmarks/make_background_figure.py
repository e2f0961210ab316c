"""Render ``docs/synth_background.jpg``: defects painted into a given defect-free frame.

The background is a procedural frame of our own making (no real frame may be committed); the
same code paints into real photographs with ``fabricnms synth --background``. Each row shows
a crop of the background, the same crop with the defect painted in, and its true mask (red)
and loose box (green).

    python benchmarks/make_background_figure.py --out docs/synth_background.jpg
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from fabricnms.data.synth import render_frame
from fabricnms.data.synth_background import render_on_background
from fabricnms.io import atomic_write_bytes

NAMES = ("破洞", "油渍", "三丝", "结头", "断经", "粗维", "浆斑", "花板跳")
TILE = 220


def _tile(img: np.ndarray) -> np.ndarray:
    return cv2.resize(img, (TILE, TILE), interpolation=cv2.INTER_AREA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/synth_background.jpg"))
    args = parser.parse_args()
    background = render_frame(31, 1024, 512, n_defects=0).image
    rows = []
    for i, raw in enumerate(NAMES):
        frame = render_on_background(background, 200 + i, raw_names=[raw])
        (d,) = frame.defects
        x0, y0, x1, y1 = (round(v) for v in d.box)
        side = int(np.clip(max(x1 - x0, y1 - y0) + 40, 96, 480))
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        xa = int(np.clip(cx - side // 2, 0, background.shape[1] - side))
        ya = int(np.clip(cy - side // 2, 0, background.shape[0] - min(side, 512)))
        sl = np.s_[ya : ya + side, xa : xa + side]
        marked = frame.image[sl].copy()
        overlay = marked.copy()
        overlay[d.mask[sl]] = (0.5 * overlay[d.mask[sl]] + (127, 0, 0)).astype(np.uint8)
        cv2.rectangle(overlay, (x0 - xa, y0 - ya), (x1 - xa - 1, y1 - ya - 1), (0, 255, 0), 2)
        row = np.concatenate([_tile(background[sl]), _tile(marked), _tile(overlay)], 1)
        cv2.putText(row, d.name, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1)
        rows.append(row)
    half = len(rows) // 2
    gap = np.full((half * TILE, 12, 3), 255, np.uint8)
    grid = np.concatenate([np.concatenate(rows[:half], 0), gap, np.concatenate(rows[half:], 0)], 1)
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88]
    )
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    atomic_write_bytes(args.out, buf.tobytes())
    print(f"wrote {args.out} {grid.shape[1]}x{grid.shape[0]}")


if __name__ == "__main__":
    main()
