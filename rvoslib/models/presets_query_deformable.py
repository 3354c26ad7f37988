"""Preset configs of the deformable query-based architectures: ReferFormer and SOC.

Each function returns a fresh config; :mod:`rvoslib.models.presets` registers them under
``referformer-swin-t``, ``referformer-tiny``, ``soc-swin-t`` and ``soc-tiny`` (and the other
ReferFormer names of :data:`REFERFORMER_PRESETS`).

The ``referformer-*`` presets but ``referformer-swin-t-rvoslib`` and ``referformer-tiny``
compute what the released ReferFormer code computes (checkpoints convert into them with
``rvos convert --from referformer``): RoBERTa's ``pooler_output`` as the sentence feature, the
``FeatureResizer`` text projection, no truncation of the text, text positions ``k / n``
(``text_positions="original"``) and CondInst coordinates in input pixels
(``coordinates="pixels"``). ``referformer-swin-t-rvoslib`` keeps rvoslib's earlier choices
(``cls`` pooling, Linear -> LayerNorm -> GELU, 32 tokens, centred positions, coordinates in
image units).

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

__all__ = [
    "REFERFORMER_PRESETS",
    "SOC_PRESETS",
    "referformer_r50",
    "referformer_r101",
    "referformer_swin_b",
    "referformer_swin_s",
    "referformer_swin_t",
    "referformer_swin_t_rvoslib",
    "referformer_tiny",
    "soc_swin_b",
    "soc_swin_t",
    "soc_swin_t_rvoslib",
    "soc_tiny",
]


def _swin_t(name: str = "video_swin_t") -> dict[str, Any]:
    return {
        "name": name,
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


def _resnet(name: str) -> dict[str, Any]:
    """ReferFormer's ResNet: all four stages, frozen BatchNorm, stem and layer1 frozen."""
    return {"name": name, "out_strides": [4, 8, 16, 32], "refine_last": False,
            "frozen_bn": True, "freeze_stages": 2}  # fmt: skip


def _referformer(backbone: dict[str, Any]) -> ReferFormerConfig:
    """The released ReferFormer on ``backbone``: 5 queries, 4/4 layers, cross-modal FPN (256
    channels, mask features 256), CondInst head with 8 dynamic channels, and the released
    code's text features, text positions, CondInst coordinates and criterion conventions."""
    config = ReferFormerConfig(
        backbone=backbone,
        text_encoder={**_roberta(), "pooling": "pooler", "max_length": None,
                      "projection": {"name": "feature_resizer", "dropout": 0.1}},
        transformer={"name": "deformable_referformer", "num_queries": 5,
                     "text_positions": "original"},
        pixel_decoder={"name": "cross_modal_fpn", "conv_dim": 256, "mask_dim": 256,
                       "text_positions": "original"},
        mask_head={"name": "condinst", "hidden_channels": 8, "coordinates": "pixels"},
        inference="referformer-ytvos",  # inference_ytvos.py (rvoslib.inference_protocols)
    )  # fmt: skip
    # the original matching and criterion conventions (rvoslib.losses.CONVENTIONS)
    config.criterion = {**config.criterion, "conventions": "referformer"}
    return config


def referformer_swin_t() -> ReferFormerConfig:
    """The released ReferFormer with Video-Swin-T (see the module docstring)."""
    return _referformer(_swin_t())


def referformer_swin_s() -> ReferFormerConfig:
    """The released ReferFormer with Video-Swin-S."""
    return _referformer(_swin_t("video_swin_s"))


def referformer_swin_b() -> ReferFormerConfig:
    """The released ReferFormer with Video-Swin-B."""
    return _referformer(_swin_t("video_swin_b"))


def referformer_r50() -> ReferFormerConfig:
    """The released ReferFormer with ResNet-50."""
    return _referformer(_resnet("resnet50"))


def referformer_r101() -> ReferFormerConfig:
    """The released ReferFormer with ResNet-101."""
    return _referformer(_resnet("resnet101"))


def referformer_swin_t_rvoslib() -> ReferFormerConfig:
    """rvoslib's earlier ``referformer-swin-t``: the published sizes with rvoslib's own text
    features (``cls`` pooling, Linear -> LayerNorm -> GELU, 32 tokens), centred text positions
    and CondInst coordinates in image units."""
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


