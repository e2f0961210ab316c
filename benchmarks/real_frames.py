"""Real-fabric benchmark: the ``predict`` path on labelled sets of real frames.

Run::

    python benchmarks/real_frames.py ../shared/real/*/ [--weights W] [--conf 0.25] [--masks] \\
        [--json]

Each ``SRC`` is a set (``benchmarks/real_sets.py``): a folder of frames with a COCO
``labels.json`` (``--labels NAME``: another file name inside each folder, or for a single folder
any path); a defective image without annotations is labelled at frame level only; a folder
without labels is *unlabelled*: its frames only get detections per frame.

Every frame goes through the engine code of ``fabricnms predict``:
:func:`~fabricnms.engine.sources.read_frame_rgb`, then
:func:`~fabricnms.engine.tiling.detect_frames` with
``TileSettings.from_config(PredictConfig(...))`` (tiles, suppression, mask refinement), then
:meth:`~fabricnms.report.records.FrameRecord.from_detections`. Per set it prints

- **recall** of the annotated defects: a defect is found when some detection has box IoU
  >= 0.1 with it, class-agnostic ("any class") and with the defect's own class ("right class");
- **false alarms per clean frame**: detections on frames with ``defective: false``;
- **stray per labelled frame**: detections on frames with annotations whose IoU with every
  annotated box is < 0.1 (they touch no labelled defect at the recall criterion);
- **frame accuracy**: a frame is flagged when it has a detection; right when defective frames
  are flagged and clean ones not;
- **detections per frame**, and the three most frequent detected classes.

With ``--masks`` (a checkpoint with a mask branch) a set with a ``masks/`` folder (same stem,
PNG, 255 = defect pixels) is scored on masks too: the true mask of an annotated defect is the
mask's pixels inside its box. For the raw branch (``sigmoid(z) > 0.5``), the refined masks
(what ``predict --masks`` writes) and the filled box of the same detections: the mean mask IoU
of the matched defects (each defect's best class-agnostic detection at box IoU >= 0.1) and the
pycocotools ``segm`` mask AP / AP50 (class-aware, over the set's annotated frames).

Assumptions, stated where the numbers are read: "defect found" is the loose IoU 0.1 (real boxes
were drawn by other people, from masks or by hand), and a detection on a frame-level-only
defective frame counts for frame accuracy alone (where the defect lies is unknown).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_sets import FrameTruth, RealSet, load_set, read_mask

from fabricnms.data.frame_reader import FrameReadError, read_frame_rgb
from fabricnms.engine.masks import evaluate_masks, filled_box_rle, mask_iou_matrix
from fabricnms.engine.operating_point import OperatingPoint, resolve_operating_point
from fabricnms.engine.predict import PredictConfig, resolve_weights
from fabricnms.engine.tiling import TileSettings, detect_frames
from fabricnms.errors import FabricError
from fabricnms.model.boxes import pairwise_iou
from fabricnms.model.mask_head import paste_masks
from fabricnms.report.records import DetectionRecord, FrameRecord

#: Box IoU at which a detection finds (touches) a labelled defect.
MATCH_IOU = 0.1
#: The mask kinds scored with ``--masks``, in table order.
MASK_KINDS = ("raw", "refined", "box")


@dataclass
class FrameResult:
    """A frame's detections (``record``) and, with masks, each mask kind's COCO RLEs (one per
    detection, in ``record.detections`` order)."""

    truth: FrameTruth
    record: FrameRecord
    masks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def detect_set(
    real: RealSet,
    model: torch.nn.Module,
    settings: TileSettings,
    device: torch.device,
    point: OperatingPoint,
    class_names: list[str],
) -> tuple[list[FrameResult], list[str]]:
    """The ``predict`` path on every frame of ``real`` (suppression at ``settings.conf`` =
    ``point.floor()``, then each class's threshold of ``point``, as ``predict`` does): its
    results and the unreadable frames' one-line errors (skipped, as ``predict`` does)."""
    skipped: list[str] = []
    read: list[tuple[FrameTruth, int, int]] = []

    def images() -> Iterator[np.ndarray]:
        for truth in real.frames:
            try:
                image = read_frame_rgb(truth.path)
            except FrameReadError as exc:
                skipped.append(str(exc))
                continue
            read.append((truth, image.shape[0], image.shape[1]))
            yield image

    out = []
    for k, det in enumerate(detect_frames(model, images(), settings, device)):
        truth, h, w = read[k]
        det = point.select(det.to("cpu"), class_names)
        record = FrameRecord.from_detections(truth.path, w, h, det)
        result = FrameResult(truth, record)
        if det.masks is not None:
            raw = paste_masks(torch.sigmoid(det.extra["mask_logits"]), det.boxes, h, w)
            result.masks = {
                "raw": list(raw.to_rle()),
                "refined": [d.rle or {} for d in record.detections],
                "box": [filled_box_rle(_xywh(d.box), h, w) for d in record.detections],
            }
        out.append(result)
    return out, skipped


def _xywh(box: tuple[float, float, float, float]) -> list[float]:
    return [box[0], box[1], box[2] - box[0], box[3] - box[1]]


def _ratio(num: float, den: int) -> float | None:
    return round(num / den, 4) if den else None


def score_set(
    real: RealSet, results: list[FrameResult], class_names: list[str], skipped: list[str]
) -> dict[str, Any]:
    """The set's figures (module docstring); ``None`` where a figure does not apply (no
    annotated boxes, no clean frame, an unlabelled set)."""
    ids = _category_ids(real, class_names)
    by_class: Counter[str] = Counter()
    boxes = found_any = found_class = clean = clean_dets = boxed = stray = judged = right = 0
    detections = 0
    for res in results:
        dets = res.record.detections
        detections += len(dets)
        by_class.update(class_names[d.label] for d in dets)
        truth = res.truth
        if truth.defective is not None:
            judged += 1
            right += truth.defective == bool(dets)
        if truth.defective is False:
            clean += 1
            clean_dets += len(dets)
        if len(truth.categories) == 0:
            continue
        boxed += 1
        boxes += len(truth.categories)
        iou = _box_iou(truth, dets)  # [G, D]
        hit = iou >= MATCH_IOU
        same = torch.tensor(truth.categories)[:, None] == torch.tensor(
            [ids[d.label] for d in dets], dtype=torch.long
        ).reshape(1, -1)
        found_any += int(hit.any(1).sum())
        found_class += int((hit & same).any(1).sum())
        stray += int((~hit.any(0)).sum())
    return {
        "set": real.name,
        "labelled": bool(real.categories),
        "frames": len(results),
        "skipped": skipped,
        "clean_frames": clean,
        "boxed_frames": boxed,
        "boxes": boxes,
        "recall_any_class": _ratio(found_any, boxes),
        "recall_right_class": _ratio(found_class, boxes),
        "false_alarms_per_clean_frame": _ratio(clean_dets, clean),
        "stray_per_labelled_frame": _ratio(stray, boxed),
        "frame_accuracy": _ratio(right, judged),
        "detections": detections,
        "detections_per_frame": _ratio(detections, len(results)),
        "by_class": dict(by_class.most_common()),
    }


def _category_ids(real: RealSet, class_names: list[str]) -> list[int]:
    """The set's category id of each model class (``-1`` for every class of an unlabelled set)."""
    if not real.categories:
        return [-1] * len(class_names)
    missing = [n for n in class_names if n not in real.categories]
    if missing:
        raise FabricError(
            f"{real.name}: the model's class {missing[0]!r} is not a category of its labels"
        )
    return [real.categories[n] for n in class_names]


def _box_iou(truth: FrameTruth, dets: list[DetectionRecord]) -> torch.Tensor:
    """Box IoU ``[G, D]`` of the annotated boxes and the detections (xyxy pixels)."""
    boxes = torch.tensor([d.box for d in dets], dtype=torch.float64).reshape(-1, 4)
    return pairwise_iou(truth.boxes, boxes)


def score_masks(real: RealSet, results: list[FrameResult]) -> dict[str, Any] | None:
    """Mask figures of each kind over the frames with a mask file and annotations (``None``
    when the set has none): ``matched`` defects, their mean ``matched_mask_iou``, ``mask_AP``
    and ``mask_AP50`` (module docstring)."""
    from pycocotools import mask as mask_utils

    used = [r for r in results if r.truth.mask is not None and r.truth.categories and r.masks]
    if not used:
        return None
    images, truths, rows = [], [], {kind: [] for kind in MASK_KINDS}
    sums = dict.fromkeys(MASK_KINDS, 0.0)
    matched = 0
    for res in used:
        t = res.truth
        h, w = res.record.height, res.record.width
        images.append({"id": t.image_id, "file_name": t.path.name, "width": w, "height": h})
        pixels = read_mask(t.mask, h, w)
        gts = []
        for box, cat in zip(t.boxes.round().long().tolist(), t.categories, strict=True):
            inside = np.zeros_like(pixels)
            inside[box[1] : box[3], box[0] : box[2]] = pixels[box[1] : box[3], box[0] : box[2]]
            rle = mask_utils.encode(np.asfortranarray(inside))
            gt = {"size": [h, w], "counts": rle["counts"].decode("ascii")}
            gts.append(gt)
            truths.append(
                {
                    "id": len(truths) + 1,
                    "image_id": t.image_id,
                    "category_id": cat,
                    "bbox": _xywh(tuple(float(v) for v in box)),
                    "area": float(inside.sum()),
                    "iscrowd": 0,
                    "segmentation": gt,
                }
            )
        dets = res.record.detections
        for kind in MASK_KINDS:
            rows[kind] += [
                {
                    "image_id": t.image_id,
                    "category_id": d.label + 1,
                    "bbox": _xywh(d.box),
                    "score": d.score,
                    "segmentation": rle,
                }
                for d, rle in zip(dets, res.masks[kind], strict=True)
            ]
        iou = _box_iou(t, dets)
        for g, gt in enumerate(gts):
            if iou.shape[1] == 0 or float(iou[g].max()) < MATCH_IOU:
                continue
            best = int(iou[g].argmax())
            matched += 1
            for kind in MASK_KINDS:
                sums[kind] += float(mask_iou_matrix([res.masks[kind][best]], [gt])[0, 0])
    gt_doc = {
        "info": {},
        "licenses": [],
        "images": images,
        "annotations": truths,
        "categories": [{"id": i, "name": n} for n, i in real.categories.items()],
    }
    out: dict[str, Any] = {"frames": len(used), "defects": len(truths), "matched": matched}
    for kind in MASK_KINDS:
        stats = evaluate_masks(gt_doc, rows[kind]).segm.stats
        out[kind] = {
            "matched_mask_iou": _ratio(sums[kind], matched),
            "mask_AP": round(stats[0], 4),
            "mask_AP50": round(stats[1], 4),
        }
    return out


def _fmt(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.0f} %" if percent else f"{value:.2f}"


def render(report: dict[str, Any]) -> str:
    """The Markdown tables of a :func:`run` report."""
    lines = [
        f"weights {report['weights']}, {report['conf']}, nms {report['nms']}, tile "
        f"{report['tile']}; a defect is found at box IoU >= {MATCH_IOU} ('-': does not apply)",
        "",
        "| set | frames | boxes | recall (any class) | recall (right class) | false alarms / "
        "clean frame | stray / labelled frame | frame accuracy | detections / frame | "
        "top classes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in report["sets"]:
        top = ", ".join(f"{n} {c}" for n, c in list(s["by_class"].items())[:3]) or "-"
        found = f"{s['boxes']}" if s["boxes"] else "-"
        lines.append(
            f"| {s['set']} | {s['frames']} | {found} | {_fmt(s['recall_any_class'], True)} | "
            f"{_fmt(s['recall_right_class'], True)} | "
            f"{_fmt(s['false_alarms_per_clean_frame'])} | {_fmt(s['stray_per_labelled_frame'])} | "
            f"{_fmt(s['frame_accuracy'], True)} | {_fmt(s['detections_per_frame'])} | {top} |"
        )
    masked = [s for s in report["sets"] if s.get("masks")]
    if masked:
        lines += [
            "",
            "| set | mask | matched defects | matched mask IoU | mask AP | mask AP50 |",
            "|---|---|---|---|---|---|",
        ]
        for s in masked:
            m = s["masks"]
            for kind in MASK_KINDS:
                lines.append(
                    f"| {s['set']} | {kind} | {m['matched']} / {m['defects']} | "
                    f"{_fmt(m[kind]['matched_mask_iou'])} | {m[kind]['mask_AP']:.3f} | "
                    f"{m[kind]['mask_AP50']:.3f} |"
                )
    skipped = [e for s in report["sets"] for e in s["skipped"]]
    lines += [f"skipped: {e}" for e in skipped]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Load the model once, detect and score every set; the JSON report."""
    from fabricnms.engine.checkpoint import load_detector
    from fabricnms.engine.runtime import resolve_device
    from fabricnms.model.mask_infer import require_mask_branch

    folders = [Path(s) for s in args.sources]
    for folder in folders:
        if not folder.is_dir():
            raise FabricError(f"{folder}: not a folder of frames")
    if len(folders) > 1 and Path(args.labels).is_absolute():
        raise FabricError("--labels: an absolute path needs a single SRC folder")
    sets = [load_set(folder, args.labels) for folder in folders]
    device = resolve_device(args.device)
    weights = resolve_weights(args.weights)
    model, meta = load_detector(weights, device)
    if args.masks:
        require_mask_branch(model, str(weights))
    point = resolve_operating_point(args.conf, meta).point  # predict's thresholds
    cfg = PredictConfig(
        conf=point.floor(), nms=args.nms, tile=args.tile, overlap=args.overlap, masks=args.masks
    )
    settings = TileSettings.from_config(cfg)
    class_names = list(meta["class_names"])
    report: dict[str, Any] = {
        "weights": str(weights),
        "conf": point.describe(),
        "per_class_conf": point.per_class,
        "nms": args.nms,
        "tile": args.tile,
        "overlap": args.overlap,
        "match_iou": MATCH_IOU,
        "sets": [],
    }
    for real in sets:
        results, skipped = detect_set(real, model, settings, device, point, class_names)
        entry = score_set(real, results, class_names, skipped)
        if args.masks:
            entry["masks"] = score_masks(real, results)
        report["sets"].append(entry)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+", help="set folders (each with its labels file)")
    parser.add_argument("--labels", default="labels.json", help="labels file name in each folder")
    parser.add_argument("--weights", default="", help="checkpoint (default: the shipped model)")
    parser.add_argument(
        "--conf", type=float, default=None, help="score floor (default: the checkpoint's)"
    )
    parser.add_argument("--nms", default=PredictConfig.nms)
    parser.add_argument("--tile", type=int, default=PredictConfig.tile)
    parser.add_argument("--overlap", type=float, default=PredictConfig.overlap)
    parser.add_argument("--device", default="cpu", help="auto, cpu or cuda")
    parser.add_argument("--masks", action="store_true", help="also score masks (mask branch)")
    parser.add_argument("--json", action="store_true", help="JSON on stdout, tables on stderr")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--debug", action="store_true", help="tracebacks on errors")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        report = run(args)
    except FabricError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    table = render(report)
    if args.json:
        print(table, file=sys.stderr)
        print(json.dumps(report, indent=1))
    else:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
