"""rvoslib.convert.video_swin: original Video-Swin keys -> rvoslib's VideoSwinBackbone."""

from __future__ import annotations

import pytest
import torch

from rvoslib.convert.video_swin import (
    VIDEO_SWIN_SIZES,
    convert_video_swin,
    detect_window_size,
    relative_position_index,
)
from rvoslib.models.registry import BACKBONES


def original_swin_state(
    embed_dim: int = 8,
    depths: tuple[int, ...] = (1, 2, 1),
    heads: tuple[int, ...] = (1, 2, 2),
    window: tuple[int, int, int] = (2, 3, 3),
    prefix: str = "backbone.",
    merges: str = "downsamples",
    with_index: bool = True,
) -> dict[str, torch.Tensor]:
    """A random state dict with the keys and shapes of Video-Swin's SwinTransformer3D as MTTR
    (``downsamples.<i>``) or a plain model (``layers.<i>.downsample``) saves it."""
    generator = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    rows = (2 * window[0] - 1) * (2 * window[1] - 1) * (2 * window[2] - 1)
    state = {
        f"{prefix}patch_embed.proj.weight": rand(embed_dim, 3, 1, 4, 4),
        f"{prefix}patch_embed.proj.bias": rand(embed_dim),
        f"{prefix}patch_embed.norm.weight": rand(embed_dim),
        f"{prefix}patch_embed.norm.bias": rand(embed_dim),
    }
    for stage, (depth, head) in enumerate(zip(depths, heads)):
        dim = embed_dim * 2**stage
        for block in range(depth):
            key = f"{prefix}layers.{stage}.blocks.{block}."
            for norm in ("norm1", "norm2"):
                state[key + norm + ".weight"], state[key + norm + ".bias"] = rand(dim), rand(dim)
            state[key + "attn.relative_position_bias_table"] = rand(rows, head)
            if with_index:
                state[key + "attn.relative_position_index"] = relative_position_index(window)
            state[key + "attn.qkv.weight"], state[key + "attn.qkv.bias"] = (
                rand(3 * dim, dim),
                rand(3 * dim),
            )
            state[key + "attn.proj.weight"], state[key + "attn.proj.bias"] = (
                rand(dim, dim),
                rand(dim),
            )
            state[key + "mlp.fc1.weight"], state[key + "mlp.fc1.bias"] = (
                rand(4 * dim, dim),
                rand(4 * dim),
            )
            state[key + "mlp.fc2.weight"], state[key + "mlp.fc2.bias"] = (
                rand(dim, 4 * dim),
                rand(dim),
            )
        if stage < len(depths) - 1:
            merge = (
                f"{prefix}downsamples.{stage}."
                if merges == "downsamples"
                else (f"{prefix}layers.{stage}.downsample.")
            )
            state[merge + "reduction.weight"] = rand(2 * dim, 4 * dim)
            state[merge + "norm.weight"], state[merge + "norm.bias"] = rand(4 * dim), rand(4 * dim)
    return state


def build(spec: dict) -> torch.nn.Module:
    return BACKBONES.build(spec).eval()


@pytest.mark.parametrize("merges", ["downsamples", "layers"])
def test_convert_video_swin_loads_strictly_and_detects(merges: str) -> None:
    state = original_swin_state(merges=merges)
    renamed, used, variant = convert_video_swin(state, "backbone.", "body.")
    assert used == set(state)
    assert variant["size"] == "custom"
    assert variant["embed_dim"] == 8 and variant["depths"] == [1, 2, 1]
    assert variant["num_heads"] == [1, 2, 2] and variant["window_size"] == [2, 3, 3]
    assert variant["num_stages"] == 3 and variant["patch_size"] == [1, 4, 4]
    assert variant["spec"]["out_strides"] == [4, 8, 16]
    assert variant["spec"]["depths"] == [1, 2, 1, 2]  # a fourth stage that is never built
    backbone = build(variant["spec"])
    backbone.load_state_dict({k[len("body.") :]: v for k, v in renamed.items()}, strict=True)
    assert torch.equal(
        backbone.features[2][1].mlp[3].weight, state["backbone.layers.1.blocks.1.mlp.fc2.weight"]
    )
    levels = backbone(torch.randn(1, 2, 3, 24, 24))
    assert [tuple(level.shape) for level in levels] == [
        (1, 2, 8, 6, 6),
        (1, 2, 16, 3, 3),
        (1, 2, 32, 2, 2),
    ]


