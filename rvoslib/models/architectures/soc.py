"""SOC (Luo et al., NeurIPS 2023): semantic-assisted object clusters for referring segmentation.

SOC is ReferFormer's layout with three changes (released ``models/soc.py``):

* **bidirectional multimodal fusion** instead of the one-way early fusion: visual tokens
  ``v <- v * MHA(v, text)`` at every level, and the text ``t <- t * MHA(t, v)`` against the
  stride-32 level (:class:`~rvoslib.models.fusion.mmf.BidirectionalMultimodalFusion`);
* **zero-content frame queries** (20 per frame), then the **video object cluster**, a
  ``VIDEO_OBJECT_CLUSTERS`` part (``{"name": "voc"}``:
  :class:`~rvoslib.models.transformer.VideoObjectCluster`): ``N`` video queries whose content is
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

Head wiring (``head_wiring``): ``"last_layer"`` (rvoslib's, above: every decoder layer's frame
queries clustered on their own, the reported heads the last layer's) or ``"released"`` (what
the released ``models/soc.py`` computes). In training the released forward is the same; in eval
its VOC clusters only the last layer's frame queries, adds those video queries to the frame
queries of *every* layer, and then zips the per-layer lists with the one-element list of video
queries, so the heads it reports are decoder layer 0's: class, box (around the first reference
points) and mask (around the references refined by layer 0) heads on ``queries[0] +
video_queries[-1]``. With ``"released"`` the eval outputs hold that one layer (``Ly = 1``).
The released VOC also reshapes ``(L, T, B, ...)`` to ``(L * B, T, ...)`` without moving ``B``,
which mixes the clips of a batch; rvoslib keeps clips apart (the same result for one clip).

Losses (every decoder layer): SOC's criterion, :data:`SOC_CRITERION` (the ``"soc"`` criterion:
2 focal class + 5 Dice + 2 mask focal + 2 L1 + 2 GIoU, and 1 x the video-text contrastive loss
against the query the matcher assigned to the referred target).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import torch

import rvoslib.models.transformer.voc  # noqa: F401  (registers the "voc" cluster)
from rvoslib.losses.contrastive import mean_token_features
from rvoslib.models.architectures.query import plain_spec
from rvoslib.models.architectures.referformer import ReferFormerConfig, ReferFormerModel
from rvoslib.models.heads import pixel_decoders as _pixel_decoders  # noqa: F401  ("fpn_text")
from rvoslib.models.registry import ARCHITECTURES, VIDEO_OBJECT_CLUSTERS
from rvoslib.models.text import TextFeatures

__all__ = ["HEAD_WIRINGS", "SOC_CRITERION", "SOCConfig", "SOCModel"]

#: SOC's criterion: 2 focal class + 5 Dice + 2 mask focal + 2 L1 + 2 GIoU, matched with 2 class
#: + 5 Dice + 2 L1 + 2 GIoU, plus 1 x the video-text contrastive loss, at every decoder layer.
SOC_CRITERION: Mapping[str, Any] = MappingProxyType({
    "name": "soc",
    "weights": MappingProxyType(
        {"class": 2.0, "dice": 5.0, "mask_focal": 2.0, "box_l1": 2.0, "giou": 2.0}
    ),
    "no_object_weight": 0.1,
    "class_loss": "focal",
    "matcher": MappingProxyType(
        {"class_weight": 2.0, "dice_weight": 5.0, "box_l1_weight": 2.0, "giou_weight": 2.0}
    ),
    "aux_loss": True,
    "contrastive_weight": 1.0,
})  # fmt: skip
#: How the heads read the video queries (see the module docstring).
HEAD_WIRINGS = ("last_layer", "released")
#: SOC's video object cluster (3 + 3 layers, 8 heads, FFN 2048, dropout 0.1: its defaults).
DEFAULT_VOC: Mapping[str, Any] = MappingProxyType({"name": "voc"})


@dataclasses.dataclass
class SOCConfig(ReferFormerConfig):
    """Config of :class:`SOCModel` (defaults: ``soc-swin-t``'s parts).

    Attributes:
        backbone, text_encoder, transformer, pixel_decoder, mask_head: As
            :class:`~rvoslib.models.architectures.referformer.ReferFormerConfig`.
        criterion: ``CRITERIA`` spec (default :data:`SOC_CRITERION`: the ``"soc"`` criterion,
            the set criterion's keys plus ``contrastive_weight``).
        voc: ``VIDEO_OBJECT_CLUSTERS`` spec, e.g. ``{"name": "voc", "num_encoder_layers": 3,
            "num_decoder_layers": 3, "num_heads": 8, "ffn_dim": 2048, "dropout": 0.1}`` (SOC's,
            the defaults); ``dim`` and ``num_queries`` come from the transformer.
        head_wiring: ``"last_layer"`` (rvoslib's) or ``"released"`` (the released inference:
            decoder layer 0's heads on ``queries[0] + video_queries[-1]`` in eval; see the
            module docstring).
    """

    architecture: ClassVar[str] = "soc"

    transformer: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"name": "deformable_soc"}
    )
    pixel_decoder: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"name": "fpn_text", "out_channels": 8}
    )
    criterion: dict[str, Any] = dataclasses.field(default_factory=lambda: plain_spec(SOC_CRITERION))
    voc: dict[str, Any] = dataclasses.field(default_factory=lambda: dict(DEFAULT_VOC))
    head_wiring: str = "last_layer"


@ARCHITECTURES.register("soc")
class SOCModel(ReferFormerModel):
    """SOC from injected parts (see the module docstring for the wiring).

    Args:
        voc: ``VIDEO_OBJECT_CLUSTERS`` spec (see :class:`SOCConfig`); built after
            ReferFormer's modules, with ``dim`` and ``num_queries`` of the transformer.
        head_wiring: One of :data:`HEAD_WIRINGS` (see the module docstring).
        **parts: The parts of
            :class:`~rvoslib.models.architectures.referformer.ReferFormerModel` (SOC's
            transformer: ``"deformable_soc"``; ``criterion``: typically the ``"soc"`` criterion,
            which reads ``video_queries`` and ``text_vector``).

    Raises:
        ValueError: parts do not fit, a ``voc`` keyword the cluster does not take (lists the
            ones it takes), or an unknown ``head_wiring``.
        KeyError: an unknown ``voc`` name (lists the registered ones).

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
        voc: Mapping[str, Any] | str = DEFAULT_VOC,
        head_wiring: str = "last_layer",
        **parts: Any,
    ) -> None:
        if head_wiring not in HEAD_WIRINGS:
            raise ValueError(f"head_wiring must be one of {HEAD_WIRINGS}, got {head_wiring!r}")
        super().__init__(**parts)
        self.head_wiring = head_wiring
        self.voc = VIDEO_OBJECT_CLUSTERS.build(
            voc, dim=self.transformer.d_model, num_queries=self.transformer.num_queries
        )

    def forward_outputs(self, frames: torch.Tensor, text: TextFeatures) -> dict[str, torch.Tensor]:
        """``frames (B, T, 3, H, W)`` -> ``is_referred (Ly, B, T, N, 1)``, ``boxes (Ly, B, T,
        N, 4)``, ``masks (Ly, B, T, N, H/4, W/4)``, ``logits (B, T, 1, H, W)``,
        ``video_queries (Ly, B, N, D)`` and ``text_vector (B, D)`` (``Ly = 1`` in eval with
        ``head_wiring="released"``)."""
        finest, *levels = self.backbone(frames)
        decoded = self.transformer(levels, text)
        fused_text = decoded["text"]
        queries, video_queries = self._cluster(decoded["queries"], fused_text.sentence)
        references = decoded["references"][: queries.shape[0]]
        boxes = self.transformer.predict_boxes(queries, decoded["initial_reference"], references)
        pixels = self.pixel_decoder([finest, *decoded["memory"][: len(levels)]], fused_text)
        outputs = self._heads(queries, boxes, references, pixels, frames)
        outputs["video_queries"] = video_queries
        outputs["text_vector"] = mean_token_features(fused_text.tokens, fused_text.mask)
        return outputs

    def _cluster(
        self, frame_queries: torch.Tensor, sentence: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The queries the heads read ``(Ly', B, T, N, D)`` and the video queries ``(Ly', B, N,
        D)``: every layer clustered on its own, or (``"released"`` in eval) layer 0's frame
        queries plus the last layer's video queries (``Ly' = 1``)."""
        if self.head_wiring == "released" and not self.training:
            cluster = self.voc(frame_queries[-1:], sentence)
            return frame_queries[:1] + cluster.video_queries.unsqueeze(2), cluster.video_queries
        cluster = self.voc(frame_queries, sentence)  # every decoder layer
        return cluster.frame_queries, cluster.video_queries
