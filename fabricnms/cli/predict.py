"""``fabricnms predict``: detections for every frame, overlays and a roll report."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fabricnms.cli import nms_options
from fabricnms.config import EDGE_BAND, NMS_METHODS

if TYPE_CHECKING:
    from fabricnms.engine.predict_stream import FrameEvent

THREADS_HELP = (
    "CPU inference threads; 0 = the cores the load average leaves idle (1 on a busy machine), "
    "or OMP_NUM_THREADS when set."
)
#: Runs of at most this many frames print one line per frame; larger ones show a progress bar.
PER_FRAME_LINES_MAX = 50
_OUT = "Output"
_ROLL = "Roll report"
_DET = "Detection"


class Grading(str, Enum):
    """Textile grading system of the roll report."""

    four = "4"
    ten = "10"


def _formats(value: str) -> list[str]:
    from fabricnms.engine.writers import FORMATS
    from fabricnms.errors import UsageError

    items = [v.strip().lower() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in FORMATS]
    if bad or not items:
        raise UsageError(f"--format {value!r}: expected a comma list of {', '.join(FORMATS)}")
    return list(dict.fromkeys(items))


def _info(text: str) -> Any:
    return typer.Option(help=text, show_default=False, rich_help_panel=_ROLL)


def predict(
    sources: Annotated[
        list[str],
        typer.Argument(
            help="Image files, folders, glob patterns or .txt lists of image paths "
            "(JPEG, PNG, BMP, TIFF; 8/16-bit; grey or colour).",
            show_default=False,
        ),
    ],
    weights: Annotated[
        Path | None,
        typer.Option(
            help="Checkpoint or `fabricnms export` .onnx file (default: the shipped model "
            "fabricnms/weights/default.pt).",
            dir_okay=False,
            rich_help_panel=_DET,
        ),
    ] = None,
    conf: Annotated[
        list[str] | None,
        typer.Option(
            help="Keep detections scoring at least this (0.001 for a COCO mAP submission); "
            "CLASS=SCORE sets one class (repeatable: --conf 0.3 --conf hole=0.5). Default: the "
            "checkpoint's calibrated operating point, else 0.25.",
            show_default=False,
            rich_help_panel=_DET,
        ),
    ] = None,
    classes: Annotated[
        str,
        typer.Option(
            help="Keep only these classes (comma list, e.g. hole,stain).",
            show_default=False,
            rich_help_panel=_DET,
        ),
    ] = "",
    nms: Annotated[
        str,
        typer.Option(help=f"Postprocess: {', '.join(NMS_METHODS)}.", rich_help_panel=_DET),
    ] = "dnms",
    max_det: Annotated[
        int, typer.Option(min=1, help="Detections kept per frame.", rich_help_panel=_DET)
    ] = 300,
    iou: nms_options.Iou = 0.5,
    agnostic: nms_options.Agnostic = False,
    top_classes: nms_options.TopClasses = 1,
    vote_iou: nms_options.VoteIou = 0.0,
    edge_band: nms_options.EdgeBand = EDGE_BAND,
    tile: Annotated[
        int,
        typer.Option(
            min=64,
            max=8192,
            help="Tile size in frame pixels (overlapping tiles).",
            rich_help_panel=_DET,
        ),
    ] = 1024,
    overlap: Annotated[
        float,
        typer.Option(min=0.0, max=0.9, help="Tile overlap ratio.", rich_help_panel=_DET),
    ] = 0.2,
    batch: Annotated[
        int, typer.Option(min=1, help="Tiles per forward pass.", rich_help_panel=_DET)
    ] = 4,
    device: Annotated[
        str, typer.Option(help="auto, cpu, cuda or cuda:N.", rich_help_panel=_DET)
    ] = "auto",
    threads: Annotated[
        int,
        typer.Option(min=0, help=THREADS_HELP, rich_help_panel=_DET),
    ] = 0,
    masks: Annotated[
        bool,
        typer.Option(
            "--masks",
            help="Also a refined mask per defect (COCO RLE, area in px and mm², uncertainty); "
            "needs a checkpoint trained with --set masks=true.",
            rich_help_panel=_DET,
        ),
    ] = False,
    recursive: Annotated[
        bool,
        typer.Option("--recursive", "-r", help="Search subfolders of folder sources and ** globs."),
    ] = False,
    shard: Annotated[
        str,
        typer.Option(
            help="Process shard i of n (0-based, e.g. 0/4 ... 3/4): a contiguous block of the "
            "natural-sorted frames, so a scheduler can fan out a large job.",
            show_default=False,
        ),
    ] = "",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Exact output folder (instead of runs/predict/NAME[N]).",
            file_okay=False,
            rich_help_panel=_OUT,
        ),
    ] = None,
    project: Annotated[
        Path, typer.Option(help="Root folder of all runs.", rich_help_panel=_OUT)
    ] = Path("runs"),
    name: Annotated[
        str, typer.Option(help="Run name: runs/predict/NAME, NAME2, ...", rich_help_panel=_OUT)
    ] = "predict",
    formats: Annotated[
        str,
        typer.Option(
            "--format", help="Result files: any of coco,tianchi,csv.", rich_help_panel=_OUT
        ),
    ] = "coco,tianchi,csv",
    overlays: Annotated[
        bool | None,
        typer.Option(
            "--overlays/--no-overlays",
            help="Draw detections on every frame into overlays/ "
            "(default: on for runs of at most 200 frames).",
            show_default=False,
            rich_help_panel=_OUT,
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the run in --out DIR, skipping frames already written.",
            rich_help_panel=_OUT,
        ),
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print the run summary as JSON on stdout.", rich_help_panel=_OUT
        ),
    ] = False,
    roll: Annotated[
        bool | None,
        typer.Option(
            "--roll/--no-roll",
            help="Treat the frames as one roll, top to bottom in file-name order, and write "
            "roll_report.json/.html (default: on when the only source is a folder and no "
            "--shard is given).",
            show_default=False,
            rich_help_panel=_ROLL,
        ),
    ] = None,
    px_per_mm: Annotated[
        float | None,
        typer.Option(
            min=1e-6,
            help="Camera scale on the fabric, pixels per mm (default: 2.0, the Tianchi "
            "2446x1000 frames' 0.5 mm/px). Given, or with a roll report, the CSV gets mm columns.",
            show_default=False,
            rich_help_panel=_ROLL,
        ),
    ] = None,
    grading: Annotated[
        Grading,
        typer.Option(help="Grading system: 4-point or 10-point.", rich_help_panel=_ROLL),
    ] = Grading.four,
    max_points: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Acceptance limit in points per 100 yd² (default: 40 for 4-point; 10-point "
            "uses 100 points per 100 linear yd).",
            show_default=False,
            rich_help_panel=_ROLL,
        ),
    ] = None,
    fail_exit_code: Annotated[
        bool,
        typer.Option(
            "--fail-exit-code", help="Exit with code 3 when the roll FAILs.", rich_help_panel=_ROLL
        ),
    ] = False,
    fail_on_provisional: Annotated[
        bool,
        typer.Option(
            "--fail-on-provisional",
            help="Exit with code 3 on a provisional verdict too (one with caveats, e.g. an "
            "assumed px/mm); implies --fail-exit-code.",
            rich_help_panel=_ROLL,
        ),
    ] = False,
    roll_id: Annotated[str, _info("Roll id, shown in the report's header.")] = "",
    lot: Annotated[str, _info("Lot id, shown in the report's header.")] = "",
    operator: Annotated[str, _info("Operator, shown in the report's header.")] = "",
    date: Annotated[str, _info("Inspection date, shown in the report's header.")] = "",
) -> None:
    """Detect defects in every frame; write COCO/Tianchi/CSV results, overlays, a roll report.

    Exit codes: 0 done (unreadable frames are skipped and listed), 1 error or no frame could be
    read, 2 usage error, 3 roll FAIL with --fail-exit-code (or provisional with
    --fail-on-provisional).
    """
    import cv2

    from fabricnms.cli.predict_summary import render_summary
    from fabricnms.engine.predict import PredictConfig, run_predict
    from fabricnms.engine.thresholds import parse_classes, parse_conf
    from fabricnms.errors import FabricError
    from fabricnms.log import console, print_json
    from fabricnms.report.calibration import DEFAULT_PX_PER_MM

    # decode errors are reported per frame, not as OpenCV log lines
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    if resume and out is None:
        raise typer.BadParameter(
            "needs --out DIR, the folder of the run to continue", param_hint="--resume"
        )
    try:
        base_conf, per_class = parse_conf(conf)
    except FabricError as exc:
        raise typer.BadParameter(str(exc).split(": ", 1)[1], param_hint="--conf") from None
    cfg = PredictConfig(
        sources=list(sources),
        weights="" if weights is None else str(weights),
        conf=base_conf,
        per_class_conf=per_class,
        classes=parse_classes(classes),
        nms=nms,
        max_det=max_det,
        iou=iou,
        agnostic=agnostic,
        top_classes=top_classes,
        vote_iou=vote_iou,
        edge_band=edge_band,
        tile=tile,
        overlap=overlap,
        batch=batch,
        device=device,
        formats=_formats(formats),
        overlays=overlays,
        recursive=recursive,
        shard=shard,
        roll=roll,
        px_per_mm=DEFAULT_PX_PER_MM if px_per_mm is None else px_per_mm,
        calibrated=px_per_mm is not None,
        grading=grading.value,
        max_points=max_points,
        masks=masks,
        threads=threads,
        report_info={"roll_id": roll_id, "lot": lot, "operator": operator, "date": date},
    )
    with _FrameReporter() as reporter:
        result = run_predict(
            cfg, project=project, name=name, out=out, resume=resume, on_frame=reporter
        )
    if as_json:
        print_json(result.summary)
    render_summary(result.summary)
    console.print(f"Results saved to {result.out_dir.resolve()}", markup=False, soft_wrap=True)
    provisional = bool(result.summary["roll"] and result.summary["roll"]["provisional"])
    if (fail_exit_code or fail_on_provisional) and result.verdict == "FAIL":
        raise typer.Exit(3)
    if fail_on_provisional and provisional:
        console.print("Exit 3: the verdict is provisional (--fail-on-provisional)", markup=False)
        raise typer.Exit(3)


class _FrameReporter:
    """One line per frame for small runs; a progress bar (TTY) or a line per 10 % otherwise.
    Skipped frames are always reported; with ``--quiet`` nothing else is."""

    def __init__(self) -> None:
        import logging

        from fabricnms.log import get_logger

        self.quiet = not get_logger().isEnabledFor(logging.INFO)
        self.progress: Any = None
        self.task: Any = None

    def __enter__(self) -> _FrameReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def __call__(self, event: FrameEvent) -> None:
        from fabricnms.log import console

        if event.error is not None or (event.total <= PER_FRAME_LINES_MAX and not self.quiet):
            console.print(frame_line(event), markup=False, soft_wrap=True, highlight=False)
        if event.total <= PER_FRAME_LINES_MAX or self.quiet:
            return
        if console.is_terminal:
            if self.progress is None:
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TimeRemainingColumn,
                )

                self.progress = Progress(
                    "predict",
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeRemainingColumn(),
                    console=console,
                    transient=True,
                )
                self.progress.start()
                self.task = self.progress.add_task("predict", total=event.total)
            self.progress.update(self.task, completed=event.index)
        elif event.index % max(1, event.total // 10) == 0 or event.index == event.total:
            console.print(f"{event.index}/{event.total} frames", markup=False)


def frame_line(event: FrameEvent) -> str:
    """``i/N path WxH: <counts or "no defects">, t ms`` (or ``i/N skipped: <reason>``)."""
    if event.error is not None:
        return f"{event.index}/{event.total} skipped: {event.error}"
    if event.counts:
        found = ", ".join(f"{n} {c}" for c, n in sorted(event.counts.items()))
    else:
        found = "no defects"
    size = f"{event.width}x{event.height}"
    return f"{event.index}/{event.total} {event.path} {size}: {found}, {event.ms:.1f} ms"
