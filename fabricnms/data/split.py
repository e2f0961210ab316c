"""Deterministic, class-stratified train/val split of images.

Each image is described by the set of category ids it contains (empty for a normal frame).
Normal frames are split on their own by the fraction. Defect images are assigned rarest
class first, so every class present in at least 2 images gets at least one val image while
keeping at least one train image; the rest is filled up to the fraction, each time with the image
whose most-filled class ends up with the smallest val share (random tie-break).
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter
from collections.abc import Sequence


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def stratified_split(
    labels: Sequence[frozenset[int]], val_fraction: float, seed: int = 0
) -> list[bool]:
    """Return ``is_val[i]`` for each image ``i`` (same order as ``labels``).

    Deterministic for a given input order, ``val_fraction`` and ``seed`` (callers pass images
    in a fixed order, e.g. sorted by file name). ``val_fraction`` must be in ``[0, 1)``; with
    0 every image is train.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    is_val = [False] * len(labels)
    if val_fraction == 0.0:
        return is_val
    rng = random.Random(seed)

    normal = [i for i, cats in enumerate(labels) if not cats]
    rng.shuffle(normal)
    for i in normal[: _round_half_up(val_fraction * len(normal))]:
        is_val[i] = True

    defect = [i for i, cats in enumerate(labels) if cats]
    total: Counter[int] = Counter(c for i in defect for c in labels[i])  # images per class
    in_val: Counter[int] = Counter()
    quota = {
        c: min(n - 1, max(1, _round_half_up(val_fraction * n))) for c, n in total.items() if n >= 2
    }

    def collateral(i: int) -> tuple[int, int]:
        # prefer images that push no class past its quota, then those filling several quotas
        full = sum(in_val[c] >= quota.get(c, 0) for c in labels[i])
        return full, full - len(labels[i])

    def try_move(i: int) -> bool:
        # only if every class of image i keeps at least one train image afterwards
        if is_val[i] or any(total[c] - in_val[c] < 2 for c in labels[i]):
            return False
        is_val[i] = True
        in_val.update(labels[i])
        return True

    for c in sorted(quota, key=lambda c: (total[c], c)):
        candidates = [i for i in defect if c in labels[i] and not is_val[i]]
        rng.shuffle(candidates)
        candidates.sort(key=collateral)
        for i in candidates:
            if in_val[c] >= quota[c]:
                break
            try_move(i)

    # fill up to the fraction, lazily greedy: next the image whose most-filled class ends up
    # with the smallest val share
    def share(i: int) -> float:
        return max((in_val[c] + 1) / total[c] for c in labels[i])

    target = _round_half_up(val_fraction * len(defect))
    moved = sum(is_val[i] for i in defect)
    heap = [(share(i), rng.random(), i) for i in defect if not is_val[i]]
    heapq.heapify(heap)
    while heap and moved < target:
        key, tie, i = heapq.heappop(heap)
        current = share(i)
        if current > key and heap and current > heap[0][0]:
            heapq.heappush(heap, (current, tie, i))  # stale key: re-queue
            continue
        moved += try_move(i)
    return is_val
