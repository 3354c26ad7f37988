"""A2D-Sentences / JHMDB-Sentences metrics: precision@K, overall and mean IoU, mAP.

The protocol of the benchmark's papers and of MTTR / ReferFormer: each sample (an annotated
frame with one referring expression) has one ground-truth mask. The top-scored predicted mask is
compared with it by ``IoU = (I + 1e-6) / (U + 1e-6)``; precision@K is the share of samples with
IoU strictly above K, overall IoU is ``sum(I) / sum(U)`` over samples, mean IoU the mean of the
per-sample IoU. mAP ranks *all* scored predictions of all samples, COCO style
(:func:`rvoslib.metrics.coco_average_precision`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from rvoslib._checks import format_shape
from rvoslib.metrics._kernels import count_true
from rvoslib.metrics.coco import coco_average_precision
from rvoslib.metrics.davis import MaskLike

__all__ = [
    "A2D_EPS",
    "A2D_IOU_THRESHOLDS",
    "A2DEvaluator",
    "a2d_iou",
    "intersection_union",
    "precision_at_k",
]

A2D_EPS = 1e-6
A2D_IOU_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def _masks(value: MaskLike, name: str) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value != 0))
    if isinstance(value, torch.Tensor):
        return value != 0
    raise TypeError(f"{name} must be a numpy array or a torch.Tensor, got {type(value).__name__}")


def intersection_union(pred: MaskLike, gt: MaskLike) -> tuple[np.ndarray, np.ndarray]:
    """Pixel counts of intersection and union of masks (foreground where nonzero).

    Args:
        pred: (..., H, W) predicted masks.
        gt: (..., H, W) ground-truth masks, broadcastable to ``pred``.

    Returns:
        Two int64 numpy arrays of the broadcast leading shape: intersection and union.

    Raises:
        ValueError: the shapes do not broadcast or have fewer than two dimensions.
    """
    pred_t = _masks(pred, "pred")
    gt_t = _masks(gt, "gt").to(pred_t.device)
    try:
        shape = torch.broadcast_shapes(pred_t.shape, gt_t.shape)
    except RuntimeError:
        shape = None
    if shape is None or len(shape) < 2 or pred_t.ndim < 2 or gt_t.ndim < 2:
        raise ValueError(
            "pred and gt must be (..., H, W) masks of broadcastable shapes, got "
            f"pred {format_shape(pred_t.shape)} and gt {format_shape(gt_t.shape)}"
        )
    pred_t, gt_t = pred_t.expand(shape), gt_t.expand(shape)
    leading = shape[:-2]
    inter = count_true((pred_t & gt_t).reshape(-1, *shape[-2:]))
    union = count_true((pred_t | gt_t).reshape(-1, *shape[-2:]))
    return inter.reshape(leading).cpu().numpy(), union.reshape(leading).cpu().numpy()


def a2d_iou(pred: MaskLike, gt: MaskLike, eps: float = A2D_EPS) -> np.ndarray:
    """Per-sample IoU of the A2D protocol, ``(I + eps) / (U + eps)`` in float64.

    Args:
        pred: (N, H, W) or (H, W) predicted masks, foreground where nonzero.
        gt: Ground-truth masks of the same shape.
        eps: Smoothing; two empty masks score 1.

    Returns:
        (N,) or () float64.

    Example:
        >>> import numpy as np
        >>> float(a2d_iou(np.zeros((4, 4)), np.zeros((4, 4))))
        1.0
    """
    if tuple(pred.shape) != tuple(gt.shape):
        raise ValueError(
            "pred and gt must have the same shape, got "
            f"pred {format_shape(pred.shape)} and gt {format_shape(gt.shape)}"
        )
    inter, union = intersection_union(pred, gt)
    return (inter + eps) / (union + eps)


def precision_at_k(
    ious: np.ndarray | Sequence[float], thresholds: Sequence[float] = A2D_IOU_THRESHOLDS
) -> dict[str, float]:
    """Share of samples whose IoU is strictly above each threshold K.

    Args:
        ious: (N,) per-sample IoU.
        thresholds: The K values.

    Returns:
        ``{"P@0.5": ..., ...}``; NaN without samples.

    Example:
        >>> precision_at_k([0.5, 0.55, 0.95], thresholds=(0.5, 0.9))
        {'P@0.5': 0.6666666666666666, 'P@0.9': 0.3333333333333333}
    """
    ious = np.asarray(ious, dtype=np.float64).reshape(-1)
    return {f"P@{k:g}": float(np.mean(ious > k)) if ious.size else math.nan for k in thresholds}


class A2DEvaluator:
    """Streaming A2D/JHMDB-Sentences evaluation over batches of samples.

    Example:
        >>> import torch
        >>> gt = torch.zeros(2, 8, 8, dtype=torch.bool); gt[:, 2:6, 2:6] = True
        >>> preds = torch.stack([gt, ~gt], dim=1)  # (N, Q=2, H, W)
        >>> evaluator = A2DEvaluator()
        >>> evaluator.update(preds, gt, scores=torch.tensor([[0.9, 0.1], [0.8, 0.2]]))
        >>> evaluator.summary()["P@0.9"], evaluator.summary()["mAP"]
        (1.0, 1.0)
    """

    def __init__(self, max_detections: int = 100) -> None:
        self.max_detections = max_detections
        self.reset()

    def reset(self) -> None:
        """Forget every sample."""
        self._inter: list[int] = []
        self._union: list[int] = []
        self._scores: list[np.ndarray] = []
        self._coco_ious: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._inter)

    def update(
        self, pred_masks: MaskLike, gt_masks: MaskLike, scores: MaskLike | None = None
    ) -> None:
        """Score a batch of samples.

        Args:
            pred_masks: (N, Q, H, W) Q scored candidate masks per sample, or (N, H, W) one mask
                per sample; foreground where nonzero.
            gt_masks: (N, H, W) the one ground-truth mask per sample.
            scores: (N, Q) confidences; required when Q > 1. The top-scored mask (the last
                one among equal scores, as MTTR) gives the IoU metrics; all of them enter mAP.

        Raises:
            ValueError: shapes disagree, or Q > 1 without scores.
        """
        if getattr(pred_masks, "ndim", None) == 3:
            pred_masks = pred_masks[:, None]
        if getattr(pred_masks, "ndim", None) != 4 or getattr(gt_masks, "ndim", None) != 3:
            raise ValueError(
                "pred_masks must be (N, Q, H, W) or (N, H, W) and gt_masks (N, H, W), got "
                f"pred_masks {format_shape(pred_masks.shape)} and "
                f"gt_masks {format_shape(gt_masks.shape)}"
            )
        num, queries = pred_masks.shape[:2]
        if tuple(gt_masks.shape) != (num, *pred_masks.shape[2:]):
            raise ValueError(
                "gt_masks must be (N, H, W) matching pred_masks (N, Q, H, W), got "
                f"pred_masks {format_shape(pred_masks.shape)} and "
                f"gt_masks {format_shape(gt_masks.shape)}"
            )
        if scores is None:
            if queries > 1:
                raise ValueError(f"scores (N, Q) are needed for Q = {queries} masks per sample")
            scores_np = np.ones((num, 1))
        else:
            scores_np = np.asarray(
                scores.detach().cpu() if isinstance(scores, torch.Tensor) else scores,
                dtype=np.float64,
            )
            if scores_np.shape != (num, queries):
                raise ValueError(
                    f"scores must be (N, Q) = {format_shape((num, queries))}, "
                    f"got {format_shape(scores_np.shape)}"
                )
        gt_t = _masks(gt_masks, "gt_masks")
        inter, union = intersection_union(pred_masks, gt_t[:, None])  # (N, Q) each
        top = queries - 1 - np.argmax(scores_np[:, ::-1], axis=1)
        rows = np.arange(num)
        self._inter.extend(inter[rows, top].tolist())
        self._union.extend(union[rows, top].tolist())
        coco_iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        self._scores.extend(scores_np)
        self._coco_ious.extend(coco_iou)

    def merge(self, other: A2DEvaluator) -> A2DEvaluator:
        """Append the samples of ``other`` (e.g. another rank's); returns self."""
        self._inter += other._inter
        self._union += other._union
        self._scores += other._scores
        self._coco_ious += other._coco_ious
        return self

    def all_gather(self) -> A2DEvaluator:
        """Gather every rank's samples onto every rank (rank order); no-op without dist."""
        distributed = torch.distributed
        if not (distributed.is_available() and distributed.is_initialized()):
            return self
        states: list[tuple | None] = [None] * distributed.get_world_size()
        mine = (self._inter, self._union, self._scores, self._coco_ious)
        distributed.all_gather_object(states, mine)
        self.reset()
        for inter, union, scores, ious in states:
            self._inter += inter
            self._union += union
            self._scores += scores
            self._coco_ious += ious
        return self

    def summary(self) -> dict[str, float]:
        """precision@K, overall IoU, mean IoU, mAP (0.50:0.95), AP50, AP75, num_samples."""
        inter = np.asarray(self._inter, dtype=np.float64)
        union = np.asarray(self._union, dtype=np.float64)
        ious = (inter + A2D_EPS) / (union + A2D_EPS)
        result = precision_at_k(ious)
        result["overall_iou"] = float(inter.sum() / union.sum()) if union.sum() else math.nan
        result["mean_iou"] = float(ious.mean()) if ious.size else math.nan
        result.update(coco_average_precision(self._scores, self._coco_ious, self.max_detections))
        result["num_samples"] = len(ious)
        return result
