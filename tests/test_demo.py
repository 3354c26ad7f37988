"""The browser demo (``rvos demo``): the app on a free port called with gradio_client, the VOS
variant, uploads, and the messages without Gradio."""

from __future__ import annotations

import builtins
import os
import shutil
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import rvoslib
from rvoslib.cli import main
from rvoslib.demo import (
    INSTALL_HINT,
    build_demo,
    default_samples_root,
    find_samples,
    launch_demo,
    make_handler,
    parse_expressions,
    read_upload,
    require_gradio,
    sample_expressions,
    segment_video,
)
from tests._davis_mini import require_davis_mini


@pytest.fixture(scope="module")
def text_model(tmp_path_factory) -> rvoslib.SegmentationModel:
    folder = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    rvoslib.create_model("tiny").save_pretrained(folder)
    return rvoslib.SegmentationModel.from_pretrained(folder)


@pytest.fixture(scope="module")
def vos_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return rvoslib.create_model("s2s-tiny")


def _frames(folder: Path, count: int = 3, size: tuple[int, int] = (40, 56)) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        pixels = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:05d}.png")
    return folder


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_app_on_a_free_port_with_gradio_client(text_model, tmp_path, monkeypatch):
    pytest.importorskip("gradio", reason="the demo extra (gradio) is not installed")
    client_module = pytest.importorskip("gradio_client", reason="gradio_client not installed")
    davis = require_davis_mini()
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    sample = tmp_path / "samples" / "blackswan"
    sample.mkdir(parents=True)
    for index in range(3):
        name = f"{index:05d}.jpg"
        shutil.copy(davis / "JPEGImages" / "480p" / "blackswan" / name, sample / name)
    demo = build_demo(text_model, tmp_path / "samples", device="cpu", size=64)
    url = launch_demo(demo, port=_free_port(), block=False)
    try:
        client = client_module.Client(url, verbose=False)
        preview, overlay, masks = client.predict(
            "blackswan", None, "a black swan\nthe water", api_name="/segment"
        )
    finally:
        demo.close()
    assert Path(preview).is_file() and Path(overlay).is_file()
    with Image.open(overlay) as animation:
        assert animation.n_frames == 3
    with zipfile.ZipFile(masks) as archive:
        names = archive.namelist()
        assert names == ["00000.png", "00001.png", "00002.png"]
        for name in names:
            with Image.open(archive.open(name)) as png:
                assert png.size == (854, 480) and png.mode == "P"
                assert set(np.unique(np.asarray(png))) <= {0, 1, 2}


def test_vos_checkpoint_asks_for_a_first_frame_mask(vos_model, tmp_path):
    gradio = pytest.importorskip("gradio", reason="the demo extra (gradio) is not installed")
    demo = build_demo(vos_model, {"clip": _frames(tmp_path / "clip")}, device="cpu")
    labels = [getattr(block, "label", None) for block in demo.blocks.values()]
    assert "First-frame mask (indexed PNG: pixel = object id)" in labels
    assert "Expressions (one per line)" not in labels
    assert any(isinstance(block, gradio.File) for block in demo.blocks.values())


def test_vos_handler_message_and_result(vos_model, tmp_path):
    frames = _frames(tmp_path / "clip")
    handler = make_handler(
        vos_model, {"clip": frames}, device="cpu", size=40, work_dir=tmp_path / "w"
    )
    with pytest.raises(ValueError, match="VOS model: upload the first frame's mask"):
        handler("clip", None, None)
    mask = np.zeros((40, 56), np.uint8)
    mask[5:20, 5:30], mask[25:35, 30:50] = 1, 2
    Image.fromarray(mask).save(tmp_path / "first.png")
    preview, overlay, masks = handler("clip", None, str(tmp_path / "first.png"))
    assert Path(preview).is_file() and Path(overlay).suffix == ".gif"
    with zipfile.ZipFile(masks) as archive:
        assert len(archive.namelist()) == 3
        with Image.open(archive.open("00000.png")) as png:
            assert png.size == (56, 40)


def test_text_handler_errors_and_uploads(text_model, tmp_path):
    frames = _frames(tmp_path / "clip")
    handler = make_handler(
        text_model, {"clip": frames}, device="cpu", size=40, work_dir=tmp_path / "w"
    )
    with pytest.raises(ValueError, match="expressions: type at least one expression"):
        handler("clip", None, "  \n")
    with pytest.raises(ValueError, match="video: pick a sample video or upload one"):
        handler(None, None, "a cat")
    with pytest.raises(ValueError, match=r"sample must be one of \['clip'\], got 'nope'"):
        handler("nope", None, "a cat")
    images = [Image.open(path).convert("RGB") for path in sorted(frames.iterdir())]
    images[0].save(tmp_path / "clip.gif", save_all=True, append_images=images[1:])
    with zipfile.ZipFile(tmp_path / "clip.zip", "w") as archive:
        for path in sorted(frames.iterdir()):
            archive.write(path, f"frames/{path.name}")
    for upload in (tmp_path / "clip.gif", tmp_path / "clip.zip"):
        _, overlay, masks = handler("clip", str(upload), "a cat\na dog")  # the upload wins
        with zipfile.ZipFile(masks) as archive:
            assert len(archive.namelist()) == 3
        assert Path(overlay).is_file()
    old = tmp_path / "w" / "request-old"
    old.mkdir()
    os.utime(old, (0, 0))  # a request folder from 1970 is removed by the next request
    handler("clip", None, "a cat")
    assert not old.exists() and Path(overlay).is_file()


