"""The ``fabricnms`` command line: thin Typer commands that parse, call the core and render.

Exit codes: 0 success, 1 runtime error (bad input, missing file), 2 usage error, 3 inspection
FAIL where a command offers ``--fail-exit-code``. Heavy libraries (torch, cv2) are imported
inside command bodies so ``--help`` and ``--version`` stay fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from fabricnms import __version__
from fabricnms.cli import adapt as adapt_cmd
from fabricnms.cli import calibrate as calibrate_cmd
from fabricnms.cli import convert as convert_cmd
from fabricnms.cli import eval as eval_cmd
from fabricnms.cli import export as export_cmd
from fabricnms.cli import info as info_cmd
from fabricnms.cli import predict as predict_cmd
from fabricnms.cli import synth as synth_cmd
from fabricnms.cli import train as train_cmd
from fabricnms.cli import visualize as visualize_cmd
from fabricnms.cli.app import STATE, FabricGroup

app = typer.Typer(
    name="fabricnms",
    cls=FabricGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Find defects in woven fabric: synthesize, convert, train, evaluate, predict, report.",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fabricnms {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="More log output.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Warnings and errors only.")] = False,
) -> None:
    """Find defects in woven fabric: synthesize, convert, train, evaluate, predict, report."""
    from fabricnms.log import setup_logging

    STATE.debug = debug
    setup_logging(verbose=verbose, quiet=quiet)


def main() -> None:
    """Console-script entry point."""
    app()


_COMMANDS = (
    (
        "synth",
        synth_cmd.synth,
        "Generate a procedural Tianchi round-1 release (frames, defects, anno_train.json) or, "
        "with --layout roll, consecutive frames of one fabric with COCO labels.json.",
        "fabricnms synth data/synth --images 1000 --workers 2 --seed 0; a roll: fabricnms synth "
        "roll/ --layout roll --images 8 --normal-fraction 0.25 --seed 2026",
    ),
    (
        "convert",
        convert_cmd.convert,
        "Convert Tianchi release folders (anno_train.json) to COCO train/val + dataset.yaml.",
        "fabricnms convert data/train1 data/train2 data/coco --classes 20",
    ),
    (
        "train",
        train_cmd.train,
        "Train the detector (differentiable NMS in the loss); writes runs/train/NAME/.",
        "fabricnms train --data data/coco/dataset.yaml --epochs 30 --tile 640",
    ),
    (
        "eval",
        eval_cmd.eval_cmd,
        "Evaluate a checkpoint: COCO 12 stats, per-class AP, Tianchi score.",
        "fabricnms eval --weights runs/train/train/weights/best.pt --split val",
    ),
    (
        "calibrate",
        calibrate_cmd.calibrate_cmd,
        "Give a checkpoint its operating point (thresholds on the val split) and the statistics "
        "of its fabric (for the fabric-shift warning).",
        "fabricnms calibrate runs/train/train/weights/best.pt --data data/coco/dataset.yaml",
    ),
    (
        "predict",
        predict_cmd.predict,
        "Detect defects in frames or a roll; writes runs/predict/NAME/ (results, overlays, "
        "roll report).",
        "fabricnms predict roll_scans/ --px-per-mm 2 --max-points 28",
    ),
    (
        "adapt",
        adapt_cmd.adapt,
        "Teach a model a new fabric from clean frames of it: defects rendered into them, a "
        "fine-tune, a calibrated operating point; writes runs/adapt/NAME/.",
        "fabricnms adapt clean_frames/ --minutes 10 --name loom3",
    ),
    (
        "export",
        export_cmd.export,
        "Export a checkpoint to ONNX (+ its metadata as .json) for predict/eval with onnxruntime.",
        "fabricnms export --weights runs/train/train/weights/best.pt --format onnx --dynamic",
    ),
    (
        "visualize",
        visualize_cmd.visualize,
        "Draw ground truth and/or predictions on frames; writes runs/visualize/NAME/.",
        "fabricnms visualize frames/ --annotations anno_train.json --grid 16",
    ),
    (
        "info",
        info_cmd.info,
        "Detector size and cost: parameters per part and forward FLOPs at an input size.",
        "fabricnms info --size 2464x1024 --classes 20 --json",
    ),
)

for _name, _func, _help, _example in _COMMANDS:
    app.command(_name, help=_help, epilog=f"Example: {_example}")(_func)
