"""The clips and the input size of whole-video inference (used by :mod:`rvoslib.inference` and
:mod:`rvoslib.vos_inference`, which re-export them)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["clip_windows", "model_input_size"]


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
