"""LoSh's long-short intersection loss: the short-text mask should cover the long-text mask.

LoSh (CVPR 2024) predicts a mask from the long expression and one from its short (subject-only)
version with shared weights. With ``p = sigmoid(logits)`` and ``q = p * [p > 0.5]`` (the
confident part of each soft mask), the ratio of one mask pair is
``(sum(q_long * q_short) + 1) / (sum(q_long) + 1)`` (LoSh's ``conditioned_iou``): near 1 when
the short mask contains the long one. The loss is ``1 - mean(ratio)`` (weight 0.8 in LoSh) and
the matcher adds ``-0.8 x`` the ratio averaged over time (:func:`long_short_match_cost`). LoSh
upsamples the mask logits to the target size (bilinear) before thresholding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rvoslib._checks import check_tensor, format_shape, is_compiling

__all__ = [
    "LongShortIntersectionLoss",
    "long_short_intersection_loss",
    "long_short_intersection_ratio",
    "long_short_match_cost",
]


def _check_pair(long_logits: torch.Tensor, short_logits: torch.Tensor) -> None:
    for name, value in (("long_logits", long_logits), ("short_logits", short_logits)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(
                f"{name} must be a torch.Tensor of shape (..., H, W), got {type(value).__name__}"
            )
        if not value.is_floating_point():
            raise TypeError(f"{name} must have a floating dtype, got {value.dtype}")
    if long_logits.ndim < 2:
        raise ValueError(f"long_logits must be (..., H, W), got {format_shape(long_logits.shape)}")
    if short_logits.shape != long_logits.shape:
        raise ValueError(
            f"short_logits must have the shape of long_logits {format_shape(long_logits.shape)}, "
            f"got {format_shape(short_logits.shape)}"
        )


def long_short_intersection_ratio(
    long_logits: torch.Tensor, short_logits: torch.Tensor
) -> torch.Tensor:
    """Per-mask ratio ``(sum(qL qS) + 1) / (sum(qL) + 1)``, ``q = p * [p > 0.5]``, in float32.

    Args:
        long_logits: ``(..., H, W)`` mask logits from the long expression.
        short_logits: ``(..., H, W)`` mask logits from the short expression.

    Returns:
        ``(...)`` float32 ratios in ``(0, 1]``.

    Example:
        >>> big = torch.full((1, 2, 2), 5.0)
        >>> ratio = long_short_intersection_ratio(big, -big)  # nothing of the short mask
        >>> [round(value, 4) for value in ratio.tolist()]  # 1 / (4 sigmoid(5) + 1)
        [0.2011]
    """
    if not is_compiling():
        _check_pair(long_logits, short_logits)
    with torch.autocast(device_type=long_logits.device.type, enabled=False):
        p_long, p_short = torch.sigmoid(long_logits.float()), torch.sigmoid(short_logits.float())
        q_long = p_long * (p_long > 0.5)
        q_short = p_short * (p_short > 0.5)
        inter = (q_long * q_short).sum((-2, -1))
        return (inter + 1) / (q_long.sum((-2, -1)) + 1)


def long_short_intersection_loss(
    long_logits: torch.Tensor, short_logits: torch.Tensor
) -> torch.Tensor:
    """``1 - mean(ratio)`` over the masks (LoSh's ``loss_conditioned_iou``).

    Args:
        long_logits: ``(N, H, W)`` (or ``(..., H, W)``) mask logits of the matched queries,
            long expression.
        short_logits: Same shape, short expression.

    Returns:
        Scalar float32 in ``[0, 1)``.

    Example:
        >>> logits = torch.randn(3, 8, 8)
        >>> long_short_intersection_loss(logits, logits).item() < 0.5
        True
    """
    return 1 - long_short_intersection_ratio(long_logits, short_logits).mean()


def long_short_match_cost(
    long_masks: torch.Tensor,
    short_masks: torch.Tensor,
    frame_valid: torch.Tensor | None = None,
    weight: float = 0.8,
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """LoSh's matching term ``-weight x`` the ratio averaged over the valid frames, per query.

    The same for every target: returned with a target axis of size 1, ready to pass as
    ``extra_cost`` to :class:`~rvoslib.losses.matching.HungarianMatcher`.

    Args:
        long_masks: ``(..., B, T, N, h, w)`` mask logits (e.g. ``(Ly, B, T, N, h, w)``).
        short_masks: Same shape, short expression.
        frame_valid: ``(B, T)`` bool, frames to average over; all if ``None``.
        weight: The cost weight (LoSh: 0.8).
        size: Upsample (bilinear) to this ``(H, W)`` before thresholding, as LoSh; or ``None``.

    Returns:
        ``(..., B, N, 1)`` float32, no gradient.

    Example:
        >>> masks = torch.randn(3, 2, 4, 5, 8, 8)  # (Ly, B, T, N, h, w)
        >>> long_short_match_cost(masks, masks, size=(16, 16)).shape
        torch.Size([3, 2, 5, 1])
    """
    if not is_compiling():
        _check_pair(long_masks, short_masks)
        if long_masks.ndim < 5:
            raise ValueError(
                f"long_masks must be (..., B, T, N, h, w), got {format_shape(long_masks.shape)}"
            )
        if frame_valid is not None:
            check_tensor(frame_valid, "frame_valid", tuple(long_masks.shape[-5:-3]), floating=False)
    with torch.no_grad():
        if size is not None:
            long_masks, short_masks = _resize(long_masks, size), _resize(short_masks, size)
        ratio = long_short_intersection_ratio(long_masks, short_masks)  # (..., B, T, N)
        if frame_valid is None:
            mean = ratio.mean(-2)
        else:
            valid = frame_valid.float()[..., None]  # (B, T, 1)
            mean = (ratio * valid).sum(-2) / valid.sum(-2).clamp_min(1.0)
        return (-weight * mean)[..., None]


def _resize(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    flat = F.interpolate(masks.float().flatten(0, -3)[:, None], size=tuple(size), mode="bilinear")
    return flat[:, 0].view(*masks.shape[:-2], *size)


class LongShortIntersectionLoss(nn.Module):
    """Module form of :func:`long_short_intersection_loss`.

    Example:
        >>> criterion = LongShortIntersectionLoss()
        >>> criterion(torch.full((2, 4, 4), -9.0), torch.randn(2, 4, 4)).item()  # long empty
        0.0
    """

    def forward(self, long_logits: torch.Tensor, short_logits: torch.Tensor) -> torch.Tensor:
        """See :func:`long_short_intersection_loss`."""
        return long_short_intersection_loss(long_logits, short_logits)
