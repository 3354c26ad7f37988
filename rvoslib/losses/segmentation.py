"""Segmentation losses: BCE, Dice and sigmoid focal loss, and their weighted sum ``RVOSLoss``.

Every function takes logits and binary targets of the same shape ``(..., H, W)`` plus an
optional ``weight`` of that shape (1 where a pixel counts, 0 for void pixels and invalid
frames), and computes in float32 even under autocast.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from rvoslib._checks import format_shape, is_compiling

__all__ = ["LossTerms", "RVOSLoss", "bce_loss", "dice_loss", "sigmoid_focal_loss"]


def _weighted_mean(values: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    if weight is None:
        return values.mean()
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


def bce_loss(
    logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Binary cross-entropy with logits, averaged over the pixels with nonzero ``weight``.

    Args:
        logits: ``(..., H, W)`` raw scores.
        targets: ``(..., H, W)`` in ``[0, 1]``.
        weight: ``(..., H, W)`` per-pixel weights (0 excludes a pixel), or ``None``.

    Returns:
        Scalar float32 loss.
    """
    logits, targets = logits.float(), targets.float()
    values = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return _weighted_mean(values, weight)


def sigmoid_focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    weight: torch.Tensor | None = None,
    gamma: float = 2.0,
    alpha: float = 0.25,
) -> torch.Tensor:
    """Focal loss (Lin et al. 2017), the mean of ``torchvision.ops.sigmoid_focal_loss``.

    ``FL = -alpha_t (1 - p_t)^gamma log(p_t)``; ``alpha < 0`` disables the class balancing.

    Args:
        logits: ``(..., H, W)`` raw scores.
        targets: ``(..., H, W)`` in ``[0, 1]``.
        weight: ``(..., H, W)`` per-pixel weights, or ``None``.
        gamma: Focusing exponent.
        alpha: Weight of the positive class.

    Returns:
        Scalar float32 loss (mean over counted pixels).
    """
    logits, targets = logits.float(), targets.float()
    probs = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = probs * targets + (1 - probs) * (1 - targets)
    values = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        values = (alpha * targets + (1 - alpha) * (1 - targets)) * values
    return _weighted_mean(values, weight)


def dice_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    weight: torch.Tensor | None = None,
    smooth: float = 1.0,
) -> torch.Tensor:
    """Soft Dice loss per mask (the last two dimensions), averaged over masks.

    ``1 - (2 sum(p g) + smooth) / (sum(p) + sum(g) + smooth)`` with ``p = sigmoid(logits)``.
    Masks whose weight is zero everywhere (invalid frames) are left out of the average.

    Args:
        logits: ``(..., H, W)`` raw scores.
        targets: ``(..., H, W)`` in ``[0, 1]``.
        weight: ``(..., H, W)`` per-pixel weights, or ``None``.
        smooth: Additive smoothing; makes an empty prediction of an empty mask a zero loss.

    Returns:
        Scalar float32 loss in ``[0, 1]``.
    """
    probs, targets = torch.sigmoid(logits.float()), targets.float()
    if weight is not None:
        probs, targets = probs * weight, targets * weight
    intersection = (probs * targets).sum((-2, -1))
    total = probs.sum((-2, -1)) + targets.sum((-2, -1))
    per_mask = 1 - (2 * intersection + smooth) / (total + smooth)
    if weight is None:
        return per_mask.mean()
    counted = (weight.flatten(-2).sum(-1) > 0).to(per_mask.dtype)
    return (per_mask * counted).sum() / counted.sum().clamp_min(1.0)


class LossTerms(NamedTuple):
    """The weighted total and the unweighted terms of :class:`RVOSLoss`."""

    total: torch.Tensor
    bce: torch.Tensor
    dice: torch.Tensor
    focal: torch.Tensor


