"""Render the synthetic-data figures in ``docs/`` (reproducible: fixed seeds).

* ``docs/synth_examples.png``: two 2446 x 1000 frames (downscaled, loose boxes in yellow) next
  to full-resolution crops of their defects (corners of the loose box in yellow);
* ``docs/synth_classes.png``: one crop per category 1..20 at full resolution (large defects
  downscaled to fit), labelled with the category id and the raw Chinese name's English gloss;
* ``docs/synth_difficulty.png``: the same defects at ``--difficulty easy``, ``normal``, ``hard``.

Frames go through the same JPEG encoding as a release, so the figure shows what a detector sees.

    python benchmarks/make_synth_figure.py --out-dir docs
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from fabricnms.data.classes import CATEGORIES, RAW_BY_NAME, RAW_CLASSES
from fabricnms.data.synth import SynthDefect, SynthFrame, render_frame
from fabricnms.data.synth_scan import encode_jpeg
from fabricnms.io import atomic_write_bytes

YELLOW, WHITE = (255, 220, 0), (255, 255, 255)
EXAMPLES = (("结头", "断经", "水渍", "三丝"), ("稀密档", "破洞", "跳花", "浆斑"))
DIFFICULTY_ROWS = ("结头", "粗经", "油渍", "纬缩")


def _as_scanned(frame: SynthFrame) -> np.ndarray:
    """The frame after JPEG round trip, RGB uint8."""
    data = np.frombuffer(encode_jpeg(frame.image), np.uint8)
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _label(img: np.ndarray, text: str) -> None:
    cv2.rectangle(img, (0, 0), (8 + 8 * len(text), 18), (0, 0, 0), -1)
    cv2.putText(img, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, WHITE, 1, cv2.LINE_AA)


def _crop(image: np.ndarray, d: SynthDefect, side: int) -> np.ndarray:
    """A ``side`` x ``side`` tile around defect ``d``: full resolution (upscaled when small,
    downscaled at most 1.6x; long defects are shown in part), with the corners of the loose
    box drawn."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = d.box
    extent = int(min(max(x1 - x0, y1 - y0) * 1.3 + 16, 1.6 * side, h, w))
    extent = max(extent, side // 2)
    cx = int(np.clip((x0 + x1) / 2 - extent / 2, 0, w - extent))
    cy = int(np.clip((y0 + y1) / 2 - extent / 2, 0, h - extent))
    scale = side / extent
    interp = cv2.INTER_NEAREST if scale >= 1 else cv2.INTER_AREA
    tile = cv2.resize(image[cy : cy + extent, cx : cx + extent], (side, side), interpolation=interp)
    _corners(tile, [(v - o) * scale for v, o in zip(d.box, (cx, cy, cx, cy), strict=True)])
    return tile


def _corners(img: np.ndarray, box: list[float], arm: int = 7) -> None:
    """Draw only the corners of ``box`` (xyxy, tile pixels) so thin defects stay visible."""
    x0, y0, x1, y1 = (round(v) for v in box)
    x1, y1 = max(x1 - 1, x0 + 1), max(y1 - 1, y0 + 1)
    for x, y, dx, dy in ((x0, y0, 1, 1), (x1, y0, -1, 1), (x0, y1, 1, -1), (x1, y1, -1, -1)):
        cv2.line(img, (x, y), (x + dx * arm, y), YELLOW, 1)
        cv2.line(img, (x, y), (x, y + dy * arm), YELLOW, 1)


def examples_figure(seed: int) -> np.ndarray:
    """Two frames with their defect crops, one frame per row."""
    rows = []
    for i, names in enumerate(EXAMPLES):
        frame = render_frame(seed + i, 2446, 1000, raw_names=list(names))
        image = _as_scanned(frame)
        small = cv2.resize(image, (734, 300), interpolation=cv2.INTER_AREA)
        for d in frame.defects:
            x0, y0, x1, y1 = (int(v * 0.3) for v in d.box)
            cv2.rectangle(small, (x0, y0), (max(x1, x0 + 2), max(y1, y0 + 2)), YELLOW, 1)
        _label(small, f"seed {seed + i}: 2446x1000 frame, downscaled 0.3x")
        tiles = []
        for d in frame.defects:
            tile = _crop(image, d, 150)
            _label(tile, f"{d.category_id} {RAW_BY_NAME[d.raw_name].name}")
            tiles.append(tile)
        grid = np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:4])])
        rows.append(np.hstack([small, np.full((300, 4, 3), 255, np.uint8), grid]))
    gap = np.full((4, rows[0].shape[1], 3), 255, np.uint8)
    return np.vstack([rows[0], gap, rows[1]])


def classes_figure(seed: int) -> np.ndarray:
    """One defect per category (first raw name of each), 5 x 4 grid of 220 px tiles."""
    tiles = []
    for cat in CATEGORIES:
        raw = next(r for r in RAW_CLASSES if r.category_id == cat.id)
        frame = render_frame(seed + cat.id, 1200, 600, raw_names=[raw.raw])
        tile = _crop(_as_scanned(frame), frame.defects[0], 220)
        gloss = f" ({raw.name})" if raw.name != cat.name else ""
        _label(tile, f"{cat.id} {cat.name}{gloss}")
        tiles.append(np.pad(tile, ((2, 2), (2, 2), (0, 0)), constant_values=255))
    rows = [np.hstack(tiles[i : i + 5]) for i in range(0, 20, 5)]
    return np.vstack(rows)


def difficulty_figure(seed: int) -> np.ndarray:
    """The same defects at ``easy``, ``normal`` and ``hard`` difficulty (one row per defect)."""
    rows = []
    for i, raw in enumerate(DIFFICULTY_ROWS):
        tiles = []
        for level in ("easy", "normal", "hard"):
            frame = render_frame(seed + 100 + i, 900, 500, raw_names=[raw], difficulty=level)
            tile = _crop(_as_scanned(frame), frame.defects[0], 180)
            _label(tile, f"{RAW_BY_NAME[raw].name}, {level}")
            tiles.append(np.pad(tile, ((2, 2), (2, 2), (0, 0)), constant_values=255))
        rows.append(np.hstack(tiles))
    return np.vstack(rows)


def _save_png(path: Path, rgb: np.ndarray) -> None:
    """256-colour PNG (near-grey figures stay small with a palette), written atomically."""
    buf = io.BytesIO()
    Image.fromarray(rgb).quantize(colors=256, dither=Image.Dither.NONE).save(
        buf, "PNG", optimize=True
    )
    atomic_write_bytes(path, buf.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path("docs"))
    parser.add_argument("--seed", type=int, default=20)
    args = parser.parse_args()
    _save_png(args.out_dir / "synth_examples.png", examples_figure(args.seed))
    _save_png(args.out_dir / "synth_classes.png", classes_figure(args.seed))
    _save_png(args.out_dir / "synth_difficulty.png", difficulty_figure(args.seed))
    print(f"Results saved to {args.out_dir}")


if __name__ == "__main__":
    main()
