"""Deformable-DETR encoder and decoder (Zhu et al., ICLR 2021), as ReferFormer and SOC use them.

The encoder refines the tokens of a feature pyramid with multi-scale deformable
self-attention; the decoder lets object queries attend to each other (ordinary attention) and
to points around their reference points in the encoder's memory (deformable attention),
optionally refining the references layer by layer (iterative box refinement). Both are
post-norm with dropout. Nothing here knows about text: architectures add their fusion around
these parts. ReferFormer uses 4 encoder / 4 decoder layers, SOC 3 / 3; both 8 heads, 4 points
and an FFN of 2048 channels (the defaults here; Deformable DETR itself used 1024).

Level embeddings are added by the **encoder** (its ``level_embed`` parameter, one learned
vector per level, added to the token positions as in Deformable DETR); callers pass plain
positions. The decoder does not use memory positions (as in Deformable DETR). Helpers to
flatten a pyramid into tokens and to compute valid ratios are in
:mod:`rvoslib.models.transformer.levels`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from rvoslib._checks import check_tensor, format_shape, is_compiling
from rvoslib.models.transformer.deformable_attention import (
    MultiScaleDeformableAttention,
    SpatialShapes,
    as_spatial_shapes,
)
from rvoslib.models.transformer.levels import encoder_reference_points, inverse_sigmoid

__all__ = [
    "DecoderOutput",
    "DeformableDecoder",
    "DeformableDecoderLayer",
    "DeformableEncoder",
    "DeformableEncoderLayer",
]

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


class _FeedForward(nn.Module):
    """``x + dropout(W2 dropout(act(W1 x)))`` followed by LayerNorm (post-norm)."""

    def __init__(self, dim: int, ffn_dim: int, dropout: float, activation: str) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}"
            )
        self.linear1, self.linear2 = nn.Linear(dim, ffn_dim), nn.Linear(ffn_dim, dim)
        self.activation = _ACTIVATIONS[activation]()
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.linear2(self.dropout1(self.activation(self.linear1(x))))
        return self.norm(x + self.dropout2(hidden))


def _reset_transformer_parameters(module: nn.Module) -> None:
    """Deformable DETR: Xavier-uniform for every matrix, then the deformable attention init."""
    for parameter in module.parameters():
        if parameter.dim() > 1:
            nn.init.xavier_uniform_(parameter)
    for child in module.modules():
        if isinstance(child, MultiScaleDeformableAttention):
            child.reset_parameters()


class DeformableEncoderLayer(nn.Module):
    """Deformable self-attention over the multi-level tokens, then an FFN; post-norm.

    Args:
        dim: Channels ``C``.
        num_heads: Attention heads.
        num_levels: Feature levels ``L``.
        num_points: Sampling points per head and level.
        ffn_dim: Hidden channels of the FFN.
        dropout: Dropout after attention and in the FFN.
        activation: ``"relu"`` (Deformable DETR) or ``"gelu"``.
    """

    def __init__(
        self,
        dim: int = 256,
        num_heads: int = 8,
        num_levels: int = 4,
        num_points: int = 4,
        ffn_dim: int = 2048,
        dropout: float = 0.1,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.self_attn = MultiScaleDeformableAttention(dim, num_levels, num_heads, num_points)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)
        self.ffn = _FeedForward(dim, ffn_dim, dropout, activation)

    def forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor | None,
        reference_points: torch.Tensor,
        spatial_shapes: SpatialShapes,
        padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``tokens (N, S, C)``, ``positions (N, S, C)`` or ``None``, ``reference_points (N, S,
        L, 2)``, ``padding_mask (N, S)`` bool -> ``(N, S, C)``."""
        queries = tokens if positions is None else tokens + positions
        attended = self.self_attn(queries, reference_points, tokens, spatial_shapes, padding_mask)
        return self.ffn(self.norm(tokens + self.dropout(attended)))


