"""Ref-YouTube-VOS: YouTube-VOS videos with referring expressions (Seo et al. 2020)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from rvoslib._paths import check_object_id, check_path_component
from rvoslib.data.davis import ClipRecord, ExpressionClipDataset, Transform
from rvoslib.data.expressions import load_meta_expressions
from rvoslib.data.io import IMAGE_EXTENSIONS

__all__ = ["YTVOS_LAYOUT", "RefYouTubeVOSDataset"]

YTVOS_LAYOUT = """expected the Ref-YouTube-VOS layout:
  <root>/train/JPEGImages/<video>/00000.jpg ...
  <root>/train/Annotations/<video>/00000.png ...    (palette PNGs, value = object id)
  <root>/<split>/meta.json                          (optional: the objects of each video)
  <root>/valid/JPEGImages/<video>/00000.jpg ...     (no annotations, except in the Ref-DAVIS17
  <root>/valid/Annotations/<video>/00000.png ...     layout of ReferFormer's conversion)
  <root>/meta_expressions/<split>/meta_expressions.json"""

SPLITS = ("train", "valid", "test")


def _images_by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    return {
        path.stem: path
        for path in folder.iterdir()
        if path.suffix.lower() in suffixes and not path.name.startswith(".")
    }


class RefYouTubeVOSDataset(ExpressionClipDataset):
    """Ref-YouTube-VOS in its official layout (see ``YTVOS_LAYOUT``).

    Frames come from the ``frames`` list of ``meta_expressions.json`` (or the folder when
    that list is empty). A split has masks when it is ``train``, or when it has an
    ``Annotations`` folder and every expression names its object (``obj_id``): the ``valid``
    split of the Ref-DAVIS17 layout written by ReferFormer's
    ``tools/data/convert_davis_to_ytvos.py``. Frames with an annotation PNG of the same name
    are marked ``valid`` (YouTube-VOS annotates every 5th frame); the others get an all-zero
    mask with ``valid`` False. Ref-YouTube-VOS ``valid``/``test`` have no masks: every item has
    zero masks, ``valid`` all False and ``obj_id`` -1 (inference only).

    Args:
        root: The Ref-YouTube-VOS folder.
        split: ``"train"``, ``"valid"`` or ``"test"``.
        num_frames: None for whole videos, an int for sampled clips.
        sampling: ``"random"``, ``"strided"`` or ``"uniform"`` (see ``sample_indices``).
        stride: Frame step of ``"strided"`` sampling.
        annotated_only: Use only annotated frames (splits with masks).
        transform: A clip transform on the numpy sample (None keeps the original size).
        on_error: ``"raise"`` or ``"skip"`` (warn and return None) for unreadable frames.

    Attributes:
        has_masks: Whether the split's items carry ground truth.

    Raises:
        FileNotFoundError: a missing root, meta file, frame folder or listed frame, or a
            video's annotation folder in a split with masks.
        ValueError: an annotation without a frame, a video without annotations, an
            expression naming an object absent from the annotations (checked from
            ``<split>/meta.json`` at construction, else from the PNGs when the item is loaded),
            an empty expression, or a video name, expression id or frame name (in
            ``meta_expressions.json`` or ``meta.json``) that is not a plain file name (``..``,
            a separator, absolute, empty, NUL; the file and the entry are named).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        num_frames: int | None = None,
        sampling: str = "random",
        stride: int = 1,
        annotated_only: bool = False,
        transform: Transform | None = None,
        on_error: str = "raise",
    ) -> None:
        super().__init__(num_frames, sampling, stride, transform, on_error)
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.root = Path(root)
        self.split = split
        self.annotated_only = annotated_only
        if not self.root.is_dir():
            raise FileNotFoundError(f"Ref-YouTube-VOS root not found: {self.root}\n{YTVOS_LAYOUT}")
        meta_path = self.root / "meta_expressions" / split / "meta_expressions.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"expression file not found: {meta_path}\n{YTVOS_LAYOUT}")
        frame_root = self.root / split / "JPEGImages"
        if not frame_root.is_dir():
            raise FileNotFoundError(f"frame folder not found: {frame_root}\n{YTVOS_LAYOUT}")
        records, frame_lists = load_meta_expressions(meta_path, require_obj_id=split == "train")
        has_masks = split == "train" or (
            (self.root / split / "Annotations").is_dir()
            and all(record.obj_id >= 0 for record in records)
        )
        self.has_masks = has_masks
        objects = self._read_objects() if has_masks else None
        self.check_objects_on_load = has_masks and objects is None
        videos: dict[str, tuple] = {}
        for record in records:
            if record.video_id not in videos:
                videos[record.video_id] = self._video_files(
                    record.video_id, frame_lists.get(record.video_id, []), has_masks
                )
            frame_ids, frame_paths, mask_paths = videos[record.video_id]
            clip = ClipRecord(
                record.video_id,
                record.exp_id,
                record.obj_id,
                record.expression,
                frame_ids,
                frame_paths,
                mask_paths,
            )
            if objects is not None and record.obj_id not in objects.get(record.video_id, ()):
                raise ValueError(
                    f"expression {record.exp_id} ({record.expression!r}) of video "
                    f"{record.video_id!r} names object {record.obj_id}, which is absent from "
                    f"the annotations (objects in {self.split}/meta.json: "
                    f"{sorted(objects.get(record.video_id, ()))})"
                )
            self.records.append(clip)

    def _read_objects(self) -> dict[str, set[int]] | None:
        path = self.root / self.split / "meta.json"
        if not path.is_file():
            return None
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"cannot parse {path} as JSON: {error}") from error
        if not isinstance(meta, dict) or not isinstance(meta.get("videos", {}), dict):
            raise ValueError(f'{path} must hold {{"videos": {{video_id: {{"objects": ...}}}}}}')
        objects: dict[str, set[int]] = {}
        for video_id, video in meta.get("videos", {}).items():
            check_path_component(video_id, "video name", path)
            listed = video.get("objects", {}) if isinstance(video, dict) else None
            if not isinstance(listed, dict):
                raise ValueError(f"{path}: video {video_id!r} has no 'objects' mapping")
            what = f"object id of video {video_id!r}"
            objects[video_id] = {check_object_id(obj_id, what, path) for obj_id in listed}
        return objects

    def _video_files(self, video_id: str, listed: list[str], has_masks: bool) -> tuple:
        frame_dir = self.root / self.split / "JPEGImages" / video_id
        if not frame_dir.is_dir():
            raise FileNotFoundError(f"video folder not found: {frame_dir}\n{YTVOS_LAYOUT}")
        frames = _images_by_stem(frame_dir, IMAGE_EXTENSIONS)
        frame_ids = list(listed) if listed else sorted(frames)
        missing = [frame_id for frame_id in frame_ids if frame_id not in frames]
        if missing:
            raise FileNotFoundError(
                f"video {video_id!r}: frame {missing[0]} listed in meta_expressions.json not "
                f"found in {frame_dir} ({len(missing)} missing)"
            )
        if not frame_ids:
            raise ValueError(f"video {video_id!r}: no frames in {frame_dir}")
        masks: dict[str, Path] = {}
        if has_masks:
            mask_dir = self.root / self.split / "Annotations" / video_id
            if not mask_dir.is_dir():
                raise FileNotFoundError(f"annotation folder not found: {mask_dir}\n{YTVOS_LAYOUT}")
            masks = _images_by_stem(mask_dir, (".png",))
            orphans = sorted(set(masks) - set(frame_ids))
            if orphans:
                raise ValueError(
                    f"video {video_id!r}: annotation {mask_dir / (orphans[0] + '.png')} has no "
                    f"frame ({len(orphans)} annotations without frames)"
                )
            if not masks:
                raise ValueError(f"video {video_id!r}: no annotation PNGs in {mask_dir}")
            if self.annotated_only:
                frame_ids = [frame_id for frame_id in frame_ids if frame_id in masks]
        return (
            tuple(frame_ids),
            tuple(frames[frame_id] for frame_id in frame_ids),
            tuple(masks.get(frame_id) for frame_id in frame_ids),
        )
