"""Model parts and the composed :class:`RVOSModel`."""

from rvoslib.models.backbone import TinyConvNet, VisualBackbone, freeze_batchnorm, temporal_shift
from rvoslib.models.fusion import CrossModalFusion, MultiHeadCrossAttention, sine_positions
from rvoslib.models.head import (
    DynamicMaskKernels,
    MultiScaleSegmentationHead,
    SegmentationHead,
    TopDownNeck,
)
from rvoslib.models.presets import create_model, get_preset_config, list_presets, register_preset
from rvoslib.models.rvos import RVOSConfig, RVOSModel
from rvoslib.models.temporal import TemporalModule
from rvoslib.models.text import HashTokenizer, TextEncoder, TextFeatures

__all__ = [
    "CrossModalFusion",
    "DynamicMaskKernels",
    "HashTokenizer",
    "MultiHeadCrossAttention",
    "MultiScaleSegmentationHead",
    "RVOSConfig",
    "RVOSModel",
    "SegmentationHead",
    "TemporalModule",
    "TextEncoder",
    "TextFeatures",
    "TinyConvNet",
    "TopDownNeck",
    "VisualBackbone",
    "create_model",
    "freeze_batchnorm",
    "get_preset_config",
    "list_presets",
    "register_preset",
    "sine_positions",
    "temporal_shift",
]
