"""Set criterion of the query-based models (MTTR, ReferFormer, SOC, LoSh): match, then supervise.

Every decoder layer is matched separately (:class:`~rvoslib.losses.matching.HungarianMatcher`)
and supervised with the same terms; :meth:`SetCriterion.forward` returns each *weighted* term
summed over the layers. With ``frame_valid`` the frames with ground truth, a target *visible*
in a frame when its mask is non-empty there, and ``q(m)`` the query matched to target ``m``:

- ``class``: per frame, ``q(m)`` of the referred target is labelled "referred" in the frames
  where that target is visible and "no object" elsewhere; every other query (unmatched, or
  matched to a non-referred target) is "no object". ``"softmax"`` (MTTR): cross-entropy over
  K = 2, weighted 1 for the referred query and ``no_object_weight`` for all others, summed over
  queries and divided by the number of valid (clip, frame) pairs. ``"focal"`` (ReferFormer/SOC):
  sigmoid focal loss of the single logit, summed and divided by the number of visible
  (target, valid frame) pairs.
- ``dice`` and ``mask_focal``: matched masks upsampled (bilinear) to the target size, one Dice
  (smooth 1) and one per-pixel-mean focal loss per (real target, valid frame), divided by the
  number of such pairs. Frames where the target is absent count, with an empty target mask (as
  in MTTR, SOC and ReferFormer: a prediction there is penalised).
- ``box_l1`` and ``giou``: ``|b - b*|_1`` and ``1 - GIoU`` of matched boxes, only over visible
  (target, valid frame) pairs, divided by their number.

Normalisers are clamped to at least 1, so a clip with nothing visible gives finite losses and
finite gradients. The above are rvoslib's own conventions (the default); the matcher's
``conventions`` (:mod:`rvoslib.losses.conventions`: ``"mttr"``, ``"referformer"``) switch to
the originals' (visibility labels; subsampled targets, one Dice and focal mean per clip, mask
terms over the visible pairs, box terms over every valid frame with the zero box where absent).

LoSh runs the criterion on both branches with one joint matching::

    cost = matcher.cost(long, targets) + matcher.cost(short, targets) + extra  # extra: -0.8 x ratio
    assignment = hungarian_assignment(cost, targets["target_valid"])
    terms = criterion.terms(long, targets, assignment)  # + criterion.terms(short, ...)
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from rvoslib._checks import check_tensor, format_shape, is_compiling
from rvoslib.losses._set_inputs import (
    CLASS_LOSSES,
    check_outputs,
    focal_terms,
    mask_pairs,
    prepare_targets,
)
from rvoslib.losses.boxes import box_cxcywh_to_xyxy, elementwise_generalized_box_iou
from rvoslib.losses.matching import HungarianMatcher

__all__ = ["LOSS_KEYS", "SetCriterion", "gather_matched"]

LOSS_KEYS = ("class", "dice", "mask_focal", "box_l1", "giou")


def gather_matched(values: torch.Tensor, assignment: torch.Tensor) -> torch.Tensor:
    """Pick each target's matched query from per-query outputs.

    Args:
        values: ``(Ly, B, T, N, ...)`` per-query outputs (masks, boxes, ...).
        assignment: ``(Ly, B, M)`` long, the query of each target (``-1`` = unmatched; those
            rows hold query 0's values and must be masked out by the caller).

    Returns:
        ``(Ly, B, T, M, ...)``.

    Example:
        >>> values = torch.arange(4.0).view(1, 1, 1, 4)
        >>> gather_matched(values, torch.tensor([[[3, -1]]])).tolist()
        [[[[3.0, 0.0]]]]
    """
    if not is_compiling():
        check_tensor(assignment, "assignment", ("Ly", "B", "M"), floating=False)
        if values.ndim < 4 or values.shape[:2] != assignment.shape[:2]:
            raise ValueError(
                f"values must be (Ly, B, T, N, ...) with (Ly, B) = {tuple(assignment.shape[:2])} "
                f"of assignment, got {format_shape(values.shape)}"
            )
    layers, batch, frames, _ = values.shape[:4]
    flat = values.reshape(*values.shape[:4], -1)
    index = assignment.clamp_min(0)[:, :, None, :, None]
    index = index.expand(layers, batch, frames, assignment.shape[-1], flat.shape[-1])
    return flat.gather(3, index).view(*index.shape[:4], *values.shape[4:])


class SetCriterion(nn.Module):
    """Hungarian-matched losses over every decoder layer (see the module docstring).

    Args:
        matcher: The :class:`~rvoslib.losses.matching.HungarianMatcher`.
        weights: Term weights, keys among ``class``, ``dice``, ``mask_focal``, ``box_l1``,
            ``giou`` (missing = 0). Only terms with a nonzero weight are computed and returned.
        no_object_weight: Softmax class weight of every query but the referred one (MTTR: 0.1).
        class_loss: ``"softmax"`` (K = 2 logits) or ``"focal"`` (K = 1); must be the matcher's.
        focal_alpha, focal_gamma: Focal parameters (class and mask focal terms).

    The registered criteria of :mod:`rvoslib.losses.criteria` wrap it for whole batches; each
    paper's weights are its architecture's criterion constant (e.g.
    :data:`~rvoslib.models.architectures.mttr.MTTR_CRITERION`).

    Example:
        >>> matcher = HungarianMatcher(class_weight=2.0, dice_weight=5.0)
        >>> criterion = SetCriterion(matcher, {"class": 2.0, "dice": 5.0, "mask_focal": 2.0})
        >>> outputs = {"is_referred": torch.zeros(3, 1, 2, 4, 2),  # (Ly, B, T, N, K)
        ...            "masks": torch.zeros(3, 1, 2, 4, 4, 4)}  # (Ly, B, T, N, h, w)
        >>> targets = {"masks": torch.ones(1, 1, 2, 8, 8), "target_valid": torch.ones(1, 1).bool(),
        ...            "referred": torch.ones(1, 1).bool(), "frame_valid": torch.ones(1, 2).bool()}
        >>> sorted(criterion(outputs, targets))
        ['class', 'dice', 'mask_focal']
    """

    def __init__(
        self,
        matcher: HungarianMatcher,
        weights: Mapping[str, float],
        no_object_weight: float = 0.1,
        class_loss: str = "softmax",
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
    ) -> None:
        super().__init__()
        if not isinstance(matcher, HungarianMatcher):
            raise TypeError(f"matcher must be a HungarianMatcher, got {type(matcher).__name__}")
        if not isinstance(weights, Mapping):
            raise TypeError(f"weights must be a dict, got {type(weights).__name__}")
        unknown = sorted(set(weights) - set(LOSS_KEYS))
        if unknown:
            raise KeyError(f"unknown loss weights {unknown}; valid keys are {list(LOSS_KEYS)}")
        for key, value in weights.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"weights[{key!r}] must be a number >= 0, got {value!r}")
        if class_loss not in CLASS_LOSSES:
            raise ValueError(f"class_loss must be one of {CLASS_LOSSES}, got {class_loss!r}")
        if matcher.class_loss != class_loss:
            raise ValueError(
                f"class_loss={class_loss!r} differs from the matcher's {matcher.class_loss!r}"
            )
        if not 0 <= no_object_weight <= 1:
            raise ValueError(f"no_object_weight must be in [0, 1], got {no_object_weight!r}")
        self.matcher = matcher
        self.weights = {key: float(weights.get(key, 0.0)) for key in LOSS_KEYS}
        self.no_object_weight = float(no_object_weight)
        self.class_loss, self.focal_alpha, self.focal_gamma = class_loss, focal_alpha, focal_gamma

    @property
    def uses_boxes(self) -> bool:
        """Whether a box term has a nonzero weight (then ``outputs["boxes"]`` is required)."""
        return bool(self.weights["box_l1"] or self.weights["giou"])

    def extra_repr(self) -> str:
        weights = {key: value for key, value in self.weights.items() if value}
        return f"weights={weights}, class_loss={self.class_loss!r}"

    def match(
        self,
        outputs: Mapping[str, torch.Tensor],
        targets: Mapping[str, torch.Tensor],
        extra_cost: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The matcher's ``(Ly, B, M)`` assignment (``-1`` = padding); see :meth:`forward`."""
        return self.matcher.assign(outputs, targets, extra_cost)

    def forward(
        self,
        outputs: Mapping[str, torch.Tensor],
        targets: Mapping[str, torch.Tensor],
        extra_cost: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Match every layer, then compute the weighted terms summed over layers.

        Args:
            outputs: ``is_referred (Ly, B, T, N, K)`` logits, ``masks (Ly, B, T, N, h, w)``
                logits, ``boxes (Ly, B, T, N, 4)`` normalised cxcywh (for the box terms).
            targets: ``masks (B, M, T, H, W)``, ``target_valid (B, M)``, ``referred (B, M)``,
                ``frame_valid (B, T)`` (see :func:`~rvoslib.losses.matching.prepare_targets`).
            extra_cost: added to the matching cost, broadcastable to ``(Ly, B, N, M)``.

        Returns:
            ``{name: scalar float32}`` for each term with a nonzero weight.
        """
        targets = self._prepare(outputs, targets)
        assignment = self.matcher.assign(outputs, targets, extra_cost)
        return self.terms(outputs, targets, assignment)

    def _prepare(
        self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        need_boxes = self.uses_boxes or self.matcher.uses_boxes
        box_extent = self.matcher.conventions.box_extent
        prepared = prepare_targets(targets, with_boxes=need_boxes, box_extent=box_extent)
        if not is_compiling():
            check_outputs(outputs, prepared, self.class_loss, need_boxes)
        return prepared

    def terms(
        self,
        outputs: Mapping[str, torch.Tensor],
        targets: Mapping[str, torch.Tensor],
        assignment: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """The weighted terms for a given assignment (arguments as in :meth:`forward`).

        Args:
            outputs: As in :meth:`forward`.
            targets: As in :meth:`forward`.
            assignment: ``(Ly, B, M)`` long query per target, ``-1`` for padding targets.

        Returns:
            ``{name: scalar float32}`` for each term with a nonzero weight, summed over layers.
        """
        targets = self._prepare(outputs, targets)
        layers, batch = outputs["masks"].shape[:2]
        if not is_compiling():
            check_tensor(
                assignment, "assignment", (layers, batch, targets["masks"].shape[1]), floating=False
            )
        device_type = outputs["masks"].device.type
        with torch.autocast(device_type=device_type, enabled=False):
            return self._terms(outputs, targets, assignment)

    def _terms(
        self,
        outputs: Mapping[str, torch.Tensor],
        targets: dict[str, torch.Tensor],
        assignment: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        conventions = self.matcher.conventions
        matched = (assignment >= 0) & targets["target_valid"]  # (Ly, B, M)
        frame_valid = targets["frame_valid"]  # (B, T)
        visible = targets["visible"]  # (B, M, T)
        pair = (matched[:, :, :, None] & frame_valid[None, :, None, :]).transpose(2, 3).float()
        pair_visible = pair * visible.transpose(1, 2)[None].float()  # (Ly, B, T, M)
        num_visible = pair_visible.sum((1, 2, 3)).clamp_min(1.0)
        losses: dict[str, torch.Tensor] = {}
        if self.weights["class"]:
            losses["class"] = self._class_term(outputs, targets, assignment, matched, num_visible)
        if self.weights["dice"] or self.weights["mask_focal"]:
            pred = gather_matched(outputs["masks"], assignment).float()  # (Ly, B, T, M, h, w)
            gt = targets["masks"].float().transpose(1, 2)[None]  # (1, B, T, M, H, W)
            pred, gt = mask_pairs(pred, gt, conventions.mask_resolution, conventions.mask_stride)
            losses.update(self._mask_terms(pred, gt, pair, num_visible))
        if self.uses_boxes:
            pred_boxes = gather_matched(outputs["boxes"], assignment).float()  # (Ly, B, T, M, 4)
            gt_boxes = targets["boxes"].float().transpose(1, 2)  # (B, T, M, 4)
            placeholder = torch.tensor([0.5, 0.5, 1.0, 1.0], device=gt_boxes.device)
            box_pairs = pair_visible
            if conventions.box_frames == "valid":  # every valid frame, zero box where absent
                box_pairs, gt_boxes = pair, gt_boxes[None]
            else:
                gt_visible = visible.transpose(1, 2)[..., None]
                gt_boxes = torch.where(gt_visible, gt_boxes, placeholder)[None]
            if self.weights["box_l1"]:
                l1 = (pred_boxes - gt_boxes).abs().sum(-1)
                losses["box_l1"] = _layer_sum(l1 * box_pairs, num_visible)
            if self.weights["giou"]:
                giou = elementwise_generalized_box_iou(
                    box_cxcywh_to_xyxy(pred_boxes),
                    box_cxcywh_to_xyxy(gt_boxes),
                    conventions.giou_smooth,
                )
                losses["giou"] = _layer_sum((1 - giou) * box_pairs, num_visible)
        return {key: self.weights[key] * value for key, value in losses.items()}

    def _mask_terms(
        self,
        pred: torch.Tensor,
        gt: torch.Tensor,
        pair: torch.Tensor,
        num_visible: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Unweighted Dice and mask focal of matched ``pred (Ly, B, T, M, h, w)`` logits and
        ``gt (1, B, T, M, h, w)`` at one size; ``pair (Ly, B, T, M)`` the supervised pairs."""
        conventions = self.matcher.conventions
        per_clip = conventions.mask_reduction == "clip"
        # clip: one term per matched target with a valid frame; frame: one per pair
        terms = pair.amax(2) if per_clip else pair  # (Ly, B, M) or (Ly, B, T, M)
        count = terms.flatten(1).sum(1).clamp_min(1.0)  # (Ly,): normalisers of each layer
        normaliser = num_visible if conventions.mask_normaliser == "visible" else count
        losses: dict[str, torch.Tensor] = {}
        if self.weights["dice"]:
            probs = pred.sigmoid()
            inter = (probs * gt).sum((-2, -1))  # (Ly, B, T, M)
            total = probs.sum((-2, -1)) + gt.sum((-2, -1))
            if per_clip:  # sums over the valid frames, then one Dice
                inter, total = (inter * pair).sum(2), (total * pair).sum(2)
            dice = 1 - (2 * inter + 1) / (total + 1)
            losses["dice"] = _layer_sum(dice * terms, normaliser)
        if self.weights["mask_focal"]:
            pos, neg = focal_terms(pred, self.focal_alpha, self.focal_gamma)
            focal = (gt * pos + (1 - gt) * neg).mean((-2, -1))  # (Ly, B, T, M)
            if per_clip:  # the pixel mean over the valid frames
                focal = (focal * pair).sum(2) / pair.sum(2).clamp_min(1.0)
            losses["mask_focal"] = _layer_sum(focal * terms, normaliser)
        return losses

    def _class_term(
        self,
        outputs: Mapping[str, torch.Tensor],
        targets: dict[str, torch.Tensor],
        assignment: torch.Tensor,
        matched: torch.Tensor,
        num_visible: torch.Tensor,
    ) -> torch.Tensor:
        logits = outputs["is_referred"].float()  # (Ly, B, T, N, K)
        queries = logits.shape[3]
        frame_valid = targets["frame_valid"].float()[None, :, :, None]  # (1, B, T, 1)
        referred = (matched & targets["referred"]).float()  # (Ly, B, M)
        one_hot = F.one_hot(assignment.clamp_min(0), queries).float() * referred[..., None]
        # label[l, b, t, n] = 1 where query n is matched to a referred target visible in frame t
        label = torch.einsum("lbmn,bmt->lbtn", one_hot, targets["visible"].float()).clamp_max(1)
        if self.class_loss == "softmax":
            log_probs = logits.log_softmax(-1)
            ce = -(label * log_probs[..., 0] + (1 - label) * log_probs[..., 1])
            is_referred_query = one_hot.sum(2).clamp_max(1)[:, :, None, :]  # (Ly, B, 1, N)
            weight = self.no_object_weight + (1 - self.no_object_weight) * is_referred_query
            num_frames = targets["frame_valid"].sum().clamp_min(1).float()
            return (ce * weight * frame_valid).sum() / num_frames
        pos, neg = focal_terms(logits[..., 0], self.focal_alpha, self.focal_gamma)
        focal = label * pos + (1 - label) * neg
        return _layer_sum(focal * frame_valid, num_visible)


def _layer_sum(values: torch.Tensor, normaliser: torch.Tensor) -> torch.Tensor:
    """``sum over layers of (sum of values[layer]) / normaliser[layer]``, values ``(Ly, ...)``."""
    return (values.flatten(1).sum(1) / normaliser).sum()
