"""The criteria of the query-based architectures: the set criterion and SOC's.

Registered in :data:`~rvoslib.losses.registry.CRITERIA` (LoSh's ``"losh"`` is in
:mod:`rvoslib.losses.losh_criterion`):

===========  ======================================================================
``"set"``    :class:`QuerySetCriterion`: Hungarian matching of query tracks, then the
             :class:`~rvoslib.losses.SetCriterion` terms at every supervised decoder layer
``"soc"``    :class:`SOCCriterion`: the set criterion plus the video-text contrastive loss
===========  ======================================================================

A spec holds the term weights, the class loss and the matcher's cost weights, e.g.
``{"name": "set", "weights": {"class": 2.0, "dice": 5.0, "mask_focal": 2.0},
"no_object_weight": 0.1, "class_loss": "softmax", "matcher": {"class_weight": 2.0,
"dice_weight": 5.0}, "aux_loss": True}``. Each paper's values are the criterion constants of
its architecture module (e.g. :data:`rvoslib.models.architectures.mttr.MTTR_CRITERION`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from rvoslib._checks import format_shape
from rvoslib.losses.contrastive import video_text_contrastive_loss
from rvoslib.losses.conventions import SetConventions, resolve_conventions
from rvoslib.losses.matching import MATCHER_WEIGHTS, HungarianMatcher, referred_query_index
from rvoslib.losses.registry import CRITERIA
from rvoslib.losses.set_criterion import SetCriterion

__all__ = ["QuerySetCriterion", "SOCCriterion", "query_targets"]

#: The per-query outputs a set criterion reads (those present are kept).
_SUPERVISED_KEYS = ("is_referred", "masks", "boxes")


def query_targets(
    batch: Mapping[str, Any], conventions: str | dict | SetConventions | None = None
) -> dict[str, torch.Tensor]:
    """The set-criterion targets of a collated batch.

    A referring batch has one target per clip, the referred object (``masks (B, T, H, W)``).
    Datasets that annotate every object of a frame (A2D-Sentences) add ``instance_masks``, a
    list of ``(M_i, T, H, W)`` tensors, and ``referred``, a list of ``(M_i,)`` bools: they are
    padded to ``M = max M_i`` (unless ``conventions.objects == "referred"``: then the referred
    object is the only target, as in ReferFormer).

    With ``conventions.visibility == "labels"`` (MTTR) the referred object is visible in the
    frames the batch's ``visible`` labels say (``(B, T)`` bool, or a list of ``(T_i,)``; MTTR's
    ``is_ref_inst_visible``, taken on the full-size masks before resizing), in every frame when
    the batch has none (MTTR on A2D-Sentences); other objects where their mask is non-empty.

    Returns:
        ``masks (B, M, T, H, W)`` float, ``target_valid (B, M)`` bool, ``referred (B, M)``
        bool, ``frame_valid (B, T)`` bool, and ``visible (B, M, T)`` bool with ``"labels"``.

    Example:
        >>> targets = query_targets({"masks": torch.ones(2, 3, 4, 4)})
        >>> targets["masks"].shape, targets["referred"].tolist()
        (torch.Size([2, 1, 3, 4, 4]), [[True], [True]])
    """
    conventions = resolve_conventions(conventions)
    targets = _object_targets(batch, conventions.objects == "all")
    if conventions.visibility == "labels":
        labels = _visibility_labels(batch, targets["frame_valid"].shape)
        visible = targets["masks"].flatten(-2).amax(-1) > 0.5  # (B, M, T)
        targets["visible"] = torch.where(targets["referred"][..., None], labels[:, None], visible)
    return targets


def _visibility_labels(batch: Mapping[str, Any], shape: torch.Size) -> torch.Tensor:
    """The batch's ``visible`` labels as ``(B, T)`` bool (all True when absent)."""
    device = batch["masks"].device
    labels = batch.get("visible")
    if labels is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    result = torch.zeros(shape, dtype=torch.bool, device=device)
    if isinstance(labels, torch.Tensor):
        labels = list(labels) if labels.ndim == 2 else labels
    if not isinstance(labels, (list, tuple)) or len(labels) != shape[0]:
        got = (
            f"a list of length {len(labels)}"
            if isinstance(labels, (list, tuple))
            else format_shape(labels.shape)
            if isinstance(labels, torch.Tensor)
            else type(labels).__name__
        )
        raise ValueError(
            f"batch['visible'] must be a (B, T) = {tuple(shape)} bool tensor or a list of "
            f"B = {shape[0]} (T_i,) flags, got {got}"
        )
    for row, flags in enumerate(labels):
        flags = torch.as_tensor(flags, device=device).bool().flatten()
        if flags.numel() > shape[1]:
            raise ValueError(
                f"batch['visible'][{row}] has {flags.numel()} flags for T={shape[1]} frames"
            )
        result[row, : flags.numel()] = flags
    return result


