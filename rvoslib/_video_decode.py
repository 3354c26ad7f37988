"""Decoding helpers of :mod:`rvoslib.video_io`: one frame file, a frame header, and a
bounded background thread that runs a frame iterator ahead of its consumer."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import torch

from rvoslib._io import ImageReadError

__all__ = ["background", "decode_file", "header_size", "video_error"]


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
