"""LoSh (Yuan et al., CVPR 2024) on MTTR: long and short expressions predicted jointly.

::

    frames --backbone (once)--> levels, repeated for the two branches
    [long text; short text] (same encoder, padded to one length) --> TextFeatures (2B, L, D)
    [levels; levels] + texts --transformer--> queries (Ly, 2B, T, N, D) = [long; short]
    optional long-short cross-attention (ours) between the halves
    pixel decoder + heads on 2B --> long outputs (the first B) and short outputs (the last B)

From LoSh's released code (LoSh-M): both expressions go through the same text encoder and the
same transformer and heads, concatenated along the batch; inference uses the long branch. The
training terms (one joint matching, the intersection loss and cost, our flow consistency) are
LoSh's criterion, :class:`~rvoslib.losses.LoShCriterion` (``{"name": "losh", ...}``, default
:data:`LOSH_CRITERION`). Ours (not released): the long-short cross-attention, a
``LONG_SHORT_ATTENTIONS`` part (:class:`~rvoslib.models.transformer.long_short_attention.
LongShortCrossAttention`, ``{"name": "long_short"}``), and the flow term of the criterion
(its ``flow_estimator`` spec names a ``FLOW_ESTIMATORS`` part). Each addition has a switch for
ablations.

Released-code behaviour not copied: with clips of more than one frame, LoSh's released forward
pairs the transformer memory of one frame with the backbone features of other frames in the
spatial decoder (backbone levels repeated as ``[(t b); (t b)]`` against memory ordered ``(t,
[long b; short b])``); here every frame meets its own features (``[levels; levels]`` on the
batch axis, as the memory), which equals the released forward on one-frame clips
(``tests/data/originals/losh``). Its ``--text_condition`` option (off in its configs, no
weights) averages the text memory over the wrong axis and is not reproduced. Converted LoSh-M
checkpoints: :mod:`rvoslib.convert.losh`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

import rvoslib.models.flow
import rvoslib.models.transformer.long_short_attention  # noqa: F401  ("long_short")
from rvoslib.losses.flow import referred_flow_loss
from rvoslib.models.architectures.mttr import MTTR_CRITERION, MTTRConfig, MTTRModel
from rvoslib.models.architectures.query import plain_spec, select_referred
from rvoslib.models.registry import ARCHITECTURES, LONG_SHORT_ATTENTIONS
from rvoslib.models.text import TextFeatures

__all__ = ["LOSH_CRITERION", "LoShConfig", "LoShModel", "pair_text", "referred_flow_loss"]

#: LoSh's criterion: MTTR's set criterion, summed over both branches with one joint matching,
#: plus the long-short intersection loss (0.8) and matching cost (0.8); our flow term is off.
LOSH_CRITERION: Mapping[str, Any] = MappingProxyType({
    **MTTR_CRITERION,
    "name": "losh",
    "intersection_weight": 0.8,
    "intersection_cost_weight": 0.8,
    "flow_weight": 0.0,
    "flow_loss": "l1",
    "flow_estimator": None,
})  # fmt: skip
#: Our long-short cross-attention (``dim`` and ``num_queries`` come from the transformer).
DEFAULT_CROSS_ATTENTION: Mapping[str, Any] = MappingProxyType(
    {"name": "long_short", "num_heads": 8, "dropout": 0.0}
)


@dataclasses.dataclass
class LoShConfig(MTTRConfig):
    """Config of :class:`LoShModel`: :class:`MTTRConfig` plus LoSh's switches.

    Attributes:
        criterion: ``CRITERIA`` spec (default :data:`LOSH_CRITERION`, the ``"losh"`` criterion:
            MTTR's set-criterion keys plus ``intersection_weight`` and
            ``intersection_cost_weight`` (LoSh: 0.8 each), ``flow_weight`` (ours; 0 = off),
            ``flow_loss`` (``"l1"`` or ``"dice"``) and ``flow_estimator`` (a
            ``FLOW_ESTIMATORS`` spec such as ``{"name": "raft", "checkpoint_path":
            "raft_small.pth"}`` for batches without flow, or ``None``)).
        joint_prediction: Run the short-expression branch (joint matching, both branches'
            losses). ``False`` gives MTTR: no short outputs (the criterion then has no
            intersection terms) and no cross-attention.
        cross_attention: ``LONG_SHORT_ATTENTIONS`` spec of our long-short cross-attention
            (``dim`` and ``num_queries`` come from the transformer), or ``None`` for none.
    """

    architecture: ClassVar[str] = "losh"

    criterion: dict[str, Any] = dataclasses.field(
        default_factory=lambda: plain_spec(LOSH_CRITERION)
    )
    joint_prediction: bool = True
    cross_attention: dict[str, Any] | None = dataclasses.field(
        default_factory=lambda: dict(DEFAULT_CROSS_ATTENTION)
    )


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
    """LoSh on MTTR's parts (see the module docstring).

    Batches carry ``text_ids``/``text_mask`` (the long expression) and ``short_text_ids``/
    ``short_text_mask``; without the short keys the long text is used for both branches.
    Outputs: ``is_referred``, ``masks``, ``logits`` (long branch) and ``short_is_referred``,
    ``short_masks``. :meth:`forward` (one expression) runs the long branch only; with the
    cross-attention, whose long branch depends on the short one, it uses the long expression as
    the short one too (:meth:`predict` uses ``short_text_ids`` when the batch has them).

    Args:
        joint_prediction: Run the short branch (see :class:`LoShConfig`).
        cross_attention: ``LONG_SHORT_ATTENTIONS`` spec, or ``None``; built after MTTR's
            modules, with ``dim`` and ``num_queries`` of the transformer.
        **parts: The parts and options of :class:`MTTRModel` (``criterion``: typically the
            ``"losh"`` criterion).

    Raises:
        TypeError: ``cross_attention`` is neither a spec nor ``None``.
        KeyError: an unknown cross-attention name (lists the registered ones).
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
        joint_prediction: bool = True,
        cross_attention: Mapping[str, Any] | None = DEFAULT_CROSS_ATTENTION,
        **parts: Any,
    ) -> None:
        super().__init__(**parts)
        if cross_attention is not None and not isinstance(cross_attention, (Mapping, str)):
            raise TypeError(
                "cross_attention must be a LONG_SHORT_ATTENTIONS spec such as {'name': "
                f"'long_short', 'num_heads': 8}} or None, got {type(cross_attention).__name__}"
            )
        self.joint_prediction = bool(joint_prediction)
        self.cross_attention: nn.Module | None = None
        if cross_attention is not None and joint_prediction:
            self.cross_attention = LONG_SHORT_ATTENTIONS.build(
                cross_attention,
                dim=int(self.transformer.d_model),
                num_queries=int(self.transformer.num_queries),
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