def _object_targets(batch: Mapping[str, Any], all_objects: bool) -> dict[str, torch.Tensor]:
    """The targets of :func:`query_targets` without visibility labels."""
    masks = batch["masks"]
    device = masks.device
    frame_valid = batch.get("valid")
    if frame_valid is None:
        frame_valid = torch.ones(masks.shape[:2], dtype=torch.bool, device=device)
    instances = batch.get("instance_masks")
    if not all_objects or not isinstance(instances, (list, tuple)) or not instances:
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


@CRITERIA.register("set", description="Hungarian-matched set criterion of query tracks")
class QuerySetCriterion(nn.Module):
    """The set criterion of a query model on a collated batch (MTTR, ReferFormer).

    Args:
        weights: :class:`~rvoslib.losses.SetCriterion` term weights, keys among ``class``,
            ``dice``, ``mask_focal``, ``box_l1``, ``giou``.
        matcher: The matching cost weights, keys among ``class_weight``, ``dice_weight``,
            ``mask_focal_weight``, ``box_l1_weight``, ``giou_weight``
            (:class:`~rvoslib.losses.HungarianMatcher`; its class loss is ``class_loss``).
        no_object_weight: Softmax class weight of every query but the referred one.
        class_loss: ``"softmax"`` (K = 2 logits, MTTR) or ``"focal"`` (K = 1, ReferFormer).
        aux_loss: Supervise every decoder layer (``True``) or only the last.
        focal_alpha, focal_gamma: Focal parameters of the class and mask focal terms and costs.
        conventions: ``"rvoslib"`` (default), ``"mttr"``, ``"referformer"``, or a dict of
            :class:`~rvoslib.losses.conventions.SetConventions` fields over a ``"base"``
            bundle: the matcher's and the criterion's conventions, and which targets and
            visibility :func:`query_targets` takes from the batch.

    Raises:
        TypeError: ``weights`` or ``matcher`` is not a dict.
        ValueError: an unknown matcher key (lists the valid ones) or a bad weight.
        KeyError: an unknown term weight (lists the valid ones).

    Example:
        >>> criterion = QuerySetCriterion(weights={"class": 2.0, "dice": 5.0},
        ...                               matcher={"class_weight": 2.0, "dice_weight": 5.0})
        >>> outputs = {"is_referred": torch.zeros(3, 1, 2, 4, 2),  # (Ly, B, T, N, K)
        ...            "masks": torch.zeros(3, 1, 2, 4, 4, 4)}  # (Ly, B, T, N, h, w)
        >>> sorted(criterion(outputs, {"masks": torch.ones(1, 2, 8, 8)}))
        ['class', 'dice']
    """

    def __init__(
        self,
        weights: Mapping[str, float],
        matcher: Mapping[str, float],
        no_object_weight: float = 0.1,
        class_loss: str = "softmax",
        aux_loss: bool = True,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        conventions: str | dict | SetConventions | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(matcher, Mapping):
            raise TypeError(f"matcher must be a dict of cost weights, got {type(matcher).__name__}")
        unknown = sorted(set(matcher) - set(MATCHER_WEIGHTS))
        if unknown:
            raise ValueError(
                f"unknown matcher key(s) {unknown}; valid: {list(MATCHER_WEIGHTS)} (the class "
                "loss and focal parameters are the criterion's)"
            )
        focal = {"focal_alpha": focal_alpha, "focal_gamma": focal_gamma}
        self.matcher = HungarianMatcher(
            **dict(matcher), class_loss=class_loss, conventions=conventions, **focal
        )
        self.set_criterion = SetCriterion(
            self.matcher, weights, no_object_weight, class_loss, **focal
        )
        self.aux_loss = bool(aux_loss)

    def extra_repr(self) -> str:
        return f"aux_loss={self.aux_loss}"

    def supervised(self, outputs: Mapping[str, torch.Tensor], prefix: str = "") -> dict:
        """The per-query outputs (``prefix`` + ``is_referred``, ``masks``, ``boxes``) of every
        decoder layer (``aux_loss``) or of the last, under their plain names."""
        keep = slice(None) if self.aux_loss else slice(-1, None)
        return {
            key: outputs[prefix + key][keep]
            for key in _SUPERVISED_KEYS
            if outputs.get(prefix + key) is not None
        }

    def forward(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]
    ) -> dict[str, torch.Tensor]:
        """Weighted terms summed over the supervised decoder layers.

        Args:
            outputs: ``is_referred (Ly, B, T, N, K)``, ``masks (Ly, B, T, N, h, w)`` and, for
                box terms, ``boxes (Ly, B, T, N, 4)``.
            batch: A collated batch (``masks (B, T, H, W)``, see :func:`query_targets`).

        Returns:
            ``{name: scalar float32}`` for each term with a nonzero weight.

        Raises:
            ValueError: a clip has more target objects than the model has queries.
        """
        targets = query_targets(batch, self.matcher.conventions)
        return self.set_criterion(self.supervised(outputs), targets)


