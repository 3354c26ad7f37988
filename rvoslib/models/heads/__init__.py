"""Segmentation heads: from fused features to mask logits at the frame size (``HEADS``)."""

from rvoslib.models.heads.dynamic import DynamicMaskHead, DynamicMaskKernels
from rvoslib.models.heads.fpn import MultiScaleSegmentationHead
from rvoslib.models.heads.simple import SegmentationHead

__all__ = [
    "DynamicMaskHead",
    "DynamicMaskKernels",
    "MultiScaleSegmentationHead",
    "SegmentationHead",
]
