"""Overlays, clip figures, animations and training curves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rvoslib.viz import davis_colors, overlay_masks, plot_clip, plot_history, save_animation


def _clip(num_frames=3, height=20, width=30):
    frames = torch.full((num_frames, 3, height, width), 100, dtype=torch.uint8)
    masks = torch.zeros(num_frames, height, width, dtype=torch.bool)
    masks[:, 5:15, 10:20] = True
    return frames, masks


def test_overlay_blends_inside_masks_only():
    frames, masks = _clip()
    out = overlay_masks(frames, masks, alpha=0.5, contour=False)
    assert out.shape == (3, 20, 30, 3) and out.dtype == np.uint8
    assert out[0, 10, 15].tolist() == [114, 50, 50]  # (100 + 128) / 2, 100 / 2
    assert out[0, 0, 0].tolist() == [100, 100, 100]


def test_overlay_layouts_ids_and_colormaps():
    frames, masks = _clip()
    floats = frames.permute(0, 2, 3, 1).numpy() / 255.0
    ids = masks.long() * 2
    out = overlay_masks(floats, ids, alpha=1.0, contour=False)
    assert out[1, 10, 15].tolist() == davis_colors(3)[2].tolist()
    stacked = torch.stack([masks, torch.zeros_like(masks)])  # (N, T, H, W)
    custom = overlay_masks(frames, stacked, alpha=1.0, colormap=[(1, 2, 3), (4, 5, 6)])
    assert custom[0, 10, 15].tolist() == [1, 2, 3]
    single = overlay_masks(frames[0], masks[0], colormap="tab10")
    assert single.shape == (20, 30, 3)


def test_overlay_errors():
    frames, masks = _clip()
    with pytest.raises(ValueError, match="masks must be"):
        overlay_masks(frames, masks[:2])
    with pytest.raises(ValueError, match="alpha"):
        overlay_masks(frames, masks, alpha=2.0)
    with pytest.raises(ValueError, match="colormap"):
        overlay_masks(frames, masks, colormap="no-such-map")


def test_plot_clip_titles_and_rows(tmp_path):
    frames, masks = _clip(num_frames=5)
    figure = plot_clip(frames, masks, masks, video_id="blackswan", expression="a swan")
    assert figure._suptitle.get_text() == 'blackswan - "a swan"'
    assert len(figure.axes) == 3 * 5
    figure.savefig(tmp_path / "clip.png")
    assert (tmp_path / "clip.png").stat().st_size > 0


def test_save_animation_gif_and_mp4(tmp_path):
    frames, masks = _clip()
    frames = frames // torch.arange(1, 4, dtype=torch.uint8).view(3, 1, 1, 1)  # distinct frames
    gif = save_animation(frames, tmp_path / "a.gif", masks, fps=5)
    from PIL import Image

    with Image.open(gif) as image:
        assert image.n_frames == 3
    pytest.importorskip("cv2")
    mp4 = save_animation(frames, tmp_path / "a.mp4", masks)
    assert mp4.stat().st_size > 0
    with pytest.raises(ValueError, match="path must end"):
        save_animation(frames, tmp_path / "a.avi")


def test_plot_history_panels(tmp_path):
    history = [
        {"epoch": e, "train_loss": 1 / (e + 1), "val_loss": 1.2 / (e + 1), "train_iou": 0.1 * e,
         "J": 0.1 * e, "F": 0.12 * e, "JF": 0.11 * e, "lr": 1e-3 * 0.5**e}
        for e in range(4)
    ]  # fmt: skip
    history[1]["val_loss"] = None
    figure = plot_history(history)
    assert [axis.get_title() for axis in figure.axes] == ["loss", "IoU / J&F", "learning rate"]
    assert figure.axes[2].get_yscale() == "log"
    assert len(figure.axes[0].lines[1].get_xdata()) == 3  # the None is skipped
    figure.savefig(tmp_path / "history.png")
    only_loss = plot_history([{"train_loss": 1.0}, {"train_loss": 0.5}])
    assert len(only_loss.axes) == 1
    with pytest.raises(ValueError, match="none of the plotted keys"):
        plot_history([{"foo": 1}])
    with pytest.raises(ValueError, match="non-empty"):
        plot_history([])
