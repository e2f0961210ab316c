"""The final files of ``predict``, written detection by detection: the COCO results list
(``bbox`` xywh px), the Tianchi submission (``bbox`` xyxy px) and ``detections.csv`` (one row per
defect, explicit headers). :class:`~fabricnms.engine.writers.ResultWriter` streams its journal
through one :class:`Sink` per format (:func:`open_sink`).
"""

from __future__ import annotations

import csv
import functools
import json
from collections.abc import Callable
from typing import IO, Any, Protocol

from fabricnms.report.calibration import Calibration
from fabricnms.report.records import DetectionRecord, FrameRecord

CSV_COLUMNS: tuple[str, ...] = (
    "frame",
    "image_id",
    "class_id",
    "class_name",
    "score",
    "x1",
    "y1",
    "x2",
    "y2",
)
#: Box width across / height along the roll in mm, box centre across in mm from the left
#: selvage (frame x = 0), box centre along the roll in metres from the roll start.
CSV_CALIBRATED_COLUMNS: tuple[str, ...] = ("w_mm", "h_mm", "x_mm", "y_along_m")
#: Mask area in frame pixels and mask uncertainty (mean binary entropy in bits); written with
#: masks (``mask_area_mm2`` follows when calibrated).
CSV_MASK_COLUMNS: tuple[str, ...] = ("mask_area_px", "mask_uncertainty")


class Sink(Protocol):
    """One output format, fed detection by detection."""

    def write(self, image_id: int, rec: FrameRecord, det: DetectionRecord) -> None: ...

    def close(self) -> None: ...


_RowFn = Callable[[int, FrameRecord, DetectionRecord], dict[str, Any]]


class JsonListSink:
    """A JSON list written one object per line, so it streams and stays diffable."""

    def __init__(self, fh: IO[str], row: _RowFn) -> None:
        self.fh, self.row, self.count = fh, row, 0
        fh.write("[")

    def write(self, image_id: int, rec: FrameRecord, det: DetectionRecord) -> None:
        sep = ",\n" if self.count else "\n"
        self.fh.write(sep + json.dumps(self.row(image_id, rec, det), ensure_ascii=False))
        self.count += 1

    def close(self) -> None:
        self.fh.write("\n]\n")


def coco_row(
    calibration: Calibration | None, image_id: int, rec: FrameRecord, det: DetectionRecord
) -> dict[str, Any]:
    """A COCO result: ``bbox`` xywh px, ``category_id`` 1-based; mask fields when present."""
    x1, y1, x2, y2 = det.box
    row: dict[str, Any] = {
        "image_id": image_id,
        "category_id": det.label + 1,
        "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
        "score": round(det.score, 5),
    }
    if det.rle is not None:
        row["segmentation"] = det.rle
    if det.area is not None:
        row["area"] = det.area
        if calibration is not None:
            row["area_mm2"] = round(calibration.mm2(det.area), 2)
    if det.uncertainty is not None:
        row["mask_uncertainty"] = round(det.uncertainty, 4)
    return row


def tianchi_row(image_id: int, rec: FrameRecord, det: DetectionRecord) -> dict[str, Any]:
    """A Tianchi submission row: ``bbox`` xyxy px, ``category`` 1-based, bare file ``name``."""
    return {
        "name": rec.name,
        "category": det.label + 1,
        "bbox": [round(v, 2) for v in det.box],
        "score": round(det.score, 5),
    }


class CsvSink:
    """``detections.csv``: :data:`CSV_COLUMNS`, then :data:`CSV_CALIBRATED_COLUMNS` with a
    calibration, :data:`CSV_MASK_COLUMNS` with masks (and ``mask_area_mm2`` with both)."""

    def __init__(
        self,
        fh: IO[str],
        class_names: list[str],
        calibration: Calibration | None,
        offsets: dict[str, int],
        masks: bool,
    ) -> None:
        self.writer = csv.writer(fh, lineterminator="\n")
        self.class_names, self.calibration, self.offsets = class_names, calibration, offsets
        self.masks = masks
        columns = CSV_COLUMNS + (CSV_CALIBRATED_COLUMNS if calibration else ())
        if masks:
            columns += CSV_MASK_COLUMNS + (("mask_area_mm2",) if calibration else ())
        self.writer.writerow(columns)

    def write(self, image_id: int, rec: FrameRecord, det: DetectionRecord) -> None:
        x1, y1, x2, y2 = det.box
        row: list[Any] = [
            rec.name,
            image_id,
            det.label + 1,
            self.class_names[det.label],
            f"{det.score:.4f}",
            *(f"{v:.2f}" for v in det.box),
        ]
        cal = self.calibration
        if cal is not None:
            along_px = self.offsets[rec.path] + (y1 + y2) / 2
            row += [
                f"{cal.mm_x(x2 - x1):.1f}",
                f"{cal.mm_y(y2 - y1):.1f}",
                f"{cal.mm_x((x1 + x2) / 2):.1f}",
                f"{cal.mm_y(along_px) / 1000:.4f}",
            ]
        if self.masks:
            area = det.area or 0.0
            row += [f"{area:.0f}", f"{det.uncertainty or 0.0:.4f}"]
            if cal is not None:
                row.append(f"{cal.mm2(area):.2f}")
        self.writer.writerow(row)

    def close(self) -> None:
        """Nothing to add: rows go straight to the atomic file."""


def open_sink(
    fmt: str,
    fh: IO[str],
    class_names: list[str],
    calibration: Calibration | None,
    offsets: dict[str, int],
    masks: bool,
) -> Sink:
    """The sink of format ``fmt`` (``coco``, ``tianchi`` or ``csv``) writing into ``fh``;
    ``offsets``: each frame's position along the roll in px (for the CSV's metres)."""
    if fmt == "coco":
        return JsonListSink(fh, functools.partial(coco_row, calibration))
    if fmt == "tianchi":
        return JsonListSink(fh, tianchi_row)
    return CsvSink(fh, class_names, calibration, offsets, masks)
