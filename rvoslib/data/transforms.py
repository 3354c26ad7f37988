"""Clip transforms: the same augmentation for every frame and mask of a clip.

A transform takes and returns a *sample dict* holding numpy arrays before tensor conversion:

- ``frames``: ``(T, H, W, 3)`` uint8 RGB,
- ``masks``: ``(T, H, W)`` uint8 (1 = referred object),
- ``expression``: str,

and leaves every other key alone. It adds ``orig_size`` (the ``(H, W)`` it first saw, kept if
already present) and ``unpadded_size`` (the ``(h, w)`` after resizing, before padding to a
multiple of ``pad_divisor``), which :func:`restore_size` uses to map predictions back.
Datasets then call :func:`to_tensors` to normalise with the ImageNet mean and std.

Random choices draw from torch's generator, so ``torch.manual_seed`` makes augmentation
reproducible and each DataLoader worker augments differently.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    import albumentations as A

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ClipTransform",
    "denormalize",
    "eval_transform",
    "restore_size",
    "swap_left_right",
    "to_tensors",
    "train_transform",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_SCALE = (1 / (255 * np.array(IMAGENET_STD, np.float32))).reshape(3, 1, 1)
_OFFSET = (-np.array(IMAGENET_MEAN, np.float32) / np.array(IMAGENET_STD, np.float32)).reshape(
    3, 1, 1
)
_PAD_COLOR = tuple(round(255 * value) for value in IMAGENET_MEAN)  # normalises to 0

_LEFT_RIGHT = re.compile(r"\b(left|right)(most|wards?|side)?\b", re.IGNORECASE)


def swap_left_right(expression: str) -> str:
    """Swap the words "left" and "right" (and "-most", "-ward(s)", "-side"), keeping case.

    Example:
        >>> swap_left_right("The leftmost dog, left of the Right car")
        'The rightmost dog, right of the Left car'
    """

    def replace(match: re.Match[str]) -> str:
        word = match.group(1)
        new = "right" if word.lower() == "left" else "left"
        if word.isupper():
            new = new.upper()
        elif word[0].isupper():
            new = new.capitalize()
        return new + (match.group(2) or "")

    return _LEFT_RIGHT.sub(replace, expression)


def _as_hw(size: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(size, int):
        pair = (size, size)
    elif isinstance(size, Sequence) and len(size) == 2:
        pair = (int(size[0]), int(size[1]))
    else:
        raise ValueError(f"{name} must be an int or (H, W), got {size!r}")
    if min(pair) < 1:
        raise ValueError(f"{name} must be positive, got {size!r}")
    return pair


def _albumentations() -> Any:
    """Import albumentations (>= 2.0) on first use, without its network update check."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no PyPI request at import
    import albumentations

    major = albumentations.__version__.split(".")[0]
    if not major.isdigit() or int(major) < 2:
        raise ImportError(
            "rvoslib clip transforms need albumentations >= 2.0, found "
            + albumentations.__version__
        )
    return albumentations


def _random_seed() -> int:
    return int(torch.randint(0, 2**31 - 1, ()).item())


