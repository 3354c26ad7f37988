"""Transformer parts shared by the query-based architectures (ReferFormer, SOC)."""

from rvoslib.models.transformer.deformable_attention import (
    MultiScaleDeformableAttention,
    as_spatial_shapes,
    multi_scale_deformable_attention,
)
from rvoslib.models.transformer.deformable_transformer import (
    DecoderOutput,
    DeformableDecoder,
    DeformableDecoderLayer,
    DeformableEncoder,
    DeformableEncoderLayer,
)
from rvoslib.models.transformer.levels import (
    encoder_reference_points,
    flatten_levels,
    inverse_sigmoid,
    split_levels,
    valid_ratios,
)
from rvoslib.models.transformer.long_short_attention import LongShortCrossAttention
from rvoslib.models.transformer.mttr import (
    MTTRDecoderLayer,
    MTTREncoderLayer,
    MTTRTransformer,
    detr_sine_positions,
)
from rvoslib.models.transformer.referformer import ReferFormerTransformer, SOCTransformer
from rvoslib.models.transformer.voc import VideoClusterOutput, VideoObjectCluster

__all__ = [
    "DecoderOutput",
    "DeformableDecoder",
    "DeformableDecoderLayer",
    "DeformableEncoder",
    "DeformableEncoderLayer",
    "LongShortCrossAttention",
    "MTTRDecoderLayer",
    "MTTREncoderLayer",
    "MTTRTransformer",
    "MultiScaleDeformableAttention",
    "ReferFormerTransformer",
    "SOCTransformer",
    "VideoClusterOutput",
    "VideoObjectCluster",
    "as_spatial_shapes",
    "detr_sine_positions",
    "encoder_reference_points",
    "flatten_levels",
    "inverse_sigmoid",
    "multi_scale_deformable_attention",
    "split_levels",
    "valid_ratios",
]
