"""Hungarian matching of query tracks to target tracks (MTTR, ReferFormer, SOC, LoSh).

Query ``n`` is one object track: the same object in every frame of the clip. The matching cost
of query ``n`` and target ``m`` is a weighted sum of per-frame costs averaged over time:

- class: the per-frame label of target ``m`` is "referred" in the frames where ``m`` is the
  referred target *and* visible, "no object" otherwise. ``"softmax"`` (MTTR, K = 2 logits):
  ``-p(label)``. ``"focal"`` (ReferFormer/SOC, K = 1 logit): the DETR focal cost
  ``pos(p) - neg(p)`` for a "referred" frame and its negative ``neg(p) - pos(p)`` for a
  "no object" frame. A target that is not the referred one therefore costs ``-p(no object)``
  in every frame, as in MTTR's matcher (``compute_is_referred_cost``), which pushes the queries
  that look referred towards the referred target. (ReferFormer has one target, the referred one,
  and averages its class cost over the visible frames only; here the invisible frames count as
  "no object" frames, MTTR's choice, consistently with the labels of :class:`SetCriterion`.)
  Averaged over the clip's valid frames (``frame_valid``).
- dice: ``-Dice`` (smooth 1) between ``sigmoid`` of the prediction upsampled (bilinear) to the
  target size and the target mask, per frame, averaged over valid frames (MTTR).
- mask focal: the per-pixel mean of the sigmoid focal loss, per frame, averaged over valid
  frames (ReferFormer; computed without an ``N x M x pixels`` tensor).
- box L1 / GIoU: ``|b - b*|_1`` and ``-GIoU`` of ``cxcywh`` boxes, averaged over the frames where
  the target is visible (ReferFormer averages over all frames, zero boxes included).

These are rvoslib's own conventions (the default); ``conventions="referformer"``
(:mod:`rvoslib.losses.conventions`) takes ReferFormer's matcher instead: class cost over the
visible frames with ``-log(p + 1e-8)``, one Dice over the clip on subsampled targets, box costs
over every frame (zero box where absent) with the ``1e-6``-smoothed GIoU.

Costs are computed batched on the outputs' device; the ``(Ly, B, N, M)`` cost goes to the host in
one transfer, and ``scipy.optimize.linear_sum_assignment`` solves each (layer, clip) problem
over the real targets only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from rvoslib._checks import check_tensor, format_shape, is_compiling
from rvoslib.losses._set_inputs import (
    CLASS_LOSSES,
    check_outputs,
    prepare_targets,
)
from rvoslib.losses.conventions import SetConventions, resolve_conventions
from rvoslib.losses.match_costs import layer_cost

__all__ = [
    "MATCHER_WEIGHTS",
    "HungarianMatcher",
    "hungarian_assignment",
    "match_cost_matrix",
    "prepare_targets",
    "referred_query_index",
]

_LARGE_COST = 1e6
#: The cost weights of :class:`HungarianMatcher`, in the order of its ``weights`` tuple.
MATCHER_WEIGHTS = (
    "class_weight",
    "dice_weight",
    "mask_focal_weight",
    "box_l1_weight",
    "giou_weight",
)


def match_cost_matrix(
    is_referred: torch.Tensor,
    masks: torch.Tensor,
    targets: Mapping[str, torch.Tensor],
    boxes: torch.Tensor | None = None,
    **matcher: Any,
) -> torch.Tensor:
    """The matching cost of one decoder layer (see the module docstring for the terms).

    Args:
        is_referred: ``(B, T, N, K)`` logits, K = 2 for ``"softmax"``, 1 for ``"focal"``.
        masks: ``(B, T, N, h, w)`` mask logits.
        targets: the target dict (see :func:`prepare_targets`), ``masks (B, M, T, H, W)``.
        boxes: ``(B, T, N, 4)`` normalised cxcywh boxes, needed for nonzero box weights.
        **matcher: :class:`HungarianMatcher` keyword arguments (term weights, ``class_loss``,
            focal parameters; default: 2 softmax class + 5 Dice).

    Returns:
        ``(B, N, M)`` float32 cost, no gradient (columns of padding targets are meaningless).

    Example:
        >>> targets = {"masks": torch.ones(1, 1, 2, 8, 8), "target_valid": torch.ones(1, 1).bool(),
        ...            "referred": torch.ones(1, 1).bool(), "frame_valid": torch.ones(1, 2).bool()}
        >>> match_cost_matrix(torch.zeros(1, 2, 3, 2), torch.zeros(1, 2, 3, 4, 4), targets).shape
        torch.Size([1, 3, 1])
    """
    check_tensor(is_referred, "is_referred", ("B", "T", "N", "K"), floating=True)
    check_tensor(masks, "masks", ("B", "T", "N", "h", "w"), floating=True)
    outputs = {"is_referred": is_referred[None], "masks": masks[None]}
    if boxes is not None:
        check_tensor(boxes, "boxes", ("B", "T", "N", 4), floating=True)
        outputs["boxes"] = boxes[None]
    return HungarianMatcher(**matcher).cost(outputs, targets)[0]


def _solve(cost: torch.Tensor, target_valid: torch.Tensor) -> np.ndarray:
    """One host transfer, then one assignment per (layer, clip): ``(L, B, M)`` int64, -1 = none."""
    from scipy.optimize import linear_sum_assignment  # lazy: keeps `import rvoslib` light

    layers, batch, queries, num_targets = cost.shape
    valid_row = target_valid.to(cost.device, torch.float32)[None, :, None, :]
    packed = torch.cat((cost.detach().float(), valid_row.expand(layers, -1, -1, -1)), dim=2)
    host = packed.cpu().numpy()
    valid = host[0, :, queries] > 0.5  # (B, M)
    for clip, count in enumerate(valid.sum(1)):
        if count > queries:
            raise ValueError(
                f"clip {clip} has M={int(count)} real targets but only N={queries} queries; "
                "the matcher needs M <= N"
            )
    result = np.full((layers, batch, num_targets), -1, dtype=np.int64)
    for layer in range(layers):
        for clip in range(batch):
            columns = np.flatnonzero(valid[clip])
            if columns.size == 0:
                continue
            matrix = host[layer, clip, :queries][:, columns].astype(np.float64)
            matrix = np.nan_to_num(matrix, nan=_LARGE_COST, posinf=_LARGE_COST, neginf=-_LARGE_COST)
            rows, cols = linear_sum_assignment(matrix)
            result[layer, clip, columns[cols]] = rows
    return result


def hungarian_assignment(cost: torch.Tensor, target_valid: torch.Tensor) -> torch.Tensor:
    """Minimum-cost assignment of every real target to a distinct query, per clip.

    Non-finite costs are replaced by ``+-1e6`` so that a diverging model still gets a matching
    (its loss will be non-finite, for the trainer to handle).

    Args:
        cost: ``(B, N, M)`` or ``(Ly, B, N, M)`` cost (any device; copied to the host once).
        target_valid: ``(B, M)`` bool, the real targets (others are left unmatched).

    Returns:
        ``(B, M)`` or ``(Ly, B, M)`` long on ``cost``'s device: the query matched to each
        target, ``-1`` for padding targets.

    Raises:
        ValueError: a clip has more real targets than queries, or the shapes disagree.

    Example:
        >>> cost = torch.tensor([[[0.0, 1.0], [2.0, 0.0], [0.5, 0.5]]])
        >>> hungarian_assignment(cost, torch.tensor([[True, True]])).tolist()
        [[0, 1]]
    """
    if not isinstance(cost, torch.Tensor) or cost.ndim not in (3, 4):
        shape = format_shape(cost.shape) if isinstance(cost, torch.Tensor) else type(cost).__name__
        raise ValueError(f"cost must be (B, N, M) or (Ly, B, N, M), got {shape}")
    check_tensor(target_valid, "target_valid", (cost.shape[-3], cost.shape[-1]), floating=False)
    layered = cost if cost.ndim == 4 else cost[None]
    result = torch.from_numpy(_solve(layered, target_valid.bool())).to(cost.device)
    return result if cost.ndim == 4 else result[0]


def referred_query_index(
    assignment: torch.Tensor, referred: torch.Tensor, target_valid: torch.Tensor | None = None
) -> torch.Tensor:
    """The query matched to the referred target of each clip (SOC's contrastive positive).

    Args:
        assignment: ``(..., B, M)`` long from :func:`hungarian_assignment` (``-1`` = unmatched).
        referred: ``(B, M)`` bool.
        target_valid: ``(B, M)`` bool, or ``None`` (all real).

    Returns:
        ``(..., B)`` long, ``-1`` for a clip without a (matched) referred target.

    Example:
        >>> referred_query_index(torch.tensor([[4, 2]]), torch.tensor([[False, True]])).tolist()
        [2]
    """
    if not is_compiling():
        check_tensor(referred, "referred", ("B", "M"), floating=False)
        if assignment.shape[-2:] != referred.shape:
            raise ValueError(
                f"assignment must be (..., B, M) with (B, M) = {tuple(referred.shape)} of "
                f"referred, got {format_shape(assignment.shape)}"
            )
    chosen = referred.bool() if target_valid is None else referred.bool() & target_valid.bool()
    return torch.where(chosen, assignment, torch.full_like(assignment, -1)).amax(-1)


class HungarianMatcher(nn.Module):
    """Hungarian matcher over whole tracks (query ``n`` = one object in every frame).

    Args:
        class_weight: Weight of the class cost.
        dice_weight: Weight of the ``-Dice`` cost.
        mask_focal_weight: Weight of the mask focal cost.
        box_l1_weight: Weight of the box L1 cost (needs ``outputs["boxes"]``).
        giou_weight: Weight of the ``-GIoU`` cost (needs ``outputs["boxes"]``).
        class_loss: ``"softmax"`` (K = 2 logits, index 0 = referred) or ``"focal"`` (K = 1).
        focal_alpha, focal_gamma: Focal parameters of the class and mask focal costs.
        conventions: A :data:`~rvoslib.losses.conventions.CONVENTIONS` name, dict or
            :class:`~rvoslib.losses.conventions.SetConventions` (default ``"rvoslib"``; its
            mask, class-cost, box and box-extent choices apply here and in the
            :class:`~rvoslib.losses.SetCriterion` that shares this matcher).

    Example:
        >>> matcher = HungarianMatcher(class_weight=2.0, dice_weight=5.0)  # MTTR's
        >>> outputs = {"is_referred": torch.zeros(3, 1, 2, 4, 2),  # (Ly, B, T, N, K)
        ...            "masks": torch.zeros(3, 1, 2, 4, 4, 4)}  # (Ly, B, T, N, h, w)
        >>> targets = {"masks": torch.ones(1, 1, 2, 8, 8), "target_valid": torch.ones(1, 1).bool(),
        ...            "referred": torch.ones(1, 1).bool(), "frame_valid": torch.ones(1, 2).bool()}
        >>> matcher.assign(outputs, targets).shape  # (Ly, B, M)
        torch.Size([3, 1, 1])
        >>> query, target = matcher(outputs, targets)[-1][0]  # last layer, clip 0
        >>> target.tolist()
        [0]
    """

    def __init__(
        self,
        class_weight: float = 2.0,
        dice_weight: float = 5.0,
        mask_focal_weight: float = 0.0,
        box_l1_weight: float = 0.0,
        giou_weight: float = 0.0,
        class_loss: str = "softmax",
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        conventions: str | dict | SetConventions | None = None,
    ) -> None:
        super().__init__()
        self.conventions = resolve_conventions(conventions)
        weights = {
            "class_weight": class_weight,
            "dice_weight": dice_weight,
            "mask_focal_weight": mask_focal_weight,
            "box_l1_weight": box_l1_weight,
            "giou_weight": giou_weight,
        }
        for name, value in weights.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if not any(weights.values()):
            raise ValueError(f"at least one matching weight must be nonzero, got {weights}")
        if class_loss not in CLASS_LOSSES:
            raise ValueError(f"class_loss must be one of {CLASS_LOSSES}, got {class_loss!r}")
        self.weights = tuple(float(value) for value in weights.values())
        self.class_loss, self.focal_alpha, self.focal_gamma = class_loss, focal_alpha, focal_gamma

    @property
    def uses_boxes(self) -> bool:
        """Whether the cost has box terms (then ``outputs["boxes"]`` is required)."""
        return bool(self.weights[3] or self.weights[4])

    def extra_repr(self) -> str:
        names = ("class", "dice", "mask_focal", "box_l1", "giou")
        weights = ", ".join(f"{n}={w:g}" for n, w in zip(names, self.weights) if w)
        extra = "" if self.conventions == SetConventions() else f", {self.conventions}"
        return f"{weights}, class_loss={self.class_loss!r}{extra}"

    def prepare(self, targets: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """:func:`prepare_targets` with this matcher's box need and box extent."""
        return prepare_targets(
            targets, with_boxes=self.uses_boxes, box_extent=self.conventions.box_extent
        )

    @torch.no_grad()
    def cost(
        self,
        outputs: Mapping[str, torch.Tensor],
        targets: Mapping[str, torch.Tensor],
        extra_cost: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The ``(Ly, B, N, M)`` float32 matching cost of every decoder layer (on the device).

        Args:
            outputs: ``is_referred (Ly, B, T, N, K)``, ``masks (Ly, B, T, N, h, w)``, and
                ``boxes (Ly, B, T, N, 4)`` when the box weights are nonzero.
            targets: see :func:`prepare_targets`.
            extra_cost: added to the cost, broadcastable to ``(Ly, B, N, M)`` (e.g. LoSh's
                ``-0.8 x`` intersection term, ``(B, N, 1)``), or ``None``.
        """
        targets = self.prepare(targets)
        if not is_compiling():
            check_outputs(outputs, targets, self.class_loss, self.uses_boxes)
        masks = outputs["masks"]
        layers, batch, _, queries = masks.shape[:4]
        shape = (layers, batch, queries, targets["masks"].shape[1])
        if extra_cost is not None:
            try:
                ok = torch.broadcast_shapes(tuple(extra_cost.shape), shape) == shape
            except RuntimeError:
                ok = False
            if not ok:
                raise ValueError(
                    f"extra_cost must broadcast to (Ly, B, N, M) = {shape}, "
                    f"got {format_shape(extra_cost.shape)}"
                )
        boxes = outputs.get("boxes") if self.uses_boxes else None
        with torch.autocast(device_type=masks.device.type, enabled=False):
            cost = torch.stack(
                [
                    layer_cost(
                        outputs["is_referred"][layer],
                        masks[layer],
                        None if boxes is None else boxes[layer],
                        targets,
                        self.weights,
                        self.class_loss,
                        self.focal_alpha,
                        self.focal_gamma,
                        self.conventions,
                    )
                    for layer in range(layers)
                ]
            )
            if extra_cost is not None:
                cost = cost + extra_cost.detach().float()
        return cost

    def assign(
        self,
        outputs: Mapping[str, torch.Tensor],
        targets: Mapping[str, torch.Tensor],
        extra_cost: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Match every layer separately: ``(Ly, B, M)`` long query per target, ``-1`` = padding.

        Arguments as in :meth:`cost`. One device-to-host copy for the whole batch and all layers.
        """
        targets = self.prepare(targets)
        cost = self.cost(outputs, targets, extra_cost)
        return hungarian_assignment(cost, targets["target_valid"])

    def forward(
        self,
        outputs: Mapping[str, torch.Tensor],
        targets: Mapping[str, torch.Tensor],
        extra_cost: torch.Tensor | None = None,
    ) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
        """Match every layer; ``result[layer][clip] = (query_indices, target_indices)``.

        Arguments as in :meth:`cost`. The index tensors are int64 on the CPU, sorted by target,
        one entry per real target.
        """
        targets = self.prepare(targets)
        cost = self.cost(outputs, targets, extra_cost)
        assignment = _solve(cost, targets["target_valid"])
        result = []
        for per_layer in assignment:
            clips = []
            for per_clip in per_layer:
                target_idx = np.flatnonzero(per_clip >= 0)
                clips.append((torch.from_numpy(per_clip[target_idx]), torch.from_numpy(target_idx)))
            result.append(clips)
        return result
