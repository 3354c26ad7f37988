"""Animations of overlaid frames: GIF and MP4, written atomically, streamed frame by frame.

:class:`AnimationWriter` takes one frame at a time, so writing the overlay of a long, large video
never holds all its frames: an MP4 is encoded as frames arrive; a GIF keeps each frame as a
palette image reduced to at most ``max_gif_side`` pixels (GIF is for previews; use MP4 for full
resolution; :func:`choose_overlay_format` picks MP4 for long videos). GIFs are kept small: one
adaptive palette for the whole animation (built from its first frames, no dithering, so that
unchanged pixels stay unchanged and Pillow stores only the changed region of each frame), and
optionally every ``frame_step``-th frame only and a ``max_width``. :func:`save_animation`
writes a whole array at once.
"""

from __future__ import annotations

import functools
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

__all__ = [
    "ANIMATION_FORMATS",
    "GIF_PALETTES",
    "AnimationWriter",
    "choose_overlay_format",
    "mp4_available",
    "save_animation",
]

ANIMATION_FORMATS = (".gif", ".mp4")
#: ``"global"``: one adaptive palette per animation (small files); ``"per-frame"``: each frame
#: its own palette (rvoslib's GIFs before 0.x: larger files, a little more faithful colours).
GIF_PALETTES = ("global", "per-frame")


def _check_step_width(frame_step: int, max_width: int | None) -> None:
    if isinstance(frame_step, bool) or not isinstance(frame_step, int) or frame_step < 1:
        raise ValueError(f"frame_step must be an int >= 1, got {frame_step!r}")
    if max_width is not None and (
        isinstance(max_width, bool) or not isinstance(max_width, int) or max_width < 1
    ):
        raise ValueError(f"max_width must be an int >= 1 or None, got {max_width!r}")


def _reduce(image: np.ndarray, longest: int | None, max_width: int | None) -> Any:
    """A Pillow RGB image of ``image`` no longer than ``longest`` nor wider than
    ``max_width`` (aspect kept)."""
    from PIL import Image

    frame = Image.fromarray(image)
    scale = min(
        1.0,
        longest / max(frame.size) if longest else 1.0,
        max_width / frame.width if max_width else 1.0,
    )
    if scale < 1:
        size = (max(1, round(frame.width * scale)), max(1, round(frame.height * scale)))
        frame = frame.resize(size)
    return frame


