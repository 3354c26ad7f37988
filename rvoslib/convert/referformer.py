"""ReferFormer checkpoints (Wu et al., CVPR 2022; wjn922/ReferFormer) -> rvoslib.

The released checkpoints hold ``{"model": state_dict}`` of ``models/referformer.py``'s
``ReferFormer`` trained with ``--with_box_refine --binary``. What is detected from the tensors:

* the backbone: Video-Swin T/S/B (``backbone.0.body.patch_embed.proj.weight`` of 5 dims; sizes
  by :func:`~rvoslib.convert.video_swin.convert_video_swin`) or ResNet-50/101
  (``backbone.0.body.conv1.weight``; blocks per stage);
* RoBERTa's width, layers, vocabulary and positions (``roberta-base``/``-large`` by name when
  they match), heads = width / 64;
* ``d_model``, queries, levels, encoder/decoder layers, FFN width, sampling points per head
  (the heads are not visible in the weights: 8, as every released model), the FPN's and the
  dynamic mask head's widths.

Renamed: ``backbone.0.body.*`` -> ``backbone.*``; ``text_encoder.*`` ->
``text_encoder.language_model.*``; ``resizer.*`` -> ``text_encoder.projection.*``;
``input_proj.<i>`` -> ``transformer.input_proj.<i>`` (the extra levels ->
``transformer.extra_proj``); ``fusion_module.multihead_attn`` -> ``transformer.early_fusion``;
``query_embed``, ``transformer.reference_points``, ``transformer.level_embed`` (->
``transformer.encoder.level_embed``); encoder layers ``norm1``/``norm2`` -> ``norm``/
``ffn.norm``; decoder layers ``norm2`` (after self-attention) -> ``norm1``, ``norm1`` (after
the deformable cross-attention) -> ``norm2``, ``norm3`` -> ``ffn.norm`` (Deformable DETR's
names are in another order than its computation: a map by name alone swaps them);
``bbox_embed.<l>`` -> ``transformer.box_heads.<l>``; ``class_embed.<l>`` -> ``class_heads.<l>``;
``controller`` -> ``mask_head.controller``; ``pixel_decoder.adapter_<k>``/``layer_<k>``/
``cross_attn_<k>`` -> ``pixel_decoder.lateral.<k-1>``/``output.<k-1>``/``blocks.<k-1>``.

Dropped: ``transformer.decoder.bbox_embed.*`` (the same modules as ``bbox_embed.*``; checked
equal), ``text_encoder.embeddings.position_ids`` / ``token_type_ids`` (buffers of older
transformers), ``num_batches_tracked``.

Example:
    >>> state = torch.load("ytvos_swin_tiny.pth", weights_only=True)["model"]  # doctest: +SKIP
    >>> conversion = convert_referformer(state)  # doctest: +SKIP
    >>> conversion.variant["backbone"], conversion.variant["text"]  # doctest: +SKIP
    ('video-swin-t', 'roberta-base')
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from rvoslib.convert.base import CONVERTERS, Conversion, unexpected_keys_error
from rvoslib.convert.video_swin import convert_video_swin
from rvoslib.models.presets_query_deformable import referformer_r50

__all__ = ["SOURCE", "convert_referformer"]

SOURCE = "referformer"
#: Heads of every attention of the released models (not visible in the weights).
NUM_HEADS = 8
_BACKBONE = "backbone.0.body."
_RESNETS = {(3, 4, 6, 3): "resnet50", (3, 4, 23, 3): "resnet101"}
_TEXT_SIZES = {(768, 12, 50265): "roberta-base", (1024, 24, 50265): "roberta-large"}
_DROPPED_TEXT = ("text_encoder.embeddings.position_ids", "text_encoder.embeddings.token_type_ids")
_ENCODER_RENAMES = {"self_attn": "self_attn", "norm1": "norm", "linear1": "ffn.linear1",
                    "linear2": "ffn.linear2", "norm2": "ffn.norm"}  # fmt: skip
#: Deformable DETR's decoder: norm2 follows self-attention, norm1 the cross-attention.
DECODER_RENAMES = {"self_attn": "self_attn", "norm2": "norm1", "cross_attn": "cross_attn",
                   "norm1": "norm2", "linear1": "ffn.linear1", "linear2": "ffn.linear2",
                   "norm3": "ffn.norm"}  # fmt: skip
_BLOCK_RENAMES = {"self_attn": "self_attn", "multihead_attn": "cross_attn", "linear1": "linear1",
                  "linear2": "linear2", "norm1": "norms.0", "norm2": "norms.1",
                  "norm3": "norms.2"}  # fmt: skip


class _Renamer:
    """Collects renamed tensors and the original keys used."""

    def __init__(self, state: Mapping[str, torch.Tensor]) -> None:
        self.state, self.out, self.used = state, {}, set()

    def require(self, key: str) -> torch.Tensor:
        if key not in self.state:
            raise ValueError(f"the ReferFormer checkpoint lacks {key!r}")
        return self.state[key]

    def prefix(self, old: str, new: str) -> None:
        """Every key under ``old`` -> the same suffix under ``new``."""
        found = [k for k in self.state if k.startswith(old)]
        if not found:
            raise ValueError(f"the ReferFormer checkpoint has no key under {old!r}")
        for key in found:
            self.out[new + key[len(old) :]] = self.state[key]
            self.used.add(key)

    def count(self, pattern: str) -> int:
        """How many indices ``<i>`` keys matching ``pattern`` (with ``(\\d+)``) have."""
        regex = re.compile(pattern)
        found = {int(m.group(1)) for k in self.state if (m := regex.match(k))}
        return max(found) + 1 if found else 0


def _backbone(names: _Renamer) -> tuple[dict[str, Any], str]:
    state = names.state
    patch = state.get(_BACKBONE + "patch_embed.proj.weight")
    if patch is not None and patch.ndim == 5:
        renamed, used, variant = convert_video_swin(state, _BACKBONE, "backbone.")
        names.out.update(renamed)
        names.used |= used
        return {**variant["spec"], "drop_path_rate": 0.2}, variant["size"]
    if patch is not None:
        raise ValueError(
            f"{_BACKBONE}patch_embed.proj.weight has shape {tuple(patch.shape)}: a 2D Swin "
            "backbone (swin_*_p4w7), which rvoslib does not convert; Video-Swin T/S/B and "
            "ResNet-50/101 checkpoints are supported"
        )
    if _BACKBONE + "conv1.weight" not in state:
        raise ValueError(
            f"no backbone found: neither {_BACKBONE}patch_embed.proj.weight (Video-Swin) nor "
            f"{_BACKBONE}conv1.weight (ResNet) is in the checkpoint"
        )
    blocks = tuple(names.count(rf"{re.escape(_BACKBONE)}layer{i}\.(\d+)\.") for i in range(1, 5))
    if blocks not in _RESNETS:
        raise ValueError(
            f"the ResNet backbone has {list(blocks)} blocks per stage; ResNet-50 [3, 4, 6, 3] "
            "or ResNet-101 [3, 4, 23, 3] expected"
        )
    for key in [k for k in state if k.startswith(_BACKBONE)]:
        rest = key[len(_BACKBONE) :]
        names.used.add(key)
        if rest.endswith("num_batches_tracked"):
            continue
        if rest.startswith(("conv1.", "bn1.")):
            target = ("stem.0." if rest.startswith("conv1.") else "stem.1.") + rest.split(".", 1)[1]
        else:
            stage, tail = rest[len("layer") :].split(".", 1)
            target = f"stages.{int(stage) - 1}.{tail}"
        names.out["backbone.trunk." + target] = state[key]
    spec = dict(referformer_r50().backbone, name=_RESNETS[blocks])
    return spec, _RESNETS[blocks]


def _text(names: _Renamer, d_model: int, resizer: str = "resizer.") -> tuple[dict[str, Any], str]:
    words = names.require("text_encoder.embeddings.word_embeddings.weight")
    vocab, hidden = (int(n) for n in words.shape)
    layers = names.count(r"text_encoder\.encoder\.layer\.(\d+)\.")
    config = {
        "model_type": "roberta",
        "vocab_size": vocab,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": max(1, hidden // 64),
        "intermediate_size": int(
            names.require("text_encoder.encoder.layer.0.intermediate.dense.weight").shape[0]
        ),
        "max_position_embeddings": int(
            names.require("text_encoder.embeddings.position_embeddings.weight").shape[0]
        ),
        "type_vocab_size": int(
            names.require("text_encoder.embeddings.token_type_embeddings.weight").shape[0]
        ),
        "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "layer_norm_eps": 1e-5,
    }  # fmt: skip
    label = _TEXT_SIZES.get((hidden, layers, vocab), "custom")
    names.used.update(k for k in _DROPPED_TEXT if k in names.state)
    for key in [k for k in names.state if k.startswith("text_encoder.")]:
        if key not in _DROPPED_TEXT:
            names.out["text_encoder.language_model." + key[len("text_encoder.") :]] = names.state[
                key
            ]
            names.used.add(key)
    names.prefix(resizer, "text_encoder.projection.")  # SOC: "txt_proj."
    spec = {
        "name": "huggingface",
        "model_name_or_path": "roberta-large" if label == "roberta-large" else "roberta-base",
        "pooling": "pooler",
        "out_dim": d_model,
        "freeze": True,
        "max_length": None,
        "projection": {"name": "feature_resizer", "dropout": 0.1},
        "config": config,
    }
    return spec, label


def _transformer(
    names: _Renamer, visual_levels: int, fusion_key: str | None = "fusion_module.multihead_attn."
) -> dict[str, Any]:
    queries, d_model = (int(n) for n in names.require("query_embed.weight").shape)
    levels = int(names.require("transformer.level_embed").shape[0])
    encoder = names.count(r"transformer\.encoder\.layers\.(\d+)\.")
    decoder = names.count(r"transformer\.decoder\.layers\.(\d+)\.")
    offsets = int(
        names.require("transformer.encoder.layers.0.self_attn.attention_weights.weight").shape[0]
    )
    if offsets % (NUM_HEADS * levels):
        raise ValueError(
            f"transformer.encoder.layers.0.self_attn.attention_weights.weight has {offsets} rows, "
            f"not a multiple of {NUM_HEADS} heads x {levels} levels"
        )
    if names.count(r"transformer\.decoder\.bbox_embed\.(\d+)\.") != decoder:
        raise ValueError(
            "the checkpoint has no per-layer transformer.decoder.bbox_embed: a model trained "
            "without --with_box_refine, which rvoslib does not convert"
        )
    for index in range(visual_levels):
        names.prefix(f"input_proj.{index}.", f"transformer.input_proj.{index}.")
    for index in range(visual_levels, levels):
        names.prefix(f"input_proj.{index}.", f"transformer.extra_proj.{index - visual_levels}.")
    if fusion_key is not None:  # SOC (None): its two fusion attentions are renamed apart
        names.prefix(fusion_key, "transformer.early_fusion.")
    names.prefix("query_embed.", "transformer.query_embed.")
    names.prefix("transformer.reference_points.", "transformer.reference_points.")
    names.out["transformer.encoder.level_embed"] = names.require("transformer.level_embed")
    names.used.add("transformer.level_embed")
    for kind, count, renames in (("encoder", encoder, _ENCODER_RENAMES),
                                 ("decoder", decoder, DECODER_RENAMES)):  # fmt: skip
        for layer in range(count):
            for old, new in renames.items():
                names.prefix(f"transformer.{kind}.layers.{layer}.{old}.",
                             f"transformer.{kind}.layers.{layer}.{new}.")  # fmt: skip
    for layer in range(decoder):
        names.prefix(f"bbox_embed.{layer}.", f"transformer.box_heads.{layer}.")
        names.prefix(f"class_embed.{layer}.", f"class_heads.{layer}.")
        alias = f"transformer.decoder.bbox_embed.{layer}."
        for key in [k for k in names.state if k.startswith(alias)]:
            original = names.require(key[len("transformer.decoder.") :])
            if not torch.equal(names.state[key], original):
                raise ValueError(f"{key} differs from the bbox_embed it aliases")
            names.used.add(key)
    classes = int(names.require("class_embed.0.weight").shape[0])
    if classes != 1:
        raise ValueError(
            f"class_embed.0.weight has {classes} classes: a model trained without --binary, "
            "which rvoslib does not convert (1 class expected)"
        )
    ffn = int(names.require("transformer.encoder.layers.0.linear1.weight").shape[0])
    return {"name": "deformable_referformer", "d_model": d_model, "num_queries": queries,
            "num_levels": levels, "num_encoder_layers": encoder, "num_decoder_layers": decoder,
            "num_heads": NUM_HEADS, "num_points": offsets // (NUM_HEADS * levels),
            "ffn_dim": ffn, "text_positions": "original"}  # fmt: skip


def _pixel_decoder(names: _Renamer) -> dict[str, Any]:
    levels = names.count(r"pixel_decoder\.adapter_(\d+)\.")  # adapter_1..L: count = L + 1
    for stage in range(1, levels):
        index = stage - 1
        names.prefix(
            f"pixel_decoder.adapter_{stage}.weight", f"pixel_decoder.lateral.{index}.0.weight"
        )
        names.prefix(f"pixel_decoder.adapter_{stage}.norm.", f"pixel_decoder.lateral.{index}.1.")
        names.prefix(
            f"pixel_decoder.layer_{stage}.weight", f"pixel_decoder.output.{index}.0.0.weight"
        )
        names.prefix(f"pixel_decoder.layer_{stage}.norm.", f"pixel_decoder.output.{index}.0.1.")
        for old, new in _BLOCK_RENAMES.items():
            names.prefix(f"pixel_decoder.cross_attn_{stage}.{old}.",
                         f"pixel_decoder.blocks.{index}.{new}.")  # fmt: skip
    names.prefix("pixel_decoder.mask_features.", "pixel_decoder.mask_features.")
    return {
        "name": "cross_modal_fpn",
        "conv_dim": int(names.require("pixel_decoder.adapter_1.weight").shape[0]),
        "mask_dim": int(names.require("pixel_decoder.mask_features.weight").shape[0]),
        "ffn_dim": int(names.require("pixel_decoder.cross_attn_1.linear1.weight").shape[0]),
        "num_heads": NUM_HEADS,
        "text_positions": "original",
    }


def _mask_head(names: _Renamer, mask_dim: int) -> dict[str, Any]:
    layers = names.count(r"controller\.layers\.(\d+)\.")
    outputs = int(names.require(f"controller.layers.{layers - 1}.weight").shape[0])
    names.prefix("controller.", "mask_head.controller.")
    for coordinates in (True, False):  # ReferFormer's controller_layers sets both depths
        for channels in range(1, 1025):
            inputs = mask_dim + 2 * coordinates
            size = (inputs + 1) * channels + (layers - 2) * (channels + 1) * channels + channels + 1
            if size == outputs:
                return {"name": "condinst", "hidden_channels": channels, "num_layers": layers,
                        "controller_layers": layers, "relative_coordinates": coordinates,
                        "coordinates": "pixels"}  # fmt: skip
    raise ValueError(
        f"controller.layers.{layers - 1}.weight predicts {outputs} parameters: no dynamic mask "
        f"head of {layers} layers on {mask_dim} mask features has that many"
    )


@CONVERTERS.register(SOURCE)
def convert_referformer(state: Mapping[str, torch.Tensor]) -> Conversion:
    """Convert a ReferFormer state dict (see the module docstring).

    Args:
        state: ``checkpoint["model"]`` of a released ReferFormer checkpoint.

    Returns:
        A :class:`Conversion` whose config is a ``referformer-*`` preset with the detected sizes.

    Raises:
        ValueError: an unsupported variant or a missing tensor (named).
        UnexpectedKeysError: keys that belong to no part of ReferFormer (named).
    """
    names = _Renamer(state)
    backbone, backbone_label = _backbone(names)
    transformer = _transformer(names, visual_levels=3)
    text, text_label = _text(names, transformer["d_model"])
    pixel_decoder = _pixel_decoder(names)
    mask_head = _mask_head(names, pixel_decoder["mask_dim"])
    names.used |= {k for k in state if k.endswith("num_batches_tracked")}
    unknown = [k for k in state if k not in names.used]
    if unknown:
        raise unexpected_keys_error(SOURCE, unknown)
    config = referformer_r50()
    config.backbone, config.text_encoder, config.transformer = backbone, text, transformer
    config.pixel_decoder, config.mask_head = pixel_decoder, mask_head
    dropped = sorted(
        k for k in state
        if k.startswith("transformer.decoder.bbox_embed.") or k in _DROPPED_TEXT
        or k.endswith("num_batches_tracked")
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
            f"attention heads: {NUM_HEADS} (ReferFormer's; the weights do not show them)",
        ],
    )  # fmt: skip
