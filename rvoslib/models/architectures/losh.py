"""LoSh (Yuan et al., CVPR 2024) on MTTR: long and short expressions predicted jointly.

::

    frames --backbone (once)--> levels, repeated for the two branches
    [long text; short text] (same encoder, padded to one length) --> TextFeatures (2B, L, D)
    [levels; levels] + texts --transformer--> queries (Ly, 2B, T, N, D) = [long; short]
    optional long-short cross-attention (ours) between the halves
    pixel decoder + heads on 2B --> long outputs (the first B) and short outputs (the last B)

From LoSh's released code (LoSh-M): both expressions go through the same text encoder and the
same transformer and heads, concatenated along the batch; mask and "is referred" losses are
summed over the two branches with **one** matching whose cost is the sum of the two branches'
MTTR costs plus ``-0.8 x`` the long-short intersection ratio averaged over time; the
intersection loss (weight 0.8, :mod:`rvoslib.losses.long_short`) ties the branches; inference
uses the long branch. Ours (not released): the long-short cross-attention
(:class:`~rvoslib.models.transformer.long_short_attention.LongShortCrossAttention`) and the
forward-backward visual consistency loss (:mod:`rvoslib.models.flow`). Each addition has a
switch in :class:`LoShConfig` for ablations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from rvoslib._checks import check_tensor
from rvoslib.losses.long_short import long_short_intersection_ratio, long_short_match_cost
from rvoslib.losses.matching import hungarian_assignment, prepare_targets, referred_query_index
from rvoslib.losses.set_criterion import gather_matched
from rvoslib.models.architectures.losh_flow import FLOW_LOSSES, referred_flow_loss, resize_masks
from rvoslib.models.architectures.mttr import (
    MTTR_LOSS_WEIGHTS,
    MTTR_MATCHER,
    MTTRConfig,
    MTTRModel,
)
from rvoslib.models.architectures.query import query_targets, select_referred
from rvoslib.models.registry import ARCHITECTURES
from rvoslib.models.text import TextFeatures
from rvoslib.models.transformer.long_short_attention import LongShortCrossAttention

__all__ = ["LoShConfig", "LoShModel", "pair_text", "referred_flow_loss"]

DEFAULT_CROSS_ATTENTION: Mapping[str, Any] = MappingProxyType({"num_heads": 8, "dropout": 0.0})


@dataclasses.dataclass
class LoShConfig(MTTRConfig):
    """Config of :class:`LoShModel`: :class:`MTTRConfig` plus LoSh's switches.

    Attributes:
        joint_prediction: Run the short-expression branch (joint matching, both branches'
            losses). ``False`` gives MTTR, and turns off everything that needs the short branch
            (intersection loss and cost, cross-attention: not built).
        intersection_weight: Weight of the long-short intersection loss (LoSh: 0.8; 0 = off).
        intersection_cost_weight: Weight of ``-ratio`` in the matching cost (LoSh: 0.8).
        cross_attention: Keyword arguments of our :class:`LongShortCrossAttention` (``dim`` and
            ``num_queries`` come from the transformer), or ``None`` for none.
        flow_weight: Weight of our forward-backward visual consistency loss (0 = off).
        flow_loss: ``"l1"`` or ``"dice"`` (:func:`~rvoslib.models.flow.flow_consistency_loss`).
        flow_estimator: Keyword arguments of :class:`~rvoslib.models.flow.FlowEstimator`
            (e.g. ``{"checkpoint_path": "raft_small.pth"}``) for batches without flow, or
            ``None`` (then the batch must carry ``flow_forward``/``flow_backward``).
    """

    architecture: ClassVar[str] = "losh"

    joint_prediction: bool = True
    intersection_weight: float = 0.8
    intersection_cost_weight: float = 0.8
    cross_attention: dict[str, Any] | None = dataclasses.field(
        default_factory=lambda: dict(DEFAULT_CROSS_ATTENTION)
    )
    flow_weight: float = 0.0
    flow_loss: str = "l1"
    flow_estimator: dict[str, Any] | None = None


def pair_text(long: TextFeatures, short: TextFeatures) -> TextFeatures:
    """The two expressions of every clip as one batch ``[long; short]``, padded to one length.

    Padding token features are zeros and masked (as LoSh pads the short text's features).

    Args:
        long: Features of batch ``B``, ``tokens (B, L1, D)``.
        short: Features of batch ``B``, ``tokens (B, L2, D)``.

    Returns:
        :class:`TextFeatures` of batch ``2B`` and length ``max(L1, L2)``.

    Raises:
        ValueError: the batch sizes or widths differ.

    Example:
        >>> long = TextFeatures(torch.ones(2, 4), torch.ones(2, 5, 4), torch.ones(2, 5).bool())
        >>> short = TextFeatures(torch.ones(2, 4), torch.ones(2, 3, 4), torch.ones(2, 3).bool())
        >>> paired = pair_text(long, short)
        >>> paired.tokens.shape, paired.mask[2].tolist()
        (torch.Size([4, 5, 4]), [True, True, True, False, False])
    """
    if (
        long.tokens.shape[0] != short.tokens.shape[0]
        or long.tokens.shape[2:] != short.tokens.shape[2:]
    ):
        raise ValueError(
            "long and short text features must have the same batch size and width, got tokens "
            f"{tuple(long.tokens.shape)} and {tuple(short.tokens.shape)}"
        )
    length = max(long.tokens.shape[1], short.tokens.shape[1])

    def pad(text: TextFeatures) -> tuple[torch.Tensor, torch.Tensor]:
        extra = length - text.tokens.shape[1]
        return F.pad(text.tokens, (0, 0, 0, extra)), F.pad(text.mask.bool(), (0, extra))

    (long_tokens, long_mask), (short_tokens, short_mask) = pad(long), pad(short)
    return TextFeatures(
        sentence=torch.cat([long.sentence, short.sentence]),
        tokens=torch.cat([long_tokens, short_tokens]),
        mask=torch.cat([long_mask, short_mask]),
    )


@ARCHITECTURES.register("losh")
class LoShModel(MTTRModel):
    """LoSh on MTTR's parts (see the module docstring); arguments as :class:`MTTRModel` plus
    those of :class:`LoShConfig`.

    Batches carry ``text_ids``/``text_mask`` (the long expression) and ``short_text_ids``/
    ``short_text_mask``; without the short keys the long text is used for both branches.
    Outputs: ``is_referred``, ``masks``, ``logits`` (long branch) and ``short_is_referred``,
    ``short_masks``. :meth:`forward` (one expression) runs the long branch only; with the
    cross-attention, whose long branch depends on the short one, it uses the long expression as
    the short one too (:meth:`predict` uses ``short_text_ids`` when the batch has them).

    Raises:
        ValueError: a bad option (named), or parts that do not fit (as :class:`MTTRModel`).

    Example:
        >>> from rvoslib.models.presets_query_mttr import losh_tiny
        >>> model = LoShModel.from_config(losh_tiny()).eval()
        >>> long = model.tokenize(["the red circle moving left"])
        >>> short = model.tokenize(["the red circle"])
        >>> batch = {"frames": torch.randn(1, 2, 3, 64, 64), "text_ids": long["input_ids"],
        ...          "text_mask": long["attention_mask"], "short_text_ids": short["input_ids"],
        ...          "short_text_mask": short["attention_mask"]}
        >>> outputs = model.forward_batch(batch)
        >>> outputs["masks"].shape, outputs["short_masks"].shape  # (Ly, B, T, N, H/4, W/4)
        (torch.Size([2, 1, 2, 5, 16, 16]), torch.Size([2, 1, 2, 5, 16, 16]))
    """

    config_class = LoShConfig

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
        joint_prediction: bool = True,
        intersection_weight: float = 0.8,
        intersection_cost_weight: float = 0.8,
        cross_attention: Mapping[str, Any] | None = DEFAULT_CROSS_ATTENTION,
        flow_weight: float = 0.0,
        flow_loss: str = "l1",
        flow_estimator: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            backbone=backbone, text_encoder=text_encoder, transformer=transformer,
            pixel_decoder=pixel_decoder, mask_head=mask_head,
            transformer_levels=transformer_levels, aux_loss=aux_loss, loss_weights=loss_weights,
            no_object_weight=no_object_weight, matcher=matcher,
        )  # fmt: skip
        for name, value in (("intersection_weight", intersection_weight),
                            ("intersection_cost_weight", intersection_cost_weight),
                            ("flow_weight", flow_weight)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if flow_loss not in FLOW_LOSSES:
            raise ValueError(f"flow_loss must be one of {FLOW_LOSSES}, got {flow_loss!r}")
        if cross_attention is not None and not isinstance(cross_attention, Mapping):
            raise TypeError(
                "cross_attention must be a dict of LongShortCrossAttention keyword arguments or "
                f"None, got {type(cross_attention).__name__}"
            )
        self.joint_prediction = bool(joint_prediction)
        self.intersection_weight = float(intersection_weight) if joint_prediction else 0.0
        self.intersection_cost_weight = float(intersection_cost_weight) if joint_prediction else 0.0
        self.flow_weight, self.flow_loss = float(flow_weight), flow_loss
        self.flow_estimator_args = None if flow_estimator is None else dict(flow_estimator)
        self.cross_attention: LongShortCrossAttention | None = None
        if cross_attention is not None and joint_prediction:
            self.cross_attention = LongShortCrossAttention(
                int(transformer.d_model), int(transformer.num_queries), **dict(cross_attention)
            )

    # ------------------------------------------------------------------ forward
    def forward_pair(
        self, frames: torch.Tensor, long: TextFeatures, short: TextFeatures
    ) -> dict[str, torch.Tensor]:
        """Both branches on ``frames (B, T, 3, H, W)``.

        Returns:
            ``is_referred (Ly, B, T, N, 2)``, ``masks (Ly, B, T, N, h, w)`` and ``logits (B, T,
            1, H, W)`` of the long branch; ``short_is_referred``, ``short_masks`` likewise.
        """
        levels = self.backbone(frames)
        doubled = [torch.cat([level, level]) for level in levels]
        queries, pixels = self.decode(doubled, pair_text(long, short))  # (Ly, 2B, ...)
        if self.cross_attention is not None:
            long_queries, short_queries = self.cross_attention(*queries.chunk(2, dim=1))
            queries = torch.cat([long_queries, short_queries], dim=1)
        heads = self.predict_queries(queries, pixels)
        outputs: dict[str, torch.Tensor] = {}
        for key, value in heads.items():
            outputs[key], outputs["short_" + key] = value.chunk(2, dim=1)
        outputs["logits"] = select_referred(
            outputs["is_referred"][-1], outputs["masks"][-1], tuple(frames.shape[-2:])
        )
        return outputs

    def forward_outputs(self, frames: torch.Tensor, text: TextFeatures) -> dict[str, torch.Tensor]:
        """One expression: the long branch (MTTR's outputs); with the cross-attention, both
        branches with the expression as the short one too."""
        if self.cross_attention is None:
            return super().forward_outputs(frames, text)
        return self.forward_pair(frames, text, text)

    def short_text(self, batch: Mapping[str, Any], long: TextFeatures) -> TextFeatures:
        """The short expression's features (``short_text_ids``/``short_text_mask``), or the
        long one's when the batch has none."""
        if batch.get("short_text_ids") is None:
            return long
        return self.encode_text(batch["short_text_ids"], batch.get("short_text_mask"))

    def forward_batch(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Training outputs: both branches (``joint_prediction``) or MTTR's."""
        long = self.encode_text(batch["text_ids"], batch.get("text_mask"))
        if not self.joint_prediction:
            return MTTRModel.forward_outputs(self, batch["frames"], long)
        return self.forward_pair(batch["frames"], long, self.short_text(batch, long))

    @torch.no_grad()
    def predict(
        self, batch: Mapping[str, torch.Tensor], clip_len: int | None = None
    ) -> torch.Tensor:
        """As :meth:`RVOSModel.predict`; with the cross-attention, the batch's short text (if
        any) feeds the short branch."""
        if self.cross_attention is None:
            return super().predict(batch, clip_len)
        frames = batch["frames"]
        chunk = clip_len or frames.shape[1]
        long = self.encode_text(batch["text_ids"], batch.get("text_mask"))
        short = self.short_text(batch, long)
        pieces = [
            self.forward_pair(frames[:, start : start + chunk], long, short)["logits"]
            for start in range(0, frames.shape[1], chunk)
        ]
        return torch.cat(pieces, dim=1).float()

    # ------------------------------------------------------------------ losses
    def losses(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]
    ) -> dict[str, torch.Tensor]:
        """Weighted terms: ``class``, ``dice``, ``mask_focal`` (summed over both branches, one
        joint matching), ``intersection`` (if its weight > 0) and ``flow`` (if its weight > 0).

        Raises:
            ValueError: more target objects than queries; flow of the wrong shape.
            KeyError: a flow term without batch flow and without ``flow_estimator``.
        """
        targets = prepare_targets(query_targets(batch), with_boxes=False)
        long = self.supervised(outputs)
        if "short_masks" not in outputs:  # no short branch: MTTR's criterion
            assignment = self.criterion.match(long, targets)
            terms = self.criterion.terms(long, targets, assignment)
            branches = [outputs["masks"]]
        else:
            short = self.supervised(outputs, "short_")
            matcher = self.criterion.matcher
            cost = matcher.cost(long, targets) + matcher.cost(short, targets)
            if self.intersection_cost_weight:
                cost = cost + self._intersection_cost(long["masks"], short["masks"], targets)
            assignment = hungarian_assignment(cost, targets["target_valid"])
            long_terms = self.criterion.terms(long, targets, assignment)
            short_terms = self.criterion.terms(short, targets, assignment)
            terms = {key: long_terms[key] + short_terms[key] for key in long_terms}
            if self.intersection_weight:
                ratio_loss = self._intersection_loss(long["masks"], short["masks"], targets,
                                                     assignment)  # fmt: skip
                terms["intersection"] = self.intersection_weight * ratio_loss
            branches = [outputs["masks"], outputs["short_masks"]]
        if self.flow_weight:
            terms["flow"] = self.flow_weight * self._flow_loss(branches, targets, assignment, batch)
        return terms

    def _intersection_cost(
        self, long: torch.Tensor, short: torch.Tensor, targets: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        """``-w x`` ratio averaged over valid frames, ``(Ly, B, N, 1)``, one layer at a time (the
        upsampled masks of all queries are large)."""
        size = tuple(targets["masks"].shape[-2:])
        return torch.stack([
            long_short_match_cost(long[layer], short[layer], targets["frame_valid"],
                                  self.intersection_cost_weight, size)
            for layer in range(long.shape[0])
        ])  # fmt: skip

    def _intersection_loss(
        self,
        long: torch.Tensor,
        short: torch.Tensor,
        targets: Mapping[str, torch.Tensor],
        assignment: torch.Tensor,
    ) -> torch.Tensor:
        """``sum over layers of 1 - mean ratio`` over the matched (real target, valid frame)
        pairs, the matched masks upsampled to the target size (LoSh's ``loss_conditioned_iou``)."""
        size = tuple(targets["masks"].shape[-2:])
        matched_long = resize_masks(gather_matched(long, assignment), size)  # (Ly, B, T, M, H, W)
        matched_short = resize_masks(gather_matched(short, assignment), size)
        ratio = long_short_intersection_ratio(matched_long, matched_short)  # (Ly, B, T, M)
        real = (assignment >= 0) & targets["target_valid"]  # (Ly, B, M)
        pair = (real[:, :, None, :] & targets["frame_valid"][None, :, :, None]).float()
        count = pair.flatten(1).sum(1).clamp_min(1.0)
        return ((1 - ratio) * pair).flatten(1).sum(1).div(count).sum()

    def _flow_loss(
        self,
        branches: list[torch.Tensor],
        targets: Mapping[str, torch.Tensor],
        assignment: torch.Tensor,
        batch: Mapping[str, Any],
    ) -> torch.Tensor:
        """Our forward-backward consistency of the referred query's last-layer masks, summed
        over the branches (:func:`referred_flow_loss`)."""
        frames = batch["frames"]
        if frames.shape[1] < 2:
            return frames.new_zeros((), dtype=torch.float32)
        flow_forward, flow_backward = self.batch_flow(batch)
        referred = referred_query_index(
            assignment[-1], targets["referred"], targets["target_valid"]
        )  # (B,)
        pair_valid = batch.get("flow_valid")
        if pair_valid is None:  # pairs with at least one annotated frame
            valid = targets["frame_valid"]
            pair_valid = valid[:, :-1] | valid[:, 1:]
        pair_valid = pair_valid.bool() & (referred >= 0)[:, None]
        total = frames.new_zeros((), dtype=torch.float32)
        for masks in branches:
            layer = masks[-1]  # (B, T, N, h, w)
            index = referred.clamp_min(0).view(-1, 1, 1, 1, 1)
            index = index.expand(layer.shape[0], layer.shape[1], 1, *layer.shape[-2:])
            chosen = layer.gather(2, index)[:, :, 0]  # (B, T, h, w)
            total = total + referred_flow_loss(
                chosen, flow_forward, flow_backward, pair_valid, self.flow_loss
            )
        return total

    def batch_flow(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Flow between consecutive frames: the batch's ``flow_forward`` (frame ``t -> t+1``) and
        ``flow_backward`` (``t+1 -> t``), ``(B, T-1, 2, H, W)`` in pixels, or the frozen RAFT's.

        Raises:
            ValueError: batch flow of the wrong shape.
            KeyError: no batch flow and no ``flow_estimator``.
        """
        frames = batch["frames"]
        batch_size, num_frames, _, height, width = frames.shape
        shape = (batch_size, num_frames - 1, 2, height, width)
        flows = [batch.get("flow_forward"), batch.get("flow_backward")]
        if flows[0] is not None and flows[1] is not None:
            for name, flow in zip(("flow_forward", "flow_backward"), flows):
                check_tensor(flow, f"batch[{name!r}]", shape, floating=True)
            return flows[0].float(), flows[1].float()
        estimator = self._flow_estimator().to(frames.device)
        earlier, later = frames[:, :-1].flatten(0, 1), frames[:, 1:].flatten(0, 1)
        forward = estimator(earlier, later).unflatten(0, shape[:2])
        return forward, estimator(later, earlier).unflatten(0, shape[:2])

    def _flow_estimator(self) -> nn.Module:
        """The frozen RAFT, built on first use and kept out of the state dict."""
        estimator = self.__dict__.get("_raft")
        if estimator is None:
            if self.flow_estimator_args is None:
                raise KeyError(
                    "flow_weight > 0 needs batch['flow_forward'] and batch['flow_backward'] "
                    "(B, T-1, 2, H, W) or a flow_estimator={...} (FlowEstimator arguments, e.g. "
                    "{'checkpoint_path': 'raft_small.pth'}) in the LoSh config"
                )
            from rvoslib.models.flow import FlowEstimator

            estimator = FlowEstimator(**self.flow_estimator_args)
            self.__dict__["_raft"] = estimator
        return estimator
