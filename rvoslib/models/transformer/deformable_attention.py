"""Multi-scale deformable attention (Deformable DETR, Zhu et al., ICLR 2021) in pure PyTorch.

Each query looks at a few points (``P`` per level and head) around its reference point on every
level of a feature pyramid, instead of at every token: the offsets of the points and their
weights are predicted from the query. Values at the points are read by bilinear interpolation
(zero outside the map), as ``F.grid_sample`` does with ``align_corners=False``: the centre of
pixel ``(i, j)`` of an ``h x w`` map is at ``x = (j + 0.5) / w``, ``y = (i + 0.5) / h``.

This is the reference ``ms_deform_attn_core_pytorch`` computation; it needs no compiled
extension and runs under ``torch.compile``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rvoslib._checks import check_tensor, format_shape, is_compiling

__all__ = [
    "MultiScaleDeformableAttention",
    "SpatialShapes",
    "as_spatial_shapes",
    "multi_scale_deformable_attention",
]

#: Level sizes ``(h, w)``, finest first: a ``(L, 2)`` integer tensor or pairs of Python ints.
SpatialShapes = torch.Tensor | Sequence[Sequence[int]]


def as_spatial_shapes(spatial_shapes: SpatialShapes) -> list[tuple[int, int]]:
    """Level sizes as a list of ``(h, w)`` Python ints.

    Pass Python ints where you can: a tensor is read once with ``.tolist()`` (a host sync on
    GPU, and a graph break under ``torch.compile``).

    Args:
        spatial_shapes: ``(L, 2)`` integer tensor or a sequence of ``(h, w)`` pairs.

    Returns:
        ``[(h_0, w_0), ..., (h_{L-1}, w_{L-1})]``.

    Raises:
        TypeError: a tensor with a floating dtype, or entries that are not integers.
        ValueError: not ``(L, 2)`` with ``L >= 1``, or a size below 1.

    Example:
        >>> as_spatial_shapes(torch.tensor([[4, 6], [2, 3]]))
        [(4, 6), (2, 3)]
    """
    if isinstance(spatial_shapes, torch.Tensor):
        if spatial_shapes.is_floating_point():
            raise TypeError(
                f"spatial_shapes must have an integer dtype, got {spatial_shapes.dtype}"
            )
        if spatial_shapes.ndim != 2 or spatial_shapes.shape[1] != 2:
            raise ValueError(
                f"spatial_shapes must be (L, 2), got {format_shape(spatial_shapes.shape)}"
            )
        spatial_shapes = spatial_shapes.tolist()
    shapes = []
    for entry in spatial_shapes:
        if len(entry) != 2 or not all(isinstance(s, (int, torch.SymInt)) for s in entry):
            raise TypeError(f"spatial_shapes entries must be (h, w) int pairs, got {entry!r}")
        shapes.append(tuple(s if isinstance(s, torch.SymInt) else int(s) for s in entry))
    if not shapes or any(h < 1 or w < 1 for h, w in shapes):
        raise ValueError(f"spatial_shapes must hold L >= 1 sizes >= 1, got {shapes}")
    return shapes


def multi_scale_deformable_attention(
    value: torch.Tensor,
    spatial_shapes: SpatialShapes,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Weighted sum of bilinearly sampled values at points on several levels.

    Args:
        value: ``(N, S, M, D)`` float, the tokens of all levels (finest first, each level
            flattened row-major) split into ``M`` heads of ``D`` channels.
        spatial_shapes: ``L`` level sizes ``(h, w)``, ``sum(h * w) == S`` (see
            :func:`as_spatial_shapes`).
        sampling_locations: ``(N, Lq, M, L, P, 2)`` float, points ``(x, y)`` in ``[0, 1]`` of
            each level's extent; points outside read zeros (bilinear zero padding).
        attention_weights: ``(N, Lq, M, L, P)`` float, the weight of each point (usually a
            softmax over ``L * P``).

    Returns:
        ``(N, Lq, M * D)``, heads concatenated; dtype of ``value`` promoted with the
        locations' dtype.

    Raises:
        TypeError: a non-tensor or a non-floating argument.
        ValueError: wrong ranks, mismatching ``N``, ``M``, ``L``, ``P``, or ``S != sum(h * w)``.

    Example:
        >>> value = torch.arange(1.0, 5.0).view(1, 4, 1, 1)  # one 2 x 2 level holding 1..4
        >>> centre = torch.full((1, 1, 1, 1, 1, 2), 0.25)  # centre of pixel (0, 0)
        >>> multi_scale_deformable_attention(value, [(2, 2)], centre, torch.ones(1, 1, 1, 1, 1))
        tensor([[[1.]]])
    """
    shapes = as_spatial_shapes(spatial_shapes)
    if not is_compiling():
        _check_inputs(value, shapes, sampling_locations, attention_weights)
    batch, _, heads, head_dim = value.shape
    queries, points = sampling_locations.shape[1], sampling_locations.shape[4]
    dtype = torch.promote_types(value.dtype, sampling_locations.dtype)
    value = value.to(dtype)
    grids = sampling_locations.to(dtype) * 2 - 1  # grid_sample's [-1, 1] coordinates
    weights = attention_weights.to(dtype)
    contributions = []
    for level, level_value in enumerate(value.split([h * w for h, w in shapes], dim=1)):
        height, width = shapes[level]
        # (N, h*w, M, D) -> (N*M, D, h, w)
        level_value = level_value.permute(0, 2, 3, 1).reshape(
            batch * heads, head_dim, height, width
        )
        # (N, Lq, M, P, 2) -> (N*M, Lq, P, 2)
        level_grid = (
            grids[:, :, :, level].transpose(1, 2).reshape(batch * heads, queries, points, 2)
        )
        sampled = F.grid_sample(
            level_value, level_grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )  # (N*M, D, Lq, P)
        level_weights = (
            weights[:, :, :, level].transpose(1, 2).reshape(batch * heads, 1, queries, points)
        )
        contributions.append((sampled * level_weights).sum(-1))  # (N*M, D, Lq)
    output = sum(contributions[1:], contributions[0])
    return output.view(batch, heads * head_dim, queries).transpose(1, 2).contiguous()


