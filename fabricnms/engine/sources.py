"""Inputs of ``predict``: discover frames from files, folders, globs and ``.txt`` lists.

Discovery (:func:`discover_frames`) turns the command-line sources into one de-duplicated list
of image paths in natural order (``frame2`` before ``frame10``), the order of a roll and the
order :func:`shard_slice` splits. Reading a frame is :mod:`fabricnms.data.frame_reader`'s job.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from fabricnms.data.images import IMAGE_SUFFIXES, is_image_file
from fabricnms.errors import FabricError, UsageError
from fabricnms.io import natural_key

LIST_SUFFIX = ".txt"


def _images_in_dir(folder: Path, recursive: bool) -> list[Path]:
    entries = folder.rglob("*") if recursive else folder.iterdir()
    return [p for p in entries if p.is_file() and is_image_file(p)]


def _images_in_list(list_file: Path) -> list[Path]:
    """Paths of a ``.txt`` list: one per line, relative ones resolved against the list's folder,
    blank lines and ``#`` comments ignored. Listed files are not checked here: a missing one is
    a per-frame read error, so one bad line does not stop a large job."""
    try:
        text = list_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FabricError(f"{list_file}: cannot read the list of frames ({exc})") from None
    out = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        path = Path(line).expanduser()
        if not path.is_absolute():
            path = list_file.parent / path
        if not is_image_file(path):
            raise FabricError(
                f"{list_file}: line {n}: {line!r} is not an image file "
                f"({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        out.append(path)
    return out


def _expand(source: str, recursive: bool) -> list[Path]:
    path = Path(source).expanduser()
    if path.is_dir():
        return _images_in_dir(path, recursive)
    if path.is_file():
        if path.suffix.lower() == LIST_SUFFIX:
            return _images_in_list(path)
        if not is_image_file(path):
            raise FabricError(
                f"{source}: not an image ({', '.join(sorted(IMAGE_SUFFIXES))}) "
                "or a .txt list of images"
            )
        return [path]
    if glob.has_magic(source):
        return [
            Path(p)
            for p in glob.glob(os.path.expanduser(source), recursive=recursive)
            if os.path.isfile(p) and is_image_file(Path(p))
        ]
    raise FabricError(f"{source}: no such file, folder or pattern")


def discover_frames(sources: list[str], recursive: bool = False) -> list[Path]:
    """Image paths (absolute) of all ``sources``, de-duplicated, in natural order.

    Each source is an image file, a folder (its images; subfolders too with ``recursive``), a
    glob pattern (``**`` matches subfolders with ``recursive``) or a ``.txt`` file listing one
    image path per line. A source that names nothing, or a folder or pattern without images,
    is an error naming it.
    """
    if not sources:
        raise FabricError("no source given: pass image files, folders, globs or a .txt list")
    found: dict[str, Path] = {}
    for source in sources:
        paths = _expand(source, recursive)
        if not paths:
            hint = "" if recursive else " (add --recursive to search subfolders)"
            raise FabricError(f"{source}: no images found{hint}")
        for p in paths:
            absolute = Path(os.path.abspath(p))
            found.setdefault(str(absolute), absolute)
    return sorted(found.values(), key=lambda p: natural_key(str(p)))


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n`` (shard indices are 0-based)."""
    parts = text.split("/")
    try:
        index, count = (int(v) for v in parts)
    except ValueError:
        raise UsageError(f"--shard {text!r}: expected i/n, e.g. 0/4 (the first of 4)") from None
    if count < 1 or not 0 <= index < count:
        raise UsageError(f"--shard {text!r}: need n >= 1 and 0 <= i <= n - 1")
    return index, count


def shard_slice(count: int, index: int, shards: int) -> range:
    """Indices of shard ``index`` of ``shards`` over ``count`` items: a contiguous block.

    Blocks differ in size by at most one, cover ``range(count)`` exactly once and keep
    consecutive frames of a roll together.
    """
    return range(index * count // shards, (index + 1) * count // shards)
