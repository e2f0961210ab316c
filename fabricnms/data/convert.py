"""Tianchi release folder(s) -> COCO train/val files + ``dataset.yaml`` (``fabricnms convert``).

Pipeline: discover label files and frames (:mod:`fabricnms.data.tianchi`), group boxes by
frame, read each frame's real size from its header, map raw names to the chosen class scheme,
clip boxes to the frame and drop empty ones, de-duplicate, add normal frames without boxes,
split train/val (:mod:`fabricnms.data.split`), build the COCO documents
(:mod:`fabricnms.data.convert_output`). :func:`convert_release` writes nothing;
:func:`~fabricnms.data.convert_output.write_outputs` writes everything atomically (all files or
none), ``dataset.yaml`` last; the records are in :mod:`fabricnms.data.convert_types`. A release
made by ``synth --masks`` has true masks next to its label file (``Annotations/masks.json``);
``dataset.yaml`` lists them under ``masks`` for ``eval --masks`` (training never reads them).

Boxes: Tianchi ``bbox`` is xyxy in frame pixels; COCO ``bbox`` is xywh in frame pixels.
Class ids are 1-based (20 categories or 34 fine classes).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from fabricnms.data.classes import RawClass, resolve_raw
from fabricnms.data.convert_output import coco_categories, coco_split, convert_summary
from fabricnms.data.convert_types import (
    IMAGES_DIR,
    MASKS_JSON,
    ConvertOptions,
    ConvertResult,
    Frame,
    FrameBox,
    Issues,
)
from fabricnms.data.frame_reader import check_frame_file, read_frame_rgb
from fabricnms.data.images import read_image_size
from fabricnms.data.split import stratified_split
from fabricnms.data.tianchi import (
    FrameFile,
    Release,
    TianchiEntry,
    discover,
    pick_frame,
    read_label_file,
)
from fabricnms.errors import FabricError
from fabricnms.log import get_logger

log = get_logger("convert")


def convert_release(sources: list[Path], out: Path, options: ConvertOptions) -> ConvertResult:
    """Read the release folders and build both COCO documents; writes nothing.

    Raises :class:`FabricError` for unusable input (see :mod:`fabricnms.data.tianchi`) and,
    with ``options.strict``, for the first warning.
    """
    if options.scheme not in (20, 34):
        raise FabricError(f"--classes must be 20 or 34, got {options.scheme}")
    if not 0.0 <= options.val_fraction < 1.0:
        raise FabricError(f"--val-fraction must be in [0, 1), got {options.val_fraction}")
    if out.exists() and not out.is_dir():
        raise FabricError(f"{out}: output path exists and is not a folder")
    out = out.resolve()
    release = discover(sources, exclude=[out, out / IMAGES_DIR])
    issues = Issues(options.strict)
    counts: Counter[str] = Counter()
    unknown: Counter[str] = Counter()

    label_counts: list[dict[str, Any]] = []
    groups: dict[str, list[TianchiEntry]] = {}
    for label_file in release.label_files:
        entries = read_label_file(label_file)
        label_counts.append({"path": str(label_file), "entries": len(entries)})
        for entry in entries:
            groups.setdefault(entry.name, []).append(entry)

    frames = [
        frame
        for name, entries in groups.items()
        if (frame := _defect_frame(name, entries, release, options, issues, counts, unknown))
    ]
    frames += _normal_frames(release, set(groups), issues, counts, options.decode)

    image_root = out if options.copy else _common_root(release.sources)
    for frame in frames:
        frame.file_name = (
            f"{IMAGES_DIR}/{frame.name}"
            if options.copy
            else frame.path.relative_to(image_root).as_posix()
        )
    frames.sort(key=lambda f: f.file_name)
    labels = [frozenset(b.category_id for b in f.boxes) for f in frames]
    is_val = stratified_split(labels, options.val_fraction, options.seed)

    categories = coco_categories(options.scheme)
    train = coco_split([f for f, v in zip(frames, is_val, strict=True) if not v], categories)
    val = coco_split([f for f, v in zip(frames, is_val, strict=True) if v], categories)
    summary = convert_summary(
        release, label_counts, frames, is_val, options, counts, unknown, issues, train, val
    )
    masks = [
        f.parent / MASKS_JSON for f in release.label_files if (f.parent / MASKS_JSON).is_file()
    ]
    return ConvertResult(frames, is_val, train, val, image_root, summary, masks)


def _defect_frame(
    name: str,
    entries: list[TianchiEntry],
    release: Release,
    options: ConvertOptions,
    issues: Issues,
    counts: Counter[str],
    unknown: Counter[str],
) -> Frame | None:
    """The frame of one label-file name with its kept boxes, or None when it is left out."""
    classified: list[tuple[TianchiEntry, RawClass]] = []
    for entry in entries:
        raw = resolve_raw(entry.defect_name)
        if raw is None:
            unknown[entry.defect_name] += 1
            counts["box_unknown_class"] += 1
            issues.warn(
                "unknown_class",
                f"{entry.where} ({name}): unknown defect_name {entry.defect_name!r}; box skipped",
            )
        else:
            classified.append((entry, raw))

    files = release.frames.get(name, [])
    if not files:
        counts["image_missing"] += 1
        counts["box_missing_image"] += len(classified)
        issues.warn(
            "missing_image",
            f"{entries[0].where}: image {name} not found under the source folders; "
            f"its {len(entries)} box(es) skipped",
        )
        return None
    chosen = pick_frame(files, entries[0].label_file)
    _note_duplicate_files(name, files, chosen, issues)
    size = _frame_size(chosen, issues, counts, options.decode)
    if size is None:
        counts["box_unreadable_image"] += len(classified)
        return None
    width, height = size

    label_files = sorted({str(e.label_file) for e in entries})
    seen: dict[tuple[float, float, float, float, int], TianchiEntry] = {}
    duplicates = 0
    boxes: list[FrameBox] = []
    for entry, raw in classified:
        category_id = raw.category_id if options.scheme == 20 else raw.fine_id
        key = (*entry.bbox, category_id)
        if key in seen:
            duplicates += 1
            if len(label_files) == 1:
                issues.warn(
                    "duplicate_box",
                    f"{entry.where} ({name}): same box and class as {seen[key].where}; dropped",
                )
            continue
        seen[key] = entry
        box = _clip(entry, width, height, issues, counts)
        if box is not None:
            boxes.append(FrameBox(box, category_id, raw, entry.defect_name))
    counts["box_duplicate"] += duplicates
    if len(label_files) > 1:
        issues.warn(
            "same_name_in_two_parts",
            f"{name}: listed in {len(label_files)} label files ({', '.join(label_files)}); "
            f"entries merged, {duplicates} duplicate box(es) removed",
        )
    if not boxes:
        counts["image_no_boxes_left"] += 1
        issues.warn(
            "image_without_boxes",
            f"{entries[0].where}: image {name} has no usable box left; left out (it is not a "
            "normal frame)",
        )
        return None
    return Frame(name, chosen.path, width, height, boxes)


def _clip(
    entry: TianchiEntry, width: int, height: int, issues: Issues, counts: Counter[str]
) -> tuple[float, float, float, float] | None:
    """Clip an xyxy box to ``[0, width] x [0, height]``; None (a counted warning) when empty."""
    x1, y1, x2, y2 = entry.bbox
    clipped = (
        min(max(x1, 0.0), width),
        min(max(y1, 0.0), height),
        min(max(x2, 0.0), width),
        min(max(y2, 0.0), height),
    )
    if clipped[2] - clipped[0] <= 0 or clipped[3] - clipped[1] <= 0:
        counts["box_empty"] += 1
        issues.warn(
            "empty_box",
            f"{entry.where} ({entry.name}): box {list(entry.bbox)} is empty inside the "
            f"{width}x{height} image; dropped",
        )
        return None
    if clipped != entry.bbox:
        counts["box_clipped"] += 1
        issues.note(
            "clipped_box",
            f"{entry.where} ({entry.name}): box {list(entry.bbox)} clipped to "
            f"{list(clipped)} ({width}x{height} image)",
        )
    return clipped


def _frame_size(
    frame: FrameFile, issues: Issues, counts: Counter[str], decode: bool
) -> tuple[int, int] | None:
    """``(width, height)`` of a frame the reader accepts (a truncated JPEG or an oversized
    header is not; with ``decode`` every frame is decoded too), else None with a warning."""
    try:
        if decode:
            height, width = read_frame_rgb(frame.path).shape[:2]
            return width, height
        return check_frame_file(frame.path) or read_image_size(frame.path)
    except FabricError as exc:
        counts["image_unreadable"] += 1
        issues.warn("unreadable_image", f"{exc}; image skipped")
        return None


def _note_duplicate_files(
    name: str, files: list[FrameFile], chosen: FrameFile, issues: Issues
) -> None:
    if len(files) > 1:
        issues.warn(
            "duplicate_image_file",
            f"{name}: found {len(files)} times ({', '.join(str(f.path) for f in files)}); "
            f"using {chosen.path}",
        )


def _normal_frames(
    release: Release, listed: set[str], issues: Issues, counts: Counter[str], decode: bool
) -> list[Frame]:
    """Frames in normal folders (not in any label file), plus warnings for unlisted defect
    frames (a defect folder holds only labelled frames)."""
    frames = []
    for name, files in sorted(release.frames.items()):
        if name in listed:
            continue
        normal = [f for f in files if f.normal]
        if not normal:
            if any(f.defect_dir for f in files):
                counts["image_unlisted"] += 1
                issues.warn(
                    "unlisted_defect_image",
                    f"{files[0].path}: in a defect folder but in no label file; skipped",
                )
            continue
        chosen = pick_frame(normal, None)
        _note_duplicate_files(name, normal, chosen, issues)
        size = _frame_size(chosen, issues, counts, decode)
        if size is not None:
            frames.append(Frame(name, chosen.path, size[0], size[1]))
    return frames


def _common_root(sources: list[Path]) -> Path:
    """The deepest folder containing every source (the source itself when there is one)."""
    try:
        return Path(os.path.commonpath([str(s) for s in sources]))
    except ValueError:
        raise FabricError(
            "source folders share no common parent (different drives); use --copy"
        ) from None
