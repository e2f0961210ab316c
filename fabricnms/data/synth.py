"""Procedural Tianchi round-1 frames, releases and rolls (``fabricnms synth``).

Python API::

    from fabricnms.data.synth import ReleaseOptions, render_frame, write_release

    frame = render_frame(7, 320, 256, classes=[10], n_defects=1)
    frame.image                      # [256, 320, 3] uint8 RGB, before JPEG encoding
    d = frame.defects[0]
    d.raw_name, d.category_id        # "断经", 10 (1-based category id)
    d.box                            # loose xyxy pixel box, 2 decimals: what anno_train.json gets
    d.tight_box                      # xyxy pixel edges of the true mask
    d.mask                           # [256, 320] bool

    write_release("synth_out", ReleaseOptions(n_images=100, seed=0))   # round-1 folder layout
    write_release("roll", ReleaseOptions(n_images=8, seed=1, layout="roll"))  # one fabric, in order

A frame is a pure function of its arguments. The fabric, the defects and the camera draw from
independent child seeds, so the same seed with ``n_defects=0`` gives the identical defect-free
frame (same weave, same sensor noise). A release draws a new fabric and camera per frame; a roll
passes one fabric and camera (:func:`roll_params`) to every frame.
"""

from __future__ import annotations

import json
import multiprocessing
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from fabricnms.data.classes import CATEGORY_BY_ID, RAW_BY_NAME
from fabricnms.data.coco import coco_annotation, coco_dataset, coco_image, write_coco
from fabricnms.data.convert import coco_categories
from fabricnms.data.defects import RECIPES, Sizer
from fabricnms.data.synth_canvas import Box, Canvas
from fabricnms.data.synth_priors import difficulty as difficulty_level
from fabricnms.data.synth_priors import (
    loose_box,
    raw_name_weights,
    sample_box_count,
    sample_raw_names,
)
from fabricnms.data.synth_scan import ScanParams, encode_jpeg, expose, sample_scan
from fabricnms.data.texture import Fabric, FabricParams, WeaveParams, sample_fabric
from fabricnms.errors import FabricError
from fabricnms.io import atomic_write_bytes, atomic_write_json, atomic_write_text

#: Output layouts: a Tianchi round-1 release, or a roll of consecutive frames of one fabric.
LAYOUTS: tuple[str, ...] = ("release", "roll")
#: What ``write_release`` creates inside a release folder (and may replace with overwrite).
RELEASE_ENTRIES = ("defect_Images", "normal_Images", "Annotations", "README.md")
#: The COCO ground truth of a roll, next to its frames.
ROLL_LABELS = "labels.json"
#: Frame names of a roll: ``frame_0001.jpg``... (natural order = position along the roll).
ROLL_FRAME = re.compile(r"^frame_\d{4,}\.jpg$")
#: Frames narrower or lower than this cannot hold the defect recipes.
MIN_SIZE = 64


@dataclass(frozen=True)
class SynthDefect:
    """One generated defect.

    ``box`` is the loose annotation (xyxy pixels, 2 decimals, inside the frame), ``tight_box``
    the pixel-edge bounds of ``mask`` (``[H, W]`` bool), ``category_id`` is 1-based (1..20).
    """

    raw_name: str
    category_id: int
    box: Box
    tight_box: Box
    mask: np.ndarray = field(repr=False)

    @property
    def name(self) -> str:
        """English category name."""
        return CATEGORY_BY_ID[self.category_id].name


@dataclass(frozen=True)
class SynthFrame:
    """One generated frame: ``image`` ``[H, W, 3]`` uint8 RGB and its defects (empty = normal)."""

    seed: int
    image: np.ndarray = field(repr=False)
    defects: list[SynthDefect]

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


