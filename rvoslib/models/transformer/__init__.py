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
from rvoslib.models.transformer.voc import VideoClusterOutput, VideoObjectCluster

__all__ = [
    "DecoderOutput",
    "DeformableDecoder",
    "DeformableDecoderLayer",
    "DeformableEncoder",
    "DeformableEncoderLayer",
    "MultiScaleDeformableAttention",
    "VideoClusterOutput",
    "VideoObjectCluster",
    "as_spatial_shapes",
    "encoder_reference_points",
    "flatten_levels",
    "inverse_sigmoid",
    "multi_scale_deformable_attention",
    "split_levels",
    "valid_ratios",
]
