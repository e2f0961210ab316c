"""``fabricnms synth OUT``: write a procedural Tianchi round-1 release or a roll of frames."""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

SIZE_PATTERN = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


class ClassPrior(str, Enum):
    """How often each category is drawn."""

    tianchi = "tianchi"
    uniform = "uniform"


class Layout(str, Enum):
    """What OUT holds: Tianchi round-1 folders, or consecutive frames of one fabric."""

    release = "release"
    roll = "roll"


class Geometry(str, Enum):
    """Box sizes and class frequencies."""

    real = "real"
    v1 = "v1"


class Fabrics(str, Enum):
    """Which fabric looks the frames draw from."""

    mixed = "mixed"
    tianchi = "tianchi"


class Difficulty(str, Enum):
    """Defect contrast and size."""

    easy = "easy"
    normal = "normal"
    hard = "hard"


def _parse_size(value: str, hint: str = "--size") -> tuple[int, int]:
    match = SIZE_PATTERN.match(value)
    if not match:
        raise typer.BadParameter(f"{value!r} is not WxH, e.g. 2446x1000", param_hint=hint)
    from fabricnms.data.frame_reader import MAX_FRAME_PIXELS

    width, height = int(match.group(1)), int(match.group(2))
    if width * height > MAX_FRAME_PIXELS:  # frames no command would read
        raise typer.BadParameter(
            f"{value!r} is over {MAX_FRAME_PIXELS} pixels, the largest frame fabricnms reads",
            param_hint=hint,
        )
    return width, height


def synth(
    out: Annotated[Path, typer.Argument(help="Output folder (created; must be new or empty).")],
    layout: Annotated[
        Layout,
        typer.Option(
            "--layout",
            help="release: Tianchi round-1 folders, a new fabric per frame; roll: "
            "frame_0001.jpg... of one fabric in scan order + COCO labels.json.",
            case_sensitive=False,
        ),
    ] = Layout.release,
    images: Annotated[int, typer.Option("--images", "-n", help="Number of frames.", min=1)] = 100,
    normal_fraction: Annotated[
        float,
        typer.Option("--normal-fraction", help="Fraction of defect-free frames.", min=0.0, max=1.0),
    ] = 0.38,
    size: Annotated[str, typer.Option("--size", help="Frame size WxH in pixels.")] = "2446x1000",
    seed: Annotated[int, typer.Option("--seed", help="Random seed.", min=0)] = 0,
    classes: Annotated[
        str | None,
        typer.Option(
            "--classes",
            help="Only these categories: comma-separated ids (1-20) or English names.",
        ),
    ] = None,
    difficulty: Annotated[
        Difficulty,
        typer.Option("--difficulty", help="Defect contrast and size.", case_sensitive=False),
    ] = Difficulty.normal,
    class_prior: Annotated[
        ClassPrior,
        typer.Option(
            "--class-prior",
            help="Category frequencies: as in the Tianchi release, or uniform (training sets).",
            case_sensitive=False,
        ),
    ] = ClassPrior.tianchi,
    geometry: Annotated[
        Geometry,
        typer.Option(
            "--geometry",
            help="real: box sizes, class and box-count frequencies measured on 2,396 real "
            "Tianchi boxes; v1: the older hand-set ones (reproduces outputs made before).",
            case_sensitive=False,
        ),
    ] = Geometry.real,
    fabrics: Annotated[
        Fabrics,
        typer.Option(
            "--fabrics",
            help="mixed: a fabric family per frame (Tianchi twill, dark denim, grey greige with "
            "selvedge, line-scan strips, factory grey); tianchi: the Tianchi twill look only "
            "(rolls always use it).",
            case_sensitive=False,
        ),
    ] = Fabrics.mixed,
    workers: Annotated[
        int, typer.Option("--workers", "-w", help="Worker processes (output is identical).", min=1)
    ] = 1,
    masks: Annotated[
        bool,
        typer.Option(
            "--masks",
            help="Also write the true masks: Annotations/masks.json (release), RLE "
            "segmentations in labels.json (roll).",
        ),
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace a previous synth output of this layout in OUT."),
    ] = False,
    background: Annotated[
        list[str] | None,
        typer.Option(
            "--background",
            help="Paint the defects into these real defect-free frames instead of procedural "
            "fabric (files, folders, quoted globs, .txt lists; repeatable; any size, grey or "
            "colour, 8 or 16 bit). Frames take the backgrounds in turn; --size is ignored.",
        ),
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(
            "--window",
            help="With --background: cut WxH windows at seeded positions instead of using "
            "each background whole.",
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Generate synthetic woven-fabric frames with defects: a Tianchi round-1 release, or a roll
    of consecutive frames of one fabric with COCO labels (``--layout roll``). With
    ``--background`` the defects are painted into real defect-free frames; unreadable, tiny or
    blank backgrounds are reported and skipped."""
    from fabricnms.data.synth import ReleaseOptions, validate_options, write_release
    from fabricnms.data.synth_priors import parse_classes
    from fabricnms.engine.sources import discover_frames
    from fabricnms.log import console, print_json

    width, height = _parse_size(size)
    options = ReleaseOptions(
        n_images=images,
        seed=seed,
        width=width,
        height=height,
        normal_fraction=normal_fraction,
        classes=tuple(parse_classes(classes)) if classes is not None else None,
        difficulty=difficulty.value,
        masks=masks,
        class_prior=class_prior.value,
        fabrics=fabrics.value,
        layout=layout.value,
        geometry=geometry.value,
        backgrounds=tuple(str(p) for p in discover_frames(background)) if background else (),
        window=_parse_size(window, "--window") if window is not None else None,
    )
    validate_options(options)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as bar:
        task = bar.add_task("synth", total=images)
        summary = write_release(
            out,
            options,
            workers=workers,
            overwrite=overwrite,
            progress=lambda done: bar.update(task, completed=done),
            warn=lambda line: console.print(f"warning: {line}", markup=False),
        )
    data = summary.to_dict()
    if json_out:
        print_json(data)
    _print_summary(data)


def _size_words(size: list[int] | str) -> str:
    return f"{size[0]}x{size[1]}" if isinstance(size, list) else size


def _print_summary(data: dict) -> None:
    from rich.table import Table

    from fabricnms.data.classes import CATEGORY_BY_NAME
    from fabricnms.log import console

    table = Table(title="boxes per category", title_justify="left")
    table.add_column("id", justify="right")
    table.add_column("category")
    table.add_column("boxes", justify="right")
    for name, count in data["boxes_per_category"].items():
        table.add_row(str(CATEGORY_BY_NAME[name].id), name, str(count))
    console.print(table)
    per_s = data["frames"] / max(data["seconds"], 1e-9)
    console.print(
        f"{data['frames']} frames ({data['defect_frames']} defect, "
        f"{data['normal_frames']} normal), "
        f"{data['boxes']} boxes ({data['boxes_per_frame']} per defect frame), "
        f"{_size_words(data['size'])}, seed {data['seed']}, "
        f"{data['seconds']:.1f} s ({per_s:.2f} frames/s, {data['workers']} workers)"
    )
    if data["backgrounds"]:
        console.print(
            f"Backgrounds: {data['backgrounds']} used, {len(data['skipped_backgrounds'])} skipped"
        )
    console.print(f"Results saved to {data['out_dir']}")
