"""Procedural Tianchi round-1 frames, releases and rolls (``fabricnms synth``): the public API.

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

The work is done in :mod:`~fabricnms.data.synth_frame` (one frame),
:mod:`~fabricnms.data.synth_layout` (options, seeds, rolls), :mod:`~fabricnms.data.synth_release`
(writing to disk) and :mod:`~fabricnms.data.synth_labels` (label files); this module gathers them.
"""

from fabricnms.data.synth_frame import MIN_SIZE, SynthDefect, SynthFrame, render_frame
from fabricnms.data.synth_labels import ReleaseSummary, annotation_json
from fabricnms.data.synth_layout import (
    LAYOUTS,
    ReleaseOptions,
    frame_seed,
    layout_frame,
    normal_indices,
    roll_params,
    shift_weave,
    validate_options,
)
from fabricnms.data.synth_release import RELEASE_ENTRIES, ROLL_FRAME, ROLL_LABELS, write_release

__all__ = [
    "LAYOUTS",
    "MIN_SIZE",
    "RELEASE_ENTRIES",
    "ROLL_FRAME",
    "ROLL_LABELS",
    "ReleaseOptions",
    "ReleaseSummary",
    "SynthDefect",
    "SynthFrame",
    "annotation_json",
    "frame_seed",
    "layout_frame",
    "normal_indices",
    "render_frame",
    "roll_params",
    "shift_weave",
    "validate_options",
    "write_release",
]
