"""Counts and label files of a synthetic release or roll (``anno_train.json``, COCO, README)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fabricnms.data.classes import CATEGORY_BY_ID
from fabricnms.data.coco import coco_annotation, coco_dataset, coco_image
from fabricnms.data.convert_output import coco_categories
from fabricnms.data.synth_canvas import Box
from fabricnms.data.synth_layout import ReleaseOptions
from fabricnms.io import atomic_write_json, atomic_write_text


@dataclass(frozen=True)
class FrameResult:
    name: str  # file name
    normal: bool
    entries: list[tuple[str, Box]]  # (raw name, loose box) per defect
    extras: list[dict]  # per defect: category id, tight box, RLE (when masks are wanted)


@dataclass
class ReleaseSummary:
    """What :func:`write_release` produced (counts keyed by 1-based category id / raw name)."""

    out_dir: Path
    options: ReleaseOptions
    defect_frames: int = 0
    normal_frames: int = 0
    boxes_per_category: dict[int, int] = field(default_factory=dict)
    boxes_per_raw: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    workers: int = 1
    skipped: list[str] = field(default_factory=list)  # backgrounds skipped, one line each

    @property
    def frames(self) -> int:
        return self.defect_frames + self.normal_frames

    @property
    def boxes(self) -> int:
        return sum(self.boxes_per_category.values())

    def count(self, res: FrameResult) -> None:
        """Add one finished frame to the counts (categories and raw names stay sorted)."""
        if res.normal:
            self.normal_frames += 1
            return
        self.defect_frames += 1
        cats = Counter(self.boxes_per_category)
        cats.update(extra["category_id"] for extra in res.extras)
        raws = Counter(self.boxes_per_raw)
        raws.update(raw for raw, _ in res.entries)
        self.boxes_per_category = dict(sorted(cats.items()))
        self.boxes_per_raw = dict(sorted(raws.items()))

    def to_dict(self) -> dict:
        """Plain JSON-ready summary (what ``fabricnms synth --json`` prints)."""
        opts = self.options
        return {
            "out_dir": str(self.out_dir),
            "layout": opts.layout,
            "frames": self.frames,
            "defect_frames": self.defect_frames,
            "normal_frames": self.normal_frames,
            "boxes": self.boxes,
            "boxes_per_frame": round(self.boxes / max(self.defect_frames, 1), 3),
            "boxes_per_category": {
                CATEGORY_BY_ID[c].name: n for c, n in sorted(self.boxes_per_category.items())
            },
            "boxes_per_raw": dict(sorted(self.boxes_per_raw.items())),
            "seed": opts.seed,
            "size": _size(opts),
            "backgrounds": len(opts.backgrounds),
            "skipped_backgrounds": list(self.skipped),
            "normal_fraction": opts.normal_fraction,
            "classes": list(opts.classes) if opts.classes is not None else None,
            "difficulty": opts.difficulty,
            "class_prior": opts.class_prior,
            "geometry": opts.geometry,
            "masks": opts.masks,
            "workers": self.workers,
            "seconds": round(self.seconds, 2),
        }


def _size(opts: ReleaseOptions) -> list[int] | str:
    """Frame size: ``[w, h]``, or in words for frames cut from backgrounds."""
    if not opts.backgrounds:
        return [opts.width, opts.height]
    if opts.window is None:
        return "each background's own"
    return f"windows of {opts.window[0]}x{opts.window[1]} (smaller backgrounds whole)"


def roll_coco(results: Sequence[FrameResult], options: ReleaseOptions) -> dict:
    """The COCO ground truth of a roll: image ids from 1 in roll order, boxes xywh."""
    images, annotations = [], []
    for image_id, res in enumerate(results, start=1):
        images.append(coco_image(image_id, res.name, options.width, options.height))
        for (raw, (x0, y0, x1, y1)), extra in zip(res.entries, res.extras, strict=True):
            annotations.append(
                coco_annotation(
                    len(annotations) + 1,
                    image_id,
                    extra["category_id"],
                    (x0, y0, round(x1 - x0, 2), round(y1 - y0, 2)),
                    segmentation=extra.get("segmentation", []),
                    defect_name=raw,
                )
            )
    description = (
        f"fabricnms synth roll: seed {options.seed}, {options.n_images} frames "
        f"{options.width}x{options.height}, difficulty {options.difficulty}, class prior "
        f"{options.class_prior}"
    )
    return coco_dataset(images, annotations, coco_categories(20), description)


def write_release_annotations(
    out: Path, results: Sequence[FrameResult], summary: ReleaseSummary
) -> None:
    """``Annotations/masks.json`` (with masks), ``README.md`` and, last, ``anno_train.json``."""
    entries: list[dict] = []
    sidecar: dict[str, list[dict]] = {}
    for res in results:
        for (raw, box), extra in zip(res.entries, res.extras, strict=True):
            if summary.options.masks:
                sidecar.setdefault(res.name, []).append(
                    {"entry": len(entries), "defect_name": raw, "bbox": list(box), **extra}
                )
            entries.append({"name": res.name, "defect_name": raw, "bbox": [float(v) for v in box]})
    if summary.options.masks:
        atomic_write_json(
            out / "Annotations" / "masks.json",
            {
                "info": "true defect masks of a fabricnms synth release (COCO RLE), for evaluation",
                "images": sidecar,
            },
            indent=None,
            ensure_ascii=True,
        )
    atomic_write_text(out / "README.md", _readme(summary))
    atomic_write_text(out / "Annotations" / "anno_train.json", annotation_json(entries))


def annotation_json(entries: Sequence[dict]) -> str:
    """``anno_train.json`` text laid out like the official README example: a flat list, keys
    ``name, defect_name, bbox`` in that order, 4-space indent, ``bbox`` on one line, Chinese
    names as ``\\u``-escaped ASCII."""
    items = []
    for e in entries:
        bbox = ", ".join(json.dumps(float(v)) for v in e["bbox"])
        items.append(
            "    {\n"
            f'        "name": {json.dumps(e["name"])},\n'
            f'        "defect_name": {json.dumps(e["defect_name"], ensure_ascii=True)},\n'
            f'        "bbox": [{bbox}]\n'
            "    }"
        )
    return "[\n" + ",\n".join(items) + ("\n]\n" if items else "]\n")


def _backgrounds(opts: ReleaseOptions, summary: ReleaseSummary) -> str:
    """README line: procedural fabric, or how many real backgrounds (and skipped)."""
    if not opts.backgrounds:
        return "none (procedural fabric)"
    return (
        f"{len(opts.backgrounds)} real defect-free frames, defects painted into them "
        f"({len(summary.skipped)} skipped)"
    )


def _readme(summary: ReleaseSummary) -> str:
    """The release's README.md: what was generated, from which options, and the counts."""
    from fabricnms import __version__

    opts = summary.options
    classes = ", ".join(str(c) for c in opts.classes) if opts.classes is not None else "all 20"
    size = _size(opts)
    size = f"{size[0]} x {size[1]}" if isinstance(size, list) else size
    what = (
        "Procedural defects painted into real frames"
        if opts.backgrounds
        else "Procedural fabric and defects"
    )
    lines = [
        "# Synthetic Tianchi round-1 fabric-defect release",
        "",
        f"Generated by `fabricnms synth` (fabricnms {__version__}). {what},",
        "not real data. The layout and `Annotations/anno_train.json` schema follow the 2019",
        "Guangdong fabric-defect round-1 release: one JSON entry per box (`name`, `defect_name`",
        "as an ASCII-escaped raw Chinese name, `bbox` = `[xmin, ymin, xmax, ymax]` pixels);",
        "frames in `normal_Images/` are never listed.",
        "",
        "| option | value |",
        "|---|---|",
        f"| seed | {opts.seed} |",
        f"| images | {opts.n_images} |",
        f"| size (W x H) | {size} |",
        f"| backgrounds | {_backgrounds(opts, summary)} |",
        f"| normal fraction | {opts.normal_fraction} |",
        f"| classes | {classes} |",
        f"| difficulty | {opts.difficulty} |",
        f"| class prior | {opts.class_prior} |",
        f"| box geometry | {opts.geometry} |",
        f"| masks | {'yes (Annotations/masks.json)' if opts.masks else 'no'} |",
        "",
        f"Frames: {summary.frames} ({summary.defect_frames} defect, "
        f"{summary.normal_frames} normal); boxes: {summary.boxes}.",
        "",
        "| category | name | boxes |",
        "|---:|---|---:|",
    ]
    lines += [
        f"| {c} | {CATEGORY_BY_ID[c].name} | {n} |" for c, n in summary.boxes_per_category.items()
    ]
    lines += [
        "",
        "Same seed and options give byte-identical annotations and identical images, whatever",
        "the number of workers.",
        "",
    ]
    return "\n".join(lines)
