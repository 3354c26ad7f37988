"""The Video Swin backbone (torchvision ``SwinTransformer3d`` with (1, 4, 4) patches)."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import save_file
from torchvision.models.video import swin_transformer as tv_swin

from rvoslib.models.backbones.video_swin import VideoSwinBackbone
from rvoslib.models.registry import BACKBONES

ARCH = {"embed_dim": 8, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1]}
TINY = {**ARCH, "window_size": [4, 3, 3]}  # small windows build fast


def tiny_torchvision_state(window_size=(4, 3, 3)) -> dict[str, torch.Tensor]:
    """A randomly initialised torchvision Video Swin with the standard (2, 4, 4) patch kernel."""
    swin = tv_swin.SwinTransformer3d(patch_size=[2, 4, 4], window_size=list(window_size), **ARCH)
    return swin.state_dict()


@pytest.mark.parametrize(
    ("out_strides", "channels"),
    [((4, 8, 16, 32), [8, 16, 32, 64]), ((4, 8, 16), [8, 16, 32]), ((32, 8), [16, 64])],
)
def test_levels_shapes_strides_channels(out_strides, channels) -> None:
    backbone = VideoSwinBackbone(out_strides=out_strides, **TINY).eval()
    assert backbone.out_channels == channels
    assert backbone.strides == sorted(out_strides)
    features = backbone(torch.randn(2, 3, 3, 97, 131))
    assert len(features) == len(channels)
    for feature, c, s in zip(features, backbone.out_channels, backbone.strides):
        assert feature.shape == (2, 3, c, math.ceil(97 / s), math.ceil(131 / s))
    deepest = max(backbone.strides)
    assert len(backbone.features) == 2 * [4, 8, 16, 32].index(deepest) + 1  # later stages dropped


def test_clip_longer_than_the_temporal_window() -> None:
    backbone = VideoSwinBackbone(out_strides=(4, 8), **{**TINY, "window_size": [2, 3, 3]}).eval()
    features = backbone(torch.randn(1, 5, 3, 33, 21))
    assert [tuple(f.shape) for f in features] == [(1, 5, 8, 9, 6), (1, 5, 16, 5, 3)]


def test_registered_names_and_spec() -> None:
    backbone = BACKBONES.build({"name": "video_swin_s", "out_strides": [4, 8], **TINY})
    assert isinstance(backbone, VideoSwinBackbone) and backbone.model_name == "swin3d_s"
    assert BACKBONES.spec_of(backbone)["name"] == "video_swin_s"
    assert BACKBONES.get("video_swin_t") is BACKBONES.get("video_swin_b") is VideoSwinBackbone


@pytest.mark.slow  # 2-5 s on 2 busy CPU cores
def test_default_swin3d_t_construction() -> None:
    backbone = VideoSwinBackbone("swin3d_t", out_strides=(4, 8, 16))  # MTTR's levels
    assert backbone.out_channels == [96, 192, 384] and backbone.strides == [4, 8, 16]
    assert backbone.patch_embed.proj.weight.shape == (96, 3, 1, 4, 4)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_weights_file_sums_the_patch_kernel_over_time(tmp_path, suffix) -> None:
    state = tiny_torchvision_state()
    path = tmp_path / f"swin{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    backbone = VideoSwinBackbone(out_strides=(4, 8, 16), checkpoint_path=path, **TINY).eval()
    kernel = backbone.patch_embed.proj.weight
    assert kernel.shape == (8, 3, 1, 4, 4)
    assert torch.allclose(kernel, state["patch_embed.proj.weight"].sum(dim=2, keepdim=True))
    assert torch.equal(
        backbone.features[4][0].attn.qkv.weight, state["features.4.0.attn.qkv.weight"]
    )
    # a still clip: two identical frames through the (2, 4, 4) kernel == one frame through the sum
    original = tv_swin.SwinTransformer3d(patch_size=[2, 4, 4], **TINY)
    original.load_state_dict(state)
    frame = torch.randn(1, 3, 1, 16, 20)
    expected = original.patch_embed(frame.expand(1, 3, 2, 16, 20))
    assert torch.allclose(backbone.patch_embed(frame), expected, atol=1e-5)


def test_pretrained_loads_torchvision_kinetics_weights(monkeypatch) -> None:
    state = tiny_torchvision_state()
    requested = []

    def fake_get_state_dict(self, *args, **kwargs):  # no download in tests
        requested.append(self)
        return state

    monkeypatch.setattr(tv_swin.Swin3D_T_Weights, "get_state_dict", fake_get_state_dict)
    backbone = BACKBONES.build({"name": "video_swin_t", **TINY}, pretrained=True)
    assert requested == [tv_swin.Swin3D_T_Weights.KINETICS400_V1]
    expected = state["patch_embed.proj.weight"].sum(dim=2, keepdim=True)
    assert torch.allclose(backbone.patch_embed.proj.weight, expected)


def test_temporal_window_mixes_frames() -> None:
    frames = torch.randn(1, 3, 3, 32, 32)
    changed = frames.clone()
    changed[:, 0] += 1.0
    mixing = VideoSwinBackbone(out_strides=(4,), **TINY).eval()
    with torch.no_grad():
        before, after = mixing(frames)[0], mixing(changed)[0]
    assert not torch.allclose(before[:, 2], after[:, 2], atol=1e-4)  # frame 0 reaches frame 2
    per_frame = VideoSwinBackbone(out_strides=(4,), **{**TINY, "window_size": [1, 3, 3]}).eval()
    with torch.no_grad():
        before, after = per_frame(frames)[0], per_frame(changed)[0]
    assert torch.equal(before[:, 1:], after[:, 1:])  # a window of one frame: frames independent


def test_norm_outputs_normalises_each_level() -> None:
    backbone = VideoSwinBackbone(out_strides=(4, 8), norm_outputs=True, **TINY).eval()
    for feature in backbone(torch.randn(1, 2, 3, 32, 32)):
        assert torch.allclose(feature.mean(dim=2), torch.zeros(()), atol=1e-4)


def test_errors(tmp_path) -> None:
    with pytest.raises(
        ValueError, match=r"out_strides must be a non-empty subset of \(4, 8, 16, 32\)"
    ):
        VideoSwinBackbone(out_strides=(4, 64), **TINY)
    with pytest.raises(ValueError, match=r"subset of \(4, 8, 16\) for 3 stages, got \[32\]"):
        VideoSwinBackbone(out_strides=(32,), embed_dim=8, depths=[1, 1, 1], num_heads=[1, 1, 1])
    with pytest.raises(ValueError, match="out_strides must be a non-empty subset"):
        VideoSwinBackbone(out_strides=(), **TINY)
    with pytest.raises(KeyError, match="unknown Video Swin model 'swin3d_x'"):
        VideoSwinBackbone("swin3d_x")
    with pytest.raises(ValueError, match="depths and num_heads must have the same length"):
        VideoSwinBackbone(embed_dim=8, depths=[1, 1], num_heads=[1])
    with pytest.raises(
        ValueError, match=r"window_size must be 3 sizes >= 1 \(t, h, w\), got \[7, 7\]"
    ):
        VideoSwinBackbone(**{**TINY, "window_size": [7, 7]})
    with pytest.raises(FileNotFoundError, match="checkpoint_path .*missing.pth' does not exist"):
        VideoSwinBackbone(checkpoint_path=tmp_path / "missing.pth", **TINY)
    wrong = tmp_path / "wrong.pth"
    torch.save(
        {k.replace("features.", "layers."): v for k, v in tiny_torchvision_state().items()}, wrong
    )
    with pytest.raises(
        ValueError, match=r"does not fit this Video Swin backbone .* missing keys, e.g. \['features"
    ):
        VideoSwinBackbone(checkpoint_path=wrong, **TINY)
    other_window = tmp_path / "window.pth"
    torch.save(tiny_torchvision_state(window_size=(2, 3, 3)), other_window)
    with pytest.raises(
        ValueError,
        match=r"other shapes than this Video Swin backbone \(another model size or window_size\?\)"
        r": 4 keys, e.g. \['features.0.0.attn.relative_position_bias_table: "
        r"\(75, 1\) vs \(175, 1\)",
    ):
        VideoSwinBackbone(checkpoint_path=other_window, **TINY)
    backbone = VideoSwinBackbone(out_strides=(4,), **TINY)
    with pytest.raises(ValueError, match=r"frames must be \(B, T, 3, H, W\), got \(2, 3, 32, 32\)"):
        backbone(torch.randn(2, 3, 32, 32))
