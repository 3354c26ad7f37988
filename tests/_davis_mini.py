"""Helpers for the data tests: find davis-mini, write tiny dataset layouts."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rvoslib.data.io import write_frame, write_mask

REPO_ROOT = Path(__file__).resolve().parents[1]


def davis_mini_path() -> Path | None:
    """``$RVOSLIB_DAVIS_MINI`` or ``<repo>/../shared/data/davis-mini``, None if absent."""
    candidate = os.environ.get("RVOSLIB_DAVIS_MINI")
    path = Path(candidate) if candidate else REPO_ROOT.parent / "shared" / "data" / "davis-mini"
    return path if (path / "JPEGImages").is_dir() else None


def require_davis_mini() -> Path:
    """The davis-mini root, or skip the calling test with the reason."""
    path = davis_mini_path()
    if path is None:
        pytest.skip(
            "davis-mini not found: set RVOSLIB_DAVIS_MINI or place ../shared/data/davis-mini"
        )
    return path


# Official davis2017-evaluation values for OSVOS on davis-mini (its README): (J, F).
OFFICIAL_SEMI = {"blackswan": (0.943020011, 0.974096479), "car-shadow": (0.928401595, 0.917407183)}
OFFICIAL_ALL = {"blackswan": (0.943148497, 0.974590762), "car-shadow": (0.923674832, 0.913106894)}


def load_osvos(sequence: str) -> tuple[np.ndarray, np.ndarray]:
    """(gt, pred) ``(T, H, W)`` bool masks of object 1 of a davis-mini sequence (or skip)."""
    root = require_davis_mini()

    def read(folder: Path) -> np.ndarray:
        return np.stack([np.array(Image.open(p)) for p in sorted(folder.glob("*.png"))]) == 1

    return read(root / "Annotations/480p" / sequence), read(root / "predictions/osvos" / sequence)


def copy_davis_subset(source: Path, target: Path, video: str, num_frames: int) -> Path:
    """Copy the first ``num_frames`` frames of one davis-mini video, with its expressions."""
    for kind, suffix in (("JPEGImages", ".jpg"), ("Annotations", ".png")):
        folder = target / kind / "480p" / video
        folder.mkdir(parents=True)
        for index in range(num_frames):
            name = f"{index:05d}{suffix}"
            shutil.copy(source / kind / "480p" / video / name, folder / name)
    (target / "ImageSets" / "2017").mkdir(parents=True)
    (target / "ImageSets" / "2017" / "val.txt").write_text(video + "\n")
    meta = json.loads((source / "meta_expressions.json").read_text())
    meta["videos"] = {video: meta["videos"][video]}
    (target / "meta_expressions.json").write_text(json.dumps(meta))
    return target


def toy_video(
    num_frames: int, height: int, width: int, num_objects: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Random frames ``(T, H, W, 3)`` uint8 and object-id maps ``(T, H, W)`` with
    ``num_objects`` moving rectangles (ids 1..num_objects)."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 255, (num_frames, height, width, 3), dtype=np.uint8)
    labels = np.zeros((num_frames, height, width), np.uint8)
    for obj_id in range(1, num_objects + 1):
        top, left = int(rng.integers(0, height // 2)), int(rng.integers(0, width // 2))
        for t in range(num_frames):
            labels[t, top + t % 3 : top + t % 3 + height // 3, left : left + width // 3] = obj_id
    return frames, labels


def write_toy_davis(root: Path, videos: dict[str, tuple[np.ndarray, np.ndarray]], split: str):
    """Write videos ``{name: (frames, labels)}`` in the DAVIS-2017 layout (PNG frames)."""
    for name, (frames, labels) in videos.items():
        for t, (frame, label) in enumerate(zip(frames, labels)):
            write_frame(root / "JPEGImages" / "480p" / name / f"{t:05d}.png", frame)
            write_mask(root / "Annotations" / "480p" / name / f"{t:05d}.png", label)
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / f"{split}.txt").write_text("\n".join(videos) + "\n")
