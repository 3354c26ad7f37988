"""Motion inside the backbone: the correlation part, the stage hook, MotionFusionModel."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rvoslib import create_model
from rvoslib.models import CorrelationMotion, MotionFusionModel, VisualBackbone
from rvoslib.models.temporal import local_correlation, soft_argmax_displacement


def _correlation_by_loops(first: torch.Tensor, second: torch.Tensor, radius: int) -> torch.Tensor:
    """The definition, one position and one displacement at a time (zero outside the map)."""
    batch, _, height, width = first.shape
    size = 2 * radius + 1
    steps = range(-radius, radius + 1)
    displacements = [(dy, dx) for dy in steps for dx in steps]
    out = torch.zeros(batch, size * size, height, width, dtype=first.dtype)
    for n in range(batch):
        for y in range(height):
            for x in range(width):
                for k, (dy, dx) in enumerate(displacements):
                    if 0 <= y + dy < height and 0 <= x + dx < width:
                        out[n, k, y, x] = (first[n, :, y, x] * second[n, :, y + dy, x + dx]).sum()
    return out


@settings(max_examples=15, deadline=None)
@given(
    radius=st.integers(1, 3),
    height=st.integers(1, 6),
    width=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_local_correlation_equals_the_definition(radius, height, width, seed) -> None:
    generator = torch.Generator().manual_seed(seed)
    first = torch.randn(2, 3, height, width, generator=generator, dtype=torch.float64)
    second = torch.randn(2, 3, height, width, generator=generator, dtype=torch.float64)
    expected = _correlation_by_loops(first, second, radius)
    torch.testing.assert_close(local_correlation(first, second, radius), expected)


def test_local_correlation_layouts_and_gradients() -> None:
    """channels_last inputs (the fast path's layout) give the same values, and the gradients
    through the strided view of the products equal those of the explicit loops."""
    generator = torch.Generator().manual_seed(0)
    first = torch.randn(2, 4, 5, 7, generator=generator, dtype=torch.float64)
    second = torch.randn(2, 4, 5, 7, generator=generator, dtype=torch.float64)
    expected = _correlation_by_loops(first, second, 2)
    got = local_correlation(
        first.contiguous(memory_format=torch.channels_last),
        second.contiguous(memory_format=torch.channels_last),
        2,
    )
    torch.testing.assert_close(got, expected)
    weights = torch.randn(expected.shape, generator=generator, dtype=torch.float64)
    grads = []
    for function in (local_correlation, _correlation_by_loops):
        a, b = first.clone().requires_grad_(), second.clone().requires_grad_()
        (function(a, b, 2) * weights).sum().backward()
        grads.append((a.grad, b.grad))
    torch.testing.assert_close(grads[0], grads[1])


def test_soft_argmax_is_the_expected_displacement() -> None:
    torch.manual_seed(0)
    correlation = torch.randn(2, 25, 3, 4)
    flow, confidence = soft_argmax_displacement(correlation, radius=2, temperature=3.0)
    probabilities = torch.softmax(3.0 * correlation, dim=1)
    expected = torch.zeros(2, 2, 3, 4)
    for k in range(25):  # k = (dy + 2) * 5 + (dx + 2)
        dy, dx = k // 5 - 2, k % 5 - 2
        expected[:, 0] += probabilities[:, k] * dx
        expected[:, 1] += probabilities[:, k] * dy
    torch.testing.assert_close(flow, expected)
    torch.testing.assert_close(confidence[:, 0], probabilities.max(1).values)


@pytest.mark.parametrize("shift", [(0, 1), (1, 0), (-1, 2), (2, -2), (0, 0)])
def test_correlation_motion_finds_a_known_shift(shift) -> None:
    """Frame 1 is frame 0 moved by (dy, dx): with identity keys, every interior place reports
    that displacement (as (dx, dy)); the last frame reuses the motion into it."""
    dy, dx = shift
    motion = CorrelationMotion(8, radius=2, key_channels=8, temperature=100.0)
    with torch.no_grad():
        motion.key.weight.copy_(torch.eye(8)[:, :, None, None])
        motion.key.bias.zero_()
    torch.manual_seed(1)
    frame = torch.randn(1, 8, 12, 12)
    moved = torch.roll(frame, shifts=(dy, dx), dims=(-2, -1))
    maps = motion.motion(torch.stack([frame, moved], dim=1))  # (1, 2, 25 + 3, 12, 12)
    flow = maps[0, :, 25:27, 3:-3, 3:-3]  # away from the wrapped border
    assert torch.allclose(flow[:, 0], torch.full_like(flow[:, 0], float(dx)), atol=0.01)
    assert torch.allclose(flow[:, 1], torch.full_like(flow[:, 1], float(dy)), atol=0.01)


def test_correlation_motion_shapes_single_frame_and_frame_order() -> None:
    torch.manual_seed(0)
    motion = CorrelationMotion(6, radius=1, key_channels=4).eval()
    clip = torch.randn(2, 4, 6, 5, 7)
    out = motion(clip)
    assert out.shape == clip.shape
    single = motion.motion(clip[:, :1])
    assert single.shape == (2, 1, 9 + 3, 5, 7)
    assert torch.equal(single[:, :, :9], torch.zeros_like(single[:, :, :9]))
    maps = motion.motion(clip)
    assert torch.equal(maps[:, -1], maps[:, -2])  # the last frame: the motion into it
    reversed_out = motion(clip.flip(1)).flip(1)
    assert not torch.allclose(reversed_out, out)  # it knows which way things move


def test_correlation_motion_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="radius must be >= 1, got 0"):
        CorrelationMotion(4, radius=0)
    expected = r"features must be .*\(B, T, 4, h, w\).*got \(1, 2, 3, 5, 5\)"
    with pytest.raises(ValueError, match=expected):
        CorrelationMotion(4)(torch.zeros(1, 2, 3, 5, 5))


def test_stage_hook_sees_every_stage_and_replaces_its_output() -> None:
    backbone = VisualBackbone("tinycnn", out_strides=[4, 8, 16], refine_last=False,
                              channels=[8, 16, 32, 32])  # fmt: skip
    seen = []

    def hook(index, features):
        seen.append((index, tuple(features.shape)))
        return torch.zeros_like(features) if index == 2 else features

    frames = torch.rand(2, 3, 3, 32, 32)
    levels = backbone(frames, stage_hook=hook)
    assert seen == [(0, (6, 8, 8, 8)), (1, (6, 16, 4, 4)), (2, (6, 32, 2, 2))]
    assert backbone.stage_channels == [8, 16, 32]
    assert torch.equal(levels[-1], torch.zeros(2, 3, 32, 2, 2))
    assert torch.equal(backbone(frames)[0], levels[0])  # the hook changed nothing before it


def test_stage_hook_needs_a_staged_trunk() -> None:
    backbone = VisualBackbone("resnet10t", out_strides=(8, 16, 32), refine_last=False)  # timm
    assert backbone.stage_channels == []
    with pytest.raises(
        ValueError, match="stage_hook needs a staged trunk .* got backbone 'resnet10t'"
    ):
        backbone(torch.rand(1, 2, 3, 32, 32), stage_hook=lambda index, features: features)


def test_motion_fusion_with_identity_motion_and_untrained_film_is_video_fusion() -> None:
    """FiLM starts as the identity, so with an identity motion part the model computes what
    the video_fusion model with the same weights computes."""
    torch.manual_seed(0)
    model = create_model("tiny-film").eval()
    reference = create_model("tiny-video", temporal={"name": "identity"}).eval()
    missing, unexpected = reference.load_state_dict(model.state_dict(), strict=False)
    assert not missing and all(key.startswith("stage_film.") for key in unexpected)
    tokens = model.tokenize(["the red square moving left", "the still one"])
    frames = torch.rand(2, 3, 3, 64, 64)
    with torch.no_grad():
        expected = reference(frames, tokens["input_ids"], tokens["attention_mask"])
        got = model(frames, tokens["input_ids"], tokens["attention_mask"])
    torch.testing.assert_close(got, expected)


def test_motion_fusion_uses_motion_and_the_sentence_inside_the_backbone() -> None:
    torch.manual_seed(0)
    model = create_model("tiny-motion").eval()
    assert isinstance(model, MotionFusionModel) and model.architecture == "motion_fusion"
    assert isinstance(model.motion, CorrelationMotion) and model.motion.channels == 32
    with torch.no_grad():  # a trained FiLM: the sentence now changes the stages
        for layer in model.stage_film:
            layer.weight.normal_(0, 0.5)
    tokens = model.tokenize(["the object moving left", "the object moving right"])
    frames = torch.rand(1, 4, 3, 64, 64).expand(2, -1, -1, -1, -1)
    seen = []
    model.motion.register_forward_hook(lambda module, args, out: seen.append(out.shape))
    with torch.no_grad():
        logits = model(frames, tokens["input_ids"], tokens["attention_mask"])
    assert logits.shape == (2, 4, 1, 64, 64)
    assert seen == [torch.Size([2, 4, 32, 16, 16])]  # stage 0: stride 4
    assert not torch.allclose(logits[0], logits[1])
    with torch.no_grad():
        single = model(frames[:, :1], tokens["input_ids"], tokens["attention_mask"])
    assert single.shape == (2, 1, 1, 64, 64)


def test_motion_fusion_errors_name_the_argument() -> None:
    with pytest.raises(
        ValueError, match=r"motion_stage must be a backbone stage in \[0, 2\], got 3"
    ):
        create_model("tiny-motion", motion_stage=3)
    with pytest.raises(ValueError, match="backbone stage 0 gives 32 channels but motion expects"):
        model = create_model("tiny-motion")
        MotionFusionModel(
            backbone=model.backbone, text_encoder=model.text_encoder,
            motion=CorrelationMotion(16), temporal=model.temporal, fusion=model.fusion,
            head=model.head,
        )  # fmt: skip
    with pytest.raises(ValueError, match="backbone must run its stages one by one"):
        model = create_model("tiny-motion")
        backbone = model.backbone
        backbone.stage_channels = []  # what a timm backbone reports
        MotionFusionModel(
            backbone=backbone, text_encoder=model.text_encoder, motion=model.motion,
            temporal=model.temporal, fusion=model.fusion, head=model.head,
        )  # fmt: skip
