"""Tiny A2D-Sentences and JHMDB-Sentences trees in the released file formats.

A2D: ``Release/videoset.csv`` (9 columns, no header), ``Release/clips320H/<video>.mp4``
(OpenCV ``mp4v``), ``text_annotations/a2d_annotation.txt`` (csv with header, optionally LoSh's
4th column), ``a2d_missed_videos.txt`` and ``a2d_annotation_with_instances/<video>/<frame>.h5``
written like MATLAB v7.3 files (``reMask`` transposed, ``(W, H)`` for a single instance,
``instance`` as a column of doubles, ``reBBox`` (4, M)). JHMDB: ``Rename_Images`` PNGs,
``puppet_mask.mat`` (``part_mask`` (H, W, T)) and ``jhmdb_annotation.txt``.

Every frame ``k`` (0-based) of a video is one flat grey level, ``frame_level(k)``, so that a
decoded frame tells which frame it is despite lossy compression (:func:`frame_number`).
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import h5py
import numpy as np
import scipy.io
from PIL import Image

HEIGHT, WIDTH = 24, 40

# video id -> (split, number of frames)
A2D_VIDEOS = {"vidA": (0, 10), "vidB": (1, 6), "vidM": (0, 5), "vidC": (1, 7)}
A2D_MISSED = ["vidM"]
# (video, frame number 1-based) -> instance ids annotated there
A2D_FRAMES = {
    ("vidA", 3): [1, 2],
    ("vidA", 8): [2],
    ("vidB", 1): [1, 3, 4],
    ("vidB", 6): [3],
    ("vidC", 4): [5],
    ("vidM", 2): [1],
}
# rows of a2d_annotation.txt: video_id, instance_id, query, short query
A2D_ROWS = [
    ("vidA", "1", "The Man on the  LEFT is running", "the man on the left"),
    ("vidA", "2", "a dog jumping right", "a dog"),
    ("vidA", "1 (copy)", "a broken row", "broken"),
    ("vidB", "3", "a white car rolling", "a white car"),
    ("vidB", "4", "a bird on the right flying", "a bird on the right"),
    ("vidM", "1", "a video missed by the text annotations", "a video"),
    ("vidC", "5", "a ball rolling, left to right", "a ball"),
]


def frame_level(index: int) -> int:
    """Grey level of frame ``index`` (0-based)."""
    return 10 + 20 * index


def frame_number(frame: np.ndarray) -> int:
    """Which frame (0-based) a decoded ``(H, W, 3)`` or ``(3, H, W)`` frame is."""
    return round((float(np.mean(frame)) - 10) / 20)


def instance_mask(video_id: str, number: int, instance_id: int) -> np.ndarray:
    """A distinct (H, W) bool rectangle for each (video, frame, instance)."""
    mask = np.zeros((HEIGHT, WIDTH), bool)
    top = (3 * instance_id + number) % (HEIGHT - 6)
    left = (7 * instance_id + 2 * number + len(video_id)) % (WIDTH - 10)
    mask[top : top + 4 + instance_id, left : left + 3 + 2 * instance_id] = True
    return mask


def write_mp4(path: Path, num_frames: int, height: int = HEIGHT, width: int = WIDTH) -> None:
    """An mp4 (``mp4v``) whose frame k is the flat grey ``frame_level(k)``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (width, height))
    if not writer.isOpened():
        raise RuntimeError("OpenCV cannot write mp4v files here")
    for index in range(num_frames):
        writer.write(np.full((height, width, 3), frame_level(index), np.uint8))
    writer.release()


def write_a2d_h5(
    path: Path, masks: np.ndarray, instance_ids: list[int], flat_ids: bool = False
) -> None:
    """An A2D annotation file: ``masks`` (M, H, W) stored MATLAB-style as (M, W, H)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    masks = np.asarray(masks, np.uint8).transpose(0, 2, 1)
    boxes = []
    for mask in masks.transpose(0, 2, 1):
        ys, xs = np.nonzero(mask)
        boxes.append(
            [xs.min() + 1, ys.min() + 1, xs.max() + 1, ys.max() + 1] if xs.size else [0] * 4
        )
    ids = np.asarray(instance_ids, np.float64)
    with h5py.File(path, "w") as file:
        file["reMask"] = masks[0] if len(masks) == 1 else masks
        file["instance"] = ids if flat_ids else ids[:, None]
        file["reBBox"] = np.asarray(boxes, np.float64).T


def make_a2d(
    root: Path,
    short_column: bool = False,
    frames: dict | None = None,
    rows: list | None = None,
) -> Path:
    """Write the A2D-Sentences tree described by the module constants under ``root``."""
    frames = A2D_FRAMES if frames is None else frames
    rows = A2D_ROWS if rows is None else rows
    release = root / "Release"
    release.mkdir(parents=True)
    with (release / "videoset.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        for video_id, (split, count) in A2D_VIDEOS.items():
            writer.writerow([video_id, "label", 0, 1, HEIGHT, WIDTH, count, 2, split])
    for video_id, (_, count) in A2D_VIDEOS.items():
        write_mp4(release / "clips320H" / f"{video_id}.mp4", count)
    text = root / "text_annotations"
    text.mkdir()
    with (text / "a2d_annotation.txt").open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["video_id", "instance_id", "query"] + (["short"] if short_column else []))
        for row in rows:
            writer.writerow(list(row) if short_column else list(row[:3]))
    (text / "a2d_missed_videos.txt").write_text("\n".join(A2D_MISSED) + "\n")
    for index, ((video_id, number), ids) in enumerate(frames.items()):
        masks = np.stack([instance_mask(video_id, number, i) for i in ids])
        path = text / "a2d_annotation_with_instances" / video_id / f"{number:05d}.h5"
        write_a2d_h5(path, masks, ids, flat_ids=index % 2 == 1)
    return root


# JHMDB: video -> (class, frames, masks); vid2 has fewer masks than frames
JHMDB_VIDEOS = {"vid1": ("pullup", 9, 9), "vid2": ("wave", 8, 6)}
JHMDB_ROWS = [("vid1", "Man in black pulling up"), ("vid2", "a girl waving her left hand")]


def puppet_mask(video_id: str, number: int) -> np.ndarray:
    """A distinct (H, W) bool mask for each (video, 1-based frame)."""
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[number : number + 5, 2 * number + len(video_id) : 2 * number + len(video_id) + 6] = True
    return mask


def make_jhmdb(root: Path) -> Path:
    """Write the JHMDB-Sentences tree described by the module constants under ``root``."""
    for video_id, (action, count, mask_count) in JHMDB_VIDEOS.items():
        folder = root / "Rename_Images" / action / video_id
        folder.mkdir(parents=True)
        for index in range(count):
            frame = np.full((HEIGHT, WIDTH, 3), frame_level(index), np.uint8)
            Image.fromarray(frame).save(folder / f"{index + 1:05d}.png")
        masks = np.stack([puppet_mask(video_id, n) for n in range(1, mask_count + 1)], -1)
        mask_dir = root / "puppet_mask" / action / video_id
        mask_dir.mkdir(parents=True)
        scipy.io.savemat(str(mask_dir / "puppet_mask.mat"), {"part_mask": masks.astype(np.uint8)})
    with (root / "jhmdb_annotation.txt").open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["video_id", "query"])
        writer.writerows(JHMDB_ROWS)
    return root
