"""SOC checkpoints (Luo et al., NeurIPS 2023; RobertLuo1/NeurIPS2023_SOC) -> rvoslib.

The released checkpoints hold ``{"model_state_dict": state_dict}`` of ``models/soc.py``'s
``SOC`` (box refinement, one class). What is detected from the tensors:

* the backbone: Video-Swin T/S/B (sizes, heads and window by
  :func:`~rvoslib.convert.video_swin.convert_video_swin`);
* RoBERTa's width, layers, vocabulary and positions (``roberta-base``/``-large`` by name when
  they match), heads = width / 64;
* ``d_model``, queries, levels, encoder/decoder layers, FFN width, sampling points per head
  (the heads are not visible in the weights: 8, as every released model and SOC's fusion),
  the video object cluster's layers and FFN width, and the dynamic mask head's width.

Renamed (besides the Video-Swin, RoBERTa, deformable-transformer and head names shared with
:mod:`rvoslib.convert.referformer`): ``txt_proj.*`` -> ``text_encoder.projection.*``;
``vlf.multihead_attn`` / ``lvf.multihead_attn`` -> ``transformer.early_fusion.visual_attention``
/ ``text_attention``; ``spatial_decoder.lay1/gn1, lay2/gn2`` -> ``pixel_decoder.top.0/1``,
``adapter<k>`` -> ``pixel_decoder.adapters.<k-1>``, ``lay<k+2>/gn<k+2>`` ->
``pixel_decoder.stages.<k-1>``, ``out_lay`` -> ``pixel_decoder.output``; ``voc.enc_self_attn``
/ ``enc_ffn`` / ``transformer_cross_attention_layers`` / ``transformer_self_attention_layers``
/ ``transformer_ffn_layers`` -> ``voc.encoder_attention`` / ``encoder_ffn`` /
``decoder_cross_attention`` / ``decoder_self_attention`` / ``decoder_ffn`` (``self_attn`` and
``multihead_attn`` -> ``attention``), ``voc.fq_pos`` -> ``voc.slot_positions``,
``voc.query_embed`` -> ``voc.query_positions``, ``voc.decoder_norm`` -> ``voc.norm``.

Dropped: ``transformer.decoder.bbox_embed.*`` (the same modules as ``bbox_embed.*``; checked
equal), RoBERTa's ``position_ids`` / ``token_type_ids`` buffers (older transformers), the
Video-Swin ``relative_position_index`` buffers (checked), ``num_batches_tracked`` and the
``total_ops`` / ``total_params`` counters a profiler may leave (SOC's inference ignores them).

The config is ``soc-swin-t``'s (or ``-s``/``-b``) with the detected sizes: the released head
wiring, RoBERTa's pooler output through the ``FeatureResizer``, no truncation, text positions
``k / n`` and CondInst coordinates in input pixels.

Example:
    >>> checkpoint = torch.load("soc_ytvos.pth.tar", weights_only=True)  # doctest: +SKIP
    >>> state = checkpoint["model_state_dict"]  # doctest: +SKIP
    >>> convert_soc(state).variant["backbone"]  # doctest: +SKIP
    'video-swin-t'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from rvoslib.convert.base import CONVERTERS, Conversion, unexpected_keys_error
from rvoslib.convert.referformer import (
    _DROPPED_TEXT,
    NUM_HEADS,
    _backbone,
    _mask_head,
    _Renamer,
    _text,
    _transformer,
)
from rvoslib.models.presets_query_deformable import soc_swin_t

__all__ = ["SOURCE", "convert_soc"]

SOURCE = "soc"
_IGNORED_SUFFIXES = ("num_batches_tracked", "total_ops", "total_params")
_VOC_LISTS = {
    "enc_self_attn": ("encoder_attention", "self_attn"),
    "enc_ffn": ("encoder_ffn", None),
    "transformer_cross_attention_layers": ("decoder_cross_attention", "multihead_attn"),
    "transformer_self_attention_layers": ("decoder_self_attention", "self_attn"),
    "transformer_ffn_layers": ("decoder_ffn", None),
}


def _pixel_decoder(names: _Renamer) -> dict[str, Any]:
    """SOC's ``FPNSpatialDecoder`` (MTTR's) -> the ``"fpn_text"`` pixel decoder."""
    names.prefix("spatial_decoder.lay1.", "pixel_decoder.top.0.0.")
    names.prefix("spatial_decoder.gn1.", "pixel_decoder.top.0.1.")
    names.prefix("spatial_decoder.lay2.", "pixel_decoder.top.1.0.")
    names.prefix("spatial_decoder.gn2.", "pixel_decoder.top.1.1.")
    adapters = names.count(r"spatial_decoder\.adapter(\d+)\.")  # adapter1..k: count = k + 1
    for index in range(1, adapters):
        names.prefix(f"spatial_decoder.adapter{index}.", f"pixel_decoder.adapters.{index - 1}.")
        names.prefix(f"spatial_decoder.lay{index + 2}.", f"pixel_decoder.stages.{index - 1}.0.")
        names.prefix(f"spatial_decoder.gn{index + 2}.", f"pixel_decoder.stages.{index - 1}.1.")
    names.prefix("spatial_decoder.out_lay.", "pixel_decoder.output.")
    out = int(names.require("spatial_decoder.out_lay.weight").shape[0])
    return {"name": "fpn_text", "out_channels": out}


def _voc(names: _Renamer) -> dict[str, Any]:
    """SOC's ``VOC`` -> :class:`~rvoslib.models.transformer.VideoObjectCluster`."""
    for old, (new, attention) in _VOC_LISTS.items():
        for layer in range(names.count(rf"voc\.{old}\.(\d+)\.")):
            source, target = f"voc.{old}.{layer}.", f"voc.{new}.{layer}."
            if attention is not None:
                names.prefix(f"{source}{attention}.", f"{target}attention.")
                names.prefix(f"{source}norm.", f"{target}norm.")
            else:
                names.prefix(source, target)
    names.prefix("voc.fq_pos.", "voc.slot_positions.")
    names.prefix("voc.query_embed.", "voc.query_positions.")
    names.prefix("voc.decoder_norm.", "voc.norm.")
    return {
        "name": "voc",
        "num_encoder_layers": names.count(r"voc\.enc_self_attn\.(\d+)\."),
        "num_decoder_layers": names.count(r"voc\.transformer_ffn_layers\.(\d+)\."),
        "num_heads": NUM_HEADS,
        "ffn_dim": int(names.require("voc.transformer_ffn_layers.0.linear1.weight").shape[0]),
    }


