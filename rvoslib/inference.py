"""Run a model on a whole video: :class:`VideoPredictor`.

The video is cut into clips of ``clip_len`` frames that overlap by ``overlap`` frames
(:func:`clip_windows`); every clip is segmented for all expressions at once, the logits of
frames covered by several clips are averaged, resized back to the original resolution and
thresholded. Expressions are encoded once per video, not once per clip. Frames are streamed:
at most about ``clip_len + stride`` decoded frames and their logits are held at a time, and
:meth:`VideoPredictor.predict_iter` yields each frame's result as soon as no later clip can
change it.

With ``protocol`` (an :mod:`~rvoslib.inference_protocols` name, ``"mttr"``, ...; default: the
model config's ``inference``) the video is run as that published system's inference script
runs it (see :mod:`rvoslib._protocol_predict`, also for the memory it takes).

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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from rvoslib._protocol_predict import protocol_frames
from rvoslib._video_decode import check_on_corrupt
from rvoslib._windows import _check_clip, clip_windows, model_input_size
from rvoslib.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from rvoslib.inference_protocols import InferenceProtocol, resolve_protocol
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
]


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
            CPU (float32 everywhere under a published protocol). Logits are averaged in float32.
        size_divisor: Rounding of the model input size.
        num_workers: Decoding threads for frame folders.
        decode_device: ``"cpu"`` (threads) or ``"cuda"`` (batched ``decode_jpeg`` on the GPU)
            for folders of JPEG frames.
        on_corrupt: A truncated or corrupt frame in a frame folder: ``"error"`` (raise, naming
            it) or ``"skip"`` (leave it out with a warning naming it).
        protocol: An :class:`~rvoslib.inference_protocols.InferenceProtocol` or its registered
            name; ``None``: the model's (``model.inference_protocol``, from its config), else
            ``"rvoslib"``. Any protocol but ``"rvoslib"`` replaces ``clip_len``, ``overlap``,
            ``size``, ``size_divisor`` and ``threshold`` by its own settings.

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
        on_corrupt: str = "error",
        protocol: str | InferenceProtocol | None = None,
    ) -> None:
        _check_clip(clip_len, overlap)
        self.on_corrupt = check_on_corrupt(on_corrupt)
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
        kind = getattr(model, "input_kind", "") or getattr(
            getattr(model, "inputs", None), "kind", "text"
        )
        methods = ("tokenize", "encode_text", "forward_with_text")
        if kind != "text" or not all(callable(getattr(model, m, None)) for m in methods):
            raise TypeError(
                f"VideoPredictor needs a model that takes text (with {', '.join(methods)}); "
                f"{type(model).__name__} takes {kind!r}: give a model that takes the first "
                "frame's mask to rvoslib.vos_inference.segment_from_first_mask"
            )
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.protocol = resolve_protocol(protocol, model)
        if dtype is None and self.protocol.query != "model":
            dtype = torch.float32  # the originals' inference runs in float32
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
            on_corrupt=self.on_corrupt,
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
            expressions: One expression, a list of ``N``, or ``N`` tokenized ones (a mapping
                with ``input_ids`` and ``attention_mask`` ``(N, L)``, e.g. ``model.tokenize``'s).
            return_probs: Also return the probabilities.

        Returns:
            ``masks (N, T, H, W)`` bool at the original resolution, and with ``return_probs``
            also ``probs (N, T, H, W)`` float32. Use :meth:`predict_iter` for long videos.

        Raises:
            ValueError: an empty expression; FileNotFoundError / ImageReadError: bad video.
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
            expressions: As in :meth:`predict`.
            return_probs: Fill :attr:`FramePrediction.probs`.
            return_frames: Fill :attr:`FramePrediction.frame` (the original frame, for overlays).

        Yields:
            One :class:`FramePrediction` per frame with ``masks (N, H, W)`` bool.

        Raises:
            ValueError: an empty expression, a video without frames, or a float frame with
                NaN / inf values (its index named; ``model.allow_non_finite = True`` allows).
        """
        if not isinstance(expressions, Mapping):
            expressions = check_expressions(expressions)
        source = self.open(video)
        height, width = source.height, source.width
        text = self._encode(expressions)
        if self.protocol.query != "model":
            yield from self._protocol_iter(source, text, return_probs, return_frames)
            return
        input_size = model_input_size(height, width, self.size, self.size_divisor)
        clip_len, stride = self.clip_len, self.clip_len - self.overlap

        inputs: dict[int, torch.Tensor] = {}  # frame index -> (3, h, w) model input
        originals: dict[int, torch.Tensor] = {}  # frame index -> (3, H, W) uint8 (on request)
        mean_logits: dict[int, torch.Tensor] = {}  # frame index -> (N, h, w) running mean
        counts: dict[int, int] = {}
        frames = iter(source)
        allow = bool(getattr(self.model, "allow_non_finite", False))
        seen = 0
        done = False

        def read_until(count: int) -> None:
            nonlocal seen, done
            while not done and seen < count:
                frame = next(frames, None)
                if frame is None:
                    done = True
                    return
                _check_finite(frame, seen, source.name, allow)
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

    def _protocol_iter(
        self, source: VideoSource, text: TextFeatures, return_probs: bool, return_frames: bool
    ) -> Iterator[FramePrediction]:
        allow = bool(getattr(self.model, "allow_non_finite", False))

        def read() -> Iterator[torch.Tensor]:
            for index, frame in enumerate(source):
                _check_finite(frame, index, source.name, allow)
                yield frame

        results = protocol_frames(
            self.model, read, (source.height, source.width), text, self.protocol,
            device=self.device, autocast=self._autocast, name=source.name,
        )  # fmt: skip
        for index, probs, masks, frame in results:
            kept_probs = probs.cpu() if return_probs else None
            kept_frame = _to_uint8(frame).cpu() if return_frames else None
            yield FramePrediction(index, masks.cpu(), kept_probs, kept_frame)

    def _encode(self, expressions: str | Sequence[str] | Mapping) -> TextFeatures:
        if isinstance(expressions, Mapping):
            tokens = dict(expressions)
            if "input_ids" not in tokens or "attention_mask" not in tokens:
                raise ValueError(
                    "tokenized expressions must hold 'input_ids' and 'attention_mask', got keys "
                    f"{sorted(tokens)}"
                )
        else:
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


def _check_finite(frame: torch.Tensor, index: int, name: str, allow: bool) -> None:
    if frame.is_floating_point() and not allow and not bool(frame.isfinite().all()):
        raise ValueError(
            f"frame {index} of video {name!r} holds NaN or infinite values; "
            "clean the video, or set model.allow_non_finite = True to run anyway"
        )


def _to_uint8(frame: torch.Tensor) -> torch.Tensor:
    if frame.dtype == torch.uint8:
        return frame
    return (frame.float().clamp(0, 1) * 255).round().to(torch.uint8)
