"""Writing a synthetic release or roll to disk (:func:`write_release`), in parallel if asked."""

from __future__ import annotations

import multiprocessing
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from fabricnms.data.coco import write_coco
from fabricnms.data.synth_background import usable_backgrounds
from fabricnms.data.synth_labels import (
    FrameResult,
    ReleaseSummary,
    roll_coco,
    write_release_annotations,
)
from fabricnms.data.synth_layout import (
    ReleaseOptions,
    layout_frame,
    normal_indices,
    validate_options,
)
from fabricnms.data.synth_scan import encode_jpeg
from fabricnms.errors import FabricError
from fabricnms.io import atomic_write_bytes

#: What ``write_release`` creates inside a release folder (and may replace with overwrite).
RELEASE_ENTRIES = ("defect_Images", "normal_Images", "Annotations", "README.md")
#: The COCO ground truth of a roll, next to its frames.
ROLL_LABELS = "labels.json"
#: Frame names of a roll: ``frame_0001.jpg``... (natural order = position along the roll).
ROLL_FRAME = re.compile(r"^frame_\d{4,}\.jpg$")


@dataclass(frozen=True)
class _FrameJob:
    index: int
    path: str  # relative to out_dir
    normal: bool
    out_dir: str
    options: ReleaseOptions


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


def _render_job(job: _FrameJob) -> FrameResult:
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
    return FrameResult(path.name, job.normal, [(d.raw_name, d.box) for d in frame.defects], extras)


def _worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)


def _run_jobs(jobs: list[_FrameJob], workers: int) -> Iterator[FrameResult]:
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


def write_release(
    out_dir: str | Path,
    options: ReleaseOptions,
    *,
    workers: int = 1,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    warn: Callable[[str], None] | None = None,
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

    With ``options.backgrounds`` (release only) the frames are those real defect-free frames,
    or windows of them, with the defects painted into them; an unreadable, too small or blank
    background is skipped, each one reported through ``warn``; none left is an error.
    """
    validate_options(options)
    skipped: list[str] = []
    if options.backgrounds:
        usable, skipped = usable_backgrounds(list(options.backgrounds))
        for problem in skipped:
            if warn is not None:
                warn(f"{problem}; skipped")
        if not usable:
            raise FabricError(
                f"no usable background: all {len(skipped)} skipped (first: {skipped[0]})"
            )
        options = replace(options, backgrounds=tuple(usable))
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
    summary = ReleaseSummary(out_dir=out, options=options, workers=workers, skipped=skipped)
    results: list[FrameResult] = []
    for res in _run_jobs(jobs, workers):
        summary.count(res)
        results.append(res)
        if progress is not None:
            progress(summary.frames)
    summary.seconds = time.perf_counter() - start
    if options.layout == "roll":
        write_coco(out / ROLL_LABELS, roll_coco(results, options))
    else:
        write_release_annotations(out, results, summary)
    return summary
