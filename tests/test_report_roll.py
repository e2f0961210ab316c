"""Roll report: positions along the roll, cross-frame joins, grading, JSON and HTML files."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from fabricnms.data.classes import class_names
from fabricnms.errors import FabricError
from fabricnms.report.calibration import Calibration
from fabricnms.report.grading import GradingRules
from fabricnms.report.records import DetectionRecord, FrameRecord
from fabricnms.report.roll import RollSettings, build_roll_report
from fabricnms.report.roll_files import write_roll_report

NAMES = class_names(20)
KNOT, HOLE, LOOSE, BROKEN, BAR = 3, 0, 8, 9, 17
H, W = 400, 1000  # frame size in px: 200 mm along x 500 mm across at 2 px/mm


def frame(path: str, *dets: tuple[tuple[float, float, float, float], int, float]) -> FrameRecord:
    return FrameRecord(path, W, H, [DetectionRecord(b, c, s) for b, c, s in dets])


def test_positions_natural_order_and_separate_factors() -> None:
    frames = [
        frame("/roll/f10.jpg", ((100, 40, 120, 60), KNOT, 0.9)),
        frame("/roll/f2.jpg"),
        frame("/roll/f1.jpg", ((500, 200, 520, 220), KNOT, 0.8)),
    ]
    settings = RollSettings(calibration=Calibration(px_per_mm_x=2.0, px_per_mm_y=4.0))
    rep = build_roll_report(frames, NAMES, settings)
    assert [f.name for f in rep.frames] == ["f1.jpg", "f2.jpg", "f10.jpg"]
    assert rep.length_mm == pytest.approx(3 * H / 4.0) and rep.width_mm == pytest.approx(W / 2)
    first, second = rep.defects
    assert (first.frame_index, second.frame_index) == (0, 2)
    assert (first.x1_mm, first.x2_mm) == (250.0, 260.0)  # x / 2 px/mm
    assert first.y1_m == pytest.approx(200 / 4 / 1000)  # frame 0: y / 4 px/mm
    assert second.y1_m == pytest.approx((2 * H + 40) / 4 / 1000)  # frame 2 starts at 800 px
    data = rep.to_dict()
    assert [f["along_start_m"] for f in data["frames"]] == [0.0, 0.1, 0.2]


def test_line_running_through_frames_becomes_one_defect() -> None:
    frames = [
        frame("/r/a1.jpg", ((300, 100, 320, 400), LOOSE, 0.6), ((700, 380, 720, 400), KNOT, 0.9)),
        frame("/r/a2.jpg", ((302, 0, 322, 400), BROKEN, 0.8)),  # compatible warp class
        frame("/r/a3.jpg", ((305, 0, 325, 150), BROKEN, 0.7)),
        frame("/r/a4.jpg", ((306, 0, 326, 50), KNOT, 0.5)),  # incompatible class: separate
    ]
    rep = build_roll_report(frames, NAMES)
    lines = [d for d in rep.defects if len(d.frames) > 1]
    assert len(lines) == 1 and len(rep.defects) == 3
    line = lines[0]
    assert line.frames == ["a1.jpg", "a2.jpg", "a3.jpg"]
    assert line.class_name == "broken_warp" and line.score == 0.8  # best part wins
    assert line.frame_path == "/r/a2.jpg" and line.box_px == (302, 0, 322, 400)
    assert (line.x1_mm, line.x2_mm) == (150.0, 162.5)
    assert line.y1_m == pytest.approx(0.05) and line.y2_m == pytest.approx((800 + 150) / 2000)
    # 450 mm along > 9 in: running, 4 points in each yard touched (0.05..0.475 m: yard 0 only)
    assert line.grade.running and line.grade.points == 4


def test_one_spot_reported_under_two_classes_is_one_defect() -> None:
    """A warp line reported as loose and (a piece of it) as broken warp, and one knot-sized
    spot reported as knot and hole, grade once each; a knot on a bar stays its own defect."""
    frames = [
        frame(
            "/r/c1.jpg",
            ((300, 0, 318, 400), LOOSE, 0.5),
            ((301, 200, 319, 400), BROKEN, 0.6),  # IoU 0.5, IoMin 1 -> 0.75
            ((600, 50, 620, 70), KNOT, 0.7),
            ((602, 52, 621, 71), HOLE, 0.4),
            ((100, 100, 900, 300), BAR, 0.5),
            ((400, 150, 416, 166), KNOT, 0.6),  # inside the bar: IoMin 1, IoU ~0 -> 0.5
        )
    ]
    rep = build_roll_report(frames, NAMES)
    assert sorted(d.class_name for d in rep.defects) == ["bar", "broken_warp", "knot", "knot"]
    line = next(d for d in rep.defects if d.class_name == "broken_warp")
    assert (line.y1_m, line.y2_m) == (0.0, pytest.approx(400 / 2000))  # the union of both
    apart = build_roll_report(frames, NAMES, RollSettings(same_spot_overlap=1.01))
    assert len(apart.defects) == 6


def test_no_join_without_x_overlap_or_edge_contact() -> None:
    frames = [
        frame(
            "/r/b1.jpg", ((300, 100, 320, 400), BROKEN, 0.6), ((600, 100, 620, 380), BROKEN, 0.6)
        ),
        frame("/r/b2.jpg", ((340, 0, 360, 100), BROKEN, 0.8), ((600, 0, 620, 100), BROKEN, 0.6)),
    ]
    rep = build_roll_report(frames, NAMES, RollSettings(edge_tol_px=8))
    assert len(rep.defects) == 4  # x gap at 300-340; 380 ends 20 px above the edge
    joined = build_roll_report(frames, NAMES, RollSettings(edge_tol_px=25))
    assert len(joined.defects) == 3


def test_grading_over_the_roll() -> None:
    frames = [
        frame("/g/1.jpg", ((400, 100, 430, 130), HOLE, 0.9), ((10, 10, 40, 40), KNOT, 0.9)),
        frame("/g/2.jpg", ((100, 100, 900, 150), BAR, 0.7)),
    ]
    rep = build_roll_report(frames, NAMES)
    by_class = {d.class_name: d for d in rep.defects}
    assert by_class["knot"].grade.excluded == "selvage"  # x 5..20 mm, inside 25.4 mm
    assert by_class["hole"].grade.points == 4 and by_class["bar"].grade.points == 4
    assert rep.grade.total_points == 4  # both in yard 0 (0.4 m roll), cap 4
    expected = 4 * 3600 / ((500 / 25.4) * (400 / 914.4))
    assert rep.grade.per_100_yd2 == pytest.approx(expected)
    assert rep.grade.verdict == "FAIL"
    lenient = build_roll_report(frames, NAMES, RollSettings(rules=GradingRules(limit=2000)))
    assert lenient.grade.verdict == "PASS"


def test_across_positions_and_width_start_at_the_fabric_edge_in_view() -> None:
    edged = frame("/e/1.jpg", ((400, 100, 430, 130), HOLE, 0.9))
    edged.cloth = {"box": [200, 0, W, H], "inspected": [328, 0, W, H], "edges": ["left"]}
    rep = build_roll_report([edged, frame("/e/2.jpg")], NAMES)  # 2 px/mm by default
    assert rep.width_mm == pytest.approx(W / 2)  # the widest cloth: the full second frame
    assert (rep.defects[0].x1_mm, rep.defects[0].x2_mm) == (100.0, 115.0)  # (400 - 200) / 2
    alone = build_roll_report([edged], NAMES)
    assert alone.width_mm == pytest.approx((W - 200) / 2)  # the table is not fabric


def test_bad_inputs() -> None:
    with pytest.raises(FabricError, match="no frames"):
        build_roll_report([], NAMES)
    with pytest.raises(FabricError, match=r"/x/1.jpg: class index 25"):
        build_roll_report([frame("/x/1.jpg", ((1, 1, 5, 5), 25, 0.5))], NAMES)


def test_written_report_is_self_contained(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    paths = []
    for k in range(2):
        img = rng.integers(60, 140, (H, W, 3), dtype=np.uint8)
        p = tmp_path / f"frame{k}.jpg"
        cv2.imwrite(str(p), img)
        paths.append(str(p))
    frames = [
        frame(paths[0], ((400, 100, 430, 130), HOLE, 0.9)),
        frame(paths[1], ((600, 200, 640, 230), KNOT, 0.8)),
        frame(str(tmp_path / "missing.jpg"), ((600, 200, 640, 230), KNOT, 0.7)),
    ]
    rep = build_roll_report(frames, NAMES)
    out = write_roll_report(rep, tmp_path / "out")
    data = json.loads(out["json"].read_text())
    assert data["summary"]["verdict"] == rep.grade.verdict
    assert data["roll"]["frames"] == 3 and len(data["defects"]) == 3
    assert data["settings"]["calibration"] == {
        "px_per_mm_x": 2.0,
        "px_per_mm_y": 2.0,
        "assumed": False,
    }
    assert data["settings"]["rules"]["limit"] == 40.0
    d0 = data["defects"][0]
    assert {"along_m", "across_mm", "points", "class_name", "frames", "box_px"} <= set(d0)

    page = out["html"].read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)
    assert "<script" not in page and "<link" not in page
    thumbs = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', page)
    assert len(thumbs) == 2  # the missing frame's defect has none
    jpeg = cv2.imdecode(np.frombuffer(base64.b64decode(thumbs[0]), np.uint8), cv2.IMREAD_COLOR)
    assert jpeg is not None and jpeg.shape[0] > 10
    assert "<svg" in page and f'class="word">{rep.grade.verdict}<' in page
    assert page.count("<tr") == 4  # header + 3 defects