def test_convert_video_swin_four_stages_and_computed_index() -> None:
    state = original_swin_state(depths=(1, 1, 1, 1), heads=(1, 1, 2, 2), with_index=False)
    renamed, used, variant = convert_video_swin(state, "backbone.", "")
    assert used == set(state)
    assert variant["spec"]["out_strides"] == [4, 8, 16, 32]
    assert torch.equal(
        renamed["features.0.0.attn.relative_position_index"], relative_position_index((2, 3, 3))
    )
    build(variant["spec"]).load_state_dict(renamed, strict=True)


def test_convert_video_swin_names_published_size() -> None:
    dim, depths, heads = VIDEO_SWIN_SIZES["video_swin_t"]
    state = original_swin_state(dim, depths[:3], heads[:3], window=(2, 7, 7))
    # only the shapes of the first block matter for detection; keep the test fast
    _, _, variant = convert_video_swin(state, "backbone.", "backbone.")
    assert variant["size"] == "video-swin-t"
    assert variant["spec"] == {
        "name": "video_swin_t",
        "out_strides": [4, 8, 16],
        "window_size": [2, 7, 7],
    }


def test_relative_position_index_matches_rvoslib() -> None:
    backbone = build({"name": "video_swin_t", "embed_dim": 8, "depths": [1], "num_heads": [1],
                      "out_strides": [4], "window_size": [3, 2, 4]})  # fmt: skip
    expected = backbone.features[0][0].attn.relative_position_index
    assert torch.equal(relative_position_index((3, 2, 4)), expected)


def test_detect_window_size() -> None:
    index = relative_position_index((8, 7, 7))
    assert detect_window_size(torch.zeros(15 * 13 * 13, 3), index, "t") == (8, 7, 7)
    assert detect_window_size(torch.zeros(15 * 13 * 13, 3), None, "t") == (8, 7, 7)
    # non-square windows need the index
    assert detect_window_size(
        torch.zeros(5 * 3 * 7, 1), relative_position_index((3, 2, 4)), "t"
    ) == (3, 2, 4)


def test_detect_window_size_errors_name_tensor_and_shape() -> None:
    with pytest.raises(
        ValueError, match=r"layers.0.blocks.0.attn.relative_position_bias_table of shape \(14, 2\)"
    ):
        detect_window_size(
            torch.zeros(14, 2), None, "layers.0.blocks.0.attn.relative_position_bias_table"
        )
    with pytest.raises(ValueError, match=r"must be a .* table, got shape \(5,\)"):
        detect_window_size(torch.zeros(5), None, "t")
    wrong = relative_position_index((2, 3, 3)).flip(0)
    with pytest.raises(ValueError, match=r"relative_position_index \(18, 18\)\): no window fits"):
        detect_window_size(torch.zeros(3 * 5 * 5, 1), wrong, "t")


def test_convert_video_swin_errors() -> None:
    state = original_swin_state()
    bad_patch = dict(state, **{"backbone.patch_embed.proj.weight": torch.zeros(8, 3, 2, 4, 4)})
    with pytest.raises(ValueError, match=r"patch_embed.proj.weight has shape \(8, 3, 2, 4, 4\)"):
        convert_video_swin(bad_patch, "backbone.", "")
    with pytest.raises(KeyError, match="lack 'other.patch_embed.proj.weight'"):
        convert_video_swin(state, "other.", "")
    missing = {k: v for k, v in state.items() if k != "backbone.downsamples.0.norm.bias"}
    with pytest.raises(KeyError, match=r"lack .backbone.downsamples.0.norm.bias"):
        convert_video_swin(missing, "backbone.", "")
    bad_qkv = dict(state, **{"backbone.layers.1.blocks.0.attn.qkv.weight": torch.zeros(3, 3)})
    with pytest.raises(ValueError, match=r"layers.1.blocks.0.attn.qkv.weight has shape \(3, 3\)"):
        convert_video_swin(bad_qkv, "backbone.", "")
    mixed = dict(state)
    mixed["backbone.layers.1.blocks.0.attn.relative_position_bias_table"] = torch.zeros(
        3 * 5 * 7, 2
    )
    mixed["backbone.layers.1.blocks.0.attn.relative_position_index"] = relative_position_index(
        (2, 3, 4)
    )
    with pytest.raises(ValueError, match=r"gives window \(2, 3, 4\), other blocks \(2, 3, 3\)"):
        convert_video_swin(mixed, "backbone.", "")
    gap = {k: v for k, v in state.items() if ".layers.1." not in k}
    with pytest.raises(ValueError, match=r"must be 0..3, got \[0, 2\]"):
        convert_video_swin(gap, "backbone.", "")
    with pytest.raises(ValueError, match="no Video-Swin stage found"):
        convert_video_swin({k: v for k, v in state.items() if "layers" not in k}, "backbone.", "")
