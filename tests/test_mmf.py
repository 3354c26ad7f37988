"""SOC's bidirectional multiplicative fusion: the definition, padding, shapes, gradients."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rvoslib.models.fusion.mmf import BidirectionalMultimodalFusion, FusedFeatures


def _reference_attention(
    attention: nn.MultiheadAttention,
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    key_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Multi-head attention written out: softmax(q k^T / sqrt(d)) v per head (one sample)."""
    dim, heads = attention.embed_dim, attention.num_heads
    w_q, w_k, w_v = attention.in_proj_weight.chunk(3)
    b_q, b_k, b_v = attention.in_proj_bias.chunk(3)
    q = (queries @ w_q.T + b_q).view(-1, heads, dim // heads).transpose(0, 1)
    k = (keys @ w_k.T + b_k).view(-1, heads, dim // heads).transpose(0, 1)
    v = (values @ w_v.T + b_v).view(-1, heads, dim // heads).transpose(0, 1)
    scores = q @ k.transpose(1, 2) / math.sqrt(dim // heads)
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask[None, None, :], float("-inf"))
    out = (scores.softmax(-1) @ v).transpose(0, 1).reshape(-1, dim)
    return out @ attention.out_proj.weight.T + attention.out_proj.bias


def _sine_code(position: float, dim: int) -> torch.Tensor:
    code = torch.empty(dim)
    for i in range(dim):
        angle = 2 * math.pi * position / 10000 ** (2 * (i // 2) / dim)
        code[i] = math.sin(angle) if i % 2 == 0 else math.cos(angle)
    return code


def _inputs(batch: int = 2, frames: int = 2, dim: int = 8) -> tuple:
    levels = [torch.randn(batch, frames, dim, size, size + 1) for size in (4, 2)]
    text = torch.randn(batch, 5, dim)
    mask = torch.tensor([[True, True, True, False, False], [True, True, True, True, True]])
    return levels, text, mask[:batch]


def test_matches_the_definition_with_explicit_attention() -> None:
    torch.manual_seed(0)
    fusion = BidirectionalMultimodalFusion([8, 8], text_dim=8, dim=8, num_heads=2).eval()
    levels, text, mask = _inputs()
    out = fusion(levels, text, mask)
    for b in range(2):
        real = mask[b]
        count = int(real.sum())
        text_pos = torch.stack([_sine_code((k + 0.5) / count, 8) for k in range(5)])
        for index, level in enumerate(levels):
            _, t, c, h, w = level.shape
            visual = level[b].permute(0, 2, 3, 1).reshape(t * h * w, c)
            attended = _reference_attention(
                fusion.visual_attention, visual, text[b] + text_pos, text[b], real
            )
            expected = (visual * attended).view(t, h, w, c).permute(0, 3, 1, 2)
            assert torch.allclose(out.visual[index][b], expected, atol=1e-5)
        # the text attends to the last level (default), its keys carry 2D sine positions
        level = levels[-1][b]
        t, c, h, w = level.shape
        pos = torch.stack(
            [
                torch.cat([_sine_code((y + 0.5) / h, 4), _sine_code((x + 0.5) / w, 4)])
                for y in range(h)
                for x in range(w)
            ]
        )
        visual = level.permute(0, 2, 3, 1).reshape(t * h * w, c)
        attended = _reference_attention(
            fusion.text_attention, text[b], visual + pos.repeat(t, 1), visual
        )
        expected_text = text[b] * attended * real[:, None]
        assert torch.allclose(out.text[b], expected_text, atol=1e-5)


def test_shapes_with_projections_and_any_number_of_levels() -> None:
    fusion = BidirectionalMultimodalFusion([8, 12, 16], text_dim=24, dim=16, num_heads=4)
    levels = [torch.randn(2, 3, c, s, s) for c, s in ((8, 6), (12, 3), (16, 2))]
    out = fusion(levels, torch.randn(2, 4, 24), torch.ones(2, 4, dtype=torch.bool))
    assert isinstance(out, FusedFeatures)
    assert [tuple(v.shape) for v in out.visual] == [
        (2, 3, 16, 6, 6),
        (2, 3, 16, 3, 3),
        (2, 3, 16, 2, 2),
    ]
    assert out.text.shape == (2, 4, 16)
    shared = BidirectionalMultimodalFusion(8, text_dim=8, dim=8, num_heads=2)
    for count in (1, 3):
        levels = [torch.randn(1, 2, 8, 3, 3) for _ in range(count)]
        fused = shared(levels, torch.randn(1, 3, 8), torch.ones(1, 3, dtype=torch.long))
        assert len(fused.visual) == count


def test_padding_tokens_are_ignored() -> None:
    fusion = BidirectionalMultimodalFusion([8, 8], text_dim=8, dim=8, num_heads=2).eval()
    levels, text, mask = _inputs()
    out = fusion(levels, text, mask)
    changed = text.clone()
    changed[0, 3:] = torch.randn(2, 8) * 100  # padding of the first text
    again = fusion(levels, changed, mask)
    for before, after in zip(out.visual, again.visual):
        assert torch.allclose(before, after, atol=1e-6)
    assert torch.allclose(out.text, again.text, atol=1e-6)
    assert torch.equal(out.text[0, 3:], torch.zeros(2, 8))
    # a real token does matter
    changed[0, 1] += 1.0
    assert not torch.allclose(fusion(levels, changed, mask).visual[0], out.visual[0])


def test_several_text_levels_are_averaged() -> None:
    both = BidirectionalMultimodalFusion([8, 8], 8, dim=8, num_heads=2, text_levels=[0, -1])
    first = BidirectionalMultimodalFusion([8, 8], 8, dim=8, num_heads=2, text_levels=[0])
    last = BidirectionalMultimodalFusion([8, 8], 8, dim=8, num_heads=2)
    first.load_state_dict(both.state_dict())
    last.load_state_dict(both.state_dict())
    levels, text, mask = _inputs()
    expected = (first(levels, text, mask).text + last(levels, text, mask).text) / 2
    assert torch.allclose(both(levels, text, mask).text, expected, atol=1e-6)
    unpositioned = BidirectionalMultimodalFusion([8, 8], 8, dim=8, num_heads=2, positions=False)
    unpositioned.load_state_dict(both.state_dict())
    assert not torch.allclose(unpositioned(levels, text, mask).text, last(levels, text, mask).text)


def test_gradients_reach_visual_text_and_parameters() -> None:
    fusion = BidirectionalMultimodalFusion([4, 8], text_dim=6, dim=8, num_heads=2)
    levels = [torch.randn(1, 2, 4, 3, 3, requires_grad=True), torch.randn(1, 2, 8, 2, 2)]
    levels[1].requires_grad_()
    text = torch.randn(1, 3, 6, requires_grad=True)
    out = fusion(levels, text, torch.tensor([[True, True, False]]))
    (sum(v.square().sum() for v in out.visual) + out.text.square().sum()).backward()
    assert all(level.grad is not None and level.grad.abs().sum() > 0 for level in levels)
    assert text.grad is not None and text.grad[0, :2].abs().sum() > 0
    assert torch.equal(text.grad[0, 2], torch.zeros(6))  # the padding token
    for name, parameter in fusion.named_parameters():
        assert parameter.grad is not None, name


def test_input_errors() -> None:
    fusion = BidirectionalMultimodalFusion([8, 8], text_dim=8, dim=8, num_heads=2)
    levels, text, mask = _inputs()
    with pytest.raises(TypeError, match="visual must be a non-empty list"):
        fusion(levels[0], text, mask)
    with pytest.raises(ValueError, match=r"visual must have 2 levels \(visual_channels=\[8, 8\]"):
        fusion(levels[:1], text, mask)
    with pytest.raises(ValueError, match=r"visual\[1\] must be \(2, 2, 8, h, w\), got \(2, 2, 4"):
        fusion([levels[0], torch.randn(2, 2, 4, 2, 2)], text, mask)
    with pytest.raises(ValueError, match=r"text_tokens must be \(2, L, 8\), got \(2, 5, 6\)"):
        fusion(levels, torch.randn(2, 5, 6), mask)
    with pytest.raises(ValueError, match=r"text_mask must be \(2, 5\), got \(2, 4\)"):
        fusion(levels, text, mask[:, :4])
    with pytest.raises(TypeError, match="text_mask must be bool, got torch.float32"):
        fusion(levels, text, mask.float())
    shared = BidirectionalMultimodalFusion(8, 8, dim=8, num_heads=2, text_levels=[3])
    with pytest.raises(ValueError, match=r"text_levels entries must index 2 levels, got \[3\]"):
        shared(levels, text, mask)


def test_construction_errors() -> None:
    with pytest.raises(ValueError, match=r"num_heads \(3\) must divide dim \(8\)"):
        BidirectionalMultimodalFusion(8, 8, dim=8, num_heads=3)
    with pytest.raises(ValueError, match="visual_channels and text_dim must be positive"):
        BidirectionalMultimodalFusion([], 8, dim=8, num_heads=2)
    with pytest.raises(ValueError, match="text_levels must name at least one level"):
        BidirectionalMultimodalFusion(8, 8, dim=8, num_heads=2, text_levels=[])
    with pytest.raises(ValueError, match=r"text_levels entries must index 3 levels, got \[-4\]"):
        BidirectionalMultimodalFusion([8, 8, 8], 8, dim=8, num_heads=2, text_levels=[-4])
