"""Evaluation metrics for referring video object segmentation.

* DAVIS J (region similarity) and F (boundary F-measure), exactly as the official
  ``davis2017-evaluation`` code, batched in torch on CPU or CUDA;
* sequence statistics (mean, recall, decay), protocols and a streaming :class:`RVOSEvaluator`;
* the official DAVIS evaluation of a predictions folder (:func:`evaluate_davis_folder`:
  semi-supervised, all frames, and ReferFormer's Ref-DAVIS17 protocol ``refer-davis``) and its
  CSV tables;
* A2D/JHMDB-Sentences precision@K, overall/mean IoU and COCO mAP;
* writers for DAVIS result PNGs, the Ref-DAVIS17 layout (:class:`RefDAVISWriter`) and
  Ref-YouTube-VOS submissions.

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
from rvoslib.metrics.a2d_protocol import A2DProtocol, format_a2d_report
from rvoslib.metrics.batch import batch_iou
from rvoslib.metrics.coco import COCO_IOU_THRESHOLDS, coco_average_precision
from rvoslib.metrics.davis import (
    boundary_f_measure,
    boundary_tolerance,
    disk_footprint,
    region_similarity,
    seg2bmap,
)
from rvoslib.metrics.evaluator import SUMMARY_KEYS, RVOSEvaluator
from rvoslib.metrics.official import (
    EVAL_PROTOCOLS,
    GLOBAL_COLUMNS,
    DAVISFolderResult,
    ObjectScore,
    evaluate_davis_folder,
    score_sequence,
)
from rvoslib.metrics.refer_davis import RefDAVISWriter, refdavis_annotator
from rvoslib.metrics.statistics import (
    PROTOCOLS,
    evaluate_sequence,
    protocol_frames,
    sequence_statistics,
    summarize_frames,
)
from rvoslib.metrics.tables import (
    PER_SEQUENCE_COLUMNS,
    read_official_tables,
    write_official_tables,
)
from rvoslib.metrics.writers import (
    binarize_masks,
    davis_palette,
    write_davis_masks,
    write_ytvos_masks,
    zip_submission,
)
from rvoslib.metrics.youtube_vos import (
    YTVOS_PROTOCOLS,
    YTVOS_SUMMARY_KEYS,
    YouTubeVOSEvaluator,
    evaluation_frames,
    merge_object_scores,
    seen_categories,
    write_youtube_vos_masks,
    zip_youtube_vos_submission,
)

__all__ = [
    "A2D_EPS",
    "A2D_IOU_THRESHOLDS",
    "COCO_IOU_THRESHOLDS",
    "EVAL_PROTOCOLS",
    "GLOBAL_COLUMNS",
    "PER_SEQUENCE_COLUMNS",
    "PROTOCOLS",
    "SUMMARY_KEYS",
    "YTVOS_PROTOCOLS",
    "YTVOS_SUMMARY_KEYS",
    "A2DEvaluator",
    "A2DProtocol",
    "DAVISFolderResult",
    "ObjectScore",
    "RVOSEvaluator",
    "RefDAVISWriter",
    "YouTubeVOSEvaluator",
    "a2d_iou",
    "batch_iou",
    "binarize_masks",
    "boundary_f_measure",
    "boundary_tolerance",
    "coco_average_precision",
    "davis_palette",
    "disk_footprint",
    "evaluate_davis_folder",
    "evaluate_sequence",
    "evaluation_frames",
    "format_a2d_report",
    "intersection_union",
    "merge_object_scores",
    "precision_at_k",
    "protocol_frames",
    "read_official_tables",
    "refdavis_annotator",
    "region_similarity",
    "score_sequence",
    "seen_categories",
    "seg2bmap",
    "sequence_statistics",
    "summarize_frames",
    "write_davis_masks",
    "write_official_tables",
    "write_youtube_vos_masks",
    "write_ytvos_masks",
    "zip_submission",
    "zip_youtube_vos_submission",
]
