"""A synthetic semi-supervised VOS task: the synthetic videos with the first frame's mask.

:class:`SyntheticVOSDataset` serves the videos of
:class:`~rvoslib.data.synthetic.SyntheticRVOSDataset` (coloured shapes moving over a textured
background) with, besides the expression, ``first_mask``: the target object's mask in the
clip's first frame. A VOS model (``task = "vos"``) learns to follow that object on the CPU in
minutes. ``first_mask="zeros"`` gives an all-zero first mask instead, the control that shows a
model really uses the mask: without it, it can only guess which object to follow.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rvoslib.data.synthetic import SyntheticRVOSDataset
from rvoslib.data.transforms import to_tensors

__all__ = ["FIRST_MASK_MODES", "SyntheticVOSDataset"]

#: ``"target"``: the target's mask in the first frame; ``"zeros"``: an empty mask (control).
FIRST_MASK_MODES = ("target", "zeros")
_TRANSFORM_TRIES = 10


class SyntheticVOSDataset(SyntheticRVOSDataset):
    """The synthetic RVOS videos as a VOS task: items also carry ``first_mask``.

    Items are those of :class:`~rvoslib.data.synthetic.SyntheticRVOSDataset` (one per
    (video, expression); the target is the object the expression names, visible in every
    frame) plus ``first_mask`` ``(H, W)`` float32 (the target in frame 0, after the transform,
    so it always matches the frames) and ``category`` (the target's shape name).

    Args:
        *args: Positional arguments of :class:`SyntheticRVOSDataset` (``num_videos``,
            ``num_frames``, ``size``...).
        first_mask: ``"target"`` or ``"zeros"`` (the control without the first-frame mask).
        **kwargs: Keyword arguments of :class:`SyntheticRVOSDataset`.

    Raises:
        ValueError: an unknown ``first_mask`` mode, or a random transform that crops the
            target out of the first frame in 10 draws.

    Example:
        >>> dataset = SyntheticVOSDataset(num_videos=2, num_frames=3, size=32)
        >>> item = dataset[0]
        >>> tuple(item["first_mask"].shape), bool(item["first_mask"].any())
        ((32, 32), True)
        >>> torch.equal(item["first_mask"], item["masks"][0])
        True
        >>> control = SyntheticVOSDataset(num_videos=2, num_frames=3, size=32, first_mask="zeros")
        >>> bool(control[0]["first_mask"].any())
        False
    """

    def __init__(self, *args: Any, first_mask: str = "target", **kwargs: Any) -> None:
        if first_mask not in FIRST_MASK_MODES:
            raise ValueError(f"first_mask must be one of {FIRST_MASK_MODES}, got {first_mask!r}")
        super().__init__(*args, **kwargs)
        self.first_mask = first_mask

    def load_sample(self, index: int) -> dict[str, Any]:
        """Item ``index`` before tensor conversion, with ``first_mask`` ``(H, W)`` uint8."""
        for _ in range(_TRANSFORM_TRIES if self.transform is not None else 1):
            sample = super().load_sample(index)
            if sample["masks"][0].any():
                break
        else:
            raise ValueError(
                f"item {index}: the transform {self.transform!r} removed the target from the "
                f"first frame in {_TRANSFORM_TRIES} draws; use a milder crop"
            )
        video = (index % len(self)) // self.expressions_per_video
        target = next(
            obj for obj in self.scene(video).objects if obj.obj_id == int(sample["obj_id"])
        )
        sample["category"] = target.shape
        first = np.asarray(sample["masks"][0], dtype=np.uint8)
        sample["first_mask"] = first if self.first_mask == "target" else np.zeros_like(first)
        return sample

    def __getitem__(self, index: int) -> dict[str, Any]:
        """One item: the keys of :class:`SyntheticRVOSDataset` plus ``first_mask`` ``(H, W)``
        float32 in {0, 1} and ``category`` str."""
        sample = self.load_sample(index)
        item = to_tensors(sample)
        item["first_mask"] = torch.from_numpy((sample["first_mask"] > 0).astype(np.float32))
        return item
