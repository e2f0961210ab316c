"""Pixel -> physical scale of a camera looking at the fabric.

Orientation (Tianchi frames, see tianchi_format.md 6.4): image ``x`` runs across the fabric
(weft direction, measured from the left selvage at ``x = 0``), image ``y`` runs along the roll
(warp, machine direction). The default 2.0 px/mm (0.5 mm per pixel) is the spatial resolution
quoted for the Tianchi 2446x1000 frames; a real line needs its own calibration, separately for
the two axes when the camera's pixels are not square on the fabric.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from fabricnms.errors import FabricError

#: Default scale: 0.5 mm per pixel on both axes (Tianchi round-1 frames).
DEFAULT_PX_PER_MM = 2.0


@dataclass(frozen=True)
class Calibration:
    """Pixels per millimetre across (``x``, weft) and along (``y``, warp) the roll;
    ``assumed``: the scale is the default, not a measurement (the verdict says so)."""

    px_per_mm_x: float = DEFAULT_PX_PER_MM
    px_per_mm_y: float = DEFAULT_PX_PER_MM
    assumed: bool = False

    def __post_init__(self) -> None:
        for name in ("px_per_mm_x", "px_per_mm_y"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise FabricError(f"calibration: {name} must be a positive number, got {value!r}")

    def mm_x(self, px: float) -> float:
        """Millimetres across the roll for ``px`` pixels along image x."""
        return px / self.px_per_mm_x

    def mm_y(self, px: float) -> float:
        """Millimetres along the roll for ``px`` pixels along image y."""
        return px / self.px_per_mm_y

    def mm2(self, px_area: float) -> float:
        """Square millimetres of fabric covered by ``px_area`` pixels."""
        return px_area / (self.px_per_mm_x * self.px_per_mm_y)

    def to_dict(self) -> dict[str, float | bool]:
        """Plain values, as written into reports."""
        return asdict(self)
