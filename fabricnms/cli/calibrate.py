"""``fabricnms calibrate``: give a trained checkpoint its operating point and fabric statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def calibrate_cmd(
    weights: Annotated[
        Path, typer.Argument(help="Checkpoint to calibrate.", dir_okay=False, show_default=False)
    ],
    data: Annotated[
        Path,
        typer.Option(help="dataset.yaml the checkpoint was trained on.", show_default=False),
    ],
    fit_frames: Annotated[
        int,
        typer.Option(
            min=2,
            help="Training-split frames (the first N) whose tiles give the fabric statistics.",
        ),
    ] = 200,
    false_alarms: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="False-alarm budget per 2446x1000 px of fabric (detections touching no "
            "labelled box) the thresholds are chosen for, on the val split.",
        ),
    ] = 0.1,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Write the calibrated checkpoint here (default: in place).", dir_okay=False
        ),
    ] = None,
    stats_data: Annotated[
        Path | None,
        typer.Option(
            help="dataset.yaml of the fabric the shift warning measures against (its first "
            "--fit-frames train frames give the statistics, its val frames the limit); "
            "default: --data.",
            show_default=False,
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Calibrate on the val split (thresholds, shift limit) and the train split (statistics)."""
    from fabricnms.data.coco import load_coco
    from fabricnms.data.dataset import FrameRecord, frames_from_coco
    from fabricnms.data.dataset_yaml import DataSpec, load_data_yaml
    from fabricnms.data.frame_reader import read_frame_rgb
    from fabricnms.engine.calibrate import LabelledImage, calibrate_model, write_calibration
    from fabricnms.engine.checkpoint import load_detector
    from fabricnms.engine.runtime import resolve_device
    from fabricnms.errors import FabricError
    from fabricnms.log import console, print_json

    dev = resolve_device(device)
    model, meta = load_detector(weights, dev)
    spec = load_data_yaml(data)
    names = list(meta["class_names"])
    if names != list(spec.names):
        raise FabricError(f"{weights}: its classes differ from those of {spec.yaml_path}")

    def split(spec: DataSpec, name: str) -> list[FrameRecord]:
        frames = frames_from_coco(load_coco(spec.split_path(name)), spec.image_root, spec.nc)
        if name == "val" and not frames:
            raise FabricError(f"{spec.yaml_path}: the val split has no images")
        return frames

    val = split(spec, "val")
    held = (LabelledImage(read_frame_rgb(f.path), f.boxes, f.labels) for f in val)
    source = f"{len(val)} val frames of {spec.yaml_path.parent.name}"
    fabric = load_data_yaml(stats_data) if stats_data else spec
    train = split(fabric, "train")[:fit_frames]
    limit_frames, stats_source = None, None
    if stats_data:
        fabric_val = split(fabric, "val")
        limit_frames = (read_frame_rgb(f.path) for f in fabric_val)
        stats_source = f"{len(fabric_val)} val frames of {fabric.yaml_path.parent.name}"
    point, stats = calibrate_model(
        model,
        names,
        (read_frame_rgb(f.path) for f in train),
        held,
        source,
        false_alarms,
        device=dev,
        limit_frames=limit_frames,
        stats_source=stats_source,
    )
    target = write_calibration(weights, point, stats, out)
    result = {
        "weights": str(target),
        "operating_point": point.to_dict(),
        "shift_limit": stats.limit,
    }
    if as_json:
        print_json(result)
    console.print(
        f"Operating point: {point.describe()} ({point.source}); fabric statistics of "
        f"{stats.windows} tiles, shift limit {stats.limit:g}; saved {target}",
        markup=False,
        soft_wrap=True,
    )
