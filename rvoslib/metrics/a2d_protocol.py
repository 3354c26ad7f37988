"""The A2D-/JHMDB-Sentences evaluation protocol on per-sample query predictions.

A *sample* is one annotated frame with one expression (an item of
:class:`~rvoslib.data.A2DSentencesDataset` or :class:`~rvoslib.data.JHMDBSentencesDataset`).
A query-based model (MTTR, ReferFormer, SOC, LoSh) predicts N scored masks for it. Two mAP
variants are in use, and papers do not always say which they report:

* ``all_queries``: every query's mask enters the COCO ranking with its score. This is what
  MTTR's and ReferFormer's evaluation code does (all masks are written to the COCO result file,
  ``COCOeval(iouType="segm")`` with ``useCats=0``).
* ``top_query``: only the top-scored mask of each sample enters, with its score (one
  prediction per sample, as a model that outputs a single mask is scored).

Precision@K, overall IoU and mean IoU always use the top-scored mask (the last among equal
scores, as MTTR's ``sorted(..., key=score)[-1]``). All values are computed by
:class:`rvoslib.metrics.A2DEvaluator` (pycocotools-exact mAP).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

from rvoslib._checks import format_shape
from rvoslib.metrics.a2d import A2D_IOU_THRESHOLDS, A2DEvaluator
from rvoslib.metrics.davis import MaskLike

__all__ = ["A2DProtocol", "format_a2d_report"]

_VARIANTS = {
    "all_queries": "all N query masks per sample, each with its score (MTTR / ReferFormer code)",
    "top_query": "only the top-scored query mask per sample, with its score",
}


def _binary(masks: MaskLike, name: str, threshold: float) -> torch.Tensor:
    if isinstance(masks, np.ndarray):
        masks = torch.from_numpy(np.ascontiguousarray(masks))
    if not isinstance(masks, torch.Tensor):
        raise TypeError(
            f"{name} must be a numpy array or a torch.Tensor, got {type(masks).__name__}"
        )
    if masks.is_floating_point():
        if masks.numel() and (masks.min() < 0 or masks.max() > 1):
            raise ValueError(
                f"floating {name} must be probabilities in [0, 1] (apply a sigmoid to logits), "
                f"got values in [{float(masks.min()):.3g}, {float(masks.max()):.3g}]"
            )
        return masks > threshold
    return masks != 0


class A2DProtocol:
    """Accumulate per-sample query predictions; report both mAP variants and the IoU metrics.

    Prediction input, per sample: ``pred_masks`` ``(N, H, W)``, the masks of all N queries
    (bool/integer, foreground where nonzero, or probabilities in [0, 1], foreground above
    ``mask_threshold``), ``scores`` ``(N,)`` their confidences (e.g. MTTR's softmax
    "referred" probability averaged over time, or ReferFormer's sigmoid score), and
    ``gt_mask`` ``(H, W)`` the referred instance (``dataset.ground_truth(index)``), at the
    same resolution (undo the eval transform first: :func:`rvoslib.data.restore_size`).
    Samples may differ in size and in N.

    Args:
        mask_threshold: Threshold for floating masks (MTTR and ReferFormer: 0.5).
        max_detections: Masks per sample kept for mAP, the highest scored (COCO: 100).

    Example:
        >>> import torch
        >>> gt = torch.zeros(8, 8, dtype=torch.bool); gt[:4] = True
        >>> protocol = A2DProtocol()
        >>> protocol.update(torch.stack([~gt, gt]), torch.tensor([0.2, 0.9]), gt)
        >>> summary = protocol.summary()
        >>> round(summary["mAP_all_queries"], 6), round(summary["mAP_top_query"], 6)
        (1.0, 1.0)
        >>> summary["P@0.9"], summary["overall_iou"]
        (1.0, 1.0)
    """

    def __init__(self, mask_threshold: float = 0.5, max_detections: int = 100) -> None:
        if not 0.0 <= mask_threshold < 1.0:
            raise ValueError(f"mask_threshold must be in [0, 1), got {mask_threshold}")
        if not isinstance(max_detections, int) or max_detections < 1:
            raise ValueError(f"max_detections must be a positive int, got {max_detections!r}")
        self.mask_threshold = mask_threshold
        self.all_queries = A2DEvaluator(max_detections)
        self.top_query = A2DEvaluator(max_detections)
        self.sample_ids: list[str | None] = []

    def reset(self) -> None:
        """Forget every sample."""
        self.all_queries.reset()
        self.top_query.reset()
        self.sample_ids = []

    def __len__(self) -> int:
        return len(self.all_queries)

    def update(
        self,
        pred_masks: MaskLike,
        scores: MaskLike,
        gt_mask: MaskLike,
        sample_id: str | None = None,
    ) -> None:
        """Score one sample.

        Args:
            pred_masks: (N, H, W) all N queries' masks.
            scores: (N,) their confidences.
            gt_mask: (H, W) the ground truth.
            sample_id: Optional name (e.g. the item's ``image_id``), kept in ``sample_ids``.

        Raises:
            TypeError: an input is not a numpy array or tensor.
            ValueError: shapes disagree, N is 0, scores are not finite, or floating masks
                are outside [0, 1].
        """
        pred = _binary(pred_masks, "pred_masks", self.mask_threshold)
        gt = _binary(gt_mask, "gt_mask", self.mask_threshold)
        if isinstance(scores, torch.Tensor):
            scores = scores.detach().cpu().numpy()
        scores_np = np.asarray(scores, dtype=np.float64)
        if pred.ndim != 3 or pred.shape[0] == 0 or gt.ndim != 2 or pred.shape[1:] != gt.shape:
            raise ValueError(
                "pred_masks must be (N, H, W) with N >= 1 and gt_mask (H, W) of the same H, W, "
                f"got pred_masks {format_shape(pred.shape)} and gt_mask {format_shape(gt.shape)}"
            )
        if scores_np.shape != (pred.shape[0],):
            raise ValueError(
                f"scores must be (N,) = ({pred.shape[0]},) like pred_masks, "
                f"got {format_shape(scores_np.shape)}"
            )
        if not np.isfinite(scores_np).all():
            raise ValueError(f"scores must be finite, got {scores_np.tolist()}")
        gt = gt.to(pred.device)
        top = len(scores_np) - 1 - int(np.argmax(scores_np[::-1]))  # last among equal scores
        self.all_queries.update(pred[None], gt[None], scores_np[None])
        self.top_query.update(pred[top][None, None], gt[None], scores_np[top][None, None])
        self.sample_ids.append(sample_id)

    def merge(self, other: A2DProtocol) -> A2DProtocol:
        """Append the samples of ``other`` (e.g. another worker's); returns self."""
        self.all_queries.merge(other.all_queries)
        self.top_query.merge(other.top_query)
        self.sample_ids += other.sample_ids
        return self

    def all_gather(self) -> A2DProtocol:
        """Gather every rank's samples onto every rank; no-op without torch.distributed."""
        self.all_queries.all_gather()
        self.top_query.all_gather()
        distributed = torch.distributed
        if distributed.is_available() and distributed.is_initialized():
            ids: list = [None] * distributed.get_world_size()
            distributed.all_gather_object(ids, self.sample_ids)
            self.sample_ids = [sample_id for rank_ids in ids for sample_id in rank_ids]
        return self

    def summary(self) -> dict[str, float]:
        """Both mAP variants and the IoU metrics.

        Returns:
            ``mAP_all_queries``, ``AP50_all_queries``, ``AP75_all_queries``,
            ``mAP_top_query``, ``AP50_top_query``, ``AP75_top_query`` (COCO 0.50:0.95, 0.5,
            0.75), ``P@0.5`` ... ``P@0.9``, ``overall_iou``, ``mean_iou``, ``num_samples``;
            NaN without samples.
        """
        every, top = self.all_queries.summary(), self.top_query.summary()
        result: dict[str, float] = {}
        for variant, values in (("all_queries", every), ("top_query", top)):
            for key in ("mAP", "AP50", "AP75"):
                result[f"{key}_{variant}"] = values[key]
        for key in (*(f"P@{k:g}" for k in A2D_IOU_THRESHOLDS), "overall_iou", "mean_iou"):
            result[key] = every[key]
        result["num_samples"] = every["num_samples"]
        return result

    def report(self) -> str:
        """:func:`format_a2d_report` of :meth:`summary`."""
        return format_a2d_report(self.summary())


def format_a2d_report(summary: Mapping[str, float]) -> str:
    """A table of an :meth:`A2DProtocol.summary` that says which mAP variant is which.

    Example:
        >>> print(format_a2d_report({"mAP_all_queries": 0.5, "AP50_all_queries": 1.0,
        ...     "AP75_all_queries": 0.5, "mAP_top_query": 0.4, "AP50_top_query": 1.0,
        ...     "AP75_top_query": 0.0, "P@0.5": 1.0, "overall_iou": 0.7, "mean_iou": 0.6,
        ...     "num_samples": 2}).splitlines()[2])
        mAP (all queries)  0.5000  AP50 1.0000  AP75 0.5000
    """
    missing = [
        f"{key}_{variant}"
        for variant in _VARIANTS
        for key in ("mAP", "AP50", "AP75")
        if f"{key}_{variant}" not in summary
    ]
    if missing:
        raise KeyError(f"summary lacks {missing}; pass A2DProtocol.summary()")

    def number(value: float) -> str:
        return "nan" if value is None or math.isnan(value) else f"{value:.4f}"

    lines = [f"A2D/JHMDB-Sentences protocol, {int(summary.get('num_samples', 0))} samples", ""]
    for variant, meaning in _VARIANTS.items():
        label = variant.replace("_", " ")
        lines.append(
            f"mAP ({label})  {number(summary[f'mAP_{variant}'])}  "
            f"AP50 {number(summary[f'AP50_{variant}'])}  AP75 {number(summary[f'AP75_{variant}'])}"
        )
        lines.append(f"    {label}: {meaning}")
    lines.append("")
    lines.append("top-scored mask per sample:")
    precisions = [key for key in summary if key.startswith("P@")]
    lines.append("  " + "  ".join(f"{key} {number(summary[key])}" for key in precisions))
    lines.append(
        f"  overall IoU {number(summary.get('overall_iou', math.nan))}  "
        f"mean IoU {number(summary.get('mean_iou', math.nan))}"
    )
    return "\n".join(lines)
