"""SOC (Luo et al., NeurIPS 2023): semantic-assisted object clusters for referring segmentation.

SOC is ReferFormer's layout with three changes (released ``models/soc.py``):

* **bidirectional multimodal fusion** instead of the one-way early fusion: visual tokens
  ``v <- v * MHA(v, text)`` at every level, and the text ``t <- t * MHA(t, v)`` against the
  stride-32 level (:class:`~rvoslib.models.fusion.mmf.BidirectionalMultimodalFusion`);
* **zero-content frame queries** (20 per frame), then the **video object cluster**
  (:class:`~rvoslib.models.transformer.VideoObjectCluster`): ``N`` video queries whose content is
  the sentence attend to all ``T x N`` frame queries; video query ``n`` is added to frame query
  ``n`` of every frame, and the class, box and mask heads read these sums;
* a **video-text contrastive loss**: the video query matched to the referred object must score
  highest against the mean of the fused text tokens (:mod:`rvoslib.losses.contrastive`).

Wiring (``D = d_model``, ``N`` queries, ``Ly`` decoder layers)::

    frames --backbone--> levels (B, T, C_i, H/s_i, W/s_i), s = 4, 8, 16, 32
    levels[1:] + text --transformer (bidirectional fusion)--> frame queries (Ly, B, T, N, D),
        references (Ly, B, T, N, 4), memory, fused text tokens (B, L, D)
    frame queries + sentence --VOC, every layer--> video queries (Ly, B, N, D)
        frame queries + video queries --> (Ly, B, T, N, D)
        --> is_referred (Ly, B, T, N, 1), boxes (Ly, B, T, N, 4)
    [levels[0], memory] --pixel decoder (MTTR's FPN, "fpn_text")--> pixels (B, T, 8, H/4, W/4)
        --CondInst mask head--> masks (Ly, B, T, N, H/4, W/4)
    text vector = mean of the fused text tokens (B, D)

Losses (every decoder layer): :meth:`~rvoslib.losses.SetCriterion.soc` (2 focal class + 5 Dice
+ 2 mask focal + 2 L1 + 2 GIoU) and ``contrastive_weight`` (1) x the video-text contrastive loss
against the query the matcher assigned to the referred target.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import torch
from torch import nn

from rvoslib.losses.contrastive import mean_token_features, video_text_contrastive_loss
from rvoslib.losses.matching import prepare_targets, referred_query_index
from rvoslib.models.architectures.query import query_targets
from rvoslib.models.architectures.referformer import ReferFormerConfig, ReferFormerModel
from rvoslib.models.heads import pixel_decoders as _pixel_decoders  # noqa: F401  ("fpn_text")
from rvoslib.models.registry import ARCHITECTURES
from rvoslib.models.text import TextFeatures
from rvoslib.models.transformer.voc import VideoObjectCluster

__all__ = ["SOCConfig", "SOCModel"]

#: SOC's loss weights (keys of :class:`~rvoslib.losses.SetCriterion` ``weights``).
SOC_LOSS: Mapping[str, float] = MappingProxyType(
    {"class": 2.0, "dice": 5.0, "mask_focal": 2.0, "box_l1": 2.0, "giou": 2.0}
)
#: SOC's matching cost (keyword arguments of :class:`~rvoslib.losses.HungarianMatcher`).
SOC_MATCHER: Mapping[str, float] = MappingProxyType(
    {"class_weight": 2.0, "dice_weight": 5.0, "box_l1_weight": 2.0, "giou_weight": 2.0}
)
#: Keywords of :class:`VideoObjectCluster` a config may set (``dim`` and ``num_queries`` come
#: from the transformer).
VOC_KEYWORDS = ("num_encoder_layers", "num_decoder_layers", "num_heads", "ffn_dim", "dropout")


@dataclasses.dataclass
class SOCConfig(ReferFormerConfig):
    """Config of :class:`SOCModel` (defaults: ``soc-swin-t``'s parts).

    Attributes:
        backbone, text_encoder, transformer, pixel_decoder, mask_head: As
            :class:`~rvoslib.models.architectures.referformer.ReferFormerConfig`.
        loss: :class:`~rvoslib.losses.SetCriterion` weights (SOC's).
        matcher: :class:`~rvoslib.losses.HungarianMatcher` weights (SOC's).
        voc: Keyword arguments of :class:`~rvoslib.models.transformer.VideoObjectCluster`
            among ``num_encoder_layers``, ``num_decoder_layers``, ``num_heads``, ``ffn_dim``,
            ``dropout`` (SOC: 3, 3, 8, 2048, 0.1, the defaults).
        contrastive_weight: Weight of the video-text contrastive loss at each decoder layer.
    """

    architecture: ClassVar[str] = "soc"

    transformer: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"name": "deformable_soc"}
    )
    pixel_decoder: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"name": "fpn_text", "out_channels": 8}
    )
    loss: dict[str, float] = dataclasses.field(default_factory=lambda: dict(SOC_LOSS))
    matcher: dict[str, float] = dataclasses.field(default_factory=lambda: dict(SOC_MATCHER))
    voc: dict[str, Any] = dataclasses.field(default_factory=dict)
    contrastive_weight: float = 1.0


@ARCHITECTURES.register("soc")
class SOCModel(ReferFormerModel):
    """SOC from injected parts (see the module docstring for the wiring).

    Args:
        backbone, text_encoder, transformer, pixel_decoder, mask_head: As
            :class:`~rvoslib.models.architectures.referformer.ReferFormerModel` (SOC's
            transformer: ``"deformable_soc"``).
        loss: :class:`~rvoslib.losses.SetCriterion` weights.
        matcher: :class:`~rvoslib.losses.HungarianMatcher` weights.
        voc: :class:`~rvoslib.models.transformer.VideoObjectCluster` keywords (see
            :class:`SOCConfig`); ``None`` for its defaults.
        contrastive_weight: Weight of the contrastive loss (0 leaves it out).

    Raises:
        ValueError: parts do not fit, an unknown ``voc`` keyword, a negative weight.

    Example:
        >>> from rvoslib.models.presets_query_deformable import soc_tiny
        >>> model = SOCModel.from_config(soc_tiny()).eval()
        >>> tokens = model.tokenize(["the square moving left"])
        >>> outputs = model.forward_outputs(torch.randn(1, 2, 3, 64, 64),
        ...                                 model.encode_text(tokens["input_ids"]))
        >>> outputs["video_queries"].shape, outputs["text_vector"].shape
        (torch.Size([2, 1, 5, 64]), torch.Size([1, 64]))
    """

    config_class = SOCConfig

    def __init__(
        self,
        *,
        backbone: nn.Module,
        text_encoder: nn.Module,
        transformer: nn.Module,
        pixel_decoder: nn.Module,
        mask_head: nn.Module,
        loss: Mapping[str, float] = SOC_LOSS,
        matcher: Mapping[str, float] = SOC_MATCHER,
        voc: Mapping[str, Any] | None = None,
        contrastive_weight: float = 1.0,
    ) -> None:
        super().__init__(
            backbone=backbone,
            text_encoder=text_encoder,
            transformer=transformer,
            pixel_decoder=pixel_decoder,
            mask_head=mask_head,
            loss=loss,
            matcher=matcher,
        )
        voc = dict(voc or {})
        unknown = sorted(set(voc) - set(VOC_KEYWORDS))
        if unknown:
            raise ValueError(
                f"unknown voc keyword(s) {unknown}; valid: {list(VOC_KEYWORDS)} (dim and "
                "num_queries come from the transformer)"
            )
        if isinstance(contrastive_weight, bool) or not contrastive_weight >= 0:
            raise ValueError(
                f"contrastive_weight must be a number >= 0, got {contrastive_weight!r}"
            )
        self.voc = VideoObjectCluster(
            dim=transformer.d_model, num_queries=transformer.num_queries, **voc
        )
        self.contrastive_weight = float(contrastive_weight)

    @classmethod
    def build(cls, config: SOCConfig, *, pretrained: bool = False) -> SOCModel:
        """Build the parts from ``config``'s specs, passing each its neighbours' shapes."""
        return cls(
            **cls._build_parts(config, pretrained),
            loss=config.loss,
            matcher=config.matcher,
            voc=config.voc,
            contrastive_weight=config.contrastive_weight,
        )

    def forward_outputs(self, frames: torch.Tensor, text: TextFeatures) -> dict[str, torch.Tensor]:
        """``frames (B, T, 3, H, W)`` -> ``is_referred (Ly, B, T, N, 1)``, ``boxes (Ly, B, T,
        N, 4)``, ``masks (Ly, B, T, N, H/4, W/4)``, ``logits (B, T, 1, H, W)``,
        ``video_queries (Ly, B, N, D)`` and ``text_vector (B, D)``."""
        finest, *levels = self.backbone(frames)
        decoded = self.transformer(levels, text)
        fused_text = decoded["text"]
        cluster = self.voc(decoded["queries"], fused_text.sentence)  # every decoder layer
        queries = cluster.frame_queries  # frame query + video query, (Ly, B, T, N, D)
        boxes = self.transformer.predict_boxes(
            queries, decoded["initial_reference"], decoded["references"]
        )
        pixels = self.pixel_decoder([finest, *decoded["memory"][: len(levels)]], fused_text)
        outputs = self._heads(queries, boxes, decoded["references"], pixels, frames)
        outputs["video_queries"] = cluster.video_queries
        outputs["text_vector"] = mean_token_features(fused_text.tokens, fused_text.mask)
        return outputs

    def losses(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]
    ) -> dict[str, torch.Tensor]:
        """The weighted set-criterion terms and ``contrastive``, summed over decoder layers.

        The contrastive positive of each clip and layer is the query the matcher assigned to
        the referred target in that layer (clips without one are left out).
        """
        targets = prepare_targets(query_targets(batch), with_boxes=True)
        assignment = self.criterion.match(outputs, targets)  # (Ly, B, M)
        terms = self.criterion.terms(outputs, targets, assignment)
        if self.contrastive_weight:
            positive = referred_query_index(
                assignment, targets["referred"], targets["target_valid"]
            )  # (Ly, B)
            video, text = outputs["video_queries"], outputs["text_vector"]
            per_layer = [
                video_text_contrastive_loss(video[layer], text, positive[layer])
                for layer in range(video.shape[0])
            ]
            terms["contrastive"] = self.contrastive_weight * torch.stack(per_layer).sum()
        return terms
