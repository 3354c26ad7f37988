"""Animations of overlaid frames: GIF and MP4, written atomically, streamed frame by frame.

:class:`AnimationWriter` takes one frame at a time, so writing the overlay of a long, large video
never holds all its frames: an MP4 is encoded as frames arrive; a GIF keeps each frame as a
palette image reduced to at most ``max_gif_side`` pixels (GIF is for previews; use MP4 for full
resolution). :func:`save_animation` writes a whole array at once.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rvoslib._io import atomic_write_bytes

if TYPE_CHECKING:
    from rvoslib.overlay import ArrayLike

__all__ = ["ANIMATION_FORMATS", "AnimationWriter", "save_animation"]

ANIMATION_FORMATS = (".gif", ".mp4")


class AnimationWriter:
    """Write frames to a ``.gif`` or ``.mp4`` one at a time; the file appears on :meth:`close`.

    Args:
        path: ``*.gif`` (Pillow) or ``*.mp4`` (OpenCV's writer).
        fps: Frames per second.
        max_gif_side: Longest side of GIF frames (larger frames are reduced).

    Raises:
        ValueError: an unsupported suffix or ``fps <= 0``.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.gif"
        >>> with AnimationWriter(path, fps=5) as writer:
        ...     for value in (0, 255):
        ...         writer.add(np.full((8, 8, 3), value, np.uint8))
        >>> path.is_file()
        True
    """

    def __init__(self, path: str | os.PathLike, fps: float = 10.0, max_gif_side: int = 640):
        self.path = Path(path)
        self.suffix = self.path.suffix.lower()
        if self.suffix not in ANIMATION_FORMATS:
            raise ValueError(f"path must end in one of {ANIMATION_FORMATS}, got {str(path)!r}")
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps!r}")
        self.fps, self.max_gif_side = float(fps), int(max_gif_side)
        self._gif_frames: list[Any] = []
        self._mp4: Any = None
        self._temp: str | None = None
        self.count = 0

    def add(self, image: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` uint8 RGB frame."""
        image = np.ascontiguousarray(image, dtype=np.uint8)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"image must be (H, W, 3) uint8, got shape {image.shape}")
        if self.suffix == ".gif":
            from PIL import Image

            frame = Image.fromarray(image)
            scale = self.max_gif_side / max(frame.size)
            if scale < 1:
                frame = frame.resize((max(1, round(frame.width * scale)),
                                      max(1, round(frame.height * scale))))  # fmt: skip
            self._gif_frames.append(frame.quantize(256))
        else:
            self._mp4_writer(image.shape[1], image.shape[0]).write(image[:, :, ::-1].copy())
        self.count += 1

    def close(self) -> Path | None:
        """Finish the file (atomically); returns its path, or ``None`` without frames."""
        if self.count == 0:
            return None
        if self.suffix == ".gif":
            first, *rest = self._gif_frames
            buffer = io.BytesIO()
            duration = max(20, round(1000 / self.fps))
            first.save(buffer, format="GIF", save_all=True, append_images=rest,
                       duration=duration, loop=0)  # fmt: skip
            self._gif_frames = []
            atomic_write_bytes(self.path, buffer.getvalue())
            return self.path
        self._mp4.release()
        os.replace(self._temp, self.path)
        return self.path

    def _mp4_writer(self, width: int, height: int) -> Any:
        if self._mp4 is None:
            import cv2

            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, self._temp = tempfile.mkstemp(
                dir=self.path.parent, prefix=f".{self.path.stem}.", suffix=".mp4"
            )
            os.close(handle)
            fourcc = cv2.VideoWriter_fourcc(*"mp4v")
            self._mp4 = cv2.VideoWriter(self._temp, fourcc, self.fps, (width, height))
            if not self._mp4.isOpened():
                os.unlink(self._temp)
                raise RuntimeError(
                    f"cannot write {str(self.path)!r}: OpenCV has no MP4 encoder here; save a .gif"
                )
        return self._mp4

    def __enter__(self) -> AnimationWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> None:
        if exc_type is None:
            self.close()
        elif self._temp is not None and os.path.exists(self._temp):
            if self._mp4 is not None:
                self._mp4.release()
            os.unlink(self._temp)


def save_animation(
    frames: ArrayLike,
    path: str | os.PathLike,
    masks: ArrayLike | None = None,
    *,
    fps: float = 10.0,
    alpha: float = 0.5,
    colormap: str | Sequence[Sequence[int]] | None = "davis",
) -> Path:
    """Write frames (with masks overlaid) as an animated GIF or an MP4, atomically.

    Args:
        frames: ``(T, 3, H, W)`` / ``(T, H, W, 3)`` uint8 or float in ``[0, 1]``.
        path: ``*.gif`` (Pillow) or ``*.mp4`` (OpenCV's writer, else imageio's ffmpeg).
        masks: Optional masks overlaid with :func:`overlay_masks`.
        fps: Frames per second.
        alpha: Mask opacity.
        colormap: See :func:`overlay_masks`.

    Returns:
        The path written.

    Raises:
        ValueError: an unsupported suffix.
        RuntimeError: ``.mp4`` without any MP4 writer installed (says what to install).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in ANIMATION_FORMATS:
        raise ValueError(f"path must end in one of {ANIMATION_FORMATS}, got {str(path)!r}")
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")
    from rvoslib.overlay import _frames_hwc, overlay_masks

    images = _frames_hwc(frames) if masks is None else overlay_masks(frames, masks, alpha, colormap)
    if images.ndim == 3:
        images = images[None]
    if suffix == ".gif":
        from PIL import Image

        buffer = io.BytesIO()
        first, *rest = (Image.fromarray(image) for image in images)
        duration = max(20, round(1000 / fps))
        first.save(buffer, format="GIF", save_all=True, append_images=rest, duration=duration,
                   loop=0)  # fmt: skip
        atomic_write_bytes(path, buffer.getvalue())
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".mp4")
    os.close(handle)
    try:
        _write_mp4(images, temp_name, fps)
        os.replace(temp_name, path)
    finally:
        if os.path.exists(temp_name):
            os.unlink(temp_name)
    return path


def _write_mp4(images: np.ndarray, path: str, fps: float) -> None:
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        height, width = images.shape[1:3]
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if writer.isOpened():
            for image in images:
                writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            writer.release()
            return
    try:
        import imageio.v3 as iio

        iio.imwrite(path, images, fps=fps, extension=".mp4", plugin="pyav")
    except Exception as error:
        raise RuntimeError(
            f"cannot write {path!r}: no MP4 writer available; install opencv-python-headless "
            "or imageio with av (pip install av); or save a .gif"
        ) from error
