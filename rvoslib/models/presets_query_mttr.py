"""Preset configs of MTTR and LoSh (defined here, registered by :mod:`rvoslib.models.presets`).

============================  =================================================================
``mttr-swin-t``               MTTR's released settings: Video-Swin-T (strides 4/8/16), frozen
                              ``roberta-base`` with MTTR's text projection (``FeatureResizer``:
                              Linear -> LayerNorm eps 1e-12 -> Dropout 0.1) and no truncation,
                              ``d_model`` 256, 3 + 3 layers, 8 heads, FFN 2048, dropout 0.1, 50
                              queries, 8-dim mask kernels (windows of 8 frames are the data
                              side); the converted MTTR checkpoints reproduce the original with it
``mttr-swin-t-rvoslib``       rvoslib's earlier MTTR: text projection Linear -> LayerNorm ->
                              GELU, then a Dropout 0.1 in the transformer; expressions truncated
                              to 64 tokens (its seeded weights are the earlier ``mttr-swin-t``'s)
``mttr-tiny``                 tinycnn + the tiny 2-layer BERT with the hash tokenizer,
                              ``d_model`` 64, 1 + 2 layers, 5 queries: trains on the CPU
``losh-mttr-swin-t``          LoSh-M's released settings (``mttr-swin-t`` + the short branch, the
                              intersection loss and cost 0.8); window 10 and the learning-rate
                              milestones [20, 40, 60] x 0.4 are the data's and the Trainer's
``losh-mttr-swin-t-rvoslib``  ``losh-mttr-swin-t`` on ``mttr-swin-t-rvoslib``
``losh-tiny``                 ``mttr-tiny`` + joint prediction, the intersection loss and the
                              cross-attention (the flow term: ``flow_weight=1`` with flow data)
============================  =================================================================
"""

from __future__ import annotations

from rvoslib.models.architectures.losh import LoShConfig
from rvoslib.models.architectures.mttr import MTTRConfig
from rvoslib.models.presets_common import tiny_text_encoder

__all__ = [
    "PRESET_DESCRIPTIONS",
    "losh_mttr_swin_t",
    "losh_mttr_swin_t_rvoslib",
    "losh_tiny",
    "mttr_swin_t",
    "mttr_swin_t_rvoslib",
    "mttr_tiny",
]

#: MTTR's text side (``models/multimodal_transformer.py``): ``FeatureResizer`` to ``d_model``
#: (its dropout is the only one on the text tokens: the transformer adds none), expressions
#: tokenized without truncation (up to the position limit).
_ORIGINAL_TEXT = {"max_length": None, "projection": {"name": "feature_resizer", "dropout": 0.1}}


def mttr_swin_t() -> MTTRConfig:
    """MTTR with Video-Swin-T at its released settings (``configs/refer_youtube_vos.yaml``):
    the converted released checkpoints (``rvoslib.convert``, ``"mttr"``) use this config."""
    config = MTTRConfig(inference="mttr")  # MTTR's inference (rvoslib.inference_protocols)
    config.text_encoder = {**config.text_encoder, **_ORIGINAL_TEXT}
    config.transformer = {**config.transformer, "text_dropout": 0.0}
    config.criterion = {**config.criterion, "conventions": "mttr"}  # rvoslib.losses.CONVENTIONS
    return config


def mttr_swin_t_rvoslib() -> MTTRConfig:
    """rvoslib's earlier ``mttr-swin-t``: :class:`MTTRConfig`'s defaults (text projection
    ``Linear -> LayerNorm -> GELU``, the transformer's text dropout 0.1, 64 tokens at most)."""
    return MTTRConfig()


def _tiny_parts() -> dict:
    return {
        "backbone": {
            "name": "tinycnn",
            "out_strides": [4, 8, 16],
            "channels": [32, 64, 128, 128],
            "refine_last": False,
        },
        "text_encoder": tiny_text_encoder(),
        "transformer": {
            "name": "mttr",
            "d_model": 64,
            "num_heads": 4,
            "num_encoder_layers": 1,
            "num_decoder_layers": 2,
            "ffn_dim": 128,
            "dropout": 0.0,
            "num_queries": 5,
        },
        "pixel_decoder": {"name": "fpn_text", "out_channels": 8},
        "mask_head": {"name": "kernel", "num_layers": 2},
    }


def mttr_tiny() -> MTTRConfig:
    """A CPU-sized MTTR that needs no downloaded file."""
    return MTTRConfig(**_tiny_parts())


def losh_mttr_swin_t() -> LoShConfig:
    """LoSh-M (LoSh on MTTR) at its released settings (MTTR's text side, as
    :func:`mttr_swin_t`); cross-attention and flow consistency (not released) are off
    (:data:`~rvoslib.models.architectures.losh.LOSH_CRITERION`)."""
    mttr = mttr_swin_t()
    return LoShConfig(
        cross_attention=None,
        text_encoder=mttr.text_encoder,
        transformer=mttr.transformer,
        inference="mttr",  # LoSh-M's inference is MTTR's (rvoslib.inference_protocols)
    )


def losh_mttr_swin_t_rvoslib() -> LoShConfig:
    """rvoslib's earlier ``losh-mttr-swin-t``: :func:`losh_mttr_swin_t` on
    :func:`mttr_swin_t_rvoslib`."""
    return LoShConfig(cross_attention=None)


def losh_tiny() -> LoShConfig:
    """``mttr-tiny`` with LoSh's joint prediction, intersection loss and our long-short
    cross-attention. The flow consistency term is off (the criterion's ``flow_weight=1`` turns
    it on; the batch must then carry flow, e.g. the synthetic data with ``flow: true``)."""
    return LoShConfig(
        **_tiny_parts(),
        cross_attention={"name": "long_short", "num_heads": 4, "dropout": 0.0},
    )


PRESET_DESCRIPTIONS = {
    "mttr-swin-t": "MTTR: Video-Swin-T + frozen roberta-base, multimodal transformer (3+3 "
    "layers, 50 queries), FPN pixel decoder, 8-dim mask kernels (released settings).",
    "mttr-swin-t-rvoslib": "rvoslib's earlier mttr-swin-t: text projection Linear -> "
    "LayerNorm -> GELU, expressions truncated to 64 tokens.",
    "mttr-tiny": "MTTR on tinycnn + 2-layer BERT with a built-in tokenizer, 5 queries. CPU.",
    "losh-mttr-swin-t": "LoSh-M: MTTR with long and short expressions, intersection loss "
    "(released settings).",
    "losh-mttr-swin-t-rvoslib": "rvoslib's earlier losh-mttr-swin-t (on mttr-swin-t-rvoslib).",
    "losh-tiny": "LoSh on mttr-tiny with long-short cross-attention (flow term off). CPU.",
}