def _fusion(names: _Renamer) -> None:
    """SOC's ``vlf`` (visual from text) and ``lvf`` (text from visual) attentions."""
    # ReferFormer's fusion module name is absent; _transformer renames it when present
    names.prefix("vlf.multihead_attn.", "transformer.early_fusion.visual_attention.")
    names.prefix("lvf.multihead_attn.", "transformer.early_fusion.text_attention.")


@CONVERTERS.register(SOURCE)
def convert_soc(state: Mapping[str, torch.Tensor]) -> Conversion:
    """Convert a SOC state dict (see the module docstring).

    Args:
        state: ``checkpoint["model_state_dict"]`` of a released SOC checkpoint.

    Returns:
        A :class:`Conversion` whose config is a ``soc-swin-*`` preset with the detected sizes.

    Raises:
        ValueError: an unsupported variant or a missing tensor (named).
        UnexpectedKeysError: keys that belong to no part of SOC (named).
    """
    if "voc.decoder_norm.weight" not in state:
        raise ValueError(
            "the checkpoint has no 'voc.decoder_norm.weight': not a SOC checkpoint (SOC's "
            "video object cluster is missing)"
        )
    names = _Renamer(state)
    backbone, backbone_label = _backbone(names)
    _fusion(names)
    transformer = _transformer(names, visual_levels=3, fusion_key=None)
    text, text_label = _text(names, transformer["d_model"], resizer="txt_proj.")
    pixel_decoder = _pixel_decoder(names)
    mask_head = _mask_head(names, pixel_decoder["out_channels"])
    voc = _voc(names)
    names.used |= {k for k in state if k.endswith(_IGNORED_SUFFIXES)}
    unknown = [k for k in state if k not in names.used]
    if unknown:
        raise unexpected_keys_error(SOURCE, unknown)
    config = soc_swin_t()
    config.backbone, config.text_encoder, config.voc = backbone, text, voc
    config.transformer = {**transformer, "name": "deformable_soc"}
    config.pixel_decoder, config.mask_head = pixel_decoder, mask_head
    dropped = sorted(
        k for k in state
        if k.startswith("transformer.decoder.bbox_embed.") or k in _DROPPED_TEXT
        or k.endswith(_IGNORED_SUFFIXES) or k.endswith("relative_position_index")
    )  # fmt: skip
    return Conversion(
        config=config,
        state_dict=names.out,
        dropped=dropped,
        source=SOURCE,
        variant={"backbone": backbone_label, "text": text_label,
                 "num_queries": transformer["num_queries"],
                 "num_levels": transformer["num_levels"]},
        notes=[
            "transformer.decoder.bbox_embed.* dropped: the same modules as bbox_embed.*",
            "RoBERTa's position_ids/token_type_ids buffers dropped: computed by transformers",
            "Video-Swin relative_position_index buffers dropped: computed (checked equal)",
            f"attention heads: {NUM_HEADS} (SOC's; the weights do not show them)",
            "head wiring 'released': in eval, decoder layer 0's heads on queries[0] + "
            "video_queries[-1], as the released inference reports them",
        ],
    )  # fmt: skip
