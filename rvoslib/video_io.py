"""Reading videos for inference: frame folders, video files and tensors, streamed.

:func:`open_video` turns any supported input into a :class:`VideoSource`, an iterable of
``(3, H, W)`` frames that never holds more than a bounded number of decoded frames:

* a folder of ``*.jpg`` / ``*.jpeg`` / ``*.png`` frames (sorted by name) is decoded by a pool of
  threads (OpenCV's decoder releases the GIL) a few frames ahead of the consumer,
  or in batches on the GPU with ``decode_device="cuda"`` (JPEG only); every frame is checked
  when the folder is opened, so a truncated or corrupt frame is an error naming it before any
  inference (``on_corrupt="skip"``: left out with a warning naming it);
* an ``.mp4`` / ``.avi`` / ``.mov`` / ``.mkv`` / ``.webm`` file is decoded with OpenCV (installed
  with ``albumentations``) in a background thread;
* a tensor is sliced without copies.

Decoding runs concurrently with whatever consumes the frames (the model), so that decoding is
hidden behind inference.
"""

from __future__ import annotations

import os
import re
import warnings
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from rvoslib._checks import format_shape
from rvoslib._io import ImageReadError
from rvoslib._video_decode import (
    ON_CORRUPT,
    background,
    check_on_corrupt,
    complete_frames,
    decode_file,
    video_error,
)

__all__ = [
    "FRAME_EXTENSIONS",
    "ON_CORRUPT",
    "VIDEO_EXTENSIONS",
    "FrameFolderSource",
    "ImageReadError",
    "TensorSource",
    "VideoFileSource",
    "VideoSource",
    "list_frames",
    "open_video",
    "read_video",
]

FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")


class VideoSource:
    """Frames of one video, read lazily in order.

    Iterating yields ``(3, H, W)`` tensors: ``uint8`` for files, ``uint8`` or float in
    ``[0, 1]`` for tensors. Every iteration starts from the first frame.

    Attributes:
        name: A name for the video (the folder or file stem, ``"video"`` for tensors).
        num_frames: Number of frames, or ``None`` where the container does not say reliably.
        height: Frame height ``H``.
        width: Frame width ``W``.
        fps: Frames per second where known (video files), else ``None``.
    """

    name: str = "video"
    num_frames: int | None = None
    height: int = 0
    width: int = 0
    fps: float | None = None

    def __iter__(self) -> Iterator[torch.Tensor]:
        raise NotImplementedError

    def __len__(self) -> int:
        if self.num_frames is None:
            raise TypeError(f"the number of frames of {self.name!r} is not known in advance")
        return self.num_frames


