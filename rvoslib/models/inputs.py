"""What a model reads from a batch (:class:`ModelInputs`) and the checks of those inputs."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from rvoslib._checks import check_tensor, format_shape

__all__ = [
    "MASK_KEYS",
    "TEXT_KEYS",
    "ModelInputs",
    "check_finite",
    "check_first_mask",
    "check_mask_inputs",
    "check_model_kind",
    "check_text_inputs",
    "matching_dtype",
]

#: Batch keys of a model that takes text, and of one that takes the first frame's mask.
TEXT_KEYS = ("frames", "text_ids", "text_mask")
MASK_KEYS = ("frames", "first_mask")


@dataclasses.dataclass(frozen=True)
class ModelInputs:
    """What a model reads from a batch: the declaration the collator is built from.

    Attributes:
        kind: ``"text"`` (a referring expression per clip) or ``"first_mask"`` (the object's
            mask in frame 0).
        keys: The batch keys the forward pass reads.
        tokenizer: The tokenizer of the expressions (picklable; ``None`` for ``first_mask``).
        max_length: Maximum number of tokens (``None`` for ``first_mask``).
    """

    kind: str
    keys: tuple[str, ...]
    tokenizer: Any = None
    max_length: int | None = None


def check_text_inputs(
    frames: torch.Tensor, text_ids: torch.Tensor, vocab_size: int | None = None
) -> None:
    """Check ``frames (B, T, 3, H, W)`` and ``text_ids (B, L)`` (and the ids against the
    vocabulary, when its size is given).

    Raises:
        ValueError: a bad shape, an empty batch, clip or expression, or ids outside the
            vocabulary (each named with the expected and actual value).
        TypeError: integer frames or floating token ids.
    """
    check_tensor(text_ids, "text_ids", ("B", "L"), floating=False)
    check_tensor(frames, "frames", ("B", "T", 3, "H", "W"), floating=True)
    if text_ids.shape[0] != frames.shape[0]:
        raise ValueError(
            f"frames and text_ids must have the same batch size B, got frames "
            f"{format_shape(frames.shape)} and text_ids {format_shape(text_ids.shape)}"
        )
    if 0 in frames.shape or text_ids.shape[1] == 0:
        raise ValueError(
            f"empty input: frames {format_shape(frames.shape)}, text_ids "
            f"{format_shape(text_ids.shape)} (every dimension must be >= 1)"
        )
    size = vocab_size
    if size is not None and (int(text_ids.min()) < 0 or int(text_ids.max()) >= size):
        raise ValueError(
            f"text_ids must be in [0, {size}) (the text encoder's vocabulary), got ids "
            f"from {int(text_ids.min())} to {int(text_ids.max())}: tokenize with "
            "model.tokenize"
        )


def check_first_mask(
    first_mask: object, frames: torch.Tensor, *, require_object: bool = False
) -> torch.Tensor:
    """Check the first frame's mask against the frames.

    Args:
        first_mask: ``(B, H, W)`` mask of the object to track in frame 0 (nonzero = object).
        frames: ``(B, T, 3, H, W)`` frames.
        require_object: Also check that every mask has an object pixel (one host sync).

    Returns:
        ``first_mask``.

    Raises:
        TypeError: ``first_mask`` is not a tensor.
        ValueError: its shape is not ``(B, H, W)`` of the frames (both sizes named), or a mask
            is empty (``require_object``).
    """
    if not isinstance(first_mask, torch.Tensor):
        raise TypeError(
            f"first_mask must be a torch.Tensor (B, H, W) (the mask of the object to track in "
            f"frame 0), got {type(first_mask).__name__}"
        )
    expected = (frames.shape[0], *frames.shape[-2:])
    if tuple(first_mask.shape) != tuple(expected):
        raise ValueError(
            f"first_mask must be (B, H, W) = {format_shape(expected)} to match frames "
            f"{format_shape(frames.shape)} (frames of {frames.shape[-2]}x{frames.shape[-1]}), "
            f"got {format_shape(first_mask.shape)}"
        )
    if require_object:
        empty = (first_mask.flatten(1) == 0).all(dim=1).nonzero().flatten().tolist()
        if empty:
            raise ValueError(
                f"first_mask of batch item(s) {empty} is empty: the mask of the object to track "
                "in frame 0 must have at least one object pixel"
            )
    return first_mask


def check_finite(frames: torch.Tensor, model: object = None) -> None:
    """Refuse frames holding NaN or infinite values (one such pixel would turn every output
    frame NaN), unless ``model.allow_non_finite`` is true. One pass over the frames and one
    host sync.

    Args:
        frames: ``(B, T, 3, H, W)`` frames.
        model: The model they are for (its ``allow_non_finite`` is read), or ``None``.

    Raises:
        ValueError: naming the first clip (batch item) and frame with such a value, and how
            many frames have one.
    """
    if getattr(model, "allow_non_finite", False) or not frames.is_floating_point():
        return
    bad = ~torch.isfinite(frames).flatten(2).all(dim=2)  # (B, T)
    if bool(bad.any()):
        clip, frame = (int(value) for value in bad.nonzero()[0])
        raise ValueError(
            f"frames hold NaN or infinite values: clip (batch item) {clip}, frame {frame} "
            f"({int(bad.sum())} such frame(s) in all, frames {format_shape(frames.shape)}); "
            "clean the input, or set model.allow_non_finite = True to run anyway"
        )


def check_mask_inputs(
    frames: object, first_mask: object, model: nn.Module, *, require_object: bool = False
) -> torch.Tensor:
    """The checks of a VOS model's inputs, equal to a referring model's: ``frames (B, T, 3,
    H, W)`` floating, no empty dimension, finite (:func:`check_finite`), ``first_mask`` of
    their size (:func:`check_first_mask`).

    Returns:
        The frames in the model's dtype (:func:`matching_dtype`).

    Raises:
        TypeError: not tensors, or integer frames.
        ValueError: a bad shape, an empty batch or clip (``T = 0``), a bad mask, or
            non-finite frames (each named with the expected and actual value).
    """
    check_tensor(frames, "frames", ("B", "T", 3, "H", "W"), floating=True)
    if 0 in frames.shape:
        raise ValueError(
            f"empty input: frames {format_shape(frames.shape)} (every dimension must be >= 1: "
            "a clip needs at least its first frame)"
        )
    check_first_mask(first_mask, frames, require_object=require_object)
    check_finite(frames, model)
    return matching_dtype(frames, model)


def matching_dtype(frames: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """Frames in the parameters' floating dtype (float64 or float16 frames of a float32 model
    would fail deep inside a convolution); under autocast they are left as they are."""
    if torch.is_autocast_enabled(frames.device.type):
        return frames
    parameter = next((p for p in model.parameters() if p.is_floating_point()), None)
    if parameter is not None and frames.dtype != parameter.dtype:
        return frames.to(parameter.dtype)
    return frames


def check_model_kind(cls: type, target: type, what: str) -> None:
    """Raise ValueError unless model class ``cls`` may build architecture ``target``: itself,
    or a base class without a config of its own (``RVOSModel`` for a referring architecture)."""
    if target is cls or (issubclass(target, cls) and not cls.config_class.architecture):
        return
    kind = "a VOS model (first-frame mask)" if target.input_kind == "first_mask" else (
        "a referring model (text)"
    )  # fmt: skip
    raise ValueError(
        f"{cls.__name__} cannot load {what}: it is {target.__name__}, {kind}; use "
        f"SegmentationModel.from_pretrained / from_config for any architecture"
    )