def _soc(backbone: dict[str, Any]) -> SOCConfig:
    """The released SOC on ``backbone``: 20 zero-content queries, 3/3 layers, bidirectional
    fusion, VOC 3/3 layers, MTTR's FPN pixel decoder (``"fpn_text"``) with 8 mask features,
    CondInst head with 8 channels; RoBERTa's pooler output through the ``FeatureResizer``, no
    truncation, text positions ``k / n``, CondInst coordinates in input pixels and the released
    head wiring (``head_wiring="released"``: in eval, decoder layer 0's heads on ``queries[0]
    + video_queries[-1]``)."""
    return SOCConfig(
        backbone=backbone,
        text_encoder={**_roberta(), "pooling": "pooler", "max_length": None,
                      "projection": {"name": "feature_resizer", "dropout": 0.1}},
        transformer={"name": "deformable_soc", "num_queries": 20, "text_positions": "original"},
        pixel_decoder={"name": "fpn_text", "out_channels": 8},
        mask_head={"name": "condinst", "hidden_channels": 8, "coordinates": "pixels"},
        head_wiring="released",
        inference="soc",  # infer_refytb.py (rvoslib.inference_protocols)
    )  # fmt: skip


def soc_swin_t() -> SOCConfig:
    """The released SOC with Video-Swin-T (see :func:`_soc`)."""
    return _soc(_swin_t())


def soc_swin_b() -> SOCConfig:
    """The released SOC with Video-Swin-B (see :func:`_soc`)."""
    return _soc(_swin_t("video_swin_b"))


def soc_swin_t_rvoslib() -> SOCConfig:
    """rvoslib's earlier ``soc-swin-t``: the published sizes with rvoslib's own text features
    (``cls`` pooling, Linear -> LayerNorm -> GELU, 32 tokens), centred text positions, CondInst
    coordinates in image units and every decoder layer's heads on its own video queries
    (``head_wiring="last_layer"``), and rvoslib's inference (no ``inference`` protocol)."""
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


#: ReferFormer preset name -> (config function, description), registered by
#: :mod:`rvoslib.models.presets`.
REFERFORMER_PRESETS = {
    "referformer-swin-t": (referformer_swin_t, "The released ReferFormer with Video-Swin-T: "
                           "deformable transformer 4/4 layers over 4 levels with early fusion, "
                           "5 sentence queries, box refinement, cross-modal FPN, CondInst mask "
                           "head; roberta-base (pooler output, FeatureResizer)."),
    "referformer-swin-s": (referformer_swin_s, "The released ReferFormer with Video-Swin-S."),
    "referformer-swin-b": (referformer_swin_b, "The released ReferFormer with Video-Swin-B."),
    "referformer-r50": (referformer_r50, "The released ReferFormer with ResNet-50 (frozen "
                        "BatchNorm)."),
    "referformer-r101": (referformer_r101, "The released ReferFormer with ResNet-101 (frozen "
                         "BatchNorm)."),
    "referformer-swin-t-rvoslib": (referformer_swin_t_rvoslib, "rvoslib's earlier "
                                   "referformer-swin-t: cls pooling, Linear-LayerNorm-GELU text "
                                   "projection, centred text positions, CondInst coordinates "
                                   "in image units."),
    "referformer-tiny": (referformer_tiny, "ReferFormer on tinycnn and a tiny BERT, 3 queries: "
                         "trains on the CPU."),
}  # fmt: skip


#: SOC preset name -> (config function, description), registered by
#: :mod:`rvoslib.models.presets`.
SOC_PRESETS = {
    "soc-swin-t": (soc_swin_t, "The released SOC with Video-Swin-T: bidirectional fusion, "
                   "deformable transformer 3/3, 20 queries, video object cluster, contrastive "
                   "loss; roberta-base (pooler output, FeatureResizer); the released head "
                   "wiring."),
    "soc-swin-b": (soc_swin_b, "The released SOC with Video-Swin-B."),
    "soc-swin-t-rvoslib": (soc_swin_t_rvoslib, "rvoslib's earlier soc-swin-t: cls pooling, "
                           "Linear-LayerNorm-GELU text projection, centred text positions, "
                           "CondInst coordinates in image units, last-layer head wiring."),
    "soc-tiny": (soc_tiny, "SOC on tinycnn (temporal shift: the frame order) and a tiny BERT, "
                 "5 queries."),
}  # fmt: skip
