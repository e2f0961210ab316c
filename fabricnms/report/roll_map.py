"""The roll report's defect map: the roll as inline SVG strips with every defect on it."""

from __future__ import annotations

import html
import math
from typing import Any

from fabricnms.report.palette import class_bgr, class_hex, text_bgr

MAP_W = 1040  # svg width in px
STRIP_H = 150  # px per map strip (the roll width)
MAX_STRIP_M = 25.0  # metres of roll per strip before the map wraps
MAX_STRIPS = 12
PAD_L, PAD_R, PAD_T, PAD_B = 56, 16, 10, 26


def _nice_step(span: float, target_ticks: int = 10) -> float:
    raw = span / max(target_ticks, 1)
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    return next((m * mag for m in (1, 2, 5, 10) if m * mag >= raw), 10 * mag)


def defect_map_svg(data: dict[str, Any]) -> str:
    """Inline SVG: the roll as strips (x: metres along the roll, y: mm across from the left
    selvage), each defect its true extent plus a marker sized by its points."""
    length_m = max(float(data["roll"]["length_m"]), 1e-6)
    width_mm = max(float(data["roll"]["width_mm"]), 1e-6)
    margin_mm = float(data["summary"]["rules"]["selvage_margin_mm"])
    n_strips = min(MAX_STRIPS, max(1, math.ceil(length_m / MAX_STRIP_M)))
    strip_m = length_m / n_strips
    plot_w = MAP_W - PAD_L - PAD_R
    row_h = STRIP_H + PAD_T + PAD_B
    sx = plot_w / strip_m  # px per metre
    sy = STRIP_H / width_mm  # px per mm
    step = _nice_step(strip_m)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{MAP_W}" height="{n_strips * row_h}" '
        f'viewBox="0 0 {MAP_W} {n_strips * row_h}" role="img" aria-label="defect map">'
    ]
    for s in range(n_strips):
        m0 = s * strip_m
        top = s * row_h + PAD_T
        span_px = min(plot_w, (length_m - m0) * sx)
        parts.append(
            f'<rect x="{PAD_L}" y="{top}" width="{span_px:.1f}" height="{STRIP_H}" '
            'fill="#eef0f2" stroke="#59636e" stroke-width="1"/>'
        )
        for edge in (margin_mm, width_mm - margin_mm):
            y = top + edge * sy
            parts.append(
                f'<line x1="{PAD_L}" y1="{y:.1f}" x2="{PAD_L + span_px:.1f}" y2="{y:.1f}" '
                'stroke="#9aa3ab" stroke-dasharray="4 3" stroke-width="1"/>'
            )
        tick = math.ceil(m0 / step - 1e-9) * step
        while tick <= m0 + strip_m + 1e-9 and tick <= length_m + 1e-9:
            x = PAD_L + (tick - m0) * sx
            parts.append(
                f'<line x1="{x:.1f}" y1="{top + STRIP_H}" x2="{x:.1f}" y2="{top + STRIP_H + 5}" '
                'stroke="#59636e"/>'
                f'<text x="{x:.1f}" y="{top + STRIP_H + 18}" font-size="11" '
                f'text-anchor="middle" fill="#3b444c">{tick:g} m</text>'
            )
            tick += step
        for label, y in (("0", top + 10), (f"{width_mm:.0f} mm", top + STRIP_H)):
            parts.append(
                f'<text x="{PAD_L - 6}" y="{y:.1f}" font-size="10" text-anchor="end" '
                f'fill="#3b444c">{label}</text>'
            )
    markers: list[str] = []
    for d in data["defects"]:
        y1m, y2m = d["along_m"]
        x1, x2 = d["across_mm"]
        s = min(n_strips - 1, int(((y1m + y2m) / 2) // strip_m))
        top = s * row_h + PAD_T
        m0 = s * strip_m
        color = class_hex(d["class_id"] - 1)
        rx = PAD_L + max(0.0, y1m - m0) * sx
        rw = max(3.0, (min(y2m, m0 + strip_m) - max(y1m, m0)) * sx)
        ry, rh = top + x1 * sy, max(3.0, (x2 - x1) * sy)
        cx, cy = PAD_L + ((y1m + y2m) / 2 - m0) * sx, top + (x1 + x2) / 2 * sy
        r = 6 + 1.5 * min(float(d["points"]), 8.0)
        ink = "#fff" if text_bgr(class_bgr(d["class_id"] - 1)) == (255, 255, 255) else "#1d2329"
        tip = html.escape(
            f"#{d['id']} {d['class_name']} {d['score']:.2f} | {y1m:.3f} m, "
            f"{(x1 + x2) / 2:.0f} mm | {d['points']:g} pts"
        )
        faded = ' opacity="0.35"' if d["excluded"] else ""
        parts.append(
            f'<rect x="{rx:.1f}" y="{ry:.1f}" width="{rw:.1f}" height="{rh:.1f}" '
            f'fill="{color}" fill-opacity="0.35" stroke="{color}" stroke-width="1"{faded}/>'
        )
        markers.append(
            f'<g{faded}><title>{tip}</title><circle cx="{cx:.1f}" cy="{cy:.1f}" r="{r:.1f}" '
            f'fill="{color}" stroke="#1d2329" stroke-width="1.2"/>'
            f'<text x="{cx:.1f}" y="{cy + 3.5:.1f}" font-size="10" font-weight="700" '
            f'text-anchor="middle" fill="{ink}">{d["id"]}</text></g>'
        )
    parts.extend(markers)
    parts.append("</svg>")
    return "".join(parts)
