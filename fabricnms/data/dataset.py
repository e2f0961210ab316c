"""Training data for fabric: full-resolution windows cut from COCO frames, box-safe augmentation.

Frames are never downscaled as a whole (a 15 px knot in a 2446x1000 frame would vanish).
Each sample is a ``tile x tile`` window at (nearly) native resolution: with probability
``1 - random_window_prob`` it is placed over a defect of a defective frame, otherwise anywhere
in the frame (clean fabric; normal frames always get such windows). A sample key is
``(frame_index, sample_seed)``, so a sample is a pure function of its key (the sampler derives
the keys from ``(seed, epoch)``) and resuming or changing the number of workers gives the same
data.

Conventions: boxes are ``xyxy`` float pixels (of the frame in :class:`FrameRecord`, of the window
in samples); labels are 0-based ``category_id - 1`` in memory, 1-based in every file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fabricnms.errors import FabricError


@dataclass(frozen=True)
class FrameRecord:
    """One COCO image: ``boxes [M, 4]`` xyxy float32 frame pixels, ``labels [M]`` int64 0-based."""

    path: Path
    name: str
    image_id: int
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class WindowParams:
    """How training windows are cut and which boxes survive the cut (pixels of the frame)."""

    tile: int = 640
    random_window_prob: float = 0.25
    scale_jitter: float = 0.15
    min_visible_px: float = 8.0
    min_visible_frac: float = 0.25
    min_thickness: float = 2.0


def frames_from_coco(coco: dict[str, Any], image_root: Path, num_classes: int) -> list[FrameRecord]:
    """COCO dict (images, annotations; bbox xywh, ``category_id`` 1..nc) -> frame records.

    Every image is kept, including images without annotations (normal frames). Crowd
    annotations are skipped. The order follows ``images[]``.
    """
    per_image: dict[int, list[dict[str, Any]]] = {int(im["id"]): [] for im in coco["images"]}
    for ann in coco.get("annotations", []):
        if ann.get("iscrowd", 0):
            continue
        cid = int(ann["category_id"])
        if not 1 <= cid <= num_classes:
            raise FabricError(
                f"annotation {ann.get('id')}: category_id {cid} outside 1..{num_classes}"
            )
        per_image[int(ann["image_id"])].append(ann)
    frames = []
    for im in coco["images"]:
        anns = per_image[int(im["id"])]
        xywh = np.array([a["bbox"] for a in anns], dtype=np.float32).reshape(-1, 4)
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        labels = np.array([int(a["category_id"]) - 1 for a in anns], dtype=np.int64)
        frames.append(
            FrameRecord(
                path=image_root / str(im["file_name"]),
                name=str(im.get("name", Path(str(im["file_name"])).name)),
                image_id=int(im["id"]),
                width=int(im["width"]),
                height=int(im["height"]),
                boxes=boxes,
                labels=labels,
            )
        )
    return frames


def read_frame(frame: FrameRecord) -> np.ndarray:
    """:func:`~fabricnms.data.frame_reader.read_frame_rgb` of a frame (the one reader: a
    truncated or undecodable file is a :class:`FabricError` naming it), checking the decoded
    size against the annotation file."""
    from fabricnms.data.frame_reader import read_frame_rgb

    image = read_frame_rgb(frame.path)
    if image.shape[0] != frame.height or image.shape[1] != frame.width:
        raise FabricError(
            f"{frame.path}: image is {image.shape[1]}x{image.shape[0]} but the annotation "
            f"file says {frame.width}x{frame.height}"
        )
    return image


def pad_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pad ``[h, w, 3]`` at the bottom/right to ``[height, width, 3]`` by mirroring the fabric.

    Mirroring (not a constant) keeps the weave texture continuous, so the padding does not look
    like an edge defect; box coordinates are unaffected.
    """
    import cv2

    h, w = image.shape[:2]
    if h == height and w == width:
        return image
    return cv2.copyMakeBorder(image, 0, height - h, 0, width - w, cv2.BORDER_REFLECT_101)


