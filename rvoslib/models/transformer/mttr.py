"""MTTR's multimodal transformer (Botach et al., CVPR 2022), registered as ``TRANSFORMERS["mttr"]``.

MTTR (released ``models/multimodal_transformer.py``) fuses every frame with the expression in a
DETR-style encoder-decoder:

1. the visual level is projected to ``d_model`` by a ``1x1`` convolution; each frame's ``h*w``
   visual tokens are concatenated with the expression's ``L`` text tokens (projected to
   ``d_model``, then dropout), giving a sequence of ``h*w + L`` tokens per frame;
2. a post-norm **encoder** (MTTR: 3 layers, 8 heads, FFN 2048, dropout 0.1, ReLU) runs
   self-attention over that sequence, with DETR's 2D sine positions (:func:`detr_sine_positions`)
   added to the queries and keys of the visual tokens and zeros for the text tokens; padding
   text tokens are masked as keys;
3. a post-norm **decoder** (MTTR: 3 layers) of ``N`` object queries (MTTR: 50) with zero
   content and learned positions *shared by all frames*, so that query ``n`` is one object
   track in every frame of the clip; every layer's output goes through the decoder's final
   LayerNorm (DETR's ``return_intermediate``).

Frames are independent here: ``B`` clips of ``T`` frames are ``B*T`` sequences (motion comes from
the video backbone). Differences from the released code: several visual levels may be given
(their tokens are concatenated, each level with its own ``1x1`` projection and a learned level
embedding; MTTR uses one level, the stride-16 one); MTTR's text projection (``FeatureResizer``)
belongs to the text encoder (``projection: feature_resizer``, out width ``d_model``), so this
module's own ``text_projection`` is then the identity and ``text_dropout`` 0 (the ``mttr-swin-t``
preset and converted checkpoints); with another text width it is a plain ``Linear`` (rvoslib's
earlier default, ``mttr-swin-t-rvoslib``: the encoder's ``Linear -> LayerNorm -> GELU``, then
dropout here); no spatial padding mask (rvoslib's batches are not padded inside a frame).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rvoslib._checks import check_tensor, is_compiling
from rvoslib.models.registry import TRANSFORMERS
from rvoslib.models.text import TextFeatures
from rvoslib.models.transformer.levels import check_levels

__all__ = [
    "MTTRDecoderLayer",
    "MTTREncoderLayer",
    "MTTRTransformer",
    "detr_sine_positions",
]

_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


def detr_sine_positions(
    height: int,
    width: int,
    dim: int,
    temperature: float = 10000.0,
    device: torch.device | None = None,
) -> torch.Tensor:
    """DETR's normalised 2D sine position encoding (``PositionEmbeddingSine``) of an unpadded map.

    With ``F = dim / 2`` features per axis, row ``i`` has ``y = (i + 1) / (h + 1e-6) * 2 pi``
    (columns likewise), ``omega_k = temperature ** (2 floor(k / 2) / F)`` and features
    ``sin(y / omega_k)`` for even ``k``, ``cos(y / omega_k)`` for odd ``k``; the ``F`` y-features
    come first, then the ``F`` x-features.

    Args:
        height: Rows ``h``.
        width: Columns ``w``.
        dim: Channels, divisible by 4.
        temperature: The frequency base (DETR, MTTR: 10000).
        device: Device of the result.

    Returns:
        ``(h, w, dim)`` float32.

    Raises:
        ValueError: ``dim`` is not a positive multiple of 4.

    Example:
        >>> codes = detr_sine_positions(2, 3, 8)
        >>> codes.shape, round(codes[0, 0, 0].item(), 4)  # sin(1 / 2.000001 * 2 pi)
        (torch.Size([2, 3, 8]), 0.0)
    """
    if dim < 4 or dim % 4:
        raise ValueError(f"dim must be a positive multiple of 4, got {dim}")
    features = dim // 2
    index = torch.arange(features, device=device, dtype=torch.float32)
    omega = temperature ** (2 * torch.div(index, 2, rounding_mode="floor") / features)
    scale = 2 * math.pi

    def axis(size: int) -> torch.Tensor:  # (size, features)
        coords = torch.arange(1, size + 1, device=device, dtype=torch.float32)
        angles = (coords / (size + 1e-6) * scale)[:, None] / omega
        return torch.stack([angles[:, 0::2].sin(), angles[:, 1::2].cos()], dim=-1).flatten(1)

    y_code = axis(height)[:, None, :].expand(height, width, features)
    x_code = axis(width)[None, :, :].expand(height, width, features)
    return torch.cat([y_code, x_code], dim=-1)


class _FeedForward(nn.Module):
    """``Linear -> activation -> Dropout -> Linear`` (the residual and norm are the layer's)."""

    def __init__(self, dim: int, ffn_dim: int, dropout: float, activation: str) -> None:
        super().__init__()
        self.linear1, self.linear2 = nn.Linear(dim, ffn_dim), nn.Linear(ffn_dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.activation = _ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))


