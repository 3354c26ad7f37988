"""Run a model on a whole video: :class:`VideoPredictor`.

The video is cut into clips of ``clip_len`` frames that overlap by ``overlap`` frames
(:func:`clip_windows`); every clip is segmented for all expressions at once, the logits of
frames covered by several clips are averaged, resized back to the original resolution and
thresholded. Expressions are encoded once per video, not once per clip. Frames are streamed:
at most about ``clip_len + stride`` decoded frames and their logits are held at a time, and
:meth:`VideoPredictor.predict_iter` yields each frame's result as soon as no later clip can
change it.

Example:
    >>> import torch, rvoslib
    >>> predictor = VideoPredictor(rvoslib.create_model("tiny"), clip_len=4, overlap=1, size=64)
    >>> video = torch.randint(0, 256, (6, 3, 48, 80), dtype=torch.uint8)
    >>> predictor.predict(video, ["the red circle", "the blue square"]).shape
    torch.Size([2, 6, 48, 80])
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from rvoslib.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from rvoslib.video_io import VideoSource, open_video

if TYPE_CHECKING:
    from rvoslib.models.text import TextFeatures

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "FramePrediction",
    "VideoPredictor",
    "check_expressions",
    "clip_windows",
    "model_input_size",
    "predict_in_chunks",
]


def predict_in_chunks(
    model: nn.Module,
    frames: torch.Tensor,
    text_ids: torch.Tensor,
    text_mask: torch.Tensor,
    clip_len: int | None = None,
) -> torch.Tensor:
    """Logits of whole videos, ``clip_len`` frames per forward pass, the text encoded once.

    Args:
        model: An :class:`~rvoslib.models.RVOSModel`.
        frames: ``(B, T, 3, H, W)``.
        text_ids: ``(B, L)``.
        text_mask: ``(B, L)``.
        clip_len: Frames per forward pass (``None``: all ``T`` at once).

    Returns:
        ``(B, T, 1, H, W)`` float32 logits (:meth:`RVOSModel.predict`).
    """
    return model.predict({"frames": frames, "text_ids": text_ids, "text_mask": text_mask}, clip_len)


def clip_windows(num_frames: int, clip_len: int, overlap: int) -> list[tuple[int, int]]:
    """The ``[start, end)`` clips that :class:`VideoPredictor` runs on a video.

    Clips start every ``stride = clip_len - overlap`` frames while they end before the last
    frame; one final clip ``[T - clip_len, T)`` then covers the rest (it overlaps its
    predecessor by ``overlap`` frames or more). A video of at most ``clip_len`` frames is one
    clip. Every frame is covered at least once.

    Args:
        num_frames: ``T >= 1``.
        clip_len: Frames per clip, ``>= 1``.
        overlap: Frames shared by consecutive clips, ``0 <= overlap < clip_len``.

    Example:
        >>> clip_windows(10, 4, 1)
        [(0, 4), (3, 7), (6, 10)]
        >>> clip_windows(11, 4, 1)
        [(0, 4), (3, 7), (6, 10), (7, 11)]
        >>> clip_windows(3, 8, 2)
        [(0, 3)]
    """
    _check_clip(clip_len, overlap)
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    stride = clip_len - overlap
    windows = []
    start = 0
    while start + clip_len < num_frames:
        windows.append((start, start + clip_len))
        start += stride
    windows.append((max(0, num_frames - clip_len), num_frames))
    return windows


def _check_clip(clip_len: int, overlap: int) -> None:
    if not isinstance(clip_len, int) or clip_len < 1:
        raise ValueError(f"clip_len must be an int >= 1, got {clip_len!r}")
    if not isinstance(overlap, int) or not 0 <= overlap < clip_len:
        raise ValueError(f"overlap must be an int in [0, clip_len={clip_len}), got {overlap!r}")


def model_input_size(
    height: int, width: int, size: int | Sequence[int] | None, divisor: int = 32
) -> tuple[int, int]:
    """The ``(h, w)`` frames are resized to before the model.

    Args:
        height: Original ``H``.
        width: Original ``W``.
        size: ``None`` (original size), the shorter side (aspect kept), or ``(h, w)``.
        divisor: Both sides are rounded to a multiple of this (at least ``divisor``).

    Example:
        >>> model_input_size(480, 854, 360)
        (352, 640)
        >>> model_input_size(480, 854, (256, 448))
        (256, 448)
    """
    if size is None:
        target_h, target_w = float(height), float(width)
    elif isinstance(size, int):
        if size < 1:
            raise ValueError(f"size must be a positive int or (H, W), got {size!r}")
        scale = size / min(height, width)
        target_h, target_w = height * scale, width * scale
    else:
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"size must be a positive int or (H, W), got {size!r}")
        target_h, target_w = float(size[0]), float(size[1])

    def snap(value: float) -> int:
        return max(divisor, round(value / divisor) * divisor)

    return snap(target_h), snap(target_w)


def check_expressions(expressions: str | Sequence[str]) -> list[str]:
    """A non-empty list of non-empty expressions.

    Raises:
        ValueError: no expression, or an empty / blank one (its index is named).
        TypeError: an expression is not a string.
    """
    if isinstance(expressions, str):
        expressions = [expressions]
    expressions = list(expressions)
    if not expressions:
        raise ValueError("expressions must hold at least one expression, got an empty list")
    for index, text in enumerate(expressions):
        if not isinstance(text, str):
            raise TypeError(f"expressions[{index}] must be a str, got {type(text).__name__}")
        if not text.strip():
            raise ValueError(f"expressions[{index}] is empty; every expression needs words")
    return expressions


@dataclass
class FramePrediction:
    """The result for one frame, yielded by :meth:`VideoPredictor.predict_iter`.

    Attributes:
        index: Frame index in the video.
        masks: ``(N, H, W)`` bool, one mask per expression, at the original resolution.
        probs: ``(N, H, W)`` float probabilities, or ``None`` unless requested.
        frame: ``(3, H, W)`` uint8 original frame on the CPU, or ``None`` unless requested.
    """

    index: int
    masks: torch.Tensor
    probs: torch.Tensor | None = None
    frame: torch.Tensor | None = None


class VideoPredictor:
    """Segment the objects referred to by expressions in every frame of a video.

    Args:
        model: An :class:`~rvoslib.RVOSModel` (or any module with ``tokenize``,
            ``encode_text`` and ``forward_with_text``). It is moved to ``device`` and put in
            eval mode.
        device: Where the model runs; ``None`` picks CUDA when available, else the CPU.
        clip_len: Frames per clip given to the model.
        overlap: Frames shared by consecutive clips; their logits are averaged.
        size: Model input size: the shorter side (aspect kept), ``(h, w)``, or ``None`` for the
            original size; both sides are rounded to a multiple of ``size_divisor``.
        threshold: Probability above which a pixel belongs to the mask.
        dtype: Autocast dtype of the model; ``None`` uses bfloat16 on CUDA and float32 on the
            CPU. Logits are averaged in float32.
        size_divisor: Rounding of the model input size.
        num_workers: Decoding threads for frame folders.
        decode_device: ``"cpu"`` (threads) or ``"cuda"`` (batched ``decode_jpeg`` on the GPU)
            for folders of JPEG frames.

    Example:
        >>> import rvoslib
        >>> predictor = VideoPredictor(rvoslib.create_model("tiny"), clip_len=4, size=64)
        >>> video = torch.zeros(5, 64, 64, 3, dtype=torch.uint8)
        >>> masks, probs = predictor.predict(video, "the cat", return_probs=True)
        >>> masks.shape, masks.dtype, probs.shape
        (torch.Size([1, 5, 64, 64]), torch.bool, torch.Size([1, 5, 64, 64]))
    """

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device | None = None,
        clip_len: int = 8,
        overlap: int = 2,
        size: int | Sequence[int] | None = 360,
        *,
        threshold: float = 0.5,
        dtype: torch.dtype | None = None,
        size_divisor: int = 32,
        num_workers: int = 4,
        decode_device: str | torch.device = "cpu",
    ) -> None:
        _check_clip(clip_len, overlap)
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
        for name in ("tokenize", "encode_text", "forward_with_text"):
            if not callable(getattr(model, name, None)):
                raise TypeError(f"model must have a {name}() method (an RVOSModel)")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.clip_len, self.overlap = clip_len, overlap
        self.size = size
        self.threshold = float(threshold)
        self.dtype = dtype or (torch.bfloat16 if self.device.type == "cuda" else torch.float32)
        self.size_divisor = int(size_divisor)
        self.num_workers = int(num_workers)
        self.decode_device = decode_device
        shape = (1, 3, 1, 1)
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(shape)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(shape)

    def open(self, video: str | os.PathLike | torch.Tensor | VideoSource) -> VideoSource:
        """Open ``video`` with this predictor's decoding settings (see :func:`open_video`)."""
        return open_video(
            video,
            num_workers=self.num_workers,
            prefetch=max(self.clip_len, 8),
            decode_device=self.decode_device,
        )

    def predict(
        self,
        video: str | os.PathLike | torch.Tensor | VideoSource,
        expressions: str | Sequence[str],
        *,
        return_probs: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Segment every frame of ``video`` for each expression.

        Args:
            video: A folder of frames, a video file (``.mp4``, ``.avi``, ...), a
                :class:`~rvoslib.video_io.VideoSource`, or a tensor: ``(T, 3, H, W)`` /
                ``(T, H, W, 3)`` uint8 or ``(T, 3, H, W)`` float in ``[0, 1]``.
            expressions: One expression or a list of ``N``.
            return_probs: Also return the probabilities.

        Returns:
            ``masks (N, T, H, W)`` bool at the original resolution, and with ``return_probs``
            also ``probs (N, T, H, W)`` float32. Use :meth:`predict_iter` for long videos.

        Raises:
            ValueError: an empty expression; FileNotFoundError / VideoReadError: bad video.
        """
        masks, probs = [], []
        for result in self.predict_iter(video, expressions, return_probs=return_probs):
            masks.append(result.masks)
            if return_probs:
                probs.append(result.probs)
        stacked = torch.stack(masks, dim=1)
        return (stacked, torch.stack(probs, dim=1)) if return_probs else stacked

    @torch.inference_mode()
    def predict_iter(
        self,
        video: str | os.PathLike | torch.Tensor | VideoSource,
        expressions: str | Sequence[str],
        *,
        return_probs: bool = False,
        return_frames: bool = False,
    ) -> Iterator[FramePrediction]:
        """Stream the result of each frame, in order, as soon as it is final.

        Memory stays bounded by the clip length, whatever the video's length.

        Args:
            video: As in :meth:`predict`.
            expressions: One expression or a list of ``N``.
            return_probs: Fill :attr:`FramePrediction.probs`.
            return_frames: Fill :attr:`FramePrediction.frame` (the original frame, for overlays).

        Yields:
            One :class:`FramePrediction` per frame with ``masks (N, H, W)`` bool.
        """
        expressions = check_expressions(expressions)
        source = self.open(video)
        height, width = source.height, source.width
        input_size = model_input_size(height, width, self.size, self.size_divisor)
        text = self._encode(expressions)
        clip_len, stride = self.clip_len, self.clip_len - self.overlap

        inputs: dict[int, torch.Tensor] = {}  # frame index -> (3, h, w) model input
        originals: dict[int, torch.Tensor] = {}  # frame index -> (3, H, W) uint8 (on request)
        mean_logits: dict[int, torch.Tensor] = {}  # frame index -> (N, h, w) running mean
        counts: dict[int, int] = {}
        frames = iter(source)
        seen = 0
        done = False

        def read_until(count: int) -> None:
            nonlocal seen, done
            while not done and seen < count:
                frame = next(frames, None)
                if frame is None:
                    done = True
                    return
                inputs[seen] = self._preprocess(frame, input_size)
                if return_frames:
                    originals[seen] = _to_uint8(frame).cpu()
                seen += 1

        def run(start: int, end: int) -> None:
            clip = torch.stack([inputs[i] for i in range(start, end)])
            logits = self._forward(clip, text).float()  # (N, t, h, w)
            for offset, index in enumerate(range(start, end)):
                count = counts.get(index, 0) + 1
                counts[index] = count
                previous = mean_logits.get(index)
                if previous is None:
                    mean_logits[index] = logits[:, offset]
                else:  # running mean: exact when all clips agree
                    mean_logits[index] = previous + (logits[:, offset] - previous) / count

        def finalise(stop: int) -> Iterator[FramePrediction]:
            ready = sorted(index for index in mean_logits if index < stop)
            if not ready:
                return
            stacked = torch.stack([mean_logits.pop(index) for index in ready], dim=1)
            probs = self._restore(stacked, (height, width))  # (N, k, H, W)
            masks = (probs > self.threshold).cpu()
            probs_cpu = probs.cpu() if return_probs else None
            for offset, index in enumerate(ready):
                counts.pop(index)
                inputs.pop(index, None)
                yield FramePrediction(
                    index=index,
                    masks=masks[:, offset],
                    probs=None if probs_cpu is None else probs_cpu[:, offset],
                    frame=originals.pop(index, None),
                )

        start = 0
        while True:
            read_until(start + clip_len + 1)
            if seen > start + clip_len:  # a frame after this clip exists: a regular clip
                yield from finalise(start)  # no later clip reaches back before ``start``
                run(start, start + clip_len)
                start += stride
                continue
            if seen == 0:
                raise ValueError(f"video {source.name!r} has no frame")
            run(max(0, seen - clip_len), seen)
            yield from finalise(seen)
            return

    def _encode(self, expressions: list[str]) -> TextFeatures:
        tokens = self.model.tokenize(expressions)
        ids = tokens["input_ids"].to(self.device)
        mask = tokens["attention_mask"].to(self.device)
        with self._autocast():
            return self.model.encode_text(ids, mask)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def _preprocess(self, frame: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """``(3, H, W)`` uint8 or [0, 1] float -> ``(3, h, w)`` normalised float32."""
        frame = frame.to(self.device, non_blocking=True)
        pixels = frame.float().div_(255.0) if frame.dtype == torch.uint8 else frame.float()
        pixels = pixels.unsqueeze(0)
        if tuple(pixels.shape[-2:]) != size:
            pixels = F.interpolate(
                pixels, size=size, mode="bilinear", align_corners=False, antialias=True
            )
        return ((pixels - self._mean) / self._std)[0]

    def _forward(self, clip: torch.Tensor, text: TextFeatures) -> torch.Tensor:
        """``(t, 3, h, w)`` clip -> ``(N, t, h, w)`` logits for the ``N`` expressions."""
        num_expressions = text.sentence.shape[0]
        frames = clip.unsqueeze(0).expand(num_expressions, *clip.shape)
        with self._autocast():
            logits = self.model.forward_with_text(frames, text)
        return logits[:, :, 0]

    def _restore(self, logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """``(N, k, h, w)`` logits -> ``(N, k, H, W)`` probabilities at the original size."""
        if tuple(logits.shape[-2:]) != size:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return torch.sigmoid(logits)


def _to_uint8(frame: torch.Tensor) -> torch.Tensor:
    if frame.dtype == torch.uint8:
        return frame
    return (frame.float().clamp(0, 1) * 255).round().to(torch.uint8)
