"""Image reading and writing for the dataset loaders.

Every read names the file in its error, so that a corrupt frame in a dataset of a hundred
thousand files can be found. Images are read with Pillow; writes are atomic. The expression
files (``meta_expressions.json``, Ref-DAVIS17 text files) are read by
:mod:`rvoslib.data.expressions`, whose names are also importable from here.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from rvoslib._io import ImageReadError, atomic_write_bytes
from rvoslib._palette import davis_palette
from rvoslib.data.expressions import ExpressionRecord, load_meta_expressions, parse_refdavis_text

__all__ = [
    "IMAGE_EXTENSIONS",
    "ExpressionRecord",
    "ImageReadError",
    "davis_palette",
    "image_size",
    "list_images",
    "load_meta_expressions",
    "parse_refdavis_text",
    "read_frame",
    "read_mask",
    "write_frame",
    "write_mask",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Sorted image files (``.jpg``, ``.jpeg``, ``.png``) in ``folder``; hidden files skipped."""
    return sorted(
        path
        for path in Path(folder).iterdir()
        if path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")
    )


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` of an image, reading only its header."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, ValueError) as error:
        raise ImageReadError(path, str(error)) from error
    return height, width


def read_frame(path: str | os.PathLike) -> np.ndarray:
    """Read an RGB frame.

    Returns:
        ``(H, W, 3)`` uint8 array.

    Raises:
        ImageReadError: the file is missing, truncated or not an image (the path is named).
    """
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageReadError(path, str(error) or type(error).__name__) from error


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read an annotation PNG whose pixel values are object ids (0 = background).

    Indexed (``P``) and greyscale (``L``) PNGs are read as stored; the palette is ignored.

    Returns:
        ``(H, W)`` uint8 array of object ids.

    Raises:
        ImageReadError: unreadable file, or a colour image that holds no object ids.
    """
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L", "1", "I", "I;16"):
                raise ImageReadError(
                    path, f"expected an indexed ('P') or greyscale PNG, got mode {image.mode!r}"
                )
            array = np.asarray(image)
    except ImageReadError:
        raise
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageReadError(path, str(error) or type(error).__name__) from error
    if array.max(initial=0) > 255:
        raise ImageReadError(path, f"object ids must be < 256, found {int(array.max())}")
    return array.astype(np.uint8)


def _encoded(image: Image.Image, suffix: str, quality: int = 95) -> bytes:
    buffer = io.BytesIO()
    if suffix.lower() in (".jpg", ".jpeg"):
        image.save(buffer, format="JPEG", quality=quality, subsampling=0)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_frame(path: str | os.PathLike, frame: np.ndarray, quality: int = 95) -> None:
    """Write an ``(H, W, 3)`` uint8 frame as JPEG (``quality``) or PNG, chosen by suffix.

    The file is written atomically; the parent folders are created.
    """
    path = Path(path)
    image = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8), mode="RGB")
    atomic_write_bytes(path, _encoded(image, path.suffix, quality))


def write_mask(path: str | os.PathLike, mask: np.ndarray) -> None:
    """Write an ``(H, W)`` uint8 object-id map as an indexed PNG with the DAVIS palette.

    The file is written atomically; the parent folders are created.
    """
    image = Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8), mode="P")
    image.putpalette(davis_palette().ravel().tolist())
    atomic_write_bytes(path, _encoded(image, ".png"))
