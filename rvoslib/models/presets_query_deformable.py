"""Preset configs of the deformable query-based architectures: ReferFormer and SOC.

Each function returns a fresh config; :mod:`rvoslib.models.presets` registers them under
``referformer-swin-t``, ``referformer-tiny``, ``soc-swin-t`` and ``soc-tiny``.

The ``-swin-t`` presets are the published settings with Video-Swin-T (patch ``(1, 4, 4)``,
window ``(8, 7, 7)``, drop path 0.2, all four stages), ``roberta-base`` (frozen, as both
released training scripts do), ``d_model`` 256, 8 heads, FFN 2048, 4 levels (strides 8, 16, 32
and an extra stride-64 level), 4 points. Their clip length is a data setting: ReferFormer
trains on 5 frames, SOC on 8.

The ``-tiny`` presets run on a CPU: ``tinycnn``, the 2-layer BERT of the ``tiny`` preset with
the built-in hash tokenizer, ``d_model`` 64, one or two layers, few queries, 3 levels
(strides 8/16/32: at 64x64 a stride-64 level would be one pixel).
"""

from __future__ import annotations

from typing import Any

from rvoslib.models.architectures.referformer import ReferFormerConfig
from rvoslib.models.architectures.soc import SOCConfig
from rvoslib.models.presets_common import tiny_text_encoder

__all__ = ["referformer_swin_t", "referformer_tiny", "soc_swin_t", "soc_tiny"]


def _swin_t() -> dict[str, Any]:
    return {
        "name": "video_swin_t",
        "out_strides": [4, 8, 16, 32],
        "window_size": [8, 7, 7],
        "drop_path_rate": 0.2,
    }


def _roberta() -> dict[str, Any]:
    return {
        "name": "huggingface",
        "model_name_or_path": "roberta-base",
        "pooling": "cls",
        "out_dim": 256,
        "freeze": True,
    }


def _tiny_backbone(temporal_shift_stages: list[int]) -> dict[str, Any]:
    return {
        "name": "tinycnn",
        "out_strides": [4, 8, 16, 32],
        "channels": [32, 64, 128, 128],
        "refine_last": False,
        "temporal_shift_stages": temporal_shift_stages,
    }


def _tiny_transformer(name: str, **changes: Any) -> dict[str, Any]:
    return {
        "name": name,
        "d_model": 64,
        "num_levels": 3,
        "num_encoder_layers": 1,
        "num_decoder_layers": 2,
        "num_heads": 4,
        "num_points": 2,
        "ffn_dim": 128,
        "dropout": 0.0,
        **changes,
    }


def referformer_swin_t() -> ReferFormerConfig:
    """ReferFormer with Video-Swin-T at the published settings: 5 queries, 4/4 layers, cross-modal
    FPN (256 channels, mask features 256), CondInst head with 8 dynamic channels."""
    return ReferFormerConfig(
        backbone=_swin_t(),
        text_encoder=_roberta(),
        transformer={"name": "deformable_referformer", "num_queries": 5},
        pixel_decoder={"name": "cross_modal_fpn", "conv_dim": 256, "mask_dim": 256},
        mask_head={"name": "condinst", "hidden_channels": 8},
    )


def referformer_tiny() -> ReferFormerConfig:
    """ReferFormer for the CPU: tinycnn, tiny BERT, ``d_model`` 64, 1/2 layers, 3 queries."""
    return ReferFormerConfig(
        backbone=_tiny_backbone([]),
        text_encoder=tiny_text_encoder(),
        transformer=_tiny_transformer("deformable_referformer", num_queries=3),
        pixel_decoder={
            "name": "cross_modal_fpn",
            "conv_dim": 32,
            "mask_dim": 8,
            "ffn_dim": 64,
            "num_heads": 4,
            "dropout": 0.0,
        },
        mask_head={"name": "condinst", "hidden_channels": 8},
    )


def soc_swin_t() -> SOCConfig:
    """SOC with Video-Swin-T at the published settings: 20 zero-content queries, 3/3 layers,
    bidirectional fusion, VOC 3/3 layers, MTTR's FPN pixel decoder (``"fpn_text"``) with 8
    mask features, CondInst head with 8 channels."""
    return SOCConfig(
        backbone=_swin_t(),
        text_encoder=_roberta(),
        transformer={"name": "deformable_soc", "num_queries": 20},
        pixel_decoder={"name": "fpn_text", "out_channels": 8},
        mask_head={"name": "condinst", "hidden_channels": 8},
    )  # fmt: skip


def soc_tiny() -> SOCConfig:
    """SOC for the CPU: tinycnn with a temporal shift before its first two stages (the order
    of frames and motion; VOC has no temporal position), tiny BERT, ``d_model`` 64, 1/2
    layers, 5 queries, VOC 1/1 layers."""
    return SOCConfig(
        backbone=_tiny_backbone([0, 1]),
        text_encoder=tiny_text_encoder(),
        transformer=_tiny_transformer("deformable_soc", num_queries=5),
        pixel_decoder={"name": "fpn_text", "out_channels": 8},
        mask_head={"name": "condinst", "hidden_channels": 8},
        voc={"name": "voc", "num_encoder_layers": 1, "num_decoder_layers": 1, "num_heads": 4,
             "ffn_dim": 128, "dropout": 0.0},
    )  # fmt: skip