class MTTREncoderLayer(nn.Module):
    """Post-norm self-attention layer with positions on queries and keys (DETR/MTTR).

    ``x = LN(x + Drop(MHA(x + pos, x + pos, x)))``, then ``x = LN(x + Drop(FFN(x)))``.

    Args:
        dim: Token width ``D``.
        num_heads: Attention heads (divide ``dim``).
        ffn_dim: FFN hidden width.
        dropout: Dropout of attention weights, residual branches and the FFN.
        activation: ``"relu"`` (MTTR) or ``"gelu"``.

    Example:
        >>> layer = MTTREncoderLayer(8, 2, 16).eval()
        >>> layer(torch.randn(3, 5, 8), torch.zeros(1, 5, 8)).shape
        torch.Size([3, 5, 8])
    """

    def __init__(
        self, dim: int, num_heads: int, ffn_dim: int, dropout: float = 0.1, activation: str = "relu"
    ) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.ffn = _FeedForward(dim, ffn_dim, dropout, activation)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, pos: torch.Tensor, padding: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x (N, S, D)``, ``pos`` broadcastable to it, ``padding (N, S)`` bool (True = ignore)
        -> ``(N, S, D)``."""
        keys = x + pos
        attended = self.attention(keys, keys, x, key_padding_mask=padding, need_weights=False)[0]
        x = self.norm1(x + self.dropout1(attended))
        return self.norm2(x + self.dropout2(self.ffn(x)))


class MTTRDecoderLayer(nn.Module):
    """Post-norm decoder layer: query self-attention, cross-attention to the memory, FFN (DETR).

    Args:
        dim: Width ``D``.
        num_heads: Attention heads.
        ffn_dim: FFN hidden width.
        dropout: Dropout of attention weights, residual branches and the FFN.
        activation: ``"relu"`` (MTTR) or ``"gelu"``.

    Example:
        >>> layer = MTTRDecoderLayer(8, 2, 16).eval()
        >>> queries, memory = torch.zeros(3, 4, 8), torch.randn(3, 6, 8)
        >>> layer(queries, memory, torch.randn(1, 4, 8), torch.zeros(1, 6, 8)).shape
        torch.Size([3, 4, 8])
    """

    def __init__(
        self, dim: int, num_heads: int, ffn_dim: int, dropout: float = 0.1, activation: str = "relu"
    ) -> None:
        super().__init__()
        self.self_attention = nn.MultiheadAttention(
            dim, num_heads, dropout=dropout, batch_first=True
        )
        self.cross_attention = nn.MultiheadAttention(
            dim, num_heads, dropout=dropout, batch_first=True
        )
        self.ffn = _FeedForward(dim, ffn_dim, dropout, activation)
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(3))
        self.dropouts = nn.ModuleList(nn.Dropout(dropout) for _ in range(3))

    def forward(
        self,
        queries: torch.Tensor,
        memory: torch.Tensor,
        query_pos: torch.Tensor,
        memory_pos: torch.Tensor,
        memory_padding: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``queries (N, Q, D)``, ``memory (N, S, D)``, positions broadcastable to them,
        ``memory_padding (N, S)`` bool -> ``(N, Q, D)``."""
        keys = queries + query_pos
        attended = self.self_attention(keys, keys, queries, need_weights=False)[0]
        queries = self.norms[0](queries + self.dropouts[0](attended))
        attended = self.cross_attention(
            queries + query_pos,
            memory + memory_pos,
            memory,
            key_padding_mask=memory_padding,
            need_weights=False,
        )[0]
        queries = self.norms[1](queries + self.dropouts[1](attended))
        return self.norms[2](queries + self.dropouts[2](self.ffn(queries)))


