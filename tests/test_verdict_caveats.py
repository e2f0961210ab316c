"""A roll verdict carries its caveats: JSON, HTML, the CLI line, summary.json and the exit code."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import yaml
from helpers_fake import DarkBoxDetector

from fabricnms.data.classes import class_names
from fabricnms.engine.operating_point import ConfChoice, OperatingPoint
from fabricnms.engine.predict import PredictConfig, run_predict
from fabricnms.report.calibration import Calibration
from fabricnms.report.caveats import (
    EMPTY_ROLL_MIN_FRAMES,
    NO_OPERATING_POINT,
    Caveat,
    operating_point_caveats,
    verdict_lines,
)
from fabricnms.report.grading import GradingRules
from fabricnms.report.html import render_roll_html
from fabricnms.report.palette import CLASS_HEX, class_hex
from fabricnms.report.records import DetectionRecord, FrameRecord
from fabricnms.report.roll import RollSettings, build_roll_report

NAMES = class_names(20)


def frames(n: int, with_defect: bool = False) -> list[FrameRecord]:
    out = [FrameRecord(f"/r/f{i}.jpg", 1000, 400) for i in range(n)]
    if with_defect:
        out[0].detections.append(DetectionRecord((100, 100, 120, 120), 3, 0.9))
    return out


def codes(report_data: dict) -> list[str]:
    return [c["code"] for c in report_data["summary"]["caveats"]]


def test_measured_scale_and_confirmed_roll_with_detections_is_not_provisional() -> None:
    data = build_roll_report(frames(6, True), NAMES, RollSettings(Calibration(3.0, 3.0))).to_dict()
    assert data["summary"]["caveats"] == [] and data["summary"]["provisional"] is False


def test_each_assumption_is_one_caveat() -> None:
    settings = RollSettings(Calibration(assumed=True), roll_assumed=True)
    rep = build_roll_report(frames(EMPTY_ROLL_MIN_FRAMES), NAMES, settings)
    data = rep.to_dict()
    assert codes(data) == ["calibration_assumed", "roll_assumed", "no_detections"]
    assert data["summary"]["verdict"] == "PASS" and data["summary"]["provisional"] is True
    assert data["settings"]["calibration"]["assumed"] is True
    # fewer frames, or one detection: the empty-roll caveat goes
    few = build_roll_report(frames(EMPTY_ROLL_MIN_FRAMES - 1), NAMES).to_dict()
    assert codes(few) == []
    assert codes(build_roll_report(frames(9, True), NAMES).to_dict()) == []


def test_other_stages_append_caveats_and_every_view_shows_them() -> None:
    lenient = RollSettings(Calibration(2.0, 2.0), GradingRules(limit=1e9))
    rep = build_roll_report(frames(2, True), NAMES, lenient, {"roll_id": "R-17", "operator": "Ann"})
    rep.caveats.append(Caveat("fabric_shift", "the fabric differs from the training fabric"))
    data = rep.to_dict()
    assert data["roll"]["roll_id"] == "R-17" and "lot" not in data["roll"]
    page = render_roll_html(data, {})
    assert 'class="verdict PASS provisional"' in page and "provisional</div>" in page
    assert "the fabric differs from the training fabric" in page
    assert "roll R-17" in page and "operator Ann" in page and "date not given" in page
    summary = {**data["summary"], "defects": 1, "system": "4pt"}
    lines = verdict_lines(summary)
    assert lines[0].startswith("Roll: PASS (provisional), ")
    assert lines[1] == "  caveat: the fabric differs from the training fabric"
    clean = build_roll_report(frames(2, True), NAMES, lenient)
    assert "provisional</div>" not in render_roll_html(clean.to_dict(), {})


def test_every_class_of_either_scheme_has_its_own_visible_colour() -> None:
    def luminance(h: str) -> float:
        lin = [int(h[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in lin]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    colours = [class_hex(i) for i in range(34)]
    assert len(set(colours)) == 34 == len(CLASS_HEX)
    assert min(1.05 / (luminance(c) + 0.05) for c in colours) >= 2.5  # against white


def test_roll_does_not_import_html() -> None:
    """Building a report (roll) and rendering it (html) depend one way only: html -> roll."""
    source = Path(__file__).parent.parent / "fabricnms" / "report" / "roll.py"
    assert "fabricnms.report.html" not in source.read_text()


def test_predict_states_its_assumptions(tmp_path: Path) -> None:
    folder = tmp_path / "roll"
    folder.mkdir()
    for i in range(EMPTY_ROLL_MIN_FRAMES):  # clean fabric: the fake model finds nothing
        cv2.imwrite(str(folder / f"f{i}.png"), np.full((64, 96, 3), 150, np.uint8))
    cfg = PredictConfig(sources=[str(folder)], overlays=False, report_info={"lot": "L9"})
    result = run_predict(cfg, out=tmp_path / "out", model=DarkBoxDetector(), class_names=NAMES)
    roll = result.summary["roll"]
    assert result.verdict == "PASS" and roll["provisional"] is True
    assert [c["code"] for c in roll["caveats"]] == [
        "calibration_assumed",
        "roll_assumed",
        "no_detections",
        "no_operating_point",  # neither the model nor --conf gave the threshold
    ]
    assert result.summary["px_per_mm_assumed"] is True
    config = yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())
    assert config["calibrated"] is False and config["report_info"]["lot"] == "L9"
    report = json.loads((tmp_path / "out" / "roll_report.json").read_text())
    assert report["summary"]["caveats"] == roll["caveats"] and report["roll"]["lot"] == "L9"
    told = PredictConfig([str(folder)], conf=0.25, overlays=False, roll=True, px_per_mm=2.0)
    told.calibrated = True
    again = run_predict(told, out=tmp_path / "o2", model=DarkBoxDetector(), class_names=NAMES)
    assert [c["code"] for c in again.summary["roll"]["caveats"]] == ["no_detections"]


def test_operating_point_caveats() -> None:
    thin = OperatingPoint(conf=0.3, false_alarms_per_frame=0.0, area_frames=0.5)
    (caveat,) = operating_point_caveats(ConfChoice(thin, "checkpoint"))
    assert caveat.code == "operating_point_unshown"
    assert "0.5 frame-areas" in caveat.message and "about 2 per 2446x1000;" in caveat.message
    assert operating_point_caveats(ConfChoice(thin, "--conf")) == []  # the user chose it
    wide = OperatingPoint(conf=0.3, area_frames=120.0)
    assert operating_point_caveats(ConfChoice(wide, "checkpoint")) == []
    default = OperatingPoint(conf=0.25)
    assert operating_point_caveats(ConfChoice(default, "default")) == [NO_OPERATING_POINT]


def test_a_point_blind_to_painted_defects_is_a_caveat() -> None:
    blind = OperatingPoint(conf=0.5, area_frames=120.0, painted_recall=0.05, painted_defects=40)
    (caveat,) = operating_point_caveats(ConfChoice(blind, "checkpoint"))
    assert caveat.code == "operating_point_blind"
    assert "finds only 5% of 40 defects painted into held-out parts" in caveat.message
    assert "finds 5% of 40 defects painted" in ConfChoice(blind, "checkpoint").line()
    assert operating_point_caveats(ConfChoice(blind, "--conf")) == []  # the user chose it
    seeing = OperatingPoint(conf=0.5, area_frames=120.0, painted_recall=0.1, painted_defects=40)
    assert operating_point_caveats(ConfChoice(seeing, "checkpoint")) == []
    # both doubts at once: too little fabric and blind
    thin = OperatingPoint(conf=0.5, area_frames=0.5, painted_recall=0.0, painted_defects=9)
    codes = [c.code for c in operating_point_caveats(ConfChoice(thin, "checkpoint"))]
    assert codes == ["operating_point_unshown", "operating_point_blind"]
    # stored and read back with the checkpoint; an older point has no check
    assert OperatingPoint.from_dict(blind.to_dict()) == blind
    assert OperatingPoint.from_dict({"conf": 0.4}).painted_recall is None
