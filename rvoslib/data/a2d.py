"""A2D-Sentences (Gavrilyuk et al. 2018): actor-action videos with referring expressions.

Also holds :class:`AnnotatedFrameDataset`, the base shared with JHMDB-Sentences: one item per
(video, annotated frame, expression), a window of frames around the annotated frame, and every
instance annotated in that frame for set-prediction losses.

The split, the missed videos and the window follow MTTR's released loader
(``datasets/a2d_sentences/a2d_sentences_dataset.py``): ``Release/videoset.csv`` column 9 is
the split (0 train, 1 test); videos listed in ``a2d_missed_videos.txt`` are left out; each
(expression, frame) pair where the referred instance is annotated is one sample (frames where it
is absent are skipped, as CMPC-V and MTTR do); rows whose instance id is not an integer (the
release has one, ``"1 (copy)"``) are dropped with a warning.
"""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path

import numpy as np

from rvoslib._paths import check_path_component
from rvoslib.data.frame_query import AnnotatedFrameDataset, FrameQueryRecord, Transform
from rvoslib.data.io import ImageReadError

__all__ = [
    "A2D_LAYOUT",
    "A2D_SPLITS",
    "A2DSentencesDataset",
    "read_a2d_instances",
    "read_video_window",
    "window_indices",
]

A2D_LAYOUT = """expected the A2D-Sentences layout:
  <root>/Release/videoset.csv                      (no header; col 1 video id, col 9 split 0/1)
  <root>/Release/clips320H/<video>.mp4 ...         (or Release/CLIPS320/)
  <root>/text_annotations/a2d_annotation.txt       (csv: video_id,instance_id,query[,short])
  <root>/text_annotations/a2d_missed_videos.txt    (one video id per line)
  <root>/text_annotations/a2d_annotation_with_instances/<video>/00001.h5 ...
      (HDF5: 'instance' ids, 'reMask' (M, W, H) or (W, H) for one instance)"""

A2D_SPLITS = {"train": 0, "test": 1}
VIDEO_DIRS = ("Release/clips320H", "Release/CLIPS320", "Release/clips320")


def _h5py():
    try:
        import h5py
    except ImportError as error:
        raise ImportError(
            "reading A2D-Sentences annotations needs h5py: pip install 'rvoslib[a2d]'"
        ) from error
    return h5py


def window_indices(center: int, num_frames: int, length: int) -> list[int]:
    """0-based indices of a window of ``num_frames`` frames, ``center`` at slot ``num_frames // 2``.

    The window runs from ``center - num_frames // 2`` to ``center + (num_frames + 1) // 2``
    (exclusive), as MTTR; indices outside the video repeat its first or last frame.

    Example:
        >>> window_indices(1, 6, 10)
        [0, 0, 0, 1, 2, 3]
    """
    start = center - num_frames // 2
    return [min(max(i, 0), length - 1) for i in range(start, start + num_frames)]