@TRANSFORMERS.register("mttr")
class MTTRTransformer(nn.Module):
    """MTTR's multimodal transformer (see the module docstring for the design).

    Args:
        visual_channels: Channels of the visual levels it is given, fine to coarse (injected;
            MTTR: one level, the backbone's coarsest).
        text_dim: Width of the text tokens (injected).
        d_model: Transformer width ``D`` (MTTR: 256).
        num_heads: Attention heads (MTTR: 8).
        num_encoder_layers: Encoder layers (MTTR: 3; 0 = no encoder).
        num_decoder_layers: Decoder layers ``Ly`` (MTTR: 3).
        ffn_dim: FFN hidden width (MTTR: 2048).
        dropout: Dropout in attention and FFNs (MTTR: 0.1).
        text_dropout: Dropout on the text tokens before the encoder (``None``: ``dropout``;
            0 when the text encoder's projection already drops out, as MTTR's
            ``FeatureResizer`` does).
        num_queries: Object queries ``N`` (MTTR: 50).
        activation: FFN activation, ``"relu"`` (MTTR) or ``"gelu"``.

    Attributes:
        d_model, num_queries: As above (the ``TRANSFORMERS`` contract).

    Raises:
        ValueError: a size is not positive, ``num_heads`` does not divide ``d_model``,
            ``d_model`` is not a multiple of 4, or an unknown activation.

    Example:
        >>> transformer = MTTRTransformer([16], 12, d_model=8, num_heads=2, ffn_dim=16,
        ...                               num_queries=3).eval()
        >>> text = TextFeatures(torch.randn(2, 12), torch.randn(2, 4, 12), torch.ones(2, 4).bool())
        >>> out = transformer([torch.randn(2, 5, 16, 3, 4)], text)
        >>> out["queries"].shape, out["memory"][0].shape
        (torch.Size([3, 2, 5, 3, 8]), torch.Size([2, 5, 8, 3, 4]))
    """

    def __init__(
        self,
        visual_channels: int | Sequence[int],
        text_dim: int,
        d_model: int = 256,
        num_heads: int = 8,
        num_encoder_layers: int = 3,
        num_decoder_layers: int = 3,
        ffn_dim: int = 2048,
        dropout: float = 0.1,
        text_dropout: float | None = None,
        num_queries: int = 50,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        channels = [visual_channels] if isinstance(visual_channels, int) else visual_channels
        self.visual_channels = [int(c) for c in channels]
        for name, value in (("d_model", d_model), ("ffn_dim", ffn_dim),
                            ("num_queries", num_queries), ("text_dim", text_dim)):  # fmt: skip
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not self.visual_channels or min(self.visual_channels) < 1:
            raise ValueError(f"visual_channels must be positive ints, got {visual_channels}")
        if d_model % 4:
            raise ValueError(f"d_model must be a multiple of 4 (sine positions), got {d_model}")
        if num_heads < 1 or d_model % num_heads:
            raise ValueError(f"num_heads ({num_heads}) must divide d_model ({d_model})")
        if num_encoder_layers < 0 or num_decoder_layers < 1:
            raise ValueError(
                "num_encoder_layers must be >= 0 and num_decoder_layers >= 1, got "
                f"{num_encoder_layers} and {num_decoder_layers}"
            )
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}"
            )
        self.d_model, self.num_queries, self.text_dim = d_model, num_queries, text_dim
        self.visual_projections = nn.ModuleList(
            nn.Conv2d(c, d_model, kernel_size=1) for c in self.visual_channels
        )
        self.level_embed = (
            nn.Parameter(torch.zeros(len(self.visual_channels), d_model))
            if len(self.visual_channels) > 1
            else None
        )
        self.text_projection = (
            nn.Identity() if text_dim == d_model else nn.Linear(text_dim, d_model)
        )
        self.text_dropout = nn.Dropout(dropout if text_dropout is None else text_dropout)
        layer_args: tuple[Any, ...] = (d_model, num_heads, ffn_dim, dropout, activation)
        self.encoder = nn.ModuleList(
            MTTREncoderLayer(*layer_args) for _ in range(num_encoder_layers)
        )
        self.decoder = nn.ModuleList(
            MTTRDecoderLayer(*layer_args) for _ in range(num_decoder_layers)
        )
        self.decoder_norm = nn.LayerNorm(d_model)
        self.query_pos = nn.Embedding(num_queries, d_model)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """Xavier-uniform for every matrix (as DETR/MTTR); N(0, 1) query positions (MTTR's
        ``nn.Embedding``); normal level embeddings."""
        for name, param in self.named_parameters():
            if param.dim() > 1 and not name.startswith(("query_pos", "level_embed")):
                nn.init.xavier_uniform_(param)
        if self.level_embed is not None:
            nn.init.normal_(self.level_embed)

    def forward(self, levels: Sequence[torch.Tensor], text: TextFeatures) -> dict[str, Any]:
        """Fuse every frame with the expression and decode the object queries.

        Args:
            levels: Visual levels ``[(B, T, C_i, h_i, w_i)]``, fine to coarse, channels
                ``visual_channels``.
            text: :class:`~rvoslib.models.TextFeatures` of batch ``B``: ``tokens (B, L,
                text_dim)``, ``mask (B, L)`` bool (True = real token).

        Returns:
            ``{"queries": (Ly, B, T, N, D), "memory": [(B, T, D, h_i, w_i)]}``: every decoder
            layer's object queries, and the encoded visual tokens of each level as maps.

        Raises:
            ValueError: wrong number of levels, shapes or channels (named).
        """
        if not is_compiling():
            self._check_inputs(levels, text)
        batch, frames = levels[0].shape[:2]
        tokens, positions, sizes = [], [], []
        for index, (level, projection) in enumerate(zip(levels, self.visual_projections)):
            height, width = level.shape[-2:]
            projected = projection(level.flatten(0, 1))  # (B*T, D, h, w)
            tokens.append(projected.flatten(2).transpose(1, 2))  # (B*T, h*w, D)
            code = detr_sine_positions(height, width, self.d_model, device=level.device)
            code = code.flatten(0, 1)
            if self.level_embed is not None:
                code = code + self.level_embed[index]
            positions.append(code.to(projected.dtype))
            sizes.append((height, width))
        words = self.text_dropout(self.text_projection(text.tokens))  # (B, L, D)
        length = words.shape[1]
        words = words[:, None].expand(batch, frames, length, self.d_model).flatten(0, 1)
        text_padding = (~text.mask.bool())[:, None].expand(batch, frames, length).flatten(0, 1)
        num_visual = sum(h * w for h, w in sizes)
        source = torch.cat([*tokens, words.to(tokens[0].dtype)], dim=1)  # (B*T, S, D)
        visual_padding = text_padding.new_zeros(batch * frames, num_visual)
        padding = torch.cat([visual_padding, text_padding], dim=1)
        text_pos = positions[0].new_zeros(length, self.d_model)
        pos = torch.cat([*positions, text_pos], dim=0)[None]  # (1, S, D)
        memory = source
        for layer in self.encoder:
            memory = layer(memory, pos, padding)
        queries = memory.new_zeros(batch * frames, self.num_queries, self.d_model)
        query_pos = self.query_pos.weight[None].to(memory.dtype)
        outputs = []
        for layer in self.decoder:
            queries = layer(queries, memory, query_pos, pos, padding)
            outputs.append(self.decoder_norm(queries))
        stacked = torch.stack(outputs)  # (Ly, B*T, N, D)
        maps, start = [], 0
        for height, width in sizes:
            part = memory[:, start : start + height * width]  # (B*T, h*w, D)
            start += height * width
            maps.append(part.transpose(1, 2).reshape(batch, frames, self.d_model, height, width))
        return {
            "queries": stacked.unflatten(1, (batch, frames)),
            "memory": maps,
        }

    def _check_inputs(self, levels: Sequence[torch.Tensor], text: TextFeatures) -> None:
        check_levels(levels, self.visual_channels, "visual_channels")
        batch = levels[0].shape[0]
        check_tensor(text.tokens, "text.tokens", (batch, "L", self.text_dim), floating=True)
        check_tensor(text.mask, "text.mask", (batch, text.tokens.shape[1]))
