"""Reading ``config.json`` files written by older versions (imported only when one is read).

* format 1 (rvoslib 0.1's flat ``RVOSConfig``, no ``architecture`` key): turned into a
  ``fusion`` config with the same weights layout (:func:`convert_legacy_config`); options that
  0.1 had but that did not help (fusion gating, pooled levels, the top-down neck, the head's
  image branch and pixel-shuffle upsampling) were removed, and a folder that used one of them
  cannot be converted and says so;
* format 2 (architecture + part specs): the loss fields (``loss``, ``loss_weights``,
  ``no_object_weight``, ``matcher``...) become one ``criterion`` spec, and seq2seq's flat
  decoder fields and implicit adapters become part specs (:func:`upgrade_config`).
"""

from __future__ import annotations

import copy
from typing import Any

from rvoslib.models.legacy_query import convert_v2_query_config
from rvoslib.models.registry import ARCHITECTURES

__all__ = ["convert_legacy_config", "upgrade_config"]

_NAMED_BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "tinycnn")
#: rvoslib 0.1 options (their defaults are in ``_LEGACY_DEFAULTS``).
_MOVED = (
    "backbone", "out_strides", "backbone_kwargs", "text_model", "text_config", "tokenizer",
    "pooling", "freeze_text", "max_text_length", "hidden_dim", "num_heads", "fusion_dropout",
    "fusion_mode", "attention", "fusion_positions", "temporal", "temporal_expansion", "head",
    "head_hidden", "head_dropout", "head_text_film", "head_dynamic_width",
)  # fmt: skip
_REMOVED = {
    "fusion_gating": False,
    "fusion_pooled_levels": False,
    "neck": False,
    "head_image_channels": 0,
    "head_upsample": "bilinear",
}
_FUSION_FAMILY = ("fusion", "video_fusion", "motion_fusion")
_QUERY_FAMILY = ("mttr", "losh", "referformer", "soc")


def upgrade_config(data: dict[str, Any]) -> dict[str, Any]:
    """A config dict of any older format as a current one (a new dict).

    Raises:
        ValueError: a 0.1 config that uses a removed option or has unknown keys.
    """
    data = copy.deepcopy(data)
    data.pop("format_version", None)
    if "architecture" not in data:
        data = convert_legacy_config(data)
    architecture = data["architecture"]
    if architecture in _FUSION_FAMILY and "loss" in data:
        data["criterion"] = {"name": "mask", **data.pop("loss")}
    elif architecture == "seq2seq":
        data = _upgrade_seq2seq(data)
    elif architecture in _QUERY_FAMILY:
        data = convert_v2_query_config(data)
    return data


def _upgrade_seq2seq(data: dict[str, Any]) -> dict[str, Any]:
    """Format 2 of seq2seq: flat ``decoder_channels``/``decoder_kernel_size`` and ``loss``; the
    4 -> 3 input adapter, initial-state and projection convolutions were built implicitly."""
    if "decoder" not in data:
        data["decoder"] = {
            "name": "seq2seq",
            "channels": data.pop("decoder_channels", [512, 256, 128, 64, 64]),
            "kernel_size": data.pop("decoder_kernel_size", 5),
        }
    if "loss" in data:
        data["criterion"] = {"name": "first_frame_mask", **data.pop("loss")}
    if "input_adapter" not in data:
        initializer = data.get("initializer", {"in_channels": 4})
        four = isinstance(initializer, dict) and initializer.get("in_channels", 3) == 4
        data["input_adapter"] = (
            {"name": "identity"} if four else {"name": "conv_bn_relu", "kernel_size": 3}
        )
    data.setdefault("initial_memory", {"name": "conv_bn_relu", "kernel_size": 1})
    data.setdefault("initial_hidden", {"name": "conv_bn_relu", "kernel_size": 1})
    data.setdefault("encoder_projection", {"name": "conv", "kernel_size": 1})
    return data


def convert_legacy_config(data: dict[str, Any]) -> dict[str, Any]:
    """A rvoslib 0.1 flat config dict as a current ``fusion`` architecture config dict.

    Raises:
        ValueError: it uses a removed option, or has keys 0.1 did not have.
    """
    unknown = sorted(set(data) - set(_MOVED) - set(_REMOVED) - {"format_version"})
    if unknown:
        raise ValueError(
            f"config keys {unknown} are neither rvoslib 0.1 RVOSConfig fields nor a current "
            "config (no 'architecture' key)"
        )
    used = sorted(k for k, default in _REMOVED.items() if data.get(k, default) != default)
    if used:
        raise ValueError(
            f"this rvoslib 0.1 config uses {used}, removed in rvoslib 0.2 (they did not help "
            "the benchmark; see CHANGELOG.md): it cannot be loaded by this version"
        )
    value = {**_LEGACY_DEFAULTS, **data}
    hidden = value["hidden_dim"]
    name = value["backbone"]
    backbone: dict[str, Any] = (
        {"name": name} if name in _NAMED_BACKBONES else {"name": "timm", "model": name}
    )
    backbone.update(out_strides=list(value["out_strides"]), **value["backbone_kwargs"])
    text_encoder = {
        "name": "huggingface",
        "model_name_or_path": value["text_model"],
        "out_dim": hidden,
        "pooling": value["pooling"],
        "freeze": value["freeze_text"],
        "config": value["text_config"],
        "tokenizer": value["tokenizer"],
        "max_length": value["max_text_length"],
    }
    fusion = {
        "name": "cross_attention",
        "hidden_dim": hidden,
        "num_heads": value["num_heads"],
        "dropout": value["fusion_dropout"],
        "mode": value["fusion_mode"],
        "attention": value["attention"],
        "positions": value["fusion_positions"],
    }
    temporal = (
        {"name": "conv3d", "expansion": value["temporal_expansion"]}
        if value["temporal"]
        else {"name": "identity"}
    )
    if value["head"] == "simple":
        head = {
            "name": "simple",
            "hidden_channels": value["head_hidden"],
            "dropout": value["head_dropout"],
        }
    else:
        head = {
            "name": "fpn_dynamic" if value["head_dynamic_width"] > 0 else "fpn",
            "hidden_channels": value["head_hidden"],
            "dropout": value["head_dropout"],
            "film": bool(value["head_text_film"]),
        }
        if value["head_dynamic_width"] > 0:
            if not value["head_text_film"]:
                raise ValueError("a 0.1 config with head_dynamic_width needs head_text_film")
            head["dynamic_width"] = value["head_dynamic_width"]
    config = ARCHITECTURES.get("fusion").config_class(
        backbone=backbone, text_encoder=text_encoder, fusion=fusion, temporal=temporal, head=head
    )
    return config.to_dict()


_LEGACY_DEFAULTS: dict[str, Any] = {
    "backbone": "resnet50",
    "out_strides": (32,),
    "backbone_kwargs": {},
    "text_model": "bert-base-uncased",
    "text_config": None,
    "tokenizer": None,
    "pooling": "cls",
    "freeze_text": False,
    "max_text_length": 32,
    "hidden_dim": 256,
    "num_heads": 8,
    "fusion_dropout": 0.1,
    "fusion_mode": "sentence",
    "attention": "sdpa",
    "fusion_positions": False,
    "temporal": True,
    "temporal_expansion": 2,
    "head": "simple",
    "head_hidden": 256,
    "head_dropout": 0.3,
    "head_text_film": False,
    "head_dynamic_width": 0,
}