def read_video_window(
    path: str | os.PathLike, center: int, num_frames: int
) -> tuple[np.ndarray, list[int]]:
    """Decode the window of :func:`window_indices` around frame ``center`` of a video file.

    Frames are decoded in order with OpenCV (seeking in mp4 is not frame-exact), stopping after
    the last needed frame; only the window is kept in memory.

    Args:
        path: The video file.
        center: 0-based index of the annotated frame.
        num_frames: Window length.

    Returns:
        ``(frames (T, H, W, 3) uint8 RGB, indices)``, the 0-based frame index of each slot.

    Raises:
        FileNotFoundError: the file does not exist.
        ImageReadError: OpenCV cannot open it, or it has no frame ``center``.
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video file not found: {path}")
    start = max(center - num_frames // 2, 0)
    stop = center + (num_frames + 1) // 2
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ImageReadError(
            path, "not a video OpenCV can decode (corrupt or unsupported)", kind="video"
        )
    kept: dict[int, np.ndarray] = {}
    count = 0
    try:
        while count < stop:
            if count < start:
                if not capture.grab():
                    break
            else:
                ok, frame = capture.read()
                if not ok or frame is None:
                    break
                kept[count] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            count += 1
    finally:
        capture.release()
    if center >= count:
        raise ImageReadError(
            path,
            f"annotated frame {center + 1} (1-based) is beyond the video's {count} frames",
            kind="video",
        )
    indices = window_indices(center, num_frames, count)
    sizes = {kept[i].shape for i in set(indices)}
    if len(sizes) > 1:
        raise ImageReadError(
            path, f"frame sizes change within the window: {sorted(sizes)}", kind="video"
        )
    return np.stack([kept[i] for i in indices]), indices


def read_a2d_instances(path: str | os.PathLike) -> tuple[np.ndarray, list[int]]:
    """Read one A2D annotation file: every instance's mask and id.

    The files are MATLAB v7.3 (HDF5), so arrays appear transposed: ``reMask`` is ``(M, W, H)``,
    or ``(W, H)`` for a single instance; it is returned as ``(M, H, W)``.

    Returns:
        ``(masks (M, H, W) bool, instance_ids)``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it cannot be read, lacks ``instance`` or ``reMask``, or their sizes differ.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"A2D annotation file not found: {path}")
    h5py = _h5py()
    try:
        with h5py.File(path, "r") as file:
            missing = [key for key in ("instance", "reMask") if key not in file]
            if missing:
                raise ValueError(f"A2D annotation {path} lacks {missing}; has {sorted(file)}")
            ids = np.asarray(file["instance"]).reshape(-1)
            masks = np.asarray(file["reMask"])
    except OSError as error:
        raise ValueError(f"cannot read A2D annotation {path} as HDF5: {error}") from error
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3 or masks.shape[0] != ids.size:
        raise ValueError(
            f"A2D annotation {path}: 'reMask' must be (M, W, H) (or (W, H) for one instance) "
            f"with M = {ids.size} instances, got {masks.shape}"
        )
    return np.ascontiguousarray(masks.transpose(0, 2, 1) != 0), [int(i) for i in ids]


def _read_instance_ids(path: Path) -> list[int]:
    h5py = _h5py()
    try:
        with h5py.File(path, "r") as file:
            if "instance" not in file:
                raise ValueError(f"A2D annotation {path} lacks 'instance'; has {sorted(file)}")
            return [int(i) for i in np.asarray(file["instance"]).reshape(-1)]
    except OSError as error:
        raise ValueError(f"cannot read A2D annotation {path} as HDF5: {error}") from error


def _read_csv(path: Path, what: str) -> list[list[str]]:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}\n{A2D_LAYOUT}")
    with path.open(newline="", encoding="utf-8-sig") as file:
        return list(csv.reader(file))