class DeformableEncoder(nn.Module):
    """A stack of :class:`DeformableEncoderLayer` with learned level embeddings.

    Args:
        num_layers: Layers (ReferFormer 4, SOC 3).
        dim, num_heads, num_levels, num_points, ffn_dim, dropout, activation: As
            :class:`DeformableEncoderLayer`.

    Attributes:
        level_embed: ``(L, C)`` learned vectors, added to the positions of each level's tokens.

    Example:
        >>> encoder = DeformableEncoder(1, 16, num_heads=2, num_levels=2, num_points=2, ffn_dim=32)
        >>> encoder(torch.randn(2, 4 * 6 + 2 * 3, 16), [(4, 6), (2, 3)]).shape
        torch.Size([2, 30, 16])
    """

    def __init__(
        self,
        num_layers: int = 4,
        dim: int = 256,
        num_heads: int = 8,
        num_levels: int = 4,
        num_points: int = 4,
        ffn_dim: int = 2048,
        dropout: float = 0.1,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.num_levels, self.dim = num_levels, dim
        self.layers = nn.ModuleList(
            DeformableEncoderLayer(
                dim, num_heads, num_levels, num_points, ffn_dim, dropout, activation
            )
            for _ in range(num_layers)
        )
        self.level_embed = nn.Parameter(torch.empty(num_levels, dim))
        _reset_transformer_parameters(self)
        nn.init.normal_(self.level_embed)

    def forward(
        self,
        tokens: torch.Tensor,
        spatial_shapes: SpatialShapes,
        positions: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
        valid_ratios: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Encode the flattened pyramid.

        Args:
            tokens: ``(N, S, C)`` float, levels flattened finest first (:func:`flatten_levels`).
            spatial_shapes: ``L`` level sizes ``(h, w)``, ``sum(h * w) == S``.
            positions: ``(N, S, C)`` position encodings (e.g. 2D sine); the level embeddings
                are added here. ``None``: level embeddings only.
            padding_mask: ``(N, S)`` bool, ``True`` at padding tokens.
            valid_ratios: ``(N, L, 2)`` (:func:`valid_ratios`), for padded inputs.

        Returns:
            The memory, ``(N, S, C)``.
        """
        shapes = as_spatial_shapes(spatial_shapes)
        if not is_compiling():
            tokens = check_tensor(tokens, "tokens", ("N", "S", self.dim), floating=True)
            if len(shapes) != self.num_levels:
                raise ValueError(
                    f"spatial_shapes must hold num_levels={self.num_levels} sizes, got {shapes}"
                )
            if positions is not None:
                check_tensor(positions, "positions", tuple(tokens.shape), floating=True)
            _check_ratios(valid_ratios, tokens.shape[0], self.num_levels)
        level_positions = torch.cat(
            [self.level_embed[level].expand(h * w, -1) for level, (h, w) in enumerate(shapes)]
        ).to(tokens.dtype)
        positions = level_positions[None] if positions is None else positions + level_positions
        reference_points = encoder_reference_points(shapes, valid_ratios, tokens.device)
        reference_points = reference_points.expand(tokens.shape[0], -1, -1, -1)
        for layer in self.layers:
            tokens = layer(tokens, positions, reference_points, shapes, padding_mask)
        return tokens


class DeformableDecoderLayer(nn.Module):
    """Self-attention among queries, deformable cross-attention to the memory, FFN; post-norm.

    Args:
        dim, num_heads, num_levels, num_points, ffn_dim, dropout, activation: As
            :class:`DeformableEncoderLayer`.
    """

    def __init__(
        self,
        dim: int = 256,
        num_heads: int = 8,
        num_levels: int = 4,
        num_points: int = 4,
        ffn_dim: int = 2048,
        dropout: float = 0.1,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn = MultiScaleDeformableAttention(dim, num_levels, num_heads, num_points)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = _FeedForward(dim, ffn_dim, dropout, activation)

    def forward(
        self,
        queries: torch.Tensor,
        query_pos: torch.Tensor | None,
        reference_points: torch.Tensor,
        memory: torch.Tensor,
        spatial_shapes: SpatialShapes,
        memory_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``queries (N, Q, C)``, ``query_pos (N, Q, C)`` or ``None``, ``reference_points (N, Q,
        L, 2 or 4)``, ``memory (N, S, C)``, ``memory_padding_mask (N, S)`` -> ``(N, Q, C)``."""
        with_pos = queries if query_pos is None else queries + query_pos
        attended = self.self_attn(with_pos, with_pos, queries, need_weights=False)[0]
        queries = self.norm1(queries + self.dropout1(attended))
        with_pos = queries if query_pos is None else queries + query_pos
        attended = self.cross_attn(
            with_pos, reference_points, memory, spatial_shapes, memory_padding_mask
        )
        queries = self.norm2(queries + self.dropout2(attended))
        return self.ffn(queries)


class DecoderOutput(NamedTuple):
    """What :class:`DeformableDecoder` returns.

    Attributes:
        hidden_states: ``(num_layers, N, Q, C)``, every layer's output.
        references: ``(num_layers, N, Q, R)``, the reference after each layer, detached
            (refined boxes with ``box_heads``, else the input reference repeated). Layer ``l``
            attended around the input ``reference_points`` for ``l = 0`` and around
            ``references[l - 1]`` otherwise.
        boxes: ``(num_layers, N, Q, 4 or 2)`` boxes predicted by ``box_heads`` (not detached,
            for the losses), ``sigmoid(box_heads[l](hidden_states[l]) + inverse_sigmoid(
            reference of layer l))``; ``None`` without ``box_heads``.
    """

    hidden_states: torch.Tensor
    references: torch.Tensor
    boxes: torch.Tensor | None


class DeformableDecoder(nn.Module):
    """A stack of :class:`DeformableDecoderLayer`, optionally with iterative box refinement.

    With ``box_heads`` (one module per layer mapping ``(N, Q, C)`` to ``(N, Q, 4)`` or
    ``(N, Q, 2)`` deltas), each layer's prediction is added to the current reference in
    inverse-sigmoid space (to its first two coordinates when the reference is a point), passed
    through a sigmoid, and used, detached, as the next layer's reference (Deformable DETR).

    Args:
        num_layers: Layers (ReferFormer 4, SOC 3).
        dim, num_heads, num_levels, num_points, ffn_dim, dropout, activation: As
            :class:`DeformableEncoderLayer`.

    Example:
        >>> decoder = DeformableDecoder(2, 16, num_heads=2, num_levels=2, num_points=2, ffn_dim=32)
        >>> memory = torch.randn(1, 4 * 6 + 2 * 3, 16)
        >>> out = decoder(torch.randn(1, 5, 16), torch.rand(1, 5, 2), memory, [(4, 6), (2, 3)])
        >>> out.hidden_states.shape, out.references.shape
        (torch.Size([2, 1, 5, 16]), torch.Size([2, 1, 5, 2]))
    """

    def __init__(
        self,
        num_layers: int = 4,
        dim: int = 256,
        num_heads: int = 8,
        num_levels: int = 4,
        num_points: int = 4,
        ffn_dim: int = 2048,
        dropout: float = 0.1,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.num_levels, self.dim = num_levels, dim
        self.layers = nn.ModuleList(
            DeformableDecoderLayer(
                dim, num_heads, num_levels, num_points, ffn_dim, dropout, activation
            )
            for _ in range(num_layers)
        )
        _reset_transformer_parameters(self)

    def forward(
        self,
        queries: torch.Tensor,
        reference_points: torch.Tensor,
        memory: torch.Tensor,
        spatial_shapes: SpatialShapes,
        query_pos: torch.Tensor | None = None,
        memory_padding_mask: torch.Tensor | None = None,
        valid_ratios: torch.Tensor | None = None,
        box_heads: Sequence[nn.Module] | None = None,
    ) -> DecoderOutput:
        """Decode the queries against the memory.

        Args:
            queries: ``(N, Q, C)`` float, query contents.
            reference_points: ``(N, Q, 2)`` points ``(x, y)`` or ``(N, Q, 4)`` boxes ``(cx, cy,
                w, h)``, in ``[0, 1]`` of the valid image.
            memory: ``(N, S, C)``, the encoder output.
            spatial_shapes: ``L`` level sizes ``(h, w)`` of the memory.
            query_pos: ``(N, Q, C)`` query positions, added to queries before attention.
            memory_padding_mask: ``(N, S)`` bool, ``True`` at padding tokens.
            valid_ratios: ``(N, L, 2)`` (:func:`valid_ratios`), for padded inputs.
            box_heads: ``num_layers`` modules for iterative refinement (see the class).

        Returns:
            A :class:`DecoderOutput`.
        """
        num_layers = len(self.layers)
        shapes = as_spatial_shapes(spatial_shapes)  # once, not per layer
        if not is_compiling():
            queries = check_tensor(queries, "queries", ("N", "Q", self.dim), floating=True)
            batch, num_queries, _ = queries.shape
            check_tensor(
                reference_points, "reference_points", (batch, num_queries, "R"), floating=True
            )
            if reference_points.shape[-1] not in (2, 4):
                raise ValueError(
                    "reference_points must be (N, Q, 2) points or (N, Q, 4) boxes, got "
                    f"{format_shape(reference_points.shape)}"
                )
            if query_pos is not None:
                check_tensor(query_pos, "query_pos", tuple(queries.shape), floating=True)
            _check_ratios(valid_ratios, batch, self.num_levels)
            if box_heads is not None and len(box_heads) != num_layers:
                raise ValueError(
                    f"box_heads must hold one module per decoder layer ({num_layers}), "
                    f"got {len(box_heads)}"
                )
        hidden_states, references, boxes = [], [], []
        for index, layer in enumerate(self.layers):
            scale = valid_ratios
            if valid_ratios is not None and reference_points.shape[-1] == 4:
                scale = torch.cat([valid_ratios, valid_ratios], -1)
            layer_points = reference_points[:, :, None]  # (N, Q, 1, R): same point on every level
            if scale is None:
                layer_points = layer_points.expand(-1, -1, self.num_levels, -1)
            else:
                layer_points = layer_points * scale[:, None]
            queries = layer(queries, query_pos, layer_points, memory, shapes, memory_padding_mask)
            hidden_states.append(queries)
            if box_heads is not None:
                box = _refine(reference_points, box_heads[index](queries))
                boxes.append(box)
                reference_points = box.detach()
            references.append(reference_points)
        return DecoderOutput(
            torch.stack(hidden_states),
            torch.stack(references),
            torch.stack(boxes) if boxes else None,
        )


def _refine(reference: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``sigmoid(delta + inverse_sigmoid(reference))``, on ``delta``'s first ``R`` coordinates."""
    size = reference.shape[-1]
    if delta.shape[-1] not in (2, 4) or delta.shape[-1] < size:
        raise ValueError(
            f"a box head must predict 4 (or, for point references, 2) values, got "
            f"{format_shape(delta.shape)} for references {format_shape(reference.shape)}"
        )
    moved = delta[..., :size] + inverse_sigmoid(reference)
    return torch.cat([moved, delta[..., size:]], -1).sigmoid()


def _check_ratios(ratios: torch.Tensor | None, batch: int, levels: int) -> None:
    if ratios is not None:
        check_tensor(ratios, "valid_ratios", (batch, levels, 2), floating=True)
