"""What ``fabricnms convert`` writes: the COCO categories of a class scheme, the COCO document
of each split, the run summary, and the files themselves (atomically, all or none,
``dataset.yaml`` last).

COCO ``bbox`` is xywh in frame pixels (from the xyxy :class:`~fabricnms.data.convert_types.
FrameBox`); image and annotation ids are 1-based in file-name order.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from pathlib import Path
from typing import Any

from fabricnms.data.classes import (
    ALIASES,
    CATEGORIES,
    CATEGORY_BY_ID,
    RAW_CLASSES,
    class_names,
)
from fabricnms.data.coco import check_coco, coco_annotation, coco_dataset, coco_image, coco_to_json
from fabricnms.data.convert_types import (
    DATASET_YAML,
    IMAGES_DIR,
    TRAIN_JSON,
    VAL_JSON,
    ConvertOptions,
    ConvertResult,
    Frame,
    Issues,
)
from fabricnms.data.images import copy_file
from fabricnms.data.tianchi import Release
from fabricnms.io import atomic_open
from fabricnms.log import get_logger

log = get_logger("convert")


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


def coco_split(frames: list[Frame], categories: list[dict[str, Any]]) -> dict:
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


def convert_summary(
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
    """The run summary ``fabricnms convert`` prints and saves: sources, counts per split and
    class, dropped boxes and skipped images by reason, warnings, notes, COCO checks."""
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
