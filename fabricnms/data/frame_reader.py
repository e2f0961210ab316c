"""The one image reader of every command (predict, visualize, train, eval, convert --decode).

:func:`read_frame_rgb` decodes a frame to ``[H, W, 3]`` uint8 RGB whatever its format, bit
depth or channel count, under one policy: a file that is missing, empty, a JPEG without its
end-of-image marker (truncated; libjpeg would decode the missing part as grey and only warn,
naming no file), undecodable, of an unsupported pixel type or declaring more than
:data:`MAX_FRAME_PIXELS` pixels in its header (checked before any pixel is decoded, so a
40000x40000 PNG of a few bytes costs nothing) raises :class:`FrameReadError` naming the file
and the problem. Callers report and skip such a frame (predict, visualize) or refuse the
dataset (train, eval).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np

from fabricnms.errors import FabricError

#: Largest frame decoded: 2**27 pixels (e.g. 16384 x 8192, 384 MiB as RGB).
MAX_FRAME_PIXELS = 1 << 27
_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_EOI_WINDOW = 4096  # bytes at the end of a JPEG searched for its end-of-image marker


class FrameReadError(FabricError):
    """One frame could not be read (missing, unreadable, corrupt, too large, unsupported)."""


def _header_size(fh: BinaryIO, path: Path) -> tuple[int, int] | None:
    """``(width, height)`` from the header (Pillow's lazy parse, no pixel decoding), ``None``
    when Pillow cannot parse it (OpenCV's decoder then accepts or refuses the file). A header
    over :data:`MAX_FRAME_PIXELS` pixels is refused here."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(fh) as img:
                width, height = img.size
        size = f"{width}x{height}"
    except Image.DecompressionBombError:  # over Pillow's own limit, twice MAX_IMAGE_PIXELS
        width, height = MAX_FRAME_PIXELS + 1, 1
        size = f"over {2 * (Image.MAX_IMAGE_PIXELS or 0)} pixels"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None
    if width * height > MAX_FRAME_PIXELS:
        raise FrameReadError(
            f"{path}: image too large to decode (header says {size}; "
            f"the limit is {MAX_FRAME_PIXELS} pixels)"
        )
    return width, height


def check_frame_file(path: str | Path) -> tuple[int, int] | None:
    """The reader's checks that need no decoding (a few KB read): the file exists and is not
    empty, a JPEG ends with its end-of-image marker, the header is within
    :data:`MAX_FRAME_PIXELS`. Returns the header's ``(width, height)`` (``None`` when only
    OpenCV can parse it); raises :class:`FrameReadError` naming the file."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                raise FrameReadError(f"{path}: empty file")
            if fh.read(2) == _JPEG_SOI:
                fh.seek(max(0, size - _EOI_WINDOW))
                if _JPEG_EOI not in fh.read():
                    raise FrameReadError(f"{path}: truncated JPEG (no end-of-image marker)")
            fh.seek(0)
            return _header_size(fh, path)
    except FileNotFoundError:
        raise FrameReadError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise FrameReadError(f"{path}: is a folder, not an image") from None
    except OSError as exc:
        raise FrameReadError(f"{path}: cannot read ({exc.strerror or exc})") from None


def decode_image(path: str | Path) -> np.ndarray:
    """The file's pixels as OpenCV decodes them (``IMREAD_UNCHANGED``: BGR(A) or grey, any
    depth), after the checks of the module docstring."""
    import cv2

    path = Path(path)
    check_frame_file(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except OSError as exc:
        raise FrameReadError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except cv2.error as exc:
        first = (str(exc).strip().splitlines() or ["decoder error"])[-1][:120]
        raise FrameReadError(f"{path}: cannot be decoded ({first})") from None
    if image is None or image.size == 0:
        raise FrameReadError(f"{path}: cannot be decoded as an image (corrupt or unsupported)")
    return image


def to_rgb8(image: np.ndarray, path: Path | str = "") -> np.ndarray:
    """Any decoded cv2 image -> ``[H, W, 3]`` uint8 RGB.

    Pixel types: uint8 as is; uint16 scaled by 255 / 65535 (full range, rounded; no per-frame
    stretching, so frames of a roll stay comparable); float in [0, 1] scaled by 255. Channels:
    grey (2-D or 1 channel) replicated; grey + alpha and BGRA drop the alpha; BGR -> RGB.
    """
    import cv2

    if image.dtype == np.uint16:
        image = ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        image = (np.clip(np.nan_to_num(image), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise FrameReadError(f"{path}: unsupported pixel type {image.dtype}")
    if image.ndim == 3 and image.shape[2] in (1, 2):
        image = image[:, :, 0]
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    raise FrameReadError(f"{path}: unsupported image layout {list(image.shape)}")


def read_frame_rgb(path: str | Path) -> np.ndarray:
    """Decode ``path`` (JPEG, PNG, BMP, TIFF; 8/16-bit; grey, colour or with alpha) to
    ``[H, W, 3]`` uint8 RGB. Raises :class:`FrameReadError` naming the file and the problem."""
    path = Path(path)
    return to_rgb8(decode_image(path), path)


def read_frame_bgr(path: str | Path) -> np.ndarray:
    """:func:`read_frame_rgb` in OpenCV's channel order (``[H, W, 3]`` uint8 BGR), for drawing."""
    import cv2

    return cv2.cvtColor(read_frame_rgb(path), cv2.COLOR_RGB2BGR)
