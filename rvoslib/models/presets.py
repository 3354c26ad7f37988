"""Named model presets and the ``create_model`` factory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rvoslib.models.rvos import RVOSConfig, RVOSModel

__all__ = ["create_model", "get_preset_config", "list_presets", "register_preset"]

TINY_TEXT_CONFIG = {
    "model_type": "bert",
    "vocab_size": 4096,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 128,
    "max_position_embeddings": 64,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}


def _tiny() -> RVOSConfig:
    return RVOSConfig(
        backbone="tinycnn",
        out_strides=(4, 8, 16),
        backbone_kwargs={"channels": [32, 64, 128, 128], "refine_last": False},
        text_model="tiny",
        text_config=dict(TINY_TEXT_CONFIG),
        tokenizer="hash",
        pooling="mean",
        max_text_length=16,
        hidden_dim=64,
        num_heads=4,
        fusion_dropout=0.0,
        fusion_mode="tokens",
        fusion_positions=True,
        temporal_expansion=1,
        head="multiscale",
        head_hidden=32,
        head_dropout=0.0,
        head_text_film=True,
    )


def _seed(backbone: str) -> Callable[[], RVOSConfig]:
    def build() -> RVOSConfig:
        return RVOSConfig(
            backbone=backbone,
            out_strides=(32,),
            text_model="bert-base-uncased",
            pooling="cls",
            hidden_dim=256,
            num_heads=8,
            fusion_mode="sentence",
            head="simple",
            head_hidden=256,
            head_dropout=0.3,
        )

    return build


def _rvos_r50() -> RVOSConfig:
    return RVOSConfig(
        backbone="resnet50",
        out_strides=(4, 8, 16, 32),
        text_model="bert-base-uncased",
        pooling="mean",
        hidden_dim=256,
        num_heads=8,
        fusion_mode="tokens",
        fusion_positions=True,
        head="multiscale",
        head_hidden=128,
        head_dropout=0.1,
        head_text_film=True,
    )


_PRESETS: dict[str, Callable[[], RVOSConfig]] = {
    "tiny": _tiny,
    "seed-r18": _seed("resnet18"),
    "seed-r50": _seed("resnet50"),
    "rvos-r50": _rvos_r50,
}

PRESET_DESCRIPTIONS = {
    "tiny": "tinycnn + 2-layer BERT with a built-in tokenizer; token fusion, multi-scale head. "
    "Fast on CPU, needs no downloaded file.",
    "seed-r18": "Reference design: ResNet-18 + bert-base-uncased (cls), sentence fusion, x32 head.",
    "seed-r50": "Reference design: ResNet-50 + bert-base-uncased (cls), sentence fusion, x32 head.",
    "rvos-r50": "ResNet-50 + bert-base-uncased (mean), token fusion, multi-scale head with FiLM.",
}


def register_preset(name: str, build: Callable[[], RVOSConfig], description: str = "") -> None:
    """Add a preset; ``build()`` returns its :class:`RVOSConfig`.

    Raises:
        ValueError: the name is taken.
    """
    if name in _PRESETS:
        raise ValueError(f"preset {name!r} already exists")
    _PRESETS[name] = build
    PRESET_DESCRIPTIONS[name] = description


def list_presets() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    return sorted(_PRESETS)


def get_preset_config(name: str, **overrides: Any) -> RVOSConfig:
    """The :class:`RVOSConfig` of a preset with fields overridden.

    Raises:
        KeyError: unknown preset (lists the valid names).
        ValueError: an override is not a config field (lists the valid fields).
    """
    if name not in _PRESETS:
        raise KeyError(f"unknown preset {name!r}; valid presets: {', '.join(list_presets())}")
    config = _PRESETS[name]()
    return config.replace(**overrides) if overrides else config


def create_model(name: str, pretrained: bool = False, **overrides: Any) -> RVOSModel:
    """Build a preset model.

    Args:
        name: A name from :func:`list_presets`.
        pretrained: Load the backbone's ImageNet weights and the pretrained language model
            (downloads when not cached). ``False`` builds random weights offline.
        **overrides: :class:`RVOSConfig` fields to change, e.g. ``hidden_dim=128``.

    Raises:
        KeyError: unknown preset name (the message lists the valid ones).

    Example:
        >>> model = create_model("tiny")
        >>> model.config.backbone
        'tinycnn'
    """
    config = get_preset_config(name, **overrides)
    if pretrained and config.backbone == "tinycnn":
        raise ValueError(f"preset {name!r} has no pretrained weights; use pretrained=False")
    return RVOSModel.from_config(config, pretrained=pretrained)
