"""Segmentation heads: from fused features to mask logits at the frame size (``HEADS``)."""

from rvoslib.models.heads.dynamic import DynamicMaskHead, DynamicMaskKernels
from rvoslib.models.heads.fpn import MultiScaleSegmentationHead
from rvoslib.models.heads.mask_heads import KernelMaskHead
from rvoslib.models.heads.pixel_decoders import TextFPNPixelDecoder
from rvoslib.models.heads.simple import SegmentationHead

__all__ = [
    "DynamicMaskHead",
    "DynamicMaskKernels",
    "KernelMaskHead",
    "MultiScaleSegmentationHead",
    "SegmentationHead",
    "TextFPNPixelDecoder",
]
