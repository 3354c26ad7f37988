"""Pseudo clips: a still image turned into a short video, as ReferFormer's image training does.

ReferFormer (``datasets/refexp2seq.py``, from SeqFormer and STEm-Seg) trains its video model on
RefCOCO/+/g by making each image a clip of ``num_frames`` frames: the image itself and
``num_frames - 1`` copies, each through its own random draw of

1. colour: one or both (at random) of a brightness shift of every channel by one integer in
   ``brightness`` and a hue-and-saturation shift by one integer in ``hue_saturation``
   (imgaug's ``SomeOf((1, None), [Add, AddToHueAndSaturation])``);
2. geometry: a perspective distortion (each corner moved inwards by ``|N(0, perspective)|``
   of the image size, the result stretched back to the full size, as imgaug's
   ``PerspectiveTransform(keep_size=True)``), then a rotation about the centre by an angle in
   ``rotation`` degrees and a shift by a fraction in ``translate`` of the width and height
   (imgaug's ``Affine``; bilinear for the image, nearest for the mask, zeros outside);
3. motion blur of the image (not the mask) with probability ``motion_blur_p``: a line kernel
   of a size in ``motion_blur_sizes`` at a random angle, weighted towards one end by a random
   direction in [-1, 1] (imgaug's ``MotionBlur``);

then the frames are shuffled. The defaults are the values ``refexp2seq.py`` passes.
Differences from the original, by design: random numbers come from torch's generator (so
``torch.manual_seed`` reproduces a clip and each DataLoader worker draws its own; the
original seeds imgaug from the wall clock), and the warps are OpenCV's (imgaug also calls
OpenCV, but its corner sampling and border handling differ in detail).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch

__all__ = ["PseudoClipAugmenter", "make_pseudo_clip"]


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(()).item())


def _randint(low: int, high: int) -> int:
    """An integer in ``[low, high]`` (both included)."""
    return int(torch.randint(low, high + 1, ()).item())


def _check_range(value: Sequence[float], name: str) -> tuple[float, float]:
    if len(value) != 2 or value[0] > value[1]:
        raise ValueError(f"{name} must be a (low, high) pair with low <= high, got {value!r}")
    return float(value[0]), float(value[1])


class PseudoClipAugmenter:
    """One randomly warped and recoloured copy of an image and its mask per call.

    Args:
        perspective: Standard deviation of the corner shifts, as a fraction of the size.
        rotation: Range of the rotation in degrees.
        translate: Range of the shift, as a fraction of width (x) and height (y), drawn
            independently for x and y.
        brightness: Range of the integer added to every channel.
        hue_saturation: Range of the integer added to hue and saturation (0-255 scale).
        motion_blur_p: Probability of a motion blur.
        motion_blur_sizes: Kernel sizes of the blur, one drawn per call.

    Raises:
        ValueError: a range that is not ``(low, high)``, a negative ``perspective``, a
            probability outside [0, 1] or a kernel size below 3 (the argument is named).

    Example:
        >>> augment = PseudoClipAugmenter()
        >>> image, mask = np.zeros((32, 48, 3), np.uint8), np.ones((32, 48), np.uint8)
        >>> out_image, out_mask = augment(image, mask)
        >>> out_image.shape, out_mask.shape, out_mask.dtype
        ((32, 48, 3), (32, 48), dtype('uint8'))
    """

    def __init__(
        self,
        *,
        perspective: float = 0.08,
        rotation: Sequence[float] = (-20.0, 20.0),
        translate: Sequence[float] = (-0.1, 0.1),
        brightness: Sequence[int] = (-40, 40),
        hue_saturation: Sequence[int] = (-5, 5),
        motion_blur_p: float = 0.25,
        motion_blur_sizes: Sequence[int] = (9, 11),
    ) -> None:
        if perspective < 0:
            raise ValueError(f"perspective must be >= 0, got {perspective}")
        if not 0.0 <= motion_blur_p <= 1.0:
            raise ValueError(f"motion_blur_p must be in [0, 1], got {motion_blur_p}")
        if not motion_blur_sizes or min(motion_blur_sizes) < 3:
            raise ValueError(
                f"motion_blur_sizes must be kernel sizes >= 3, got {list(motion_blur_sizes)}"
            )
        self.perspective = float(perspective)
        self.rotation = _check_range(rotation, "rotation")
        self.translate = _check_range(translate, "translate")
        self.brightness = tuple(int(v) for v in _check_range(brightness, "brightness"))
        self.hue_saturation = tuple(int(v) for v in _check_range(hue_saturation, "hue_saturation"))
        self.motion_blur_p = float(motion_blur_p)
        self.motion_blur_sizes = tuple(int(size) for size in motion_blur_sizes)

    def __repr__(self) -> str:
        return (
            f"PseudoClipAugmenter(perspective={self.perspective}, rotation={self.rotation}, "
            f"translate={self.translate}, brightness={self.brightness}, "
            f"hue_saturation={self.hue_saturation}, motion_blur_p={self.motion_blur_p}, "
            f"motion_blur_sizes={self.motion_blur_sizes})"
        )

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A warped copy of ``image`` ``(H, W, 3)`` uint8 RGB and ``mask`` ``(H, W)`` uint8.

        Raises:
            ValueError: ``image`` not ``(H, W, 3)`` uint8, or ``mask`` not ``(H, W)``.
        """
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
            shape = getattr(image, "shape", type(image).__name__)
            raise ValueError(f"image must be an (H, W, 3) uint8 array, got {shape}")
        if not isinstance(mask, np.ndarray) or mask.shape != image.shape[:2]:
            shape = getattr(mask, "shape", type(mask).__name__)
            raise ValueError(f"mask must be an (H, W) = {image.shape[:2]} array, got {shape}")
        image = self._colour(np.asarray(image, np.uint8))
        matrix = self._geometry(*image.shape[:2])
        size = (image.shape[1], image.shape[0])
        image = cv2.warpPerspective(image, matrix, size, flags=cv2.INTER_LINEAR, borderValue=0)
        mask = cv2.warpPerspective(
            np.ascontiguousarray(mask, np.uint8), matrix, size, flags=cv2.INTER_NEAREST
        )
        if torch.rand(()).item() < self.motion_blur_p:
            image = self._motion_blur(image)
        return image, mask

    def _colour(self, image: np.ndarray) -> np.ndarray:
        choice = _randint(1, 3)  # 1: brightness, 2: hue and saturation, 3: both
        out = image
        if choice & 1:
            shift = _randint(*self.brightness)
            out = np.clip(out.astype(np.int16) + shift, 0, 255).astype(np.uint8)
        if choice & 2:
            shift = _randint(*self.hue_saturation)
            hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV).astype(np.int16)
            hsv[..., 0] = (hsv[..., 0] + round(shift * 180 / 255)) % 180  # OpenCV hue: 0-179
            hsv[..., 1] = np.clip(hsv[..., 1] + shift, 0, 255)
            out = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
        return out

    def _geometry(self, height: int, width: int) -> np.ndarray:
        """The 3x3 homography: perspective stretched back to full size, then rotate + shift."""
        corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
        inward = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], np.float32)
        shifts = torch.randn(4, 2).abs().numpy() * self.perspective
        moved = corners + inward * shifts * np.array([width, height], np.float32)
        perspective = cv2.getPerspectiveTransform(moved.astype(np.float32), corners)
        angle = _uniform(*self.rotation)
        shift_x = _uniform(*self.translate) * width
        shift_y = _uniform(*self.translate) * height
        affine = np.eye(3)
        affine[:2] = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
        affine[0, 2] += shift_x
        affine[1, 2] += shift_y
        return affine @ perspective

    def _motion_blur(self, image: np.ndarray) -> np.ndarray:
        size = self.motion_blur_sizes[_randint(0, len(self.motion_blur_sizes) - 1)]
        angle = math.radians(_uniform(0.0, 360.0))
        direction = _uniform(-1.0, 1.0)
        kernel = np.zeros((size, size), np.float32)
        centre = (size - 1) / 2
        for step in np.linspace(-1.0, 1.0, 2 * size):
            x = round(centre + step * centre * math.cos(angle))
            y = round(centre + step * centre * math.sin(angle))
            kernel[y, x] = max(kernel[y, x], 1.0 + direction * step)  # >= 0, > 0 mid-line
        kernel /= kernel.sum()
        return cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT_101)


