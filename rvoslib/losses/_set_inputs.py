"""Inputs of the set-prediction losses: target preparation, output checks, shared helpers.

Private to :mod:`rvoslib.losses.matching` and :mod:`rvoslib.losses.set_criterion`;
:func:`prepare_targets` is public through :mod:`rvoslib.losses.matching`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from rvoslib._checks import check_tensor, format_shape, is_compiling
from rvoslib.losses.boxes import masks_to_boxes

__all__ = [
    "CLASS_LOSSES",
    "TARGET_KEYS",
    "check_outputs",
    "focal_terms",
    "mask_pairs",
    "prepare_targets",
    "subsample_targets",
    "upsample",
]

CLASS_LOSSES = ("softmax", "focal")
TARGET_KEYS = ("masks", "target_valid", "referred", "frame_valid")


def prepare_targets(
    targets: Mapping[str, torch.Tensor], with_boxes: bool = True, box_extent: str = "pixels"
) -> dict[str, torch.Tensor]:
    """Check the targets and add ``visible`` (and ``boxes``) when they are missing.

    Args:
        targets: ``masks (B, M, T, H, W)`` binary, ``target_valid (B, M)`` bool (real targets),
            ``referred (B, M)`` bool, ``frame_valid (B, T)`` bool (frames with ground truth);
            optionally ``visible (B, M, T)`` bool and ``boxes (B, M, T, 4)`` normalised cxcywh.
        with_boxes: Add ``boxes`` when missing (skip it when no box term is used).
        box_extent: ``extent`` of :func:`~rvoslib.losses.boxes.masks_to_boxes` for the added
            boxes (``"pixels"`` or ``"indices"``).

    Returns:
        A new dict with the input keys plus ``visible`` (mask non-empty) and, if ``with_boxes``,
        ``boxes`` (:func:`~rvoslib.losses.boxes.masks_to_boxes`). Cheap on prepared targets.

    Example:
        >>> yes = torch.ones(1, 2, dtype=torch.bool)
        >>> targets = {"masks": torch.zeros(1, 1, 2, 4, 4), "target_valid": yes[:, :1],
        ...            "referred": yes[:, :1], "frame_valid": yes}
        >>> targets["masks"][0, 0, 1, 1:3, 0:2] = 1
        >>> prepared = prepare_targets(targets)
        >>> prepared["visible"].tolist(), prepared["boxes"][0, 0, 1].tolist()
        ([[[False, True]]], [0.25, 0.5, 0.5, 0.5])

    Raises:
        KeyError: a required key is missing. TypeError/ValueError: a wrong dtype or shape.
    """
    if not isinstance(targets, Mapping):
        raise TypeError(f"targets must be a dict of tensors, got {type(targets).__name__}")
    missing = [key for key in TARGET_KEYS if key not in targets]
    if missing:
        raise KeyError(f"targets is missing {missing}; expected keys {list(TARGET_KEYS)}")
    masks = targets["masks"]
    if not is_compiling():
        check_tensor(masks, "targets['masks']", ("B", "M", "T", "H", "W"))
        batch, num_targets, frames = masks.shape[:3]
        for key, dims in (
            ("target_valid", (batch, num_targets)),
            ("referred", (batch, num_targets)),
            ("frame_valid", (batch, frames)),
            ("visible", (batch, num_targets, frames)),
        ):
            if key in targets:
                check_tensor(targets[key], f"targets[{key!r}]", dims, floating=False)
        if "boxes" in targets:
            check_tensor(targets["boxes"], "targets['boxes']", (batch, num_targets, frames, 4))
    prepared = {key: targets[key].bool() for key in ("target_valid", "referred", "frame_valid")}
    prepared["masks"] = masks
    if "visible" in targets:
        prepared["visible"] = targets["visible"].bool()
    else:
        binary = masks if masks.dtype == torch.bool else masks > 0.5
        prepared["visible"] = binary.flatten(-2).any(-1)
    if "boxes" in targets:
        prepared["boxes"] = targets["boxes"]
    elif with_boxes:
        prepared["boxes"] = masks_to_boxes(masks, box_extent)
    return prepared


def check_outputs(
    outputs: Mapping[str, torch.Tensor],
    targets: Mapping[str, torch.Tensor],
    class_loss: str,
    need_boxes: bool,
) -> None:
    """Check the model outputs against the targets (shared by the matcher and the criterion)."""
    if not isinstance(outputs, Mapping):
        raise TypeError(f"outputs must be a dict of tensors, got {type(outputs).__name__}")
    for key in ("is_referred", "masks"):
        if key not in outputs:
            raise KeyError(f"outputs is missing {key!r}; got keys {sorted(outputs)}")
    if need_boxes and "boxes" not in outputs:
        raise KeyError(
            "outputs has no 'boxes' but the box terms have nonzero weights; "
            f"got keys {sorted(outputs)}"
        )
    batch, _, frames = targets["masks"].shape[:3]
    logits = check_tensor(
        outputs["is_referred"], "outputs['is_referred']", ("Ly", "B", "T", "N", "K"), floating=True
    )
    num_classes = 2 if class_loss == "softmax" else 1
    if logits.shape[-1] != num_classes or tuple(logits.shape[1:3]) != (batch, frames):
        raise ValueError(
            f"outputs['is_referred'] must be (Ly, B={batch}, T={frames}, N, K={num_classes}) "
            f"for class_loss={class_loss!r}, got {format_shape(logits.shape)}"
        )
    layers, _, _, queries = logits.shape[:4]
    masks = check_tensor(
        outputs["masks"], "outputs['masks']", ("Ly", "B", "T", "N", "h", "w"), floating=True
    )
    if tuple(masks.shape[:4]) != (layers, batch, frames, queries):
        raise ValueError(
            f"outputs['masks'] must be (Ly={layers}, B={batch}, T={frames}, N={queries}, h, w), "
            f"got {format_shape(masks.shape)}"
        )
    if need_boxes:
        boxes = check_tensor(
            outputs["boxes"], "outputs['boxes']", ("Ly", "B", "T", "N", 4), floating=True
        )
        if tuple(boxes.shape[:4]) != (layers, batch, frames, queries):
            raise ValueError(
                f"outputs['boxes'] must be (Ly={layers}, B={batch}, T={frames}, N={queries}, 4), "
                f"got {format_shape(boxes.shape)}"
            )


def focal_terms(
    logits: torch.Tensor, alpha: float, gamma: float, eps: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-element focal loss for a positive and for a negative label, from logits.

    ``eps=None`` takes the exact ``-log(sigmoid(x)) = softplus(-x)``; a number takes
    ``-log(p + eps)`` and ``-log(1 - p + eps)`` (ReferFormer's matcher, ``eps = 1e-8``).
    """
    probs = torch.sigmoid(logits)
    if eps is None:
        log_pos, log_neg = F.softplus(-logits), F.softplus(logits)
    else:
        log_pos, log_neg = -(probs + eps).log(), -(1 - probs + eps).log()
    pos = (1 - probs) ** gamma * log_pos
    neg = probs**gamma * log_neg
    if alpha >= 0:
        pos, neg = alpha * pos, (1 - alpha) * neg
    return pos, neg


