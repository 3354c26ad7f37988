"""Evaluation metrics for referring video object segmentation.

* DAVIS J (region similarity) and F (boundary F-measure), exactly as the official
  ``davis2017-evaluation`` code, batched in torch on CPU or CUDA;
* sequence statistics (mean, recall, decay), protocols and a streaming :class:`RVOSEvaluator`;
* A2D/JHMDB-Sentences precision@K, overall/mean IoU and COCO mAP;
* writers for DAVIS result PNGs and Ref-YouTube-VOS submissions.

``rvoslib.metrics.reference`` holds a slow, frame-by-frame numpy transcription of the official
code for cross-checking.
"""

from rvoslib.metrics.a2d import (
    A2D_EPS,
    A2D_IOU_THRESHOLDS,
    A2DEvaluator,
    a2d_iou,
    intersection_union,
    precision_at_k,
)
from rvoslib.metrics.coco import COCO_IOU_THRESHOLDS, coco_average_precision
from rvoslib.metrics.davis import (
    boundary_f_measure,
    boundary_tolerance,
    disk_footprint,
    region_similarity,
    seg2bmap,
)
from rvoslib.metrics.evaluator import SUMMARY_KEYS, RVOSEvaluator
from rvoslib.metrics.statistics import (
    PROTOCOLS,
    evaluate_sequence,
    protocol_frames,
    sequence_statistics,
    summarize_frames,
)
from rvoslib.metrics.writers import (
    davis_palette,
    write_davis_masks,
    write_ytvos_masks,
    zip_submission,
)

__all__ = [
    "A2D_EPS",
    "A2D_IOU_THRESHOLDS",
    "COCO_IOU_THRESHOLDS",
    "PROTOCOLS",
    "SUMMARY_KEYS",
    "A2DEvaluator",
    "RVOSEvaluator",
    "a2d_iou",
    "boundary_f_measure",
    "boundary_tolerance",
    "coco_average_precision",
    "davis_palette",
    "disk_footprint",
    "evaluate_sequence",
    "intersection_union",
    "precision_at_k",
    "protocol_frames",
    "region_similarity",
    "seg2bmap",
    "sequence_statistics",
    "summarize_frames",
    "write_davis_masks",
    "write_ytvos_masks",
    "zip_submission",
]
