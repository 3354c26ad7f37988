"""Writing synthetic videos in the layouts real datasets use."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rvoslib.data.io import write_frame, write_mask

__all__ = ["write_davis_layout"]


def write_davis_layout(
    dataset: Any,
    root: str | os.PathLike,
    split: str = "train",
    frame_format: str = "jpg",
    quality: int = 95,
    resolution: str = "480p",
) -> Path:
    """Write the dataset in the DAVIS-2017 layout with a ``meta_expressions.json``.

    Frames go to ``JPEGImages/<resolution>/<video>/%05d.<frame_format>`` (``"jpg"`` with
    ``quality``, or lossless ``"png"``), object-id maps of all objects to
    ``Annotations/<resolution>/<video>/%05d.png``; the videos are added to
    ``ImageSets/2017/<split>.txt`` and ``meta_expressions.json`` (existing entries are
    kept, so two datasets with different seeds can fill ``train`` and ``val``).

    Returns:
        ``root``, readable with ``RefDAVISDataset(root, split=split)``.
    """
    if frame_format not in ("jpg", "png"):
        raise ValueError(f"frame_format must be 'jpg' or 'png', got {frame_format!r}")
    root = Path(root)
    meta_path = root / "meta_expressions.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {"videos": {}}
    split_path = root / "ImageSets" / "2017" / f"{split}.txt"
    names = split_path.read_text().split() if split_path.is_file() else []
    for video in range(dataset.num_videos):
        scene, video_id = dataset.scene(video), dataset.video_id(video)
        frame_ids = [f"{t:05d}" for t in range(dataset.num_frames)]
        for frame_id, frame, labels in zip(frame_ids, scene.frames, scene.labels):
            write_frame(
                root / "JPEGImages" / resolution / video_id / f"{frame_id}.{frame_format}",
                frame,
                quality,
            )
            write_mask(root / "Annotations" / resolution / video_id / f"{frame_id}.png", labels)
        meta["videos"][video_id] = {
            "expressions": {
                str(i): {"exp": e.text, "obj_id": str(e.obj_id)}
                for i, e in enumerate(scene.expressions)
            },
            "frames": frame_ids,
        }
        names.append(video_id)
    split_path.parent.mkdir(parents=True, exist_ok=True)
    split_path.write_text("\n".join(dict.fromkeys(names)) + "\n")
    meta_path.write_text(json.dumps(meta, indent=1))
    return root
