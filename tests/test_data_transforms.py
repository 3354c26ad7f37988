"""Clip transforms: one draw per clip, flip swaps left/right, eval mapping back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from rvoslib.data import (
    ClipTransform,
    SyntheticRVOSDataset,
    denormalize,
    eval_transform,
    restore_size,
    swap_left_right,
    to_tensors,
    train_transform,
)


def _clip(num_frames: int = 3, height: int = 40, width: int = 60) -> dict:
    rng = np.random.default_rng(0)
    masks = np.zeros((num_frames, height, width), np.uint8)
    masks[:, 8:30, 5:25] = 1
    frames = rng.integers(0, 80, (num_frames, height, width, 3), dtype=np.uint8)
    frames[..., 0][masks == 1] = 250  # the object is red: frames and masks can be compared
    return {
        "frames": frames,
        "masks": masks,
        "valid": np.ones(num_frames, bool),
        "expression": "the Left cat, right of the dog",
        "video_id": "v",
        "frame_ids": [str(t) for t in range(num_frames)],
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("the leftmost dog", "the rightmost dog"),
        ("Right of the LEFT car, moving left", "Left of the RIGHT car, moving right"),
        ("turning leftwards on the left-hand side", "turning rightwards on the right-hand side"),
        ("a bright leftover box", "a bright leftover box"),
    ],
)
def test_swap_left_right(text: str, expected: str) -> None:
    assert swap_left_right(text) == expected
    assert swap_left_right(expected) == text


def test_flip_swaps_expression_and_mirrors() -> None:
    sample = _clip()
    out = ClipTransform(hflip_p=1.0)(sample)
    assert out["expression"] == "the Right cat, left of the dog"
    assert np.array_equal(out["frames"], sample["frames"][:, :, ::-1])
    assert np.array_equal(out["masks"], sample["masks"][:, :, ::-1])
    assert out["frame_ids"] == sample["frame_ids"] and out["video_id"] == "v"
    assert sample["expression"] == "the Left cat, right of the dog"  # input untouched


def test_flip_keeps_synthetic_expressions_true() -> None:
    dataset = SyntheticRVOSDataset(num_videos=30, num_frames=3, size=48, attributes=("motion",))
    flip = ClipTransform(hflip_p=1.0)
    for index in range(len(dataset)):
        sample = dataset.load_sample(index)
        flipped = flip(sample)
        if "moving" not in sample["expression"]:  # "the one that moves", "the still one"
            assert flipped["expression"] == sample["expression"]
            continue
        direction = sample["expression"].split()[-1]
        mirrored = {"left": "right", "right": "left"}.get(direction, direction)
        assert flipped["expression"].endswith("moving " + mirrored)
        xs = [np.nonzero(mask)[1].mean() for mask in flipped["masks"]]
        if mirrored in ("left", "right"):  # the target really moves the way the text says
            assert (xs[-1] > xs[0]) == (mirrored == "right")


def test_train_transform_same_draw_for_every_frame() -> None:
    sample = _clip(num_frames=4)
    sample["frames"][:] = sample["frames"][0]  # identical frames stay identical
    torch.manual_seed(1)
    out = train_transform(50, color_jitter=0.4)(sample)
    assert out["frames"].shape == (4, 64, 64, 3) and out["masks"].shape == (4, 64, 64)
    assert out["unpadded_size"] == (50, 50) and out["orig_size"] == (40, 60)
    for t in range(1, 4):
        assert np.array_equal(out["frames"][t], out["frames"][0])
        assert np.array_equal(out["masks"][t], out["masks"][0])
    torch.manual_seed(1)
    again = train_transform(50, color_jitter=0.4)(sample)
    assert np.array_equal(again["frames"], out["frames"])  # reproducible under torch's seed


def test_train_transform_keeps_masks_aligned() -> None:
    sample = _clip()
    for seed in range(5):
        torch.manual_seed(seed)
        out = train_transform((48, 64), color_jitter=None, pad_divisor=None)(sample)
        red = out["frames"][..., 0] > 165
        if out["masks"].any():
            assert (red == out["masks"].astype(bool)).mean() > 0.97


def test_eval_transform_and_restore() -> None:
    sample = _clip(2, 97, 131)
    sample["masks"][:, 10:80, 20:110] = 1
    out = eval_transform(64)(sample)
    assert out["unpadded_size"] == (64, 86) and out["frames"].shape == (2, 64, 96, 3)
    assert out["orig_size"] == (97, 131)
    item = to_tensors(out)
    logits = item["masks"] * 8 - 4  # a perfect prediction at the model's resolution
    restored = restore_size(logits, out["orig_size"], out["unpadded_size"])
    assert restored.shape == (2, 97, 131)
    truth = torch.from_numpy(sample["masks"]).bool()
    iou = ((restored > 0) & truth).sum() / ((restored > 0) | truth).sum()
    assert iou > 0.97
    nearest = restore_size(item["masks"].bool(), out["orig_size"], out["unpadded_size"])
    assert nearest.dtype == torch.bool and nearest.shape == (2, 97, 131)
    capped = eval_transform(64, max_size=64)(sample)
    assert capped["unpadded_size"] == (47, 64) and capped["frames"].shape[1:3] == (64, 64)


def test_to_tensors_normalises() -> None:
    item = to_tensors(_clip())
    assert item["frames"].shape == (3, 3, 40, 60) and item["frames"].dtype == torch.float32
    assert item["masks"].dtype == torch.float32 and item["valid"].dtype == torch.bool
    original = torch.from_numpy(_clip()["frames"]).permute(0, 3, 1, 2).float() / 255
    assert torch.allclose(denormalize(item["frames"]), original, atol=1e-5)
    padded = eval_transform(8)(_clip(1, 8, 10))  # padding is the mean colour: 0 once normalised
    assert to_tensors(padded)["frames"][0, :, :, 10:].abs().max() < 0.01


def test_bad_input_messages() -> None:
    with pytest.raises(ValueError, match=r"sample\['frames'\] must be a \(T, H, W, 3\)"):
        ClipTransform()({"frames": np.zeros((4, 4, 3), np.uint8), "masks": None})
    with pytest.raises(ValueError, match=r"sample\['masks'\] must be a \(T, H, W\)"):
        ClipTransform()({"frames": np.zeros((1, 4, 4, 3), np.uint8), "masks": np.zeros((4, 4))})
    with pytest.raises(ValueError, match="size must be an int or"):
        train_transform((1, 2, 3))
    with pytest.raises(ValueError, match="hflip_p must be in"):
        ClipTransform(hflip_p=2)
    with pytest.raises(ValueError, match=r"unpadded_size \(90, 90\) exceeds"):
        restore_size(torch.zeros(64, 64), (100, 100), (90, 90))


def test_workers_draw_different_augmentations() -> None:
    dataset = SyntheticRVOSDataset(
        num_videos=16,
        num_frames=2,
        size=32,
        min_objects=1,
        max_objects=1,
        attributes=("motion",),
        directions=("left",),
        transform=ClipTransform(hflip_p=0.5),
    )
    loader = DataLoader(dataset, batch_size=8, num_workers=2, collate_fn=lambda items: items)
    flags = [[item["expression"].endswith("right") for item in batch] for batch in loader]
    assert flags[0] != flags[1]  # the two workers do not repeat one random stream