def make_pseudo_clip(
    image: np.ndarray,
    mask: np.ndarray,
    num_frames: int,
    augmenter: PseudoClipAugmenter | None = None,
    shuffle: bool = True,
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """A clip of ``num_frames`` frames from one image: the image and augmented copies.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        mask: ``(H, W)`` uint8 mask of the referred object.
        num_frames: Frames of the clip, >= 1 (1: the image alone).
        augmenter: Makes each copy (None: :class:`PseudoClipAugmenter` with its defaults).
        shuffle: Shuffle the frames, as ReferFormer does (the image is then at a random
            position).

    Returns:
        ``frames`` ``(T, H, W, 3)`` uint8, ``masks`` ``(T, H, W)`` uint8, and per frame the
        index of its copy (0: the image itself, ``k``: the ``k``-th augmented copy).

    Raises:
        ValueError: ``num_frames`` < 1.

    Example:
        >>> image, mask = np.zeros((16, 16, 3), np.uint8), np.ones((16, 16), np.uint8)
        >>> frames, masks, order = make_pseudo_clip(image, mask, 3)
        >>> frames.shape, masks.shape, sorted(order)
        ((3, 16, 16, 3), (3, 16, 16), [0, 1, 2])
    """
    if not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
    augmenter = augmenter or PseudoClipAugmenter()
    frames, masks = [np.asarray(image, np.uint8)], [np.asarray(mask, np.uint8)]
    for _ in range(num_frames - 1):
        new_image, new_mask = augmenter(image, mask)
        frames.append(new_image)
        masks.append(new_mask)
    order = list(range(num_frames))
    if shuffle and num_frames > 1:  # no draw for a single frame
        order = torch.randperm(num_frames).tolist()
    return np.stack([frames[i] for i in order]), np.stack([masks[i] for i in order]), order
