"""Base for datasets annotated in single frames (A2D-Sentences, JHMDB-Sentences).

One item per (video, annotated frame, expression): a window of frames with the annotated frame
in the middle, the referred instance's mask in that frame, and the masks of every instance
annotated there (for set-prediction losses that match queries to instances).

Clip transforms (:mod:`rvoslib.data.transforms`) take one ``(T, H, W)`` mask array. To give all
instance masks the same random crop and flip as the frames, they travel bit-packed in that
array (8 instances per frame slot, one bit each) and are unpacked afterwards; a transform
therefore has to move mask values without mixing them (nearest-neighbour resizing, as
:class:`~rvoslib.data.ClipTransform` does). Clips with more than ``8 * T`` instances replay the
transform with the same random state for the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rvoslib.data.base import RecordDataset
from rvoslib.data.transforms import swap_left_right, to_tensors

__all__ = ["AnnotatedFrameDataset", "FrameQueryRecord", "instance_boxes"]

Transform = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class FrameQueryRecord:
    """One sample: an expression referring to ``instance_id`` in frame ``frame_number``.

    ``frame_number`` is 1-based (the datasets' file names); ``image_id`` is MTTR's id of the
    sample in its COCO-format ground truth.
    """

    video_id: str
    frame_number: int
    instance_id: int
    expression: str
    exp_id: str
    short_expression: str | None
    image_id: str


def instance_boxes(masks: np.ndarray) -> np.ndarray:
    """Bounding boxes of masks, ``(x_min, y_min, x_max, y_max)`` inclusive pixel indices.

    Args:
        masks: (..., H, W) masks, foreground where nonzero.

    Returns:
        (..., 4) float32; all zeros for an empty mask (as ``torchvision.ops.masks_to_boxes``
        for non-empty ones).

    Example:
        >>> import numpy as np
        >>> mask = np.zeros((1, 4, 5), bool); mask[0, 1:3, 2:5] = True
        >>> instance_boxes(mask).tolist()
        [[2.0, 1.0, 4.0, 2.0]]
    """
    masks = np.asarray(masks) != 0
    rows, cols = masks.any(-1), masks.any(-2)  # (..., H), (..., W)
    height, width = masks.shape[-2:]
    y_min = rows.argmax(-1)
    y_max = height - 1 - rows[..., ::-1].argmax(-1)
    x_min = cols.argmax(-1)
    x_max = width - 1 - cols[..., ::-1].argmax(-1)
    boxes = np.stack([x_min, y_min, x_max, y_max], -1).astype(np.float32)
    boxes[~rows.any(-1)] = 0
    return boxes


def _pack(masks: np.ndarray, length: int) -> np.ndarray:
    """Pack (M, H, W) bool, M <= 8 * length, into (length, H, W) uint8.

    Instance m goes to slot m // 8, bit m % 8.
    """
    packed = np.zeros((length, *masks.shape[1:]), np.uint8)
    for index, mask in enumerate(masks):
        packed[index // 8] |= mask.astype(np.uint8) << (index % 8)
    return packed


def _unpack(packed: np.ndarray, count: int) -> np.ndarray:
    """Inverse of :func:`_pack`: (length, H, W) uint8 -> (count, H, W) bool."""
    return np.stack([(packed[m // 8] >> (m % 8)) & 1 != 0 for m in range(count)])


class AnnotatedFrameDataset(RecordDataset):
    """Base dataset: one item per (video, annotated frame, expression).

    Subclasses fill ``self.records`` with :class:`FrameQueryRecord` and implement
    :meth:`read_frames` and :meth:`read_instances`.

    Items hold ``frames`` ``(T, 3, H, W)`` float32 (ImageNet-normalised), ``masks``
    ``(T, H, W)`` float32 (the referred instance, in the annotated slot only), ``valid``
    ``(T,)`` bool (True only in the annotated slot, ``annotated_index = T // 2``),
    ``instance_masks`` ``(M, T, H, W)`` bool (every instance annotated in that frame, zero in
    the other slots), ``referred`` ``(M,)`` bool (exactly one True), ``boxes`` ``(M, T, 4)``
    float32 (``x_min, y_min, x_max, y_max`` of ``instance_masks`` after the transform, zeros
    where empty), ``expression``, ``video_id``, ``frame_ids`` (1-based frame numbers, e.g.
    ``"00042"``; edge frames repeat), ``obj_id`` (the instance id), ``exp_id``, ``image_id``
    (MTTR's ``v_<video>_f_<frame>[_i_<instance>]``), ``orig_size``, ``unpadded_size``, and
    ``short_expression`` where the dataset has one. An item is None (with a warning) for an
    unreadable video or frame when ``on_error="skip"``; :class:`~rvoslib.data.RVOSCollator`
    drops it.
    """

    def __init__(
        self,
        num_frames: int,
        transform: Transform | None = None,
        lowercase: bool = True,
        on_error: str = "raise",
    ) -> None:
        if not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
        super().__init__(on_error)
        self.num_frames = num_frames
        self.transform = transform
        self.lowercase = lowercase
        self.records: list[FrameQueryRecord] = []

    def clean(self, text: str) -> str:
        """Collapse white space (and lower-case if ``lowercase``), as MTTR."""
        text = " ".join(str(text).split())
        return text.lower() if self.lowercase else text

    def read_frames(self, record: FrameQueryRecord) -> tuple[np.ndarray, list[str]]:
        """The window: ``(frames (T, H, W, 3) uint8 RGB, frame_ids)``, annotated at ``T // 2``."""
        raise NotImplementedError

    def read_instances(self, record: FrameQueryRecord) -> tuple[np.ndarray, list[int], int]:
        """The annotated frame's ``(masks (M, H, W) bool, instance_ids, referred index)``."""
        raise NotImplementedError

    def ground_truth(self, index: int) -> np.ndarray:
        """The referred instance's mask at the original resolution, ``(H, W)`` bool.

        This is the ground truth of the evaluation protocol (MTTR scores predictions resized
        back to this size); see :class:`rvoslib.metrics.a2d_protocol.A2DProtocol`.
        """
        masks, _, referred = self.read_instances(self.records[index])
        return masks[referred]

    def load_sample(self, index: int) -> dict[str, Any]:
        """The item before tensor conversion, transform applied.

        Numpy ``frames`` ``(T, H, W, 3)`` uint8, ``masks`` ``(T, H, W)`` uint8, ``valid``
        ``(T,)`` bool, and ``instance_masks`` ``(M, H, W)`` bool of the annotated frame only
        with ``referred`` ``(M,)`` bool; :meth:`__getitem__` expands them to the item layout.
        """
        record = self.records[index]
        frames, frame_ids = self.read_frames(record)
        instances, _, referred = self.read_instances(record)
        if instances.shape[1:] != frames.shape[1:3]:
            raise ValueError(
                f"video {record.video_id!r}, frame {record.frame_number:05d}: annotation is "
                f"{instances.shape[1:]} but the frames are {frames.shape[1:3]}"
            )
        length, slot = len(frame_ids), self.num_frames // 2
        sample: dict[str, Any] = {
            "frames": frames,
            "expression": record.expression,
            "video_id": record.video_id,
            "frame_ids": frame_ids,
            "obj_id": record.instance_id,
            "exp_id": record.exp_id,
            "image_id": record.image_id,
            "annotated_index": slot,
            "orig_size": tuple(frames.shape[1:3]),
            "unpadded_size": tuple(frames.shape[1:3]),
        }
        if record.short_expression is not None:
            sample["short_expression"] = record.short_expression
        if self.transform is not None:
            sample, instances = self._transform(sample, instances, length)
        masks = np.zeros((length, *instances.shape[1:]), np.uint8)
        masks[slot] = instances[referred]
        sample["masks"] = masks
        sample["valid"] = np.arange(length) == slot
        sample["instance_masks"] = instances
        sample["referred"] = np.arange(len(instances)) == referred
        return sample

    def _transform(
        self, sample: dict[str, Any], instances: np.ndarray, length: int
    ) -> tuple[dict[str, Any], np.ndarray]:
        capacity = 8 * length
        chunks = [instances[i : i + capacity] for i in range(0, len(instances), capacity)]
        before = torch.get_rng_state()
        out = self.transform({**sample, "masks": _pack(chunks[0], length)})
        after = torch.get_rng_state()
        parts = [_unpack(out["masks"], len(chunks[0]))]
        for chunk in chunks[1:]:  # the same random draw for the remaining instances
            torch.set_rng_state(before)
            replay = self.transform({**sample, "masks": _pack(chunk, length)})
            parts.append(_unpack(replay["masks"], len(chunk)))
            torch.set_rng_state(after)
        flipped = out["expression"] != sample["expression"] and out["expression"] == (
            swap_left_right(sample["expression"])
        )
        if flipped and "short_expression" in out:
            out["short_expression"] = swap_left_right(out["short_expression"])
        return out, np.concatenate(parts)

    def describe_item(self, index: int) -> str:
        record = self.records[index]
        return f"video {record.video_id!r}, frame {record.frame_number:05d}"

    def to_item(self, sample: dict[str, Any]) -> dict[str, Any]:
        """The item layout (see the class docstring) from :meth:`load_sample`'s sample."""
        instances = sample.pop("instance_masks")
        referred = sample.pop("referred")
        item = to_tensors(sample)
        slot = item["annotated_index"]
        full = np.zeros((len(instances), len(item["valid"]), *instances.shape[1:]), bool)
        full[:, slot] = instances
        boxes = np.zeros((len(instances), len(item["valid"]), 4), np.float32)
        boxes[:, slot] = instance_boxes(instances)
        item["instance_masks"] = torch.from_numpy(full)
        item["referred"] = torch.from_numpy(referred)
        item["boxes"] = torch.from_numpy(boxes)
        return item
