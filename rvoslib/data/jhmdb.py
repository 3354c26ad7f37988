"""JHMDB-Sentences (Gavrilyuk et al. 2018): JHMDB videos with one referring expression each.

Evaluation only, as in MTTR (``datasets/jhmdb_sentences/jhmdb_sentences_dataset.py``): a video's
usable frames are its first ``min(#frames, #masks)`` frames (the last frames of some videos have
no puppet mask); from them MTTR draws 3 frames per expression uniformly at random, and each
drawn frame is one sample, with a window of frames around it taken from the usable frames. MTTR
ships the frames it drew (``jhmdb_sentences_samples_metadata.json``); pass that file as
``samples_file`` to evaluate on exactly those frames. Without it, frames are drawn with
:class:`random.Random` (``seed``), which does not reproduce MTTR's draw.
"""

from __future__ import annotations

import csv
import json
import os
import random
from pathlib import Path

import numpy as np

from rvoslib._paths import check_path_component
from rvoslib.data.a2d import window_indices
from rvoslib.data.frame_query import AnnotatedFrameDataset, FrameQueryRecord, Transform
from rvoslib.data.io import read_frame

__all__ = ["JHMDB_LAYOUT", "JHMDBSentencesDataset", "read_puppet_masks"]

JHMDB_LAYOUT = """expected the JHMDB-Sentences layout:
  <root>/Rename_Images/<class>/<video>/00001.png ...
  <root>/puppet_mask/<class>/<video>/puppet_mask.mat   ('part_mask' (H, W, T))
  <root>/jhmdb_annotation.txt                          (csv: video_id,query)"""


def read_puppet_masks(path: str | os.PathLike) -> np.ndarray:
    """Read a JHMDB ``puppet_mask.mat``: ``part_mask`` ``(H, W, T)`` -> ``(T, H, W)`` bool.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it cannot be read or has no 3-dimensional ``part_mask``.
    """
    import scipy.io
    from scipy.io.matlab import MatReadError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"puppet mask file not found: {path}")
    try:
        content = scipy.io.loadmat(str(path))
    except (OSError, ValueError, MatReadError) as error:
        raise ValueError(f"cannot read {path} as a MATLAB file: {error}") from error
    masks = content.get("part_mask")
    if masks is None or np.ndim(masks) != 3:
        shape = None if masks is None else np.shape(masks)
        raise ValueError(f"{path}: 'part_mask' must be an (H, W, T) array, got {shape}")
    return np.ascontiguousarray(np.asarray(masks).transpose(2, 0, 1) != 0)


def _mask_count(path: Path) -> int:
    """Number of frames in a ``puppet_mask.mat``, read from its header (no mask decoding)."""
    import scipy.io
    from scipy.io.matlab import MatReadError

    try:
        shapes = {name: shape for name, shape, _ in scipy.io.whosmat(str(path))}
    except (OSError, ValueError, MatReadError) as error:
        raise ValueError(f"cannot read {path} as a MATLAB file: {error}") from error
    shape = shapes.get("part_mask")
    if shape is None or len(shape) != 3:
        raise ValueError(f"{path}: 'part_mask' must be an (H, W, T) array, got {shape}")
    return int(shape[2])


