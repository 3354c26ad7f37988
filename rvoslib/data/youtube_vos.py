"""YouTube-VOS (Xu et al., 2018) for semi-supervised VOS, in the VOS challenge layout.

One item per (video, object): the frames from the object's first annotated frame on, the
object's masks where annotated, and ``first_mask``, its mask in the item's first frame (the
input of a VOS model). In ``train`` every 5th frame is annotated and clips are sampled among the
annotated frames; in ``valid``/``test`` only each object's first frame has a mask (the others are
to be predicted; their ``valid`` is False).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rvoslib._paths import check_path_component
from rvoslib.data.base import RecordDataset
from rvoslib.data.io import list_images, read_clip
from rvoslib.data.transforms import to_tensors

__all__ = [
    "YOUTUBE_VOS_LAYOUT",
    "VOSObjectRecord",
    "YouTubeVOSDataset",
    "load_youtube_vos_meta",
]

YOUTUBE_VOS_LAYOUT = """expected the YouTube-VOS (VOS challenge) layout:
  <root>/<split>/JPEGImages/<video>/00000.jpg ...
  <root>/<split>/Annotations/<video>/00000.png ...  (palette PNGs, value = object id; train:
                                                   every 5th frame, valid: first frames only)
  <root>/<split>/meta.json  {"videos": {<video>: {"objects": {"1": {"category": "cat",
                             "frames": ["00000", "00005", ...]}}}}}"""

SPLITS = ("train", "valid", "test")
SAMPLING_MODES = ("random", "strided", "uniform")
Transform = Callable[[dict[str, Any]], dict[str, Any]]
_TRANSFORM_TRIES = 10


@dataclass(frozen=True)
class VOSObjectRecord:
    """One object of one video; ``mask_paths[i]`` is None where frame ``i`` has no PNG.

    ``frame_ids`` start at the object's first annotated frame; ``present`` holds the indices of
    the frames where ``meta.json`` lists the object.
    """

    video_id: str
    obj_id: int
    category: str | None
    frame_ids: tuple[str, ...]
    frame_paths: tuple[Path, ...]
    mask_paths: tuple[Path | None, ...]
    present: tuple[int, ...]


def load_youtube_vos_meta(path: str | os.PathLike) -> dict[str, dict[int, dict[str, Any]]]:
    """Read a YouTube-VOS ``meta.json``.

    Returns:
        ``{video_id: {obj_id: {"category": str | None, "frames": [frame ids, sorted]}}}``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: malformed JSON or layout, a non-integer object id, an object listing
            no annotated frame, or a video name or frame name that is not a plain file name
            (``..``, a separator, absolute, empty, NUL; the file and the entry are named).

    Example:
        >>> import json, tempfile
        >>> path = Path(tempfile.mkdtemp()) / "meta.json"
        >>> _ = path.write_text(json.dumps({"videos": {"v1": {"objects": {
        ...     "2": {"category": "cat", "frames": ["00005", "00010"]}}}}}))
        >>> load_youtube_vos_meta(path)
        {'v1': {2: {'category': 'cat', 'frames': ['00005', '00010']}}}
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"meta.json not found: {path}\n{YOUTUBE_VOS_LAYOUT}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot parse {path} as JSON: {error}") from error
    if not isinstance(meta, dict) or not isinstance(meta.get("videos"), dict):
        raise ValueError(f'{path} must hold {{"videos": {{video_id: {{"objects": ...}}}}}}')
    videos: dict[str, dict[int, dict[str, Any]]] = {}
    for video_id, video in meta["videos"].items():
        check_path_component(video_id, "video name", path)
        objects = video.get("objects") if isinstance(video, dict) else None
        if not isinstance(objects, dict):
            raise ValueError(f"{path}: video {video_id!r} has no 'objects' mapping")
        videos[video_id] = {}
        for raw_id, entry in objects.items():
            try:
                obj_id = int(raw_id)
            except ValueError:
                raise ValueError(
                    f"{path}: video {video_id!r} has object id {raw_id!r}; ids are integers"
                ) from None
            frames = entry.get("frames") if isinstance(entry, dict) else None
            if not frames:
                raise ValueError(
                    f"{path}: object {obj_id} of video {video_id!r} lists no annotated frame "
                    f"(its 'frames' is {frames!r}); every object needs at least its first frame"
                )
            if not isinstance(frames, list):
                raise ValueError(
                    f"{path}: 'frames' of object {obj_id} of video {video_id!r} must be a list "
                    f"of frame names, got {type(frames).__name__}"
                )
            for frame in frames:
                what = f"frame name of object {obj_id} of video {video_id!r}"
                check_path_component(str(frame), what, path)
            videos[video_id][obj_id] = {
                "category": entry.get("category"),
                "frames": sorted(str(frame) for frame in frames),
            }
    return videos


