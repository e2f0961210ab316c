"""Tianchi release folders: find label files and frames, read and validate ``anno_train.json``.

A release is one or more folders as unzipped (``train1``, ``train2``, ``partA/partA``, a
``fabricnms synth`` output). Nothing is found by a fixed depth: label files
(``anno_train.json``, legacy ``gt_result.json``) and frames are discovered recursively.

Label-file schema (one flat JSON list, one object per box)::

    {"name": "<bare frame file name>", "defect_name": "<raw Chinese name>",
     "bbox": [xmin, ymin, xmax, ymax]}          # xyxy, absolute pixels, top-left origin

Normal (defect-free) frames live in ``normal_Images/`` and never appear in a label file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fabricnms.data.images import is_image_file
from fabricnms.errors import FabricError
from fabricnms.io import read_json

#: Label file names, current first, then the legacy 20190809 name.
LABEL_FILE_NAMES: tuple[str, ...] = ("anno_train.json", "gt_result.json")
#: Folder names (lower case) whose frames are defect-free; round 2 uses ``normal/<stem>/``.
NORMAL_DIR_NAMES: frozenset[str] = frozenset({"normal_images", "normal images", "normal"})
#: Folder names (lower case) whose frames are expected in a label file.
DEFECT_DIR_NAMES: frozenset[str] = frozenset({"defect_images", "defect images", "defect"})
#: Round-2 defect-free pattern templates: never frames of their own.
TEMPLATE_PREFIX = "template_"
_REQUIRED_KEYS = ("name", "defect_name", "bbox")


@dataclass(frozen=True)
class TianchiEntry:
    """One box of a label file, as written (class and bounds not checked yet).

    ``bbox`` is ``(xmin, ymin, xmax, ymax)`` in absolute pixels of the frame, floats.
    """

    label_file: Path
    index: int  # 0-based position in the file's top-level list
    name: str  # bare frame file name
    defect_name: str  # raw name as written (after JSON unescaping)
    bbox: tuple[float, float, float, float]

    @property
    def where(self) -> str:
        """``<label file>[<index>]``, how messages point at this entry."""
        return f"{self.label_file}[{self.index}]"


@dataclass(frozen=True)
class FrameFile:
    """One frame found on disk."""

    path: Path
    root: Path  # the source folder it was found under
    normal: bool  # inside a ``normal_Images``-like folder
    defect_dir: bool  # inside a ``defect_Images``-like folder


@dataclass
class Release:
    """Everything found under the source folders.

    ``frames`` maps a bare file name to every file with that name, in sorted path order.
    """

    sources: list[Path]
    label_files: list[Path]
    frames: dict[str, list[FrameFile]] = field(default_factory=dict)


def release_root(label_file: Path) -> Path:
    """The release folder a label file belongs to: the parent of its ``Annotations`` folder(s).

    ``X/Annotations/anno_train.json`` and ``X/Annotations/Annotations/anno_train.json`` both
    give ``X``; a label file outside an ``Annotations`` folder gives its own folder.
    """
    folder = label_file.parent
    while folder.name.lower() == "annotations" and folder.parent != folder:
        folder = folder.parent
    return folder


def discover(sources: Sequence[Path], exclude: Iterable[Path] = ()) -> Release:
    """Walk every source folder for label files and frames.

    ``exclude`` folders (e.g. the output folder) are not entered. Raises :class:`FabricError`
    for a source that is missing, not a folder, or holds no label file.
    """
    if not sources:
        raise FabricError("no source folder given")
    excluded = {p.resolve() for p in exclude}
    resolved: list[Path] = []
    for src in sources:
        if not src.exists():
            raise FabricError(f"{src}: no such folder")
        if not src.is_dir():
            raise FabricError(f"{src}: not a folder (expected a Tianchi release folder)")
        resolved.append(src.resolve())

    release = Release(sources=resolved, label_files=[])
    seen_files: set[Path] = set()  # sources are resolved, so nested sources give equal paths
    label_names = {n.lower() for n in LABEL_FILE_NAMES}
    for src, given in zip(resolved, sources, strict=True):
        found_label = False
        for path in _walk_files(src, excluded):
            if path in seen_files:
                found_label |= path.name.lower() in label_names
                continue
            seen_files.add(path)
            if path.name.lower() in label_names:
                release.label_files.append(path)
                found_label = True
            elif is_image_file(path) and not path.name.startswith(TEMPLATE_PREFIX):
                dirs = {part.lower() for part in path.relative_to(src).parts[:-1]}
                release.frames.setdefault(path.name, []).append(
                    FrameFile(
                        path=path,
                        root=src,
                        normal=bool(dirs & NORMAL_DIR_NAMES),
                        defect_dir=bool(dirs & DEFECT_DIR_NAMES),
                    )
                )
        if not found_label:
            names = " or ".join(LABEL_FILE_NAMES)
            raise FabricError(f"{given}: no label file ({names}) found in this folder tree")
    release.label_files.sort(key=str)
    for files in release.frames.values():
        files.sort(key=lambda f: str(f.path))
    return release


def _walk_files(root: Path, excluded: set[Path]) -> Iterable[Path]:
    """Every regular file under ``root`` in sorted order, skipping ``excluded`` folders."""
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if (here / d).resolve() not in excluded)
        for name in sorted(filenames):
            yield here / name


def read_label_file(path: Path) -> list[TianchiEntry]:
    """Parse and validate one ``anno_train.json`` / ``gt_result.json``.

    Raises :class:`FabricError` naming the file (and ``[index]`` of the entry) for malformed
    JSON (with line and column), a top level that is not a list, an entry that is not an
    object or lacks ``name`` / ``defect_name`` / ``bbox``, and a bbox that is not 4 finite
    numbers. Class names and box bounds are checked later, against the class map and frame.
    """
    data = read_json(path)
    if not isinstance(data, list):
        raise FabricError(
            f"{path}: top level must be a list of {{name, defect_name, bbox}} objects, "
            f"got a JSON {type(data).__name__}"
        )
    return [_parse_entry(path, i, item) for i, item in enumerate(data)]


def _parse_entry(path: Path, index: int, item: object) -> TianchiEntry:
    where = f"{path}[{index}]"
    if not isinstance(item, dict):
        raise FabricError(f"{where}: entry must be an object, got {type(item).__name__}")
    for key in _REQUIRED_KEYS:
        if key not in item:
            raise FabricError(f"{where}: entry has no {key!r} key")
    name, defect_name, bbox = item["name"], item["defect_name"], item["bbox"]
    if not isinstance(name, str) or not name.strip():
        raise FabricError(f"{where}: 'name' must be a non-empty string, got {name!r}")
    if not isinstance(defect_name, str):
        raise FabricError(f"{where} ({name}): 'defect_name' must be a string, got {defect_name!r}")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_finite_number(v) for v in bbox)):
        raise FabricError(
            f"{where} ({name}): 'bbox' must be 4 numbers [xmin, ymin, xmax, ymax], got {bbox!r}"
        )
    bare = name.replace("\\", "/").rsplit("/", 1)[-1]
    x1, y1, x2, y2 = (float(v) for v in bbox)
    return TianchiEntry(path, index, bare, defect_name, (x1, y1, x2, y2))


def _is_finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def pick_frame(candidates: Sequence[FrameFile], label_file: Path | None) -> FrameFile:
    """The file to use among same-named frames.

    Preference: inside the label file's own release folder, then in a defect folder, then
    outside normal folders, then the first path in sorted order (partA's label file lists
    frames stored in partB, so siblings are searched too).
    """
    home = release_root(label_file) if label_file is not None else None

    def rank(f: FrameFile) -> tuple[int, int, str]:
        at_home = home is not None and f.path.is_relative_to(home)
        kind = 0 if f.defect_dir else 2 if f.normal else 1
        return (0 if at_home else 1, kind, str(f.path))

    return min(candidates, key=rank)