def upsample(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (align_corners=False) of ``(..., h, w)`` to ``(..., *size)``."""
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    flat = F.interpolate(masks.flatten(0, -3)[:, None], size=size, mode="bilinear")
    return flat[:, 0].view(*masks.shape[:-2], *size)


def subsample_targets(masks: torch.Tensor, size: tuple[int, int], stride: int) -> torch.Tensor:
    """ReferFormer's stride-``stride`` targets: ``(..., H, W)`` zero-padded at the bottom/right to
    ``stride x size``, then every ``stride``-th pixel from ``stride // 2`` -> ``(..., *size)``.

    Raises:
        ValueError: the targets are larger than ``stride x size``.
    """
    height, width = (stride * side for side in size)
    if masks.shape[-2] > height or masks.shape[-1] > width:
        raise ValueError(
            f"target masks {tuple(masks.shape[-2:])} exceed mask_stride={stride} x the "
            f"predicted size {tuple(size)} = {(height, width)}; subsampled targets need "
            "predictions at 1/mask_stride of the (padded) frame size"
        )
    padded = F.pad(masks, (0, width - masks.shape[-1], 0, height - masks.shape[-2]))
    start = stride // 2
    return padded[..., start::stride, start::stride]


def mask_pairs(
    pred: torch.Tensor, gt: torch.Tensor, resolution: str, stride: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted logits ``(..., h, w)`` and targets ``(..., H, W)`` at one size: predictions
    upsampled to ``(H, W)`` (``"upsample"``) or targets subsampled to ``(h, w)``
    (``"subsample"``, :func:`subsample_targets`)."""
    if resolution == "upsample":
        return upsample(pred, tuple(gt.shape[-2:])), gt
    return pred, subsample_targets(gt, tuple(pred.shape[-2:]), stride)