class AnimationWriter:
    """Write frames to a ``.gif`` or ``.mp4`` one at a time; the file appears on :meth:`close`.

    Args:
        path: ``*.gif`` (Pillow) or ``*.mp4`` (OpenCV's writer).
        fps: Frames per second of the video given (the animation keeps its speed whatever
            ``frame_step``).
        max_gif_side: Longest side of GIF frames (larger frames are reduced).
        frame_step: Keep every ``frame_step``-th frame only (1: all).
        max_width: Reduce frames wider than this (GIF and MP4; ``None``: no limit).
        palette: GIF colours, one of :data:`GIF_PALETTES`: ``"global"`` builds one adaptive
            palette from the first ``palette_frames`` frames kept (held as RGB until then).
        palette_frames: Frames the global palette is built from.
        colors: Colours of the global palette (2 to 256; fewer colours, smaller files).

    Raises:
        ValueError: an unsupported suffix or palette, ``fps <= 0``, a ``frame_step`` or
            ``max_width`` below 1, ``colors`` outside ``[2, 256]``.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.gif"
        >>> with AnimationWriter(path, fps=5) as writer:
        ...     for value in (0, 255):
        ...         writer.add(np.full((8, 8, 3), value, np.uint8))
        >>> path.is_file()
        True
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float = 10.0,
        max_gif_side: int = 640,
        *,
        frame_step: int = 1,
        max_width: int | None = None,
        palette: str = "global",
        palette_frames: int = 8,
        colors: int = 128,
    ):
        self.path = Path(path)
        self.suffix = self.path.suffix.lower()
        if self.suffix not in ANIMATION_FORMATS:
            raise ValueError(f"path must end in one of {ANIMATION_FORMATS}, got {str(path)!r}")
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps!r}")
        _check_step_width(frame_step, max_width)
        if palette not in GIF_PALETTES:
            raise ValueError(f"palette must be one of {GIF_PALETTES}, got {palette!r}")
        self.fps, self.max_gif_side = float(fps), int(max_gif_side)
        self.frame_step, self.max_width, self.palette = frame_step, max_width, palette
        self.palette_frames = max(1, int(palette_frames))
        if isinstance(colors, bool) or not isinstance(colors, int) or not 2 <= colors <= 256:
            raise ValueError(f"colors must be an int in [2, 256], got {colors!r}")
        self.colors = colors
        self._gif_frames: list[Any] = []
        self._pending: list[Any] = []  # RGB frames waiting for the global palette
        self._palette_image: Any = None
        self._mp4: Any = None
        self._temp: str | None = None
        self.count = 0

    def add(self, image: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` uint8 RGB frame (skipped unless its index is a multiple of
        ``frame_step``)."""
        image = np.ascontiguousarray(image, dtype=np.uint8)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"image must be (H, W, 3) uint8, got shape {image.shape}")
        keep = self.count % self.frame_step == 0
        self.count += 1
        if not keep:
            return
        if self.suffix == ".gif":
            frame = _reduce(image, self.max_gif_side, self.max_width)
            if self.palette == "per-frame":
                self._gif_frames.append(frame.quantize(256))
                return
            self._pending.append(frame)
            if self._palette_image is not None or len(self._pending) >= self.palette_frames:
                self._flush_pending()
        else:
            if self.max_width is not None and image.shape[1] > self.max_width:
                image = np.asarray(_reduce(image, None, self.max_width))
            self._mp4_writer(image.shape[1], image.shape[0]).write(image[:, :, ::-1].copy())

    def _flush_pending(self) -> None:
        """Quantize the frames held to the animation's palette (built on first call)."""
        from PIL import Image

        if self._palette_image is None:
            width = max(frame.width for frame in self._pending)
            mosaic = Image.new("RGB", (width, sum(frame.height for frame in self._pending)))
            top = 0
            for frame in self._pending:
                mosaic.paste(frame, (0, top))
                top += frame.height
            self._palette_image = mosaic.quantize(self.colors, method=Image.Quantize.MEDIANCUT)
        for frame in self._pending:
            self._gif_frames.append(
                frame.quantize(palette=self._palette_image, dither=Image.Dither.NONE)
            )
        self._pending = []

    def close(self) -> Path | None:
        """Finish the file (atomically); returns its path, or ``None`` without frames."""
        if self.count == 0:
            return None
        if self.suffix == ".gif":
            if self._pending:
                self._flush_pending()
            first, *rest = self._gif_frames
            buffer = io.BytesIO()
            duration = max(20, round(1000 * self.frame_step / self.fps))
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
    labels: Sequence[str] | None = None,
    frame_step: int = 1,
    max_width: int | None = None,
    palette: str = "global",
    colors: int = 128,
) -> Path:
    """Write frames (with masks overlaid) as an animated GIF or an MP4, atomically.

    Args:
        frames: ``(T, 3, H, W)`` / ``(T, H, W, 3)`` uint8 or float in ``[0, 1]``.
        path: ``*.gif`` (Pillow) or ``*.mp4`` (OpenCV's writer, else imageio's ffmpeg).
        masks: Optional masks overlaid with :func:`overlay_masks`.
        fps: Frames per second of ``frames``.
        alpha: Mask opacity.
        colormap: See :func:`overlay_masks`.
        labels: A legend, one label per object (see :func:`overlay_masks`); needs ``masks``.
        frame_step: Keep every ``frame_step``-th frame only.
        max_width: Reduce wider frames to this width (``None``: GIFs at most 640 pixels on
            their longest side, MP4s as they are).
        palette: GIF colours, one of :data:`GIF_PALETTES`.
        colors: Colours of a global GIF palette (2 to 256).

    Returns:
        The path written.

    Raises:
        ValueError: an unsupported suffix or option value (named).
        RuntimeError: ``.mp4`` without any MP4 writer installed (says what to install).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in ANIMATION_FORMATS:
        raise ValueError(f"path must end in one of {ANIMATION_FORMATS}, got {str(path)!r}")
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")
    _check_step_width(frame_step, max_width)
    from rvoslib.overlay import _frames_hwc, overlay_masks

    if masks is None:
        if labels is not None:
            raise ValueError("labels name the objects of masks; give masks with labels")
        images = _frames_hwc(frames)
    else:
        images = overlay_masks(frames, masks, alpha, colormap, labels=labels)
    if images.ndim == 3:
        images = images[None]
    if suffix == ".gif":
        writer = AnimationWriter(
            path, fps, frame_step=frame_step, max_width=max_width, palette=palette, colors=colors
        )
        for image in images:
            writer.add(image)
        writer.close()
        return path
    images = images[::frame_step]
    if max_width is not None and images.shape[2] > max_width:
        images = np.stack([np.asarray(_reduce(image, None, max_width)) for image in images])
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".mp4")
    os.close(handle)
    try:
        _write_mp4(images, temp_name, fps / frame_step)
        os.replace(temp_name, path)
    finally:
        if os.path.exists(temp_name):
            os.unlink(temp_name)
    return path


@functools.lru_cache(maxsize=1)
def mp4_available() -> bool:
    """Whether an MP4 can be written here (OpenCV's encoder, else imageio with PyAV).

    Checked once (a tiny file is written to a temporary folder) and remembered.
    """
    try:
        import cv2

        with tempfile.TemporaryDirectory() as folder:
            name = os.path.join(folder, "probe.mp4")
            writer = cv2.VideoWriter(name, cv2.VideoWriter_fourcc(*"mp4v"), 1.0, (16, 16))
            opened = writer.isOpened()
            if opened:
                writer.write(np.zeros((16, 16, 3), np.uint8))
            writer.release()
        if opened:
            return True
    except ImportError:
        pass
    try:
        import av  # noqa: F401
        import imageio.v3  # noqa: F401
    except ImportError:
        return False
    return True


def choose_overlay_format(num_frames: int, *, max_gif_frames: int = 100) -> str:
    """``"mp4"`` for a video longer than ``max_gif_frames`` frames when an MP4 can be written
    (:func:`mp4_available`), else ``"gif"`` (small, plays everywhere, in browsers too).

    Raises:
        ValueError: ``num_frames < 0``.

    Example:
        >>> choose_overlay_format(50)
        'gif'
    """
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames!r}")
    return "mp4" if num_frames > max_gif_frames and mp4_available() else "gif"


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