def _overlap(a: Box, b: Box) -> float:
    """Intersection over the smaller box's area."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / max(small, 1e-6)


def _place(
    rng: np.random.Generator, w: float, h: float, width: int, height: int, taken: list[Box]
) -> Box:
    """A tight box of size ``w`` x ``h`` inside the frame, avoiding ``taken`` boxes if it can."""
    box = (0.0, 0.0, w, h)
    for _ in range(30):
        x0 = float(rng.uniform(0.0, width - w))
        y0 = float(rng.uniform(0.0, height - h))
        box = (x0, y0, x0 + w, y0 + h)
        if all(_overlap(box, t) < 0.1 for t in taken):
            break
    return box


def _mask_box(mask: np.ndarray) -> Box:
    """Pixel-edge xyxy bounds of a non-empty ``[H, W]`` bool mask."""
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


def render_frame(
    seed: int,
    width: int = 2446,
    height: int = 1000,
    *,
    difficulty: str = "normal",
    classes: Sequence[int] | None = None,
    n_defects: int | None = None,
    raw_names: Sequence[str] | None = None,
    class_prior: str = "tianchi",
    fabric: FabricParams | None = None,
    scan: ScanParams | None = None,
) -> SynthFrame:
    """Render one synthetic round-1 frame.

    Args:
        seed: any non-negative int; the frame is a pure function of the arguments.
        width, height: frame size in pixels (>= 64 each).
        difficulty: ``easy``, ``normal`` or ``hard`` (defect contrast and size).
        classes: allowed category ids (1..20); ``None`` = all, drawn with the class prior.
        n_defects: number of defects; ``None`` draws 1-6 (mean 1.64), 0 gives a normal frame.
        raw_names: exact raw Chinese names to draw (overrides ``classes`` and ``n_defects``).
        class_prior: ``tianchi`` (box frequencies of the real release) or ``uniform``.
        fabric: fabric parameters to weave; ``None`` draws them from the seed.
        scan: camera parameters; ``None`` draws them from the seed. Either way the per-frame
            shading blotches and sensor noise come from the seed.

    Returns:
        A :class:`SynthFrame` whose ``image`` is the frame before JPEG encoding.
    """
    if width < MIN_SIZE or height < MIN_SIZE:
        raise FabricError(f"frame size {width}x{height} too small; need at least {MIN_SIZE} px")
    if n_defects is not None and n_defects < 0:
        raise FabricError(f"n_defects must be >= 0, got {n_defects}")
    level = difficulty_level(difficulty)
    fabric_ss, defect_ss, scan_ss = np.random.SeedSequence(seed).spawn(3)
    fab_rng = np.random.default_rng(fabric_ss)
    cloth = Fabric.render(fabric or sample_fabric(fab_rng), fab_rng, width, height)
    canvas = Canvas(cloth)

    plan_rng = np.random.default_rng(defect_ss)
    if raw_names is not None:
        unknown = [n for n in raw_names if n not in RECIPES]
        if unknown:
            raise FabricError(f"unknown raw defect name(s) {unknown}")
        names = list(raw_names)
    else:
        if n_defects is None:
            n_defects = sample_box_count(plan_rng)
        raw_name_weights(classes, class_prior)  # validates the ids before drawing
        names = sample_raw_names(plan_rng, n_defects, classes, class_prior)
    sizer = Sizer(plan_rng, width, height, level.size)
    taken: list[Box] = []
    defects: list[SynthDefect] = []
    for name, child in zip(names, defect_ss.spawn(len(names)), strict=True):
        recipe = RECIPES[name]
        w, h = recipe.extent(sizer)
        box = _place(plan_rng, w, h, width, height, taken)
        taken.append(box)
        rng = np.random.default_rng(child)
        win, effect = recipe.render(canvas, rng, box, level.contrast)
        local = effect >= 0.5
        if not local.any():  # a recipe drew only faint pixels: keep its strongest ones
            peak = float(effect.max())
            if peak <= 0.0:
                raise RuntimeError(f"defect recipe {name} drew nothing in {box}")
            local = effect >= 0.5 * peak
        mask = np.zeros((height, width), bool)
        mask[win.ys, win.xs] = local
        tight = _mask_box(mask)
        raw = RAW_BY_NAME[name]
        defects.append(
            SynthDefect(name, raw.category_id, loose_box(rng, tight, width, height), tight, mask)
        )
    scan_rng = np.random.default_rng(scan_ss)
    image = expose(cloth.rgb, scan or sample_scan(scan_rng, width), scan_rng)
    return SynthFrame(seed=int(seed), image=image, defects=defects)


# --------------------------------------------------------------------------- releases and rolls


@dataclass(frozen=True)
class ReleaseOptions:
    """Everything that shapes a release or a roll besides its output folder (plain values,
    picklable). ``layout`` is ``release`` (Tianchi round-1 folders) or ``roll`` (see
    :func:`write_release`)."""

    n_images: int
    seed: int = 0
    width: int = 2446
    height: int = 1000
    normal_fraction: float = 0.38
    classes: tuple[int, ...] | None = None
    difficulty: str = "normal"
    masks: bool = False
    class_prior: str = "tianchi"
    layout: str = "release"


@dataclass(frozen=True)
class _FrameJob:
    index: int
    path: str  # relative to out_dir
    normal: bool
    out_dir: str
    options: ReleaseOptions


@dataclass(frozen=True)
class _FrameResult:
    name: str  # file name
    normal: bool
    entries: list[tuple[str, Box]]  # (raw name, loose box) per defect
    extras: list[dict]  # per defect: category id, tight box, RLE (when masks are wanted)


@dataclass
class ReleaseSummary:
    """What :func:`write_release` produced (counts keyed by 1-based category id / raw name)."""

    out_dir: Path
    options: ReleaseOptions
    defect_frames: int = 0
    normal_frames: int = 0
    boxes_per_category: dict[int, int] = field(default_factory=dict)
    boxes_per_raw: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    workers: int = 1

    @property
    def frames(self) -> int:
        return self.defect_frames + self.normal_frames

    @property
    def boxes(self) -> int:
        return sum(self.boxes_per_category.values())

    def count(self, res: _FrameResult) -> None:
        """Add one finished frame to the counts (categories and raw names stay sorted)."""
        if res.normal:
            self.normal_frames += 1
            return
        self.defect_frames += 1
        cats = Counter(self.boxes_per_category)
        cats.update(extra["category_id"] for extra in res.extras)
        raws = Counter(self.boxes_per_raw)
        raws.update(raw for raw, _ in res.entries)
        self.boxes_per_category = dict(sorted(cats.items()))
        self.boxes_per_raw = dict(sorted(raws.items()))

    def to_dict(self) -> dict:
        """Plain JSON-ready summary (what ``fabricnms synth --json`` prints)."""
        opts = self.options
        return {
            "out_dir": str(self.out_dir),
            "layout": opts.layout,
            "frames": self.frames,
            "defect_frames": self.defect_frames,
            "normal_frames": self.normal_frames,
            "boxes": self.boxes,
            "boxes_per_frame": round(self.boxes / max(self.defect_frames, 1), 3),
            "boxes_per_category": {
                CATEGORY_BY_ID[c].name: n for c, n in sorted(self.boxes_per_category.items())
            },
            "boxes_per_raw": dict(sorted(self.boxes_per_raw.items())),
            "seed": opts.seed,
            "size": [opts.width, opts.height],
            "normal_fraction": opts.normal_fraction,
            "classes": list(opts.classes) if opts.classes is not None else None,
            "difficulty": opts.difficulty,
            "class_prior": opts.class_prior,
            "masks": opts.masks,
            "workers": self.workers,
            "seconds": round(self.seconds, 2),
        }


def frame_seed(seed: int, index: int) -> int:
    """The seed of frame ``index`` of a release or roll seeded ``seed`` (independent of the
    workers)."""
    return int(np.random.SeedSequence(seed, spawn_key=(1, index)).generate_state(1, np.uint64)[0])


def normal_indices(options: ReleaseOptions) -> set[int]:
    """Positions of the ``round(n_images * normal_fraction)`` normal frames (seed-determined)."""
    n = options.n_images
    plan_rng = np.random.default_rng(np.random.SeedSequence(options.seed, spawn_key=(0, 0)))
    return set(plan_rng.permutation(n)[: round(n * options.normal_fraction)].tolist())


def shift_weave(weave: WeaveParams, rows: float) -> WeaveParams:
    """``weave`` advanced ``rows`` px along the warp (image y).

    :func:`fabricnms.data.texture.raw_lattice` is ``f(u c + v s + phase0 / k1, v c - u s +
    phase1 / k2)``, so ``raw_lattice(u, v + rows, weave) == raw_lattice(u, v, shift_weave(weave,
    rows))``: a frame rendered with the shifted weave continues the lattice of the frame above.
    """
    theta = np.deg2rad(weave.angle)
    along = weave.dot_period if weave.kind == "twill" else weave.period
    turn = 2.0 * np.pi
    return replace(
        weave,
        phase=(
            float((weave.phase[0] + turn * rows * np.sin(theta) / weave.period) % turn),
            float((weave.phase[1] + turn * rows * np.cos(theta) / along) % turn),
        ),
    )


def roll_params(seed: int, width: int, height: int, index: int) -> tuple[FabricParams, ScanParams]:
    """Fabric and camera of frame ``index`` of the roll seeded ``seed``.

    One fabric (weave geometry, colour, contrast, texture statistics) and one camera set-up
    (vignetting, tilt, blur, noise levels) for the whole roll; the weave phase advances
    ``height`` rows per frame (:func:`shift_weave`), so the yarn lattice runs on from frame to
    frame. Each frame still draws its own lattice wobble (<= 1.1 px), yarn profiles, mottling,
    shading blotches and sensor noise from :func:`frame_seed`, as a real scan varies.
    """
    fabric_ss, scan_ss = np.random.SeedSequence(seed, spawn_key=(2,)).spawn(2)
    fabric = sample_fabric(np.random.default_rng(fabric_ss))
    scan = sample_scan(np.random.default_rng(scan_ss), width)
    return replace(fabric, weave=shift_weave(fabric.weave, index * height)), scan


def layout_frame(options: ReleaseOptions, index: int, normal: bool) -> SynthFrame:
    """Frame ``index`` of the release or roll ``options`` describes (``normal``: no defects)."""
    fabric, scan = (
        roll_params(options.seed, options.width, options.height, index)
        if options.layout == "roll"
        else (None, None)
    )
    return render_frame(
        frame_seed(options.seed, index),
        options.width,
        options.height,
        difficulty=options.difficulty,
        classes=options.classes,
        n_defects=0 if normal else None,
        class_prior=options.class_prior,
        fabric=fabric,
        scan=scan,
    )


def _frame_names(seed: int, n: int) -> list[str]:
    """``n`` distinct round-1 style names: 16 lowercase hex digits + 10 decimal digits + .jpg."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0, 1)))
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        name = f"{rng.bytes(8).hex()}{int(rng.integers(0, 10**10)):010d}.jpg"
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _frame_paths(options: ReleaseOptions, normal: set[int]) -> list[str]:
    """Where each frame goes, relative to the output folder."""
    n = options.n_images
    if options.layout == "roll":
        digits = max(4, len(str(n)))
        return [f"frame_{i + 1:0{digits}d}.jpg" for i in range(n)]
    return [
        f"{'normal_Images' if i in normal else 'defect_Images'}/{name}"
        for i, name in enumerate(_frame_names(options.seed, n))
    ]


