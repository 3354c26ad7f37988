"""RefDAVISDataset on davis-mini, on Ref-DAVIS17 text layouts and on broken copies."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _davis_mini import copy_davis_subset, require_davis_mini, toy_video, write_toy_davis
from PIL import Image

from rvoslib.data import (
    ImageReadError,
    RefDAVISDataset,
    RVOSCollator,
    denormalize,
    eval_transform,
    parse_refdavis_text,
    restore_size,
)


@pytest.fixture
def davis_root() -> Path:
    return require_davis_mini()


def _annotation(root: Path, video: str, frame_id: str) -> np.ndarray:
    return np.asarray(Image.open(root / "Annotations" / "480p" / video / f"{frame_id}.png"))


def test_davis_mini_items_and_masks(davis_root: Path) -> None:
    dataset = RefDAVISDataset(davis_root, split="val")
    assert len(dataset) == 4
    keys = [(r.video_id, r.exp_id, r.obj_id) for r in dataset.records]
    videos = [("blackswan", "0"), ("blackswan", "1"), ("car-shadow", "0"), ("car-shadow", "1")]
    assert keys == [(video, exp_id, 1) for video, exp_id in videos]
    item = dataset[2]  # whole car-shadow video
    assert item["frames"].shape == (40, 3, 480, 854) and item["frames"].dtype == torch.float32
    assert item["masks"].shape == (40, 480, 854) and item["valid"].all()
    assert item["expression"] == "the silver hatchback driving away from the camera"
    assert item["video_id"] == "car-shadow" and item["obj_id"] == 1 and item["exp_id"] == "0"
    assert item["frame_ids"] == [f"{t:05d}" for t in range(40)]
    for t, frame_id in enumerate(item["frame_ids"]):
        expected = _annotation(davis_root, "car-shadow", frame_id) == 1
        assert torch.equal(item["masks"][t].bool(), torch.from_numpy(expected))
    jpeg = np.asarray(Image.open(davis_root / "JPEGImages/480p/car-shadow/00007.jpg"))
    restored = denormalize(item["frames"][7]).permute(1, 2, 0).numpy() * 255
    assert np.abs(restored - jpeg).max() < 0.01


def test_clip_sampling(davis_root: Path) -> None:
    strided = RefDAVISDataset(davis_root, num_frames=5, sampling="strided", stride=3)
    item = strided[0]
    assert item["frames"].shape == (5, 3, 480, 854)
    steps = np.diff([int(f) for f in item["frame_ids"]])
    assert (steps == 3).all()
    random_ids = RefDAVISDataset(davis_root, num_frames=4, sampling="random").sample_indices(50)
    assert random_ids == sorted(set(random_ids)) and len(random_ids) == 4
    uniform = RefDAVISDataset(davis_root, num_frames=3, sampling="uniform")
    assert uniform.sample_indices(50) == [0, 24, 49] and uniform.sample_indices(2) == [0, 1]
    with pytest.raises(ValueError, match="sampling must be one of"):
        RefDAVISDataset(davis_root, num_frames=3, sampling="every")


def test_eval_transform_roundtrip(davis_root: Path) -> None:
    dataset = RefDAVISDataset(
        davis_root, num_frames=2, sampling="uniform", transform=eval_transform(240)
    )
    item = dataset[0]
    assert item["frames"].shape == (2, 3, 256, 448)  # 240x427 padded to multiples of 32
    assert item["unpadded_size"] == (240, 427) and item["orig_size"] == (480, 854)
    restored = restore_size(item["masks"], item["orig_size"], item["unpadded_size"]) > 0.5
    truth = torch.from_numpy(_annotation(davis_root, "blackswan", item["frame_ids"][1]) == 1)
    iou = (restored[1] & truth).sum() / (restored[1] | truth).sum()
    assert iou > 0.97


def test_corrupt_jpeg_is_named(davis_root: Path, tmp_path: Path) -> None:
    root = copy_davis_subset(davis_root, tmp_path / "davis", "blackswan", 4)
    bad = root / "JPEGImages/480p/blackswan/00002.jpg"
    bad.write_bytes(bad.read_bytes()[:400])  # truncated JPEG
    with pytest.raises(ImageReadError, match="00002.jpg"):
        RefDAVISDataset(root)[0]
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(ImageReadError, match=r"blackswan.00002\.jpg"):
        RefDAVISDataset(root)[1]
    dataset = RefDAVISDataset(root, on_error="skip")
    with pytest.warns(RuntimeWarning, match="00002.jpg"):
        assert dataset[0] is None
    with pytest.warns(RuntimeWarning, match="dropped 1"):
        batch = RVOSCollator()([None, RefDAVISDataset(root, num_frames=1, sampling="uniform")[0]])
    assert batch["frames"].shape[0] == 1


def test_missing_root_and_split(davis_root: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nowhere[\s\S]*JPEGImages/480p"):
        RefDAVISDataset(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"ImageSets/2017/train\.txt"):
        RefDAVISDataset(davis_root, split="train")
    with pytest.raises(FileNotFoundError, match="Davis17_annot2.txt"):
        RefDAVISDataset(davis_root, expressions="annot2")
    other_split = tmp_path / "annot.txt"
    other_split.write_text("bear 1 a brown bear\n")
    with pytest.raises(ValueError, match=r"no expression names a video of .*val.txt"):
        RefDAVISDataset(davis_root, expressions=other_split)
    other_split.write_text("blackswan 1 a swan\n")
    with pytest.warns(RuntimeWarning, match=r"1 of 2 videos .* no expressions.*car-shadow"):
        assert len(RefDAVISDataset(davis_root, expressions=other_split)) == 1


def _edit_meta(root: Path, obj_id: str = "1", text: str = "a swan") -> None:
    meta = json.loads((root / "meta_expressions.json").read_text())
    meta["videos"]["blackswan"]["expressions"] = {"0": {"exp": text, "obj_id": obj_id}}
    (root / "meta_expressions.json").write_text(json.dumps(meta))


def test_inconsistent_layouts(davis_root: Path, tmp_path: Path) -> None:
    root = copy_davis_subset(davis_root, tmp_path / "davis", "blackswan", 3)
    _edit_meta(root, obj_id="2")
    with pytest.raises(ValueError, match=r"'blackswan' names object 2.*absent"):
        RefDAVISDataset(root)
    _edit_meta(root, text="   ")
    with pytest.raises(ValueError, match=r"empty expression for video 'blackswan', object 1"):
        RefDAVISDataset(root)
    _edit_meta(root)
    (root / "Annotations/480p/blackswan/00002.png").unlink()
    with pytest.raises(ValueError, match=r"'blackswan': 3 frames .* but 2 annotations"):
        RefDAVISDataset(root)
    Image.new("P", (40, 30)).save(root / "Annotations/480p/blackswan/00002.png")
    with pytest.raises(ValueError, match=r"'blackswan', object 1: annotation .*00002.png"):
        RefDAVISDataset(root)[0]


def test_refdavis_text_layout(tmp_path: Path) -> None:
    videos = {"dogs": toy_video(4, 40, 56, 3, seed=1), "kite": toy_video(3, 40, 56, 2, seed=2)}
    write_toy_davis(tmp_path, videos, split="train")
    texts = tmp_path / "davis_text_annotations"
    texts.mkdir()
    (texts / "Davis17_annot1.txt").write_text(
        'dogs 1 "the dog on the left"\n\ndogs 3 a brown dog running\nkite 2 "the kite"\n'
        'other 1 "a video of another split"\n'
    )
    (texts / "Davis17_annot2.txt").write_text("dogs 2 'the middle dog'\n")
    dataset = RefDAVISDataset(tmp_path, split="train", expressions="annot1")
    # ReferFormer's numbering: the i-th object's annot1 expression is 4 * i + 0.
    assert [(r.video_id, r.exp_id, r.obj_id, r.expression) for r in dataset.records] == [
        ("dogs", "0", 1, "the dog on the left"),
        ("dogs", "4", 3, "a brown dog running"),
        ("kite", "0", 2, "the kite"),
    ]
    assert dataset.text.files == {"annot1": texts / "Davis17_annot1.txt"}
    with pytest.warns(RuntimeWarning, match="no expressions"):
        second = RefDAVISDataset(tmp_path, split="train", expressions="annot2")
    assert [(r.exp_id, r.obj_id) for r in second.records] == [("2", 2)]
    item = dataset[1]
    frames, labels = videos["dogs"]
    assert torch.equal(item["masks"].bool(), torch.from_numpy(labels == 3))
    restored = (denormalize(item["frames"]).permute(0, 2, 3, 1) * 255).round().byte().numpy()
    assert np.array_equal(restored, frames)  # PNG frames are lossless
    both = RefDAVISDataset(
        tmp_path, "train", expressions=[texts / "Davis17_annot1.txt", texts / "Davis17_annot2.txt"]
    )
    assert [(r.exp_id, r.obj_id) for r in both.records if r.video_id == "dogs"][-1] == ("2", 2)


def test_refdavis_text_errors(tmp_path: Path) -> None:
    bad = tmp_path / "annot.txt"
    bad.write_text("dogs\n")
    with pytest.raises(ValueError, match=r"annot.txt:1: expected"):
        parse_refdavis_text(bad)
    bad.write_text('dogs 2 ""\n')
    with pytest.raises(ValueError, match="empty expression for video 'dogs', object 2"):
        parse_refdavis_text(bad)
    write_toy_davis(tmp_path, {"dogs": toy_video(2, 24, 24, 1, seed=0)}, split="val")
    bad.write_text("dogs 4 the fourth dog\n")
    with pytest.raises(ValueError, match=r"video 'dogs' names object 4.*objects present: \[1\]"):
        RefDAVISDataset(tmp_path, expressions=bad)
