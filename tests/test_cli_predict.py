"""The ``rvos predict`` and ``rvos export`` commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import rvoslib
from rvoslib.cli import main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt") / "tiny"
    rvoslib.create_model("tiny").save_pretrained(folder)
    return folder


@pytest.fixture
def video(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(5):
        pixels = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img_{index:03d}.jpg")
    return folder


def test_predict_writes_masks_and_overlays(checkpoint, video, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["predict", "--checkpoint", str(checkpoint), "--video", str(video),
                 "--text", "the red circle", "--text", "a dog", "--out", str(out),
                 "--overlay", "--size", "32", "--clip-len", "3", "--overlap", "1",
                 "--threshold", "0.01"])  # fmt: skip
    assert code == 0
    for expression in ("0", "1"):
        files = sorted(p.name for p in (out / expression).iterdir())
        assert files == [f"img_{i:03d}.png" for i in range(5)]
    with Image.open(out / "0" / "img_000.png") as mask:
        assert mask.mode == "P" and mask.size == (53, 37)
        assert mask.getpalette()[3:6] == [128, 0, 0]
        assert set(np.unique(np.asarray(mask))) <= {0, 1}
    assert len(list((out / "overlay").glob("*.png"))) == 5
    assert (out / "overlay.gif").is_file()
    index = json.loads((out / "expressions.json").read_text())
    assert index["expressions"] == {"0": "the red circle", "1": "a dog"}
    assert index["frames"] == 5
    assert "frames/s" in capsys.readouterr().err


def test_predict_ytvos_format(checkpoint, video, tmp_path):
    out = tmp_path / "out"
    code = main(["predict", "--checkpoint", str(checkpoint), "--video", str(video), "--text",
                 "x", "--out", str(out), "--format", "ytvos", "--size", "32", "--no-progress",
                 "--threshold", "0.01"])  # fmt: skip
    assert code == 0
    with Image.open(out / "0" / "img_004.png") as mask:
        assert mask.mode == "L"
        assert set(np.unique(np.asarray(mask))) <= {0, 255}


def test_predict_errors_name_the_problem(checkpoint, video, tmp_path, capsys):
    args = ["predict", "--out", str(tmp_path / "o"), "--size", "32"]
    assert main([*args, "--checkpoint", str(tmp_path), "--video", str(video), "--text", "x"]) == 2
    assert "config.json" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([*args, "--checkpoint", str(checkpoint), "--video", str(empty), "--text", "x"]) == 2
    assert str(empty) in capsys.readouterr().err
    assert main([*args, "--checkpoint", str(checkpoint), "--video", str(video), "--text", " "]) == 2
    assert "empty" in capsys.readouterr().err


def test_export_torchscript(checkpoint, tmp_path, capsys):
    out = tmp_path / "model.pt"
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "torchscript",
                 "--out", str(out)]) == 0  # fmt: skip
    assert out.is_file()
    code = main(["export", "--checkpoint", str(checkpoint), "--format", "torchscript",
                 "--out", str(out), "--check"])  # fmt: skip
    assert code == 2
    assert "--check compares ONNX" in capsys.readouterr().err


def test_predict_overlay_format_and_legend(checkpoint, video, tmp_path, monkeypatch):
    from rvoslib import animation, overlay

    labels_seen = []
    real = overlay.overlay_masks

    def recording(*args, **kwargs):
        labels_seen.append(kwargs.get("labels"))
        return real(*args, **kwargs)

    monkeypatch.setattr("rvoslib.viz.overlay_masks", recording)
    out = tmp_path / "out"
    argv = ["predict", "--checkpoint", str(checkpoint), "--video", str(video), "--text", "a dog",
            "--out", str(out), "--overlay", "--size", "32", "--no-progress"]  # fmt: skip
    if animation.mp4_available():
        assert main([*argv, "--overlay-format", "mp4"]) == 0
        assert (out / "overlay.mp4").is_file() and not (out / "overlay.gif").exists()
    else:
        assert main([*argv, "--overlay-format", "gif"]) == 0
    assert labels_seen and labels_seen[0] == ["a dog"]
    monkeypatch.setattr(animation, "choose_overlay_format", lambda n, **_: "gif")
    assert main([*argv, "--overwrite"]) == 0  # auto: chosen by the video's length
    assert (out / "overlay.gif").is_file()