def _render_job(job: _FrameJob) -> _FrameResult:
    """Render, encode and write one frame (runs in a worker process for ``workers > 1``)."""
    opts = job.options
    frame = layout_frame(opts, job.index, job.normal)
    path = Path(job.out_dir) / job.path
    atomic_write_bytes(path, encode_jpeg(frame.image))
    extras = []
    for d in frame.defects:
        extra: dict = {"category_id": d.category_id, "tight_bbox": list(d.tight_box)}
        if opts.masks:
            rle = mask_utils.encode(np.asfortranarray(d.mask.astype(np.uint8)))
            size = [int(s) for s in rle["size"]]
            extra["segmentation"] = {"size": size, "counts": rle["counts"].decode("ascii")}
        extras.append(extra)
    return _FrameResult(path.name, job.normal, [(d.raw_name, d.box) for d in frame.defects], extras)


def _worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)


def _run_jobs(jobs: list[_FrameJob], workers: int) -> Iterator[_FrameResult]:
    """Results of ``jobs`` in job order, rendered in this process or a pool of ``workers``."""
    if workers == 1:
        yield from map(_render_job, jobs)
        return
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, initializer=_worker_init) as pool:
        yield from pool.imap(_render_job, jobs, chunksize=1)


def _owned(layout: str, name: str) -> bool:
    """Whether ``name`` in an output folder is something ``layout`` writes (and may replace)."""
    if layout == "roll":
        return name == ROLL_LABELS or ROLL_FRAME.match(name) is not None
    return name in RELEASE_ENTRIES


