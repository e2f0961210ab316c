"""``fabricnms convert``: Tianchi release folder(s) -> COCO train/val + ``dataset.yaml``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer


class ClassScheme(str, Enum):
    """Class schemes: the 20 competition categories or the 34 raw (fine) classes."""

    twenty = "20"
    thirty_four = "34"


def convert(
    sources: Annotated[
        list[Path],
        typer.Argument(
            help="Tianchi release folders (train1, train2, partA, a synth output...), "
            "searched recursively for Annotations/anno_train.json or gt_result.json.",
            metavar="SRC",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path, typer.Argument(help="Output folder for annotations/ and dataset.yaml.", metavar="OUT")
    ],
    classes: Annotated[
        ClassScheme, typer.Option("--classes", help="Class scheme: 20 categories or 34 raw.")
    ] = ClassScheme.twenty,
    val_fraction: Annotated[
        float,
        typer.Option(
            "--val-fraction", min=0.0, max=0.99, help="Fraction of images (per class) for val."
        ),
    ] = 0.2,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the train/val split.")] = 0,
    copy: Annotated[
        bool, typer.Option("--copy", help="Copy the images into OUT/images/ (else referenced).")
    ] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Validate and summarise only; write nothing.")
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Treat every warning (skipped data) as an error.")
    ] = False,
    decode: Annotated[
        bool,
        typer.Option(
            "--decode",
            help="Decode every frame (slower) to find corrupt ones; without it only headers "
            "and JPEG end markers are checked.",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON on stdout.")
    ] = False,
) -> None:
    """Convert Tianchi anno_train.json release folders to COCO train/val files."""
    from fabricnms.data.convert import convert_release
    from fabricnms.data.convert_output import write_outputs
    from fabricnms.data.convert_types import ConvertOptions
    from fabricnms.log import console, print_json

    options = ConvertOptions(
        scheme=int(classes.value),
        val_fraction=val_fraction,
        seed=seed,
        copy=copy,
        strict=strict,
        decode=decode,
    )
    result = convert_release(sources, out, options)
    summary = result.summary
    summary["outputs"] = None if check else write_outputs(result, out, options)
    if as_json:
        print_json(summary)
        return
    _render(summary)
    if check:
        console.print("Checked only (--check): nothing written.")
    else:
        console.print(f"Results saved to {out.resolve()}", markup=False)


def _render(summary: dict[str, Any]) -> None:
    """Rich tables on stderr: images, boxes per class, dropped/skipped, validation."""
    from rich.markup import escape
    from rich.table import Table

    from fabricnms.log import console

    files = ", ".join(f"{f['path']} ({f['entries']})" for f in summary["label_files"])
    files = escape(files)
    console.print(f"Label files: {files}")

    images = Table(title="Images", title_justify="left")
    for col in ("split", "defect", "normal", "boxes"):
        images.add_column(col, justify="right" if col != "split" else "left")
    for split in ("train", "val"):
        row = summary["images"][split]
        images.add_row(split, str(row["defect"]), str(row["normal"]), str(summary["boxes"][split]))
    images.add_row(
        "all",
        str(summary["images"]["defect"]),
        str(summary["images"]["normal"]),
        str(summary["boxes"]["train"] + summary["boxes"]["val"]),
    )
    console.print(images)

    boxes = Table(title=f"Boxes per class ({summary['scheme']} classes)", title_justify="left")
    for col in ("class", "train", "val"):
        boxes.add_column(col, justify="right" if col != "class" else "left")
    for name, row in summary["boxes"]["per_class"].items():
        boxes.add_row(escape(name), str(row["train"]), str(row["val"]))
    console.print(boxes)

    changes = [("boxes clipped to the image (kept)", summary["boxes"]["clipped"])]
    changes += [
        (f"boxes dropped: {k.replace('_', ' ')}", n) for k, n in summary["dropped_boxes"].items()
    ]
    changes += [
        (f"images skipped: {k.replace('_', ' ')}", n) for k, n in summary["skipped_images"].items()
    ]
    changes += [
        (f"unknown defect_name {k!r}", n) for k, n in summary["unknown_defect_names"].items()
    ]
    changes = [(what, n) for what, n in changes if n]
    if changes:
        table = Table(title="Clipped, dropped, skipped", title_justify="left")
        table.add_column("what")
        table.add_column("count", justify="right")
        for what, n in changes:
            table.add_row(escape(what), str(n))
        console.print(table)
    else:
        console.print("Nothing clipped, dropped or skipped.")

    checks = Table(title="Validation", title_justify="left")
    for col in ("split", "images", "no boxes", "boxes", "<=1 px", "out of bounds", "dup ids"):
        checks.add_column(col, justify="right" if col != "split" else "left")
    for split in ("train", "val"):
        v = summary["validation"][split]
        checks.add_row(
            split,
            str(v["images"]),
            str(v["images_without_annotations"]),
            str(v["annotations"]),
            str(v["tiny_boxes"]),
            str(v["out_of_bounds"]),
            str(v["duplicate_ids"]),
        )
    console.print(checks)
    for warning in summary["warnings"]:
        console.print(f"[yellow]warning[/yellow] {warning['kind']}: {warning['count']}")
