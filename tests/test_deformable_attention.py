"""Multi-scale deformable attention and the Deformable-DETR encoder/decoder."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from rvoslib.models.transformer import (
    DeformableDecoder,
    DeformableEncoder,
    MultiScaleDeformableAttention,
    as_spatial_shapes,
    encoder_reference_points,
    flatten_levels,
    inverse_sigmoid,
    multi_scale_deformable_attention,
    split_levels,
    valid_ratios,
)

SHAPES = [(5, 7), (3, 4), (1, 2)]  # odd sizes, several levels
TINY = {"num_heads": 2, "num_levels": 3, "num_points": 2, "ffn_dim": 32, "dropout": 0.0}


def bilinear_zero_padded(level: np.ndarray, x: float, y: float) -> np.ndarray:
    """Scalar bilinear interpolation of ``level (h, w, D)`` at ``(x, y)`` in [0, 1].

    Pixel ``(i, j)`` has its centre at ``((j + 0.5) / w, (i + 0.5) / h)``; outside the map the
    values are zero.
    """
    height, width, _ = level.shape
    px, py = x * width - 0.5, y * height - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    fx, fy = px - x0, py - y0

    def read(i: int, j: int) -> np.ndarray:
        inside = 0 <= i < height and 0 <= j < width
        return level[i, j] if inside else np.zeros(level.shape[-1])

    return (
        (1 - fy) * (1 - fx) * read(y0, x0)
        + (1 - fy) * fx * read(y0, x0 + 1)
        + fy * (1 - fx) * read(y0 + 1, x0)
        + fy * fx * read(y0 + 1, x0 + 1)
    )


def reference_attention(value, shapes, locations, weights) -> np.ndarray:
    """Explicit loops over batch, queries, heads, levels and points."""
    value, locations, weights = (t.double().numpy() for t in (value, locations, weights))
    batch, _, heads, dim = value.shape
    queries, points = locations.shape[1], locations.shape[4]
    starts = np.cumsum([0] + [h * w for h, w in shapes])
    out = np.zeros((batch, queries, heads * dim))
    for n in range(batch):
        for q in range(queries):
            for m in range(heads):
                total = np.zeros(dim)
                for lvl, (h, w) in enumerate(shapes):
                    level = value[n, starts[lvl] : starts[lvl + 1], m].reshape(h, w, dim)
                    for p in range(points):
                        x, y = locations[n, q, m, lvl, p]
                        total += weights[n, q, m, lvl, p] * bilinear_zero_padded(level, x, y)
                out[n, q, m * dim : (m + 1) * dim] = total
    return out


def random_inputs(batch=2, queries=3, heads=2, dim=3, points=2, shapes=SHAPES, dtype=torch.float32):
    length = sum(h * w for h, w in shapes)
    value = torch.randn(batch, length, heads, dim, dtype=dtype)
    # include points outside [0, 1]: they read zero padding
    locations = torch.rand(batch, queries, heads, len(shapes), points, 2, dtype=dtype) * 1.4 - 0.2
    weights = torch.rand(batch, queries, heads, len(shapes), points, dtype=dtype)
    return value, locations, weights


@pytest.mark.parametrize("as_tensor", [False, True])
def test_function_matches_explicit_bilinear_loops(as_tensor) -> None:
    value, locations, weights = random_inputs()
    shapes = torch.tensor(SHAPES) if as_tensor else SHAPES
    out = multi_scale_deformable_attention(value, shapes, locations, weights)
    assert out.shape == (2, 3, 2 * 3)
    expected = reference_attention(value, SHAPES, locations, weights)
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-5, rtol=0)


def test_zero_padding_outside_the_map() -> None:
    value = torch.full((1, 1, 1, 1), 4.0)  # a single 1 x 1 level holding 4
    ones = torch.ones(1, 3, 1, 1, 1)
    points = torch.tensor([[0.5, 0.5], [0.0, 0.5], [-1.0, 3.0]]).view(1, 3, 1, 1, 1, 2)
    out = multi_scale_deformable_attention(value, [(1, 1)], points, ones)
    # centre -> 4; left edge = half a pixel from the centre -> half zero padding; far -> 0
    assert out.flatten().tolist() == [4.0, 2.0, 0.0]


def test_gradcheck_value_locations_weights() -> None:
    value, locations, weights = random_inputs(
        batch=1, queries=2, heads=1, dim=2, points=2, shapes=[(2, 3), (1, 2)], dtype=torch.float64
    )
    inputs = tuple(t.requires_grad_() for t in (value, locations, weights))
    assert torch.autograd.gradcheck(
        lambda v, loc, w: multi_scale_deformable_attention(v, [(2, 3), (1, 2)], loc, w), inputs
    )


def test_function_errors() -> None:
    value, locations, weights = random_inputs()
    with pytest.raises(
        ValueError, match=r"value has S=49 tokens but spatial_shapes .* sum\(h \* w\)=51"
    ):
        multi_scale_deformable_attention(value, [(5, 7), (3, 4), (2, 2)], locations, weights)
    with pytest.raises(ValueError, match=r"value must be \(N, S, M, D\), got \(2, 49, 6\)"):
        multi_scale_deformable_attention(value.flatten(2), SHAPES, locations, weights)
    with pytest.raises(ValueError, match=r"sampling_locations must be \(2, Lq, 2, 3, P, 2\), got"):
        multi_scale_deformable_attention(value, SHAPES, locations[:, :, :, :2], weights)
    with pytest.raises(ValueError, match=r"attention_weights must be \(2, 3, 2, 3, 2\), got"):
        multi_scale_deformable_attention(value, SHAPES, locations, weights[:, :, :, :, :1])
    with pytest.raises(TypeError, match="value must have a floating dtype"):
        multi_scale_deformable_attention(value.long(), SHAPES, locations, weights)
    with pytest.raises(TypeError, match="spatial_shapes must have an integer dtype"):
        multi_scale_deformable_attention(value, torch.tensor(SHAPES).float(), locations, weights)
    with pytest.raises(ValueError, match=r"spatial_shapes must be \(L, 2\), got \(3, 3\)"):
        as_spatial_shapes(torch.ones(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="sizes >= 1"):
        as_spatial_shapes([(0, 2)])
    with pytest.raises(TypeError, match=r"\(h, w\) int pairs"):
        as_spatial_shapes([(2.0, 3.0)])


def _identity_attention(num_points: int = 1) -> MultiScaleDeformableAttention:
    """One head, one level, identity projections, zero offset weights, uniform attention."""
    attention = MultiScaleDeformableAttention(
        dim=2, num_levels=1, num_heads=1, num_points=num_points
    )
    with torch.no_grad():
        for projection in (attention.value_proj, attention.output_proj):
            projection.weight.copy_(torch.eye(2))
        attention.sampling_offsets.bias.zero_()
    return attention


def test_module_offsets_are_in_pixels_of_the_level() -> None:
    attention = _identity_attention()
    level = torch.randn(3, 5, 2)  # (h, w, C)
    memory = level.reshape(1, 15, 2)
    centre = torch.tensor([(2 + 0.5) / 5, (1 + 0.5) / 3]).view(1, 1, 1, 2)  # pixel (1, 2)
    queries = torch.randn(1, 1, 2)
    assert torch.allclose(
        attention(queries, centre, memory, [(3, 5)])[0, 0], level[1, 2], atol=1e-6
    )
    with torch.no_grad():
        attention.sampling_offsets.bias.copy_(torch.tensor([1.0, -1.0]))  # one pixel right and up
    assert torch.allclose(
        attention(queries, centre, memory, [(3, 5)])[0, 0], level[0, 3], atol=1e-6
    )


def test_module_box_references_scale_offsets_by_half_the_box() -> None:
    attention = _identity_attention(num_points=2)
    level = torch.randn(4, 8, 2)
    memory = level.reshape(1, 32, 2)
    with torch.no_grad():  # point 0 stays at the centre, point 1 moves by +2 (x)
        attention.sampling_offsets.bias.copy_(torch.tensor([0.0, 0.0, 2.0, 0.0]))
    box = torch.tensor([(1 + 0.5) / 8, (2 + 0.5) / 4, 0.5, 0.3]).view(1, 1, 1, 4)
    # x offset: 2 / P * w / 2 = 2 / 2 * 0.25 = 0.25 = two pixels of 8
    expected = (level[2, 1] + level[2, 3]) / 2  # uniform weights over the 2 points
    assert torch.allclose(
        attention(torch.randn(1, 1, 2), box, memory, [(4, 8)])[0, 0], expected, atol=1e-6
    )


@pytest.mark.parametrize("heads", [4, 8])
def test_module_initial_offsets_point_in_head_directions(heads) -> None:
    attention = MultiScaleDeformableAttention(dim=16, num_levels=2, num_heads=heads, num_points=3)
    bias = attention.sampling_offsets.bias.view(heads, 2, 3, 2)
    for head in range(heads):
        angle = 2 * math.pi * head / heads
        direction = torch.tensor([math.cos(angle), math.sin(angle)])
        direction = direction / direction.abs().max()  # on the unit square: (1, 1) diagonals
        for point in range(3):
            assert torch.allclose(bias[head, 1, point], direction * (point + 1), atol=1e-6)
    assert not attention.sampling_offsets.weight.any()
    assert (
        not attention.attention_weights.weight.any() and not attention.attention_weights.bias.any()
    )


def test_module_padding_mask_reads_zeros() -> None:
    attention = MultiScaleDeformableAttention(dim=8, num_levels=3, num_heads=2, num_points=2)
    queries, memory = torch.randn(2, 4, 8), torch.randn(2, 49, 8)
    references = torch.rand(2, 4, 3, 2)
    mask = torch.zeros(2, 49, dtype=torch.bool)
    mask[:, 30:] = True
    masked = attention(queries, references, memory, SHAPES, mask)
    zeroed = attention(queries, references, memory.masked_fill(mask[..., None], 0.0), SHAPES)
    assert torch.allclose(masked, zeroed, atol=1e-6)  # value_proj's bias is zero at init
    assert not torch.allclose(masked, attention(queries, references, memory, SHAPES), atol=1e-4)


def test_module_shapes_and_gradients_reach_all_parameters() -> None:
    attention = MultiScaleDeformableAttention(dim=8, num_levels=3, num_heads=2, num_points=2)
    queries, memory = torch.randn(2, 4, 8), torch.randn(2, 49, 8)
    for references in (torch.rand(2, 4, 3, 2), torch.rand(2, 4, 3, 4)):
        out = attention(queries, references, memory, torch.tensor(SHAPES))
        assert out.shape == (2, 4, 8)
        attention.zero_grad()
        out.square().sum().backward()
        for name, parameter in attention.named_parameters():
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_module_errors() -> None:
    with pytest.raises(ValueError, match=r"dim \(10\) must be divisible by num_heads \(4\)"):
        MultiScaleDeformableAttention(dim=10, num_heads=4)
    attention = MultiScaleDeformableAttention(dim=8, num_levels=3, num_heads=2, num_points=2)
    queries, memory, references = (
        torch.randn(2, 4, 8),
        torch.randn(2, 49, 8),
        torch.rand(2, 4, 3, 2),
    )
    with pytest.raises(ValueError, match=r"spatial_shapes must hold num_levels=3 sizes"):
        attention(queries, references, memory[:, :35], [(5, 7)])
    with pytest.raises(ValueError, match=r"\(N, Lq, L, 4\) boxes, got \(2, 4, 3, 3\)"):
        attention(queries, torch.rand(2, 4, 3, 3), memory, SHAPES)
    with pytest.raises(
        ValueError, match=r"reference_points must be \(2, 4, 3, 2\|4\), got \(2, 4, 2, 2\)"
    ):
        attention(queries, references[:, :, :2], memory, SHAPES)
    with pytest.raises(ValueError, match=r"value_input has S=46 tokens but spatial_shapes"):
        attention(queries, references, memory[:, :46], SHAPES)
    with pytest.raises(ValueError, match=r"queries must be \(N, Lq, 8\), got \(2, 4, 6\)"):
        attention(queries[..., :6], references, memory, SHAPES)
    with pytest.raises(TypeError, match="value_padding_mask must be bool, got torch.float32"):
        attention(queries, references, memory, SHAPES, torch.zeros(2, 49))


@pytest.mark.slow
def test_module_runs_under_torch_compile() -> None:
    torch._dynamo.reset()
    attention = MultiScaleDeformableAttention(dim=8, num_levels=2, num_heads=2, num_points=2)
    shapes = [(3, 5), (2, 3)]
    queries, memory, references = (
        torch.randn(1, 3, 8),
        torch.randn(1, 21, 8),
        torch.rand(1, 3, 2, 2),
    )
    compiled = torch.compile(attention, fullgraph=True)  # inductor: ~20 s on 2 CPU cores
    expected = attention(queries, references, memory, shapes)
    assert torch.allclose(compiled(queries, references, memory, shapes), expected, atol=1e-5)


def test_transformer_traces_without_graph_breaks() -> None:
    torch._dynamo.reset()
    encoder, decoder = DeformableEncoder(1, dim=8, **TINY), DeformableDecoder(2, dim=8, **TINY)
    heads = nn.ModuleList(nn.Linear(8, 4) for _ in range(2))

    def run(tokens: torch.Tensor, queries: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        memory = encoder(tokens, SHAPES)
        return decoder(queries, points, memory, SHAPES, box_heads=heads).boxes

    inputs = (torch.randn(2, 49, 8), torch.randn(2, 5, 8), torch.rand(2, 5, 2))
    compiled = torch.compile(run, backend="eager", fullgraph=True)  # dynamo only: fast
    assert torch.allclose(compiled(*inputs), run(*inputs), atol=1e-6)


def test_level_helpers() -> None:
    features = [torch.randn(2, 4, h, w) for h, w in SHAPES]
    tokens, shapes = flatten_levels(features)
    assert tokens.shape == (2, 49, 4) and shapes == SHAPES
    assert tokens[1, 35 + 4 * 2 + 1].tolist() == features[1][1, :, 2, 1].tolist()  # row-major
    assert all(torch.equal(a, b) for a, b in zip(split_levels(tokens, shapes), features))
    mask = torch.zeros(1, 5, 7, dtype=torch.bool)
    mask[:, 4:] = True  # last row padded
    mask[:, :, 5:] = True  # two last columns padded
    assert torch.allclose(valid_ratios([mask]), torch.tensor([[[5 / 7, 4 / 5]]]))
    assert inverse_sigmoid(torch.tensor([0.25])).item() == pytest.approx(math.log(1 / 3))
    assert torch.isfinite(inverse_sigmoid(torch.tensor([0.0, 1.0]))).all()


def test_encoder_reference_points_are_pixel_centres() -> None:
    points = encoder_reference_points([(2, 3), (1, 2)])
    assert points.shape == (1, 8, 2, 2)
    expected = [((j + 0.5) / 3, (i + 0.5) / 2) for i in range(2) for j in range(3)]
    expected += [((j + 0.5) / 2, 0.5) for j in range(2)]
    for level in range(2):  # the same point on every level
        assert torch.allclose(points[0, :, level], torch.tensor(expected))
    ratios = torch.tensor([[[0.5, 1.0], [1.0, 0.5]]])  # level 0: half the width is image
    scaled = encoder_reference_points([(2, 3), (1, 2)], ratios)
    # token (0, 0) of level 0: x = (0.5 / 3) / 0.5 of the valid width, mapped to each level
    assert torch.allclose(scaled[0, 0, 0], torch.tensor([1 / 6, 0.25]))
    assert torch.allclose(scaled[0, 0, 1], torch.tensor([1 / 3, 0.125]))


def _perturb_zero_initialised(module: nn.Module) -> None:
    """Offsets and attention logits start at zero weight (no gradient to the queries yet)."""
    with torch.no_grad():
        for child in module.modules():
            if isinstance(child, MultiScaleDeformableAttention):
                child.sampling_offsets.weight.normal_(std=0.1)
                child.attention_weights.weight.normal_(std=0.1)


def test_encoder_shapes_gradients_and_level_embeddings() -> None:
    encoder = DeformableEncoder(2, dim=8, **TINY)
    _perturb_zero_initialised(encoder)
    tokens, positions = torch.randn(2, 49, 8), torch.randn(2, 49, 8)
    mask = torch.zeros(2, 49, dtype=torch.bool)
    out = encoder(tokens, SHAPES, positions, mask, torch.ones(2, 3, 2))
    assert out.shape == (2, 49, 8)
    out.square().sum().backward()
    for name, parameter in encoder.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    with torch.no_grad():
        encoder.level_embed[1] += 1.0
    assert not torch.allclose(encoder(tokens, SHAPES, positions), out, atol=1e-4)


def test_decoder_shapes_and_gradients() -> None:
    decoder = DeformableDecoder(2, dim=8, **TINY)
    _perturb_zero_initialised(decoder)
    box_heads = nn.ModuleList(nn.Linear(8, 4) for _ in range(2))
    memory = torch.randn(2, 49, 8, requires_grad=True)
    queries, query_pos = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    out = decoder(queries, torch.rand(2, 5, 2), memory, SHAPES, query_pos, box_heads=box_heads)
    assert out.hidden_states.shape == (2, 2, 5, 8)
    assert out.references.shape == out.boxes.shape == (2, 2, 5, 4)  # points -> boxes
    (out.hidden_states.square().sum() + out.boxes.sum()).backward()
    for name, parameter in [*decoder.named_parameters(), *box_heads.named_parameters()]:
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert memory.grad.abs().sum() > 0
    plain = decoder(queries, torch.rand(2, 5, 4), memory, SHAPES, valid_ratios=torch.ones(2, 3, 2))
    assert plain.boxes is None and plain.references.shape == (2, 2, 5, 4)


class _ConstantDelta(nn.Module):
    def __init__(self, delta: torch.Tensor) -> None:
        super().__init__()
        self.delta = nn.Parameter(delta)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.delta.expand(*hidden.shape[:-1], -1)


def test_decoder_box_refinement_in_inverse_sigmoid_space_detached() -> None:
    decoder = DeformableDecoder(3, dim=8, **TINY)
    delta = torch.tensor([0.5, -0.25, 0.1, 0.2])
    heads = nn.ModuleList(_ConstantDelta(delta.clone()) for _ in range(3))
    boxes = torch.rand(1, 4, 4) * 0.8 + 0.1
    out = decoder(torch.randn(1, 4, 8), boxes, torch.randn(1, 49, 8), SHAPES, box_heads=heads)
    for layer in range(3):  # each layer adds delta to the logit of the previous box
        expected = torch.sigmoid(torch.logit(boxes) + (layer + 1) * delta)
        assert torch.allclose(out.boxes[layer], expected, atol=1e-5)
    assert torch.equal(out.references, out.boxes.detach())
    out.boxes[2].sum().backward()  # the previous layers' boxes are detached
    assert heads[2].delta.grad is not None and heads[2].delta.grad.abs().sum() > 0
    assert not heads[0].delta.grad.any() and not heads[1].delta.grad.any()
    points = torch.rand(1, 4, 2) * 0.8 + 0.1  # point references: delta moves (x, y) only
    out = decoder(torch.randn(1, 4, 8), points, torch.randn(1, 49, 8), SHAPES, box_heads=heads)
    first = torch.cat(
        [torch.sigmoid(torch.logit(points) + delta[:2]), delta[2:].sigmoid().expand(1, 4, 2)], -1
    )
    assert torch.allclose(out.boxes[0], first, atol=1e-5)


def test_transformer_errors() -> None:
    decoder = DeformableDecoder(2, dim=8, **TINY)
    queries, memory = torch.randn(2, 5, 8), torch.randn(2, 49, 8)
    with pytest.raises(
        ValueError, match=r"box_heads must hold one module per decoder layer \(2\), got 1"
    ):
        decoder(queries, torch.rand(2, 5, 4), memory, SHAPES, box_heads=[nn.Linear(8, 4)])
    with pytest.raises(ValueError, match=r"\(N, Q, 4\) boxes, got \(2, 5, 3\)"):
        decoder(queries, torch.rand(2, 5, 3), memory, SHAPES)
    with pytest.raises(ValueError, match=r"valid_ratios must be \(2, 3, 2\), got \(2, 2, 2\)"):
        decoder(queries, torch.rand(2, 5, 2), memory, SHAPES, valid_ratios=torch.ones(2, 2, 2))
    with pytest.raises(ValueError, match="a box head must predict 4"):
        decoder(queries, torch.rand(2, 5, 4), memory, SHAPES, box_heads=[nn.Linear(8, 2)] * 2)
    encoder = DeformableEncoder(1, dim=8, **TINY)
    with pytest.raises(ValueError, match=r"spatial_shapes must hold num_levels=3 sizes"):
        encoder(memory[:, :35], [(5, 7)])
    with pytest.raises(ValueError, match=r"positions must be \(2, 49, 8\), got \(2, 49, 4\)"):
        encoder(memory, SHAPES, torch.randn(2, 49, 4))
    with pytest.raises(ValueError, match="activation must be one of"):
        DeformableEncoder(1, dim=8, activation="tanh")
    with pytest.raises(ValueError, match="num_layers must be >= 1, got 0"):
        DeformableDecoder(0)
