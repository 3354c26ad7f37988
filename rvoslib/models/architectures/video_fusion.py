"""Motion before language: backbone -> temporal module -> fusion with the expression -> head.

The course-project design (:class:`~rvoslib.models.architectures.fusion.FusionModel`) fuses
every frame with the expression on its own and mixes frames afterwards, so the cross-attention
that matches words to places sees no motion: "the square moving left" can only be resolved by
the temporal module after the words have been reduced to per-pixel features. Here the temporal
module runs on the coarsest visual level first, so the visual tokens that the expression attends
to already describe how each place changes over the clip (as in video backbones such as
Video-Swin, which the query-based designs use for the same reason).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from rvoslib._checks import check_fit
from rvoslib.models.architectures.fusion import FusionConfig, FusionModel
from rvoslib.models.config import Part
from rvoslib.models.registry import ARCHITECTURES, TEMPORAL_MODULES, Registry
from rvoslib.models.text import TextFeatures

__all__ = ["VideoFusionConfig", "VideoFusionModel"]


@dataclasses.dataclass
class VideoFusionConfig(FusionConfig):
    """Config of :class:`VideoFusionModel`: the fields of :class:`FusionConfig`; the temporal
    module receives the backbone's last ``out_channels`` as ``channels``."""

    architecture: ClassVar[str] = "video_fusion"
    parts: ClassVar[dict[str, Part | Registry]] = {
        **FusionConfig.parts,
        "temporal": Part(TEMPORAL_MODULES, lambda built, config: {
            "channels": built["backbone"].out_channels[-1]}),
    }  # fmt: skip
    temporal: dict[str, Any] = dataclasses.field(default_factory=lambda: {"name": "conv3d"})


@ARCHITECTURES.register("video_fusion")
class VideoFusionModel(FusionModel):
    """Backbone -> temporal module -> fusion -> head, built from injected parts.

    Args:
        backbone: Multi-scale visual features ``[(B, T, C_i, h_i, w_i)]``, coarsest last.
        text_encoder: Expression encoder (:class:`~rvoslib.models.TextEncoder`).
        fusion: Fuses the temporally mixed coarsest level with the text.
        temporal: Mixes frames of the coarsest level, ``(B, T, C_last, h, w)`` in and out.
        head: Predicts ``(B, T, 1, H, W)`` logits from the fused map and the finer levels.
        criterion: Training criterion (``None``: ``"mask"``).

    Raises:
        ValueError: neighbouring parts' channels do not match (names both parts).

    Example:
        >>> from rvoslib import create_model
        >>> model = create_model("tiny-video")
        >>> type(model).__name__, model.config.architecture
        ('VideoFusionModel', 'video_fusion')
    """

    config_class = VideoFusionConfig

    @staticmethod
    def _check_parts(
        backbone: nn.Module, text_encoder: nn.Module, fusion: nn.Module, temporal: nn.Module,
        head: nn.Module,
    ) -> None:  # fmt: skip
        last = backbone.out_channels[-1]
        check_fit("backbone", last, "temporal", getattr(temporal, "channels", None))
        check_fit("temporal", last, "fusion", fusion.visual_channels)
        check_fit("text_encoder", text_encoder.out_dim, "fusion", fusion.text_dim)
        check_fit("fusion", fusion.out_channels, "head", getattr(head, "in_channels", None))

    def levels(self, frames: torch.Tensor, text: TextFeatures) -> list[torch.Tensor]:
        """The backbone's levels ``[(B, T, C_i, h_i, w_i)]``, fine to coarse (``text`` unused
        here; subclasses may condition the backbone on it)."""
        return self.backbone(frames)

    def forward_outputs(self, frames: torch.Tensor, text: TextFeatures) -> dict[str, torch.Tensor]:
        """``frames (B, T, 3, H, W)`` -> ``{"logits": (B, T, 1, H, W)}``."""
        *finer, coarsest = self.levels(frames, text)  # [(B, T, C_i, h_i, w_i)], fine to coarse
        moving = self.temporal(coarsest)  # (B, T, C_last, h, w): each place's change over time
        fused = self.fusion(moving, text)  # (B, T, C, h, w)
        logits = self.head(
            fused, skips=finer[::-1], text=text, output_size=tuple(frames.shape[-2:])
        )
        return {"logits": logits}
