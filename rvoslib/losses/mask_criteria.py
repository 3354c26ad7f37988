"""Criteria of models that predict one mask per frame (registered in
:data:`~rvoslib.losses.registry.CRITERIA`).

* ``"mask"`` (:class:`MaskCriterion`): weighted BCE, Dice and focal terms of the referred
  object's logits (the terms of :class:`~rvoslib.losses.RVOSLoss`), every valid frame;
* ``"first_frame_mask"`` (:class:`FirstFrameMaskCriterion`): BCE (and Dice, if weighted) over
  frames ``1..T-1`` of a VOS model, frame 0 being the given mask.

A criterion is called as ``criterion(outputs, batch) -> dict[str, Tensor]``, the weighted, named
terms; ``outputs["logits"]`` is ``(B, T, 1, H, W)`` and the batch holds ``masks (B, T, H, W)``
and optionally ``valid (B, T)`` and ``void (B, T, H, W)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from rvoslib._checks import format_shape, is_compiling
from rvoslib.losses.registry import CRITERIA
from rvoslib.losses.segmentation import RVOSLoss, bce_loss, dice_loss

__all__ = ["FirstFrameMaskCriterion", "MaskCriterion"]


def _require(batch: Mapping[str, Any], key: str, criterion: str) -> Any:
    if key not in batch:
        raise KeyError(
            f"criterion {criterion!r} needs batch[{key!r}] (B, T, H, W) ground-truth masks; "
            f"got keys {sorted(batch)}"
        )
    return batch[key]


@CRITERIA.register("mask", description="Weighted BCE + Dice + focal of the referred mask.")
class MaskCriterion(nn.Module):
    """Weighted BCE, Dice and focal terms of ``outputs["logits"] (B, T, 1, H, W)`` against
    ``batch["masks"] (B, T, H, W)`` (``valid (B, T)`` frames and ``void`` pixels respected; the
    masks are resized to the logits' size). Defaults: the course-project design's weights.

    Args:
        bce_weight: Weight of the binary cross-entropy.
        dice_weight: Weight of the Dice loss.
        focal_weight: Weight of the sigmoid focal loss.
        focal_gamma: Focal focusing exponent.
        focal_alpha: Focal positive-class weight.
        void_label: Mask value excluded from the terms (``None``: none).

    Example:
        >>> criterion = MaskCriterion(bce_weight=1.0, dice_weight=0.0, focal_weight=0.0)
        >>> outputs = {"logits": torch.zeros(1, 2, 1, 4, 4)}
        >>> terms = criterion(outputs, {"masks": torch.ones(1, 2, 4, 4)})
        >>> sorted(terms), round(terms["bce"].item(), 4)
        (['bce', 'dice', 'focal'], 0.6931)
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
        self.loss = RVOSLoss(
            bce_weight, dice_weight, focal_weight, focal_gamma, focal_alpha, void_label
        )

    def forward(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]
    ) -> dict[str, torch.Tensor]:
        """``{"bce", "dice", "focal"}``: weighted float32 scalars.

        Raises:
            KeyError: the batch has no ``masks``.
        """
        masks = _require(batch, "masks", "mask")
        loss = self.loss
        terms = loss.terms(
            outputs["logits"], masks, batch.get("valid"), batch.get("void"), check_inputs=False
        )
        return {
            "bce": loss.bce_weight * terms.bce,
            "dice": loss.dice_weight * terms.dice,
            "focal": loss.focal_weight * terms.focal,
        }


@CRITERIA.register(
    "first_frame_mask", description="BCE (+ Dice) over frames 1..T-1 of a VOS model."
)
class FirstFrameMaskCriterion(nn.Module):
    """BCE-with-logits (and Dice, if weighted) over frames ``1..T-1`` where ``valid``.

    Frame 0 holds the given mask, not a prediction, and is left out. BCE is the mean over the
    counted pixels (so the learning rate does not depend on the clip length); ``void (B, T, H,
    W)`` pixels, when the batch has them, are excluded.

    Args:
        bce_weight: Weight of the BCE term.
        dice_weight: Weight of the Dice term (``0``: no ``"dice"`` term).

    Example:
        >>> criterion = FirstFrameMaskCriterion(dice_weight=0.5)
        >>> outputs = {"logits": torch.zeros(1, 3, 1, 4, 4)}
        >>> sorted(criterion(outputs, {"masks": torch.ones(1, 3, 4, 4)}))
        ['bce', 'dice']
    """

    def __init__(self, bce_weight: float = 1.0, dice_weight: float = 0.0) -> None:
        super().__init__()
        self.bce_weight = float(bce_weight)
        self.dice_weight = float(dice_weight)

    def forward(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]
    ) -> dict[str, torch.Tensor]:
        """``{"bce"}`` (plus ``"dice"`` when ``dice_weight > 0``): weighted float32 scalars.

        Raises:
            KeyError: the batch has no ``masks``.
            ValueError: ``masks`` does not match the logits (both shapes named).
        """
        all_masks = _require(batch, "masks", "first_frame_mask")
        logits, masks = outputs["logits"][:, 1:, 0], all_masks[:, 1:]
        if not is_compiling() and logits.shape != masks.shape:
            shape = outputs["logits"].shape
            raise ValueError(
                f"batch['masks'] must be (B, T, H, W) = {format_shape(shape[:2] + shape[-2:])} "
                f"to match the logits, got {format_shape(all_masks.shape)}"
            )
        weight = torch.ones_like(masks, dtype=torch.float32)
        valid = batch.get("valid")
        if valid is not None:
            weight = weight * valid[:, 1:, None, None].to(torch.float32)
        void = batch.get("void")
        if void is not None:
            weight = weight * (1 - void[:, 1:].to(torch.float32))
        terms = {"bce": self.bce_weight * bce_loss(logits, masks, weight)}
        if self.dice_weight > 0:
            terms["dice"] = self.dice_weight * dice_loss(logits, masks, weight)
        return terms
