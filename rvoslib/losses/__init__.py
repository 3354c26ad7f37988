"""Training losses: segmentation terms (BCE, Dice, focal) and their weighted sum ``RVOSLoss``."""

from rvoslib.losses.segmentation import (
    LossTerms,
    RVOSLoss,
    bce_loss,
    dice_loss,
    sigmoid_focal_loss,
)

__all__ = ["LossTerms", "RVOSLoss", "bce_loss", "dice_loss", "sigmoid_focal_loss"]
