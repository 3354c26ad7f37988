"""ReferFormer (Wu et al., CVPR 2022): language as queries for referring video segmentation.

Wiring (shapes for a clip ``(B, T, 3, H, W)``, ``D = d_model``, ``N`` queries per frame,
``Ly`` decoder layers)::

    frames --backbone--> levels (B, T, C_i, H/s_i, W/s_i), s = 4, 8, 16, 32
    text_ids --text encoder--> sentence (B, E), tokens (B, L, E)
    levels[1:] + text --transformer--> queries (Ly, B, T, N, D), boxes (Ly, B, T, N, 4),
        references (Ly, B, T, N, 4), memory [(B, T, D, h_i, w_i)] (strides 8, 16, 32, 64)
    queries --class heads--> is_referred (Ly, B, T, N, 1)
    [levels[0], memory at strides 8/16/32] + text --pixel decoder--> pixels (B, T, P, H/4, W/4)
    queries + pixels + reference centres --mask head--> masks (Ly, B, T, N, H/4, W/4)
    best query (time-averaged score, last layer) --> logits (B, T, 1, H, W)

The finest backbone level feeds only the pixel decoder; the others feed the transformer, whose
memory of those levels feeds the pixel decoder (ReferFormer's layout). Losses: the ``criterion``
part, by default ReferFormer's set criterion (:data:`REFERFORMER_CRITERION`) at every decoder
layer.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import torch
from torch import nn

from rvoslib._checks import check_fit
from rvoslib.losses.registry import CRITERIA
from rvoslib.models.architectures.query import QueryRVOSModel, plain_spec, select_referred
from rvoslib.models.config import ArchitectureConfig, Part
from rvoslib.models.heads import condinst as _condinst  # noqa: F401  (registers the parts)
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
from rvoslib.models.transformer import referformer as _transformer  # noqa: F401  (registers)

__all__ = ["REFERFORMER_CRITERION", "ReferFormerConfig", "ReferFormerModel"]

#: ReferFormer's criterion: focal class 2, box L1 5, GIoU 2, mask focal 2, Dice 5, matched with
#: the same cost weights, at every decoder layer.
REFERFORMER_CRITERION: Mapping[str, Any] = MappingProxyType({
    "name": "set",
    "weights": MappingProxyType(
        {"class": 2.0, "box_l1": 5.0, "giou": 2.0, "mask_focal": 2.0, "dice": 5.0}
    ),
    "no_object_weight": 0.1,
    "class_loss": "focal",
    "matcher": MappingProxyType({"class_weight": 2.0, "box_l1_weight": 5.0, "giou_weight": 2.0,
                                 "mask_focal_weight": 2.0, "dice_weight": 5.0}),
    "aux_loss": True,
})  # fmt: skip


@dataclasses.dataclass
class ReferFormerConfig(ArchitectureConfig):
    """Config of :class:`ReferFormerModel` (defaults: ``referformer-swin-t-rvoslib``'s parts).

    Attributes:
        backbone: ``BACKBONES`` spec; at least 2 levels, the finest at stride 4.
        text_encoder: ``TEXT_ENCODERS`` spec.
        transformer: ``TRANSFORMERS`` spec; receives ``visual_channels`` (the backbone levels
            but the finest) and ``text_dim``.
        pixel_decoder: ``PIXEL_DECODERS`` spec; receives ``in_channels`` (the finest backbone
            level, then ``d_model`` per other level) and ``text_dim = d_model``.
        mask_head: ``MASK_HEADS`` spec; receives ``query_dim = d_model`` and
            ``pixel_channels``.
        criterion: ``CRITERIA`` spec (default :data:`REFERFORMER_CRITERION`: the ``"set"``
            criterion with the focal class loss, its term weights and matcher cost weights).
    """

    architecture: ClassVar[str] = "referformer"
    parts: ClassVar[dict[str, Part | Registry]] = {
        "backbone": BACKBONES,
        "text_encoder": TEXT_ENCODERS,
        "transformer": Part(TRANSFORMERS, lambda built, config: {
            "visual_channels": list(built["backbone"].out_channels[1:]),
            "text_dim": built["text_encoder"].out_dim,
        }),
        "pixel_decoder": Part(PIXEL_DECODERS, lambda built, config: {
            "in_channels": [built["backbone"].out_channels[0]]
            + [built["transformer"].d_model] * (len(built["backbone"].out_channels) - 1),
            "text_dim": built["transformer"].d_model,
        }),
        "mask_head": Part(MASK_HEADS, lambda built, config: {
            "query_dim": built["transformer"].d_model,
            "pixel_channels": built["pixel_decoder"].out_channels,
        }),
        "criterion": CRITERIA,
    }  # fmt: skip

    backbone: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"name": "video_swin_t", "out_strides": [4, 8, 16, 32]}
    )
    text_encoder: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"name": "huggingface", "model_name_or_path": "roberta-base",
                                 "pooling": "cls", "out_dim": 256, "freeze": True}
    )  # fmt: skip
    transformer: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"name": "deformable_referformer"}
    )
    pixel_decoder: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"name": "cross_modal_fpn"}
    )
    mask_head: dict[str, Any] = dataclasses.field(default_factory=lambda: {"name": "condinst"})
    criterion: dict[str, Any] = dataclasses.field(
        default_factory=lambda: plain_spec(REFERFORMER_CRITERION)
    )


@ARCHITECTURES.register("referformer")
class ReferFormerModel(QueryRVOSModel):
    """ReferFormer from injected parts (see the module docstring for the wiring).

    Args:
        backbone: Levels ``[(B, T, C_i, h_i, w_i)]``, finest (stride 4) first.
        text_encoder: Expression encoder.
        transformer: A ``TRANSFORMERS`` part
            (:class:`~rvoslib.models.transformer.referformer.ReferFormerTransformer`).
        pixel_decoder: A ``PIXEL_DECODERS`` part.
        mask_head: A ``MASK_HEADS`` part taking ``reference_points``.
        criterion: A ``CRITERIA`` part reading ``is_referred (Ly, B, T, N, 1)``, ``boxes`` and
            ``masks`` (e.g. the ``"set"`` criterion with ``class_loss="focal"``).

    Raises:
        ValueError: neighbouring parts do not fit (names both).

    Example:
        >>> from rvoslib.models.presets_query_deformable import referformer_tiny
        >>> model = ReferFormerModel.from_config(referformer_tiny()).eval()
        >>> tokens = model.tokenize(["the red circle"])
        >>> model(torch.randn(1, 2, 3, 64, 64), tokens["input_ids"]).shape
        torch.Size([1, 2, 1, 64, 64])
    """

    config_class = ReferFormerConfig

    def __init__(
        self,
        *,
        backbone: nn.Module,
        text_encoder: nn.Module,
        transformer: nn.Module,
        pixel_decoder: nn.Module,
        mask_head: nn.Module,
        criterion: nn.Module,
    ) -> None:
        super().__init__()
        channels = list(backbone.out_channels)
        if len(channels) < 2:
            raise ValueError(
                f"the backbone must give >= 2 levels (the finest for the pixel decoder, the "
                f"others for the transformer), got out_channels={channels}"
            )
        check_fit("backbone levels 1..", channels[1:], "transformer", transformer.visual_channels)
        check_fit("text_encoder", text_encoder.out_dim, "transformer", transformer.text_dim)
        decoder_inputs = [channels[0]] + [transformer.d_model] * (len(channels) - 1)
        check_fit(
            "backbone + transformer", decoder_inputs, "pixel_decoder", pixel_decoder.in_channels
        )
        check_fit("transformer", transformer.d_model, "mask_head", mask_head.query_dim)
        check_fit(
            "pixel_decoder", pixel_decoder.out_channels, "mask_head", mask_head.pixel_channels
        )
        self.backbone, self.text_encoder = backbone, text_encoder
        self.transformer, self.pixel_decoder, self.mask_head = transformer, pixel_decoder, mask_head
        self.class_heads = nn.ModuleList(
            nn.Linear(transformer.d_model, 1) for _ in range(transformer.num_layers)
        )
        prior = -math.log((1 - 0.01) / 0.01)  # initial referred probability 0.01
        for head in self.class_heads:
            nn.init.constant_(head.bias, prior)
        self.criterion = criterion

    def forward_outputs(self, frames: torch.Tensor, text: TextFeatures) -> dict[str, torch.Tensor]:
        """``frames (B, T, 3, H, W)`` -> ``is_referred (Ly, B, T, N, 1)``, ``boxes (Ly, B, T,
        N, 4)``, ``masks (Ly, B, T, N, H/4, W/4)`` and ``logits (B, T, 1, H, W)``."""
        finest, *levels = self.backbone(frames)
        decoded = self.transformer(levels, text)
        queries = decoded["queries"]  # (Ly, B, T, N, D)
        pixels = self.pixel_decoder(
            [finest, *decoded["memory"][: len(levels)]], decoded["text"]
        )  # (B, T, P, H/4, W/4)
        return self._heads(queries, decoded["boxes"], decoded["references"], pixels, frames)

    def _heads(
        self,
        queries: torch.Tensor,
        boxes: torch.Tensor,
        references: torch.Tensor,
        pixels: torch.Tensor,
        frames: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Class scores, masks (around each layer's refined box centres) and the referred
        object's logits."""
        is_referred = torch.stack([head(q) for head, q in zip(self.class_heads, queries)])
        masks = self.mask_head(
            queries, pixels, reference_points=references[..., :2], image_size=frames.shape[-2:]
        )
        logits = select_referred(is_referred[-1], masks[-1], tuple(frames.shape[-2:]))
        return {"is_referred": is_referred, "boxes": boxes, "masks": masks, "logits": logits}
