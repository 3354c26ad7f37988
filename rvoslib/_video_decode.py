"""Decoding helpers of :mod:`rvoslib.video_io`: one frame file, a frame header, the check of
a frame's integrity, and a bounded background thread that runs a frame iterator ahead of its
consumer.

libjpeg decodes a truncated JPEG with a warning only (the missing rows come out grey), so
:func:`inspect_frame` checks every frame before any inference: a frame whose end marker
(JPEG ``FFD9``, PNG ``IEND``) is missing is decoded in full by Pillow (with
``ImageFile.LOAD_TRUNCATED_IMAGES`` off), which raises for a truncated file.
"""

from __future__ import annotations

import os
import queue
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

from rvoslib._io import ImageReadError

__all__ = [
    "ON_CORRUPT",
    "background",
    "check_on_corrupt",
    "complete_frames",
    "decode_file",
    "header_size",
    "inspect_frame",
    "video_error",
]

#: What a frame reader does with a truncated or corrupt frame: raise, or skip it with a warning.
ON_CORRUPT = ("error", "skip")
#: The bytes every complete file of a suffix holds in its last :data:`_TAIL_BYTES` bytes
#: (padding aside); a file without them is decoded in full to tell truncation from a trailer.
_END_MARKERS = {".jpg": b"\xff\xd9", ".jpeg": b"\xff\xd9", ".png": b"IEND"}
_TAIL_BYTES = 64


def video_error(path: str | os.PathLike, reason: str) -> ImageReadError:
    """The error of an unreadable video, frame folder or frame (names ``path``)."""
    return ImageReadError(path, reason, kind="video")


def header_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, ValueError, SyntaxError) as error:
        raise video_error(path, str(error) or type(error).__name__) from error
    return height, width


def check_on_corrupt(on_corrupt: str) -> str:
    """``on_corrupt`` if it is one of :data:`ON_CORRUPT`.

    Raises:
        ValueError: another value (the valid ones named).
    """
    if on_corrupt not in ON_CORRUPT:
        raise ValueError(f"on_corrupt must be one of {ON_CORRUPT}, got {on_corrupt!r}")
    return on_corrupt


def _truncation(path: Path) -> str | None:
    """Why ``path`` is incomplete, or ``None`` when it holds its end marker or decodes fully."""
    marker = _END_MARKERS.get(path.suffix.lower())
    if marker is None:
        return None
    with open(path, "rb") as stream:
        stream.seek(0, os.SEEK_END)
        stream.seek(max(0, stream.tell() - _TAIL_BYTES))
        if marker in stream.read():
            return None
    from PIL import Image, ImageFile

    if ImageFile.LOAD_TRUNCATED_IMAGES:  # set by other code: Pillow would not raise
        return f"its end marker {marker!r} is missing (truncated file)"
    try:
        with Image.open(path) as image:
            image.load()  # trailing data after the marker: decodes fine
    except (OSError, ValueError, SyntaxError) as error:
        return f"truncated or corrupt frame ({error or type(error).__name__})"
    return None


def inspect_frame(path: Path) -> tuple[int, int]:
    """The ``(H, W)`` of a frame file, after checking that the file is complete.

    Reads the header and the last few KiB of the file (a full decode only for a file whose
    end marker is missing).

    Raises:
        ImageReadError: an unreadable header, or a truncated or corrupt file (named).
    """
    try:
        size = header_size(path)
        reason = _truncation(path)
    except (ImageReadError, OSError) as error:
        reason = getattr(error, "reason", None) or str(error) or type(error).__name__
        raise ImageReadError(path, f"truncated or corrupt frame ({reason})", "frame") from error
    if reason is not None:
        raise ImageReadError(path, reason, "frame")
    return size


def complete_frames(
    folder: Path, files: list[Path], on_corrupt: str
) -> tuple[list[Path], tuple[int, int]]:
    """The complete frames among ``files`` of ``folder`` and their ``(H, W)``.

    Args:
        folder: The frame folder (for messages).
        files: Its frame files, in order.
        on_corrupt: ``"error"``: a truncated or corrupt frame raises; ``"skip"``: it is left
            out with a ``UserWarning`` naming it.

    Raises:
        ImageReadError: a truncated or corrupt frame (``"error"``; named, with the option
            that skips it), frames of different sizes, or no complete frame at all.
    """
    kept: list[Path] = []
    first: tuple[int, int] = (0, 0)
    for path in files:
        try:
            size = inspect_frame(path)
        except ImageReadError as error:
            if on_corrupt == "error":
                raise ImageReadError(
                    error.path,
                    f"{error.reason}; a frame folder must hold complete frames (pass "
                    "on_corrupt='skip', rvos predict --skip-corrupt-frames, to leave such "
                    "frames out)",
                    kind=error.kind,
                ) from error
            warnings.warn(
                f"skipping frame {error.path!r} of {str(folder)!r}: {error.reason} "
                "(on_corrupt='skip')",
                UserWarning,
                stacklevel=5,
            )
            continue
        if kept and size != first:
            raise video_error(
                folder,
                f"frame {path.name!r} is {size[1]}x{size[0]} but {kept[0].name!r} is "
                f"{first[1]}x{first[0]}; all frames must have one size",
            )
        first = first if kept else size
        kept.append(path)
    if not kept:
        raise video_error(folder, f"all {len(files)} frames are truncated or corrupt (skipped)")
    return kept, first


def decode_file(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """Decode one frame to ``(3, H, W)`` uint8 RGB (OpenCV releases the GIL; else Pillow)."""
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
        image = cv2.imread(str(path), flags)
        if image is None:
            raise video_error(path, "not a decodable image (missing, truncated or corrupt)")
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    else:
        import numpy as np
        from PIL import Image

        try:
            with Image.open(path) as opened:
                image = np.asarray(opened.convert("RGB"))
        except (OSError, ValueError, SyntaxError) as error:
            raise video_error(path, str(error) or type(error).__name__) from error
    if image.shape[:2] != size:
        raise video_error(
            path, f"frame is {image.shape[1]}x{image.shape[0]}, expected {size[1]}x{size[0]}"
        )
    return torch.from_numpy(image).permute(2, 0, 1).contiguous()


_DONE = object()


def background(iterator: Iterator[torch.Tensor], depth: int) -> Iterator[torch.Tensor]:
    """Run ``iterator`` in a thread, at most ``depth`` items ahead; re-raise its errors here."""
    items: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(_DONE)
        except BaseException as error:  # forwarded to the consumer
            items.put(error)

    thread = threading.Thread(target=produce, name="rvos-video-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                items.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.1)