def natural_key(name: str) -> list[object]:
    """Sort key that orders the numbers in a name by value: ``2.jpg`` before ``10.jpg``.

    Example:
        >>> sorted(["10.jpg", "2.jpg", "1.jpg"], key=natural_key)
        ['1.jpg', '2.jpg', '10.jpg']
    """
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_frames(folder: str | os.PathLike) -> list[Path]:
    """Frame files (``.jpg``, ``.jpeg``, ``.png``, any case) of ``folder`` in natural order
    (``1.jpg, 2.jpg, ..., 10.jpg``; zero-padded names sort as usual); hidden files skipped.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        ImageReadError: ``folder`` holds no frame.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"frame folder {str(folder)!r} not found")
    frames = sorted(
        (
            path
            for path in folder.iterdir()
            if path.suffix.lower() in FRAME_EXTENSIONS and not path.name.startswith(".")
        ),
        key=lambda path: natural_key(path.name),
    )
    if not frames:
        raise video_error(folder, f"the folder holds no frame ({', '.join(FRAME_EXTENSIONS)})")
    return frames


class FrameFolderSource(VideoSource):
    """A folder of frame images decoded in parallel threads (or batched on the GPU).

    All frames are checked when the source is opened (their headers, and that each file is
    complete), so frames of different sizes and truncated or corrupt frames fail before any
    inference with an error naming the first such frame.

    Args:
        folder: The folder.
        num_workers: Decoding threads.
        prefetch: How many frames may be decoded ahead of the consumer (bounds memory).
        decode_device: ``"cpu"`` or a CUDA device: JPEGs are then decoded in batches of
            ``prefetch`` frames with ``torchvision.io.decode_jpeg(..., device=...)`` and the
            frames are yielded on that device.
        on_corrupt: ``"error"`` (default): a truncated or corrupt frame raises;
            ``"skip"``: it is left out of :attr:`files` with a ``UserWarning`` naming it (the
            video then has fewer frames).

    Raises:
        FileNotFoundError: the folder does not exist.
        ImageReadError: no (readable) frame, a truncated or corrupt frame (named, with
            ``on_corrupt="error"``), or frames of different sizes.
        ValueError: a bad ``num_workers``, ``prefetch`` or ``on_corrupt``.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        num_workers: int = 4,
        prefetch: int = 16,
        decode_device: str | torch.device = "cpu",
        on_corrupt: str = "error",
    ) -> None:
        if num_workers < 1 or prefetch < 1:
            raise ValueError(
                f"num_workers and prefetch must be >= 1, got {num_workers}, {prefetch}"
            )
        self.on_corrupt = check_on_corrupt(on_corrupt)
        self.folder = Path(folder)
        self.files, (self.height, self.width) = complete_frames(
            self.folder, list_frames(self.folder), self.on_corrupt
        )
        self.name = self.folder.name
        self.num_frames = len(self.files)
        self.num_workers, self.prefetch = int(num_workers), int(prefetch)
        self.decode_device = torch.device(decode_device)

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self.decode_device.type == "cuda":
            yield from self._iter_gpu()
            return
        size = (self.height, self.width)
        with ThreadPoolExecutor(self.num_workers, thread_name_prefix="rvos-decode") as pool:
            pending: deque[Future[torch.Tensor]] = deque()
            files = iter(self.files)
            try:
                for path in files:
                    pending.append(pool.submit(decode_file, path, size))
                    if len(pending) >= self.prefetch:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
            finally:
                for future in pending:
                    future.cancel()

    def _iter_gpu(self) -> Iterator[torch.Tensor]:
        from torchvision.io import decode_jpeg, read_file

        if any(path.suffix.lower() not in (".jpg", ".jpeg") for path in self.files):
            raise video_error(self.folder, "decode_device='cuda' needs JPEG frames only")
        with ThreadPoolExecutor(self.num_workers, thread_name_prefix="rvos-read") as pool:
            for start in range(0, len(self.files), self.prefetch):
                batch = self.files[start : start + self.prefetch]
                data = list(pool.map(lambda path: read_file(str(path)), batch))
                try:
                    frames = decode_jpeg(data, device=self.decode_device)
                except RuntimeError as error:
                    raise video_error(self.folder, f"frames {batch[0].name}..: {error}") from error
                yield from frames


class VideoFileSource(VideoSource):
    """A video file decoded with OpenCV in a background thread.

    Args:
        path: The file (``.mp4``, ``.avi``, ...).
        prefetch: How many decoded frames may wait for the consumer (bounds memory).

    Raises:
        FileNotFoundError: the file does not exist.
        ImageReadError: OpenCV is missing, or the file cannot be opened or holds no frame.
    """

    def __init__(self, path: str | os.PathLike, *, prefetch: int = 16) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video file {str(self.path)!r} not found")
        capture = self._open()
        try:
            ok, frame = capture.read()
            if not ok or frame is None:
                raise video_error(self.path, "the file holds no decodable frame")
            self.height, self.width = int(frame.shape[0]), int(frame.shape[1])
            import cv2

            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            fps = float(capture.get(cv2.CAP_PROP_FPS))
        finally:
            capture.release()
        # Container frame counts can be wrong; the predictor does not rely on them.
        self.num_frames = count if count > 0 else None
        self.fps = fps if fps > 0 else None
        self.name = self.path.stem
        self.prefetch = int(prefetch)

    def _open(self) -> Any:
        try:
            import cv2
        except ImportError as error:
            raise video_error(
                self.path, "reading video files needs OpenCV: pip install opencv-python-headless"
            ) from error
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            raise video_error(self.path, "not a video OpenCV can decode (corrupt or unsupported)")
        return capture

    def __iter__(self) -> Iterator[torch.Tensor]:
        import cv2

        capture = self._open()
        size = (self.height, self.width)

        def frames() -> Iterator[torch.Tensor]:
            decoded = 0
            try:
                while True:
                    ok, frame = capture.read()
                    if not ok:
                        if self.num_frames is not None and decoded < self.num_frames:
                            warnings.warn(
                                f"video {str(self.path)!r}: its container announces "
                                f"{self.num_frames} frames but only {decoded} could be decoded "
                                "(truncated or damaged file?)",
                                RuntimeWarning,
                                stacklevel=2,
                            )
                        return
                    decoded += 1
                    if frame.shape[:2] != size:
                        raise video_error(self.path, f"frame size changed to {frame.shape[:2]}")
                    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                    yield torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
            finally:
                capture.release()

        yield from background(frames(), self.prefetch)


