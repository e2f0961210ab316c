"""The frame loop of ``predict``: read, detect, journal and draw frames one by one, in order.

:func:`stream_frames` reads each frame lazily with
:func:`~fabricnms.data.frame_reader.read_frame_rgb`, feeds
:func:`~fabricnms.engine.tiling.detect_frames` (which batches tiles across consecutive frames),
journals each result through the :class:`~fabricnms.engine.writers.ResultWriter`, draws its
overlay and reports a :class:`FrameEvent`. An unreadable frame is reported and skipped.

A frame's ``ms`` is its own time, not the time since the previous line (frames finished by one
tile batch would otherwise show all but the first as a few ms): :class:`FrameClock` charges its
decode, its windows' share of each forward pass, the rest of tiled detection while it is the
frame being cut (candidate selection, merging, NMS), its journal line and overlay.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fabricnms.data.frame_reader import FrameReadError, read_frame_rgb
from fabricnms.engine.operating_point import OperatingPoint
from fabricnms.engine.predict_summary import RunStats
from fabricnms.engine.prefetch import Prefetch
from fabricnms.engine.shift import FabricStats, FeatureTap
from fabricnms.engine.tiling import TileSettings, detect_frames, tile_windows, warm_up
from fabricnms.engine.writers import ResultWriter
from fabricnms.log import get_logger
from fabricnms.report.records import FrameRecord

log = get_logger("predict")


@dataclass
class FrameEvent:
    """One finished (or skipped) frame, for progress output. ``index`` is 1-based in this run;
    ``counts`` maps class name -> detections; ``ms`` is the frame's own processing time;
    ``error`` is set for a skipped frame."""

    index: int
    total: int
    path: Path
    width: int = 0
    height: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    ms: float = 0.0
    error: str | None = None


class FrameClock:
    """Per-frame own time, frames keyed by their 1-based index.

    Each interval since the last :meth:`charge` goes to the current frame (the latest one
    started; once it is reported, to the next one), except forward passes: a batch of tile
    windows is shared by consecutive frames, so :meth:`forward_done` gives each frame the part
    of the pass its windows took (windows are batched first in, first out, as queued by
    :meth:`queue_windows`)."""

    def __init__(self) -> None:
        self.seconds: dict[int, float] = {}
        self.current = 0
        self.reported = 0
        self.mark = time.perf_counter()
        self.windows: deque[list[int]] = deque()  # [frame index, windows not yet batched]

    def _add(self, index: int, seconds: float) -> None:
        self.seconds[index] = self.seconds.get(index, 0.0) + seconds

    def _key(self) -> int:
        return self.current if self.current > self.reported else self.reported + 1

    def charge(self) -> None:
        """Add the time since the last charge to the current frame."""
        now = time.perf_counter()
        self._add(self._key(), now - self.mark)
        self.mark = now

    def start(self, index: int) -> None:
        """Charge the interval so far, then make ``index`` the current frame."""
        self.charge()
        self.current = index

    def queue_windows(self, index: int, count: int) -> None:
        """Frame ``index`` will send ``count`` tile windows through the detector."""
        self.windows.append([index, count])

    def forward_done(self, batch: int, seconds: float) -> None:
        """A forward pass over the next ``batch`` queued windows took ``seconds``."""
        self.charge()
        self._add(self._key(), -seconds)  # handed out by windows instead
        left = batch
        while left > 0 and self.windows:
            entry = self.windows[0]
            used = min(left, entry[1])
            self._add(entry[0], seconds * used / batch)
            entry[1] -= used
            left -= used
            if entry[1] == 0:
                self.windows.popleft()

    def pop_ms(self, index: int) -> float:
        """The frame's total in milliseconds (forgotten afterwards)."""
        self.reported = max(self.reported, index)
        return 1000.0 * self.seconds.pop(index, 0.0)


class TimedModel(nn.Module):
    """Wraps a detector; adds up the wall time of its forward passes (CUDA synchronised) and
    shares each pass among the frames of its windows (:meth:`FrameClock.forward_done`)."""

    def __init__(self, model: nn.Module, device: torch.device, clock: FrameClock) -> None:
        super().__init__()
        self.model = model
        self.sync = device.type == "cuda"
        self.clock = clock
        self.seconds = 0.0

    def forward(self, images: torch.Tensor) -> Any:
        start = time.perf_counter()
        out = self.model(images)
        if self.sync:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        self.seconds += seconds
        self.clock.forward_done(int(images.shape[0]), seconds)
        return out


@dataclass
class _Pending:
    index: int
    path: Path
    image: np.ndarray | None = None
    error: str | None = None


