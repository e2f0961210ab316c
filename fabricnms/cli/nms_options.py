"""The postprocess knobs shared by ``eval`` and ``predict``: suppression (see
:class:`fabricnms.model.nms.NmsSettings`) and the fabric-edge band (:mod:`fabricnms.data.cloth`)."""

from __future__ import annotations

from typing import Annotated

import typer

_PANEL = "Suppression knobs"

Iou = Annotated[
    float,
    typer.Option(
        min=0.01,
        max=1.0,
        help="greedy: a kept box suppresses another of its class overlapping it by more IoU.",
        rich_help_panel=_PANEL,
    ),
]
Agnostic = Annotated[
    bool,
    typer.Option("--agnostic", help="Suppress across classes.", rich_help_panel=_PANEL),
]
TopClasses = Annotated[
    int,
    typer.Option(
        min=1,
        help="Classes per detection: greedy / soft take each candidate's best classes; dnms "
        "adds each detection's next best classes, scored by their plan evidence.",
        rich_help_panel=_PANEL,
    ),
]
VoteIou = Annotated[
    float,
    typer.Option(
        min=0.0,
        max=1.0,
        help="greedy: score-weighted box voting over the boxes with at least this IoU to a "
        "kept one (0: off).",
        rich_help_panel=_PANEL,
    ),
]
EdgeBand = Annotated[
    int,
    typer.Option(
        min=-1,
        help="Where a frame shows the fabric's edge (a table, roller or blank scan beyond it), "
        "detections on the background or within this many px inside the edge (the selvedge) "
        "are not reported; -1: do not look for edges.",
        rich_help_panel=_PANEL,
    ),
]
