"""MTTR (Botach et al., CVPR 2022): end-to-end referring video segmentation with one transformer.

::

    frames (B, T, 3, H, W) --backbone--> levels [(B, T, C_i, H/s_i, W/s_i)], fine to coarse
    expression --text encoder--> TextFeatures (tokens (B, L, D_t))
    coarsest level(s) + text tokens --transformer--> queries (Ly, B, T, N, D), memory
    finer levels + memory --pixel decoder--> pixels (B, T, P, H/4, W/4)
    queries --Linear(D, 2)--> is_referred (Ly, B, T, N, 2);  queries x pixels --mask head-->
    masks (Ly, B, T, N, H/4, W/4);  best query (time-averaged referred probability) -> logits

The parts are registered and swappable (``TRANSFORMERS``, ``PIXEL_DECODERS``, ``MASK_HEADS``);
training uses MTTR's set criterion (:meth:`~rvoslib.losses.SetCriterion.mttr`): Hungarian
matching of query tracks, 2 x softmax "is referred" CE (no-object weight 0.1) + 5 x Dice + 2 x
mask focal, at every decoder layer.
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
from rvoslib.losses.matching import HungarianMatcher
from rvoslib.losses.set_criterion import SetCriterion
from rvoslib.models.architectures.query import QueryRVOSModel, query_targets, select_referred
from rvoslib.models.config import ArchitectureConfig
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

__all__ = ["MTTRConfig", "MTTRModel"]

#: MTTR's loss weights (``configs/*.yaml``: is_referred 2, dice 5, sigmoid focal 2).
MTTR_LOSS_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {"class": 2.0, "dice": 5.0, "mask_focal": 2.0}
)
#: MTTR's matching weights (``set_cost_is_referred: 2``, ``set_cost_dice: 5``).
MTTR_MATCHER: Mapping[str, float] = MappingProxyType({"class_weight": 2.0, "dice_weight": 5.0})


@dataclasses.dataclass
class MTTRConfig(ArchitectureConfig):
    """Config of :class:`MTTRModel` (defaults: ``mttr-swin-t``, MTTR's released settings).

    Attributes:
        backbone: Backbone spec (MTTR: Video-Swin-T, patch ``(1, 4, 4)``, strides 4/8/16).
        text_encoder: Text encoder spec (MTTR: frozen ``roberta-base``, projected to 256).
        transformer: ``TRANSFORMERS`` spec; receives the channels of the levels it takes and
            the text width.
        pixel_decoder: ``PIXEL_DECODERS`` spec; receives the channels of the finer backbone
            levels followed by the transformer memory's, and the text width.
        mask_head: ``MASK_HEADS`` spec; receives the query width and the pixel channels.
        transformer_levels: How many of the coarsest backbone levels the transformer takes
            (MTTR: 1); the finer ones go to the pixel decoder.
        aux_loss: Supervise every decoder layer (MTTR: true) or only the last.
        loss_weights: :class:`~rvoslib.losses.SetCriterion` weights.
        no_object_weight: Class weight of every query but the referred one (MTTR: 0.1).
        matcher: :class:`~rvoslib.losses.HungarianMatcher` keyword arguments.
    """

    architecture: ClassVar[str] = "mttr"
    parts: ClassVar[dict[str, Registry]] = {
        "backbone": BACKBONES,
        "text_encoder": TEXT_ENCODERS,
        "transformer": TRANSFORMERS,
        "pixel_decoder": PIXEL_DECODERS,
        "mask_head": MASK_HEADS,
    }

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
    transformer_levels: int = 1
    aux_loss: bool = True
    loss_weights: dict[str, float] = dataclasses.field(
        default_factory=lambda: dict(MTTR_LOSS_WEIGHTS)
    )
    no_object_weight: float = 0.1
    matcher: dict[str, Any] = dataclasses.field(default_factory=lambda: dict(MTTR_MATCHER))


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
        transformer_levels: Backbone levels given to the transformer (the coarsest ones).
        aux_loss: Supervise every decoder layer.
        loss_weights: Set-criterion weights (``class``, ``dice``, ``mask_focal``).
        no_object_weight: Class weight of non-referred queries.
        matcher: Hungarian matcher keyword arguments (``class_loss`` is always ``"softmax"``).

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
        transformer_levels: int = 1,
        aux_loss: bool = True,
        loss_weights: Mapping[str, float] = MTTR_LOSS_WEIGHTS,
        no_object_weight: float = 0.1,
        matcher: Mapping[str, Any] = MTTR_MATCHER,
    ) -> None:
        super().__init__()
        num_levels = len(backbone.out_channels)
        if not 1 <= transformer_levels <= num_levels:
            raise ValueError(
                f"transformer_levels must be in [1, {num_levels}] (the backbone's levels), got "
                f"{transformer_levels}"
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
        self.aux_loss = bool(aux_loss)
        matcher_args = {**dict(matcher), "class_loss": "softmax"}
        self.criterion = SetCriterion(
            HungarianMatcher(**matcher_args), dict(loss_weights), no_object_weight, "softmax"
        )

    @classmethod
    def build(cls, config: MTTRConfig, *, pretrained: bool = False) -> MTTRModel:
        """Build the parts from ``config``'s specs, passing each its neighbours' shapes."""
        return cls(**cls._build_parts(config, pretrained), **cls._options(config))

    @classmethod
    def _options(cls, config: MTTRConfig) -> dict[str, Any]:
        return {
            name: getattr(config, name) for name in config.field_names() if name not in config.parts
        }

    @staticmethod
    def _build_parts(config: MTTRConfig, pretrained: bool) -> dict[str, nn.Module]:
        levels = int(config.transformer_levels)
        backbone = BACKBONES.build(config.backbone, pretrained=pretrained)
        text_encoder = TEXT_ENCODERS.build(config.text_encoder, pretrained=pretrained)
        if not 1 <= levels <= len(backbone.out_channels):
            raise ValueError(
                f"transformer_levels must be in [1, {len(backbone.out_channels)}] (the "
                f"backbone's levels), got {levels}"
            )
        transformer = TRANSFORMERS.build(
            config.transformer,
            visual_channels=list(backbone.out_channels[-levels:]),
            text_dim=text_encoder.out_dim,
        )
        in_channels = [*backbone.out_channels[:-levels], *[transformer.d_model] * levels]
        pixel_decoder = PIXEL_DECODERS.build(
            config.pixel_decoder, in_channels=in_channels, text_dim=text_encoder.out_dim
        )
        mask_head = MASK_HEADS.build(
            config.mask_head,
            query_dim=transformer.d_model,
            pixel_channels=pixel_decoder.out_channels,
        )
        return {
            "backbone": backbone,
            "text_encoder": text_encoder,
            "transformer": transformer,
            "pixel_decoder": pixel_decoder,
            "mask_head": mask_head,
        }

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

    def supervised(self, outputs: Mapping[str, torch.Tensor], prefix: str = "") -> dict[str, Any]:
        """The outputs the criterion sees: every layer (``aux_loss``) or only the last."""
        keep = slice(None) if self.aux_loss else slice(-1, None)
        return {
            "is_referred": outputs[prefix + "is_referred"][keep],
            "masks": outputs[prefix + "masks"][keep],
        }

    def losses(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]
    ) -> dict[str, torch.Tensor]:
        """Weighted ``class``, ``dice`` and ``mask_focal`` terms (summed over the supervised
        decoder layers) of the outputs against the batch's targets (:func:`query_targets`).

        Raises:
            ValueError: a clip has more target objects than the model has queries.
        """
        return self.criterion(self.supervised(outputs), query_targets(batch))
