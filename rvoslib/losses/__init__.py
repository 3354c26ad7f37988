"""Training losses: segmentation terms (BCE, Dice, focal) and their weighted sum ``RVOSLoss``."""

from rvoslib.losses.boxes import (
    box_cxcywh_to_xyxy,
    box_xyxy_to_cxcywh,
    elementwise_generalized_box_iou,
    generalized_box_iou,
    masks_to_boxes,
)
from rvoslib.losses.contrastive import (
    VideoTextContrastiveLoss,
    mean_token_features,
    video_text_contrastive_loss,
)
from rvoslib.losses.long_short import (
    LongShortIntersectionLoss,
    long_short_intersection_loss,
    long_short_intersection_ratio,
    long_short_match_cost,
)
from rvoslib.losses.matching import (
    HungarianMatcher,
    hungarian_assignment,
    match_cost_matrix,
    prepare_targets,
    referred_query_index,
)
from rvoslib.losses.segmentation import (
    LossTerms,
    RVOSLoss,
    bce_loss,
    dice_loss,
    sigmoid_focal_loss,
)
from rvoslib.losses.set_criterion import LOSS_KEYS, SetCriterion, gather_matched

__all__ = [
    "LOSS_KEYS",
    "HungarianMatcher",
    "LongShortIntersectionLoss",
    "LossTerms",
    "RVOSLoss",
    "SetCriterion",
    "VideoTextContrastiveLoss",
    "bce_loss",
    "box_cxcywh_to_xyxy",
    "box_xyxy_to_cxcywh",
    "dice_loss",
    "elementwise_generalized_box_iou",
    "gather_matched",
    "generalized_box_iou",
    "hungarian_assignment",
    "long_short_intersection_loss",
    "long_short_intersection_ratio",
    "long_short_match_cost",
    "masks_to_boxes",
    "match_cost_matrix",
    "mean_token_features",
    "prepare_targets",
    "referred_query_index",
    "sigmoid_focal_loss",
    "video_text_contrastive_loss",
]