class ClipTransform:
    """Apply one random draw of spatial and colour augmentation to a whole clip.

    Steps, in order: horizontal flip with probability ``hflip_p`` (swapping "left"/"right"
    in the expression), the albumentations ``augment`` list (run on all frames and masks at
    once, so every frame gets the same crop and colour change), an aspect-preserving resize
    (``shorter_side``, capped by ``max_size``), and padding at the bottom/right to a multiple
    of ``pad_divisor`` (frames with the ImageNet mean colour, i.e. 0 after normalisation,
    masks with 0).

    Args:
        augment: albumentations transforms (>= 2.0), e.g. ``RandomResizedCrop``.
        hflip_p: Probability of a horizontal flip.
        shorter_side: Resize so that the shorter side has this many pixels (None: no resize).
        max_size: Upper bound for the longer side after that resize.
        pad_divisor: Pad height and width up to a multiple of this (None: no padding).
        keep_original_masks: Keep the masks as they came in, ``(T, H, W)`` uint8, under
            ``orig_masks`` (evaluation scores predictions at the frames' original size).

    Example:
        >>> import numpy as np
        >>> sample = {"frames": np.zeros((2, 48, 80, 3), np.uint8),
        ...           "masks": np.zeros((2, 48, 80), np.uint8), "expression": "a cat"}
        >>> out = eval_transform(64)(sample)
        >>> out["frames"].shape, out["unpadded_size"], out["orig_size"]
        ((2, 64, 128, 3), (64, 107), (48, 80))
    """

    def __init__(
        self,
        augment: Sequence[A.BasicTransform] = (),
        *,
        hflip_p: float = 0.0,
        shorter_side: int | None = None,
        max_size: int | None = None,
        pad_divisor: int | None = None,
        keep_original_masks: bool = False,
    ) -> None:
        if not 0.0 <= hflip_p <= 1.0:
            raise ValueError(f"hflip_p must be in [0, 1], got {hflip_p}")
        for name, value in (("shorter_side", shorter_side), ("max_size", max_size)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be a positive int or None, got {value}")
        if pad_divisor is not None and pad_divisor < 1:
            raise ValueError(f"pad_divisor must be a positive int or None, got {pad_divisor}")
        self.compose = _albumentations().Compose(list(augment)) if augment else None
        self.hflip_p = hflip_p
        self.shorter_side = shorter_side
        self.max_size = max_size
        self.pad_divisor = pad_divisor
        self.keep_original_masks = keep_original_masks

    def __repr__(self) -> str:
        augment = [type(t).__name__ for t in self.compose.transforms] if self.compose else []
        return (
            f"ClipTransform(augment={augment}, hflip_p={self.hflip_p}, "
            f"shorter_side={self.shorter_side}, max_size={self.max_size}, "
            f"pad_divisor={self.pad_divisor})"
        )

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        frames, masks = sample.get("frames"), sample.get("masks")
        if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3:
            shape = getattr(frames, "shape", type(frames).__name__)
            raise ValueError(f"sample['frames'] must be a (T, H, W, 3) uint8 array, got {shape}")
        if not isinstance(masks, np.ndarray) or masks.shape != frames.shape[:3]:
            shape = getattr(masks, "shape", type(masks).__name__)
            raise ValueError(
                f"sample['masks'] must be a (T, H, W) = {frames.shape[:3]} array, got {shape}"
            )
        sample = dict(sample)
        sample.setdefault("orig_size", tuple(frames.shape[1:3]))
        if self.keep_original_masks:
            sample.setdefault("orig_masks", np.ascontiguousarray(masks, dtype=np.uint8))
        if self.hflip_p > 0 and torch.rand(()).item() < self.hflip_p:
            frames, masks = frames[:, :, ::-1], masks[:, :, ::-1]
            if isinstance(sample.get("expression"), str):
                sample["expression"] = swap_left_right(sample["expression"])
        if self.compose is not None:
            self.compose.set_random_seed(_random_seed())
            out = self.compose(
                images=np.ascontiguousarray(frames), masks=np.ascontiguousarray(masks)
            )
            frames, masks = out["images"], out["masks"]
        if self.shorter_side is not None:
            frames, masks = self._resize(frames, masks)
        sample["unpadded_size"] = tuple(frames.shape[1:3])
        if self.pad_divisor is not None:
            frames, masks = self._pad(frames, masks)
        sample["frames"] = np.ascontiguousarray(frames, dtype=np.uint8)
        sample["masks"] = np.ascontiguousarray(masks, dtype=np.uint8)
        return sample

    def _resize(self, frames: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        height, width = frames.shape[1:3]
        scale = self.shorter_side / min(height, width)
        if self.max_size is not None:
            scale = min(scale, self.max_size / max(height, width))
        new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
        if (new_h, new_w) == (height, width):
            return frames, masks
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        frames = np.stack([cv2.resize(f, (new_w, new_h), interpolation=interp) for f in frames])
        masks = np.stack(
            [cv2.resize(m, (new_w, new_h), interpolation=cv2.INTER_NEAREST_EXACT) for m in masks]
        )
        return frames, masks

    def _pad(self, frames: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        height, width = frames.shape[1:3]
        pad_h = -height % self.pad_divisor
        pad_w = -width % self.pad_divisor
        if pad_h == 0 and pad_w == 0:
            return frames, masks
        padded = np.empty((frames.shape[0], height + pad_h, width + pad_w, 3), np.uint8)
        padded[...] = np.asarray(_PAD_COLOR, np.uint8)
        padded[:, :height, :width] = frames
        masks = np.pad(masks, ((0, 0), (0, pad_h), (0, pad_w)))
        return padded, masks


def train_transform(
    size: int | Sequence[int],
    *,
    scale: tuple[float, float] = (0.3, 1.0),
    ratio: tuple[float, float] = (0.75, 4 / 3),
    hflip_p: float = 0.5,
    color_jitter: float | None = 0.2,
    hue: float = 0.02,
    pad_divisor: int | None = 32,
) -> ClipTransform:
    """Training augmentation: random resized crop to ``size``, flip, colour jitter, padding.

    Args:
        size: Output size, an int (square) or ``(H, W)``.
        scale: Area range of the random crop, as a fraction of the frame.
        ratio: Aspect-ratio range of the random crop.
        hflip_p: Probability of a horizontal flip (swaps "left"/"right" in the expression).
        color_jitter: Brightness, contrast and saturation strength (None: no jitter).
        hue: Hue jitter strength (ignored when ``color_jitter`` is None).
        pad_divisor: Pad to a multiple of this (None: no padding).
    """
    height, width = _as_hw(size, "size")
    album = _albumentations()
    augment: list[A.BasicTransform] = [
        album.RandomResizedCrop(
            size=(height, width),
            scale=scale,
            ratio=ratio,
            mask_interpolation=cv2.INTER_NEAREST_EXACT,  # pixel-centre aligned, like frames
        )
    ]
    if color_jitter is not None and (color_jitter > 0 or hue > 0):
        augment.append(
            album.ColorJitter(
                brightness=color_jitter,
                contrast=color_jitter,
                saturation=color_jitter,
                hue=hue,
                p=1.0,
            )
        )
    return ClipTransform(augment, hflip_p=hflip_p, pad_divisor=pad_divisor)


def eval_transform(
    size: int, *, max_size: int | None = None, pad_divisor: int | None = 32
) -> ClipTransform:
    """Evaluation transform: resize keeping the aspect ratio, pad bottom/right.

    Args:
        size: Length of the shorter side after resizing.
        max_size: Upper bound for the longer side (the shorter side then gets smaller).
        pad_divisor: Pad to a multiple of this (None: no padding).

    Use :func:`restore_size` with the sample's ``unpadded_size`` and ``orig_size`` to map
    predictions back to the original frames; the original masks are kept as ``orig_masks``
    to score them there.
    """
    if not isinstance(size, int):
        raise ValueError(f"size must be an int (the shorter side), got {size!r}")
    return ClipTransform(
        shorter_side=size, max_size=max_size, pad_divisor=pad_divisor, keep_original_masks=True
    )


def restore_size(
    predictions: torch.Tensor,
    orig_size: Sequence[int],
    unpadded_size: Sequence[int],
    mode: str = "bilinear",
) -> torch.Tensor:
    """Undo :func:`eval_transform` on predictions: crop the padding, resize to the original.

    Args:
        predictions: ``(..., H_pad, W_pad)`` logits or probabilities (any leading dims).
            Integer or bool masks are resized with nearest-neighbour.
        orig_size: ``(H, W)`` of the original frames (sample key ``orig_size``).
        unpadded_size: ``(h, w)`` before padding (sample key ``unpadded_size``).
        mode: Interpolation for floating inputs (``"bilinear"`` or ``"nearest"``).

    Returns:
        ``(..., H, W)`` tensor of the input's dtype.
    """
    if not isinstance(predictions, torch.Tensor) or predictions.ndim < 2:
        shape = tuple(getattr(predictions, "shape", ()))
        raise ValueError(f"predictions must be a tensor (..., H_pad, W_pad), got shape {shape}")
    height, width = (int(v) for v in unpadded_size)
    if height > predictions.shape[-2] or width > predictions.shape[-1]:
        raise ValueError(
            f"unpadded_size {(height, width)} exceeds predictions' spatial size "
            f"{tuple(predictions.shape[-2:])}"
        )
    cropped = predictions[..., :height, :width]
    target = (int(orig_size[0]), int(orig_size[1]))
    if target == (height, width):
        return cropped.clone()
    lead = cropped.shape[:-2]
    flat = cropped.reshape(-1, 1, height, width)
    if predictions.is_floating_point():
        kwargs = {"align_corners": False} if mode == "bilinear" else {}
        out = F.interpolate(flat, size=target, mode=mode, **kwargs)
    else:
        out = F.interpolate(flat.float(), size=target, mode="nearest").to(predictions.dtype)
    return out.reshape(*lead, *target)


def to_tensors(sample: dict[str, Any]) -> dict[str, Any]:
    """Convert a numpy sample to the dataset item format (other keys are kept).

    ``frames`` ``(T, H, W, 3)`` uint8 becomes ``(T, 3, H, W)`` float32 normalised with the
    ImageNet mean/std; ``masks`` ``(T, H, W)`` becomes float32 in {0, 1}; ``valid`` becomes a
    ``(T,)`` bool tensor.
    """
    item = dict(sample)
    # numpy, not torch: single-threaded, so a busy machine does not stall torch's thread pool
    frames = np.ascontiguousarray(np.asarray(sample["frames"]).transpose(0, 3, 1, 2), np.float32)
    frames *= _SCALE
    frames += _OFFSET
    item["frames"] = torch.from_numpy(frames)
    item["masks"] = torch.from_numpy((np.asarray(sample["masks"]) > 0).astype(np.float32))
    item["valid"] = torch.from_numpy(np.array(sample["valid"], dtype=bool))
    return item


def denormalize(frames: torch.Tensor) -> torch.Tensor:
    """Invert the ImageNet normalisation: ``(..., 3, H, W)`` float -> same shape in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN, device=frames.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=frames.device).view(3, 1, 1)
    return (frames * std + mean).clamp(0, 1)