def _prepare_out_dir(out_dir: Path, overwrite: bool, layout: str) -> None:
    """Create ``out_dir``; refuse a non-empty one unless ``overwrite`` and it holds only a
    previous output of the same layout (whose entries are then removed)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise FabricError(f"{out_dir}: exists and is not a directory")
    if out_dir.is_dir():
        present = sorted(p.name for p in out_dir.iterdir())
        if present and not overwrite:
            raise FabricError(
                f"{out_dir}: directory is not empty; pass --overwrite to replace a previous "
                f"synth {layout} there"
            )
        foreign = [p for p in present if not _owned(layout, p)]
        if foreign:
            raise FabricError(
                f"{out_dir}: refusing to overwrite, it holds {foreign[0]!r} which synth "
                f"--layout {layout} does not write; choose an empty or new directory"
            )
        for p in present:
            path = out_dir / p
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    subs = ("defect_Images", "normal_Images", "Annotations") if layout == "release" else (".",)
    try:
        for sub in subs:
            (out_dir / sub).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FabricError(f"{out_dir}: cannot create the output folders ({exc.strerror})") from exc


def validate_options(options: ReleaseOptions) -> None:
    """Raise :class:`FabricError` for options no release or roll can be made from."""
    if options.layout not in LAYOUTS:
        raise FabricError(
            f"unknown layout {options.layout!r}; expected one of {', '.join(LAYOUTS)}"
        )
    if options.n_images < 1:
        raise FabricError(f"number of images must be at least 1, got {options.n_images}")
    if options.width < MIN_SIZE or options.height < MIN_SIZE:
        raise FabricError(
            f"frame size {options.width}x{options.height} too small; need at least {MIN_SIZE} px"
        )
    if not 0.0 <= options.normal_fraction <= 1.0:
        raise FabricError(f"normal fraction must be in [0, 1], got {options.normal_fraction}")
    difficulty_level(options.difficulty)
    raw_name_weights(options.classes, options.class_prior)


def write_release(
    out_dir: str | Path,
    options: ReleaseOptions,
    *,
    workers: int = 1,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ReleaseSummary:
    """Write a synthetic round-1 release or roll to ``out_dir`` (``options.layout``).

    ``release``: ``defect_Images/*.jpg``, ``normal_Images/*.jpg``, ``Annotations/anno_train.json``
    (flat list of ``{name, defect_name, bbox}``, raw names ASCII-escaped, bbox xyxy pixels with
    2 decimals, normal frames never listed), ``README.md``; with ``options.masks`` also
    ``Annotations/masks.json`` (true masks as COCO RLE, for evaluation only). Every frame has its
    own fabric and camera.

    ``roll``: ``frame_0001.jpg``, ``frame_0002.jpg``... (consecutive frames of one fabric, see
    :func:`roll_params`) and ``labels.json``, a COCO dataset (xywh boxes, 20 categories, the
    raw name as ``defect_name``; with ``options.masks`` a ``segmentation`` RLE per box; normal
    frames listed without annotations).

    Exactly ``round(n_images * normal_fraction)`` frames are normal, at seed-determined
    positions (:func:`normal_indices`). Frame ``i`` is rendered from :func:`frame_seed`
    ``(seed, i)``, so the output (JSON bytes and pixels) is the same for any ``workers``.
    ``progress`` is called with the number of frames finished so far. The annotation file is
    written last: an output without it is incomplete.
    """
    validate_options(options)
    if workers < 1:
        raise FabricError(f"workers must be at least 1, got {workers}")
    out = Path(out_dir).expanduser().resolve()
    _prepare_out_dir(out, overwrite, options.layout)
    start = time.perf_counter()
    normal = normal_indices(options)
    jobs = [
        _FrameJob(i, path, i in normal, str(out), options)
        for i, path in enumerate(_frame_paths(options, normal))
    ]
    workers = min(workers, options.n_images)
    summary = ReleaseSummary(out_dir=out, options=options, workers=workers)
    results: list[_FrameResult] = []
    for res in _run_jobs(jobs, workers):
        summary.count(res)
        results.append(res)
        if progress is not None:
            progress(summary.frames)
    summary.seconds = time.perf_counter() - start
    if options.layout == "roll":
        write_coco(out / ROLL_LABELS, _roll_coco(results, options))
    else:
        _write_release_annotations(out, results, summary)
    return summary


def _roll_coco(results: Sequence[_FrameResult], options: ReleaseOptions) -> dict:
    """The COCO ground truth of a roll: image ids from 1 in roll order, boxes xywh."""
    images, annotations = [], []
    for image_id, res in enumerate(results, start=1):
        images.append(coco_image(image_id, res.name, options.width, options.height))
        for (raw, (x0, y0, x1, y1)), extra in zip(res.entries, res.extras, strict=True):
            annotations.append(
                coco_annotation(
                    len(annotations) + 1,
                    image_id,
                    extra["category_id"],
                    (x0, y0, round(x1 - x0, 2), round(y1 - y0, 2)),
                    segmentation=extra.get("segmentation", []),
                    defect_name=raw,
                )
            )
    description = (
        f"fabricnms synth roll: seed {options.seed}, {options.n_images} frames "
        f"{options.width}x{options.height}, difficulty {options.difficulty}, class prior "
        f"{options.class_prior}"
    )
    return coco_dataset(images, annotations, coco_categories(20), description)


def _write_release_annotations(
    out: Path, results: Sequence[_FrameResult], summary: ReleaseSummary
) -> None:
    """``Annotations/masks.json`` (with masks), ``README.md`` and, last, ``anno_train.json``."""
    entries: list[dict] = []
    sidecar: dict[str, list[dict]] = {}
    for res in results:
        for (raw, box), extra in zip(res.entries, res.extras, strict=True):
            if summary.options.masks:
                sidecar.setdefault(res.name, []).append(
                    {"entry": len(entries), "defect_name": raw, "bbox": list(box), **extra}
                )
            entries.append({"name": res.name, "defect_name": raw, "bbox": [float(v) for v in box]})
    if summary.options.masks:
        atomic_write_json(
            out / "Annotations" / "masks.json",
            {
                "info": "true defect masks of a fabricnms synth release (COCO RLE), for evaluation",
                "images": sidecar,
            },
            indent=None,
            ensure_ascii=True,
        )
    atomic_write_text(out / "README.md", _readme(summary))
    atomic_write_text(out / "Annotations" / "anno_train.json", annotation_json(entries))


def annotation_json(entries: Sequence[dict]) -> str:
    """``anno_train.json`` text laid out like the official README example: a flat list, keys
    ``name, defect_name, bbox`` in that order, 4-space indent, ``bbox`` on one line, Chinese
    names as ``\\u``-escaped ASCII."""
    items = []
    for e in entries:
        bbox = ", ".join(json.dumps(float(v)) for v in e["bbox"])
        items.append(
            "    {\n"
            f'        "name": {json.dumps(e["name"])},\n'
            f'        "defect_name": {json.dumps(e["defect_name"], ensure_ascii=True)},\n'
            f'        "bbox": [{bbox}]\n'
            "    }"
        )
    return "[\n" + ",\n".join(items) + ("\n]\n" if items else "]\n")


def _readme(summary: ReleaseSummary) -> str:
    """The release's README.md: what was generated, from which options, and the counts."""
    from fabricnms import __version__

    opts = summary.options
    classes = ", ".join(str(c) for c in opts.classes) if opts.classes is not None else "all 20"
    lines = [
        "# Synthetic Tianchi round-1 fabric-defect release",
        "",
        f"Generated by `fabricnms synth` (fabricnms {__version__}). Procedural fabric and defects,",
        "not real data. The layout and `Annotations/anno_train.json` schema follow the 2019",
        "Guangdong fabric-defect round-1 release: one JSON entry per box (`name`, `defect_name`",
        "as an ASCII-escaped raw Chinese name, `bbox` = `[xmin, ymin, xmax, ymax]` pixels);",
        "frames in `normal_Images/` are never listed.",
        "",
        "| option | value |",
        "|---|---|",
        f"| seed | {opts.seed} |",
        f"| images | {opts.n_images} |",
        f"| size (W x H) | {opts.width} x {opts.height} |",
        f"| normal fraction | {opts.normal_fraction} |",
        f"| classes | {classes} |",
        f"| difficulty | {opts.difficulty} |",
        f"| class prior | {opts.class_prior} |",
        f"| masks | {'yes (Annotations/masks.json)' if opts.masks else 'no'} |",
        "",
        f"Frames: {summary.frames} ({summary.defect_frames} defect, "
        f"{summary.normal_frames} normal); boxes: {summary.boxes}.",
        "",
        "| category | name | boxes |",
        "|---:|---|---:|",
    ]
    lines += [
        f"| {c} | {CATEGORY_BY_ID[c].name} | {n} |" for c, n in summary.boxes_per_category.items()
    ]
    lines += [
        "",
        "Same seed and options give byte-identical annotations and identical images, whatever",
        "the number of workers.",
        "",
    ]
    return "\n".join(lines)
