"""``fabricnms info``: the detector's size (parameters) and cost (FLOPs) at an input size; with
``--weights``, a checkpoint's own detector and what it carries (operating point, self-check,
fabric statistics)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer

from fabricnms.errors import UsageError

_SIZE = re.compile(r"^\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*$")
#: Largest side: the FLOPs are counted on a real forward pass at that size.
MAX_SIDE = 8192


def parse_size(value: str) -> tuple[int, int]:
    """``"1024"`` -> (1024, 1024); ``"WxH"`` -> (H, W). Both must be positive multiples of 32."""
    match = _SIZE.match(value)
    if not match:
        raise UsageError(f"--size {value!r}: expected N or WxH, e.g. 1024 or 2464x1024")
    w = int(match.group(1))
    h = int(match.group(2)) if match.group(2) else w
    if w <= 0 or h <= 0 or w % 32 or h % 32:
        raise UsageError(f"--size {value!r}: width and height must be positive multiples of 32")
    if max(w, h) > MAX_SIDE:
        raise UsageError(
            f"--size {value!r}: at most {MAX_SIDE} per side (FLOPs come from a real forward pass)"
        )
    return h, w


def _parse_strides(value: str) -> tuple[int, ...]:
    try:
        strides = tuple(sorted({int(s) for s in value.split(",") if s.strip()}))
    except ValueError:
        raise UsageError(f"--strides {value!r}: expected comma-separated integers") from None
    if not strides or any(s not in (4, 8, 16, 32) for s in strides):
        raise UsageError(f"--strides {value!r}: each stride must be one of 4, 8, 16, 32")
    return strides


def info(
    classes: Annotated[
        int, typer.Option("--classes", help="Number of defect classes.", min=1)
    ] = 20,
    size: Annotated[
        str, typer.Option("--size", help="Input size N (square) or WxH, multiples of 32.")
    ] = "1024",
    model_width: Annotated[
        str,
        typer.Option(
            "--model-width",
            help="Preset n, s, m, l (as in train) or an integer backbone width.",
        ),
    ] = "s",
    strides: Annotated[
        str, typer.Option("--strides", help="FPN strides, e.g. 8,16,32.")
    ] = "8,16,32",
    weights: Annotated[
        Path | None,
        typer.Option(
            help="A checkpoint: its own detector (--classes, --model-width and --strides are "
            "ignored) and what it carries: operating point, self-check, fabric statistics.",
            dir_okay=False,
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Build the detector and report parameters per part and forward FLOPs at --size."""
    height, width_px = parse_size(size)
    level_strides = _parse_strides(strides)

    import torch

    from fabricnms.config import model_width_kwargs
    from fabricnms.log import console, print_json
    from fabricnms.model.detector import Detector

    torch.manual_seed(0)
    carried: dict[str, Any] | None = None
    if weights is not None:
        from fabricnms.engine.checkpoint import load_detector

        model, meta = load_detector(weights)
        level_strides = tuple(model.config["strides"])
        carried = _carried(meta)
    else:
        model = Detector(classes, strides=level_strides, **model_width_kwargs(model_width))
    stats = model.complexity(height, width_px)
    locations = sum((height // s) * (width_px // s) for s in level_strides)
    result = {
        "config": model.config,
        "params": stats["params"],
        "params_by_part": stats["params_by_part"],
        "flops": stats["flops"],
        "gflops": round(stats["flops"] / 1e9, 3),
        "input_size": {"height": height, "width": width_px},
        "locations": locations,
    }
    if carried is not None:
        result["checkpoint"] = carried
    if json_out:
        print_json(result)
        return
    from rich.table import Table

    num_classes = model.config["num_classes"]
    table = Table(title=f"Detector at {width_px}x{height} (WxH), {num_classes} classes")
    table.add_column("part")
    table.add_column("parameters", justify="right")
    for part, n in stats["params_by_part"].items():
        table.add_row(part, f"{n:,}")
    table.add_row("total", f"{stats['params']:,}", style="bold")
    console.print(table)
    console.print(
        f"forward: {result['gflops']:.2f} GFLOPs (1 multiply-add = 2 FLOPs), "
        f"{locations:,} locations at strides {', '.join(map(str, level_strides))}"
    )
    if carried is not None:
        say = console.print
        say(f"checkpoint: {carried['path']}", markup=False, soft_wrap=True)
        say(carried["threshold"], markup=False, soft_wrap=True)
        for message in carried["caveats"]:
            say(f"Caveat: {message}", markup=False, soft_wrap=True)
        fabric = carried["fabric_stats"]
        say(
            "fabric statistics: none (no shift warning)"
            if fabric is None
            else f"fabric statistics: {fabric['source']} ({fabric['windows']} tiles), shift "
            f"limit {fabric['limit']:g}",
            markup=False,
            soft_wrap=True,
        )


def _carried(meta: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint carries besides its weights: class names, the operating point with
    the threshold line ``predict`` prints and its caveats, the fabric statistics' summary."""
    from fabricnms.engine.operating_point import OP_KEY, resolve_operating_point
    from fabricnms.engine.shift import STATS_KEY
    from fabricnms.report.caveats import operating_point_caveats

    choice = resolve_operating_point(None, meta)
    stats = meta.get(STATS_KEY)
    return {
        "path": meta["path"],
        "class_names": list(meta["class_names"]),
        "operating_point": meta.get(OP_KEY),
        "threshold": choice.line(),
        "caveats": [c.message for c in operating_point_caveats(choice)],
        "fabric_stats": None
        if not isinstance(stats, dict)
        else {k: stats[k] for k in ("source", "windows", "limit")},
    }
