"""What the query-based architectures (MTTR, ReferFormer, SOC, LoSh) share.

Such a model predicts, for every frame, ``N`` object queries (query ``n`` is the same object in
every frame), each with an "is referred" score, a mask and possibly a box. Its outputs:

* ``"is_referred"``: ``(Ly, B, T, N, K)`` logits per decoder layer ``Ly`` (K = 2: softmax with
  index 0 = referred, as MTTR; K = 1: one sigmoid logit, as ReferFormer/SOC);
* ``"masks"``: ``(Ly, B, T, N, h, w)`` mask logits (stride 4);
* ``"boxes"`` (optional): ``(Ly, B, T, N, 4)`` normalised ``(cx, cy, w, h)``;
* ``"logits"``: ``(B, T, 1, H, W)``, the referred object's mask logits at the frame size: the
  query whose referred probability, averaged over time, is highest (the inference of MTTR,
  ReferFormer and SOC), from the last layer.

The losses are the model's ``criterion`` part (a registered ``CRITERIA`` entry such as the
``"set"`` criterion, which matches queries to the targets of the batch,
:func:`~rvoslib.losses.query_targets`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from rvoslib.losses.criteria import query_targets
from rvoslib.models.base import RVOSModel

__all__ = [
    "QueryRVOSModel",
    "plain_spec",
    "query_targets",
    "referred_probabilities",
    "select_referred",
]


def plain_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A new, mutable (JSON-like) copy of a read-only spec constant (nested mappings become
    dicts), e.g. of :data:`~rvoslib.models.architectures.mttr.MTTR_CRITERION`.

    Example:
        >>> from types import MappingProxyType as ReadOnly
        >>> plain_spec(ReadOnly({"name": "set", "weights": ReadOnly({"dice": 5.0})}))
        {'name': 'set', 'weights': {'dice': 5.0}}
    """
    return {
        key: plain_spec(value) if isinstance(value, Mapping) else copy.deepcopy(value)
        for key, value in spec.items()
    }


def referred_probabilities(is_referred: torch.Tensor) -> torch.Tensor:
    """Probability that each query is the referred object.

    Args:
        is_referred: ``(..., K)`` logits, K = 2 (softmax, index 0 = referred) or K = 1 (sigmoid).

    Returns:
        ``(...)`` float32 probabilities.
    """
    logits = is_referred.float()
    if logits.shape[-1] == 1:
        return logits[..., 0].sigmoid()
    return logits.softmax(-1)[..., 0]


def select_referred(
    is_referred: torch.Tensor, masks: torch.Tensor, output_size: tuple[int, int]
) -> torch.Tensor:
    """The mask logits of the query with the highest time-averaged referred probability.

    Args:
        is_referred: ``(B, T, N, K)`` logits of one decoder layer.
        masks: ``(B, T, N, h, w)`` mask logits of that layer.
        output_size: ``(H, W)`` of the result (bilinear upsampling).

    Returns:
        ``(B, T, 1, H, W)`` logits.

    Example:
        >>> scores = torch.tensor([[[[0.0], [3.0]], [[0.0], [1.0]]]])  # (1, 2, 2, 1): query 1
        >>> masks = torch.stack([torch.zeros(1, 2, 4, 4), torch.ones(1, 2, 4, 4)], dim=2)
        >>> select_referred(scores, masks, (8, 8)).mean().item()
        1.0
    """
    best = referred_probabilities(is_referred).mean(1).argmax(-1)  # (B,)
    batch, frames = masks.shape[:2]
    index = best.view(batch, 1, 1, 1, 1).expand(batch, frames, 1, *masks.shape[-2:])
    chosen = masks.gather(2, index)  # (B, T, 1, h, w)
    flat = F.interpolate(
        chosen.flatten(0, 1), size=output_size, mode="bilinear", align_corners=False
    )
    return flat.unflatten(0, (batch, frames))


class QueryRVOSModel(RVOSModel):
    """Base of query-based architectures: every query as an evaluation candidate. Subclasses
    set ``self.criterion`` (a registered ``CRITERIA`` part, whose terms are the losses) and
    implement ``forward_outputs``."""

    criterion: torch.nn.Module

    def candidates(self, outputs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Every query of the last decoder layer: ``masks (B, T, N, h, w)`` logits and their
        referred probabilities ``(B, T, N)`` (A2D-Sentences scores every query)."""
        return outputs["masks"][-1], referred_probabilities(outputs["is_referred"][-1])
