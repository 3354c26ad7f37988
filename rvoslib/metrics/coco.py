"""COCO-style average precision for one ground-truth mask per sample (A2D/JHMDB-Sentences).

Reproduces ``pycocotools.cocoeval.COCOeval`` (``iouType="segm"``, one category, area "all")
for the case where every sample (image) has exactly one ground-truth instance and any number of
scored predicted masks: per sample the predictions are ranked by score and the first one with
IoU >= t matches the instance; all predictions of all samples are then ranked by score into a
precision-recall curve, interpolated at 101 recall points and averaged over the IoU thresholds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["COCO_IOU_THRESHOLDS", "COCO_RECALL_THRESHOLDS", "coco_average_precision"]

COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1)
COCO_RECALL_THRESHOLDS = np.linspace(0.0, 1.0, int(np.round(1.0 / 0.01)) + 1)


def coco_average_precision(
    scores: Sequence[np.ndarray],
    ious: Sequence[np.ndarray],
    max_detections: int = 100,
) -> dict[str, float]:
    """mAP over IoU 0.50:0.95, AP@0.5 and AP@0.75, exactly as ``COCOeval.stats[0:3]``.

    Args:
        scores: One (Q_i,) array per sample, the confidence of each predicted mask.
        ious: One (Q_i,) array per sample, each prediction's IoU with the sample's ground
            truth, ``I / U`` (0 when the union is empty, as ``pycocotools.mask.iou``).
        max_detections: Predictions kept per sample, the highest scored (COCO's 100).

    Returns:
        ``{"mAP", "AP50", "AP75"}``; NaN without samples.

    Raises:
        ValueError: ``scores`` and ``ious`` differ in length or in a sample's shape.

    Example:
        >>> import numpy as np
        >>> ap = coco_average_precision([np.array([0.9, 0.1])], [np.array([0.8, 0.3])])
        >>> round(ap["AP50"], 6)
        1.0
    """
    if len(scores) != len(ious):
        raise ValueError(
            f"scores and ious must have one entry per sample, got {len(scores)} and {len(ious)}"
        )
    num_samples = len(scores)
    if num_samples == 0:
        return {"mAP": float("nan"), "AP50": float("nan"), "AP75": float("nan")}
    # COCO matches a prediction when IoU >= min(t, 1 - 1e-10).
    thresholds = np.minimum(COCO_IOU_THRESHOLDS, 1 - 1e-10)[:, None]
    all_scores, all_matched = [], []
    for index, (sample_scores, sample_ious) in enumerate(zip(scores, ious)):
        sample_scores = np.asarray(sample_scores, dtype=np.float64).reshape(-1)
        sample_ious = np.asarray(sample_ious, dtype=np.float64).reshape(-1)
        if sample_scores.shape != sample_ious.shape:
            raise ValueError(
                f"sample {index}: scores and ious must have the same shape, got "
                f"{sample_scores.shape} and {sample_ious.shape}"
            )
        order = np.argsort(-sample_scores, kind="mergesort")[:max_detections]
        passes = sample_ious[order][None, :] >= thresholds  # (num_thresholds, Q)
        # Only the first passing prediction takes the single ground truth.
        first = passes & (np.cumsum(passes, axis=1) == 1)
        all_scores.append(sample_scores[order])
        all_matched.append(first)
    flat_scores = np.concatenate(all_scores)
    matched = np.concatenate(all_matched, axis=1)[:, np.argsort(-flat_scores, kind="mergesort")]
    true_positives = np.cumsum(matched, axis=1, dtype=np.float64)
    false_positives = np.cumsum(~matched, axis=1, dtype=np.float64)
    precision = np.zeros((len(COCO_IOU_THRESHOLDS), len(COCO_RECALL_THRESHOLDS)))
    for t, (tp, fp) in enumerate(zip(true_positives, false_positives)):
        if tp.size == 0:
            continue
        recall = tp / num_samples
        curve = tp / (fp + tp + np.spacing(1))
        curve = np.maximum.accumulate(curve[::-1])[::-1]  # precision envelope
        at = np.searchsorted(recall, COCO_RECALL_THRESHOLDS, side="left")
        reached = at < curve.size
        precision[t, reached] = curve[at[reached]]
    return {
        "mAP": float(precision.mean()),
        "AP50": float(precision[0].mean()),
        "AP75": float(precision[5].mean()),
    }
