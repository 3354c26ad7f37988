"""MTTR (Botach et al., CVPR 2022): end-to-end referring video segmentation with one transformer.

::

    frames (B, T, 3, H, W) --backbone--> levels [(B, T, C_i, H/s_i, W/s_i)], fine to coarse
    expression --text encoder--> TextFeatures (tokens (B, L, D_t))
    coarsest level(s) + text tokens --transformer--> queries (Ly, B, T, N, D), memory
    finer levels + memory --pixel decoder--> pixels (B, T, P, H/4, W/4)
    queries --Linear(D, 2)--> is_referred (Ly, B, T, N, 2);  queries x pixels --mask head-->
    masks (Ly, B, T, N, H/4, W/4);  best query (time-averaged referred probability) -> logits

The parts are registered and swappable (``TRANSFORMERS``, ``PIXEL_DECODERS``, ``MASK_HEADS``,
``CRITERIA``); training uses MTTR's set criterion (:data:`MTTR_CRITERION`, the ``"set"``
criterion): Hungarian matching of query tracks, 2 x softmax "is referred" CE (no-object weight
0.1) + 5 x Dice + 2 x mask focal, at every decoder layer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar

import torch
from torch import nn

import rvoslib.models.heads.mask_heads  # registers the default parts: "kernel",
import rvoslib.models.heads.pixel_decoders  # "fpn_text"
import rvoslib.models.transformer.mttr  # noqa: F401  and "mttr"
from rvoslib._checks import check_fit
from rvoslib.losses.registry import CRITERIA
from rvoslib.models.architectures.query import QueryRVOSModel, plain_spec, select_referred
from rvoslib.models.config import ArchitectureConfig, Part
from rvoslib.models.registry import (
    ARCHITECTURES,
    BACKBONES,
    MASK_HEADS,
    PIXEL_DECODERS,
    TEXT_ENCODERS,
    TRANSFORMERS,
    Registry,
)
from rvoslib.models.text import TextFeatures

__all__ = ["MTTR_CRITERION", "MTTRConfig", "MTTRModel"]

#: MTTR's criterion (``configs/*.yaml``): loss weights is_referred 2, dice 5, sigmoid focal 2,
#: no-object weight 0.1; matching ``set_cost_is_referred: 2``, ``set_cost_dice: 5``; every
#: decoder layer supervised (``aux_loss``).
MTTR_CRITERION: Mapping[str, Any] = MappingProxyType({
    "name": "set",
    "weights": MappingProxyType({"class": 2.0, "dice": 5.0, "mask_focal": 2.0}),
    "no_object_weight": 0.1,
    "class_loss": "softmax",
    "matcher": MappingProxyType({"class_weight": 2.0, "dice_weight": 5.0}),
    "aux_loss": True,
})  # fmt: skip


def _levels(built: Mapping[str, Any], config: Any) -> int:
    """``transformer_levels`` for wiring the parts, kept in range so that the parts build;
    :class:`MTTRModel` checks the value itself."""
    return min(max(int(config.transformer_levels), 1), len(built["backbone"].out_channels))


@dataclasses.dataclass
class MTTRConfig(ArchitectureConfig):
    """Config of :class:`MTTRModel` (defaults: ``mttr-swin-t-rvoslib``; the ``mttr-swin-t``
    preset, MTTR's released settings, adds MTTR's text projection and no truncation).

    Attributes:
        backbone: Backbone spec (MTTR: Video-Swin-T, patch ``(1, 4, 4)``, strides 4/8/16).
        text_encoder: Text encoder spec (MTTR: frozen ``roberta-base``, projected to 256).
        transformer: ``TRANSFORMERS`` spec; receives the channels of the levels it takes and
            the text width.
        pixel_decoder: ``PIXEL_DECODERS`` spec; receives the channels of the finer backbone
            levels followed by the transformer memory's, and the text width.
        mask_head: ``MASK_HEADS`` spec; receives the query width and the pixel channels.
        criterion: ``CRITERIA`` spec (default :data:`MTTR_CRITERION`: the ``"set"`` criterion
            with its ``weights``, ``no_object_weight``, ``class_loss``, ``matcher`` cost weights
            and ``aux_loss``, whether every decoder layer is supervised).
        transformer_levels: How many of the coarsest backbone levels the transformer takes
            (MTTR: 1); the finer ones go to the pixel decoder.
    """

    architecture: ClassVar[str] = "mttr"
    parts: ClassVar[dict[str, Part | Registry]] = {
        "backbone": BACKBONES,
        "text_encoder": TEXT_ENCODERS,
        "transformer": Part(TRANSFORMERS, lambda built, config: {
            "visual_channels": list(built["backbone"].out_channels[-_levels(built, config):]),
            "text_dim": built["text_encoder"].out_dim,
        }),
        "pixel_decoder": Part(PIXEL_DECODERS, lambda built, config: {
            "in_channels": [
                *built["backbone"].out_channels[: -_levels(built, config)],
                *[built["transformer"].d_model] * _levels(built, config),
            ],
            "text_dim": built["text_encoder"].out_dim,
        }),
        "mask_head": Part(MASK_HEADS, lambda built, config: {
            "query_dim": built["transformer"].d_model,
            "pixel_channels": built["pixel_decoder"].out_channels,
        }),
        "criterion": CRITERIA,
    }  # fmt: skip

    backbone: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {
            "name": "video_swin_t",
            "out_strides": [4, 8, 16],
            "window_size": [8, 7, 7],
            "drop_path_rate": 0.1,
        }
    )
    text_encoder: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {
            "name": "huggingface",
            "model_name_or_path": "roberta-base",
            "freeze": True,
            "out_dim": 256,
            "pooling": "mean",
            "max_length": 64,
        }
    )
    transformer: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {
            "name": "mttr",
            "d_model": 256,
            "num_heads": 8,
            "num_encoder_layers": 3,
            "num_decoder_layers": 3,
            "ffn_dim": 2048,
            "dropout": 0.1,
            "num_queries": 50,
        }
    )
    pixel_decoder: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"name": "fpn_text", "out_channels": 8}
    )
    mask_head: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"name": "kernel", "num_layers": 2}
    )
    criterion: dict[str, Any] = dataclasses.field(
        default_factory=lambda: plain_spec(MTTR_CRITERION)
    )
    transformer_levels: int = 1


@ARCHITECTURES.register("mttr")
class MTTRModel(QueryRVOSModel):
    """MTTR built from registered parts (see the module docstring for the data flow).

    Args:
        backbone: Multi-scale visual features, fine to coarse.
        text_encoder: Expression encoder.
        transformer: Multimodal transformer (``TRANSFORMERS`` contract); its
            ``visual_channels`` must be the channels of the ``transformer_levels`` coarsest
            backbone levels.
        pixel_decoder: ``PIXEL_DECODERS`` part taking the finer levels and the memory.
        mask_head: ``MASK_HEADS`` part.
        criterion: A ``CRITERIA`` part reading ``is_referred (Ly, B, T, N, 2)`` and ``masks``
            (e.g. :class:`~rvoslib.losses.QuerySetCriterion` with ``class_loss="softmax"``).
        transformer_levels: Backbone levels given to the transformer (the coarsest ones).

    Raises:
        ValueError: parts whose channels do not fit (names both), or a bad option.

    Example:
        >>> from rvoslib.models.presets_query_mttr import mttr_tiny
        >>> model = MTTRModel.from_config(mttr_tiny()).eval()
        >>> tokens = model.tokenize(["the red circle"])
        >>> model(torch.randn(1, 2, 3, 64, 64), tokens["input_ids"]).shape
        torch.Size([1, 2, 1, 64, 64])
    """

    config_class = MTTRConfig

    def __init__(
        self,
        *,
        backbone: nn.Module,
        text_encoder: nn.Module,
        transformer: nn.Module,
        pixel_decoder: nn.Module,
        mask_head: nn.Module,
        criterion: nn.Module,
        transformer_levels: int = 1,
    ) -> None:
        super().__init__()
        num_levels = len(backbone.out_channels)
        if isinstance(transformer_levels, bool) or not 1 <= transformer_levels <= num_levels:
            raise ValueError(
                f"transformer_levels must be in [1, {num_levels}] (the backbone's levels), got "
                f"{transformer_levels!r}"
            )
        d_model = int(transformer.d_model)
        check_fit(
            "backbone", list(backbone.out_channels[-transformer_levels:]),
            "transformer", list(getattr(transformer, "visual_channels", [])) or None,
        )  # fmt: skip
        check_fit("text_encoder", text_encoder.out_dim, "transformer",
                   getattr(transformer, "text_dim", None))  # fmt: skip
        decoder_inputs = [*backbone.out_channels[:-transformer_levels]]
        decoder_inputs += [d_model] * transformer_levels
        check_fit("backbone + transformer memory", decoder_inputs, "pixel_decoder",
                   getattr(pixel_decoder, "in_channels", None))  # fmt: skip
        check_fit("transformer", d_model, "mask_head", getattr(mask_head, "query_dim", None))
        check_fit("pixel_decoder", pixel_decoder.out_channels, "mask_head",
                   getattr(mask_head, "pixel_channels", None))  # fmt: skip
        self.backbone = backbone
        self.text_encoder = text_encoder
        self.transformer = transformer
        self.pixel_decoder = pixel_decoder
        self.mask_head = mask_head
        self.is_referred_head = nn.Linear(d_model, 2)
        self.transformer_levels = int(transformer_levels)
        self.criterion = criterion

    # ------------------------------------------------------------------ forward
    def decode(
        self, levels: Sequence[torch.Tensor], text: TextFeatures
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The transformer and the pixel decoder on backbone levels.

        Args:
            levels: ``[(B, T, C_i, h_i, w_i)]`` backbone levels, fine to coarse.
            text: :class:`TextFeatures` of batch ``B``.

        Returns:
            ``queries (Ly, B, T, N, D)`` and ``pixels (B, T, P, h_0, w_0)``.
        """
        split = len(levels) - self.transformer_levels
        fused = self.transformer(list(levels[split:]), text)
        pixels = self.pixel_decoder([*levels[:split], *fused["memory"]], text)
        return fused["queries"], pixels

    def predict_queries(
        self, queries: torch.Tensor, pixels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The heads: ``queries (Ly, B, T, N, D)``, ``pixels (B, T, P, h, w)`` ->
        ``{"is_referred": (Ly, B, T, N, 2), "masks": (Ly, B, T, N, h, w)}``."""
        return {
            "is_referred": self.is_referred_head(queries),
            "masks": self.mask_head(queries, pixels),
        }

    def forward_outputs(self, frames: torch.Tensor, text: TextFeatures) -> dict[str, torch.Tensor]:
        """``frames (B, T, 3, H, W)`` -> ``is_referred (Ly, B, T, N, 2)``, ``masks (Ly, B, T,
        N, H/4, W/4)`` and ``logits (B, T, 1, H, W)`` (the best query of the last layer)."""
        queries, pixels = self.decode(self.backbone(frames), text)
        outputs = self.predict_queries(queries, pixels)
        outputs["logits"] = select_referred(
            outputs["is_referred"][-1], outputs["masks"][-1], tuple(frames.shape[-2:])
        )
        return outputs
