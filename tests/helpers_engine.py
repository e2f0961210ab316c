"""Tiny on-disk COCO datasets (cv2-drawn fabric and defects) for the train/eval/dataset tests.

Frames are grey weave textures with three kinds of defects: dark knots (class 1, small square),
warp lines (class 2, thin and long, vertical) and light weft bands (class 3, wide, horizontal).
Boxes in the files are COCO xywh pixels, ``category_id`` 1-based.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import yaml

from fabricnms.data.coco import coco_annotation, coco_dataset, coco_image, write_coco
from fabricnms.engine.checkpoint import make_checkpoint, save_checkpoint
from fabricnms.model.detector import Detector

NAMES = ["knot", "warp_line", "weft_band"]


def _weave(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(120, 150)
    tex = 12 * np.sin(2 * np.pi * xx / 4.0) * np.sin(2 * np.pi * yy / 4.0)
    noise = rng.normal(0, 4, size=(height, width))
    gray = np.clip(base + tex + noise, 0, 255).astype(np.uint8)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


def draw_frame(
    rng: np.random.Generator, width: int, height: int, n_defects: int
) -> tuple[np.ndarray, list[tuple[int, list[float]]]]:
    """A BGR frame and its ``(category_id, [x, y, w, h])`` defects."""
    image = _weave(rng, width, height)
    defects = []
    for _ in range(n_defects):
        cid = int(rng.integers(1, 4))
        if cid == 1:
            w = h = int(rng.integers(12, 20))
        elif cid == 2:
            w, h = int(rng.integers(3, 6)), int(rng.integers(height // 3, height - 4))
        else:
            w, h = int(rng.integers(width // 3, width - 4)), int(rng.integers(6, 10))
        x = int(rng.integers(0, width - w))
        y = int(rng.integers(0, height - h))
        color = (30, 30, 30) if cid != 3 else (170, 220, 245)
        cv2.rectangle(image, (x, y), (x + w - 1, y + h - 1), color, thickness=-1)
        defects.append((cid, [float(x), float(y), float(w), float(h)]))
    return image, defects


def make_dataset(
    root: Path,
    n_train: int = 6,
    n_val: int = 3,
    width: int = 160,
    height: int = 128,
    seed: int = 0,
    normal_every: int = 3,
) -> Path:
    """Write images, ``annotations/instances_{train,val}.json`` and ``dataset.yaml``.

    Every ``normal_every``-th frame has no defect. ``n_val = 0`` leaves out the val split.
    Returns the dataset.yaml path.
    """
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    categories = [{"id": i + 1, "name": n, "supercategory": "defect"} for i, n in enumerate(NAMES)]
    next_image, next_ann = 1, 1
    splits = {}
    for split, count in (("train", n_train), ("val", n_val)):
        if count == 0:
            continue
        images, anns = [], []
        for i in range(count):
            n_def = 0 if i % normal_every == normal_every - 1 else int(rng.integers(1, 3))
            frame, defects = draw_frame(rng, width, height, n_def)
            name = f"{split}_{i:03d}.png"
            cv2.imwrite(str(root / "images" / name), frame)
            images.append(coco_image(next_image, name, width, height, name=name))
            for cid, xywh in defects:
                anns.append(coco_annotation(next_ann, next_image, cid, xywh))
                next_ann += 1
            next_image += 1
        rel = f"annotations/instances_{split}.json"
        write_coco(root / rel, coco_dataset(images, anns, categories))
        splits[split] = rel
    spec = {
        "path": str(root.resolve()),
        "image_root": str((root / "images").resolve()),
        **splits,
        "nc": len(NAMES),
        "names": NAMES,
        "scheme": len(NAMES),
    }
    path = root / "dataset.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def boosted_checkpoint(
    path: Path, names: list[str], data: Path, **detector_kwargs: int
) -> tuple[Path, Detector]:
    """Save a random tiny detector (width 4) whose untrained score towers get a large gain, so
    it outputs spread-out scores (they would all sit at ~1e-5 otherwise). Returns the path and
    the model (eval mode)."""
    torch.manual_seed(0)
    model = Detector(
        num_classes=len(names), width=4, neck_channels=16, embed_dim=8, **detector_kwargs
    ).eval()
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.endswith(("cls_o2m", "quality")):
                module.weight.normal_(0.0, 2e4)
    return save_detector(path, model, names, data), model


def save_detector(path: Path, model: Detector, names: list[str], data: Path | str = "") -> Path:
    """Save ``model`` as an inference checkpoint with class ``names`` (category ids 1..n)."""
    save_checkpoint(
        path,
        make_checkpoint(
            model_state=model.state_dict(),
            ema_state=None,
            detector_config=model.config,
            class_names=names,
            category_ids=list(range(1, len(names) + 1)),
            data=str(data),
        ),
    )
    return path
