"""``fabricnms export``: a checkpoint as an ONNX graph plus its metadata, for onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def export(
    weights: Annotated[
        str,
        typer.Option(
            help="Checkpoint (.pt) to export, or 'default' for the shipped model.",
            show_default=False,
        ),
    ],
    fmt: Annotated[str, typer.Option("--format", help="Export format: onnx.")] = "onnx",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Output .onnx file (default: the checkpoint's path with .onnx; "
            "default.onnx here for the shipped model). Its metadata goes beside it as .json.",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    dynamic: Annotated[
        bool,
        typer.Option(
            "--dynamic",
            help="Any input height and width (multiples of 32); default: the --tile size only.",
        ),
    ] = False,
    half: Annotated[
        bool, typer.Option("--half", help="float16 weights and input (for GPU runtimes).")
    ] = False,
    tile: Annotated[
        int,
        typer.Option(min=64, max=8192, help="Network input side of a fixed-size export (px)."),
    ] = 1024,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the written metadata as JSON on stdout.")
    ] = False,
) -> None:
    """Export the detector network to ONNX; predict/eval run it with --weights model.onnx."""
    from fabricnms.api import load
    from fabricnms.log import console, print_json

    model = load(weights)
    result = model.export(out=out, fmt=fmt, dynamic=dynamic, half=half, tile=tile)
    if as_json:
        print_json(result.meta)
    size = result.model.stat().st_size / 2**20
    console.print(
        f"Wrote {result.model} ({size:.1f} MiB) and {result.meta_path.name}",
        markup=False,
        soft_wrap=True,
    )
