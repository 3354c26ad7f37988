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

:meth:`QueryRVOSModel.losses` matches queries to the targets of the batch
(:func:`query_targets`) and returns the :class:`~rvoslib.losses.SetCriterion` terms.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from rvoslib.losses.set_criterion import SetCriterion
from rvoslib.models.base import RVOSModel

__all__ = ["QueryRVOSModel", "query_targets", "referred_probabilities", "select_referred"]


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


def query_targets(batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The set-criterion targets of a collated batch.

    A referring batch has one target per clip, the referred object (``masks (B, T, H, W)``).
    Datasets that annotate every object of a frame (A2D-Sentences) add ``instance_masks``, a
    list of ``(M_i, T, H, W)`` tensors, and ``referred``, a list of ``(M_i,)`` bools: they are
    padded to ``M = max M_i``.

    Returns:
        ``masks (B, M, T, H, W)`` float, ``target_valid (B, M)`` bool, ``referred (B, M)``
        bool, ``frame_valid (B, T)`` bool.
    """
    masks = batch["masks"]
    device = masks.device
    frame_valid = batch.get("valid")
    if frame_valid is None:
        frame_valid = torch.ones(masks.shape[:2], dtype=torch.bool, device=device)
    instances = batch.get("instance_masks")
    if not isinstance(instances, (list, tuple)) or not instances:
        ones = torch.ones(masks.shape[0], 1, dtype=torch.bool, device=device)
        return {
            "masks": (masks > 0.5).float()[:, None],
            "target_valid": ones,
            "referred": ones,
            "frame_valid": frame_valid.bool(),
        }
    count = max(int(item.shape[0]) for item in instances)
    padded = masks.new_zeros(masks.shape[0], count, *masks.shape[1:])
    valid = torch.zeros(masks.shape[0], count, dtype=torch.bool, device=device)
    referred = torch.zeros_like(valid)
    for row, (item, flags) in enumerate(zip(instances, batch["referred"])):
        padded[row, : item.shape[0]] = torch.as_tensor(item, device=device).float()
        valid[row, : item.shape[0]] = True
        referred[row, : item.shape[0]] = torch.as_tensor(flags, device=device).bool()
    return {
        "masks": padded,
        "target_valid": valid,
        "referred": referred,
        "frame_valid": frame_valid.bool(),
    }


class QueryRVOSModel(RVOSModel):
    """Base of query-based architectures: ``referred_logits`` from ``outputs["logits"]`` and
    the set-criterion losses. Subclasses set ``self.criterion`` (a
    :class:`~rvoslib.losses.SetCriterion`) and implement ``build`` and ``forward_outputs``."""

    criterion: SetCriterion

    def losses(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]
    ) -> dict[str, torch.Tensor]:
        """Weighted set-criterion terms (``class``, ``dice``, ``mask_focal``, and ``box_l1``,
        ``giou`` for models with boxes), summed over decoder layers."""
        return self.criterion(outputs, query_targets(batch))
