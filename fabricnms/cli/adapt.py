"""``fabricnms adapt``: fine-tune a model to a new fabric from clean frames of it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from fabricnms.engine.operating_point import OperatingPoint


def adapt(
    sources: Annotated[
        list[str],
        typer.Argument(
            help="Clean frames of the fabric (files, folders, globs or .txt lists); up to ten "
            "2446x1000 frames' worth are used (more are thinned, spread evenly). One frame is "
            "enough.",
            show_default=False,
        ),
    ],
    weights: Annotated[
        Path | None,
        typer.Option(help="Start checkpoint (default: the shipped model).", dir_okay=False),
    ] = None,
    name: Annotated[str, typer.Option(help="Run name: runs/adapt/NAME, NAME2, ...")] = "adapt",
    project: Annotated[Path, typer.Option(help="Root folder of all runs.")] = Path("runs"),
    minutes: Annotated[
        float, typer.Option(min=1.0, help="Time budget of the whole run, minutes.")
    ] = 10.0,
    false_alarms: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="False alarms allowed per 2446x1000 px of the held-out clean fabric: the "
            "operating point is the lowest threshold within it. Per frame of another size it is "
            "F x W x H / 2446000: 0.1 is 0.011 per 512x512 crop; 1 per such crop is 9.33.",
        ),
    ] = 0.1,
    window: Annotated[
        int, typer.Option(min=128, max=2048, help="Training window side, px (shrunk to fit).")
    ] = 512,
    seed: Annotated[int, typer.Option(help="Seed of the windows, defects and training.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "cpu",
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="Search subfolders of folder sources.")
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the newest runs/adapt/NAME* run.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Render defects into windows of the clean frames, fine-tune, calibrate on held-out parts."""
    from fabricnms.engine.adapt import AdaptConfig, run_adapt
    from fabricnms.engine.operating_point import ConfChoice, OperatingPoint
    from fabricnms.log import console, print_json
    from fabricnms.report.caveats import operating_point_caveats

    cfg = AdaptConfig(
        sources=list(sources),
        weights="" if weights is None else str(weights),
        minutes=minutes,
        false_alarms=false_alarms,
        window=window,
        seed=seed,
        device=device,
        recursive=recursive,
    )
    result = run_adapt(cfg, project=project, name=name, resume=resume)
    if as_json:
        print_json(result.summary)
    s = result.summary
    point = OperatingPoint.from_dict(s["operating_point"])
    say = console.print
    say(
        f"Adapted in {s['minutes']:g} min ({s['epochs']} epochs on {s['window']}-px windows); "
        f"operating point conf {point.conf:g} (at most {point.false_alarms_per_frame:g} false "
        f"alarms per 2446x1000, {_per_frame(point, s['frame_sizes'])}, on "
        f"{point.area_frames:g} frame-areas of held-out clean fabric), "
        f"fabric-shift limit {s['shift_limit']:g}",
        markup=False,
        soft_wrap=True,
    )
    if point.painted_recall is not None:
        say(
            f"Self-check: at that point it finds {point.painted_recall:.0%} of "
            f"{point.painted_defects} defects painted into held-out parts of the clean frames "
            "(generated defects: a low share is a warning, a high one no promise about real ones)",
            markup=False,
            soft_wrap=True,
        )
    for caveat in operating_point_caveats(ConfChoice(point, "checkpoint")):
        say(f"Caveat: {caveat.message}", markup=False, soft_wrap=True)
    say(f"Adapted weights: {result.weights}", markup=False, soft_wrap=True)
    say(f"Next: fabricnms predict FRAMES --weights {result.weights}", markup=False, soft_wrap=True)


def _per_frame(point: OperatingPoint, sizes: list[list[int]]) -> str:
    """The point's budget per frame of the adapt material: ``0.011 per 512x512 frame``
    (``sizes`` ``[[W, H], ...]`` px; their mean area when they differ)."""
    from fabricnms.engine.operating_point import FRAME_AREA_PX

    rate = point.false_alarms_per_frame * sum(w * h for w, h in sizes) / len(sizes) / FRAME_AREA_PX
    same = all(size == sizes[0] for size in sizes)
    return f"{rate:.2g} per " + (
        f"{sizes[0][0]}x{sizes[0][1]} frame" if same else "frame of these on average"
    )