class TensorSource(VideoSource):
    """A video given as a tensor.

    Args:
        video: ``(T, 3, H, W)`` or ``(T, H, W, 3)`` uint8 (0-255), or ``(T, 3, H, W)`` float in
            ``[0, 1]``. A ``(T, 3, H, W)`` layout wins when both would fit.

    Raises:
        ValueError: another rank or layout, or no frame.
    """

    def __init__(self, video: torch.Tensor) -> None:
        layouts = "(T, 3, H, W) or (T, H, W, 3) uint8, or (T, 3, H, W) float in [0, 1]"
        if video.ndim != 4 or video.shape[0] == 0:
            raise ValueError(f"video must be {layouts}, got {format_shape(video.shape)}")
        if video.shape[1] != 3:
            if video.shape[-1] != 3 or video.is_floating_point():
                raise ValueError(f"video must be {layouts}, got {format_shape(video.shape)}")
            video = video.permute(0, 3, 1, 2)
        if not video.is_floating_point() and video.dtype != torch.uint8:
            raise TypeError(f"video must be uint8 or floating, got {video.dtype}")
        self.video = video
        self.num_frames = int(video.shape[0])
        self.height, self.width = int(video.shape[2]), int(video.shape[3])

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self.video.unbind(0))


def open_video(
    video: str | os.PathLike | torch.Tensor | VideoSource,
    *,
    num_workers: int = 4,
    prefetch: int = 16,
    decode_device: str | torch.device = "cpu",
    on_corrupt: str = "error",
) -> VideoSource:
    """Open a frame folder, a video file or a tensor as a :class:`VideoSource`.

    Args:
        video: A folder of frames, a video file, a tensor (see :class:`TensorSource`) or an
            already opened source (returned unchanged).
        num_workers: Decoding threads for frame folders.
        prefetch: Frames decoded ahead of the consumer.
        decode_device: Where frame folders' JPEGs are decoded (``"cpu"`` or ``"cuda"``).
        on_corrupt: What a frame folder does with a truncated or corrupt frame: ``"error"``
            (raise, naming it) or ``"skip"`` (leave it out with a warning naming it).

    Raises:
        FileNotFoundError: the path does not exist (named).
        ImageReadError: the path cannot be read as a video (named), e.g. an empty folder or a
            truncated frame.
        ValueError: an unknown ``on_corrupt``.

    Example:
        >>> source = open_video(torch.zeros(5, 3, 32, 48, dtype=torch.uint8))
        >>> len(source), source.height, source.width
        (5, 32, 48)
    """
    check_on_corrupt(on_corrupt)
    if isinstance(video, VideoSource):
        return video
    if isinstance(video, torch.Tensor):
        return TensorSource(video)
    if not isinstance(video, (str, os.PathLike)):
        raise TypeError(f"video must be a path or a tensor, got {type(video).__name__}")
    path = Path(video)
    if path.is_dir():
        return FrameFolderSource(
            path,
            num_workers=num_workers,
            prefetch=prefetch,
            decode_device=decode_device,
            on_corrupt=on_corrupt,
        )
    if not path.exists():
        raise FileNotFoundError(f"video {str(path)!r} not found (expected a folder or a file)")
    if path.suffix.lower() not in VIDEO_EXTENSIONS:
        raise video_error(
            path,
            f"unsupported suffix {path.suffix!r}; expected a frame folder or one of "
            f"{', '.join(VIDEO_EXTENSIONS)}",
        )
    return VideoFileSource(path, prefetch=prefetch)


def read_video(
    video: str | os.PathLike | torch.Tensor | VideoSource, *, on_corrupt: str = "error"
) -> torch.Tensor:
    """Read a whole (short) video into memory (``on_corrupt``: see :func:`open_video`).

    Returns:
        ``(T, 3, H, W)`` frames (uint8 for files).
    """
    source = open_video(video, on_corrupt=on_corrupt)
    return torch.stack(list(source))