@CRITERIA.register("soc", description="SOC: set criterion + video-text contrastive loss")
class SOCCriterion(QuerySetCriterion):
    """SOC's criterion: the set criterion and ``contrastive_weight`` x the video-text
    contrastive loss (:func:`~rvoslib.losses.video_text_contrastive_loss`) at every supervised
    layer, whose positive is the query the matcher assigned to the referred target in that
    layer (clips without one are left out). Reads ``outputs["video_queries"] (Ly, B, N, D)``
    and ``outputs["text_vector"] (B, D)``.

    Args:
        weights, matcher, no_object_weight, class_loss, aux_loss, focal_alpha, focal_gamma: As
            :class:`QuerySetCriterion` (``class_loss`` defaults to ``"focal"``).
        conventions: As :class:`QuerySetCriterion`.
        contrastive_weight: Weight of the contrastive loss (0 leaves it out).

    Raises:
        ValueError: a negative ``contrastive_weight``, or as :class:`QuerySetCriterion`.
    """

    def __init__(
        self,
        weights: Mapping[str, float],
        matcher: Mapping[str, float],
        no_object_weight: float = 0.1,
        class_loss: str = "focal",
        aux_loss: bool = True,
        contrastive_weight: float = 1.0,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        conventions: str | dict | SetConventions | None = None,
    ) -> None:
        super().__init__(
            weights,
            matcher,
            no_object_weight,
            class_loss,
            aux_loss,
            focal_alpha,
            focal_gamma,
            conventions,
        )
        if isinstance(contrastive_weight, bool) or not contrastive_weight >= 0:
            raise ValueError(
                f"contrastive_weight must be a number >= 0, got {contrastive_weight!r}"
            )
        self.contrastive_weight = float(contrastive_weight)

    def forward(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]
    ) -> dict[str, torch.Tensor]:
        """The weighted set-criterion terms and ``contrastive``, summed over decoder layers."""
        supervised = self.supervised(outputs)
        targets = self.matcher.prepare(query_targets(batch, self.matcher.conventions))
        assignment = self.set_criterion.match(supervised, targets)  # (Ly, B, M)
        terms = self.set_criterion.terms(supervised, targets, assignment)
        if self.contrastive_weight:
            positive = referred_query_index(
                assignment, targets["referred"], targets["target_valid"]
            )  # (Ly, B)
            video = outputs["video_queries"][slice(None) if self.aux_loss else slice(-1, None)]
            text = outputs["text_vector"]
            per_layer = [
                video_text_contrastive_loss(video[layer], text, positive[layer])
                for layer in range(video.shape[0])
            ]
            terms["contrastive"] = self.contrastive_weight * torch.stack(per_layer).sum()
        return terms
