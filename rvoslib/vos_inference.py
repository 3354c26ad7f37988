"""Semi-supervised inference: segment the objects of a first-frame mask in a whole video.

The first frame's objects come from an indexed (palette) PNG, pixel = object id, as DAVIS and
YouTube-VOS give them. Each object is segmented on its own by a VOS model
(:meth:`VOSModel.predict` with ``first_mask``); the objects are merged into one id map per
frame by score (each pixel takes the object with the highest probability, or the background
when no probability reaches the threshold), which is what the official evaluations read.

A binary mask whose object pixels are 255 (a greyscale 0/255 PNG, as DAVIS-style binary
masks are stored) is read as object 1, with a ``UserWarning`` saying so.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rvoslib.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from rvoslib.inference import model_input_size
from rvoslib.video_io import VideoSource, read_video

__all__ = ["binary_mask_ids", "merge_objects", "read_first_mask", "segment_from_first_mask"]


def binary_mask_ids(ids: np.ndarray, source: str) -> np.ndarray:
    """``ids``, or object 1 where a mask holds only the values 0 and 255 (a binary mask).

    Args:
        ids: ``(H, W)`` object ids.
        source: What the mask is, for the warning (e.g. its path).

    Returns:
        ``(H, W)`` uint8 object ids.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     binary_mask_ids(np.array([[0, 255]], dtype=np.uint8), "mask").tolist()
        [[0, 1]]
    """
    values = np.unique(ids)
    if values.tolist() != [0, 255]:
        return ids
    warnings.warn(
        f"{source} holds only the values 0 and 255: read as a binary mask, its 255 pixels as "
        "object 1 (as DAVIS-style binary masks); give an indexed PNG with ids 1, 2, ... for "
        "several objects",
        UserWarning,
        stacklevel=3,
    )
    return (np.asarray(ids) == 255).astype(np.uint8)


def read_first_mask(path: str | os.PathLike) -> np.ndarray:
    """The ``(H, W)`` uint8 object ids of an indexed PNG (0 = background); a 0/255 mask is
    read as object 1 with a warning (:func:`binary_mask_ids`).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it holds no object (every pixel 0).
    """
    from rvoslib.data.io import read_mask

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"first-frame mask {str(path)!r} not found")
    ids = binary_mask_ids(
        np.asarray(read_mask(path), dtype=np.uint8), f"first-frame mask {str(path)!r}"
    )
    if not ids.any():
        raise ValueError(
            f"first-frame mask {str(path)!r} holds no object (every pixel is 0): give an indexed "
            "PNG whose pixels are object ids"
        )
    return ids


def merge_objects(
    probabilities: torch.Tensor, object_ids: list[int], threshold: float = 0.5
) -> torch.Tensor:
    """Merge per-object probabilities into id maps.

    Args:
        probabilities: ``(K, T, H, W)`` probabilities of ``K`` objects.
        object_ids: The id of each object.
        threshold: A pixel is background when no object's probability reaches it.

    Returns:
        ``(T, H, W)`` uint8 object ids (0 = background).

    Example:
        >>> probabilities = torch.tensor([[[[0.9, 0.2]]], [[[0.6, 0.3]]]])  # (2, 1, 1, 2)
        >>> merge_objects(probabilities, [3, 5]).tolist()
        [[[3, 0]]]
    """
    best, index = probabilities.max(0)
    ids = torch.tensor(object_ids, dtype=torch.uint8)[index.cpu()]
    return torch.where(best.cpu() >= threshold, ids, torch.zeros_like(ids))


@torch.inference_mode()
def segment_from_first_mask(
    model: torch.nn.Module,
    video: str | os.PathLike | torch.Tensor | VideoSource,
    first_mask: np.ndarray | str | os.PathLike,
    *,
    size: int | None = 360,
    device: str | torch.device = "cpu",
    clip_len: int | None = None,
    threshold: float = 0.5,
    on_corrupt: str = "error",
) -> torch.Tensor:
    """Segment every object of ``first_mask`` in every frame of ``video``.

    Args:
        model: A :class:`~rvoslib.models.VOSModel` (``model.inputs.kind == "first_mask"``),
            e.g. ``s2s-vgg16``.
        video: Frames (folder, video file, source or tensor; see
            :func:`rvoslib.video_io.open_video`).
        first_mask: ``(H, W)`` object ids of the first frame, or the path of an indexed PNG
            (a 0/255 mask is object 1, with a warning).
        size: Shorter side the frames are resized to before the model (``None``: as they are).
        device: Where the model runs.
        clip_len: Frames per forward pass (``None``: all; VOS models carry their state).
        threshold: Background below this probability.
        on_corrupt: A truncated or corrupt frame in a frame folder: ``"error"`` (raise, naming
            it) or ``"skip"`` (leave it out with a warning naming it).

    Returns:
        ``(T, H, W)`` uint8 object ids at the original size.

    Raises:
        TypeError: the model is not a VOS model.
        ValueError: the mask's size differs from the frames' (both named), or it is empty.
    """
    kind = getattr(getattr(model, "inputs", None), "kind", None)
    if kind != "first_mask":
        raise TypeError(
            f"segment_from_first_mask needs a VOS model, one that takes the first frame's mask "
            f"(model.inputs.kind 'first_mask'); {type(model).__name__} takes {kind!r}: a "
            "referring model takes text (VideoPredictor, rvos predict --text)"
        )
    if isinstance(first_mask, np.ndarray):
        ids = binary_mask_ids(first_mask, "the first-frame mask")
    else:
        ids = read_first_mask(first_mask)
    frames = read_video(video, on_corrupt=on_corrupt)  # (T, 3, H, W) uint8
    height, width = frames.shape[-2:]
    if tuple(ids.shape) != (height, width):
        raise ValueError(
            f"the first-frame mask is {ids.shape[1]}x{ids.shape[0]} (W x H) but the frames are "
            f"{width}x{height}: give the mask of the video's first frame at its size"
        )
    object_ids = [int(v) for v in np.unique(ids) if v != 0]
    if not object_ids:
        raise ValueError("the first-frame mask holds no object (every pixel is 0)")
    device = torch.device(device)
    model = model.to(device).eval()
    input_size = model_input_size(height, width, size)
    pixels = frames.to(device).float().div_(255.0)
    pixels = F.interpolate(pixels, size=input_size, mode="bilinear", antialias=True)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    clip = ((pixels - mean) / std)[None]  # (1, T, 3, h, w)
    masks = torch.from_numpy(ids).to(device)
    probabilities = []
    for object_id in object_ids:
        first = (masks == object_id).float()[None, None]
        first = F.interpolate(first, size=input_size, mode="nearest")[0]  # (1, h, w)
        logits = model.predict({"frames": clip, "first_mask": first}, clip_len)[0, :, 0]
        probabilities.append(
            F.interpolate(logits[None], size=(height, width), mode="bilinear")[0].sigmoid()
        )
    return merge_objects(torch.stack(probabilities), object_ids, threshold)
