"""``examples/predict_video.py``: a model folder on a small synthetic video, and its figure."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import rvoslib

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "predict_video.py"


def _run(monkeypatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *args])
    runpy.run_path(str(SCRIPT), run_name="__main__")


def test_checkpoint_on_a_square_synthetic_video(tmp_path, monkeypatch, capsys):
    torch.manual_seed(0)
    rvoslib.create_model("tiny").save_pretrained(tmp_path / "model")
    out = tmp_path / "predictions"
    _run(
        monkeypatch,
        "--checkpoint", str(tmp_path / "model"), "--synthetic-size", "32", "--size", "32",
        "--seed", "5", "--frames", "4", "--clip-len", "4", "--interpolation", "nearest",
        "--figure-colors", "64", "--out", str(out),
    )  # fmt: skip
    assert "4 frames" in capsys.readouterr().out
    masks = sorted((out / "0").glob("*.png"))
    assert len(masks) == 4
    assert np.asarray(Image.open(masks[0])).shape == (32, 32)  # the video's own size
    with Image.open(out / "overlay.png") as figure:
        assert figure.mode == "P" and len(figure.getcolors(256)) <= 64
    assert (out / "overlay.gif").stat().st_size > 0


def test_default_video_is_unchanged_and_options_are_checked(tmp_path, monkeypatch):
    script = runpy.run_path(str(SCRIPT))
    frames, expression, truth = script["synthetic_video"]()
    assert frames.shape == (12, 3, 96, 160) and frames.dtype == torch.uint8
    assert truth.shape == (12, 96, 160) and truth.any() and expression
    with pytest.raises(SystemExit):
        _run(monkeypatch, "--synthetic-size", "1", "2", "3", "--out", str(tmp_path))
    with pytest.raises(SystemExit):
        _run(monkeypatch, "--figure-colors", "1000", "--out", str(tmp_path))
