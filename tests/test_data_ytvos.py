"""RefYouTubeVOSDataset on small layouts written by the test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _davis_mini import toy_video

from rvoslib.data import RefYouTubeVOSDataset, RVOSCollator, train_transform
from rvoslib.data.io import write_frame, write_mask

NUM_FRAMES = 12  # annotations on frames 0, 5, 10


def _frame_id(t: int) -> str:
    return f"{5 * t:05d}"  # YouTube-VOS names frames by their index in the 30 fps video


def _write_ytvos(root: Path, with_objects_file: bool = True) -> dict[str, np.ndarray]:
    labels_by_video = {}
    expressions = {
        "a1b2c3": {
            "0": {"exp": "the left cat", "obj_id": "1"},
            "1": {"exp": "a dog", "obj_id": "2"},
        },
        "d4e5f6": {"0": {"exp": "the third fish", "obj_id": "3"}},
    }
    objects = {}
    for seed, video in enumerate(expressions):
        frames, labels = toy_video(NUM_FRAMES, 36, 64, 3, seed=seed)
        labels_by_video[video] = labels
        for t in range(NUM_FRAMES):
            write_frame(root / "train/JPEGImages" / video / f"{_frame_id(t)}.jpg", frames[t])
            if t % 5 == 0:
                write_mask(root / "train/Annotations" / video / f"{_frame_id(t)}.png", labels[t])
            write_frame(root / "valid/JPEGImages" / video / f"{_frame_id(t)}.jpg", frames[t])
        objects[video] = {"objects": {str(i): {"category": "cat"} for i in (1, 2, 3)}}
    meta = {
        "videos": {
            video: {"expressions": exps, "frames": [_frame_id(t) for t in range(NUM_FRAMES)]}
            for video, exps in expressions.items()
        }
    }
    (root / "meta_expressions/train").mkdir(parents=True)
    (root / "meta_expressions/train/meta_expressions.json").write_text(json.dumps(meta))
    for video in meta["videos"].values():  # the valid split names no objects
        video["expressions"] = {k: {"exp": v["exp"]} for k, v in video["expressions"].items()}
    (root / "meta_expressions/valid").mkdir(parents=True)
    (root / "meta_expressions/valid/meta_expressions.json").write_text(json.dumps(meta))
    if with_objects_file:
        (root / "train/meta.json").write_text(json.dumps({"videos": objects}))
    return labels_by_video


def test_train_every_fifth_frame_annotated(tmp_path: Path) -> None:
    labels = _write_ytvos(tmp_path)
    dataset = RefYouTubeVOSDataset(tmp_path, "train")
    assert len(dataset) == 3
    item = dataset[1]
    assert item["video_id"] == "a1b2c3" and item["obj_id"] == 2 and item["expression"] == "a dog"
    assert item["frames"].shape == (NUM_FRAMES, 3, 36, 64)
    assert item["valid"].tolist() == [t % 5 == 0 for t in range(NUM_FRAMES)]
    for t in range(NUM_FRAMES):
        expected = labels["a1b2c3"][t] == 2 if t % 5 == 0 else np.zeros((36, 64), bool)
        assert torch.equal(item["masks"][t].bool(), torch.from_numpy(expected))
    annotated = RefYouTubeVOSDataset(tmp_path, "train", annotated_only=True)
    item = annotated[2]
    assert item["frame_ids"] == ["00000", "00025", "00050"] and item["valid"].all()
    assert torch.equal(item["masks"].bool(), torch.from_numpy(labels["d4e5f6"][::5] == 3))


def test_train_clips_batch(tmp_path: Path) -> None:
    _write_ytvos(tmp_path)
    dataset = RefYouTubeVOSDataset(
        tmp_path, "train", num_frames=4, sampling="strided", transform=train_transform(32)
    )
    batch = RVOSCollator()([dataset[0], dataset[2]])
    assert batch["frames"].shape == (2, 4, 3, 32, 32) and batch["valid"].dtype == torch.bool


def test_valid_split_has_no_masks(tmp_path: Path) -> None:
    _write_ytvos(tmp_path)
    dataset = RefYouTubeVOSDataset(tmp_path, "valid")
    item = dataset[2]
    assert item["obj_id"] == -1 and item["expression"] == "the third fish"
    assert not item["valid"].any() and item["masks"].sum() == 0
    assert item["frames"].shape == (NUM_FRAMES, 3, 36, 64)


def test_absent_object(tmp_path: Path) -> None:
    _write_ytvos(tmp_path)
    meta_path = tmp_path / "meta_expressions/train/meta_expressions.json"
    meta = json.loads(meta_path.read_text())
    meta["videos"]["d4e5f6"]["expressions"]["0"]["obj_id"] = "7"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"'d4e5f6' names object 7.*train/meta.json"):
        RefYouTubeVOSDataset(tmp_path, "train")
    (tmp_path / "train/meta.json").unlink()  # then the PNGs are checked when loading
    dataset = RefYouTubeVOSDataset(tmp_path, "train")
    dataset[0]
    with pytest.raises(ValueError, match=r"'d4e5f6' names object 7.*present: \[1, 2, 3\]"):
        dataset[2]


def test_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"root not found[\s\S]*meta_expressions/<split>"):
        RefYouTubeVOSDataset(tmp_path / "missing")
    tmp_path.joinpath("ytvos").mkdir()
    with pytest.raises(FileNotFoundError, match=r"meta_expressions/train/meta_expressions.json"):
        RefYouTubeVOSDataset(tmp_path / "ytvos")
    with pytest.raises(ValueError, match="split must be one of"):
        RefYouTubeVOSDataset(tmp_path / "ytvos", split="val")
    root = tmp_path / "data"
    _write_ytvos(root)
    write_mask(root / "train/Annotations/a1b2c3/00099.png", np.zeros((36, 64), np.uint8))
    with pytest.raises(ValueError, match=r"'a1b2c3': annotation .*00099.png has no frame"):
        RefYouTubeVOSDataset(root)
    (root / "train/Annotations/a1b2c3/00099.png").unlink()
    (root / "train/JPEGImages/d4e5f6/00010.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"'d4e5f6': frame 00010 listed"):
        RefYouTubeVOSDataset(root)