class A2DSentencesDataset(AnnotatedFrameDataset):
    """A2D-Sentences in its released layout (see ``A2D_LAYOUT``).

    Each item is one (video, annotated frame, expression): ``num_frames`` frames decoded from
    the mp4 around the annotated frame (slot ``num_frames // 2``; edges repeat the first/last
    frame), ``masks`` holding the referred instance in that slot only, ``valid`` True there
    only, and ``instance_masks`` ``(M, T, H, W)`` bool with ``referred`` ``(M,)`` bool for all
    M instances annotated in that frame; see :class:`AnnotatedFrameDataset` for every key.
    With LoSh's 4-column ``a2d_annotation.txt`` the 4th column is given as
    ``short_expression``.

    Args:
        root: The A2D-Sentences folder.
        split: ``"train"`` (videoset split 0) or ``"test"`` (split 1).
        num_frames: Window length (MTTR: 8 or 10).
        transform: A clip transform on the numpy sample; MTTR's are
            ``ClipTransform(hflip_p=0.5, shorter_side=320, max_size=576)`` for training and
            ``eval_transform(320, max_size=576)`` for testing. None keeps the original size.
        video_dir: Folder of the mp4 files, relative to ``root`` or absolute; None takes the
            first existing of ``Release/clips320H``, ``Release/CLIPS320``, ``Release/clips320``.
        lowercase: Lower-case the expressions (MTTR does).
        on_missing_instance: What to do with an expression whose instance is annotated in none
            of its video's frames (it gives no sample): ``"warn"`` (MTTR drops them silently)
            or ``"raise"``.
        on_error: ``"raise"`` or ``"skip"`` (warn and return None) for undecodable videos.

    Raises:
        FileNotFoundError: a missing root, annotation file, annotation folder or mp4.
        ValueError: malformed csv rows, a video id in ``videoset.csv`` that is not a plain
            file name (``..``, a separator, absolute, empty, NUL), unreadable ``.h5`` files,
            an instance absent from its frame's ``.h5`` when the item is loaded, or
            (``on_missing_instance="raise"``) from every frame of its video.

    Example:
        >>> dataset = A2DSentencesDataset("a2d_sentences", split="test")  # doctest: +SKIP
        >>> item = dataset[0]  # doctest: +SKIP
        >>> item["frames"].shape[0], item["valid"].nonzero().item()  # doctest: +SKIP
        (8, 4)
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        num_frames: int = 8,
        transform: Transform | None = None,
        video_dir: str | os.PathLike | None = None,
        lowercase: bool = True,
        on_missing_instance: str = "warn",
        on_error: str = "raise",
    ) -> None:
        super().__init__(num_frames, transform, lowercase, on_error)
        if split not in A2D_SPLITS:
            raise ValueError(f"split must be one of {tuple(A2D_SPLITS)}, got {split!r}")
        if on_missing_instance not in ("warn", "raise"):
            raise ValueError(
                f"on_missing_instance must be 'warn' or 'raise', got {on_missing_instance!r}"
            )
        self.root = Path(root)
        self.split = split
        if not self.root.is_dir():
            raise FileNotFoundError(f"A2D-Sentences root not found: {self.root}\n{A2D_LAYOUT}")
        self.video_dir = self._find_video_dir(video_dir)
        self.mask_dir = self.root / "text_annotations" / "a2d_annotation_with_instances"
        if not self.mask_dir.is_dir():
            raise FileNotFoundError(f"annotation folder not found: {self.mask_dir}\n{A2D_LAYOUT}")
        videos = self._split_videos()
        annotations = self._read_annotations(videos)
        frames_by_video: dict[str, dict[int, list[int]]] = {}
        missing = []
        for exp_id, video_id, instance_id, expression, short in annotations:
            if video_id not in frames_by_video:
                frames_by_video[video_id] = self._scan_video(video_id)
            frames = frames_by_video[video_id]
            found = [number for number, ids in frames.items() if instance_id in ids]
            if not found:
                missing.append((exp_id, video_id, instance_id, sorted(frames)))
            for number in found:
                self.records.append(
                    FrameQueryRecord(
                        video_id, number, instance_id, expression, exp_id, short,
                        f"v_{video_id}_f_{number}_i_{instance_id}",
                    )
                )  # fmt: skip
        if missing:
            exp_id, video_id, instance_id, numbers = missing[0]
            message = (
                f"{len(missing)} expression(s) name an instance annotated in no frame of their "
                f"video and give no sample; first: expression {exp_id} of video {video_id!r}, "
                f"instance {instance_id}, absent from frames {numbers} in "
                f"{self.mask_dir / video_id}"
            )
            if on_missing_instance == "raise":
                raise ValueError(message)
            warnings.warn(message, RuntimeWarning, stacklevel=2)
        for video_id in frames_by_video:
            path = self._video_path(video_id)
            if not path.is_file():
                raise FileNotFoundError(f"video file not found: {path}\n{A2D_LAYOUT}")

    def _find_video_dir(self, video_dir: str | os.PathLike | None) -> Path:
        if video_dir is not None:
            folder = self.root / video_dir
            if not folder.is_dir():
                raise FileNotFoundError(f"video_dir not found: {folder}\n{A2D_LAYOUT}")
            return folder
        for name in VIDEO_DIRS:
            if (self.root / name).is_dir():
                return self.root / name
        tried = [str(self.root / name) for name in VIDEO_DIRS]
        raise FileNotFoundError(f"no video folder found; tried {tried}\n{A2D_LAYOUT}")

    def _video_path(self, video_id: str) -> Path:
        return self.video_dir / f"{video_id}.mp4"

    def _split_videos(self) -> set[str]:
        path = self.root / "Release" / "videoset.csv"
        code = A2D_SPLITS[self.split]
        videos = set()
        for line, row in enumerate(_read_csv(path, "video list"), start=1):
            if not row:
                continue
            if len(row) < 9:
                raise ValueError(
                    f"{path}, line {line}: expected 9 columns (video id ... split), got {len(row)}"
                )
            try:
                subset = int(float(row[8]))
            except ValueError:
                raise ValueError(
                    f"{path}, line {line}: split column must be 0 or 1, got {row[8]!r}"
                ) from None
            if subset == code:
                videos.add(check_path_component(row[0].strip(), "video id", f"{path}, line {line}"))
        missed_path = self.root / "text_annotations" / "a2d_missed_videos.txt"
        if not missed_path.is_file():
            raise FileNotFoundError(f"missed-video list not found: {missed_path}\n{A2D_LAYOUT}")
        missed = {line.strip() for line in missed_path.read_text().splitlines()}
        return videos - missed

    def _read_annotations(self, videos: set[str]) -> list[tuple]:
        path = self.root / "text_annotations" / "a2d_annotation.txt"
        rows = _read_csv(path, "expression file")
        kept, dropped = [], []
        for line, row in enumerate(rows[1:], start=2):  # the first line is the header
            if not row:
                continue
            if len(row) < 3:
                raise ValueError(
                    f"{path}, line {line}: expected video_id,instance_id,query, got {row}"
                )
            video_id = row[0].strip()
            if video_id not in videos:
                continue
            expression = self.clean(row[2])
            if not expression:
                raise ValueError(f"{path}, line {line}: empty expression for video {video_id!r}")
            try:
                instance_id = int(row[1])
            except ValueError:
                dropped.append((line, row[1]))
                continue
            short = self.clean(row[3]) if len(row) > 3 else None
            kept.append((str(line - 2), video_id, instance_id, expression, short))
        if dropped:
            warnings.warn(
                f"dropped {len(dropped)} row(s) of {path} whose instance_id is not an integer "
                f"(as MTTR): {dropped[:5]}",
                RuntimeWarning,
                stacklevel=3,
            )
        return kept

    def _scan_video(self, video_id: str) -> dict[int, list[int]]:
        folder = self.mask_dir / video_id
        if not folder.is_dir():
            raise FileNotFoundError(
                f"annotation folder of video {video_id!r} not found: {folder}\n{A2D_LAYOUT}"
            )
        frames = {}
        for path in sorted(folder.glob("*.h5")):
            if not path.stem.isdigit():
                raise ValueError(f"A2D annotation {path}: name must be the frame number (00001.h5)")
            frames[int(path.stem)] = _read_instance_ids(path)
        return frames

    def read_frames(self, record: FrameQueryRecord) -> tuple[np.ndarray, list[str]]:
        frames, indices = read_video_window(
            self._video_path(record.video_id), record.frame_number - 1, self.num_frames
        )
        return frames, [f"{i + 1:05d}" for i in indices]

    def read_instances(self, record: FrameQueryRecord) -> tuple[np.ndarray, list[int], int]:
        path = self.mask_dir / record.video_id / f"{record.frame_number:05d}.h5"
        masks, ids = read_a2d_instances(path)
        if record.instance_id not in ids:
            raise ValueError(
                f"video {record.video_id!r}, frame {record.frame_number:05d}: instance "
                f"{record.instance_id} is absent from {path} (instances there: {ids})"
            )
        return masks, ids, ids.index(record.instance_id)
