"""The clean frames ``fabricnms adapt`` learns from: which of the sources, read.

Material is capped by area, not frame count: up to :data:`MAX_FRAME_AREAS` 2446x1000 frames'
worth of pixels (ten full frames, or as many smaller crops as make that area), because the
calibration pass's time grows with the area. Sources holding more are thinned, spread evenly
over them (:func:`spread_order`), and read only as far as needed.
"""

from __future__ import annotations

from fabricnms.engine.adapt_data import CleanFrame
from fabricnms.errors import FabricError
from fabricnms.log import get_logger

log = get_logger("adapt")

#: Clean material beyond this many 2446x1000 frame-areas is thinned, evenly spread (the time
#: of the calibration pass grows with the area; ten full frames fit the default budget).
MAX_FRAME_AREAS = 10


def spread_order(n: int) -> list[int]:
    """``range(n)`` in an order whose every prefix is spread evenly over it: 0, n/2, n/4,
    3n/4, ... (``k * n / 2**b`` for ``k`` in bit-reversed order; ``2**b >= n``, so every index
    comes up)."""
    if n < 2:
        return list(range(n))
    bits = (n - 1).bit_length()
    order: dict[int, None] = {}
    for j in range(1 << bits):
        order.setdefault(int(f"{j:0{bits}b}"[::-1], 2) * n >> bits)
    return list(order)


def read_clean_frames(sources: list[str], recursive: bool) -> list[CleanFrame]:
    """The readable frames of ``sources``, in source order, up to :data:`MAX_FRAME_AREAS`
    frame-areas of pixels (frames taken in :func:`spread_order` until the next one would pass
    it; at least one)."""
    from fabricnms.data.frame_reader import FrameReadError, read_frame_rgb
    from fabricnms.engine.operating_point import FRAME_AREA_PX
    from fabricnms.engine.sources import discover_frames

    paths = discover_frames(sources, recursive)
    taken: dict[int, CleanFrame] = {}
    errors: list[str] = []
    area = 0
    for i in spread_order(len(paths)):
        try:
            image = read_frame_rgb(paths[i])
        except FrameReadError as exc:
            errors.append(str(exc))
            continue
        area += image.shape[0] * image.shape[1]
        if taken and area > MAX_FRAME_AREAS * FRAME_AREA_PX:
            break
        taken[i] = CleanFrame(paths[i], image)
    if not taken:
        first = f" (first: {errors[0]})" if errors else ""
        raise FabricError(f"no readable clean frame in {', '.join(sources)}{first}")
    for error in errors:
        log.warning("skipped %s", error)
    if len(taken) + len(errors) < len(paths):
        log.info(
            "using %d of %d clean frames, spread evenly (%g frame-areas are enough)",
            len(taken),
            len(paths),
            MAX_FRAME_AREAS,
        )
    return [taken[i] for i in sorted(taken)]
