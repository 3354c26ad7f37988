"""A2D-Sentences loader on a tiny tree in the released formats (see _a2d_fixtures)."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip("h5py")

from _a2d_fixtures import (
    A2D_FRAMES,
    A2D_ROWS,
    HEIGHT,
    WIDTH,
    frame_number,
    instance_mask,
    make_a2d,
    write_a2d_h5,
)

from rvoslib.data import ClipTransform, RVOSCollator, denormalize, eval_transform
from rvoslib.data.a2d import (
    A2DSentencesDataset,
    read_a2d_instances,
    read_video_window,
    window_indices,
)
from rvoslib.data.frame_query import instance_boxes
from rvoslib.data.io import ImageReadError


@pytest.fixture
def a2d(tmp_path: Path) -> Path:
    return make_a2d(tmp_path / "a2d")


def _dataset(root: Path, **kwargs) -> A2DSentencesDataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the "1 (copy)" row
        return A2DSentencesDataset(root, **kwargs)


def _index(dataset: A2DSentencesDataset, video: str, frame: int, instance: int) -> int:
    keys = [(r.video_id, r.frame_number, r.instance_id) for r in dataset.records]
    return keys.index((video, frame, instance))


def _decoded_numbers(frames: torch.Tensor) -> list[int]:
    return [frame_number(255 * frame.numpy()) for frame in denormalize(frames)]


def _boxes_by_loops(mask: np.ndarray) -> list[float]:
    ys = [y for y in range(mask.shape[0]) for x in range(mask.shape[1]) if mask[y, x]]
    xs = [x for y in range(mask.shape[0]) for x in range(mask.shape[1]) if mask[y, x]]
    return [min(xs), min(ys), max(xs), max(ys)] if xs else [0, 0, 0, 0]


def test_split_missed_videos_and_bad_rows(a2d: Path) -> None:
    with pytest.warns(RuntimeWarning, match=r"1 row\(s\) .* not an integer .*'1 \(copy\)'"):
        train = A2DSentencesDataset(a2d, split="train")
    # vidM is in split 0 but listed as missed; instance 2 of vidA is in frames 3 and 8
    assert sorted((r.video_id, r.frame_number, r.instance_id) for r in train.records) == [
        ("vidA", 3, 1),
        ("vidA", 3, 2),
        ("vidA", 8, 2),
    ]
    test = _dataset(a2d, split="test")
    assert sorted((r.video_id, r.frame_number, r.instance_id) for r in test.records) == [
        ("vidB", 1, 3),
        ("vidB", 1, 4),
        ("vidB", 6, 3),
        ("vidC", 4, 5),
    ]
    assert {r.exp_id for r in test.records} == {"3", "4", "6"}  # row numbers in the file
    assert test.video_dir == a2d / "Release" / "clips320H"


def test_item_window_masks_and_keys(a2d: Path) -> None:
    dataset = _dataset(a2d, split="test", num_frames=8)
    item = dataset[_index(dataset, "vidB", 6, 3)]  # last of vidB's 6 frames
    assert item["frames"].shape == (8, 3, HEIGHT, WIDTH) and item["frames"].dtype == torch.float32
    assert _decoded_numbers(item["frames"]) == [1, 2, 3, 4, 5, 5, 5, 5]
    assert item["frame_ids"] == [
        "00002",
        "00003",
        "00004",
        "00005",
        "00006",
        "00006",
        "00006",
        "00006",
    ]
    assert item["valid"].tolist() == [False] * 4 + [True] + [False] * 3
    assert item["annotated_index"] == 4
    expected = instance_mask("vidB", 6, 3)
    assert torch.equal(item["masks"][4], torch.from_numpy(expected).float())
    assert item["masks"].sum() == expected.sum()  # nothing in the other slots
    assert item["instance_masks"].shape == (1, 8, HEIGHT, WIDTH)
    assert item["instance_masks"].dtype == torch.bool and item["referred"].tolist() == [True]
    assert item["boxes"].shape == (1, 8, 4) and item["boxes"][0, 4].tolist() == _boxes_by_loops(
        expected
    )
    assert item["boxes"][0, :4].abs().sum() == 0
    assert item["expression"] == "a white car rolling" and item["obj_id"] == 3
    assert item["image_id"] == "v_vidB_f_6_i_3" and item["video_id"] == "vidB"
    assert item["orig_size"] == (HEIGHT, WIDTH) and "short_expression" not in item


def test_all_instances_of_the_frame(a2d: Path) -> None:
    dataset = _dataset(a2d, split="test", num_frames=8)
    index = _index(dataset, "vidB", 1, 4)
    item = dataset[index]
    assert _decoded_numbers(item["frames"]) == [0, 0, 0, 0, 0, 1, 2, 3]
    assert item["referred"].tolist() == [False, False, True]  # instances [1, 3, 4] in file order
    for m, instance in enumerate([1, 3, 4]):
        expected = torch.from_numpy(instance_mask("vidB", 1, instance))
        assert torch.equal(item["instance_masks"][m, 4], expected)
        assert not item["instance_masks"][m, :4].any() and not item["instance_masks"][m, 5:].any()
    assert torch.equal(item["masks"][4].bool(), item["instance_masks"][2, 4])
    assert np.array_equal(dataset.ground_truth(index), instance_mask("vidB", 1, 4))
    expression = "The Man on the  LEFT is running"
    raw = _dataset(a2d, split="train", lowercase=False)
    assert expression.replace("  ", " ") in {r.expression for r in raw.records}


@pytest.mark.parametrize(
    ("num_frames", "expected"),
    [(1, [3]), (4, [1, 2, 3, 4]), (5, [1, 2, 3, 4, 5]), (8, [0, 0, 1, 2, 3, 4, 5, 6])],
)
def test_window_around_the_annotated_frame(a2d: Path, num_frames: int, expected: list) -> None:
    dataset = _dataset(a2d, split="test", num_frames=num_frames)
    item = dataset[_index(dataset, "vidC", 4, 5)]  # 0-based frame 3 of 7
    assert _decoded_numbers(item["frames"]) == expected
    assert item["valid"].nonzero().flatten().tolist() == [num_frames // 2]
    assert item["masks"][num_frames // 2].sum() == instance_mask("vidC", 4, 5).sum()


def test_window_indices_and_reader(a2d: Path) -> None:
    assert window_indices(0, 3, 5) == [0, 0, 1]
    assert window_indices(4, 4, 5) == [2, 3, 4, 4]
    frames, indices = read_video_window(a2d / "Release/clips320H/vidA.mp4", 9, 3)
    assert indices == [8, 9, 9] and frames.shape == (3, HEIGHT, WIDTH, 3)
    assert [frame_number(f) for f in frames] == [8, 9, 9]
    with pytest.raises(ImageReadError, match=r"frame 11 \(1-based\) is beyond the video's 10"):
        read_video_window(a2d / "Release/clips320H/vidA.mp4", 10, 3)
    with pytest.raises(FileNotFoundError, match="nothing.mp4"):
        read_video_window(a2d / "nothing.mp4", 0, 3)
    broken = a2d / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(ImageReadError, match="broken.mp4"):
        read_video_window(broken, 0, 3)


def test_short_expression_column(tmp_path: Path) -> None:
    root = make_a2d(tmp_path / "a2d", short_column=True)
    dataset = _dataset(root, split="test")
    item = dataset[_index(dataset, "vidB", 1, 4)]
    assert item["short_expression"] == "a bird on the right"
    assert item["expression"] == "a bird on the right flying"
    flipped = _dataset(root, split="test", transform=ClipTransform(hflip_p=1.0))[
        _index(dataset, "vidB", 1, 4)
    ]
    assert flipped["expression"] == "a bird on the left flying"
    assert flipped["short_expression"] == "a bird on the left"
    for m, instance in enumerate([1, 3, 4]):  # every instance flipped with the frames
        expected = torch.from_numpy(instance_mask("vidB", 1, instance)[:, ::-1].copy())
        assert torch.equal(flipped["instance_masks"][m, 4], expected)
    box = flipped["boxes"][2, 4].tolist()
    assert box == _boxes_by_loops(instance_mask("vidB", 1, 4)[:, ::-1])


def test_resize_transform_moves_every_instance(a2d: Path) -> None:
    dataset = _dataset(a2d, split="test", transform=eval_transform(48, pad_divisor=32))
    item = dataset[_index(dataset, "vidB", 1, 3)]
    assert item["frames"].shape == (8, 3, 64, 96) and item["unpadded_size"] == (48, 80)
    assert item["orig_size"] == (HEIGHT, WIDTH)
    for m, instance in enumerate([1, 3, 4]):
        resized = cv2.resize(
            instance_mask("vidB", 1, instance).astype(np.uint8), (80, 48),
            interpolation=cv2.INTER_NEAREST_EXACT,
        )  # fmt: skip
        expected = np.zeros((64, 96), bool)
        expected[:48, :80] = resized > 0
        assert np.array_equal(item["instance_masks"][m, 4].numpy(), expected)
    assert torch.equal(item["masks"][4].bool(), item["instance_masks"][1, 4])


def test_more_instances_than_packing_slots(tmp_path: Path) -> None:
    pytest.importorskip("albumentations")
    from rvoslib.data import train_transform

    ids = list(range(1, 11))  # 10 instances > 8 bits of the single frame slot
    frames = {("vidB", 2): ids}
    rows = [("vidB", "7", "the seventh one", "seventh")]
    root = make_a2d(tmp_path / "a2d", frames=frames, rows=rows)
    transform = train_transform((16, 20), scale=(0.3, 0.6), color_jitter=None, pad_divisor=None)
    dataset = A2DSentencesDataset(root, split="test", num_frames=1, transform=transform)
    torch.manual_seed(3)
    item = dataset[0]
    assert item["instance_masks"].shape == (10, 1, 16, 20)
    assert item["referred"].tolist() == [m == 6 for m in range(10)]
    raw_frames, _ = dataset.read_frames(dataset.records[0])
    for m, instance in enumerate(ids):  # each mask alone, with the same random draw
        torch.manual_seed(3)
        alone = transform(
            {
                "frames": raw_frames,
                "masks": instance_mask("vidB", 2, instance)[None].astype(np.uint8),
                "expression": "x",
            }
        )
        assert np.array_equal(item["instance_masks"][m, 0].numpy(), alone["masks"][0] > 0)


def test_collate_two_items(a2d: Path) -> None:
    dataset = _dataset(a2d, split="test", num_frames=3)
    batch = RVOSCollator()([dataset[0], dataset[1]])
    assert batch["frames"].shape == (2, 3, 3, HEIGHT, WIDTH) and batch["valid"][:, 1].all()
    assert [m.shape[0] for m in batch["instance_masks"]] == [
        len(A2D_FRAMES[(r.video_id, r.frame_number)]) for r in dataset.records[:2]
    ]


def test_read_a2d_instances_layouts(tmp_path: Path) -> None:
    one = instance_mask("v", 1, 2)
    write_a2d_h5(tmp_path / "one.h5", one[None], [2])
    masks, ids = read_a2d_instances(tmp_path / "one.h5")
    assert masks.shape == (1, HEIGHT, WIDTH) and ids == [2] and np.array_equal(masks[0], one)
    two = np.stack([instance_mask("v", 1, 3), instance_mask("v", 1, 1)])
    write_a2d_h5(tmp_path / "two.h5", two, [3, 1], flat_ids=True)
    masks, ids = read_a2d_instances(tmp_path / "two.h5")
    assert ids == [3, 1] and np.array_equal(masks, two)
    import h5py

    with h5py.File(tmp_path / "bad.h5", "w") as file:
        file["instance"] = np.array([[1.0], [2.0]])
        file["reMask"] = np.zeros((3, WIDTH, HEIGHT), np.uint8)
    with pytest.raises(ValueError, match=r"M = 2 instances, got \(3, 40, 24\)"):
        read_a2d_instances(tmp_path / "bad.h5")
    with h5py.File(tmp_path / "nomask.h5", "w") as file:
        file["instance"] = np.array([1.0])
    with pytest.raises(ValueError, match=r"nomask.h5 lacks \['reMask'\]"):
        read_a2d_instances(tmp_path / "nomask.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="cannot read A2D annotation .*text.h5 as HDF5"):
        read_a2d_instances(tmp_path / "text.h5")
    with pytest.raises(FileNotFoundError, match="absent.h5"):
        read_a2d_instances(tmp_path / "absent.h5")


def test_instance_boxes_against_loops() -> None:
    rng = np.random.default_rng(0)
    masks = rng.random((6, 7, 9)) > 0.85
    masks[2] = False
    boxes = instance_boxes(masks)
    assert boxes.shape == (6, 4) and boxes.dtype == np.float32
    assert boxes.tolist() == [_boxes_by_loops(mask) for mask in masks]


def test_missing_files_are_named(a2d: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="A2D-Sentences root not found: .*nowhere"):
        A2DSentencesDataset(tmp_path / "nowhere")
    for relative in (
        "Release/videoset.csv",
        "text_annotations/a2d_annotation.txt",
        "text_annotations/a2d_missed_videos.txt",
    ):
        copy = tmp_path / relative.replace("/", "_")
        shutil.copytree(a2d, copy)
        (copy / relative).unlink()
        with pytest.raises(FileNotFoundError, match=f"not found: .*{Path(relative).name}"):
            _dataset(copy)
    shutil.rmtree(a2d / "text_annotations/a2d_annotation_with_instances/vidC")
    with pytest.raises(FileNotFoundError, match="annotation folder of video 'vidC' not found"):
        _dataset(a2d, split="test")
    shutil.rmtree(a2d / "text_annotations/a2d_annotation_with_instances")
    with pytest.raises(FileNotFoundError, match="annotation folder not found"):
        _dataset(a2d, split="test")


def test_missing_video_and_video_dirs(a2d: Path) -> None:
    (a2d / "Release/clips320H/vidC.mp4").unlink()
    with pytest.raises(FileNotFoundError, match=r"video file not found: .*clips320H/vidC\.mp4"):
        _dataset(a2d, split="test")
    _dataset(a2d, split="train")  # vidC is a test video
    with pytest.raises(FileNotFoundError, match=r"video_dir not found: .*CLIPS320"):
        _dataset(a2d, video_dir="Release/CLIPS320")
    (a2d / "Release/clips320H").rename(a2d / "Release/CLIPS320")
    assert _dataset(a2d, split="train").video_dir == a2d / "Release/CLIPS320"
    shutil.rmtree(a2d / "Release/CLIPS320")
    with pytest.raises(FileNotFoundError, match=r"no video folder found; tried .*clips320H"):
        _dataset(a2d)


def test_instance_absent_from_annotations(tmp_path: Path) -> None:
    rows = [*A2D_ROWS, ("vidC", "9", "a ghost", "ghost")]
    root = make_a2d(tmp_path / "a2d", rows=rows)
    message = r"expression 7 of video 'vidC', instance 9, absent from frames \[4\]"
    with pytest.warns(RuntimeWarning, match=message):
        dataset = A2DSentencesDataset(root, split="test")
    assert len(dataset) == 4
    with pytest.raises(ValueError, match=message):
        _dataset(root, split="test", on_missing_instance="raise")
    # the annotation changes after the index was built: the item names video, frame, instance
    index = _index(dataset, "vidC", 4, 5)
    h5 = root / "text_annotations/a2d_annotation_with_instances/vidC/00004.h5"
    write_a2d_h5(h5, instance_mask("vidC", 4, 6)[None], [6])
    with pytest.raises(
        ValueError, match=r"video 'vidC', frame 00004: instance 5 is absent .*\[6\]"
    ):
        dataset[index]


def test_annotation_beyond_video_and_skip(tmp_path: Path) -> None:
    frames = {("vidC", 9): [5]}  # vidC has 7 frames
    root = make_a2d(tmp_path / "a2d", frames=frames, rows=[("vidC", "5", "a ball", "ball")])
    with pytest.raises(ImageReadError, match=r"frame 9 \(1-based\) is beyond the video's 7"):
        A2DSentencesDataset(root, split="test")[0]
    skipping = A2DSentencesDataset(root, split="test", on_error="skip")
    with pytest.warns(RuntimeWarning, match=r"skipping item 0 \(video 'vidC', frame 00009\)"):
        assert skipping[0] is None


def test_mask_size_must_match_frames(tmp_path: Path) -> None:
    root = make_a2d(tmp_path / "a2d")
    h5 = root / "text_annotations/a2d_annotation_with_instances/vidC/00004.h5"
    write_a2d_h5(h5, np.ones((1, HEIGHT + 2, WIDTH), bool), [5])
    dataset = _dataset(root, split="test")
    with pytest.raises(
        ValueError, match=r"frame 00004: annotation is \(26, 40\) but the frames are \(24, 40\)"
    ):
        dataset[_index(dataset, "vidC", 4, 5)]


def test_bad_arguments_and_rows(a2d: Path) -> None:
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'test'\), got 'val'"):
        A2DSentencesDataset(a2d, split="val")
    with pytest.raises(ValueError, match="num_frames must be a positive int, got 0"):
        A2DSentencesDataset(a2d, num_frames=0)
    with pytest.raises(ValueError, match="on_missing_instance must be 'warn' or 'raise'"):
        A2DSentencesDataset(a2d, on_missing_instance="skip")
    with pytest.raises(ValueError, match="on_error must be 'raise' or 'skip'"):
        A2DSentencesDataset(a2d, on_error="ignore")
    with pytest.raises(IndexError, match="index 99 out of range"):
        _dataset(a2d)[99]
    videoset = a2d / "Release/videoset.csv"
    original = videoset.read_text()
    videoset.write_text(original + "vidX,label,0\n")
    with pytest.raises(ValueError, match=r"videoset.csv, line 5: expected 9 columns .* got 3"):
        _dataset(a2d)
    videoset.write_text(original + "vidX,l,0,1,2,3,4,5,test\n")
    with pytest.raises(ValueError, match=r"line 5: split column must be 0 or 1, got 'test'"):
        _dataset(a2d)
    videoset.write_text(original)
    annotations = a2d / "text_annotations/a2d_annotation.txt"
    annotations.write_text(annotations.read_text() + "vidB,3\n")
    with pytest.raises(
        ValueError, match=r"a2d_annotation.txt, line 9: expected video_id,instance_id"
    ):
        _dataset(a2d)
    annotations.write_text("video_id,instance_id,query\nvidB,3,  \n")
    with pytest.raises(ValueError, match=r"line 2: empty expression for video 'vidB'"):
        _dataset(a2d, split="test")
    annotations.write_text("video_id,instance_id,query\nvidB,3,a car\n")
    (a2d / "text_annotations/a2d_annotation_with_instances/vidB/frame.h5").write_text("")
    with pytest.raises(ValueError, match=r"frame.h5: name must be the frame number"):
        _dataset(a2d, split="test")
