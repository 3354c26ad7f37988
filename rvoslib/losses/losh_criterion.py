"""LoSh's criterion: one joint matching of the long and short branches, the long-short
intersection terms and our forward-backward visual consistency term.

From LoSh's released code (LoSh-M): mask and "is referred" losses are summed over the two
branches with **one** matching whose cost is the sum of the two branches' set costs plus
``-intersection_cost_weight x`` the long-short intersection ratio averaged over time; the
intersection loss (:mod:`rvoslib.losses.long_short`) ties the branches. Ours (not released): the
forward-backward visual consistency of the referred query (:func:`~rvoslib.losses.flow.
referred_flow_loss`), with flow from the batch or from a frozen estimator named by a
``FLOW_ESTIMATORS`` spec.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from rvoslib._checks import check_tensor
from rvoslib.losses._set_inputs import prepare_targets
from rvoslib.losses.criteria import QuerySetCriterion, query_targets
from rvoslib.losses.flow import FLOW_LOSSES, referred_flow_loss, resize_masks
from rvoslib.losses.long_short import long_short_intersection_ratio, long_short_match_cost
from rvoslib.losses.matching import hungarian_assignment, referred_query_index
from rvoslib.losses.registry import CRITERIA, FLOW_ESTIMATORS
from rvoslib.losses.set_criterion import gather_matched
from rvoslib.registry import normalize_spec

__all__ = ["LoShCriterion"]


@CRITERIA.register("losh", description="LoSh: joint long/short set criterion + intersection")
class LoShCriterion(QuerySetCriterion):
    """LoSh's criterion (see the module docstring) on ``outputs`` with the long branch's
    ``is_referred``/``masks`` and the short branch's ``short_is_referred``/``short_masks``;
    without the short keys (no joint prediction) it is the set criterion (plus the flow term).

    Args:
        weights, matcher, no_object_weight, class_loss, aux_loss, focal_alpha, focal_gamma:
            As :class:`~rvoslib.losses.criteria.QuerySetCriterion`.
        intersection_weight: Weight of the long-short intersection loss (0 = off).
        intersection_cost_weight: Weight of ``-ratio`` in the matching cost (0 = off).
        flow_weight: Weight of our forward-backward visual consistency term (0 = off).
        flow_loss: ``"l1"`` or ``"dice"``.
        flow_estimator: A ``FLOW_ESTIMATORS`` spec (e.g. ``{"name": "raft", "checkpoint_path":
            "raft_small.pth"}``) for batches without ``flow_forward``/``flow_backward``, or
            ``None``. Built on first use and kept out of the state dict.

    Raises:
        ValueError: a negative weight or an unknown ``flow_loss`` (named), or as
            :class:`~rvoslib.losses.criteria.QuerySetCriterion`.
        TypeError: ``flow_estimator`` is neither a spec nor ``None``.
    """

    def __init__(
        self,
        weights: Mapping[str, float],
        matcher: Mapping[str, float],
        no_object_weight: float = 0.1,
        class_loss: str = "softmax",
        aux_loss: bool = True,
        intersection_weight: float = 0.8,
        intersection_cost_weight: float = 0.8,
        flow_weight: float = 0.0,
        flow_loss: str = "l1",
        flow_estimator: Mapping[str, Any] | None = None,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
    ) -> None:
        super().__init__(
            weights, matcher, no_object_weight, class_loss, aux_loss, focal_alpha, focal_gamma
        )
        for name, value in (("intersection_weight", intersection_weight),
                            ("intersection_cost_weight", intersection_cost_weight),
                            ("flow_weight", flow_weight)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if flow_loss not in FLOW_LOSSES:
            raise ValueError(f"flow_loss must be one of {FLOW_LOSSES}, got {flow_loss!r}")
        self.intersection_weight = float(intersection_weight)
        self.intersection_cost_weight = float(intersection_cost_weight)
        self.flow_weight, self.flow_loss = float(flow_weight), flow_loss
        self.flow_estimator_spec = (
            None if flow_estimator is None else normalize_spec(flow_estimator, "flow estimator")
        )

    def extra_repr(self) -> str:
        return (
            f"aux_loss={self.aux_loss}, intersection_weight={self.intersection_weight:g}, "
            f"intersection_cost_weight={self.intersection_cost_weight:g}, "
            f"flow_weight={self.flow_weight:g}"
        )

    def forward(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]
    ) -> dict[str, torch.Tensor]:
        """Weighted terms: ``class``, ``dice``, ``mask_focal`` (summed over both branches, one
        joint matching), ``intersection`` (if its weight > 0) and ``flow`` (if its weight > 0).

        Raises:
            ValueError: more target objects than queries; flow of the wrong shape.
            KeyError: a flow term without batch flow and without ``flow_estimator``.
        """
        criterion = self.set_criterion
        targets = prepare_targets(query_targets(batch), with_boxes=False)
        long = self.supervised(outputs)
        if "short_masks" not in outputs:  # no short branch: the set criterion
            assignment = criterion.match(long, targets)
            terms = criterion.terms(long, targets, assignment)
            branches = [outputs["masks"]]
        else:
            short = self.supervised(outputs, "short_")
            cost = self.matcher.cost(long, targets) + self.matcher.cost(short, targets)
            if self.intersection_cost_weight:
                cost = cost + self._intersection_cost(long["masks"], short["masks"], targets)
            assignment = hungarian_assignment(cost, targets["target_valid"])
            long_terms = criterion.terms(long, targets, assignment)
            short_terms = criterion.terms(short, targets, assignment)
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
        over the branches (:func:`~rvoslib.losses.flow.referred_flow_loss`)."""
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
        ``flow_backward`` (``t+1 -> t``), ``(B, T-1, 2, H, W)`` in pixels, or the estimator's.

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
        estimator = self.flow_estimator().to(frames.device)
        earlier, later = frames[:, :-1].flatten(0, 1), frames[:, 1:].flatten(0, 1)
        forward = estimator(earlier, later).unflatten(0, shape[:2])
        return forward, estimator(later, earlier).unflatten(0, shape[:2])

    def flow_estimator(self) -> nn.Module:
        """The frozen flow estimator of the ``flow_estimator`` spec, built on first use and
        kept out of the state dict.

        Raises:
            KeyError: no ``flow_estimator`` spec, or an unknown estimator name (lists them).
        """
        estimator = self.__dict__.get("_flow_estimator")
        if estimator is None:
            if self.flow_estimator_spec is None:
                raise KeyError(
                    "flow_weight > 0 needs batch['flow_forward'] and batch['flow_backward'] "
                    "(B, T-1, 2, H, W) or a flow estimator in the criterion spec, e.g. "
                    "'flow_estimator': {'name': 'raft', 'checkpoint_path': 'raft_small.pth'}"
                )
            estimator = FLOW_ESTIMATORS.build(self.flow_estimator_spec)
            self.__dict__["_flow_estimator"] = estimator
        return estimator
