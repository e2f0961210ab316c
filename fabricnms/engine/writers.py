"""Streaming result writers for ``predict``: a per-frame journal, then COCO / Tianchi / CSV.

Each finished frame is appended as one JSON line to ``detections.jsonl`` and flushed, so memory
stays flat over any number of frames and an interrupted run resumes where it stopped
(:meth:`ResultWriter.done_frames`). :meth:`ResultWriter.finalize` streams the journal into the
final files, each written atomically:

- ``predictions.json``: the plain COCO results list ``[{image_id, category_id, bbox, score}]``
  (``bbox`` xywh pixels, ``category_id`` 1-based; with masks also ``segmentation`` (COCO RLE
  of the frame), ``area`` (mask pixels), ``mask_uncertainty`` (bits) and, calibrated,
  ``area_mm2``), and
  ``images.json``: a COCO dataset with the image list and categories (no annotations), so
  ``COCO("images.json").loadRes("predictions.json")`` works;
- ``submission.json``: the Tianchi submission ``[{name, category, bbox, score}]``, ``bbox``
  xyxy pixels, ``category`` 1-based, ``name`` the bare file name;
- ``detections.csv``: one row per defect with explicit headers (the columns are in
  :mod:`fabricnms.engine.writer_sinks`, which writes all three formats row by row).

Journal format: line 1 is a header ``{"journal": "fabricnms-detections", "version": 1,
"class_names": [...]}``; every further line is ``{"image_id", "frame" (absolute path), "width",
"height", "detections": [{"category_id", "bbox" xyxy, "score", "segmentation"?, "area"?,
"mask_uncertainty"?}]}``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from fabricnms.engine.writer_sinks import Sink, open_sink
from fabricnms.errors import FabricError
from fabricnms.io import atomic_open
from fabricnms.log import get_logger
from fabricnms.report.calibration import Calibration
from fabricnms.report.records import DetectionRecord, FrameRecord, along_offsets_px

if TYPE_CHECKING:
    from fabricnms.model.types import Detections

log = get_logger("writers")

FORMATS: tuple[str, ...] = ("coco", "tianchi", "csv")
JOURNAL_NAME = "detections.jsonl"
JOURNAL_MAGIC = "fabricnms-detections"
JOURNAL_VERSION = 1
OUTPUT_NAMES: dict[str, str] = {
    "coco": "predictions.json",
    "images": "images.json",
    "tianchi": "submission.json",
    "csv": "detections.csv",
}


class ResultWriter:
    """Journal frames as they complete; write the final files once at the end.

    Args:
        out_dir: output folder (created).
        class_names: names in 0-based label order (``class_names[i]`` is category ``i + 1``).
        formats: any of :data:`FORMATS`.
        calibration: enables the physical CSV columns (and ``area_mm2`` of masks).
        masks: the detections carry masks: adds the CSV mask columns.
        resume: continue an existing journal in ``out_dir``; without it an existing non-empty
            journal is an error, so earlier results are never silently replaced.

    Frames are identified by absolute path; ``image_id`` is 1-based in journal order. Use as a
    context manager (or call :meth:`close`) so the journal is closed on errors too.
    """

    def __init__(
        self,
        out_dir: str | Path,
        class_names: Iterable[str],
        formats: Iterable[str] = FORMATS,
        calibration: Calibration | None = None,
        resume: bool = False,
        masks: bool = False,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.masks = masks
        self.class_names = list(class_names)
        self.formats = tuple(dict.fromkeys(formats))
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown:
            raise FabricError(
                f"unknown output format {unknown[0]!r}; expected one of {', '.join(FORMATS)}"
            )
        self.calibration = calibration
        self.journal_path = self.out_dir / JOURNAL_NAME
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._done: set[str] = set()
        exists = self.journal_path.exists() and self.journal_path.stat().st_size > 0
        if exists and not resume:
            raise FabricError(
                f"{self.journal_path}: results of an earlier run exist; "
                "resume them or choose a new output folder"
            )
        if exists:
            self._done = self._recover()
        self._journal: IO[str] | None = open(self.journal_path, "a", encoding="utf-8")  # noqa: SIM115
        if not exists:
            header = {
                "journal": JOURNAL_MAGIC,
                "version": JOURNAL_VERSION,
                "class_names": self.class_names,
            }
            self._write_line(header)

    # -- journal -----------------------------------------------------------------------------

    def _recover(self) -> set[str]:
        """Validate an existing journal, cut a torn last line, return the frames it holds."""
        header, frames, good_bytes = _scan_journal(self.journal_path)
        if header.get("class_names") != self.class_names:
            raise FabricError(
                f"{self.journal_path}: journal was written with classes "
                f"{header.get('class_names')}, not {self.class_names}"
            )
        if good_bytes < self.journal_path.stat().st_size:
            log.warning("%s: dropping a partly written last line", self.journal_path)
            with open(self.journal_path, "r+b") as fh:
                fh.truncate(good_bytes)
        return frames

    def _write_line(self, obj: dict[str, Any]) -> None:
        assert self._journal is not None, "writer is closed"
        self._journal.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self._journal.flush()

    def done_frames(self) -> set[str]:
        """Absolute paths (``os.path.abspath``) of the frames already journaled."""
        return set(self._done)

    def is_done(self, frame_path: str | os.PathLike[str]) -> bool:
        """True when ``frame_path`` is already journaled (skip it when resuming)."""
        return os.path.abspath(frame_path) in self._done

    def add(
        self, frame_path: str | os.PathLike[str], width: int, height: int, detections: Detections
    ) -> bool:
        """Journal one frame's detections (xyxy frame pixels, 0-based labels).

        Returns False (and writes nothing) when the frame is already in the journal.
        """
        return self.add_record(FrameRecord.from_detections(frame_path, width, height, detections))

    def add_record(self, record: FrameRecord) -> bool:
        """Journal one :class:`FrameRecord`; False when its frame is already journaled."""
        if record.path in self._done:
            return False
        for det in record.detections:
            if not 0 <= det.label < len(self.class_names):
                raise FabricError(
                    f"{record.path}: class index {det.label} outside 0..{len(self.class_names) - 1}"
                )
        line: dict[str, Any] = {
            "image_id": len(self._done) + 1,
            "frame": record.path,
            "width": record.width,
            "height": record.height,
            "detections": [d.to_json() for d in record.detections],
        }
        if record.fabric_shift is not None:
            line["fabric_shift"] = record.fabric_shift
        if record.cloth is not None:
            line["cloth"] = record.cloth
        self._write_line(line)
        self._done.add(record.path)
        return True

    def records(self) -> Iterator[tuple[int, FrameRecord]]:
        """Stream ``(image_id, FrameRecord)`` from the journal (e.g. for the roll report)."""
        if self._journal is not None:
            self._journal.flush()
        return iter_journal(self.journal_path)

    def close(self) -> None:
        """Close the journal (it stays resumable)."""
        if self._journal is not None:
            self._journal.flush()
            os.fsync(self._journal.fileno())
            self._journal.close()
            self._journal = None

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- final files -------------------------------------------------------------------------

    def finalize(self) -> dict[str, Path]:
        """Close the journal and write the final files atomically; returns ``{kind: path}``."""
        self.close()
        frames = [(rec.path, rec.height, image_id) for image_id, rec in self.records()]
        offsets = along_offsets_px((p, h) for p, h, _ in frames)
        paths: dict[str, Path] = {"journal": self.journal_path}
        if "coco" in self.formats:
            paths["images"] = self.out_dir / OUTPUT_NAMES["images"]
            self._write_images(paths["images"])
        with contextlib.ExitStack() as stack:
            sinks: list[Sink] = []
            for fmt in self.formats:
                paths[fmt] = self.out_dir / OUTPUT_NAMES[fmt]
                fh = stack.enter_context(atomic_open(paths[fmt], "w"))
                sinks.append(
                    open_sink(fmt, fh, self.class_names, self.calibration, offsets, self.masks)
                )
            for image_id, rec in self.records():
                for det in rec.detections:
                    for sink in sinks:
                        sink.write(image_id, rec, det)
            for sink in sinks:
                sink.close()
        return paths

    def _write_images(self, path: Path) -> None:
        """COCO dataset with every journaled frame (zero-detection frames included)."""
        dirs = {os.path.dirname(rec.path) for _, rec in self.records()}
        root = os.path.commonpath(sorted(dirs)) if dirs else str(self.out_dir)
        with atomic_open(path, "w") as fh:
            head = {"description": "fabricnms predict image list", "image_root": root}
            fh.write('{"info": ' + json.dumps(head, ensure_ascii=False) + ',\n"images": [\n')
            for n, (image_id, rec) in enumerate(self.records()):
                image = {
                    "id": image_id,
                    "file_name": os.path.relpath(rec.path, root),
                    "width": rec.width,
                    "height": rec.height,
                    "name": rec.name,
                }
                if rec.fabric_shift is not None:
                    image["fabric_shift"] = rec.fabric_shift
                if rec.cloth is not None:
                    image["cloth"] = rec.cloth
                fh.write((",\n" if n else "") + json.dumps(image, ensure_ascii=False))
            categories = [{"id": i + 1, "name": n} for i, n in enumerate(self.class_names)]
            fh.write('\n],\n"annotations": [],\n"categories": ')
            fh.write(json.dumps(categories, ensure_ascii=False) + "}\n")


def _scan_journal(path: Path) -> tuple[dict[str, Any], set[str], int]:
    """Header, journaled frame paths and the byte length of the intact prefix.

    Only the last line may be broken (a torn write when the run was killed); it is left out
    of the intact prefix so the frame is redone. A broken line anywhere else is an error.
    """
    frames: set[str] = set()
    header: dict[str, Any] = {}
    good = 0
    torn: str | None = None
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, start=1):
            if torn is not None:
                raise FabricError(f"{path}: line {n - 1} is not valid JSON ({torn})")
            try:
                if not raw.endswith(b"\n"):
                    raise ValueError("unterminated line")
                obj = json.loads(raw)
            except ValueError as exc:
                torn = str(exc)
                continue
            if n == 1:
                if not isinstance(obj, dict) or obj.get("journal") != JOURNAL_MAGIC:
                    raise FabricError(f"{path}: line 1 is not a fabricnms detections journal")
                header = obj
            else:
                frames.add(_frame_path(obj, path, n))
            good += len(raw)
    if not header:
        raise FabricError(f"{path}: journal has no header line")
    return header, frames, good


def _frame_path(obj: Any, path: Path, line: int) -> str:
    if not isinstance(obj, dict) or not isinstance(obj.get("frame"), str):
        raise FabricError(f"{path}: line {line} has no 'frame' path")
    return obj["frame"]


def iter_journal(path: str | Path) -> Iterator[tuple[int, FrameRecord]]:
    """Stream ``(image_id, FrameRecord)`` from a journal, skipping its header line.

    A torn (unterminated) last line is ignored, as on resume.
    """
    path = Path(path)
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if n == 1 or not line.endswith("\n"):
                continue
            try:
                obj = json.loads(line)
                record = FrameRecord(
                    path=_frame_path(obj, path, n),
                    width=int(obj["width"]),
                    height=int(obj["height"]),
                    detections=[DetectionRecord.from_json(d) for d in obj["detections"]],
                    fabric_shift=obj.get("fabric_shift"),
                    cloth=obj.get("cloth"),
                )
                yield int(obj["image_id"]), record
            except (ValueError, KeyError, TypeError) as exc:
                raise FabricError(f"{path}: line {n}: bad journal entry ({exc})") from None
