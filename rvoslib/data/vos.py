"""The semi-supervised (VOS) task on top of any referring dataset: the first frame's mask.

:class:`FirstFrameMaskDataset` turns a referring dataset (DAVIS-2017 / Ref-DAVIS17,
Ref-YouTube-VOS, synthetic videos) into the mask-conditioned task: one item per object (the
expressions of an object collapse into one), with ``first_mask (H, W)``, the object's mask in
the clip's first frame after the transform.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

__all__ = ["FirstFrameMaskDataset"]

_DRAWS = 10


class FirstFrameMaskDataset(Dataset):
    """One item per ``(video_id, obj_id)`` of ``dataset``, with ``first_mask`` added.

    Args:
        dataset: Items with ``masks (T, H, W)``, ``video_id`` and ``obj_id``.
        unique_objects: Keep the first item of each ``(video_id, obj_id)`` only (reads every
            item's keys once, without frames, through ``dataset.records`` when available).

    Raises:
        ValueError: an item's first mask is empty (the object to track must be visible in the
            first frame; with a random transform, after 10 draws); the message names the video
            and object.

    Example:
        >>> from rvoslib.data import SyntheticRVOSDataset
        >>> vos = FirstFrameMaskDataset(SyntheticRVOSDataset(2, 3, 32), unique_objects=False)
        >>> vos[0]["first_mask"].shape
        torch.Size([32, 32])
    """

    def __init__(self, dataset: Dataset, unique_objects: bool = True) -> None:
        self.dataset = dataset
        indices = list(range(len(dataset)))  # type: ignore[arg-type]
        if unique_objects:
            seen: set[tuple[str, str]] = set()
            kept = []
            for index, key in enumerate(_object_keys(dataset)):
                if key not in seen:
                    seen.add(key)
                    kept.append(index)
            indices = kept
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        for _ in range(_DRAWS):  # a random crop may cut the object out of the first frame
            item = dict(self.dataset[self.indices[index]])
            first = torch.as_tensor(item["masks"][0]) > 0.5
            if bool(first.any()):
                break
        else:
            raise ValueError(
                f"the first-frame mask of video {item.get('video_id')!r}, object "
                f"{item.get('obj_id')!r} is empty: the object to track must be visible in the "
                "clip's first frame"
            )
        item["first_mask"] = first.float()
        return item


def _object_keys(dataset: Dataset) -> list[tuple[str, str]]:
    records = getattr(dataset, "records", None)
    if records is not None and len(records) == len(dataset):  # type: ignore[arg-type]
        return [(str(_get(r, "video_id")), str(_get(r, "obj_id"))) for r in records]
    return [
        (str(item["video_id"]), str(item.get("obj_id")))
        for item in (dataset[i] for i in range(len(dataset)))  # type: ignore[arg-type]
    ]


def _get(record: Any, key: str) -> Any:
    return record[key] if isinstance(record, dict) else getattr(record, key)
