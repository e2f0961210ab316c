"""Class colours shared by the overlays (BGR for cv2) and the HTML report (hex).

Twenty colours chosen to stay distinguishable from each other and on grey fabric; class
index ``i`` (0-based) gets colour ``i % 20``. Fixed outcome colours mark the TP/FP/FN mode.
"""

from __future__ import annotations

CLASS_HEX: tuple[str, ...] = (
    "#e6194b",
    "#3cb44b",
    "#ffe119",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#42d4f4",
    "#f032e6",
    "#bfef45",
    "#fabed4",
    "#469990",
    "#dcbeff",
    "#9a6324",
    "#fffac8",
    "#800000",
    "#aaffc3",
    "#808000",
    "#ffd8b1",
    "#000075",
    "#ffffff",
)

TP_BGR: tuple[int, int, int] = (0, 200, 0)
FP_BGR: tuple[int, int, int] = (0, 0, 255)
FN_BGR: tuple[int, int, int] = (0, 255, 255)


def class_hex(index: int) -> str:
    """Hex colour ``#rrggbb`` of 0-based class ``index``."""
    return CLASS_HEX[index % len(CLASS_HEX)]


def class_bgr(index: int) -> tuple[int, int, int]:
    """cv2 BGR colour of 0-based class ``index``."""
    h = class_hex(index)
    r, g, b = (int(h[i : i + 2], 16) for i in (1, 3, 5))
    return (b, g, r)


def text_bgr(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on a ``background`` BGR colour."""
    b, g, r = background
    luminance = 0.299 * r + 0.587 * g + 0.114 * b
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)
