"""A cheap training-time metric: mean per-frame IoU of a batch, on the device."""

from __future__ import annotations

import torch

__all__ = ["batch_iou"]


def batch_iou(
    logits: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean per-frame IoU of thresholded logits (> 0) against masks; an empty union counts as 1.

    Args:
        logits: ``(B, T, 1, H, W)`` or ``(B, T, H, W)``.
        masks: ``(B, T, H', W')``; resized (nearest) to the logits' size when they differ.
        valid: ``(B, T)`` bool frames to count.

    Returns:
        Scalar tensor on the logits' device (no host sync).

    Example:
        >>> logits = torch.tensor([[[[1.0, -1.0]]]])  # (1, 1, 1, 2)
        >>> batch_iou(logits, torch.tensor([[[[1.0, 1.0]]]])).item()
        0.5
    """
    if logits.ndim == 5:
        logits = logits.squeeze(2)
    if masks.shape[-2:] != logits.shape[-2:]:
        masks = torch.nn.functional.interpolate(masks.float(), size=logits.shape[-2:])
    pred, target = logits > 0, masks > 0.5
    intersection = (pred & target).flatten(2).sum(-1).float()
    union = (pred | target).flatten(2).sum(-1).float()
    iou = torch.where(union > 0, intersection / union.clamp_min(1), torch.ones_like(union))
    if valid is None:
        return iou.mean()
    weight = valid.float()
    return (iou * weight).sum() / weight.sum().clamp_min(1)
