"""Image files on disk: which files are images, their size from the header, atomic copies.

Sizes are read from the file header with Pillow's lazy ``Image.open`` (no pixel decoding), so
reading thousands of 2446x1000 JPEGs takes about a second. Sizes are ``(width, height)`` in
pixels as stored; EXIF orientation is not applied (Tianchi frames carry no EXIF).
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

from fabricnms.errors import FabricError
from fabricnms.io import atomic_open

#: File suffixes (lower case) treated as image frames.
IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})


def is_image_file(path: Path) -> bool:
    """True when ``path`` has an image suffix (case-insensitive); the file is not opened."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def read_image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` in pixels from the image header, without decoding pixels.

    Raises :class:`FabricError` naming the file when it cannot be opened or is not an image.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
    except FileNotFoundError:
        raise FabricError(f"{path}: image file not found") from None
    except UnidentifiedImageError:
        raise FabricError(f"{path}: not a readable image (unknown or corrupt header)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise FabricError(f"{path}: cannot read image header ({exc})") from None
    if width <= 0 or height <= 0:
        raise FabricError(f"{path}: image header gives an empty size {width}x{height}")
    return int(width), int(height)


def copy_file(src: str | Path, dst: str | Path) -> None:
    """Copy ``src`` to ``dst`` atomically (a failed copy leaves no partial ``dst``)."""
    src, dst = Path(src), Path(dst)
    try:
        with src.open("rb") as fin, atomic_open(dst, "wb") as fout:
            shutil.copyfileobj(fin, fout, length=1 << 20)
    except OSError as exc:
        raise FabricError(f"{src}: cannot copy to {dst} ({exc.strerror or exc})") from None
