"""``fabricnms visualize``: batch overlay images of ground truth and/or predictions."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer


class Mode(str, Enum):
    """How ground truth and predictions are drawn."""

    overlay = "overlay"
    compare = "compare"
    side_by_side = "side-by-side"


def visualize(
    source: Annotated[
        str, typer.Argument(help="An image, a folder (searched recursively) or a glob pattern.")
    ],
    annotations: Annotated[
        Path | None,
        typer.Option(
            "--annotations",
            "-a",
            help="Ground truth: a COCO dataset json or a Tianchi anno_train.json.",
            dir_okay=False,
        ),
    ] = None,
    predictions: Annotated[
        Path | None,
        typer.Option(
            "--predictions",
            "-p",
            help="Predictions: a COCO results list (image ids resolved through --annotations "
            "or the images.json beside it) or a Tianchi submission.",
            dir_okay=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output folder [default: runs/visualize/<name>[N]]."),
    ] = None,
    name: Annotated[str, typer.Option(help="Run name under runs/visualize/.")] = "visualize",
    mode: Annotated[
        Mode,
        typer.Option(
            case_sensitive=False,
            help="overlay: boxes and labels; compare: TP green / FP red / FN yellow; "
            "side-by-side: ground truth left, predictions right.",
        ),
    ] = Mode.overlay,
    conf: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Draw predictions scoring at least this.")
    ] = 0.25,
    iou: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="IoU for a true positive (compare mode).")
    ] = 0.5,
    grid: Annotated[
        int, typer.Option(min=0, help="Also write contact sheets with this many overlays each.")
    ] = 0,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Redraw overlays that already exist in --out.")
    ] = False,
) -> None:
    """Draw boxes, labels and masks on frames; write one overlay per frame (and sheets)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from fabricnms.errors import FabricError
    from fabricnms.io import increment_run_dir
    from fabricnms.log import console
    from fabricnms.report.batch import resolve_sources, visualize_batch
    from fabricnms.report.labels import load_labels

    sources = resolve_sources(source)
    gt = load_labels(annotations) if annotations else None
    images_from = annotations if gt is not None and gt.layout == "coco" else None
    pred = load_labels(predictions, images_from) if predictions else None
    if gt is not None and gt.is_prediction:
        raise FabricError(f"{annotations}: holds predictions (scores); pass it as --predictions")
    if pred is not None and not pred.is_prediction and pred.layout != "empty":
        raise FabricError(f"{predictions}: holds ground truth; pass it as --annotations")
    if mode is not Mode.overlay and (gt is None or pred is None):
        raise FabricError(f"--mode {mode.value} needs --annotations and --predictions")
    out_dir = out if out is not None else increment_run_dir(Path("runs") / "visualize", name)

    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
        transient=True,
    )
    with progress:
        task = progress.add_task("drawing", total=len(sources))
        summary = visualize_batch(
            sources,
            out_dir,
            annotations=gt,
            predictions=pred,
            mode=mode.value,
            conf=conf,
            grid=grid,
            overwrite=overwrite,
            iou_threshold=iou,
            advance=lambda: progress.advance(task),
        )
    if summary.drawn + summary.kept == 0:
        raise FabricError(
            f"{source}: no frame could be drawn ({len(summary.unreadable)} unreadable)"
        )
    parts = [f"{summary.drawn} drawn"]
    if summary.kept:
        parts.append(f"{summary.kept} already there (use --overwrite to redraw)")
    if summary.unreadable:
        parts.append(f"{len(summary.unreadable)} unreadable, skipped")
    if summary.sheets:
        parts.append(f"{len(summary.sheets)} contact sheet(s)")
    if mode is Mode.compare:
        o = summary.outcomes
        parts.append(f"TP {o['tp']} FP {o['fp']} FN {o['fn']} at IoU {iou:g}")
    console.print(", ".join(parts), soft_wrap=True, markup=False)
    console.print(f"Results saved to {out_dir}", soft_wrap=True, markup=False)