class JHMDBSentencesDataset(AnnotatedFrameDataset):
    """JHMDB-Sentences for evaluation, in its released layout (see ``JHMDB_LAYOUT``).

    Items follow :class:`~rvoslib.data.frame_query.AnnotatedFrameDataset`: a window of
    ``num_frames`` frames around the evaluated frame (slot ``num_frames // 2``), the puppet
    mask there as ``masks`` and as the single instance of ``instance_masks`` (``obj_id`` 1).

    Args:
        root: The JHMDB-Sentences folder.
        num_frames: Window length (MTTR: 8 or 10).
        frames_per_video: Frames drawn per expression (MTTR: 3); None evaluates every usable
            frame. Ignored with ``samples_file``.
        seed: Seed of the draw.
        samples_file: MTTR's ``jhmdb_sentences_samples_metadata.json`` (entries ``[video_id,
            frame_path, mask_path, total_frames, query]``; only the video id, the frame
            number in the frame file's name and the query are used).
        transform: A clip transform on the numpy sample (e.g. ``eval_transform(320,
            max_size=576)``); None keeps the original size.
        lowercase: Lower-case the expressions (MTTR does).
        on_error: ``"raise"`` or ``"skip"`` (warn and return None) for unreadable frames.

    Raises:
        FileNotFoundError: a missing root, annotation file, frame folder or mask file.
        ValueError: malformed rows, an empty expression, a video id that is not a plain file
            name (``..``, a separator, absolute, empty, NUL), a ``samples_file`` entry naming an
            unknown video or expression or a frame without a mask, or unreadable masks.

    Example:
        >>> dataset = JHMDBSentencesDataset("jhmdb_sentences")  # doctest: +SKIP
        >>> len(dataset)  # 3 frames for each of the 928 expressions  # doctest: +SKIP
        2784
    """

    def __init__(
        self,
        root: str | os.PathLike,
        num_frames: int = 8,
        frames_per_video: int | None = 3,
        seed: int = 42,
        samples_file: str | os.PathLike | None = None,
        transform: Transform | None = None,
        lowercase: bool = True,
        on_error: str = "raise",
    ) -> None:
        super().__init__(num_frames, transform, lowercase, on_error)
        if frames_per_video is not None and (
            not isinstance(frames_per_video, int) or frames_per_video < 1
        ):
            raise ValueError(
                f"frames_per_video must be a positive int or None, got {frames_per_video!r}"
            )
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"JHMDB-Sentences root not found: {self.root}\n{JHMDB_LAYOUT}")
        annotations = self._read_annotations()
        self._frames: dict[str, list[Path]] = {}
        self._masks: dict[str, Path] = {}
        self._locate({video_id for _, video_id, _ in annotations})
        if samples_file is not None:
            chosen = self._read_samples_file(Path(samples_file), annotations)
        else:
            rng = random.Random(seed)
            chosen = []
            for exp_id, video_id, expression in annotations:
                usable = range(1, len(self._frames[video_id]) + 1)
                count = len(usable) if frames_per_video is None else frames_per_video
                numbers = sorted(rng.sample(usable, min(count, len(usable))))
                chosen += [(exp_id, video_id, expression, number) for number in numbers]
        for exp_id, video_id, expression, number in chosen:
            image_id = f"v_{video_id}_f_{number}"
            self.records.append(
                FrameQueryRecord(video_id, number, 1, expression, exp_id, None, image_id)
            )

    def _read_annotations(self) -> list[tuple[str, str, str]]:
        path = self.root / "jhmdb_annotation.txt"
        if not path.is_file():
            raise FileNotFoundError(f"expression file not found: {path}\n{JHMDB_LAYOUT}")
        with path.open(newline="", encoding="utf-8-sig") as file:
            rows = list(csv.reader(file))
        annotations = []
        for line, row in enumerate(rows[1:], start=2):  # the first line is the header
            if not row:
                continue
            if len(row) < 2:
                raise ValueError(f"{path}, line {line}: expected video_id,query, got {row}")
            expression = self.clean(row[1])
            if not expression:
                raise ValueError(f"{path}, line {line}: empty expression for video {row[0]!r}")
            video_id = check_path_component(row[0].strip(), "video id", f"{path}, line {line}")
            annotations.append((str(line - 2), video_id, expression))
        return annotations

    def _locate(self, videos: set[str]) -> None:
        """Find each video's frames and mask file; keep the frames that have a mask."""
        for kind in ("Rename_Images", "puppet_mask"):
            if not (self.root / kind).is_dir():
                raise FileNotFoundError(f"folder not found: {self.root / kind}\n{JHMDB_LAYOUT}")
        frame_dirs = {p.name: p for p in (self.root / "Rename_Images").glob("*/*") if p.is_dir()}
        mask_dirs = {p.name: p for p in (self.root / "puppet_mask").glob("*/*") if p.is_dir()}
        for video_id in sorted(videos):
            if video_id not in frame_dirs:
                raise FileNotFoundError(
                    f"frame folder of video {video_id!r} not found: expected "
                    f"{self.root / 'Rename_Images' / '<class>' / video_id}\n{JHMDB_LAYOUT}"
                )
            mask_path = mask_dirs.get(video_id, self.root / "puppet_mask" / "<class>" / video_id)
            mask_path = mask_path / "puppet_mask.mat"
            if not mask_path.is_file():
                raise FileNotFoundError(
                    f"mask file of video {video_id!r} not found: {mask_path}\n{JHMDB_LAYOUT}"
                )
            frames = sorted(frame_dirs[video_id].glob("*.png"))
            usable = frames[: _mask_count(mask_path)]
            if not usable:
                raise ValueError(
                    f"video {video_id!r}: no frame with a mask in {frame_dirs[video_id]}"
                )
            self._frames[video_id] = usable
            self._masks[video_id] = mask_path

    def _read_samples_file(self, path: Path, annotations: list) -> list[tuple]:
        if not path.is_file():
            raise FileNotFoundError(f"samples_file not found: {path}")
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"cannot parse samples_file {path} as JSON: {error}") from error
        by_text = {(video_id, text): exp_id for exp_id, video_id, text in annotations}
        chosen = []
        for index, entry in enumerate(entries):
            if not isinstance(entry, list) or len(entry) != 5:
                raise ValueError(
                    f"{path}, entry {index}: expected [video_id, frame_path, mask_path, "
                    f"total_frames, query], got {entry!r}"
                )
            video_id, frame_path, expression = str(entry[0]), str(entry[1]), self.clean(entry[4])
            if (video_id, expression) not in by_text:
                raise ValueError(
                    f"{path}, entry {index}: video {video_id!r} with expression {expression!r} "
                    "is not in jhmdb_annotation.txt"
                )
            stem = Path(frame_path).stem
            usable = len(self._frames[video_id])
            if not stem.isdigit() or not 1 <= int(stem) <= usable:
                raise ValueError(
                    f"{path}, entry {index}: frame {frame_path!r} of video {video_id!r} is not "
                    f"one of its {usable} frames with a mask"
                )
            chosen.append((by_text[video_id, expression], video_id, expression, int(stem)))
        return chosen

    def read_frames(self, record: FrameQueryRecord) -> tuple[np.ndarray, list[str]]:
        paths = self._frames[record.video_id]
        indices = window_indices(record.frame_number - 1, self.num_frames, len(paths))
        frames = [read_frame(paths[i]) for i in indices]
        sizes = {frame.shape for frame in frames}
        if len(sizes) > 1:
            raise ValueError(f"video {record.video_id!r}: frame sizes differ: {sorted(sizes)}")
        return np.stack(frames), [paths[i].stem for i in indices]

    def read_instances(self, record: FrameQueryRecord) -> tuple[np.ndarray, list[int], int]:
        masks = read_puppet_masks(self._masks[record.video_id])
        return masks[record.frame_number - 1][None], [1], 0
