"""The course-project design: backbone -> fusion with the expression -> temporal module -> head.

Every frame goes through the backbone, the coarsest level attends to the expression, a temporal
module mixes the frames, and a head predicts one mask per frame (the multi-scale heads also use
the finer levels). The criterion ``"mask"`` (weighted BCE, Dice and focal terms) trains it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

import rvoslib.losses.mask_criteria  # noqa: F401  registers the "mask" criterion
from rvoslib._checks import check_fit
from rvoslib.losses.registry import CRITERIA
from rvoslib.models.base import RVOSModel
from rvoslib.models.config import ArchitectureConfig, Part
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


def _fusion_inputs(built: Mapping[str, Any], config: Any) -> dict[str, Any]:
    return {
        "visual_channels": built["backbone"].out_channels[-1],
        "text_dim": built["text_encoder"].out_dim,
    }


def _head_inputs(built: Mapping[str, Any], config: Any) -> dict[str, Any]:
    backbone = built["backbone"]
    return {
        "in_channels": built["fusion"].out_channels,
        "skip_channels": list(backbone.out_channels[-2::-1]),
        "skip_strides": list(backbone.strides[-2::-1]),
        "text_dim": built["text_encoder"].out_dim,
    }


@dataclasses.dataclass
class FusionConfig(ArchitectureConfig):
    """Config of :class:`FusionModel` (defaults: ``seed-r50``), parts in build order.

    Attributes:
        backbone: Backbone spec (``BACKBONES``); its last level is fused with the text.
        text_encoder: Text encoder spec (``TEXT_ENCODERS``).
        fusion: Fusion spec (``FUSIONS``); receives ``visual_channels`` and ``text_dim``.
        temporal: Temporal module spec (``TEMPORAL_MODULES``; ``"identity"`` for none);
            receives ``channels`` (the fused map's).
        head: Head spec (``HEADS``); receives ``in_channels``, ``skip_channels``,
            ``skip_strides`` and ``text_dim``.
        criterion: Criterion spec (``CRITERIA``; ``"mask"``: the course-project weighted BCE,
            Dice and focal terms).
    """

    architecture: ClassVar[str] = "fusion"
    parts: ClassVar[dict[str, Part | Registry]] = {
        "backbone": BACKBONES,
        "text_encoder": TEXT_ENCODERS,
        "fusion": Part(FUSIONS, _fusion_inputs),
        "temporal": Part(TEMPORAL_MODULES, lambda built, config: {
            "channels": built["fusion"].out_channels}),
        "head": Part(HEADS, _head_inputs),
        "criterion": CRITERIA,
    }  # fmt: skip

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
    criterion: dict[str, Any] = dataclasses.field(default_factory=lambda: {"name": "mask"})


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
        criterion: Training criterion, ``criterion(outputs, batch)`` (``None``: the
            ``"mask"`` criterion with its default weights).

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
        criterion: nn.Module | None = None,
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
        self.criterion = criterion if criterion is not None else CRITERIA.build("mask")

    @staticmethod
    def _check_parts(
        backbone: nn.Module, text_encoder: nn.Module, fusion: nn.Module, temporal: nn.Module,
        head: nn.Module,
    ) -> None:  # fmt: skip
        check_fit("backbone", backbone.out_channels[-1], "fusion", fusion.visual_channels)
        check_fit("text_encoder", text_encoder.out_dim, "fusion", fusion.text_dim)
        check_fit("fusion", fusion.out_channels, "temporal", getattr(temporal, "channels", None))
        check_fit("fusion", fusion.out_channels, "head", getattr(head, "in_channels", None))

    def forward_outputs(self, frames: torch.Tensor, text: TextFeatures) -> dict[str, torch.Tensor]:
        """``frames (B, T, 3, H, W)`` -> ``{"logits": (B, T, 1, H, W)}``."""
        *finer, coarsest = self.backbone(frames)  # [(B, T, C_i, h_i, w_i)], fine to coarse
        fused = self.fusion(coarsest, text)  # (B, T, C, h, w)
        mixed = self.temporal(fused)
        logits = self.head(
            mixed, skips=finer[::-1], text=text, output_size=tuple(frames.shape[-2:])
        )
        return {"logits": logits}
