"""The self-contained ``roll_report.html``: verdict, summary, defect map, defect table.

No external assets: the map is inline SVG and each thumbnail an inline base64 JPEG, so the
file can be mailed, archived or printed as it is. Rendering is deterministic (no timestamps).
"""

from __future__ import annotations

import base64
import html
from typing import TYPE_CHECKING, Any

from fabricnms.log import get_logger
from fabricnms.report.grading import LIMIT_UNIT_LABELS
from fabricnms.report.palette import class_bgr, class_hex
from fabricnms.report.roll_map import defect_map_svg

if TYPE_CHECKING:
    from fabricnms.report.roll import RollReport

log = get_logger("report")

CSS = """
*{box-sizing:border-box}
body{font-family:"DejaVu Sans",Arial,Helvetica,sans-serif;color:#1d2329;margin:24px auto;
 max-width:1100px;padding:0 16px;font-size:14px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:2px solid
 #d5dbe1;padding-bottom:4px}
.sub{color:#5b6670;margin:0 0 16px}
.top{display:flex;gap:20px;align-items:stretch;flex-wrap:wrap}
.verdict{flex:0 0 300px;border-radius:10px;padding:14px 18px;color:#fff;text-align:center}
.verdict .word{font-size:72px;font-weight:800;letter-spacing:4px;line-height:1.1}
.verdict .why{font-size:15px;margin-top:6px}
.PASS{background:#1e8e3e}.FAIL{background:#c5221f}.PASS.provisional{background:#a15c00}
.verdict .prov{font-size:15px;font-weight:700;letter-spacing:2px;text-transform:uppercase}
.caveats{background:#fff4d6;border-left:5px solid #a15c00;padding:8px 14px;margin:12px 0 0}
.caveats li{margin:2px 0}
.facts{flex:1;display:grid;grid-template-columns:repeat(3,1fr);gap:8px}
.fact{background:#f3f5f7;border-radius:8px;padding:8px 12px}
.fact b{display:block;font-size:20px}.fact span{color:#5b6670;font-size:12px}
.rules{color:#5b6670;font-size:12px;margin-top:10px}
.legend{display:flex;flex-wrap:wrap;gap:6px 16px;margin:6px 0 0;font-size:13px}
.sw{display:inline-block;width:12px;height:12px;border:1px solid #333;margin-right:5px;
 vertical-align:-1px}
table{border-collapse:collapse;width:100%;font-size:13px}
td.cls{white-space:nowrap}
th,td{border-bottom:1px solid #e1e5ea;padding:5px 6px;text-align:left;vertical-align:middle}
th{background:#f3f5f7;position:sticky;top:0}
td.n{text-align:right;font-variant-numeric:tabular-nums}
td img{display:block;max-width:200px;max-height:120px;border:1px solid #ccd}
tr.excluded{color:#8a939b}
.pts{font-weight:700}
.note{color:#5b6670;font-size:12px}
svg text{font-family:"DejaVu Sans",Arial,sans-serif}
@media print{body{margin:0;max-width:none}tr{page-break-inside:avoid}
 .top{page-break-after:avoid}th{position:static}}
"""


def defect_thumbnails(report: RollReport, max_thumbnails: int) -> dict[int, str]:
    """Base64 JPEG crops of the ``max_thumbnails`` highest-scoring defects, keyed by defect id.

    Frames are read once each (defects grouped by frame); unreadable frames are skipped.
    """
    import cv2

    from fabricnms.report.compose import crop_thumbnail

    chosen = sorted(report.defects, key=lambda d: -d.score)[: max(0, max_thumbnails)]
    by_frame: dict[str, list[Any]] = {}
    for d in chosen:
        by_frame.setdefault(d.frame_path, []).append(d)
    thumbs: dict[int, str] = {}
    for path, defects in by_frame.items():
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            log.warning("%s: unreadable, its defects get no thumbnail", path)
            continue
        for d in defects:
            crop = crop_thumbnail(image, d.box_px, class_bgr(d.class_id - 1), 200, 120)
            ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 85])
            if ok:
                thumbs[d.id] = base64.b64encode(buf.tobytes()).decode("ascii")
    return thumbs


def _fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def _rules_line(rules: dict[str, Any]) -> str:
    system = "4-point" if rules["system"] == "4pt" else "10-point"
    bits = [
        f"{system} system",
        f"holes: {rules['hole_rule']}" if rules["system"] == "4pt" else "holes: 10 points",
        f"thresholds: {rules['unit_table']}",
        f"cap {rules['cap_points']:g} points per {rules['cap_unit']}",
        f"selvage margin {rules['selvage_margin_mm']:g} mm",
        f"limit {rules['limit']:g} points per {LIMIT_UNIT_LABELS[rules['limit_unit']]}",
    ]
    if rules.get("wide_fabric_ref_in"):
        bits.append(f"wide-fabric cap scaling above {rules['wide_fabric_ref_in']:g} in")
    if rules.get("reject_running_over_yd"):
        bits.append(f"reject running defects over {rules['reject_running_over_yd']:g} yd")
    return " · ".join(bits)


def _caveat_list(caveats: list[dict[str, str]]) -> str:
    if not caveats:
        return ""
    items = "".join(f"<li>{html.escape(c['message'])}</li>" for c in caveats)
    return f"<div class='caveats'><b>Provisional verdict: it rests on</b><ul>{items}</ul></div>"