def clip_boxes_to_window(
    boxes: np.ndarray,
    labels: np.ndarray,
    window: tuple[float, float, float, float],
    min_visible_px: float,
    min_visible_frac: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the visible part of each box inside ``window`` (xyxy frame px), in window coords.

    A cut box is kept when its visible part spans at least ``min(min_visible_px, full extent)``
    along both axes (so a 3 px wide broken end is kept however short its visible piece, as long
    as its whole width shows) or when at least ``min_visible_frac`` of its area is visible. Thin
    boxes are therefore never dropped by area alone.

    Returns ``boxes [K, 4]`` float32 window pixels and ``labels [K]``.
    """
    x0, y0, x1, y1 = window
    vis = boxes.copy()
    vis[:, 0::2] = np.clip(vis[:, 0::2], x0, x1)
    vis[:, 1::2] = np.clip(vis[:, 1::2], y0, y1)
    full_w = boxes[:, 2] - boxes[:, 0]
    full_h = boxes[:, 3] - boxes[:, 1]
    vis_w = vis[:, 2] - vis[:, 0]
    vis_h = vis[:, 3] - vis[:, 1]
    inside = (vis_w > 0) & (vis_h > 0)
    by_extent = (vis_w >= np.minimum(min_visible_px, full_w) - 1e-3) & (
        vis_h >= np.minimum(min_visible_px, full_h) - 1e-3
    )
    frac = (vis_w * vis_h) / np.maximum(full_w * full_h, 1e-6)
    keep = inside & (by_extent | (frac >= min_visible_frac))
    out = vis[keep] - np.array([x0, y0, x0, y0], dtype=np.float32)
    return out.astype(np.float32), labels[keep]


def widen_thin_boxes(
    boxes: np.ndarray, min_thickness: float, width: int, height: int
) -> np.ndarray:
    """Grow boxes thinner than ``min_thickness`` px around their centre, inside the image.

    Resizing can squeeze a 2 px broken end below one pixel; instead of silently dropping it (as
    torchvision-style filters do), it is given the minimum thickness. ``[M, 4]`` xyxy px.
    """
    out = boxes.copy()
    for lo, hi, limit in ((0, 2, width), (1, 3, height)):
        size = out[:, hi] - out[:, lo]
        thin = size < min_thickness
        if not thin.any():
            continue
        centre = (out[thin, lo] + out[thin, hi]) / 2
        half = min(min_thickness, limit) / 2
        centre = np.clip(centre, half, limit - half)
        out[thin, lo] = centre - half
        out[thin, hi] = centre + half
    return out


def place_window(
    rng: np.random.Generator, box: np.ndarray, crop_w: int, crop_h: int, width: int, height: int
) -> tuple[int, int]:
    """Top-left corner of a ``crop_w x crop_h`` window covering ``box`` (xyxy) as far as possible.

    Along an axis where the box fits, the window contains it at a uniformly random offset; where
    the box is longer than the window, the window lies inside the box's extent. The window
    stays inside the frame.
    """
    corner = []
    for lo_edge, hi_edge, crop, limit in (
        (box[0], box[2], crop_w, width),
        (box[1], box[3], crop_h, height),
    ):
        a, b = lo_edge, hi_edge - crop
        lo, hi = min(a, b), max(a, b)
        lo = min(max(math.floor(lo), 0), limit - crop)
        hi = min(max(math.ceil(hi), 0), limit - crop)
        corner.append(int(rng.integers(lo, max(lo, hi) + 1)))
    return corner[0], corner[1]


def class_repeat_factors(
    frames: Sequence[FrameRecord], num_classes: int, threshold: float
) -> np.ndarray:
    """LVIS repeat factor per class, ``r_c = max(1, sqrt(threshold / f_c))``, ``[num_classes]``.

    ``f_c`` is the fraction of frames containing class ``c``. ``threshold = 0`` gives all ones.
    """
    factors = np.ones(num_classes, dtype=np.float64)
    if threshold <= 0 or not frames:
        return factors
    counts = np.zeros(num_classes, dtype=np.float64)
    for frame in frames:
        counts[np.unique(frame.labels)] += 1
    freq = counts / len(frames)
    present = freq > 0
    factors[present] = np.maximum(1.0, np.sqrt(threshold / freq[present]))
    return factors


def frame_repeat_factors(frames: Sequence[FrameRecord], class_factors: np.ndarray) -> np.ndarray:
    """Per-frame repeat factor: the largest factor of the classes it contains (1 if normal)."""
    return np.array(
        [float(class_factors[f.labels].max()) if len(f.labels) else 1.0 for f in frames],
        dtype=np.float64,
    )


def build_augment(cfg: Any) -> Any:
    """Photometric + flip pipeline (albumentations, pascal_voc boxes, labels travel along).

    ``cfg`` provides hflip, vflip, brightness, contrast, blur, noise (probabilities/limits).
    Geometry is limited to flips, which never change a box's thickness; scale jitter happens in
    the window crop where the box-survival rule is applied once.
    """
    import albumentations as A

    return A.Compose(
        [
            A.HorizontalFlip(p=cfg.hflip),
            A.VerticalFlip(p=cfg.vflip),
            A.RandomBrightnessContrast(
                brightness_limit=cfg.brightness,
                contrast_limit=cfg.contrast,
                p=0.8 if (cfg.brightness or cfg.contrast) else 0.0,
            ),
            A.GaussianBlur(blur_limit=(3, 3), sigma_limit=(0.3, 0.8), p=cfg.blur),
            A.GaussNoise(std_range=(0.01, 0.04), p=cfg.noise),
        ],
        bbox_params=A.BboxParams(
            format="pascal_voc", label_fields=["labels"], clip=True, min_visibility=0.0
        ),
        seed=0,
    )


class TrainWindows:
    """Map-style dataset of training windows; keys are ``(frame_index, sample_seed)``.

    ``__getitem__`` returns ``(image [3, tile, tile] uint8 RGB tensor, target)`` with target
    ``{"boxes": [M, 4] float32 xyxy window px, "labels": [M] int64 0-based}``.
    """

    def __init__(
        self,
        frames: Sequence[FrameRecord],
        params: WindowParams,
        augment: Any | None,
        class_factors: np.ndarray | None = None,
    ) -> None:
        self.frames = list(frames)
        self.params = params
        self.augment = augment
        self.class_factors = class_factors

    def __len__(self) -> int:
        return len(self.frames)

    def _choose_window(
        self, rng: np.random.Generator, frame: FrameRecord
    ) -> tuple[int, int, int, int]:
        p = self.params
        scale = 1.0 + rng.uniform(-p.scale_jitter, p.scale_jitter)
        crop = max(1, round(p.tile / scale))
        crop_w, crop_h = min(crop, frame.width), min(crop, frame.height)
        if len(frame.labels) and rng.random() >= p.random_window_prob:
            weights = np.ones(len(frame.labels))
            if self.class_factors is not None:
                weights = self.class_factors[frame.labels]
            box = frame.boxes[rng.choice(len(frame.labels), p=weights / weights.sum())]
            x0, y0 = place_window(rng, box, crop_w, crop_h, frame.width, frame.height)
        else:
            x0 = int(rng.integers(0, frame.width - crop_w + 1))
            y0 = int(rng.integers(0, frame.height - crop_h + 1))
        return x0, y0, crop, crop

    def __getitem__(self, key: tuple[int, int]) -> tuple[Any, dict[str, Any]]:
        import cv2
        import torch

        index, sample_seed = key
        frame = self.frames[index]
        rng = np.random.default_rng(sample_seed)
        x0, y0, crop, _ = self._choose_window(rng, frame)
        image = read_frame(frame)
        x1, y1 = min(x0 + crop, frame.width), min(y0 + crop, frame.height)
        boxes, labels = clip_boxes_to_window(
            frame.boxes,
            frame.labels,
            (x0, y0, x1, y1),
            self.params.min_visible_px,
            self.params.min_visible_frac,
        )
        window = image[y0:y1, x0:x1]
        factor = self.params.tile / crop
        if factor != 1.0:
            out_w = max(1, round((x1 - x0) * factor))
            out_h = max(1, round((y1 - y0) * factor))
            interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
            window = cv2.resize(window, (out_w, out_h), interpolation=interp)
            boxes = boxes * np.array([out_w / (x1 - x0), out_h / (y1 - y0)] * 2, dtype=np.float32)
        height, width = window.shape[:2]
        boxes = widen_thin_boxes(boxes, self.params.min_thickness, width, height)
        if self.augment is not None:
            self.augment.set_random_seed(int(sample_seed % 2**32))
            out = self.augment(image=window, bboxes=boxes, labels=labels)
            window = out["image"]
            boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
            labels = np.asarray(out["labels"], dtype=np.int64).reshape(-1)
        window = pad_to(np.ascontiguousarray(window), self.params.tile, self.params.tile)
        target = {"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels)}
        return torch.from_numpy(window).permute(2, 0, 1).contiguous(), target


def collate_windows(batch: list[tuple[Any, dict[str, Any]]]) -> tuple[Any, list[dict[str, Any]]]:
    """Stack images to ``[B, 3, T, T]`` uint8; targets stay a list (box counts differ)."""
    import torch

    images = torch.stack([item[0] for item in batch])
    return images, [item[1] for item in batch]