def _check_inputs(
    value: object,
    shapes: list[tuple[int, int]],
    sampling_locations: object,
    attention_weights: object,
) -> None:
    value = check_tensor(value, "value", ("N", "S", "M", "D"), floating=True)
    batch, length, heads, _ = value.shape
    levels = len(shapes)
    expected = sum(h * w for h, w in shapes)
    if length != expected:
        raise ValueError(
            f"value has S={length} tokens but spatial_shapes {shapes} hold sum(h * w)={expected}"
        )
    locations = check_tensor(
        sampling_locations,
        "sampling_locations",
        (batch, "Lq", heads, levels, "P", 2),
        floating=True,
    )
    _, queries, _, _, points, _ = locations.shape
    check_tensor(
        attention_weights,
        "attention_weights",
        (batch, queries, heads, levels, points),
        floating=True,
    )


class MultiScaleDeformableAttention(nn.Module):
    """Deformable DETR's attention module: queries attend to ``P`` predicted points per level.

    For each query, head, level and point a linear layer predicts an offset from the query's
    reference point, another the attention logits (softmax over the ``L * P`` points of a
    head). Offsets are in pixels of the level for point references, and in units of half the
    box size divided by ``P`` for box references (iterative box refinement). Initialised as in
    Deformable DETR: zero offset weights, offset biases pointing in ``M`` directions around the
    reference at distances ``1..P`` (one direction per head), zero attention weights (uniform
    attention), Xavier-uniform value and output projections.

    Args:
        dim: Channels ``C`` of queries and values.
        num_levels: Feature levels ``L``.
        num_heads: Heads ``M``; ``C`` must be divisible by ``M``.
        num_points: Points ``P`` per head and level.

    Example:
        >>> attention = MultiScaleDeformableAttention(16, num_levels=2, num_heads=2, num_points=2)
        >>> shapes = [(4, 6), (2, 3)]
        >>> memory = torch.randn(1, 4 * 6 + 2 * 3, 16)
        >>> attention(torch.randn(1, 5, 16), torch.rand(1, 5, 2, 2), memory, shapes).shape
        torch.Size([1, 5, 16])
    """

    def __init__(
        self, dim: int = 256, num_levels: int = 4, num_heads: int = 8, num_points: int = 4
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        if min(num_levels, num_heads, num_points) < 1:
            raise ValueError(
                "num_levels, num_heads and num_points must be >= 1, got "
                f"{num_levels}, {num_heads}, {num_points}"
            )
        self.dim, self.num_levels = dim, num_levels
        self.num_heads, self.num_points = num_heads, num_points
        self.sampling_offsets = nn.Linear(dim, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(dim, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR's initialisation (see the class docstring)."""
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.num_heads, dtype=torch.float32) * (2 * math.pi / self.num_heads)
        directions = torch.stack([angles.cos(), angles.sin()], -1)
        directions = directions / directions.abs().max(-1, keepdim=True).values  # on the square
        distances = torch.arange(1, self.num_points + 1, dtype=torch.float32)
        bias = directions[:, None, None, :] * distances[None, None, :, None]  # (M, 1, P, 2)
        bias = bias.expand(self.num_heads, self.num_levels, self.num_points, 2)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(bias.reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for projection in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(projection.weight)
            nn.init.zeros_(projection.bias)

    def forward(
        self,
        queries: torch.Tensor,
        reference_points: torch.Tensor,
        value_input: torch.Tensor,
        spatial_shapes: SpatialShapes,
        value_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend from each query to points around its reference on every level.

        Args:
            queries: ``(N, Lq, C)`` float, query features (positions already added).
            reference_points: ``(N, Lq, L, 2)`` points ``(x, y)`` in ``[0, 1]`` per level, or
                ``(N, Lq, L, 4)`` boxes ``(cx, cy, w, h)`` in ``[0, 1]``.
            value_input: ``(N, S, C)`` float, the flattened levels (finest first).
            spatial_shapes: ``L`` level sizes ``(h, w)`` with ``sum(h * w) == S``.
            value_padding_mask: ``(N, S)`` bool, ``True`` at padding tokens (read as zeros).

        Returns:
            ``(N, Lq, C)``.

        Raises:
            TypeError, ValueError: see :func:`multi_scale_deformable_attention`; also
                mismatching shapes of these arguments.
        """
        shapes = as_spatial_shapes(spatial_shapes)
        if not is_compiling():
            self._check_inputs(queries, reference_points, value_input, shapes, value_padding_mask)
        batch, num_queries, _ = queries.shape
        heads, levels, points = self.num_heads, self.num_levels, self.num_points
        value = self.value_proj(value_input)
        if value_padding_mask is not None:
            value = value.masked_fill(value_padding_mask[..., None], 0.0)
        value = value.view(batch, value.shape[1], heads, self.dim // heads)
        offsets = self.sampling_offsets(queries).view(batch, num_queries, heads, levels, points, 2)
        logits = self.attention_weights(queries).view(batch, num_queries, heads, levels * points)
        weights = logits.softmax(-1).view(batch, num_queries, heads, levels, points)
        if reference_points.shape[-1] == 2:
            # offsets are in pixels of each level: divide by (w, h)
            sizes = _level_sizes(shapes, offsets)
            locations = (
                reference_points[:, :, None, :, None, :] + offsets.float() / sizes[:, None, :]
            )
        else:
            centres = reference_points[:, :, None, :, None, :2]
            half_sizes = reference_points[:, :, None, :, None, 2:] * 0.5
            locations = centres + offsets / points * half_sizes
        output = multi_scale_deformable_attention(value, shapes, locations, weights)
        return self.output_proj(output.to(value.dtype))

    def _check_inputs(
        self,
        queries: object,
        reference_points: object,
        value_input: object,
        shapes: list[tuple[int, int]],
        value_padding_mask: object,
    ) -> None:
        queries = check_tensor(queries, "queries", ("N", "Lq", self.dim), floating=True)
        batch, num_queries, _ = queries.shape
        if len(shapes) != self.num_levels:
            raise ValueError(
                f"spatial_shapes must hold num_levels={self.num_levels} sizes, got {shapes}"
            )
        reference_points = check_tensor(
            reference_points, "reference_points", (batch, num_queries, self.num_levels, "2|4"),
            floating=True,
        )  # fmt: skip
        if reference_points.shape[-1] not in (2, 4):
            raise ValueError(
                f"reference_points must be (N, Lq, L, 2) points or (N, Lq, L, 4) boxes, got "
                f"{format_shape(reference_points.shape)}"
            )
        value_input = check_tensor(
            value_input, "value_input", (batch, "S", self.dim), floating=True
        )
        expected = sum(h * w for h, w in shapes)
        if value_input.shape[1] != expected:
            raise ValueError(
                f"value_input has S={value_input.shape[1]} tokens but spatial_shapes {shapes} "
                f"hold sum(h * w)={expected}"
            )
        if value_padding_mask is not None:
            mask = check_tensor(value_padding_mask, "value_padding_mask", (batch, expected))
            if mask.dtype != torch.bool:
                raise TypeError(f"value_padding_mask must be bool, got {mask.dtype}")


def _level_sizes(shapes: list[tuple[int, int]], like: torch.Tensor) -> torch.Tensor:
    """``(L, 2)`` float32 ``(w, h)`` per level on ``like``'s device.

    Built from ones scaled by the sizes (exact for integer sizes): ``torch.tensor(...)`` or
    item assignment would copy from the host and synchronise a GPU, and a size that is
    symbolic (under ``torch.export``) stays symbolic.
    """
    one = torch.ones((1,), dtype=torch.float32, device=like.device)
    return torch.stack([torch.cat([one * w, one * h]) for h, w in shapes])