def test_segment_video_messages(text_model, vos_model, tmp_path):
    frames = _frames(tmp_path / "clip", count=2)
    with pytest.raises(ValueError, match="referring model: give expressions"):
        segment_video(text_model, frames, tmp_path / "a", device="cpu")
    with pytest.raises(ValueError, match="VOS model: it segments the objects of a first-frame"):
        segment_video(vos_model, frames, tmp_path / "b", device="cpu")
    result = segment_video(
        text_model, frames, tmp_path / "c", expressions=["a"], device="cpu", size=40
    )
    assert result.num_frames == 2 and result.masks.is_file()


def test_read_upload(tmp_path):
    with pytest.raises(ValueError, match=r"video must be one of .*\.zip, got 'x\.txt'"):
        read_upload(tmp_path / "x.txt", tmp_path)
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as archive:
        archive.writestr("../notes.txt", "no frames")
    with pytest.raises(ValueError, match="video 'empty.zip' holds no frame"):
        read_upload(tmp_path / "empty.zip", tmp_path)
    assert read_upload(tmp_path / "a.mp4", tmp_path) == str(tmp_path / "a.mp4")


def test_samples_and_expressions(tmp_path, monkeypatch):
    assert find_samples(None) == {}
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        find_samples(tmp_path / "missing")
    root = tmp_path / "davis"
    _frames(root / "JPEGImages" / "480p" / "swan", count=1)
    (root / "JPEGImages" / "480p" / "walk.mp4").write_bytes(b"")
    (root / "meta_expressions.json").write_text(
        '{"videos": {"swan": {"expressions": {"0": {"exp": "a swan"}, "1": {"exp": "it"}}}}}'
    )
    samples = find_samples(root)
    assert sorted(samples) == ["swan", "walk"]
    assert sample_expressions(samples["swan"]) == ["a swan", "it"]
    assert sample_expressions(samples["walk"]) == []
    monkeypatch.setenv("RVOSLIB_DAVIS_MINI", str(root))
    assert default_samples_root() == root / "JPEGImages" / "480p"
    monkeypatch.setenv("RVOSLIB_DAVIS_MINI", str(tmp_path / "none"))
    assert default_samples_root() is None
    assert parse_expressions(" a\n\nb ") == ["a", "b"]


def test_missing_gradio_names_the_extra(monkeypatch, tmp_path, capsys, text_model):
    real_import = builtins.__import__

    def no_gradio(name, *args, **kwargs):
        if name == "gradio" or name.startswith("gradio."):
            raise ModuleNotFoundError("No module named 'gradio'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gradio)
    with pytest.raises(ModuleNotFoundError, match=r'needs Gradio.*pip install "rvoslib\[demo\]"'):
        require_gradio()
    with pytest.raises(ModuleNotFoundError, match="rvoslib\\[demo\\]"):
        build_demo(text_model)
    assert main(["demo", "--checkpoint", str(tmp_path)]) == 2
    assert INSTALL_HINT in capsys.readouterr().err


def test_cli_option_errors(capsys, tmp_path):
    pytest.importorskip("gradio", reason="the demo extra (gradio) is not installed")
    assert main(["demo", "--checkpoint", str(tmp_path), "--size", "0"]) == 2
    assert "--size must be >= 1, got 0" in capsys.readouterr().err
    assert main(["demo", "--checkpoint", str(tmp_path), "--port", "70000"]) == 2
    assert "--port must be in [1, 65535], got 70000" in capsys.readouterr().err
    assert main(["demo", "--checkpoint", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err


def test_cli_serves_the_app(monkeypatch, tmp_path, text_model):
    pytest.importorskip("gradio", reason="the demo extra (gradio) is not installed")
    import rvoslib.demo as demo_module

    text_model.save_pretrained(tmp_path / "model")
    seen = {}

    def fake_launch(demo, **kwargs):
        seen.update(kwargs, demo=demo)
        return "http://127.0.0.1:1/"

    monkeypatch.setattr(demo_module, "launch_demo", fake_launch)
    args = ["demo", "--checkpoint", str(tmp_path / "model"), "--port", "7861", "--share", "false"]
    assert main([*args, "--samples", str(tmp_path), "--device", "cpu"]) == 0
    assert seen["port"] == 7861 and seen["share"] is False and seen["host"] == "127.0.0.1"


def test_long_videos_get_an_mp4_overlay(text_model, tmp_path, monkeypatch):
    import rvoslib.animation as animation

    if not animation.mp4_available():
        pytest.skip("no MP4 writer here (opencv-python-headless or imageio with av)")
    monkeypatch.setattr(animation, "choose_overlay_format", lambda num_frames: "mp4")
    frames = _frames(tmp_path / "clip", count=2)
    result = segment_video(
        text_model, frames, tmp_path / "out", expressions=["a"], device="cpu", size=40
    )
    assert result.overlay.suffix == ".mp4" and result.overlay.stat().st_size > 0
    assert result.preview.suffix == ".gif" and result.preview.is_file()
