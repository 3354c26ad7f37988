"""The semi-supervised task through the CLI: train, eval and predict with a first-frame mask."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from rvoslib import create_model
from rvoslib.cli import main
from rvoslib.data import RefDAVISDataset, eval_transform
from rvoslib.data.vos import FirstFrameMaskDataset
from rvoslib.vos_inference import merge_objects, segment_from_first_mask

SMALL = [
    "--preset", "s2s-tiny", "--task", "vos", "--train-videos", "8", "--val-videos", "2",
    "--val-frames", "3", "--num-frames", "3", "--size", "32", "--batch-size", "4",
    "--epochs", "1", "--no-progress", "--overlays", "1", "--device", "cpu", "--no-tensorboard",
]  # fmt: skip


@pytest.fixture(scope="module")
def vos_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("vos") / "s2s"
    create_model("s2s-tiny").save_pretrained(folder)
    return folder


def test_train_vos_on_synthetic(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["preset"] == "s2s-tiny" and metrics["JF"] is not None
    assert (out / "best" / "config.json").is_file()
    assert main(["train", *SMALL[2:], "--out", str(tmp_path / "x")]) == 2  # tiny, task vos
    err = capsys.readouterr().err
    assert "the data (task 'vos') does not fit the model, which takes 'text' inputs" in err
    assert "(--task rvos or another --preset)" in err


def test_eval_vos_on_davis_mini(vos_checkpoint, davis_mini, capsys) -> None:
    argv = ["eval", "--json", "--checkpoint", str(vos_checkpoint), "--task", "vos",
            "--root", str(davis_mini)]  # fmt: skip
    assert main([*argv, "--size", "64", "--device", "cpu"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert rows[0] == {"protocol": "semi-supervised"} and rows[-1]["num_sequences"] == 2
    assert main(["eval", "--checkpoint", str(vos_checkpoint), "--root", str(davis_mini)]) == 2
    err = capsys.readouterr().err
    assert "the data (task 'rvos') does not fit the model, which takes 'first_mask' inputs" in err
    assert "(--task vos)" in err


def test_first_frame_mask_dataset_has_one_item_per_object(davis_mini) -> None:
    dataset = FirstFrameMaskDataset(RefDAVISDataset(davis_mini, transform=eval_transform(64)))
    assert len(dataset) == 2  # two videos, one object each (their 2 expressions collapse)
    item = dataset[0]
    assert item["first_mask"].shape == item["masks"].shape[1:]
    assert torch.equal(item["first_mask"], (item["masks"][0] > 0.5).float())


def test_predict_with_a_first_frame_mask(vos_checkpoint, davis_mini, tmp_path, capsys) -> None:
    video = davis_mini / "JPEGImages" / "480p" / "blackswan"
    mask = davis_mini / "Annotations" / "480p" / "blackswan" / "00000.png"
    out = tmp_path / "pred"
    argv = ["predict", "--checkpoint", str(vos_checkpoint), "--video", str(video)]
    assert main([*argv, "--mask", str(mask), "--out", str(out), "--size", "64"]) == 0
    frames = sorted((out / "masks").glob("*.png"))
    assert len(frames) == 50
    first = Image.open(frames[0])
    assert first.mode == "P" and first.size == (854, 480)
    assert main([*argv, "--mask", str(mask), "--out", str(out), "--size", "64"]) == 2
    assert "is not empty; pass --overwrite" in capsys.readouterr().err
    assert main([*argv, "--text", "the swan", "--out", str(tmp_path / "t")]) == 2
    assert (
        "the checkpoint's model takes 'first_mask' inputs (--mask FIRST_FRAME.png), got --text"
        in capsys.readouterr().err
    )


def test_first_mask_errors(vos_checkpoint, davis_mini, tmp_path) -> None:
    model = RVOSModel_from(vos_checkpoint)
    video = davis_mini / "JPEGImages" / "480p" / "blackswan"
    with pytest.raises(ValueError, match=r"is 20x10 \(W x H\) but the frames are 854x480"):
        segment_from_first_mask(model, video, np.ones((10, 20), np.uint8), size=64)
    empty = tmp_path / "empty.png"
    Image.fromarray(np.zeros((480, 854), np.uint8), mode="P").save(empty)
    with pytest.raises(ValueError, match="holds no object"):
        segment_from_first_mask(model, video, empty, size=64)
    with pytest.raises(TypeError, match="needs a VOS model"):
        segment_from_first_mask(create_model("tiny"), video, empty, size=64)


def RVOSModel_from(folder):
    from rvoslib import SegmentationModel

    return SegmentationModel.from_pretrained(folder)


def test_merge_objects_by_score() -> None:
    probabilities = torch.tensor([[[[0.9, 0.2, 0.6]]], [[[0.6, 0.4, 0.7]]]])
    assert merge_objects(probabilities, [1, 2]).tolist() == [[[1, 0, 2]]]
