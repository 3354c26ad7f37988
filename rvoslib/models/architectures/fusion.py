"""The seed design: backbone -> fusion with the expression -> temporal module -> head.

Seeds ``000``/``001`` (the course project): every frame goes through the backbone, the coarsest
level attends to the expression, a temporal module mixes the frames, and a head predicts one
mask per frame (the multi-scale heads also use the finer levels).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import torch
from torch import nn

from rvoslib._checks import check_fit
from rvoslib.losses import RVOSLoss
from rvoslib.models.base import RVOSModel
from rvoslib.models.config import ArchitectureConfig
from rvoslib.models.registry import (
    ARCHITECTURES,
    BACKBONES,
    FUSIONS,
    HEADS,
    TEMPORAL_MODULES,
    TEXT_ENCODERS,
    Registry,
)
from rvoslib.models.text import TextFeatures

__all__ = ["FusionConfig", "FusionModel"]


#: The seed design's loss: BCE 0.3 + Dice 0.6 + focal 0.1 (keyword arguments of RVOSLoss).
DEFAULT_LOSS: Mapping[str, float] = MappingProxyType(
    {"bce_weight": 0.3, "dice_weight": 0.6, "focal_weight": 0.1}
)


def _default_loss() -> dict[str, float]:
    return dict(DEFAULT_LOSS)


@dataclasses.dataclass
class FusionConfig(ArchitectureConfig):
    """Config of :class:`FusionModel` (the seed design; defaults: ``seed-r50``).

    Attributes:
        backbone: Backbone spec (``BACKBONES``); its last level is fused with the text.
        text_encoder: Text encoder spec (``TEXT_ENCODERS``).
        fusion: Fusion spec (``FUSIONS``); receives ``visual_channels`` and ``text_dim``.
        temporal: Temporal module spec (``TEMPORAL_MODULES``; ``"identity"`` for none);
            receives ``channels``.
        head: Head spec (``HEADS``); receives ``in_channels``, ``skip_channels``,
            ``skip_strides`` and ``text_dim``.
        loss: Keyword arguments of :class:`~rvoslib.losses.RVOSLoss` (term weights).
    """

    architecture: ClassVar[str] = "fusion"
    parts: ClassVar[dict[str, Registry]] = {
        "backbone": BACKBONES,
        "text_encoder": TEXT_ENCODERS,
        "fusion": FUSIONS,
        "temporal": TEMPORAL_MODULES,
        "head": HEADS,
    }

    backbone: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"name": "resnet50", "out_strides": [32]}
    )
    text_encoder: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"name": "huggingface", "model_name_or_path": "bert-base-uncased"}
    )
    fusion: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"name": "cross_attention", "hidden_dim": 256}
    )
    temporal: dict[str, Any] = dataclasses.field(default_factory=lambda: {"name": "conv3d"})
    head: dict[str, Any] = dataclasses.field(default_factory=lambda: {"name": "simple"})
    loss: dict[str, float] = dataclasses.field(default_factory=_default_loss)


@ARCHITECTURES.register("fusion")
class FusionModel(RVOSModel):
    """Backbone -> fusion -> temporal module -> head, built from injected parts.

    Args:
        backbone: Multi-scale visual features ``[(B, T, C_i, h_i, w_i)]``, coarsest last.
        text_encoder: Expression encoder (:class:`~rvoslib.models.TextEncoder`).
        fusion: Fuses the coarsest level with the text; its ``visual_channels`` must equal
            the backbone's last ``out_channels``.
        temporal: Mixes frames, ``(B, T, C, h, w)`` in and out (``None``: no mixing, the
            ``"identity"`` temporal module).
        head: Predicts ``(B, T, 1, H, W)`` logits from the fused map and the finer levels.
        loss: Keyword arguments of :class:`~rvoslib.losses.RVOSLoss`.

    Raises:
        ValueError: neighbouring parts' channels do not match (names both parts).

    Example:
        >>> from rvoslib import create_model
        >>> model = create_model("tiny", temporal={"name": "identity"})
        >>> model.config.temporal
        {'name': 'identity'}
    """

    config_class = FusionConfig

    def __init__(
        self,
        *,
        backbone: nn.Module,
        text_encoder: nn.Module,
        fusion: nn.Module,
        temporal: nn.Module | None,
        head: nn.Module,
        loss: Mapping[str, float] = DEFAULT_LOSS,
    ) -> None:
        super().__init__()
        if temporal is None:
            from rvoslib.models.temporal.identity import NoTemporalMixing

            temporal = NoTemporalMixing(fusion.out_channels)
        self._check_parts(backbone, text_encoder, fusion, temporal, head)
        self.backbone = backbone
        self.text_encoder = text_encoder
        self.fusion = fusion
        self.temporal = temporal
        self.head = head
        self.criterion = RVOSLoss(**loss)

    @staticmethod
    def _check_parts(
        backbone: nn.Module, text_encoder: nn.Module, fusion: nn.Module, temporal: nn.Module,
        head: nn.Module,
    ) -> None:  # fmt: skip
        check_fit("backbone", backbone.out_channels[-1], "fusion", fusion.visual_channels)
        check_fit("text_encoder", text_encoder.out_dim, "fusion", fusion.text_dim)
        check_fit("fusion", fusion.out_channels, "temporal", getattr(temporal, "channels", None))
        check_fit("fusion", fusion.out_channels, "head", getattr(head, "in_channels", None))

    @staticmethod
    def _temporal_channels(backbone: nn.Module, fusion: nn.Module) -> int:
        """Channels of the map the temporal module mixes: the fused map's."""
        return fusion.out_channels

    @classmethod
    def build(cls, config: FusionConfig, *, pretrained: bool = False) -> FusionModel:
        """Build the parts from ``config``'s specs, passing each its neighbours' shapes."""
        backbone = BACKBONES.build(config.backbone, pretrained=pretrained)
        text_encoder = TEXT_ENCODERS.build(config.text_encoder, pretrained=pretrained)
        fusion = FUSIONS.build(
            config.fusion,
            visual_channels=backbone.out_channels[-1],
            text_dim=text_encoder.out_dim,
        )
        extra = cls._build_extra_parts(config, backbone)
        temporal = TEMPORAL_MODULES.build(
            config.temporal, channels=cls._temporal_channels(backbone, fusion)
        )
        head = HEADS.build(
            config.head,
            in_channels=fusion.out_channels,
            skip_channels=list(backbone.out_channels[-2::-1]),
            skip_strides=list(backbone.strides[-2::-1]),
            text_dim=text_encoder.out_dim,
        )
        return cls(
            backbone=backbone,
            text_encoder=text_encoder,
            fusion=fusion,
            temporal=temporal,
            head=head,
            loss=config.loss,
            **extra,
        )

    @classmethod
    def _build_extra_parts(cls, config: FusionConfig, backbone: nn.Module) -> dict[str, Any]:
        """Constructor arguments a subclass adds to the five parts (built after the fusion,
        before the temporal module); none here."""
        return {}

    def forward_outputs(self, frames: torch.Tensor, text: TextFeatures) -> dict[str, torch.Tensor]:
        """``frames (B, T, 3, H, W)`` -> ``{"logits": (B, T, 1, H, W)}``."""
        *finer, coarsest = self.backbone(frames)  # [(B, T, C_i, h_i, w_i)], fine to coarse
        fused = self.fusion(coarsest, text)  # (B, T, C, h, w)
        mixed = self.temporal(fused)
        logits = self.head(
            mixed, skips=finer[::-1], text=text, output_size=tuple(frames.shape[-2:])
        )
        return {"logits": logits}

    def losses(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Weighted BCE, Dice and focal terms of :class:`~rvoslib.losses.RVOSLoss` against
        ``batch["masks"] (B, T, H, W)`` (``valid (B, T)`` and ``void`` masks respected)."""
        terms = self.criterion.terms(
            outputs["logits"],
            batch["masks"],
            batch.get("valid"),
            batch.get("void"),
            check_inputs=False,
        )
        criterion = self.criterion
        return {
            "bce": criterion.bce_weight * terms.bce,
            "dice": criterion.dice_weight * terms.dice,
            "focal": criterion.focal_weight * terms.focal,
        }
