"""The training material of ``fabricnms adapt``: clean frames -> windows with rendered defects.

Every clean frame is cut along its longer side into a *training part* (the first
:data:`TRAIN_SHARE`) and a *held-out part* (the rest), so one frame is enough. Windows of
``window x window`` px (frame pixels) are cut at seeded random positions of the parts; in a
share :data:`DEFECT_SHARE` of them 1-3 defects of any of the 20 categories (uniform prior) are
painted into the real fabric (:func:`defect_window`), the others stay clean (negatives).
Training windows come from the training parts, validation windows (for the best epoch) from
the held-out parts; the held-out parts themselves, whole, calibrate the
operating point and the shift limit.

The dataset is written as a COCO release the training engine reads: ``images/*.jpg`` (q95),
``annotations/instances_{train,val}.json`` (``bbox`` xywh px, category ids 1-20),
``dataset.yaml`` last (its presence marks a complete dataset).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fabricnms.errors import FabricError
from fabricnms.log import get_logger

log = get_logger("adapt")

#: Share of each clean frame (along its longer side) used for training windows.
TRAIN_SHARE = 0.7
#: Share of the windows that get rendered defects.
DEFECT_SHARE = 0.75
#: Smallest window side; frames (parts) smaller than this cannot be used.
MIN_WINDOW = 128
WINDOW_MULTIPLE = 32


@dataclass(frozen=True)
class CleanFrame:
    """A clean frame ``image [H, W, 3]`` uint8 RGB read from ``path``."""

    path: Path
    image: np.ndarray

    def parts(self) -> tuple[np.ndarray, np.ndarray]:
        """``(training part, held-out part)``: the frame cut across its longer side."""
        h, w = self.image.shape[:2]
        if w >= h:
            cut = round(w * TRAIN_SHARE)
            return self.image[:, :cut], self.image[:, cut:]
        cut = round(h * TRAIN_SHARE)
        return self.image[:cut], self.image[cut:]


def usable_frames(frames: Sequence[CleanFrame], wanted: int) -> tuple[list[CleanFrame], int]:
    """The frames whose parts keep :data:`MIN_WINDOW` px (the others are reported and skipped;
    a one-line error naming the first when none is left) and ``wanted``, shrunk (to a multiple
    of 32) to fit their smallest part."""
    size, usable, errors = wanted, [], []
    for frame in frames:
        side = min(min(part.shape[:2]) for part in frame.parts())
        if side < MIN_WINDOW:
            h, w = frame.image.shape[:2]
            errors.append(
                f"{frame.path}: frame {w}x{h} is too small: its held-out part is {side} px "
                f"across, windows need at least {MIN_WINDOW} px (use frames of at least "
                f"{MIN_WINDOW} x {round(MIN_WINDOW / (1 - TRAIN_SHARE))} px)"
            )
            continue
        usable.append(frame)
        size = min(size, side // WINDOW_MULTIPLE * WINDOW_MULTIPLE)
    if not usable:
        raise FabricError(errors[0])
    for error in errors:
        log.warning("skipped %s", error)
    return usable, size


@dataclass(frozen=True)
class Window:
    """A window ``image [S, S, 3]`` with labelled boxes ``[M, 4]`` xyxy px, 0-based labels."""

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray


def defect_window(background: np.ndarray, seed: int, n_defects: int) -> Window:
    """``n_defects`` generated defects painted into a real ``[H, W, 3]`` uint8 RGB window by
    :func:`fabricnms.data.synth.render_on_background` (the generator's recipes on the real
    weave); boxes are its loose annotation boxes (xyxy px), labels 0-based. A window the
    painter refuses (blank, off the cloth) stays clean."""
    from fabricnms.data.synth_background import render_on_background

    try:
        frame = render_on_background(background, seed, n_defects=n_defects, class_prior="uniform")
    except FabricError:
        return Window(background, np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    boxes = np.array([d.box for d in frame.defects], dtype=np.float32).reshape(-1, 4)
    labels = np.array([d.category_id - 1 for d in frame.defects], dtype=np.int64)
    return Window(frame.image, boxes, labels)


def cut_windows(parts: Sequence[np.ndarray], count: int, size: int, seed: int) -> list[Window]:
    """``count`` seeded windows from ``parts`` (picked by area), ``DEFECT_SHARE`` with defects."""
    rng = np.random.default_rng(seed)
    areas = np.array([p.shape[0] * p.shape[1] for p in parts], dtype=np.float64)
    out = []
    for _ in range(count):
        part = parts[int(rng.choice(len(parts), p=areas / areas.sum()))]
        y = int(rng.integers(0, part.shape[0] - size + 1))
        x = int(rng.integers(0, part.shape[1] - size + 1))
        crop = np.ascontiguousarray(part[y : y + size, x : x + size])
        if rng.random() < DEFECT_SHARE:
            out.append(defect_window(crop, int(rng.integers(2**31)), int(rng.integers(1, 4))))
        else:
            out.append(Window(crop, np.zeros((0, 4), np.float32), np.zeros(0, np.int64)))
    return out


def write_dataset(out: Path, train: Sequence[Window], val: Sequence[Window]) -> Path:
    """Write the windows as a COCO release in ``out`` (module docstring); returns the
    ``dataset.yaml`` path, written last."""
    import cv2
    import torch
    import yaml

    from fabricnms.data.coco import coco_annotation, coco_dataset, coco_image, write_coco
    from fabricnms.data.convert_output import coco_categories
    from fabricnms.io import atomic_write_bytes, atomic_write_text
    from fabricnms.model.boxes import xyxy_to_xywh

    categories = coco_categories(20)
    ann_id = 0
    for split, windows in (("train", train), ("val", val)):
        images, anns = [], []
        for i, win in enumerate(windows, start=1):
            name = f"{split}_{i:05d}.jpg"
            ok, buf = cv2.imencode(
                ".jpg", cv2.cvtColor(win.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]
            )
            if not ok:
                raise FabricError(f"{out / 'images' / name}: JPEG encoding failed")
            atomic_write_bytes(out / "images" / name, buf.tobytes())
            h, w = win.image.shape[:2]
            images.append(coco_image(i, name, w, h))
            for box, label in zip(
                xyxy_to_xywh(torch.from_numpy(win.boxes)).tolist(), win.labels.tolist(), strict=True
            ):
                ann_id += 1
                anns.append(coco_annotation(ann_id, i, int(label) + 1, box))
        doc = coco_dataset(images, anns, categories, f"fabricnms adapt {split} windows")
        write_coco(out / "annotations" / f"instances_{split}.json", doc)
    spec = {
        "path": str(out.resolve()),
        "image_root": str((out / "images").resolve()),
        "train": "annotations/instances_train.json",
        "val": "annotations/instances_val.json",
        "nc": 20,
        "names": [c["name"] for c in categories],
        "scheme": 20,
    }
    path = out / "dataset.yaml"
    atomic_write_text(path, yaml.safe_dump(spec, sort_keys=False))
    return path
