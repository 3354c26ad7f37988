"""Ref-DAVIS17: DAVIS-2017 frames and masks with referring expressions.

Also holds :class:`ExpressionClipDataset`, the base shared with Ref-YouTube-VOS: one item per
(video, expression), whole videos or sampled clips, the same loading and error handling.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rvoslib._paths import check_path_component
from rvoslib.data.base import RecordDataset
from rvoslib.data.expressions import (
    REFDAVIS_KINDS,
    ExpressionRecord,
    RefDAVISText,
    find_refdavis_text,
    load_meta_expressions,
    load_refdavis_text,
    parse_refdavis_text,
)
from rvoslib.data.io import image_size, list_images, read_clip, read_mask

__all__ = [
    "ANNOTATION_FOLDERS",
    "SAMPLING_MODES",
    "ClipRecord",
    "ExpressionClipDataset",
    "RefDAVISDataset",
]

SAMPLING_MODES = ("random", "strided", "uniform")
Transform = Callable[[dict[str, Any]], dict[str, Any]]

DAVIS_LAYOUT = """expected the DAVIS-2017 layout:
  <root>/JPEGImages/480p/<video>/00000.jpg ...
  <root>/Annotations/480p/<video>/00000.png ...   (indexed PNGs, value = object id; or
                                                   Annotations_unsupervised/480p, ReferFormer's)
  <root>/ImageSets/2017/train.txt, val.txt        (one video per line)
  <root>/meta_expressions.json                    (or the Ref-DAVIS17 Davis17_annot1.txt ... in
                                                   <root>, <root>/davis_text_annotations or
                                                   <root>/../davis_text_annotations)"""

ANNOTATION_FOLDERS = ("Annotations_unsupervised", "Annotations")


@dataclass(frozen=True)
class ClipRecord:
    """Everything needed to load one item; ``mask_paths[i]`` is None for unannotated frames."""

    video_id: str
    exp_id: str
    obj_id: int
    expression: str
    frame_ids: tuple[str, ...]
    frame_paths: tuple[Path, ...]
    mask_paths: tuple[Path | None, ...]


class ExpressionClipDataset(RecordDataset):
    """Base dataset: one item per (video, expression), see :class:`RefDAVISDataset`.

    Items hold ``frames`` ``(T, 3, H, W)`` float32 (ImageNet-normalised), ``masks``
    ``(T, H, W)`` float32, ``valid`` ``(T,)`` bool, ``expression``, ``video_id``,
    ``frame_ids``, ``obj_id``, ``exp_id``, ``orig_size``, ``unpadded_size``; an item is None
    (with a warning naming the file) for an unreadable frame when ``on_error="skip"``, and
    :class:`~rvoslib.data.RVOSCollator` drops it.

    Subclasses fill ``self.records`` and may override :meth:`_check_object`.
    """

    def __init__(
        self,
        num_frames: int | None = None,
        sampling: str = "random",
        stride: int = 1,
        transform: Transform | None = None,
        on_error: str = "raise",
    ) -> None:
        if num_frames is not None and (not isinstance(num_frames, int) or num_frames < 1):
            raise ValueError(f"num_frames must be a positive int or None, got {num_frames!r}")
        if sampling not in SAMPLING_MODES:
            raise ValueError(f"sampling must be one of {SAMPLING_MODES}, got {sampling!r}")
        if not isinstance(stride, int) or stride < 1:
            raise ValueError(f"stride must be a positive int, got {stride!r}")
        super().__init__(on_error)
        self.num_frames = num_frames
        self.sampling = sampling
        self.stride = stride
        self.transform = transform
        self.records: list[ClipRecord] = []
        self.check_objects_on_load = False
        self._object_ids: dict[str, set[int]] = {}

    def sample_indices(self, length: int) -> list[int]:
        """Frame indices of one clip from a video of ``length`` frames (sorted).

        ``num_frames=None`` gives every frame; a video shorter than ``num_frames`` gives all
        its frames (the collator pads). ``"random"`` draws distinct frames, ``"strided"`` a
        window of frames ``stride`` apart at a random start (the stride shrinks for short
        videos), ``"uniform"`` evenly spaced frames (deterministic).
        """
        count = self.num_frames
        if count is None or length <= count:
            return list(range(length))
        if self.sampling == "random":
            return sorted(torch.randperm(length)[:count].tolist())
        if self.sampling == "uniform":
            return np.linspace(0, length - 1, count).round().astype(int).tolist()
        stride = min(self.stride, (length - 1) // max(count - 1, 1))
        span = (count - 1) * stride + 1
        start = int(torch.randint(0, length - span + 1, ()).item())
        return list(range(start, start + span, stride))

    def video_object_ids(self, record: ClipRecord) -> set[int]:
        """Object ids present in any annotation of the record's video (cached per video)."""
        if record.video_id not in self._object_ids:
            ids: set[int] = set()
            for path in dict.fromkeys(p for p in record.mask_paths if p is not None):
                ids.update(np.unique(read_mask(path)).tolist())
            ids.discard(0)
            self._object_ids[record.video_id] = ids
        return self._object_ids[record.video_id]

    def _check_object(self, record: ClipRecord) -> None:
        """Raise ValueError if the record's object appears in none of its video's annotations."""
        if record.obj_id < 0 or not any(p is not None for p in record.mask_paths):
            return
        ids = self.video_object_ids(record)
        if record.obj_id not in ids:
            raise ValueError(
                f"expression {record.exp_id} ({record.expression!r}) of video "
                f"{record.video_id!r} names object {record.obj_id}, which is absent from the "
                f"annotations (objects present: {sorted(ids)})"
            )

    def load_sample(self, index: int) -> dict[str, Any]:
        """The item before tensor conversion: numpy frames ``(T, H, W, 3)`` uint8 and masks."""
        record = self.records[index]
        if self.check_objects_on_load:
            self._check_object(record)
        chosen = self.sample_indices(len(record.frame_paths))
        frames, masks, valid = read_clip(
            [record.frame_paths[i] for i in chosen],
            [record.mask_paths[i] for i in chosen],
            record.obj_id,
            video_id=record.video_id,
            frame_ids=[record.frame_ids[i] for i in chosen],
        )
        height, width = frames.shape[1:3]
        sample = {
            "frames": frames,
            "masks": masks,
            "valid": valid,
            # the object is in the full-size frame (MTTR's is_ref_inst_visible, taken before any
            # resize); the set criterion reads it with conventions visibility="labels"
            "visible": np.asarray(masks).reshape(len(chosen), -1).any(1),
            "expression": record.expression,
            "video_id": record.video_id,
            "frame_ids": [record.frame_ids[i] for i in chosen],
            "obj_id": record.obj_id,
            "exp_id": record.exp_id,
            "orig_size": (height, width),
            "unpadded_size": (height, width),
        }
        if self.transform is not None:
            sample = self.transform(sample)
        return sample

    def describe_item(self, index: int) -> str:
        record = self.records[index]
        return f"video {record.video_id!r}, expression {record.exp_id}"


def _resolve_expressions(
    root: Path,
    expressions: str | os.PathLike | Sequence[str | os.PathLike] | None,
    encoding: str | None,
) -> tuple[list[ExpressionRecord], RefDAVISText | None]:
    """The expressions a :class:`RefDAVISDataset` argument names, and the text-file report."""
    if expressions is None:
        path = root / "meta_expressions.json"
        if path.is_file():
            return load_meta_expressions(path)[0], None
        if find_refdavis_text(root) is None:
            raise FileNotFoundError(
                f"no expressions found for {root}: neither {path} nor the Ref-DAVIS17 text "
                f"files (Davis17_annot1.txt ...) in {root}, {root / 'davis_text_annotations'} "
                f"or {root.parent / 'davis_text_annotations'}; pass expressions= a file.\n"
                f"{DAVIS_LAYOUT}"
            )
        expressions = "all"
    if isinstance(expressions, str) and expressions in (*REFDAVIS_KINDS, "all"):
        kinds = REFDAVIS_KINDS if expressions == "all" else (expressions,)
        text = load_refdavis_text(root, kinds, encoding)
        return list(text.records), text
    if isinstance(expressions, (str, os.PathLike)):
        path = Path(expressions)
        if path.is_dir():
            text = load_refdavis_text(path, REFDAVIS_KINDS, encoding)
            return list(text.records), text
        if path.suffix == ".json":
            return load_meta_expressions(path)[0], None
        return parse_refdavis_text(path, encoding), None
    return parse_refdavis_text(list(expressions), encoding), None


class RefDAVISDataset(ExpressionClipDataset):
    """Ref-DAVIS17 in the official DAVIS-2017 layout (see the module's ``DAVIS_LAYOUT``).

    Reads the layouts users have: the DAVIS-2017 semi-supervised download (``Annotations``),
    the unsupervised one that ReferFormer's README asks for (``Annotations_unsupervised``),
    and the Ref-DAVIS17 text files where ReferFormer's README puts them
    (``data/ref-davis/davis_text_annotations`` next to ``data/ref-davis/DAVIS``), numbered as
    ReferFormer numbers them (see :func:`rvoslib.data.expressions.load_refdavis_text`), so that
    ``int(exp_id) % 4`` is the annotator / expression kind of the ``refer-davis`` protocol. For
    the layout ReferFormer's ``convert_davis_to_ytvos.py`` writes, use
    :class:`~rvoslib.data.RefYouTubeVOSDataset` on its output folder.

    Args:
        root: The DAVIS-2017 folder (holding ``JPEGImages``, ``Annotations*``, ``ImageSets``).
        split: ``"train"`` or ``"val"`` (reads ``ImageSets/2017/<split>.txt``).
        expressions: None (``root/meta_expressions.json`` if present, else the four Ref-DAVIS17
            text files found next to ``root``), ``"all"`` (the four text files), one of
            ``"annot1"``, ``"annot1_full_video"``, ``"annot2"``, ``"annot2_full_video"`` (one
            of them), a folder of the text files, a ``.json`` path, or text files of your own
            (a path or a list; numbered file by file).
        num_frames: None for whole videos (evaluation), an int for sampled clips (training).
        sampling: ``"random"``, ``"strided"`` or ``"uniform"``, see :meth:`sample_indices`.
        stride: Frame step of ``"strided"`` sampling.
        transform: A clip transform on the numpy sample (None keeps the original size).
        on_error: ``"raise"`` or ``"skip"`` (warn and return None) for unreadable frames.
        resolution: The resolution folder name.
        annotations: ``"Annotations_unsupervised"`` or ``"Annotations"``; None takes
            ``Annotations_unsupervised`` where it exists (the object ids ReferFormer and the
            ``refer-davis`` protocol use), else ``Annotations``.
        encoding: Encoding of the text files; None detects it per file.

    Attributes:
        annotations: The annotation folder name in use.
        text: What reading the Ref-DAVIS17 text files did (files, encodings, renamed videos,
            dropped expressions), a :class:`~rvoslib.data.expressions.RefDAVISText`; None for
            JSON expressions or text files of your own.

    Raises:
        FileNotFoundError: a missing root, split file, video folder or expression file.
        ValueError: frames and annotations that disagree in count or size, an expression
            naming an object absent from its video's annotations, an empty expression, an
            unknown ``annotations`` folder, an undecodable text file, or a video name,
            expression id or frame name (split file, expression files) that is not a plain
            file name (``..``, a separator, absolute, empty, NUL; the file and entry named).

    Example:
        >>> dataset = RefDAVISDataset("DAVIS", split="val", num_frames=8)  # doctest: +SKIP
        >>> dataset[0]["frames"].shape  # doctest: +SKIP
        torch.Size([8, 3, 480, 854])
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "val",
        expressions: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
        num_frames: int | None = None,
        sampling: str = "random",
        stride: int = 1,
        transform: Transform | None = None,
        on_error: str = "raise",
        resolution: str = "480p",
        annotations: str | None = None,
        encoding: str | None = None,
    ) -> None:
        super().__init__(num_frames, sampling, stride, transform, on_error)
        self.root = Path(root)
        self.split = split
        if annotations is not None and annotations not in ANNOTATION_FOLDERS:
            raise ValueError(
                f"annotations must be one of {ANNOTATION_FOLDERS} or None, got {annotations!r}"
            )
        if not self.root.is_dir():
            raise FileNotFoundError(f"DAVIS root not found: {self.root}\n{DAVIS_LAYOUT}")
        if annotations is None:
            unsupervised = self.root / ANNOTATION_FOLDERS[0] / resolution
            annotations = ANNOTATION_FOLDERS[0] if unsupervised.is_dir() else ANNOTATION_FOLDERS[1]
        self.annotations = annotations
        split_file = self.root / "ImageSets" / "2017" / f"{split}.txt"
        if not split_file.is_file():
            raise FileNotFoundError(f"split file not found: {split_file}\n{DAVIS_LAYOUT}")
        videos = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
        for video_id in videos:
            check_path_component(video_id, "video name", split_file)
        in_split = set(videos)
        records, self.text = _resolve_expressions(self.root, expressions, encoding)
        by_video: dict[str, list[ExpressionRecord]] = {}
        for record in records:
            if record.video_id in in_split:
                by_video.setdefault(record.video_id, []).append(record)
        for video_id in videos:
            if video_id in by_video:
                self._add_video(video_id, by_video[video_id], resolution)
        if not self.records:
            raise ValueError(
                f"no expression names a video of {split_file} ({len(videos)} videos); check "
                "that the expressions belong to this split"
            )
        without = [video_id for video_id in videos if video_id not in by_video]
        if without:
            warnings.warn(
                f"{len(without)} of {len(videos)} videos in {split_file} have no expressions "
                f"and give no items: {without[:5]}",
                RuntimeWarning,
                stacklevel=2,
            )

    def _missing_folder(self, folder: Path, video_id: str) -> FileNotFoundError:
        message = f"video folder not found: {folder}\n{DAVIS_LAYOUT}"
        moved = [self.root.parent / s / "JPEGImages" / video_id for s in ("train", "valid")]
        if any(path.is_dir() for path in moved):
            message += (
                f"\n{video_id} was moved by ReferFormer's convert_davis_to_ytvos.py to "
                f"{self.root.parent}: unzip DAVIS again (as its README says) or read the "
                f"converted layout with RefYouTubeVOSDataset({str(self.root.parent)!r}, 'valid')"
            )
        return FileNotFoundError(message)

    def _add_video(self, video_id: str, records: list[ExpressionRecord], resolution: str) -> None:
        frame_dir = self.root / "JPEGImages" / resolution / video_id
        mask_dir = self.root / self.annotations / resolution / video_id
        for folder in (frame_dir, mask_dir):
            if not folder.is_dir():
                raise self._missing_folder(folder, video_id)
        frame_paths = list_images(frame_dir)
        mask_paths = [p for p in list_images(mask_dir) if p.suffix.lower() == ".png"]
        frame_ids = [p.stem for p in frame_paths]
        if not frame_paths or frame_ids != [p.stem for p in mask_paths]:
            raise ValueError(
                f"video {video_id!r}: {len(frame_paths)} frames in {frame_dir} but "
                f"{len(mask_paths)} annotations in {mask_dir}; DAVIS train/val needs one "
                f"annotation PNG per frame with the same name"
            )
        if image_size(frame_paths[0]) != image_size(mask_paths[0]):
            raise ValueError(
                f"video {video_id!r}: frame {frame_paths[0]} is {image_size(frame_paths[0])} "
                f"but annotation {mask_paths[0]} is {image_size(mask_paths[0])}"
            )
        first_ids = set(np.unique(read_mask(mask_paths[0])).tolist())
        for record in records:
            clip = ClipRecord(
                video_id,
                record.exp_id,
                record.obj_id,
                record.expression,
                tuple(frame_ids),
                tuple(frame_paths),
                tuple(mask_paths),
            )
            if record.obj_id not in first_ids:  # DAVIS objects appear in frame 0; else scan all
                self._check_object(clip)
            self.records.append(clip)
