"""Where the cloth is in a frame: the off-cloth margins past the fabric's edges.

A frame of a roll often shows more than cloth: past the selvedge the inspection table, a roller
or the blank end of a line scan. None of the 20 defect classes lives there, but the fabric's edge
(a fringed or corded selvedge beside a dark table) looks like a warp defect to a detector, which
then reports every such frame as defective.

:func:`find_cloth` finds those margins. A pixel is *background* when it is flat (local luma std
over :data:`FLAT_WINDOW` px below a third of the frame's median, or clipped: luma <= 6 or >= 249)
and its local mean luma differs from the cloth's (the median of the textured pixels) by at least
:data:`BACKGROUND_CONTRAST` grey levels: a smooth patch of the cloth itself is flat but not
darker or brighter than the cloth, so it stays cloth. A frame side has a margin where at least
:data:`MIN_MARGIN` px of columns (rows) in from it are at least half background (averaged over
:data:`SMOOTH` px of neighbours) and the outermost ones mostly (:data:`BORDER_SHARE`: a dark
stain touching the side is not a table); the margin ends at the first column (row) that is not
(so up to half the window short of the true edge). Margins are cropped one at a time, the solidest
(highest background share) first, and the others looked for again in what is left: a table
under the bottom half of the frame makes every column half background, but not the columns
above it. The *cloth region* is the frame less its margins (``x0, y0, x1, y1``, xyxy px);
:meth:`ClothRegion.keep` keeps the detections whose box centre lies inside it, shrunk by
``band`` px on each side where an edge was found (the selvedge and its fringe;
:data:`fabricnms.config.EDGE_BAND` by default). A frame that is all cloth, or all flat, has no
margin: nothing is dropped. The work is done on every :data:`STEP`-th row and column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from fabricnms.data.weave_measure import luminance

#: Side (px) of the box over which the local luma mean and std are taken.
FLAT_WINDOW = 15
#: Medians are taken over every SAMPLE-th row and column (a 16th of the pixels: as good, faster).
SAMPLE = 4
#: :func:`find_cloth` reads every STEP-th row and column (decimated, not averaged, so the weave
#: keeps its texture) with a FLAT_WINDOW // STEP window: a quarter of the work, edges to 2 px.
STEP = 2
#: Least difference (grey levels) between a flat pixel's local mean and the cloth's median luma
#: for it to be background (a dark table: ~20 against a grey cloth's ~120; a blank white scan end).
BACKGROUND_CONTRAST = 40.0
#: Least share of a column (row) that is background for it to be part of a margin.
BACKGROUND_SHARE = 0.5
#: Least background share of the outermost SMOOTH px of a side for it to have a margin.
BORDER_SHARE = 0.7
#: Fewest px of background columns (rows) at a side that make a margin.
MIN_MARGIN = 8
#: Span (px) over which the background share of neighbouring columns (rows) is averaged.
SMOOTH = 16


def flat_mask(lum: np.ndarray, window: int = FLAT_WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """``(local mean [H, W] float32, flat [H, W] bool)`` of the luma ``lum [H, W]`` float32:
    flat = local std over ``window`` px below a third of the frame's median, or clipped (module
    docstring)."""
    size = (window, window)
    mean = cv2.blur(lum, size)
    std = np.sqrt(np.maximum(cv2.blur(lum * lum, size) - mean * mean, 0.0))
    median = float(np.median(std[::SAMPLE, ::SAMPLE]))
    flat = (std < np.float32(median / 3.0)) | (lum <= 6) | (lum >= 249)
    return mean, flat


@dataclass(frozen=True)
class ClothRegion:
    """The cloth of a ``width x height`` frame: ``x0, y0, x1, y1`` (xyxy px); a side whose
    coordinate is not the frame border has an edge (an off-cloth margin beyond it)."""

    x0: int
    y0: int
    x1: int
    y1: int
    width: int
    height: int

    @property
    def edges(self) -> tuple[str, ...]:
        """The sides with an off-cloth margin: some of ``left, top, right, bottom``."""
        found = (self.x0 > 0, self.y0 > 0, self.x1 < self.width, self.y1 < self.height)
        return tuple(s for s, f in zip(("left", "top", "right", "bottom"), found, strict=True) if f)

    def inner(self, band: int) -> tuple[int, int, int, int]:
        """The region shrunk by ``band`` px on each side with an edge: what is inspected
        (xyxy px; empty when the band covers the cloth)."""
        return (
            self.x0 + band if self.x0 > 0 else 0,
            self.y0 + band if self.y0 > 0 else 0,
            self.x1 - band if self.x1 < self.width else self.width,
            self.y1 - band if self.y1 < self.height else self.height,
        )

    def keep(self, boxes: torch.Tensor, band: int) -> torch.Tensor:
        """``[K]`` bool: which xyxy ``boxes [K, 4]`` (inside the frame) have their centre in
        :meth:`inner`: on the cloth, at least ``band`` px in from each found edge."""
        x0, y0, x1, y1 = self.inner(band)
        cx = (boxes[:, 0] + boxes[:, 2]) / 2
        cy = (boxes[:, 1] + boxes[:, 3]) / 2
        return (cx >= x0) & (cx <= x1) & (cy >= y0) & (cy <= y1)

    def share(self, window: tuple[int, int, int, int]) -> float:
        """Share of the xyxy ``window`` (px) that lies on the cloth."""
        x0, y0, x1, y1 = window
        w = max(0, min(x1, self.x1) - max(x0, self.x0))
        h = max(0, min(y1, self.y1) - max(y0, self.y0))
        return w * h / max((x1 - x0) * (y1 - y0), 1)

    def to_dict(self, band: int) -> dict[str, Any] | None:
        """``{"box": [x0, y0, x1, y1], "inspected": :meth:`inner`, "edges": [...]}`` for
        ``images.json`` (``band``: the band the detections were dropped in); ``None`` for a
        frame without an edge (cloth throughout)."""
        if not self.edges:
            return None
        return {
            "box": [self.x0, self.y0, self.x1, self.y1],
            "inspected": list(self.inner(band)),
            "edges": list(self.edges),
        }


def _margin(share: np.ndarray) -> int:
    """Columns (rows) from the start of ``share`` whose background share, averaged over
    :data:`SMOOTH` px (lint on a table leaves single columns short), is at least
    :data:`BACKGROUND_SHARE`; 0 when fewer than :data:`MIN_MARGIN` px, or when the outermost
    :data:`SMOOTH` px are less than :data:`BORDER_SHARE` background (a table runs along the
    whole side; a dark stain touching it covers only part of it)."""
    if share[: max(SMOOTH // STEP, 1)].mean() < BORDER_SHARE:
        return 0
    size = (SMOOTH // STEP | 1, 1)
    share = cv2.blur(share[None, :].astype(np.float32), size, borderType=cv2.BORDER_REPLICATE)[0]
    below = np.flatnonzero(share < BACKGROUND_SHARE)
    run = int(below[0]) if below.size else len(share)
    return run if run * STEP >= MIN_MARGIN else 0


def find_cloth(rgb: np.ndarray) -> ClothRegion:
    """The cloth region of the ``[H, W, 3]`` uint8 RGB frame ``rgb`` (module docstring)."""
    height, width = rgb.shape[:2]
    lum = luminance(rgb[::STEP, ::STEP])
    mean, flat = flat_mask(lum, FLAT_WINDOW // STEP | 1)
    if flat[::SAMPLE, ::SAMPLE].all() or not flat.any():
        return ClothRegion(0, 0, width, height, width, height)
    cloth = float(np.median(lum[::SAMPLE, ::SAMPLE][~flat[::SAMPLE, ::SAMPLE]]))
    background = flat & (np.abs(mean - np.float32(cloth)) >= BACKGROUND_CONTRAST)
    box = [0, 0, lum.shape[1], lum.shape[0]]  # x0, y0, x1, y1 in decimated px
    for _ in range(4):
        x0, y0, x1, y1 = box
        part = background[y0:y1, x0:x1]
        cols, rows = part.mean(axis=0), part.mean(axis=1)
        found = []  # (share of background in the margin, side index, margin length)
        for side, share in enumerate((cols, rows, cols[::-1], rows[::-1])):
            if n := _margin(share):
                found.append((float(share[:n].mean()), side, n))
        if not found:
            break
        _, side, n = max(found)  # the solidest margin first: it is cropped before the others
        box[side] += n if side < 2 else -n
        if box[0] >= box[2] or box[1] >= box[3]:  # no cloth left: do not guess where it is
            return ClothRegion(0, 0, width, height, width, height)
    x1 = width if box[2] == lum.shape[1] else box[2] * STEP
    y1 = height if box[3] == lum.shape[0] else box[3] * STEP
    return ClothRegion(box[0] * STEP, box[1] * STEP, x1, y1, width, height)
