"""The per-layer matching cost terms of :class:`~rvoslib.losses.matching.HungarianMatcher`."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from rvoslib.losses._set_inputs import focal_terms, mask_pairs
from rvoslib.losses.boxes import box_cxcywh_to_xyxy, generalized_box_iou
from rvoslib.losses.conventions import SetConventions

__all__ = ["layer_cost", "pair_dot", "time_mean"]


def time_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``values (B, T, N, M)`` averaged over T with ``weight (B, T, M)`` -> ``(B, N, M)``."""
    total = (values * weight[:, :, None, :]).sum(1)
    return total / weight.sum(1).clamp_min(1.0)[:, None, :]


def pair_dot(values: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``(..., N, P)`` and ``(..., M, P)`` -> ``(..., N, M)`` sums over the pixels ``P``.

    A batched product with a huge inner size and a tiny output is slow on GPUs; the pixels are
    split into up to 64 chunks whose partial products are summed (see benchmarks/RESULTS.md).
    One target keeps the plain product.
    """
    pixels = values.shape[-1]
    chunks = math.gcd(pixels, 64)
    if masks.shape[-2] == 1 or chunks == 1:
        return values @ masks.transpose(-1, -2)
    split_values = values.unflatten(-1, (chunks, pixels // chunks)).transpose(-3, -2)
    split_masks = masks.unflatten(-1, (chunks, pixels // chunks)).movedim(-3, -1)
    return (split_values @ split_masks).sum(-3)  # (..., S, N, P/S) @ (..., S, P/S, M)


def layer_cost(
    is_referred: torch.Tensor,
    masks: torch.Tensor,
    boxes: torch.Tensor | None,
    targets: Mapping[str, torch.Tensor],
    weights: tuple[float, float, float, float, float],
    class_loss: str,
    focal_alpha: float,
    focal_gamma: float,
    conventions: SetConventions = SetConventions(),  # noqa: B008 (frozen, immutable)
) -> torch.Tensor:
    """The ``(B, N, M)`` float32 cost of one decoder layer (see :mod:`rvoslib.losses.matching`):
    ``weights`` are the class, Dice, mask focal, box L1 and GIoU weights, in that order;
    ``conventions`` (:class:`~rvoslib.losses.conventions.SetConventions`) chooses the mask
    resolution, the Dice reduction, the frames of the class and box costs and the class eps."""
    class_w, dice_w, focal_w, l1_w, giou_w = weights
    batch, frames, queries = masks.shape[:3]
    num_targets = targets["masks"].shape[1]
    visible = targets["visible"].transpose(1, 2)  # (B, T, M)
    frame_w = targets["frame_valid"].float()[:, :, None].expand(batch, frames, num_targets)
    visible_w = visible.float() * frame_w
    cost = masks.new_zeros((batch, queries, num_targets), dtype=torch.float32)
    if class_w:
        referred = targets["referred"] & targets["target_valid"]
        label = (referred[:, None, :] & visible).float()[:, :, None, :]  # (B, T, 1, M)
        logits = is_referred.float()
        if class_loss == "softmax":
            probs = logits.softmax(-1)[..., None, :]  # (B, T, N, 1, 2)
            per_frame = -(label * probs[..., 0] + (1 - label) * probs[..., 1])
        else:
            eps = conventions.class_cost_eps
            pos, neg = focal_terms(logits[..., 0], focal_alpha, focal_gamma, eps)
            per_frame = (2 * label - 1) * (pos - neg)[..., None]
        class_frames = visible_w if conventions.class_cost_frames == "visible" else frame_w
        cost = cost + class_w * time_mean(per_frame, class_frames)
    if dice_w or focal_w:
        gt = targets["masks"].float().transpose(1, 2)  # (B, T, M, H, W)
        pred, gt = mask_pairs(
            masks.float(), gt, conventions.mask_resolution, conventions.mask_stride
        )
        pred, gt = pred.flatten(-2), gt.flatten(-2)  # (B, T, N, P), (B, T, M, P)
        if dice_w:
            probs = pred.sigmoid()
            inter = pair_dot(probs, gt)  # (B, T, N, M)
            total = probs.sum(-1)[..., None] + gt.sum(-1)[:, :, None, :]
            if conventions.mask_reduction == "clip":  # one Dice over the valid T x H x W
                inter = (inter * frame_w[:, :, None, :]).sum(1)
                total = (total * frame_w[:, :, None, :]).sum(1)
                cost = cost - dice_w * (2 * inter + 1) / (total + 1)
            else:
                cost = cost - dice_w * time_mean((2 * inter + 1) / (total + 1), frame_w)
        if focal_w:  # per-frame pixel means averaged over frames = the clip's pixel mean
            pos, neg = focal_terms(pred, focal_alpha, focal_gamma)
            focal = (pair_dot(pos - neg, gt) + neg.sum(-1)[..., None]) / pred.shape[-1]
            cost = cost + focal_w * time_mean(focal, frame_w)
    if (l1_w or giou_w) and boxes is not None:
        box_w = frame_w if conventions.box_frames == "valid" else visible_w
        pred_boxes = boxes.float()[:, :, :, None, :]  # (B, T, N, 1, 4)
        gt_boxes = targets["boxes"].float().transpose(1, 2)[:, :, None]  # (B, T, 1, M, 4)
        if l1_w:
            l1 = (pred_boxes - gt_boxes).abs().sum(-1)
            cost = cost + l1_w * time_mean(l1, box_w)
        if giou_w:
            giou = generalized_box_iou(
                box_cxcywh_to_xyxy(boxes.float()),
                box_cxcywh_to_xyxy(gt_boxes[:, :, 0]),
                conventions.giou_smooth,
            )
            cost = cost - giou_w * time_mean(giou, box_w)
    return cost
