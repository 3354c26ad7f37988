"""Inference protocols: how the published systems turn a video into masks, as data.

An :class:`InferenceProtocol` names every choice between the frames on disk and the binary
masks: the input size rule (shorter side, cap of the longer side), the resampling, the frames
per forward pass, which frames' mean score chooses the one query used for the masks, the
upsampling order and the threshold. The registered protocols (:data:`INFERENCE_PROTOCOLS`):

=====================  ======================================================================
``rvoslib``            rvoslib's own: overlapping clips, each segmented by the model's
                       referred logits, overlapping logits averaged (:class:`VideoPredictor`'s
                       ``clip_len``, ``overlap``, ``size``, ``size_divisor``, ``threshold``)
``mttr``               MTTR (``trainer.evaluate_refer_youtube_vos``): shorter side 360, longer
                       side <= 640 (DETR's rule), PIL bilinear; the whole video in one pass;
                       one query for the video (highest mean referred probability); mask
                       logits upsampled bilinearly to the input size, thresholded at 0.5, then
                       resized to the original size by nearest neighbour
``referformer-ytvos``  ReferFormer ``inference_ytvos.py``: shorter side 360 (torchvision
                       ``Resize(360)``, no cap), PIL bilinear; whole video; one query for the
                       video; mask logits upsampled once to the original size, then > 0.5
``referformer-davis``  ReferFormer ``inference_davis.py``: as ``referformer-ytvos`` but in
                       clips of 36 frames (the last one shorter), one query per clip
``soc``                SOC ``infer_refytb.py``: shorter side 360, longer side <= 640; whole
                       video; one query for the video; upsampled once to the original size
``soc-davis``          SOC ``infer_davis.py``: as ``soc`` in clips of 36 frames, one query per
                       clip
=====================  ======================================================================

The steps are plain functions, used by :class:`~rvoslib.inference.VideoPredictor` and
:func:`~rvoslib.evaluation.evaluate`: :func:`protocol_input_size`, :func:`resize_frames`,
:func:`forward_windows`, :func:`choose_queries`, :func:`masks_at_original_size`.

Example:
    >>> protocol = get_protocol("mttr")
    >>> protocol_input_size(480, 854, protocol)
    (360, 640)
    >>> forward_windows(80, get_protocol("referformer-davis"))
    [(0, 36), (36, 72), (72, 80)]
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rvoslib.registry import Registry

__all__ = [
    "INFERENCE_PROTOCOLS",
    "InferenceProtocol",
    "choose_queries",
    "forward_windows",
    "get_protocol",
    "masks_at_original_size",
    "protocol_input_size",
    "resize_frames",
    "resolve_protocol",
]

_QUERY_CHOICES = ("model", "video", "clip")
_RESAMPLE_CHOICES = ("pil", "torch")
_UPSAMPLE_CHOICES = ("original", "input_then_nearest")


@dataclass(frozen=True)
class InferenceProtocol:
    """The inference of one published system (see the module docstring).

    Attributes:
        name: The registered name.
        query: ``"video"``: one query for the whole video, the one whose referred probability
            averaged over all frames is highest; ``"clip"``: one query per forward pass
            (``clip_frames``); ``"model"``: the model's own referred logits, clips overlapping
            and averaged (rvoslib's :class:`~rvoslib.inference.VideoPredictor` settings; the
            other fields are then unused).
        short_side: Shorter side of the model input (``None``: the original size).
        max_long_side: Cap of the longer side (the shorter side then shrinks; DETR's
            ``get_size_with_aspect_ratio``); ``None``: no cap.
        resample: ``"pil"``: PIL bilinear on the uint8 frame (the originals'
            ``torchvision.transforms`` on PIL images); ``"torch"``: antialiased bilinear on the
            float frame.
        size_divisibility: Pad the input at the bottom/right to a multiple of this (zeros after
            normalisation, as the originals' ``NestedTensor``); ``None``: no padding.
        clip_frames: Frames per forward pass, clips not overlapping, the last one shorter;
            ``None``: the whole video in one pass. With ``query="video"`` and clips, the video
            is run twice (the first pass sums the scores, the second makes the masks).
        upsample: ``"original"``: mask logits upsampled bilinearly from the model's stride to
            the original size, then sigmoid and threshold (ReferFormer, SOC);
            ``"input_then_nearest"``: upsampled to the (padded) input size, thresholded,
            cropped, then nearest-neighbour to the original size (MTTR).
        threshold: Probability above which a pixel is in the mask.
        description: One line for listings.

    Example:
        >>> InferenceProtocol("mine", short_side=320, clip_frames=12).query
        'video'
    """

    name: str
    query: str = "video"
    short_side: int | None = 360
    max_long_side: int | None = None
    resample: str = "pil"
    size_divisibility: int | None = None
    clip_frames: int | None = None
    upsample: str = "original"
    threshold: float = 0.5
    description: str = ""

    def __post_init__(self) -> None:
        for field, value, choices in (
            ("query", self.query, _QUERY_CHOICES),
            ("resample", self.resample, _RESAMPLE_CHOICES),
            ("upsample", self.upsample, _UPSAMPLE_CHOICES),
        ):
            if value not in choices:
                raise ValueError(
                    f"InferenceProtocol {field} must be one of {choices}, got {value!r}"
                )
        for field in ("short_side", "max_long_side", "size_divisibility", "clip_frames"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(
                    f"InferenceProtocol {field} must be a positive int or None, got {value!r}"
                )
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(
                f"InferenceProtocol threshold must be in (0, 1), got {self.threshold!r}"
            )
        if self.query == "clip" and self.clip_frames is None:
            raise ValueError("InferenceProtocol query='clip' needs clip_frames (frames per clip)")

    def replace(self, **changes: Any) -> InferenceProtocol:
        """A copy with fields changed (checked again), e.g. ``clip_frames=16``."""
        return dataclasses.replace(self, **changes)


#: Registered inference protocols by name (:func:`get_protocol`).
INFERENCE_PROTOCOLS = Registry("inference protocol")

_BUILT_IN = (
    InferenceProtocol(
        "rvoslib",
        query="model",
        resample="torch",
        description="rvoslib: overlapping clips of the model's referred logits, averaged",
    ),
    InferenceProtocol(
        "mttr",
        max_long_side=640,
        upsample="input_then_nearest",
        description="MTTR: 360/640, whole video, one query, input-size threshold then nearest",
    ),
    InferenceProtocol(
        "referformer-ytvos",
        description="ReferFormer Ref-YouTube-VOS: shorter side 360, whole video, one query",
    ),
    InferenceProtocol(
        "referformer-davis",
        query="clip",
        clip_frames=36,
        description="ReferFormer Ref-DAVIS17: shorter side 360, 36-frame clips, query per clip",
    ),
    InferenceProtocol(
        "soc",
        max_long_side=640,
        description="SOC Ref-YouTube-VOS: 360/640, whole video, one query",
    ),
    InferenceProtocol(
        "soc-davis",
        query="clip",
        max_long_side=640,
        clip_frames=36,
        description="SOC Ref-DAVIS17: 360/640, 36-frame clips, query per clip",
    ),
)
for _protocol in _BUILT_IN:
    INFERENCE_PROTOCOLS.register(_protocol.name, _protocol, description=_protocol.description)


def get_protocol(name: str) -> InferenceProtocol:
    """The registered protocol ``name``.

    Raises:
        KeyError: unknown name (lists the registered protocols).
    """
    return INFERENCE_PROTOCOLS.get(name)


def resolve_protocol(
    protocol: str | InferenceProtocol | None, model: Any = None
) -> InferenceProtocol:
    """The protocol to run: ``protocol`` itself, the registered one of that name, or (``None``)
    the model's (its config's ``inference`` field, ``model.inference_protocol``), else
    ``"rvoslib"``.

    Raises:
        KeyError: an unknown name (lists the registered ones).
        TypeError: neither a name nor an :class:`InferenceProtocol`.
    """
    if protocol is None:
        protocol = getattr(model, "inference_protocol", None) or "rvoslib"
    if isinstance(protocol, InferenceProtocol):
        return protocol
    if not isinstance(protocol, str):
        raise TypeError(
            f"protocol must be a registered name or an InferenceProtocol, got "
            f"{type(protocol).__name__}"
        )
    return get_protocol(protocol)


def protocol_input_size(height: int, width: int, protocol: InferenceProtocol) -> tuple[int, int]:
    """The ``(h, w)`` the frames are resized to (before any padding).

    The shorter side becomes ``short_side`` (lowered to ``round(max_long_side * short / long)``
    when the longer side would pass ``max_long_side``) and the longer side the truncated
    ``int(side * long / short)``; a frame whose shorter side already has that length is kept.

    Example:
        >>> protocol_input_size(480, 854, get_protocol("referformer-ytvos"))
        (360, 640)
        >>> protocol_input_size(720, 1920, get_protocol("mttr"))
        (240, 640)
    """
    if height < 1 or width < 1:
        raise ValueError(f"frame size must be positive, got (height, width) = {(height, width)}")
    side = protocol.short_side
    if side is None:
        return height, width
    short, long = min(height, width), max(height, width)
    if protocol.max_long_side is not None and long / short * side > protocol.max_long_side:
        side = round(protocol.max_long_side * short / long)
    if short == side:
        return height, width
    if width < height:
        return int(side * height / width), side
    return side, int(side * width / height)


def resize_frames(frames: torch.Tensor, size: tuple[int, int], resample: str) -> torch.Tensor:
    """Frames resized to ``size``, as float32 in ``[0, 1]``.

    Args:
        frames: ``(T, 3, H, W)`` uint8, or float in ``[0, 1]``.
        size: ``(h, w)``.
        resample: ``"pil"`` (uint8 frames through PIL's bilinear filter, then ``/ 255``: the
            originals' transforms; float frames are first rounded to uint8) or ``"torch"``
            (antialiased bilinear on floats).

    Returns:
        ``(T, 3, h, w)`` float32 on the frames' device.
    """
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must be (T, 3, H, W), got {tuple(frames.shape)}")
    if resample not in _RESAMPLE_CHOICES:
        raise ValueError(f"resample must be one of {_RESAMPLE_CHOICES}, got {resample!r}")
    same = tuple(frames.shape[-2:]) == tuple(size)
    if resample == "torch" or same:
        pixels = frames.float() / 255.0 if frames.dtype == torch.uint8 else frames.float()
        if same:
            return pixels
        return F.interpolate(
            pixels, size=size, mode="bilinear", align_corners=False, antialias=True
        )
    from PIL import Image

    if frames.dtype != torch.uint8:
        frames = (frames.float().clamp(0, 1) * 255).round().to(torch.uint8)
    resized = []
    for frame in frames.permute(0, 2, 3, 1).cpu().numpy():
        image = Image.fromarray(np.ascontiguousarray(frame)).resize(
            (size[1], size[0]), Image.Resampling.BILINEAR
        )
        resized.append(torch.from_numpy(np.asarray(image).copy()))
    stacked = torch.stack(resized).permute(0, 3, 1, 2).to(frames.device)
    return stacked.float().div(255.0)


def forward_windows(num_frames: int, protocol: InferenceProtocol) -> list[tuple[int, int]]:
    """The ``[start, end)`` frames of each forward pass: consecutive, not overlapping.

    Example:
        >>> forward_windows(5, get_protocol("mttr"))
        [(0, 5)]
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    step = protocol.clip_frames or num_frames
    return [(start, min(start + step, num_frames)) for start in range(0, num_frames, step)]


def choose_queries(scores: torch.Tensor) -> torch.Tensor:
    """The query with the highest referred probability averaged over frames.

    Args:
        scores: ``(E, T, N)`` probabilities of ``N`` queries in ``T`` frames for ``E``
            expressions (or their sum over frames, ``(E, 1, N)``).

    Returns:
        ``(E,)`` long indices (the first one on ties, as ``argmax``).

    Example:
        >>> choose_queries(torch.tensor([[[0.1, 0.9], [0.2, 0.1]]]))
        tensor([1])
    """
    if scores.ndim != 3:
        raise ValueError(f"scores must be (E, T, N), got {tuple(scores.shape)}")
    return scores.float().mean(1).argmax(-1)


def masks_at_original_size(
    logits: torch.Tensor,
    input_size: tuple[int, int],
    padded_size: tuple[int, int],
    original_size: tuple[int, int],
    protocol: InferenceProtocol,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chosen mask logits to probabilities and binary masks at the original size.

    Args:
        logits: ``(E, T, h, w)`` mask logits of the chosen queries (the model's stride).
        input_size: ``(h_in, w_in)`` the frames were resized to (before padding).
        padded_size: ``(h_pad, w_pad)`` of the model input (``input_size`` when unpadded).
        original_size: ``(H, W)`` of the frames.
        protocol: ``upsample`` and ``threshold`` are used.

    Returns:
        ``probs (E, T, H, W)`` float32 and ``masks (E, T, H, W)`` bool. With
        ``"input_then_nearest"`` the probabilities are the input-size ones cropped and resized
        by nearest neighbour, like the masks.
    """
    if logits.ndim != 4:
        raise ValueError(f"logits must be (E, T, h, w), got {tuple(logits.shape)}")
    logits = logits.float()
    if protocol.upsample == "original":
        if tuple(logits.shape[-2:]) != tuple(original_size):
            logits = F.interpolate(logits, size=original_size, mode="bilinear", align_corners=False)
        probs = logits.sigmoid()
        return probs, probs > protocol.threshold
    if tuple(logits.shape[-2:]) != tuple(padded_size):
        logits = F.interpolate(logits, size=padded_size, mode="bilinear", align_corners=False)
    probs = logits.sigmoid()[..., : input_size[0], : input_size[1]]
    masks = (probs > protocol.threshold).float()
    if tuple(input_size) != tuple(original_size):
        masks = F.interpolate(masks, size=original_size, mode="nearest")
        probs = F.interpolate(probs, size=original_size, mode="nearest")
    return probs, masks > 0.5
