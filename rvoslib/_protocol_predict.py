"""Whole-video inference under a published system's :class:`InferenceProtocol` (used by
:class:`~rvoslib.inference.VideoPredictor` and :func:`~rvoslib.evaluation.evaluate`).

Every forward pass gives the candidates of the model (:meth:`candidates`: every query's mask
logits at the model's stride and its referred probability; a model without queries gives its
one referred mask, score 1). One query is chosen per expression from the mean score over the
frames of the video (``query="video"``) or of the pass (``query="clip"``); its logits are
brought to the original size and thresholded (:func:`masks_at_original_size`).

Memory: with ``clip_frames=None`` the whole video is one pass, as in the originals (the
resized frames and every query's stride-4 logits of all frames are held). With
``clip_frames`` and ``query="video"`` the video is read twice: the first pass only sums the
scores per query, the second recomputes each pass and keeps the chosen query's logits, so at
most ``clip_frames`` frames are held (at twice the compute).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F

from rvoslib.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from rvoslib.inference_protocols import (
    InferenceProtocol,
    choose_queries,
    masks_at_original_size,
    protocol_input_size,
    resize_frames,
)

__all__ = ["model_candidates", "protocol_frames"]


def model_candidates(
    model: Any, frames: torch.Tensor, text: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidate mask logits ``(E, t, N, h, w)`` and scores ``(E, t, N)`` of ``frames (E, t, 3,
    h, w)`` with encoded text (batch ``E``): ``model.candidates(model.forward_outputs(...))``
    where the model has them, else its referred logits with score 1."""
    if callable(getattr(model, "forward_outputs", None)) and callable(
        getattr(model, "candidates", None)
    ):
        logits, scores = model.candidates(model.forward_outputs(frames, text))
    else:
        logits = model.forward_with_text(frames, text)
        scores = logits.new_ones(logits.shape[:3])
    return logits.float(), scores.float()


class _Inputs:
    """Resize, normalise and pad frames for one protocol."""

    def __init__(self, protocol: InferenceProtocol, size: tuple[int, int], device: torch.device):
        self.protocol, self.device = protocol, device
        self.input_size = protocol_input_size(*size, protocol)
        divisor = protocol.size_divisibility or 1
        self.padded_size = tuple(-(-side // divisor) * divisor for side in self.input_size)
        shape = (1, 3, 1, 1)
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(shape)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(shape)

    def __call__(self, frames: list[torch.Tensor]) -> torch.Tensor:
        """``t`` frames ``(3, H, W)`` -> ``(t, 3, h_pad, w_pad)`` normalised float32."""
        stacked = torch.stack(frames).to(self.device)
        pixels = resize_frames(stacked, self.input_size, self.protocol.resample)
        pixels = (pixels - self.mean) / self.std
        pad_h = self.padded_size[0] - self.input_size[0]
        pad_w = self.padded_size[1] - self.input_size[1]
        return F.pad(pixels, (0, pad_w, 0, pad_h)) if pad_h or pad_w else pixels


def _chunks(frames: Iterable[torch.Tensor], size: int | None) -> Iterator[list[torch.Tensor]]:
    chunk: list[torch.Tensor] = []
    for frame in frames:
        chunk.append(frame)
        if size is not None and len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def protocol_frames(
    model: Any,
    read_frames: Callable[[], Iterable[torch.Tensor]],
    size: tuple[int, int],
    text: Any,
    protocol: InferenceProtocol,
    *,
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    name: str = "video",
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Run ``protocol`` on a video and yield each frame's result in order.

    Args:
        model: A referring model (``forward_outputs`` and ``candidates``, or
            ``forward_with_text``), in eval mode on ``device``.
        read_frames: Returns a new iterable of the frames ``(3, H, W)`` (uint8, or float in
            ``[0, 1]``) from the first; called twice for ``query="video"`` with clips.
        size: ``(H, W)`` of the frames.
        text: Encoded expressions (:class:`~rvoslib.models.text.TextFeatures`, batch ``E``).
        protocol: The protocol (its ``query`` must not be ``"model"``).
        device: Where the model runs.
        autocast: Returns the autocast context of the forward passes.
        name: The video's name, for messages.

    Yields:
        ``(index, probs (E, H, W), masks (E, H, W), frame)`` per frame, ``frame`` the
        ``(3, H, W)`` frame as read (for overlays).

    Raises:
        ValueError: a video without frames, or ``query="model"``.
    """
    if protocol.query == "model":
        raise ValueError("protocol query='model' is rvoslib's clip averaging, not run here")
    prepare = _Inputs(protocol, size, device)
    num_expressions = text.sentence.shape[0]
    chosen = None
    if protocol.query == "video" and protocol.clip_frames is not None:
        totals = None
        for chunk in _chunks(read_frames(), protocol.clip_frames):
            _, scores = _forward(model, prepare(chunk), text, num_expressions, autocast)
            summed = scores.sum(1, keepdim=True)
            totals = summed if totals is None else totals + summed
        if totals is None:
            raise ValueError(f"video {name!r} has no frame")
        chosen = choose_queries(totals)
    index = 0
    for chunk in _chunks(read_frames(), protocol.clip_frames):
        logits, scores = _forward(model, prepare(chunk), text, num_expressions, autocast)
        queries = chosen if chosen is not None else choose_queries(scores)
        picked = logits[torch.arange(num_expressions, device=logits.device), :, queries]
        probs, masks = masks_at_original_size(
            picked, prepare.input_size, prepare.padded_size, size, protocol
        )
        for offset, frame in enumerate(chunk):
            yield index, probs[:, offset], masks[:, offset], frame
            index += 1
    if index == 0:
        raise ValueError(f"video {name!r} has no frame")


def _forward(
    model: Any,
    clip: torch.Tensor,
    text: Any,
    num_expressions: int,
    autocast: Callable[[], contextlib.AbstractContextManager],
) -> tuple[torch.Tensor, torch.Tensor]:
    frames = clip.unsqueeze(0).expand(num_expressions, *clip.shape)
    with autocast():
        return model_candidates(model, frames, text)
