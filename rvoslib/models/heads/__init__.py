"""Segmentation heads: from fused features to mask logits at the frame size (``HEADS``)."""

from rvoslib.models.heads.condinst import (
    CondInstMaskHead,
    CrossModalFPNDecoder,
    VisionLanguageBlock,
    relative_coordinates,
)
from rvoslib.models.heads.dynamic import DynamicMaskHead, DynamicMaskKernels
from rvoslib.models.heads.fpn import MultiScaleSegmentationHead
from rvoslib.models.heads.mask_heads import KernelMaskHead
from rvoslib.models.heads.pixel_decoders import TextFPNPixelDecoder
from rvoslib.models.heads.simple import SegmentationHead

__all__ = [
    "CondInstMaskHead",
    "CrossModalFPNDecoder",
    "DynamicMaskHead",
    "DynamicMaskKernels",
    "KernelMaskHead",
    "MultiScaleSegmentationHead",
    "SegmentationHead",
    "TextFPNPixelDecoder",
    "VisionLanguageBlock",
    "relative_coordinates",
]
