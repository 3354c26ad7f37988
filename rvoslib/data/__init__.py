"""Datasets, clip transforms and batching for referring video object segmentation.

Every dataset item is a dict: ``frames`` ``(T, 3, H, W)`` float32 (ImageNet-normalised),
``masks`` ``(T, H, W)`` float32 (1 = referred object), ``valid`` ``(T,)`` bool, ``expression``
str, ``video_id`` str, ``frame_ids`` list of str, ``obj_id`` int, ``exp_id`` str, plus
``orig_size`` and ``unpadded_size`` ``(H, W)`` tuples for mapping predictions back.
"""

from rvoslib.data.a2d import (
    A2DSentencesDataset,
    read_a2d_instances,
    read_video_window,
    window_indices,
)
from rvoslib.data.base import RecordDataset
from rvoslib.data.builder import (
    DATASETS,
    SYNTHETIC_ATTRIBUTES,
    DataConfig,
    DatasetBuilder,
    build_datasets,
    build_eval_dataset,
    dataset_names,
    held_out_split,
    list_datasets,
    register_dataset,
)
from rvoslib.data.collate import RVOSCollator, collator_for
from rvoslib.data.controls import ShuffledTextDataset
from rvoslib.data.davis import ExpressionClipDataset, RefDAVISDataset
from rvoslib.data.expressions import (
    REFDAVIS_KINDS,
    VIDEO_NAME_FIXES,
    RefDAVISText,
    find_refdavis_text,
    load_refdavis_text,
)
from rvoslib.data.frame_query import AnnotatedFrameDataset, FrameQueryRecord, instance_boxes
from rvoslib.data.io import ImageReadError, parse_refdavis_text, read_frame, read_mask
from rvoslib.data.jhmdb import JHMDBSentencesDataset, read_puppet_masks
from rvoslib.data.pseudo_clip import PseudoClipAugmenter, make_pseudo_clip
from rvoslib.data.refcoco import RefCOCODataset
from rvoslib.data.short_text import extract_short_text, short_texts
from rvoslib.data.synthetic import SyntheticRVOSDataset, SyntheticScene
from rvoslib.data.synthetic_vos import SyntheticVOSDataset
from rvoslib.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClipTransform,
    denormalize,
    eval_transform,
    restore_size,
    swap_left_right,
    to_tensors,
    train_transform,
)
from rvoslib.data.youtube_vos import YouTubeVOSDataset, load_youtube_vos_meta
from rvoslib.data.ytvos import RefYouTubeVOSDataset

__all__ = [
    "DATASETS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "REFDAVIS_KINDS",
    "SYNTHETIC_ATTRIBUTES",
    "VIDEO_NAME_FIXES",
    "A2DSentencesDataset",
    "AnnotatedFrameDataset",
    "ClipTransform",
    "DataConfig",
    "DatasetBuilder",
    "ExpressionClipDataset",
    "FrameQueryRecord",
    "ImageReadError",
    "JHMDBSentencesDataset",
    "PseudoClipAugmenter",
    "RVOSCollator",
    "RecordDataset",
    "RefCOCODataset",
    "RefDAVISDataset",
    "RefDAVISText",
    "RefYouTubeVOSDataset",
    "ShuffledTextDataset",
    "SyntheticRVOSDataset",
    "SyntheticScene",
    "SyntheticVOSDataset",
    "YouTubeVOSDataset",
    "build_datasets",
    "build_eval_dataset",
    "collator_for",
    "dataset_names",
    "denormalize",
    "eval_transform",
    "extract_short_text",
    "find_refdavis_text",
    "held_out_split",
    "instance_boxes",
    "list_datasets",
    "load_refdavis_text",
    "load_youtube_vos_meta",
    "make_pseudo_clip",
    "parse_refdavis_text",
    "read_a2d_instances",
    "read_frame",
    "read_mask",
    "read_puppet_masks",
    "read_video_window",
    "register_dataset",
    "restore_size",
    "short_texts",
    "swap_left_right",
    "to_tensors",
    "train_transform",
    "window_indices",
]
