"""What a synthetic release or roll holds: options, per-frame seeds, roll continuity.

A release draws a new fabric and camera per frame; a roll passes one fabric and camera
(:func:`roll_params`) to every frame.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fabricnms.data.fabric_families import FABRIC_CHOICES
from fabricnms.data.synth_background import background_frame
from fabricnms.data.synth_frame import MIN_SIZE, SynthFrame, render_frame
from fabricnms.data.synth_priors import difficulty as difficulty_level
from fabricnms.data.synth_priors import raw_name_weights
from fabricnms.data.synth_scan import ScanParams, sample_scan
from fabricnms.data.texture import FabricParams, WeaveParams, sample_fabric
from fabricnms.errors import FabricError

#: Output layouts: a Tianchi round-1 release, or a roll of consecutive frames of one fabric.
LAYOUTS: tuple[str, ...] = ("release", "roll")


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
    geometry: str = "real"
    backgrounds: tuple[str, ...] = ()  # real defect-free frames to paint into (release only)
    window: tuple[int, int] | None = None  # (w, h) windows cut from the backgrounds
    fabrics: str = "mixed"


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
    """Frame ``index`` of the release or roll ``options`` describes (``normal``: no defects).

    With ``options.backgrounds`` the frame is background ``index % len(backgrounds)`` (or a
    window of it) with the defects painted into it (:mod:`fabricnms.data.synth_background`).
    """
    if options.backgrounds:
        return background_frame(
            options.backgrounds[index % len(options.backgrounds)],
            options.window,
            frame_seed(options.seed, index),
            normal,
            classes=options.classes,
            class_prior=options.class_prior,
            difficulty=options.difficulty,
            geometry=options.geometry,
        )
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
        geometry=options.geometry,
        fabrics=options.fabrics,
    )


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
    if options.backgrounds and options.layout != "release":
        raise FabricError("--background writes the release layout only, not --layout roll")
    if options.window is not None and min(options.window) < MIN_SIZE:
        raise FabricError(
            f"window {options.window[0]}x{options.window[1]} too small; need at least {MIN_SIZE} px"
        )
    difficulty_level(options.difficulty)
    raw_name_weights(options.classes, options.class_prior, options.geometry)
    if options.fabrics not in FABRIC_CHOICES:
        raise FabricError(
            f"unknown fabrics {options.fabrics!r}; expected one of {', '.join(FABRIC_CHOICES)}"
        )
