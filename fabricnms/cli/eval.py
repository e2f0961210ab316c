"""``fabricnms eval``: COCO 12 stats, per-class AP and the Tianchi score of a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fabricnms.cli import nms_options
from fabricnms.cli.predict import THREADS_HELP
from fabricnms.config import NMS_METHODS, EvalConfig

if TYPE_CHECKING:
    from fabricnms.engine.masks import MaskReport

_D = EvalConfig()


def eval_cmd(
    weights: Annotated[
        Path | None,
        typer.Option(
            help="Checkpoint or exported .onnx (default: the shipped model "
            "fabricnms/weights/default.pt, as in predict)."
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(help="dataset.yaml. Default: the dataset the checkpoint was trained on."),
    ] = None,
    split: Annotated[str, typer.Option(help="Split to evaluate: val or train.")] = _D.split,
    nms: Annotated[str, typer.Option(help=f"Postprocess: {', '.join(NMS_METHODS)}.")] = _D.nms,
    conf: Annotated[
        float, typer.Option(help="Score floor of the detections scored by mAP.")
    ] = _D.conf,
    acc_conf: Annotated[
        float | None,
        typer.Option(
            help="Operating score: a frame counts as defective when a detection scores at least "
            "this, and the per-class R50 / P50 count the detections that do. Default: the "
            "checkpoint's operating point (its global conf), else 0.3.",
            show_default=False,
        ),
    ] = _D.acc_conf,
    max_det: Annotated[int, typer.Option(help="Detections kept per frame.")] = _D.max_det,
    iou: nms_options.Iou = _D.iou,
    agnostic: nms_options.Agnostic = _D.agnostic,
    top_classes: nms_options.TopClasses = _D.top_classes,
    vote_iou: nms_options.VoteIou = _D.vote_iou,
    edge_band: nms_options.EdgeBand = _D.edge_band,
    tile: Annotated[int, typer.Option(help="Tile size in frame pixels.")] = _D.tile,
    overlap: Annotated[float, typer.Option(help="Tile overlap ratio.")] = _D.overlap,
    batch: Annotated[int, typer.Option(help="Tiles per forward pass.")] = _D.batch,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = _D.device,
    threads: Annotated[int, typer.Option(min=0, help=THREADS_HELP)] = _D.threads,
    masks: Annotated[
        bool,
        typer.Option(
            "--masks",
            help="Also score refined masks (segm AP, mean mask IoU) against the true masks of "
            "a `synth --masks` dataset; needs a checkpoint with a mask branch.",
        ),
    ] = _D.masks,
    name: Annotated[str, typer.Option(help="Run name: runs/eval/NAME, NAME2, ...")] = "eval",
    project: Annotated[Path, typer.Option(help="Root folder of all runs.")] = Path("runs"),
    as_json: Annotated[
        bool, typer.Option("--json", help="Print all results as one JSON document on stdout.")
    ] = False,
) -> None:
    """Evaluate a checkpoint on a split with the same tiled postprocess as predict."""
    from fabricnms.config import load_config
    from fabricnms.engine.eval_run import run_eval
    from fabricnms.log import console, print_json

    cfg = load_config(
        EvalConfig,
        None,
        {
            "weights": "" if weights is None else str(weights),
            "data": "" if data is None else str(data),
            "split": split,
            "nms": nms,
            "conf": conf,
            "acc_conf": acc_conf,
            "max_det": max_det,
            "iou": iou,
            "agnostic": agnostic,
            "top_classes": top_classes,
            "vote_iou": vote_iou,
            "edge_band": edge_band,
            "tile": tile,
            "overlap": overlap,
            "batch": batch,
            "device": device,
            "masks": masks,
            "threads": threads,
        },
    )
    run = run_eval(cfg, project=project, name=name)
    if as_json:
        print_json(run.summary)
    else:
        render_report(run.summary, run.report.coco.summary)
        edges = run.summary.get("fabric_edges")
        if edges and edges["warning"]:
            console.print(f"Fabric edge: {edges['warning']}", markup=False, soft_wrap=True)
        if run.masks is not None:
            console.print(mask_line(run.masks), markup=False)
    console.print(f"Results saved to {run.run_dir.resolve()}", markup=False, soft_wrap=True)


def mask_line(report: MaskReport) -> str:
    """One line: mask AP, AP50 and mean mask IoU of the masks and of the filled boxes."""
    m = report.as_dict()
    return (
        f"Masks ({m['true_masks']} true masks): mask AP {_num(m['mask_AP'])}, "
        f"AP50 {_num(m['mask_AP50'])}, mean mask IoU {m['mean_best_iou']:.3f}; "
        f"filled boxes: AP {_num(m['box_as_mask_AP'])}, AP50 {_num(m['box_as_mask_AP50'])}, "
        f"mean IoU {m['box_mean_best_iou']:.3f}"
    )


def _num(value: float) -> str:
    return "-" if value is None or value < 0 else f"{value:.3f}"


def render_report(summary: dict[str, Any], coco_text: str) -> None:
    """COCO summary lines, the per-class table and the Tianchi score, on stderr."""
    from rich.table import Table

    from fabricnms.log import console

    console.print(
        f"{summary['frames']} frames ({summary['defective_frames']} defective), "
        f"{summary['detections']} detections, {summary['seconds']:.1f} s, nms={summary['nms']}",
        markup=False,
    )
    if summary["detections"] == 0:
        console.print("No predictions: every metric is 0.", markup=False)
    console.print(coco_text.rstrip(), markup=False, highlight=False)
    conf = summary["acc_conf"]
    table = Table(
        title=f"per class (COCO AP at IoU 0.50:0.95, 0.50, 0.75; Tianchi AP; recall and "
        f"precision at IoU 0.5 of the detections scoring >= {conf:g})"
    )
    columns = ("class", "images", "boxes", "AP", "AP50", "AP75", "Tianchi AP", "R50", "P50")
    for column in columns:
        table.add_column(column, justify="left" if column == "class" else "right")
    coco = summary["coco"]
    table.add_row(
        "all",
        str(summary["frames"]),
        str(sum(row["boxes"] for row in summary["per_class"])),
        _num(coco["AP_all"]),
        _num(coco["AP_50"]),
        _num(coco["AP_75"]),
        _num(summary["tianchi"]["mAP"]),
        "",
        "",
        end_section=True,
    )
    for row in summary["per_class"]:
        if row["boxes"] == 0:
            continue
        table.add_row(
            row["class"],
            str(row["images"]),
            str(row["boxes"]),
            _num(row["AP"]),
            _num(row["AP50"]),
            _num(row["AP75"]),
            _num(row["tianchi_AP"]),
            _num(row["recall50_at_conf"]),
            _num(row["precision50_at_conf"]),
        )
    console.print(table)
    t = summary["tianchi"]
    per_iou = ", ".join(f"{k}: {v:.4f}" for k, v in t["mAP_per_iou"].items())
    console.print(
        f"Tianchi score {t['score']:.4f} = 0.2 * ACC {t['acc']:.4f} + 0.8 * mAP {t['mAP']:.4f} "
        f"(mAP at IoU {per_iou})",
        markup=False,
    )
    d = summary["diagnostics"]
    console.print(
        f"Diagnostics: {', '.join(Path(p).name for p in d['files'].values())} (mean F1 "
        f"{d['f1_at_conf']:.3f} at the operating threshold {conf:g}, best {d['best_f1']:.3f} "
        f"at {d['best_f1_conf']:g})",
        markup=False,
    )
