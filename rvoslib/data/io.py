"""Image reading and writing for the dataset loaders.

Every read names the file in its error, so that a corrupt frame in a dataset of a hundred
thousand files can be found. Images are read with Pillow; writes are atomic. The expression
files (``meta_expressions.json``, Ref-DAVIS17 text files) are read by
:mod:`rvoslib.data.expressions`, whose names are also importable from here.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
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
    "read_clip",
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


def read_clip(
    frame_paths: Sequence[str | os.PathLike],
    mask_paths: Sequence[str | os.PathLike | None],
    obj_id: int,
    *,
    video_id: str,
    frame_ids: Sequence[str],
    known_ids: set[int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read the frames of a clip and one object's masks in them.

    Args:
        frame_paths: The clip's frames, in order.
        mask_paths: Per frame, its annotation PNG (object ids) or None (unannotated).
        obj_id: The object whose masks to return.
        video_id: The video, named in errors.
        frame_ids: Per frame, its name in errors.
        known_ids: The video's object ids; an annotation holding another id (besides 0)
            raises. None checks nothing.

    Returns:
        ``frames`` ``(T, H, W, 3)`` uint8, ``masks`` ``(T, H, W)`` uint8 (1 where the object
        is; 0 in unannotated frames), ``valid`` ``(T,)`` bool (True where annotated).

    Raises:
        ImageReadError: an unreadable frame or annotation (the file is named).
        ValueError: frames of different sizes, an annotation whose size differs from its
            frame's (both sizes named), or an object id absent from ``known_ids``.
    """
    frames = [read_frame(path) for path in frame_paths]
    height, width = frames[0].shape[:2]
    masks = np.zeros((len(frames), height, width), np.uint8)
    valid = np.zeros(len(frames), bool)
    for slot, (frame, path) in enumerate(zip(frames, mask_paths, strict=True)):
        if frame.shape[:2] != (height, width):
            raise ValueError(
                f"video {video_id!r}: frame {frame_ids[slot]} is {_hw(frame.shape)} but frame "
                f"{frame_ids[0]} is {_hw((height, width))}"
            )
        if path is None:
            continue
        ids = read_mask(path)
        if ids.shape != (height, width):
            which = "first-frame annotation" if slot == 0 else "annotation"
            raise ValueError(
                f"video {video_id!r}, object {obj_id}: {which} {path} is {_hw(ids.shape)} but "
                f"frame {frame_ids[slot]} is {_hw((height, width))}; masks must have the size "
                "of their frames"
            )
        if known_ids is not None:
            strangers = sorted(set(np.unique(ids).tolist()) - known_ids - {0})
            if strangers:
                raise ValueError(
                    f"video {video_id!r}: annotation {path} has object id(s) {strangers} absent "
                    f"from meta.json (objects of the video there: {sorted(known_ids)})"
                )
        masks[slot] = ids == obj_id
        valid[slot] = True
    return np.stack(frames), masks, valid


def _hw(shape: Sequence[int]) -> str:
    return f"{int(shape[0])}x{int(shape[1])} (HxW)"


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
