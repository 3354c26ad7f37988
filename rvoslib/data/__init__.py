"""Datasets, clip transforms and batching for referring video object segmentation.

Every dataset item is a dict: ``frames`` ``(T, 3, H, W)`` float32 (ImageNet-normalised),
``masks`` ``(T, H, W)`` float32 (1 = referred object), ``valid`` ``(T,)`` bool, ``expression``
str, ``video_id`` str, ``frame_ids`` list of str, ``obj_id`` int, ``exp_id`` str, plus
``orig_size`` and ``unpadded_size`` ``(H, W)`` tuples for mapping predictions back.
"""

from rvoslib.data.builder import DataConfig, build_datasets, dataset_names, register_dataset
from rvoslib.data.collate import RVOSCollator
from rvoslib.data.controls import ShuffledTextDataset
from rvoslib.data.davis import ExpressionClipDataset, RefDAVISDataset
from rvoslib.data.io import ImageReadError, parse_refdavis_text, read_frame, read_mask
from rvoslib.data.synthetic import SyntheticRVOSDataset, SyntheticScene
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
from rvoslib.data.ytvos import RefYouTubeVOSDataset

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ClipTransform",
    "DataConfig",
    "ExpressionClipDataset",
    "ImageReadError",
    "RVOSCollator",
    "RefDAVISDataset",
    "RefYouTubeVOSDataset",
    "ShuffledTextDataset",
    "SyntheticRVOSDataset",
    "SyntheticScene",
    "build_datasets",
    "dataset_names",
    "denormalize",
    "eval_transform",
    "parse_refdavis_text",
    "read_frame",
    "read_mask",
    "register_dataset",
    "restore_size",
    "swap_left_right",
    "to_tensors",
    "train_transform",
]
