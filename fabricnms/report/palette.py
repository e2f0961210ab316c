"""Class colours shared by the overlays (BGR for cv2) and the HTML report (hex).

One colour per class of either scheme (34): every pair at least 25 apart in CIELAB (plainly
different) and each at least 2.5:1 in contrast against white (the HTML report's page), so no
class is drawn in a colour that vanishes. Class index ``i`` (0-based) gets colour
``i % 34``. Fixed outcome colours mark the TP/FP/FN mode.
"""

from __future__ import annotations

CLASS_HEX: tuple[str, ...] = (
    "#e6194b",
    "#3cb44b",
    "#59284d",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#0000f2",
    "#f032e6",
    "#30aaf2",
    "#f26db0",
    "#469990",
    "#12591b",
    "#9a6324",
    "#004359",
    "#800000",
    "#f20000",
    "#808000",
    "#a64b56",
    "#000075",
    "#593b28",
    "#3049f2",
    "#194080",
    "#a6007c",
    "#727272",
    "#f27e6d",
    "#cc9900",
    "#844ba6",
    "#b600f2",
    "#21a674",
    "#590016",
    "#f26de2",
    "#285947",
    "#cc0066",
    "#595012",
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
