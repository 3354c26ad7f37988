"""Training losses and the registered criteria (``CRITERIA``) models build from their
``criterion`` spec: segmentation terms (BCE, Dice, focal), the set criterion of query models with
its Hungarian matcher, SOC's contrastive and LoSh's long-short and flow-consistency terms."""

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
from rvoslib.losses.conventions import CONVENTIONS, SetConventions, resolve_conventions
from rvoslib.losses.criteria import QuerySetCriterion, SOCCriterion, query_targets
from rvoslib.losses.flow import (
    FlowConsistencyLoss,
    flow_consistency_loss,
    forward_backward_occlusion,
    referred_flow_loss,
    warp,
)
from rvoslib.losses.long_short import (
    LongShortIntersectionLoss,
    long_short_intersection_loss,
    long_short_intersection_ratio,
    long_short_match_cost,
)
from rvoslib.losses.losh_criterion import LoShCriterion
from rvoslib.losses.mask_criteria import FirstFrameMaskCriterion, MaskCriterion
from rvoslib.losses.matching import (
    MATCHER_WEIGHTS,
    HungarianMatcher,
    hungarian_assignment,
    match_cost_matrix,
    prepare_targets,
    referred_query_index,
)
from rvoslib.losses.registry import CRITERIA, FLOW_ESTIMATORS
from rvoslib.losses.segmentation import (
    LossTerms,
    RVOSLoss,
    bce_loss,
    dice_loss,
    sigmoid_focal_loss,
)
from rvoslib.losses.set_criterion import LOSS_KEYS, SetCriterion, gather_matched

__all__ = [
    "CONVENTIONS",
    "CRITERIA",
    "FLOW_ESTIMATORS",
    "LOSS_KEYS",
    "MATCHER_WEIGHTS",
    "FirstFrameMaskCriterion",
    "FlowConsistencyLoss",
    "HungarianMatcher",
    "LoShCriterion",
    "LongShortIntersectionLoss",
    "LossTerms",
    "MaskCriterion",
    "QuerySetCriterion",
    "RVOSLoss",
    "SOCCriterion",
    "SetConventions",
    "SetCriterion",
    "VideoTextContrastiveLoss",
    "bce_loss",
    "box_cxcywh_to_xyxy",
    "box_xyxy_to_cxcywh",
    "dice_loss",
    "elementwise_generalized_box_iou",
    "flow_consistency_loss",
    "forward_backward_occlusion",
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
    "query_targets",
    "referred_flow_loss",
    "referred_query_index",
    "resolve_conventions",
    "sigmoid_focal_loss",
    "video_text_contrastive_loss",
    "warp",
]