class RVOSLoss(nn.Module):
    """``bce_weight * BCE + dice_weight * Dice + focal_weight * Focal`` on mask logits.

    Ground-truth masks may have any dtype: nonzero = object, except the void label (255 by
    default, as in DAVIS annotations), which is excluded like ``void`` pixels; so 0/1, 0/255 and
    object-id masks all work. Masks are resized (nearest) to the logits' size. Frames where
    ``valid`` is false and pixels where ``void`` is true are excluded from every term.

    Args:
        bce_weight: Weight of the binary cross-entropy.
        dice_weight: Weight of the Dice loss.
        focal_weight: Weight of the focal loss.
        focal_gamma: Focal focusing exponent.
        focal_alpha: Focal positive-class weight.
        void_label: Mask value excluded from the loss (``None``: none).

    Example:
        >>> criterion = RVOSLoss()
        >>> logits = torch.zeros(2, 3, 1, 8, 8)
        >>> masks = torch.ones(2, 3, 16, 16)
        >>> round(criterion(logits, masks).item(), 4)
        0.4102
        >>> criterion.terms(logits, masks).dice.item() > 0
        True
    """

    def __init__(
        self,
        bce_weight: float = 0.3,
        dice_weight: float = 0.6,
        focal_weight: float = 0.1,
        focal_gamma: float = 2.0,
        focal_alpha: float = 0.25,
        void_label: int | None = 255,
    ) -> None:
        super().__init__()
        self.void_label = void_label
        self.bce_weight, self.dice_weight, self.focal_weight = bce_weight, dice_weight, focal_weight
        self.focal_gamma, self.focal_alpha = focal_gamma, focal_alpha

    def terms(
        self,
        logits: torch.Tensor,
        masks: torch.Tensor,
        valid: torch.Tensor | None = None,
        void: torch.Tensor | None = None,
        *,
        check_inputs: bool = True,
    ) -> LossTerms:
        """Compute the total loss and its three (unweighted) terms.

        Args:
            logits: ``(B, T, 1, H, W)`` or ``(B, T, H, W)``.
            masks: ``(B, T, H', W')`` ground truth (any dtype; nonzero = object, the void
                label excluded).
            valid: ``(B, T)`` bool, frames with ground truth; all if ``None``.
            void: ``(B, T, H', W')`` bool, pixels to ignore; none if ``None``.
            check_inputs: Check shapes, dtypes and finite values (one host sync). A model's
                training loss passes ``False``: the Trainer skips non-finite steps itself.

        Returns:
            :class:`LossTerms` of scalar float32 tensors.

        Raises:
            ValueError: a bad shape, or NaN/inf in ``logits`` or ``masks`` (named).
        """
        if logits.ndim == 5:
            if not is_compiling() and logits.shape[2] != 1:
                raise ValueError(
                    "logits must be (B, T, 1, H, W) or (B, T, H, W), "
                    f"got {format_shape(logits.shape)}"
                )
            logits = logits.squeeze(2)
        if check_inputs and not is_compiling():
            _check_inputs(logits, masks, valid, void)
            for name, value in (("logits", logits), ("masks", masks)):
                if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                    raise ValueError(f"{name} contain NaN or infinite values")
            label = self.void_label
            if label is not None and bool((masks == label).any()):
                others = (masks != 0) & (masks != label)
                if not bool(others.any()):
                    raise ValueError(
                        f"masks hold only 0 and {label}, the void label: every object pixel "
                        f"would be ignored. Binarise 0/{label} masks first (masks > 0) or build "
                        "RVOSLoss(void_label=None)"
                    )
        if self.void_label is not None:
            labelled_void = masks == self.void_label
            void = labelled_void if void is None else (void.bool() | labelled_void)
            masks = torch.where(labelled_void, torch.zeros_like(masks), masks)
        size = logits.shape[-2:]
        targets = _resize_nearest((masks != 0).float(), size)
        weight = None
        if valid is not None or void is not None:
            weight = torch.ones_like(targets)
            if valid is not None:
                weight = weight * valid.to(weight.dtype)[..., None, None]
            if void is not None:
                weight = weight * (1 - _resize_nearest(void.float(), size))
        with torch.autocast(device_type=logits.device.type, enabled=False):
            bce = bce_loss(logits, targets, weight)
            dice = dice_loss(logits, targets, weight)
            focal = sigmoid_focal_loss(logits, targets, weight, self.focal_gamma, self.focal_alpha)
            total = self.bce_weight * bce + self.dice_weight * dice + self.focal_weight * focal
        return LossTerms(total, bce, dice, focal)

    def forward(
        self,
        logits: torch.Tensor,
        masks: torch.Tensor,
        valid: torch.Tensor | None = None,
        void: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The weighted total loss (see :meth:`terms` for the arguments; inputs checked)."""
        return self.terms(logits, masks, valid, void).total


def _resize_nearest(masks: torch.Tensor, size: torch.Size) -> torch.Tensor:
    if masks.shape[-2:] == size:
        return masks
    return F.interpolate(masks.flatten(0, -3).unsqueeze(1), size=tuple(size), mode="nearest")[
        :, 0
    ].view(*masks.shape[:-2], *size)


def _check_inputs(
    logits: torch.Tensor,
    masks: torch.Tensor,
    valid: torch.Tensor | None,
    void: torch.Tensor | None,
) -> None:
    if not isinstance(logits, torch.Tensor) or logits.ndim != 4:
        shape = format_shape(logits.shape) if isinstance(logits, torch.Tensor) else type(logits)
        raise ValueError(f"logits must be (B, T, 1, H, W) or (B, T, H, W), got {shape}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must have a floating dtype, got {logits.dtype}")
    if (
        not isinstance(masks, torch.Tensor)
        or masks.ndim != 4
        or masks.shape[:2] != logits.shape[:2]
    ):
        shape = format_shape(masks.shape) if isinstance(masks, torch.Tensor) else type(masks)
        raise ValueError(
            f"masks must be (B, T, H', W') with B, T = {tuple(logits.shape[:2])} of logits "
            f"{format_shape(logits.shape)}, got {shape}"
        )
    if valid is not None and tuple(valid.shape) != tuple(logits.shape[:2]):
        raise ValueError(
            f"valid must be (B, T) = {tuple(logits.shape[:2])}, got {format_shape(valid.shape)}"
        )
    if void is not None and void.shape != masks.shape:
        raise ValueError(
            f"void must have the shape of masks {format_shape(masks.shape)}, "
            f"got {format_shape(void.shape)}"
        )