def render_roll_html(data: dict[str, Any], thumbnails: dict[int, str]) -> str:
    """The report page from :meth:`RollReport.to_dict` output and base64 JPEG thumbnails."""
    roll, summary, defects = data["roll"], data["summary"], data["defects"]
    rules = summary["rules"]
    esc = html.escape
    verdict = summary["verdict"]
    caveats = summary.get("caveats", [])
    ident = [
        f"{label} {esc(str(roll[key]))}"
        for key, label in (("roll_id", "roll"), ("lot", "lot"), ("operator", "operator"))
        if roll.get(key)
    ] + [f"date {esc(str(roll['date']))}" if roll.get("date") else "date not given"]
    why = [
        f"{_fmt(summary['score'])} points per {LIMIT_UNIT_LABELS[summary['limit_unit']]} "
        f"(limit {summary['limit']:g})"
    ]
    if summary["reasons"]:
        why = summary["reasons"]
    cal = data["settings"]["calibration"]
    facts = [
        (_fmt(roll["length_m"], 2) + " m", "roll length"),
        (_fmt(roll["width_mm"], 0) + " mm", "width"),
        (_fmt(roll["area_m2"], 2) + " m²", "area"),
        (f"{summary['graded_defects']} / {summary['defects']}", "graded / detected defects"),
        (_fmt(summary["total_points"], 0), "total points (after caps)"),
        (str(roll["frames"]), "frames"),
        (_fmt(summary["points_per_100_yd2"]), "points per 100 yd²"),
        (_fmt(summary["points_per_100_m2"]), "points per 100 m²"),
        (_fmt(summary["points_per_100_linear_yd"]), "points per 100 linear yd"),
    ]
    counts = summary["defects_by_class"]
    ids = {d["class_name"]: d["class_id"] for d in defects}
    legend = "".join(
        f'<span><i class="sw" style="background:{class_hex(ids[n] - 1)}"></i>{esc(n)} ({c})</span>'
        for n, c in sorted(counts.items(), key=lambda kv: ids[kv[0]])
    )
    rows = []
    for d in defects:
        thumb = thumbnails.get(d["id"])
        img = f'<img alt="defect {d["id"]}" src="data:image/jpeg;base64,{thumb}">' if thumb else ""
        notes = []
        if d["excluded"]:
            notes.append(f"excluded ({d['excluded']})")
        if d["running"]:
            notes.append(f"running: {len(d['cap_units'])} {rules['cap_unit']}")
        if len(d["frames"]) > 1:
            notes.append(f"spans {len(d['frames'])} frames")
        frames = esc(d["frame"]) + (f" +{len(d['frames']) - 1}" if len(d["frames"]) > 1 else "")
        swatch = f'<i class="sw" style="background:{class_hex(d["class_id"] - 1)}"></i>'
        rows.append(
            f'<tr class="{"excluded" if d["excluded"] else ""}">'
            f'<td class="n">{d["id"]}</td><td>{img}</td>'
            f"<td class='cls'>{swatch}{esc(d['class_name'])}</td>"
            f'<td class="n">{d["score"]:.2f}</td>'
            f'<td class="n">{d["along_m"][0]:.3f}</td>'
            f'<td class="n">{(d["across_mm"][0] + d["across_mm"][1]) / 2:.0f}</td>'
            f'<td class="n">{d["width_mm"]:.0f} × {d["length_mm"]:.0f}</td>'
            f"<td>{d['direction']}</td>"
            f'<td class="n pts">{d["points"]:g}</td>'
            f"<td>{frames}</td><td class='note'>{esc('; '.join(notes))}</td></tr>"
        )
    table = (
        "<table><thead><tr><th>#</th><th>thumbnail</th><th>class</th><th>score</th>"
        "<th>along (m)</th><th>across (mm)</th><th>size w × l (mm)</th><th>direction</th>"
        "<th>points</th><th>frame</th><th>note</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
        if rows
        else "<p>No defects detected.</p>"
    )
    reasons = "".join(f"<div class='why'>{esc(r)}</div>" for r in why)
    missing = sum(1 for d in defects if d["id"] not in thumbnails)
    thumb_note = (
        f"<p class='note'>{missing} defect(s) shown without a thumbnail.</p>"
        if thumbnails and missing
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Roll report {esc(verdict)}: {esc(roll["first_frame"])}</title>
<style>{CSS}</style></head><body>
<h1>Roll inspection report</h1>
<p class="sub">{" · ".join(ident)}<br>Frames {esc(roll["first_frame"])} … {
        esc(roll["last_frame"])
    } ·
fabricnms {esc(data["fabricnms_version"])} · calibration {cal["px_per_mm_x"]:g} px/mm across,
{cal["px_per_mm_y"]:g} px/mm along{" (assumed)" if cal.get("assumed") else ""}</p>
<div class="top"><div class="verdict {verdict}{" provisional" if caveats else ""}">
<div class="word">{verdict}</div>{"<div class='prov'>provisional</div>" if caveats else ""}
{reasons}</div>
<div class="facts">{
        "".join(f"<div class='fact'><b>{esc(v)}</b><span>{esc(k)}</span></div>" for v, k in facts)
    }</div></div>
{_caveat_list(caveats)}
<div class="rules">Rules: {esc(_rules_line(rules))}</div>
<h2>Defect map</h2>
<p class="note">Horizontal: metres along the roll from its start; vertical: across the width
from the left selvage (dashed: selvage margin). Markers are numbered as in the table and sized
by points; faded markers are excluded from grading.</p>
{defect_map_svg(data)}
<div class="legend">{legend}</div>
<h2>Defects</h2>
{thumb_note}{table}
</body></html>
"""
