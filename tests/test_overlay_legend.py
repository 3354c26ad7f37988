"""Overlay legends (colour -> expression) and small animations."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from rvoslib.animation import (
    AnimationWriter,
    choose_overlay_format,
    mp4_available,
    save_animation,
)
from rvoslib.overlay import LEGEND_POSITIONS, davis_colors, draw_legend, overlay_masks


def _seeded(frames: int = 3, height: int = 40, width: int = 60):
    generator = torch.Generator().manual_seed(0)
    video = torch.randint(0, 256, (frames, 3, height, width), generator=generator)
    ids = torch.randint(0, 4, (frames, height, width), generator=generator)
    return video.to(torch.uint8), ids


def test_no_labels_is_bit_identical_to_before():
    frames, ids = _seeded()
    # sha256 of the output of the overlay before legends existed (same seeded inputs)
    expected = {
        "davis": "308b2d6e54729ee795fb44d0ffb00ffafea879c53a9e152b112135021349cbb8",
        "tab10": "f51dd98543c0a5133ad9346fe1296669a683638efed45e9f2b87214eb5669f31",
    }
    for colormap, digest in expected.items():
        out = overlay_masks(frames, ids, 0.4, colormap)
        assert hashlib.sha256(out.tobytes()).hexdigest() == digest


def test_legend_swatches_have_the_object_colours():
    frames = torch.zeros(2, 3, 360, 640, dtype=torch.uint8)
    masks = torch.zeros(2, 2, 360, 640, dtype=torch.bool)  # (N, T, H, W)
    masks[0, :, 200:300, 100:200] = True
    masks[1, :, 200:300, 400:500] = True
    plain = overlay_masks(frames, masks)
    out = overlay_masks(frames, masks, labels=["a swan", "the water"])
    colors = davis_colors(3)[1:]
    box = out[:, :100, :320]  # the legend is in the top-left corner
    for color in colors:
        assert (box == color).all(-1).sum() >= 2 * 10 * 10  # a >= 10x10 swatch per frame
    white = (box == 255).all(-1).sum()
    assert white > 0  # the text
    # outside the legend nothing changed
    np.testing.assert_array_equal(out[:, 150:], plain[:, 150:])
    np.testing.assert_array_equal(out[:, :, 330:], plain[:, :, 330:])


def test_legend_positions_long_labels_and_single_frames():
    image = np.full((90, 160, 3), 50, np.uint8)
    long = "the man in a red shirt who walks to the left past the parked car " * 3
    for position in LEGEND_POSITIONS:
        out = draw_legend(image, [long], [(0, 200, 0)], position)
        assert out.shape == image.shape and out.dtype == np.uint8
        assert (out == (0, 200, 0)).all(-1).any()  # the swatch
        changed = np.argwhere((out != image).any(-1))
        (top, left), (bottom, right) = changed.min(0), changed.max(0)
        assert top == 4 if position.startswith("top") else bottom == 90 - 5
        assert left == 4 if position.endswith("left") else right == 160 - 5
        assert changed[:, 1].max() - changed[:, 1].min() < 160 * 2 // 3 + 8  # cut, ellipsis
    np.testing.assert_array_equal(image, 50)  # input untouched
    tiny = draw_legend(np.zeros((6, 8, 3), np.uint8), ["x", "y"], [(1, 2, 3), (4, 5, 6)])
    assert tiny.shape == (6, 8, 3)


def test_legend_with_a_colormap_and_absent_objects():
    frames, ids = _seeded(frames=1)
    ids[:] = 0
    ids[:, :5, :5] = 1
    out = overlay_masks(frames, ids, colormap=[(9, 9, 9), (7, 7, 7)], labels=["a", "b"])
    assert (out == (7, 7, 7)).all(-1).any()  # object 2 is listed though absent


def test_legend_errors():
    frames, ids = _seeded()
    with pytest.raises(
        ValueError, match="labels must name every object: masks hold object ids up to 3, got 1"
    ):
        overlay_masks(frames, ids, labels=["one"])
    with pytest.raises(TypeError, match="labels must be a list of str"):
        overlay_masks(frames, ids, labels="one")
    with pytest.raises(ValueError, match="position must be one of"):
        overlay_masks(frames, ids, labels=["a", "b", "c"], legend_position="middle")
    with pytest.raises(ValueError, match=r"colors of shape \(2, 3\), got 2 labels"):
        draw_legend(np.zeros((8, 8, 3), np.uint8), ["a", "b"], [(1, 2, 3)])
    with pytest.raises(ValueError, match="at least one label"):
        draw_legend(np.zeros((8, 8, 3), np.uint8), [], np.zeros((0, 3)))


def _video(frames: int = 12, height: int = 72, width: int = 128):
    ramp = np.linspace(0, 255, width, dtype=np.float32)
    video = np.zeros((frames, height, width, 3), np.uint8)
    for t in range(frames):
        video[t] = np.roll(ramp, 4 * t)[None, :, None].astype(np.uint8)
    masks = np.zeros((frames, height, width), bool)
    for t in range(frames):
        masks[t, 20:50, 10 + 3 * t : 40 + 3 * t] = True
    return video, masks


def test_gif_global_palette_step_and_max_width(tmp_path):
    video, masks = _video()
    path = save_animation(video, tmp_path / "a.gif", masks, frame_step=2, max_width=64)
    with Image.open(path) as gif:
        assert gif.n_frames == 6 and gif.size == (64, 36)
        assert gif.info["duration"] == 200  # 10 fps, every second frame
        assert gif.palette is not None
    with AnimationWriter(tmp_path / "b.gif", fps=5, frame_step=3, max_width=32) as writer:
        for image in video:
            writer.add(image)
    with Image.open(tmp_path / "b.gif") as gif:
        assert gif.n_frames == 4 and gif.size == (32, 18)
    assert writer.count == 12


def test_gif_is_smaller_than_per_frame_palettes(tmp_path):
    video, masks = _video(frames=20, height=180, width=320)
    small = save_animation(video, tmp_path / "small.gif", masks)
    frames = [Image.fromarray(image).quantize(256) for image in overlay_masks(video, masks)]
    frames[0].save(tmp_path / "old.gif", save_all=True, append_images=frames[1:], loop=0)
    assert small.stat().st_size < (tmp_path / "old.gif").stat().st_size


def test_animation_option_errors(tmp_path):
    video, _ = _video(frames=2)
    with pytest.raises(ValueError, match="frame_step must be an int >= 1, got 0"):
        save_animation(video, tmp_path / "a.gif", frame_step=0)
    with pytest.raises(ValueError, match="max_width must be an int >= 1 or None, got -3"):
        AnimationWriter(tmp_path / "a.gif", max_width=-3)
    with pytest.raises(ValueError, match=r"colors must be an int in \[2, 256\], got 1"):
        save_animation(video, tmp_path / "a.gif", colors=1)
    with pytest.raises(ValueError, match="palette must be one of"):
        AnimationWriter(tmp_path / "a.gif", palette="web")
    with pytest.raises(ValueError, match="labels name the objects of masks"):
        save_animation(video, tmp_path / "a.gif", labels=["a"])
    with pytest.raises(ValueError, match="num_frames must be >= 0, got -1"):
        choose_overlay_format(-1)


def test_choose_overlay_format(monkeypatch):
    import rvoslib.animation as animation

    assert choose_overlay_format(10) == "gif"
    monkeypatch.setattr(animation, "mp4_available", lambda: True)
    assert choose_overlay_format(100) == "gif"
    assert choose_overlay_format(101) == "mp4"
    assert choose_overlay_format(30, max_gif_frames=20) == "mp4"
    monkeypatch.setattr(animation, "mp4_available", lambda: False)
    assert choose_overlay_format(1000) == "gif"


def test_mp4_available_is_a_bool():
    assert isinstance(mp4_available(), bool)


def test_per_frame_palette_and_mp4_step_and_width(tmp_path):
    video, masks = _video()
    path = save_animation(video, tmp_path / "a.gif", masks, palette="per-frame", frame_step=4)
    with Image.open(path) as gif:
        assert gif.n_frames == 3 and gif.size == (128, 72)
    if not mp4_available():
        pytest.skip("no MP4 writer here (opencv-python-headless or imageio with av)")
    import cv2

    save_animation(video, tmp_path / "a.mp4", masks, frame_step=3, max_width=64)
    with AnimationWriter(tmp_path / "b.mp4", frame_step=5, max_width=32) as writer:
        for image in video:
            writer.add(image)
    for name, frames, width in (("a.mp4", 4, 64), ("b.mp4", 3, 32)):
        capture = cv2.VideoCapture(str(tmp_path / name))
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == frames
        assert int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) == width
        capture.release()