class YouTubeVOSDataset(RecordDataset):
    """YouTube-VOS for semi-supervised VOS (see ``YOUTUBE_VOS_LAYOUT``), one item per object.

    Items hold ``frames`` ``(T, 3, H, W)`` float32 (ImageNet-normalised), ``masks``
    ``(T, H, W)`` float32, ``valid`` ``(T,)`` bool, ``first_mask`` ``(H, W)`` float32,
    ``video_id``, ``frame_ids``, ``obj_id``, ``category``, ``orig_size``, ``unpadded_size``;
    an item is None (with a warning naming the file) for an unreadable image when
    ``on_error="skip"``.

    Args:
        root: The YouTube-VOS folder (holding ``train/``, ``valid/``...).
        split: ``"train"``, ``"valid"`` or ``"test"``.
        num_frames: None for every frame from the object's first one (evaluation), an int for
            sampled clips (training). The first frame of a clip always shows the object.
        sampling: ``"random"`` (distinct frames, sorted), ``"strided"`` (a window of frames
            ``stride`` apart) or ``"uniform"`` (evenly spaced from the object's first frame).
        stride: Frame step of ``"strided"`` sampling.
        transform: A clip transform on the numpy sample (None keeps the original size); the
            first mask is transformed with the frames. A random transform that crops the
            object out of the first frame is drawn again (up to 10 times).
        on_error: ``"raise"`` or ``"skip"`` (warn and return None) for unreadable images.
        videos: Only these video ids (e.g. a held-out part of ``train``).
        annotated_only: In ``train``, use only the frames that have an annotation PNG (the
            standard every-5th-frame set even when ``JPEGImages`` holds all frames).

    Raises:
        FileNotFoundError: a missing root, ``meta.json``, video folder or frame.
        ValueError: a ``meta.json`` object without annotated frames or whose first frame has
            no annotation PNG; at load time, an annotation whose size differs from its frame
            (both sizes named), an object id absent from ``meta.json``, or an empty first-frame
            mask for the object to track.

    Example:
        >>> dataset = YouTubeVOSDataset("youtube-vos", "train", num_frames=5)  # doctest: +SKIP
        >>> item = dataset[0]  # doctest: +SKIP
        >>> item["frames"].shape, item["first_mask"].shape  # doctest: +SKIP
        (torch.Size([5, 3, 720, 1280]), torch.Size([720, 1280]))
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        num_frames: int | None = None,
        sampling: str = "random",
        stride: int = 1,
        transform: Transform | None = None,
        on_error: str = "raise",
        videos: Sequence[str] | None = None,
        annotated_only: bool = True,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if num_frames is not None and (
            isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1
        ):
            raise ValueError(f"num_frames must be a positive int or None, got {num_frames!r}")
        if sampling not in SAMPLING_MODES:
            raise ValueError(f"sampling must be one of {SAMPLING_MODES}, got {sampling!r}")
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise ValueError(f"stride must be a positive int, got {stride!r}")
        super().__init__(on_error)
        self.root, self.split = Path(root), split
        self.num_frames, self.sampling, self.stride = num_frames, sampling, stride
        self.transform = transform
        self.annotated_only = annotated_only and split == "train"
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"YouTube-VOS root not found: {self.root}\n{YOUTUBE_VOS_LAYOUT}"
            )
        self.meta = load_youtube_vos_meta(self.root / split / "meta.json")
        chosen = list(self.meta) if videos is None else list(videos)
        unknown = [video for video in chosen if video not in self.meta]
        if unknown:
            raise ValueError(
                f"videos {unknown[:5]} are not in {self.root / split / 'meta.json'} "
                f"({len(unknown)} unknown)"
            )
        self.records: list[VOSObjectRecord] = []
        for video_id in sorted(chosen):
            self.records.extend(self._video_records(video_id))

    def categories(self) -> set[str]:
        """The object categories of the dataset (``"seen"`` ones when this is ``train``)."""
        return {r.category for r in self.records if r.category is not None}

    def _video_records(self, video_id: str) -> list[VOSObjectRecord]:
        frame_dir = self.root / self.split / "JPEGImages" / video_id
        mask_dir = self.root / self.split / "Annotations" / video_id
        for folder in (frame_dir, mask_dir):
            if not folder.is_dir():
                raise FileNotFoundError(f"video folder not found: {folder}\n{YOUTUBE_VOS_LAYOUT}")
        frames = {p.stem: p for p in list_images(frame_dir)}
        masks = {p.stem: p for p in list_images(mask_dir) if p.suffix.lower() == ".png"}
        orphans = sorted(set(masks) - set(frames))
        if orphans:
            raise ValueError(
                f"video {video_id!r}: annotation {mask_dir / (orphans[0] + '.png')} has no frame "
                f"in {frame_dir} ({len(orphans)} annotations without frames)"
            )
        names = sorted(masks if self.annotated_only else frames)
        records = []
        for obj_id, entry in sorted(self.meta[video_id].items()):
            first = entry["frames"][0]
            if first not in masks:
                raise ValueError(
                    f"video {video_id!r}: object {obj_id}'s first frame {first} (meta.json) has "
                    f"no annotation {mask_dir / (first + '.png')}; its first mask is needed"
                )
            frame_ids = tuple(name for name in names if name >= first)
            listed = set(entry["frames"])
            records.append(
                VOSObjectRecord(
                    video_id=video_id,
                    obj_id=obj_id,
                    category=entry["category"],
                    frame_ids=frame_ids,
                    frame_paths=tuple(frames[name] for name in frame_ids),
                    mask_paths=tuple(
                        masks.get(name) if self.split == "train" or name == first else None
                        for name in frame_ids
                    ),
                    present=tuple(
                        i
                        for i, name in enumerate(frame_ids)
                        if name in listed and (self.split == "train" or i == 0)
                    ),
                )
            )
        return records

    def sample_indices(self, record: VOSObjectRecord) -> list[int]:
        """Frame indices (sorted) of one clip of ``record``; the first shows the object.

        ``num_frames=None`` or a shorter object track gives every frame (the collator pads).
        """
        length, count = len(record.frame_ids), self.num_frames
        if count is None or length <= count:
            return list(range(length))
        if self.sampling == "uniform":
            return np.linspace(0, length - 1, count).round().astype(int).tolist()
        if self.sampling == "random":
            starts = [p for p in record.present if length - p >= count] or [0]
            start = starts[int(torch.randint(len(starts), ()).item())]
            rest = (torch.randperm(length - start - 1)[: count - 1] + start + 1).tolist()
            return [start, *sorted(rest)]
        stride = min(self.stride, (length - 1) // max(count - 1, 1))
        span = (count - 1) * stride + 1
        starts = [p for p in record.present if p + span <= length] or [0]
        start = starts[int(torch.randint(len(starts), ()).item())]
        return list(range(start, start + span, stride))

    def load_sample(self, index: int) -> dict[str, Any]:
        """The item before tensor conversion: ``frames`` ``(T, H, W, 3)`` uint8, ``masks``
        ``(T, H, W)`` uint8, ``valid`` ``(T,)`` bool, ``first_mask`` ``(H, W)`` uint8..."""
        record = self.records[index]
        chosen = self.sample_indices(record)
        frames, masks, valid = read_clip(
            [record.frame_paths[i] for i in chosen],
            [record.mask_paths[i] for i in chosen],
            record.obj_id,
            video_id=record.video_id,
            frame_ids=[record.frame_ids[i] for i in chosen],
            known_ids=set(self.meta[record.video_id]),
        )
        height, width = frames.shape[1:3]
        if not masks[0].any():
            raise ValueError(
                f"video {record.video_id!r}, object {record.obj_id}: its mask in frame "
                f"{record.frame_ids[chosen[0]]} ({record.mask_paths[chosen[0]]}) is empty, so "
                "there is nothing to track; meta.json lists the object in that frame"
            )
        sample = {
            "frames": frames,
            "masks": masks,
            "valid": valid,
            "video_id": record.video_id,
            "frame_ids": [record.frame_ids[i] for i in chosen],
            "obj_id": record.obj_id,
            "category": record.category,
            "orig_size": (height, width),
            "unpadded_size": (height, width),
        }
        if self.transform is not None:
            sample = self._transform(self.transform, sample, record)
        sample["first_mask"] = np.ascontiguousarray(sample["masks"][0], dtype=np.uint8)
        return sample

    @staticmethod
    def _transform(
        transform: Transform, sample: dict[str, Any], record: VOSObjectRecord
    ) -> dict[str, Any]:
        for _ in range(_TRANSFORM_TRIES):
            out = transform(sample)
            if np.asarray(out["masks"][0]).any():
                return out
        raise ValueError(
            f"video {record.video_id!r}, object {record.obj_id}: the transform "
            f"{transform!r} removed the object from the first frame in {_TRANSFORM_TRIES} "
            "draws (the object is too small for the crop or resize); use a milder transform"
        )

    def to_item(self, sample: dict[str, Any]) -> dict[str, Any]:
        item = to_tensors(sample)
        item["first_mask"] = torch.from_numpy((sample["first_mask"] > 0).astype(np.float32))
        return item

    def describe_item(self, index: int) -> str:
        record = self.records[index]
        return f"video {record.video_id!r}, object {record.obj_id}"
