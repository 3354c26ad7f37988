"""MTTR's released checkpoints (``model_state_dict`` of ``models/mttr.py``) -> rvoslib's ``mttr``.

The original modules and their rvoslib counterparts::

    backbone.*  (Video-Swin, 3 stages)       -> backbone.*        (rvoslib.convert.video_swin)
    transformer.text_encoder.*  (RoBERTa)    -> text_encoder.language_model.*
    transformer.txt_proj.{fc,layer_norm}     -> text_encoder.projection.{fc,layer_norm}
                                                (FeatureResizer: Linear, LayerNorm eps 1e-12)
    vid_embed_proj                           -> transformer.visual_projections.0
    obj_queries                              -> transformer.query_pos
    transformer.encoder.layers.<i>.{self_attn,linear1,linear2,norm1,norm2}
                                             -> transformer.encoder.<i>.{attention,ffn.linear1,
                                                ffn.linear2,norm1,norm2}
    transformer.decoder.layers.<i>.{self_attn,multihead_attn,linear1,linear2,norm1..3}
                                             -> transformer.decoder.<i>.{self_attention,
                                                cross_attention,ffn.*,norms.0..2}
    transformer.decoder.norm                 -> transformer.decoder_norm
    spatial_decoder.{lay1,gn1,lay2,gn2}      -> pixel_decoder.top.{0,1}.{0,1}
    spatial_decoder.adapter<k>, lay<k+2>/gn<k+2> -> pixel_decoder.adapters.<k-1>, stages.<k-1>
    spatial_decoder.out_lay                  -> pixel_decoder.output
    instance_kernels_head.layers.<i>         -> mask_head.layers.<i>
    is_referred_head                         -> is_referred_head

Dropped: ``transformer.text_encoder.embeddings.position_ids`` (a buffer transformers 4.x saved;
rvoslib's language model computes positions) and a RoBERTa pooler (MTTR sets it to ``None``).

Detected from shapes: the Video-Swin size, the RoBERTa size (width, layers, FFN, vocabulary,
positions; heads = width / 64 as in every RoBERTa), ``d_model``, FFN width, encoder and decoder
layers, queries, mask-kernel size and MLP depth. Not in the weights and taken from MTTR's
configs: 8 attention heads (``nheads``), dropout 0.1, a frozen text encoder.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

import torch

from rvoslib.convert.base import CONVERTERS, Conversion, unexpected_keys_error
from rvoslib.convert.video_swin import convert_video_swin
from rvoslib.models.text import known_text_configs

__all__ = ["MTTR_PREFIXES", "convert_mttr", "convert_roberta", "mttr_parts"]

#: Top-level modules of the original ``MTTR`` (and LoSh-M, which has the same).
MTTR_PREFIXES = (
    "backbone.",
    "transformer.",
    "vid_embed_proj.",
    "obj_queries.",
    "is_referred_head.",
    "instance_kernels_head.",
    "spatial_decoder.",
)
#: MTTR's ``nheads`` (``configs/*.yaml``): attention heads are not visible in the weights.
MTTR_NUM_HEADS = 8
_ENCODER_RENAMES = {
    "self_attn.in_proj_weight": "attention.in_proj_weight",
    "self_attn.in_proj_bias": "attention.in_proj_bias",
    "self_attn.out_proj.weight": "attention.out_proj.weight",
    "self_attn.out_proj.bias": "attention.out_proj.bias",
    "linear1.weight": "ffn.linear1.weight",
    "linear1.bias": "ffn.linear1.bias",
    "linear2.weight": "ffn.linear2.weight",
    "linear2.bias": "ffn.linear2.bias",
    "norm1.weight": "norm1.weight",
    "norm1.bias": "norm1.bias",
    "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias",
}
_DECODER_RENAMES = {
    "self_attn.in_proj_weight": "self_attention.in_proj_weight",
    "self_attn.in_proj_bias": "self_attention.in_proj_bias",
    "self_attn.out_proj.weight": "self_attention.out_proj.weight",
    "self_attn.out_proj.bias": "self_attention.out_proj.bias",
    "multihead_attn.in_proj_weight": "cross_attention.in_proj_weight",
    "multihead_attn.in_proj_bias": "cross_attention.in_proj_bias",
    "multihead_attn.out_proj.weight": "cross_attention.out_proj.weight",
    "multihead_attn.out_proj.bias": "cross_attention.out_proj.bias",
    "linear1.weight": "ffn.linear1.weight",
    "linear1.bias": "ffn.linear1.bias",
    "linear2.weight": "ffn.linear2.weight",
    "linear2.bias": "ffn.linear2.bias",
    **{f"norm{i + 1}.{kind}": f"norms.{i}.{kind}" for i in range(3) for kind in ("weight", "bias")},
}


class _Renamer:
    """Collects ``renamed`` (new key -> tensor) and ``used`` (original keys)."""

    def __init__(self, state: Mapping[str, torch.Tensor]) -> None:
        self.state, self.renamed, self.used = state, {}, set()

    def tensor(self, key: str) -> torch.Tensor:
        if key not in self.state:
            raise KeyError(f"the checkpoint lacks {key!r}")
        return self.state[key]

    def take(self, src: str, dst: str) -> None:
        self.renamed[dst] = self.tensor(src)
        self.used.add(src)

    def take_module(self, src: str, dst: str, leaves: tuple[str, ...] = ("weight", "bias")) -> None:
        for leaf in leaves:
            self.take(f"{src}.{leaf}", f"{dst}.{leaf}")


def _count(keys: list[str], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m.group(1)) for k in keys if (m := pattern.match(k))}
    return max(found) + 1 if found else 0


def convert_roberta(
    state: Mapping[str, torch.Tensor], prefix_in: str, prefix_out: str
) -> tuple[dict[str, torch.Tensor], set[str], list[str], dict[str, Any]]:
    """Rename a (2021-22 transformers) RoBERTa's weights and detect its size.

    Args:
        state: The checkpoint's state dict.
        prefix_in: Prefix of the RoBERTa keys (``"transformer.text_encoder."``).
        prefix_out: Prefix in rvoslib (``"text_encoder.language_model."``).

    Returns:
        ``renamed``, ``used`` (original keys renamed), ``dropped`` (``embeddings.position_ids``
        and ``pooler.*`` if present) and ``variant``: ``{"name": "roberta-base" / "roberta-large"
        / "custom", "config": Hugging Face config keywords (``model_type`` included)}``.

    Raises:
        KeyError: the word embeddings are missing (named).
        ValueError: a layer's weights do not have the detected width (names tensor and shape).
    """
    keys = [k for k in state if k.startswith(prefix_in)]
    words = state.get(f"{prefix_in}embeddings.word_embeddings.weight")
    if words is None:
        raise KeyError(f"the checkpoint lacks {prefix_in + 'embeddings.word_embeddings.weight'!r}")
    vocab, hidden = (int(n) for n in words.shape)
    layers = _count(keys, f"{prefix_in}encoder.layer.")
    ffn_key = f"{prefix_in}encoder.layer.0.intermediate.dense.weight"
    ffn = state.get(ffn_key)
    if ffn is None or ffn.ndim != 2 or ffn.shape[1] != hidden or hidden % 64:
        shape = None if ffn is None else tuple(ffn.shape)
        raise ValueError(
            f"{ffn_key} has shape {shape}; expected (ffn, {hidden}) for a RoBERTa of width "
            f"{hidden} (a multiple of 64: heads = width / 64)"
        )
    positions = state[f"{prefix_in}embeddings.position_embeddings.weight"]
    types_ = state[f"{prefix_in}embeddings.token_type_embeddings.weight"]
    config = {
        **known_text_configs()["roberta-base"],
        "vocab_size": vocab,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": hidden // 64,
        "intermediate_size": int(ffn.shape[0]),
        "max_position_embeddings": int(positions.shape[0]),
        "type_vocab_size": int(types_.shape[0]),
    }
    name = "custom"
    if (vocab, hidden, layers, int(ffn.shape[0])) == (50265, 768, 12, 3072):
        name = "roberta-base"
    elif (vocab, hidden, layers, int(ffn.shape[0])) == (50265, 1024, 24, 4096):
        name = "roberta-large"
    dropped = [
        k for k in keys if k == f"{prefix_in}embeddings.position_ids" or k.startswith(
            f"{prefix_in}pooler."
        )
    ]  # fmt: skip
    renamed = {prefix_out + k[len(prefix_in) :]: state[k] for k in keys if k not in set(dropped)}
    return renamed, set(keys) - set(dropped), dropped, {"name": name, "config": config}


def _pixel_decoder(rename: _Renamer, d_model: int) -> int:
    """Rename the FPN spatial decoder; returns its number of finer levels (adapters)."""
    src = "spatial_decoder."
    adapters = 0
    while f"{src}adapter{adapters + 1}.weight" in rename.state:
        adapters += 1
    for index in range(2 + adapters):
        key = f"{src}lay{index + 1}.weight"
        width = max(d_model // 2**index, 8)
        weight = rename.tensor(key)
        if weight.shape[0] != width or d_model // 2**index < 8:
            raise ValueError(
                f"{key} has shape {tuple(weight.shape)}: rvoslib's fpn_text decoder has "
                f"{width} channels there (d_model {d_model} halved {index} times, at least 8; "
                "MTTR's d_model must be a multiple of 8 x 2^levels)"
            )
        target = f"top.{index}" if index < 2 else f"stages.{index - 2}"
        rename.take_module(f"{src}lay{index + 1}", f"pixel_decoder.{target}.0")
        rename.take_module(f"{src}gn{index + 1}", f"pixel_decoder.{target}.1")
    for index in range(adapters):
        rename.take_module(f"{src}adapter{index + 1}", f"pixel_decoder.adapters.{index}")
    rename.take_module(f"{src}out_lay", "pixel_decoder.output")
    return adapters


def _transformer(rename: _Renamer, keys: list[str]) -> dict[str, Any]:
    """Rename the encoder, decoder, visual projection and queries; returns the spec."""
    queries = rename.tensor("obj_queries.weight")
    num_queries, d_model = (int(n) for n in queries.shape)
    encoders = _count(keys, "transformer.encoder.layers.")
    decoders = _count(keys, "transformer.decoder.layers.")
    ffn_key = "transformer.decoder.layers.0.linear1.weight"
    ffn = rename.tensor(ffn_key)
    if ffn.ndim != 2 or ffn.shape[1] != d_model:
        raise ValueError(
            f"{ffn_key} has shape {tuple(ffn.shape)}; expected (ffn_dim, {d_model}) (d_model "
            "from obj_queries.weight)"
        )
    for index in range(encoders):
        for old, new in _ENCODER_RENAMES.items():
            rename.take(
                f"transformer.encoder.layers.{index}.{old}", f"transformer.encoder.{index}.{new}"
            )
    for index in range(decoders):
        for old, new in _DECODER_RENAMES.items():
            rename.take(
                f"transformer.decoder.layers.{index}.{old}", f"transformer.decoder.{index}.{new}"
            )
    rename.take_module("transformer.decoder.norm", "transformer.decoder_norm")
    rename.take_module("vid_embed_proj", "transformer.visual_projections.0")
    rename.take("obj_queries.weight", "transformer.query_pos.weight")
    return {
        "name": "mttr",
        "d_model": d_model,
        "num_heads": MTTR_NUM_HEADS,
        "num_encoder_layers": encoders,
        "num_decoder_layers": decoders,
        "ffn_dim": int(ffn.shape[0]),
        "dropout": 0.1,
        "text_dropout": 0.0,
        "num_queries": num_queries,
    }


def mttr_parts(state: Mapping[str, torch.Tensor], source: str) -> tuple[dict[str, Any], Conversion]:
    """The parts of an MTTR-shaped checkpoint (MTTR, LoSh-M).

    Args:
        state: The bare state dict.
        source: The converter's name, for messages.

    Returns:
        The config fields (``backbone``, ``text_encoder``, ``transformer``, ``pixel_decoder``,
        ``mask_head``, ``transformer_levels``) and a :class:`Conversion` without ``config``.

    Raises:
        UnexpectedKeysError: keys outside MTTR's modules, or left over (named).
        KeyError, ValueError: missing tensors or shapes of no known variant (named).
    """
    keys = list(state)
    foreign = [k for k in keys if not k.startswith(MTTR_PREFIXES)]
    if foreign or "obj_queries.weight" not in state:
        raise unexpected_keys_error(source, foreign or keys)
    rename = _Renamer(state)
    swin, used, swin_variant = convert_video_swin(state, "backbone.", "backbone.")
    rename.renamed.update(swin)
    rename.used |= used
    text, used, dropped, text_variant = convert_roberta(
        state, "transformer.text_encoder.", "text_encoder.language_model."
    )
    rename.renamed.update(text)
    rename.used |= used
    transformer = _transformer(rename, keys)
    d_model = transformer["d_model"]
    resizer = rename.tensor("transformer.txt_proj.fc.weight")
    if tuple(resizer.shape) != (d_model, text_variant["config"]["hidden_size"]):
        raise ValueError(
            f"transformer.txt_proj.fc.weight has shape {tuple(resizer.shape)}; expected "
            f"({d_model}, {text_variant['config']['hidden_size']}) (d_model, text width)"
        )
    rename.take_module("transformer.txt_proj.fc", "text_encoder.projection.fc")
    rename.take_module("transformer.txt_proj.layer_norm", "text_encoder.projection.layer_norm")
    finer = _pixel_decoder(rename, d_model)
    if finer + 1 != swin_variant["num_stages"]:
        raise ValueError(
            f"the spatial decoder has {finer} adapters but the backbone "
            f"{swin_variant['num_stages']} stages: MTTR's decoder takes every stage but the last"
        )
    kernel_layers = _count(keys, "instance_kernels_head.layers.")
    for index in range(kernel_layers):
        rename.take_module(f"instance_kernels_head.layers.{index}", f"mask_head.layers.{index}")
    kernel_dim = int(
        rename.tensor(f"instance_kernels_head.layers.{kernel_layers - 1}.weight").shape[0]
    )
    rename.take_module("is_referred_head", "is_referred_head")
    leftover = set(keys) - rename.used - set(dropped)
    if leftover:
        raise unexpected_keys_error(source, leftover)
    known = text_variant["name"] != "custom"
    text_spec: dict[str, Any] = {
        "name": "huggingface",
        "model_name_or_path": text_variant["name"] if known else "roberta-base",
        "freeze": True,
        "out_dim": d_model,
        "pooling": "mean",
        "max_length": None,
        "projection": {"name": "feature_resizer", "dropout": 0.1},
    }
    if text_variant["name"] != "roberta-base":
        text_spec["config"] = text_variant["config"]
    fields = {
        "backbone": {**swin_variant["spec"], "drop_path_rate": 0.1},
        "text_encoder": text_spec,
        "transformer": transformer,
        "pixel_decoder": {"name": "fpn_text", "out_channels": kernel_dim},
        "mask_head": {"name": "kernel", "num_layers": kernel_layers},
        "transformer_levels": 1,
    }
    notes = [
        f"{k}: dropped (a buffer transformers 4.x saved; positions are recomputed)"
        if k.endswith("position_ids") else f"{k}: dropped (the unused RoBERTa pooler)"
        for k in dropped
    ]  # fmt: skip
    notes.append(
        f"attention heads: {MTTR_NUM_HEADS} (MTTR's nheads; not visible in the weights), "
        "dropout 0.1, frozen text encoder (MTTR's configs)"
    )
    if swin_variant["num_stages"] < 4:
        notes.append("Video-Swin's 4th stage is not in the checkpoint (MTTR drops it)")
    conversion = Conversion(
        config=None,
        state_dict=rename.renamed,
        dropped=sorted(dropped),
        source=source,
        variant={
            "backbone": swin_variant["size"],
            "window_size": swin_variant["window_size"],
            "text": text_variant["name"],
            "d_model": d_model,
            "num_queries": transformer["num_queries"],
            "encoder_layers": transformer["num_encoder_layers"],
            "decoder_layers": transformer["num_decoder_layers"],
        },
        notes=notes,
    )
    return fields, conversion


@CONVERTERS.register("mttr")
def convert_mttr(state: Mapping[str, torch.Tensor]) -> Conversion:
    """Convert MTTR's ``model_state_dict`` into an rvoslib ``mttr`` model.

    The config is the ``mttr-swin-t`` preset with the detected sizes (see the module
    docstring); ``create_model``/``SegmentationModel.from_config(conversion.config)`` builds a
    model that loads ``conversion.state_dict`` with ``strict=True`` and reproduces the
    original's outputs.

    Raises:
        UnexpectedKeysError: a key outside MTTR's modules or left over (e.g. another
            system's checkpoint), named.
        KeyError: a tensor the detected variant needs is missing (named).
        ValueError: shapes of no known variant (the tensor and its shape named).
    """
    from rvoslib.models.presets_query_mttr import mttr_swin_t

    fields, conversion = mttr_parts(state, "mttr")
    conversion.config = dataclasses.replace(mttr_swin_t(), **fields)
    return conversion