def stream_frames(
    model: nn.Module,
    class_names: list[str],
    todo: list[Path],
    writer: ResultWriter,
    settings: TileSettings,
    device: torch.device,
    overlay_paths: dict[Path, Path] | None,
    on_frame: Callable[[FrameEvent], None] | None,
    model_meta: tuple[OperatingPoint, FabricStats | None],
    prefetch: int = 1,
) -> RunStats:
    """Read, detect, journal and (with ``overlay_paths``: frame -> JPEG path) draw ``todo``;
    keep the detections above the operating point's thresholds; score each frame's
    ``fabric_shift`` against the fabric statistics (when the model has them)."""
    point, fabric = model_meta
    settings = dataclasses.replace(settings, conf=point.floor())
    tap = FeatureTap(model if fabric is not None else None)
    stats = RunStats()
    clock = FrameClock()
    timed = TimedModel(model, device, clock).eval()
    pending: deque[_Pending] = deque()
    total = len(todo)
    warm_up(settings, len(class_names))
    start = time.perf_counter()

    def decoded() -> Iterator[tuple[int, np.ndarray, float]]:
        """Runs in the prefetch thread: (index, image, decode seconds) of readable frames."""
        for i, path in enumerate(todo, start=1):
            t0 = time.perf_counter()
            try:
                image = read_frame_rgb(path)
            except FrameReadError as exc:
                pending.append(_Pending(i, path, error=str(exc)))
                continue
            finally:
                stats.read_s += time.perf_counter() - t0
            pending.append(_Pending(i, path, image=image))
            yield i, image, time.perf_counter() - t0

    def images() -> Iterator[np.ndarray]:
        """In the caller's thread, as detection pulls each frame: its clock starts there."""
        for i, image, seconds in source:
            clock.start(i)
            clock.seconds[i] = clock.seconds.get(i, 0.0) + seconds  # its decode
            height, width = image.shape[:2]
            clock.queue_windows(
                i, len(tile_windows(width, height, settings.tile, settings.overlap))
            )
            yield image

    def report(event: FrameEvent) -> None:
        if on_frame is not None:
            on_frame(event)

    def drain_errors() -> None:
        while pending and pending[0].error is not None:
            item = pending.popleft()
            stats.skipped.append({"path": str(item.path), "error": item.error or ""})
            log.debug("skipped %s", item.error)
            ms = clock.pop_ms(item.index)
            report(FrameEvent(item.index, total, item.path, error=item.error, ms=ms))

    source = Prefetch(decoded(), prefetch)
    detections = detect_frames(timed, images(), settings, device)
    while True:
        t0 = time.perf_counter()
        det = next(detections, None)
        clock.charge()
        stats.detect_s += time.perf_counter() - t0
        drain_errors()
        if det is None:
            break
        item = pending.popleft()
        assert item.image is not None
        height, width = item.image.shape[:2]
        t1 = time.perf_counter()
        det = point.select(det.to("cpu"), class_names)
        record = FrameRecord.from_detections(item.path, width, height, det)
        record.cloth = det.cloth.to_dict(settings.edge_band) if det.cloth else None
        if fabric is not None:
            desc = tap.take_frame(width, height, settings.tile, settings.overlap, det.cloth)
            record.fabric_shift = fabric.frame_score(desc)
        writer.add_record(record)
        if overlay_paths is not None:
            draw_overlay(item.image, record, class_names, overlay_paths[item.path])
        t2 = time.perf_counter()
        stats.write_s += t2 - t1
        clock.mark = t2
        counts = Counter(class_names[c] for c in det.labels.tolist())
        stats.add_frame(height)
        ms = clock.pop_ms(item.index) + 1000.0 * (t2 - t1)
        report(FrameEvent(item.index, total, item.path, width, height, dict(counts), ms))
    tap.close()
    source.close()
    stats.infer_s = timed.seconds
    stats.wait_s = source.wait_s
    stats.wall_s = time.perf_counter() - start
    return stats


def draw_overlay(
    image: np.ndarray, record: FrameRecord, class_names: list[str], path: Path
) -> None:
    """Boxes, class names, scores and masks (when present) on the RGB ``image``, as a JPEG;
    where the frame shows the fabric's edge, what was not inspected is veiled."""
    import cv2

    from fabricnms.report.batch import write_jpeg
    from fabricnms.report.overlay import draw_boxes, veil_outside

    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if record.cloth is not None:
        veil_outside(bgr, record.cloth["inspected"])
    dets = record.detections
    drawn = draw_boxes(
        bgr,
        [d.box for d in dets],
        [d.label for d in dets],
        class_names,
        [d.score for d in dets],
        segmentations=[d.rle for d in dets],
    )
    write_jpeg(path, drawn)
