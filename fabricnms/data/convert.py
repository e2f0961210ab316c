"""Tianchi release folder(s) -> COCO train/val files + ``dataset.yaml`` (``fabricnms convert``).

Pipeline: discover label files and frames (:mod:`fabricnms.data.tianchi`), group boxes by
frame, read each frame's real size from its header, map raw names to the chosen class scheme,
clip boxes to the frame and drop empty ones, de-duplicate, add normal frames without boxes,
split train/val (:mod:`fabricnms.data.split`), build the COCO documents
(:mod:`fabricnms.data.coco`). :func:`convert_release` writes nothing; :func:`write_outputs`
writes everything atomically (all files or none), ``dataset.yaml`` last. A release made by
``synth --masks`` has true masks next to its label file (``Annotations/masks.json``);
``dataset.yaml`` lists them under ``masks`` for ``eval --masks`` (training never reads them).

Boxes: Tianchi ``bbox`` is xyxy in frame pixels; COCO ``bbox`` is xywh in frame pixels.
Class ids are 1-based (20 categories or 34 fine classes).
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fabricnms.data.classes import (
    ALIASES,
    CATEGORIES,
    CATEGORY_BY_ID,
    RAW_CLASSES,
    RawClass,
    class_names,
    resolve_raw,
)
from fabricnms.data.coco import (
    check_coco,
    coco_annotation,
    coco_dataset,
    coco_image,
    coco_to_json,
)
from fabricnms.data.frame_reader import check_frame_file, read_frame_rgb
from fabricnms.data.images import copy_file, read_image_size
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
from fabricnms.io import atomic_open
from fabricnms.log import get_logger

log = get_logger("convert")

TRAIN_JSON = "annotations/instances_train.json"
VAL_JSON = "annotations/instances_val.json"
DATASET_YAML = "dataset.yaml"
IMAGES_DIR = "images"
MASKS_JSON = "masks.json"
_EXAMPLES_PER_KIND = 3


@dataclass(frozen=True)
class ConvertOptions:
    """What ``fabricnms convert`` was asked to do."""

    scheme: int = 20  # 20 categories or 34 fine classes
    val_fraction: float = 0.2  # in [0, 1)
    seed: int = 0
    copy: bool = False  # copy frames into OUT/images/
    strict: bool = False  # every warning is an error
    decode: bool = False  # decode every frame (else header and JPEG end-marker checks only)


class Issues:
    """Counted warnings (data left out) and notes (data changed but kept), with examples.

    With ``strict`` the first warning raises :class:`FabricError` carrying its message.
    The first few messages of each kind are logged.
    """

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.counts: dict[tuple[str, str], int] = {}
        self.examples: dict[tuple[str, str], list[str]] = {}

    def warn(self, kind: str, message: str) -> None:
        """Record a warning; an error under ``strict``."""
        if self.strict:
            raise FabricError(f"{message} (--strict)")
        self._add("warning", kind, message)

    def note(self, kind: str, message: str) -> None:
        """Record a note (never an error)."""
        self._add("note", kind, message)

    def _add(self, level: str, kind: str, message: str) -> None:
        key = (level, kind)
        self.counts[key] = self.counts.get(key, 0) + 1
        examples = self.examples.setdefault(key, [])
        if len(examples) < _EXAMPLES_PER_KIND:
            examples.append(message)
            (log.warning if level == "warning" else log.debug)(message)

    def as_list(self, level: str) -> list[dict[str, Any]]:
        """``[{kind, count, examples}]`` for one level, in first-seen order."""
        return [
            {"kind": kind, "count": n, "examples": self.examples[(lvl, kind)]}
            for (lvl, kind), n in self.counts.items()
            if lvl == level
        ]


@dataclass(frozen=True)
class FrameBox:
    """One kept box: ``bbox`` xyxy in frame pixels, clipped to the frame, w > 0 and h > 0."""

    bbox: tuple[float, float, float, float]
    category_id: int  # 1-based id in the chosen scheme
    raw: RawClass
    defect_name: str  # as written in the label file


@dataclass
class Frame:
    """One frame of the output: a defect frame with boxes or a normal frame without."""

    name: str  # bare file name
    path: Path
    width: int
    height: int
    boxes: list[FrameBox] = field(default_factory=list)
    file_name: str = ""  # relative to the image root, POSIX separators


@dataclass
class ConvertResult:
    """Everything :func:`write_outputs` needs, plus the summary."""

    frames: list[Frame]  # sorted by file_name
    is_val: list[bool]
    train: dict  # COCO document
    val: dict  # COCO document
    image_root: Path
    summary: dict[str, Any]
    masks: list[Path] = field(default_factory=list)  # true-mask sidecars of the releases


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
    train = _coco_split([f for f, v in zip(frames, is_val, strict=True) if not v], categories)
    val = _coco_split([f for f, v in zip(frames, is_val, strict=True) if v], categories)
    summary = _summary(
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


def coco_categories(scheme: int) -> list[dict[str, Any]]:
    """COCO ``categories`` for the 20-category or 34-fine-class scheme (ids 1-based).

    Each has ``id``, English ``name``, ``supercategory`` (``defect`` for 20 categories, the
    parent category for 34 fine classes), ``zh`` (Chinese name), ``raw_names`` (official raw
    names it covers) and ``aliases`` (spelling variants also accepted).
    """

    def aliases(raw_names: list[str]) -> list[str]:
        return [alias for alias, official in ALIASES.items() if official in raw_names]

    if scheme == 20:
        out = []
        for cat in CATEGORIES:
            raw_names = [r.raw for r in RAW_CLASSES if r.category_id == cat.id]
            out.append(
                {
                    "id": cat.id,
                    "name": cat.name,
                    "supercategory": "defect",
                    "zh": cat.zh,
                    "raw_names": raw_names,
                    "aliases": aliases(raw_names),
                }
            )
        return out
    return [
        {
            "id": r.fine_id,
            "name": r.name,
            "supercategory": CATEGORY_BY_ID[r.category_id].name,
            "zh": r.raw,
            "raw_names": [r.raw],
            "aliases": aliases([r.raw]),
        }
        for r in RAW_CLASSES
    ]


def _coco_split(frames: list[Frame], categories: list[dict[str, Any]]) -> dict:
    """COCO document for one split; ids from 1 in the given (file-name) order."""
    images, annotations = [], []
    for image_id, frame in enumerate(frames, start=1):
        images.append(
            coco_image(image_id, frame.file_name, frame.width, frame.height, name=frame.name)
        )
        for box in frame.boxes:
            x1, y1, x2, y2 = box.bbox
            annotations.append(
                coco_annotation(
                    len(annotations) + 1,
                    image_id,
                    box.category_id,
                    (x1, y1, x2 - x1, y2 - y1),
                    defect_name=box.defect_name,
                    fine_category_id=box.raw.fine_id,
                )
            )
    return coco_dataset(images, annotations, categories, "Tianchi fabric defects (fabricnms)")


def _summary(
    release: Release,
    label_counts: list[dict[str, Any]],
    frames: list[Frame],
    is_val: list[bool],
    options: ConvertOptions,
    counts: Counter[str],
    unknown: Counter[str],
    issues: Issues,
    train: dict,
    val: dict,
) -> dict[str, Any]:
    names = class_names(options.scheme)
    per_class = {name: {"train": 0, "val": 0} for name in names}
    images = {s: {"defect": 0, "normal": 0} for s in ("train", "val")}
    for frame, v in zip(frames, is_val, strict=True):
        split = "val" if v else "train"
        images[split]["defect" if frame.boxes else "normal"] += 1
        for box in frame.boxes:
            per_class[names[box.category_id - 1]][split] += 1
    return {
        "sources": [str(s) for s in release.sources],
        "label_files": label_counts,
        "entries": sum(item["entries"] for item in label_counts),
        "scheme": options.scheme,
        "val_fraction": options.val_fraction,
        "seed": options.seed,
        "images": {
            "defect": images["train"]["defect"] + images["val"]["defect"],
            "normal": images["train"]["normal"] + images["val"]["normal"],
            **images,
        },
        "boxes": {
            "train": len(train["annotations"]),
            "val": len(val["annotations"]),
            "clipped": counts["box_clipped"],
            "per_class": {k: v for k, v in per_class.items() if v["train"] or v["val"]},
        },
        "dropped_boxes": {
            "empty_after_clipping": counts["box_empty"],
            "duplicate": counts["box_duplicate"],
            "unknown_class": counts["box_unknown_class"],
            "image_missing": counts["box_missing_image"],
            "image_unreadable": counts["box_unreadable_image"],
        },
        "skipped_images": {
            "missing": counts["image_missing"],
            "unreadable": counts["image_unreadable"],
            "no_boxes_left": counts["image_no_boxes_left"],
            "unlisted_in_defect_folder": counts["image_unlisted"],
        },
        "unknown_defect_names": dict(unknown.most_common()),
        "warnings": issues.as_list("warning"),
        "notes": issues.as_list("note"),
        "validation": {
            "train": check_coco(train).as_dict(),
            "val": check_coco(val).as_dict(),
        },
    }


def write_outputs(result: ConvertResult, out: Path, options: ConvertOptions) -> dict[str, str]:
    """Copy frames (``--copy``), then write both COCO files and ``dataset.yaml`` together.

    All three are serialised first, written to temp files next to their targets, and only
    renamed over the targets once every temp file is complete (``dataset.yaml`` last): a run
    that fails leaves the previous files untouched and no partial file. Returns the paths.
    """
    import yaml

    out = out.resolve()
    if options.copy:
        log.info("copying %d images to %s", len(result.frames), out / IMAGES_DIR)
        for frame in result.frames:
            copy_file(frame.path, out / frame.file_name)
    names = class_names(options.scheme)
    # Paths relative to the dataset folder: moving the folder together with its sources (or
    # the whole tree to another machine) keeps the dataset usable.
    dataset = {
        "path": ".",
        "image_root": os.path.relpath(result.image_root, out),
        "train": TRAIN_JSON,
        "val": VAL_JSON,
        "nc": len(names),
        "names": names,
        "scheme": options.scheme,
    }
    if result.masks:
        dataset["masks"] = [os.path.relpath(m, out) for m in result.masks]
    texts = {  # renamed in reverse order of this dict
        out / DATASET_YAML: yaml.safe_dump(dataset, sort_keys=False, allow_unicode=True),
        out / VAL_JSON: coco_to_json(result.val, str(out / VAL_JSON)),
        out / TRAIN_JSON: coco_to_json(result.train, str(out / TRAIN_JSON)),
    }
    with contextlib.ExitStack() as stack:
        for path, text in texts.items():
            stack.enter_context(atomic_open(path, "w")).write(text)
    return {
        "train": str(out / TRAIN_JSON),
        "val": str(out / VAL_JSON),
        "dataset_yaml": str(out / DATASET_YAML),
        "image_root": str(result.image_root),
    }
