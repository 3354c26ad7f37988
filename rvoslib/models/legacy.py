"""Reading what rvoslib 0.1 wrote: its flat ``RVOSConfig`` (27 fields) as part specs.

rvoslib 0.1 described the seed design with one flat config. Folders it saved keep loading:
:func:`convert_legacy_config` turns the flat dict into a :class:`FusionConfig` dict with the
same weights layout. Options that 0.1 had but that did not help (fusion gating, pooled levels,
the top-down neck, the head's image branch and pixel-shuffle upsampling) were removed; a folder
that used one of them cannot be converted and says so.
"""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["RVOSConfig", "convert_legacy_config", "moved_option_hint"]

_NAMED_BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "tinycnn")
#: rvoslib 0.1 option -> (part, keyword) it became.
_MOVED = {
    "backbone": ("backbone", "name (or model with name 'timm')"),
    "out_strides": ("backbone", "out_strides"),
    "backbone_kwargs": ("backbone", "its keywords"),
    "text_model": ("text_encoder", "model_name_or_path"),
    "text_config": ("text_encoder", "config"),
    "tokenizer": ("text_encoder", "tokenizer"),
    "pooling": ("text_encoder", "pooling"),
    "freeze_text": ("text_encoder", "freeze"),
    "max_text_length": ("text_encoder", "max_length"),
    "hidden_dim": ("fusion", "hidden_dim (and text_encoder out_dim)"),
    "num_heads": ("fusion", "num_heads"),
    "fusion_dropout": ("fusion", "dropout"),
    "fusion_mode": ("fusion", "mode"),
    "attention": ("fusion", "attention"),
    "fusion_positions": ("fusion", "positions"),
    "temporal": ("temporal", "name: 'conv3d' or 'identity'"),
    "temporal_expansion": ("temporal", "expansion"),
    "head": ("head", "name: 'simple' or 'fpn'"),
    "head_hidden": ("head", "hidden_channels"),
    "head_dropout": ("head", "dropout"),
    "head_text_film": ("head", "film"),
    "head_dynamic_width": ("head", "name 'fpn_dynamic', dynamic_width"),
}
_REMOVED = {
    "fusion_gating": False,
    "fusion_pooled_levels": False,
    "neck": False,
    "head_image_channels": 0,
    "head_upsample": "bilinear",
}


def moved_option_hint(key: str) -> str:
    """A sentence saying where a rvoslib 0.1 option went (empty for other keys)."""
    if key in _MOVED:
        part, keyword = _MOVED[key]
        return f"; {key!r} is now the {part} spec's {keyword}, e.g. {part}={{...}}"
    if key in _REMOVED:
        return f"; {key!r} was removed in rvoslib 0.2 (it did not help; see CHANGELOG.md)"
    return ""


def convert_legacy_config(data: dict[str, Any]) -> dict[str, Any]:
    """A rvoslib 0.1 flat config dict as a current ``fusion`` architecture config dict.

    Raises:
        ValueError: it uses a removed option, or has keys 0.1 did not have.
    """
    from rvoslib.models.architectures.fusion import FusionConfig

    unknown = sorted(set(data) - set(_MOVED) - set(_REMOVED))
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
    config = FusionConfig(
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


class RVOSConfig:
    """Deprecated: rvoslib 0.1's flat config. ``RVOSConfig(**fields)`` returns the equivalent
    :class:`~rvoslib.models.architectures.fusion.FusionConfig` (with a ``DeprecationWarning``).
    """

    def __new__(cls, **fields: Any):  # type: ignore[misc]
        warnings.warn(
            "RVOSConfig is deprecated since rvoslib 0.2: use FusionConfig (part specs) or "
            "create_model(preset, <part>={...})",
            DeprecationWarning,
            stacklevel=2,
        )
        from rvoslib.models.architectures.fusion import FusionConfig

        return FusionConfig.from_dict(convert_legacy_config(fields))

    @classmethod
    def from_dict(cls, data: dict[str, Any]):  # type: ignore[no-untyped-def]
        """Deprecated: ``RVOSConfig(**data)``."""
        return cls(**data)
