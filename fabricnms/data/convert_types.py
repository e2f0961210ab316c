"""The records of ``fabricnms convert``: what was asked (:class:`ConvertOptions`), what was
found wrong (:class:`Issues`), the frames and boxes kept, and the :class:`ConvertResult` that
:func:`fabricnms.data.convert_output.write_outputs` writes; the output file names.

Boxes: :class:`FrameBox` ``bbox`` is xyxy in frame pixels, clipped to the frame; class ids are
1-based (20 categories or 34 fine classes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fabricnms.data.classes import RawClass
from fabricnms.errors import FabricError
from fabricnms.log import get_logger

log = get_logger("convert")

TRAIN_JSON = "annotations/instances_train.json"
VAL_JSON = "annotations/instances_val.json"
DATASET_YAML = "dataset.yaml"
IMAGES_DIR = "images"
MASKS_JSON = "masks.json"
_EXAMPLES_PER_KIND = 3


@dataclass(frozen=True)
class ConvertOptions:
    """What ``fabricnms convert`` was asked to do."""

    scheme: int = 20  # 20 categories or 34 fine classes
    val_fraction: float = 0.2  # in [0, 1)
    seed: int = 0
    copy: bool = False  # copy frames into OUT/images/
    strict: bool = False  # every warning is an error
    decode: bool = False  # decode every frame (else header and JPEG end-marker checks only)


class Issues:
    """Counted warnings (data left out) and notes (data changed but kept), with examples.

    With ``strict`` the first warning raises :class:`FabricError` carrying its message.
    The first few messages of each kind are logged.
    """

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.counts: dict[tuple[str, str], int] = {}
        self.examples: dict[tuple[str, str], list[str]] = {}

    def warn(self, kind: str, message: str) -> None:
        """Record a warning; an error under ``strict``."""
        if self.strict:
            raise FabricError(f"{message} (--strict)")
        self._add("warning", kind, message)

    def note(self, kind: str, message: str) -> None:
        """Record a note (never an error)."""
        self._add("note", kind, message)

    def _add(self, level: str, kind: str, message: str) -> None:
        key = (level, kind)
        self.counts[key] = self.counts.get(key, 0) + 1
        examples = self.examples.setdefault(key, [])
        if len(examples) < _EXAMPLES_PER_KIND:
            examples.append(message)
            (log.warning if level == "warning" else log.debug)(message)

    def as_list(self, level: str) -> list[dict[str, Any]]:
        """``[{kind, count, examples}]`` for one level, in first-seen order."""
        return [
            {"kind": kind, "count": n, "examples": self.examples[(lvl, kind)]}
            for (lvl, kind), n in self.counts.items()
            if lvl == level
        ]


@dataclass(frozen=True)
class FrameBox:
    """One kept box: ``bbox`` xyxy in frame pixels, clipped to the frame, w > 0 and h > 0."""

    bbox: tuple[float, float, float, float]
    category_id: int  # 1-based id in the chosen scheme
    raw: RawClass
    defect_name: str  # as written in the label file


@dataclass
class Frame:
    """One frame of the output: a defect frame with boxes or a normal frame without."""

    name: str  # bare file name
    path: Path
    width: int
    height: int
    boxes: list[FrameBox] = field(default_factory=list)
    file_name: str = ""  # relative to the image root, POSIX separators


@dataclass
class ConvertResult:
    """Everything :func:`write_outputs` needs, plus the summary."""

    frames: list[Frame]  # sorted by file_name
    is_val: list[bool]
    train: dict  # COCO document
    val: dict  # COCO document
    image_root: Path
    summary: dict[str, Any]
    masks: list[Path] = field(default_factory=list)  # true-mask sidecars of the releases
