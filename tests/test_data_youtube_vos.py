"""YouTube-VOS loader on a small fixture in the VOS challenge layout; the synthetic VOS task."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rvoslib.data.io import read_mask, write_frame, write_mask
from rvoslib.data.synthetic_vos import SyntheticVOSDataset
from rvoslib.data.transforms import eval_transform
from rvoslib.data.youtube_vos import YouTubeVOSDataset, load_youtube_vos_meta

HEIGHT, WIDTH = 24, 32


def _box(top: int, left: int, height: int = 6, width: int = 8) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[top : top + height, left : left + width] = True
    return mask


def write_fixture(root: Path) -> dict:
    """A tiny YouTube-VOS: train (vidA: all frames, every 5th annotated, object 2 appears at
    00005; vidB: every 5th frame, its object gone at 00010) and valid (vidC: first masks only).

    Returns:
        ``{(split, video): {"frames": [ids], "labels": {frame: (H, W) uint8}}}``, the full
        ground truth (also of the valid frames, which the files do not hold).
    """
    rng = np.random.default_rng(0)
    truth: dict = {}

    def video(split: str, name: str, frame_ids, labels, annotated, objects) -> None:
        for frame_id in frame_ids:
            image = rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
            write_frame(root / split / "JPEGImages" / name / f"{frame_id}.jpg", image)
        for frame_id in annotated:
            write_mask(root / split / "Annotations" / name / f"{frame_id}.png", labels[frame_id])
        meta_path = root / split / "meta.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {"videos": {}}
        meta["videos"][name] = {"objects": objects}
        meta_path.write_text(json.dumps(meta))
        truth[(split, name)] = {"frames": list(frame_ids), "labels": labels}

    all_a = [f"{t:05d}" for t in range(16)]
    labels_a = {}
    for t, frame_id in enumerate(all_a):
        label = np.zeros((HEIGHT, WIDTH), np.uint8)
        label[_box(2, 2 + t)] = 1
        if t >= 5:
            label[_box(14, 20 - t // 2)] = 2
        labels_a[frame_id] = label
    every5 = ["00000", "00005", "00010", "00015"]
    video(
        "train",
        "vidA",
        all_a,
        labels_a,
        every5,
        {
            "1": {"category": "cat", "frames": every5},
            "2": {"category": "dog", "frames": every5[1:]},
        },
    )
    labels_b = {f: np.zeros((HEIGHT, WIDTH), np.uint8) for f in every5}
    for index, frame_id in enumerate(every5):
        if frame_id != "00010":
            labels_b[frame_id][_box(8, 4 + 4 * index)] = 1
    video(
        "train",
        "vidB",
        every5,
        labels_b,
        every5,
        {"1": {"category": "zebra", "frames": ["00000", "00005", "00015"]}},
    )
    frames_c = ["00000", "00005", "00010"]
    labels_c = {}
    for t, frame_id in enumerate(frames_c):
        label = np.zeros((HEIGHT, WIDTH), np.uint8)
        label[_box(3, 3 + 3 * t)] = 1
        if t >= 1:
            label[_box(12, 18 - 2 * t)] = 2
        labels_c[frame_id] = label
    first_masks = {  # valid: only each object's first frame is annotated
        "00000": np.where(labels_c["00000"] == 1, 1, 0).astype(np.uint8),
        "00005": np.where(labels_c["00005"] == 2, 2, 0).astype(np.uint8),
    }
    video(
        "valid",
        "vidC",
        frames_c,
        {**labels_c, **first_masks},
        ["00000", "00005"],
        {
            "1": {"category": "cat", "frames": frames_c},
            "2": {"category": "penguin", "frames": frames_c[1:]},
        },
    )
    truth[("valid", "vidC")]["labels"] = labels_c
    return truth


@pytest.fixture
def ytvos(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "youtube-vos"
    return root, write_fixture(root)


def test_train_items_per_object(ytvos) -> None:
    root, truth = ytvos
    dataset = YouTubeVOSDataset(root, "train")
    assert [(r.video_id, r.obj_id, r.category) for r in dataset.records] == [
        ("vidA", 1, "cat"),
        ("vidA", 2, "dog"),
        ("vidB", 1, "zebra"),
    ]
    assert dataset.categories() == {"cat", "dog", "zebra"}
    item = dataset[1]  # vidA object 2: from its first annotated frame, annotated frames only
    assert item["frame_ids"] == ["00005", "00010", "00015"]
    assert item["frames"].shape == (3, 3, HEIGHT, WIDTH) and item["frames"].dtype == torch.float32
    assert item["masks"].shape == (3, HEIGHT, WIDTH) and item["valid"].tolist() == [True] * 3
    for slot, frame_id in enumerate(item["frame_ids"]):
        expected = truth[("train", "vidA")]["labels"][frame_id] == 2
        assert torch.equal(item["masks"][slot], torch.from_numpy(expected.astype(np.float32)))
    assert torch.equal(item["first_mask"], item["masks"][0]) and item["first_mask"].sum() > 0
    assert (item["video_id"], item["obj_id"], item["category"]) == ("vidA", 2, "dog")
    assert item["orig_size"] == (HEIGHT, WIDTH)


def test_all_frames_when_not_annotated_only(ytvos) -> None:
    root, _ = ytvos
    dataset = YouTubeVOSDataset(root, "train", annotated_only=False, videos=["vidA"])
    item = dataset[0]
    assert len(item["frame_ids"]) == 16
    assert item["valid"].nonzero().flatten().tolist() == [0, 5, 10, 15]
    assert item["masks"][1].sum() == 0  # unannotated frames: zero mask, not valid


def test_clips_start_where_the_object_is(ytvos) -> None:
    root, _ = ytvos
    starts = set()
    for sampling in ("random", "strided"):
        dataset = YouTubeVOSDataset(root, "train", num_frames=2, sampling=sampling, videos=["vidB"])
        for seed in range(30):
            torch.manual_seed(seed)
            item = dataset[0]
            assert len(item["frame_ids"]) == 2 and item["frame_ids"] == sorted(item["frame_ids"])
            assert item["first_mask"].sum() > 0  # 00010, where the object is gone, never starts
            starts.add(item["frame_ids"][0])
    assert starts == {"00000", "00005"}
    uniform = YouTubeVOSDataset(root, "train", num_frames=3, sampling="uniform", videos=["vidA"])
    assert uniform[0]["frame_ids"] == ["00000", "00010", "00015"]  # linspace(0, 3, 3) rounded
    strided = YouTubeVOSDataset(
        root, "train", num_frames=2, sampling="strided", stride=2, videos=["vidA"]
    )
    torch.manual_seed(0)
    ids = strided[0]["frame_ids"]
    assert int(ids[1]) - int(ids[0]) == 10


def test_short_tracks_give_every_frame(ytvos) -> None:
    root, _ = ytvos
    dataset = YouTubeVOSDataset(root, "train", num_frames=8)
    assert dataset[1]["frame_ids"] == ["00005", "00010", "00015"]


def test_valid_split_has_first_masks_only(ytvos) -> None:
    root, truth = ytvos
    dataset = YouTubeVOSDataset(root, "valid")
    assert len(dataset) == 2
    first, second = dataset[0], dataset[1]
    assert first["frame_ids"] == ["00000", "00005", "00010"]
    assert first["valid"].tolist() == [True, False, False]
    assert first["masks"][1:].sum() == 0
    assert second["frame_ids"] == ["00005", "00010"] and second["obj_id"] == 2
    expected = truth[("valid", "vidC")]["labels"]["00005"] == 2
    assert torch.equal(second["first_mask"], torch.from_numpy(expected.astype(np.float32)))


def test_first_mask_is_transformed_with_the_frames(ytvos) -> None:
    root, _ = ytvos
    dataset = YouTubeVOSDataset(root, "train", transform=eval_transform(48, pad_divisor=32))
    item = dataset[0]
    assert item["frames"].shape[-2:] == (64, 64)  # 48x64 padded to multiples of 32
    assert item["first_mask"].shape == (64, 64)
    assert torch.equal(item["first_mask"], item["masks"][0])
    assert item["orig_masks"].shape == (4, HEIGHT, WIDTH)
    assert item["unpadded_size"] == (48, 64) and item["orig_size"] == (HEIGHT, WIDTH)


def test_transform_that_removes_the_object(ytvos) -> None:
    root, _ = ytvos

    def erase(sample: dict) -> dict:
        return {**sample, "masks": np.zeros_like(sample["masks"])}

    dataset = YouTubeVOSDataset(root, "train", transform=erase)
    with pytest.raises(ValueError, match="removed the object from the first frame in 10 draws"):
        dataset[0]


def test_meta_reader_and_its_errors(tmp_path: Path) -> None:
    path = tmp_path / "meta.json"
    with pytest.raises(FileNotFoundError, match="meta.json not found"):
        load_youtube_vos_meta(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="cannot parse .* as JSON"):
        load_youtube_vos_meta(path)
    path.write_text(json.dumps({"objects": {}}))
    with pytest.raises(ValueError, match='must hold {"videos"'):
        load_youtube_vos_meta(path)
    path.write_text(json.dumps({"videos": {"v": {}}}))
    with pytest.raises(ValueError, match="video 'v' has no 'objects' mapping"):
        load_youtube_vos_meta(path)
    path.write_text(json.dumps({"videos": {"v": {"objects": {"one": {"frames": ["0"]}}}}}))
    with pytest.raises(ValueError, match="video 'v' has object id 'one'; ids are integers"):
        load_youtube_vos_meta(path)
    path.write_text(json.dumps({"videos": {"v": {"objects": {"3": {"category": "cat"}}}}}))
    with pytest.raises(ValueError, match="object 3 of video 'v' lists no annotated frame"):
        load_youtube_vos_meta(path)
    path.write_text(json.dumps({"videos": {"v": {"objects": {"3": {"frames": ["5", "0"]}}}}}))
    assert load_youtube_vos_meta(path) == {"v": {3: {"category": None, "frames": ["0", "5"]}}}


def test_bad_arguments(ytvos, tmp_path: Path) -> None:
    root, _ = ytvos
    with pytest.raises(ValueError, match="split must be one of"):
        YouTubeVOSDataset(root, "val")
    with pytest.raises(ValueError, match="num_frames must be a positive int or None, got 0"):
        YouTubeVOSDataset(root, num_frames=0)
    with pytest.raises(ValueError, match="sampling must be one of"):
        YouTubeVOSDataset(root, sampling="dense")
    with pytest.raises(ValueError, match="stride must be a positive int, got 0"):
        YouTubeVOSDataset(root, stride=0)
    with pytest.raises(ValueError, match="on_error must be 'raise' or 'skip'"):
        YouTubeVOSDataset(root, on_error="ignore")
    with pytest.raises(FileNotFoundError, match="YouTube-VOS root not found"):
        YouTubeVOSDataset(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="meta.json not found"):
        YouTubeVOSDataset(root, "test")
    with pytest.raises(ValueError, match=r"videos \['vidZ'\] are not in"):
        YouTubeVOSDataset(root, videos=["vidZ"])
    with pytest.raises(IndexError, match="index 9 out of range for a dataset of 3 items"):
        YouTubeVOSDataset(root)[9]


def _edit_meta(root: Path, split: str, edit) -> None:
    path = root / split / "meta.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


def test_layout_errors(ytvos) -> None:
    root, _ = ytvos
    (root / "train" / "Annotations" / "vidB" / "00015.png").rename(
        root / "train" / "Annotations" / "vidB" / "00020.png"
    )
    with pytest.raises(ValueError, match=r"annotation .*vidB/00020.png has no frame"):
        YouTubeVOSDataset(root, videos=["vidB"])
    (root / "train" / "Annotations" / "vidB" / "00020.png").unlink()
    (root / "train" / "Annotations" / "vidB" / "00000.png").unlink()
    with pytest.raises(ValueError, match=r"object 1's first frame 00000 \(meta.json\) has no ann"):
        YouTubeVOSDataset(root, videos=["vidB"])
    _edit_meta(root, "train", lambda m: m["videos"].update({"vidX": {"objects": {}}}))
    with pytest.raises(FileNotFoundError, match="video folder not found: .*vidX"):
        YouTubeVOSDataset(root, videos=["vidX"])


def test_mask_of_another_size(ytvos) -> None:
    root, _ = ytvos
    write_mask(root / "train" / "Annotations" / "vidB" / "00000.png", np.ones((20, 30), np.uint8))
    dataset = YouTubeVOSDataset(root, videos=["vidB"])
    with pytest.raises(
        ValueError,
        match=r"first-frame annotation .*00000.png is 20x30 \(HxW\) but frame 00000 is 24x32",
    ):
        dataset[0]


def test_object_id_absent_from_meta(ytvos) -> None:
    root, _ = ytvos
    path = root / "train" / "Annotations" / "vidB" / "00005.png"
    label = read_mask(path)
    label[0, 0] = 7
    write_mask(path, label)
    dataset = YouTubeVOSDataset(root, videos=["vidB"])
    with pytest.raises(ValueError, match=r"has object id\(s\) \[7\] absent from meta.json .*\[1\]"):
        dataset[0]


def test_empty_first_mask(ytvos) -> None:
    root, _ = ytvos
    _edit_meta(
        root,
        "train",
        lambda m: m["videos"]["vidB"]["objects"]["1"].update(frames=["00010", "00015"]),
    )
    dataset = YouTubeVOSDataset(root, videos=["vidB"])
    with pytest.raises(
        ValueError, match="its mask in frame 00010 .* is empty, so there is nothing"
    ):
        dataset[0]


def test_unreadable_frame_skip_or_raise(ytvos) -> None:
    root, _ = ytvos
    (root / "train" / "JPEGImages" / "vidB" / "00005.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(OSError, match="cannot read image .*00005.jpg"):
        YouTubeVOSDataset(root, videos=["vidB"])[0]
    skipping = YouTubeVOSDataset(root, videos=["vidB"], on_error="skip")
    with pytest.warns(RuntimeWarning, match=r"skipping item 0 \(video 'vidB', object 1\)"):
        assert skipping[0] is None


# ---------------------------------------------------------------------------- synthetic VOS
def test_synthetic_vos_items() -> None:
    dataset = SyntheticVOSDataset(num_videos=3, num_frames=3, size=32, expressions_per_video=2)
    assert len(dataset) == 6
    for index in range(len(dataset)):
        item = dataset[index]
        assert item["first_mask"].shape == (32, 32) and item["first_mask"].dtype == torch.float32
        assert torch.equal(item["first_mask"], item["masks"][0]) and item["first_mask"].sum() > 0
        video = index // 2
        target = next(
            o for o in dataset.scene(video).objects if o.obj_id == item["obj_id"]
        )  # the expression's object
        assert item["category"] == target.shape
        assert isinstance(item["expression"], str) and item["expression"]


def test_synthetic_vos_control_without_mask() -> None:
    given = SyntheticVOSDataset(num_videos=2, num_frames=2, size=32)
    control = SyntheticVOSDataset(num_videos=2, num_frames=2, size=32, first_mask="zeros")
    assert control[0]["first_mask"].sum() == 0
    assert torch.equal(control[0]["masks"], given[0]["masks"])  # same task, same targets
    assert torch.equal(control[0]["frames"], given[0]["frames"])
    with pytest.raises(ValueError, match="first_mask must be one of"):
        SyntheticVOSDataset(num_videos=1, first_mask="box")


def test_synthetic_vos_transform_that_removes_the_target() -> None:
    def erase(sample: dict) -> dict:
        return {**sample, "masks": np.zeros_like(sample["masks"])}

    dataset = SyntheticVOSDataset(num_videos=1, num_frames=2, size=32, transform=erase)
    with pytest.raises(ValueError, match="removed the target from the first frame in 10 draws"):
        dataset[0]
