"""Where box labels go so that none hides another.

Labels are placed one at a time, most important first (the caller's order: highest score
first), each at the first candidate position next to its box that overlaps no label placed
before it; when every candidate overlaps, the one overlapping least. Candidates, in order:
above the box's top-left corner, above its top-right corner, inside its top-left corner,
below its bottom-left corner, below its bottom-right corner, then stacked further above and
below the box (up to :data:`MAX_STACK` label heights), all moved inside the image.

Rectangles are integer ``(x1, y1, x2, y2)`` pixels, ``x2`` / ``y2`` exclusive.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Rect = tuple[int, int, int, int]
#: How many label heights above / below the box a label may be stacked.
MAX_STACK = 6


def _candidates(
    box: Sequence[float], w: int, h: int, width: int, height: int
) -> list[tuple[int, int]]:
    """Top-left corners to try for a ``w x h`` label of ``box`` in a ``width x height`` image."""
    x1, y1, x2, y2 = (round(v) for v in box)
    left, right = x1, x2 - w
    spots = [(left, y1 - h), (right, y1 - h), (left, y1), (left, y2), (right, y2)]
    for k in range(1, MAX_STACK + 1):
        spots += [(left, y1 - h - k * h), (left, y2 + k * h), (right, y1 - h - k * h)]
    out = []
    for x, y in spots:
        spot = (min(max(x, 0), max(width - w, 0)), min(max(y, 0), max(height - h, 0)))
        if spot not in out:
            out.append(spot)
    return out


def overlap_area(rect: Rect, taken: np.ndarray) -> int:
    """Total area ``rect`` shares with the rows of ``taken [K, 4]`` (int rects)."""
    if len(taken) == 0:
        return 0
    iw = np.minimum(taken[:, 2], rect[2]) - np.maximum(taken[:, 0], rect[0])
    ih = np.minimum(taken[:, 3], rect[3]) - np.maximum(taken[:, 1], rect[1])
    return int((np.clip(iw, 0, None) * np.clip(ih, 0, None)).sum())


def place_labels(
    boxes: Sequence[Sequence[float]],
    sizes: Sequence[tuple[int, int]],
    image_size: tuple[int, int],
    taken: list[Rect] | None = None,
) -> list[Rect]:
    """One label rectangle per box (``sizes[i]`` = label ``(w, h)`` in px), placed in the
    given order against the ``taken`` rectangles (extended with every placed label, so later
    calls avoid these labels too). ``image_size`` is ``(width, height)``."""
    width, height = image_size
    taken = [] if taken is None else taken
    placed: list[Rect] = []
    for box, (w, h) in zip(boxes, sizes, strict=True):
        occupied = np.array(taken, dtype=np.int64).reshape(-1, 4)
        best: Rect | None = None
        best_overlap = -1
        for x, y in _candidates(box, w, h, width, height):
            rect = (x, y, x + w, y + h)
            area = overlap_area(rect, occupied)
            if best is None or area < best_overlap:
                best, best_overlap = rect, area
            if area == 0:
                break
        assert best is not None
        taken.append(best)
        placed.append(best)
    return placed
