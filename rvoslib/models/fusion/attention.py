"""Cross-modal fusion: visual positions attend to the referring expression."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rvoslib._checks import check_tensor, is_compiling
from rvoslib.models.positions import sine_positions
from rvoslib.models.registry import FUSIONS
from rvoslib.models.text import TextFeatures

__all__ = ["CrossModalFusion", "MultiHeadCrossAttention"]

FUSION_MODES = ("sentence", "tokens")


class MultiHeadCrossAttention(nn.Module):
    """Multi-head attention from queries to keys/values with ``F.scaled_dot_product_attention``.

    Args:
        dim: Feature width of queries, keys and values.
        num_heads: Number of heads; must divide ``dim``.
        dropout: Attention dropout probability (training only).
        implementation: ``"sdpa"`` (fused kernels) or ``"torch_mha"``
            (``nn.MultiheadAttention``, the reference design's layer).
    """

    def __init__(
        self, dim: int, num_heads: int = 8, dropout: float = 0.1, implementation: str = "sdpa"
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"num_heads ({num_heads}) must divide the width ({dim})")
        if implementation not in ("sdpa", "torch_mha"):
            raise ValueError(
                f"implementation must be 'sdpa' or 'torch_mha', got {implementation!r}"
            )
        self.num_heads = num_heads
        self.dropout = dropout
        self.implementation = implementation
        if implementation == "torch_mha":
            self.mha = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        else:
            self.q_proj = nn.Linear(dim, dim)
            self.kv_proj = nn.Linear(dim, 2 * dim)
            self.out_proj = nn.Linear(dim, dim)

    def forward(
        self, queries: torch.Tensor, keys: torch.Tensor, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Attend.

        Args:
            queries: ``(B, Q, D)``.
            keys: ``(B, K, D)``, also used as values.
            key_mask: ``(B, K)`` bool, true for keys that may be attended to.

        Returns:
            ``(B, Q, D)``.
        """
        if self.implementation == "torch_mha":
            padding = None if key_mask is None else ~key_mask
            return self.mha(queries, keys, keys, key_padding_mask=padding, need_weights=False)[0]
        batch, num_queries, dim = queries.shape
        heads = self.num_heads
        q = self.q_proj(queries).view(batch, num_queries, heads, dim // heads).transpose(1, 2)
        k, v = self.kv_proj(keys).view(batch, -1, 2, heads, dim // heads).permute(2, 0, 3, 1, 4)
        attn_mask = None if key_mask is None else key_mask[:, None, None, :]
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out_proj(attended.transpose(1, 2).reshape(batch, num_queries, dim))


@FUSIONS.register("cross_attention")
class CrossModalFusion(nn.Module):
    """Fuse visual features with text: every visual position attends to the expression.

    Visual features go through ``1x1 conv -> BatchNorm -> GELU`` and text features through
    ``Linear -> LayerNorm -> GELU`` to ``hidden_dim``; multi-head attention uses the visual
    positions of all frames as queries and the text as keys/values; the output is
    ``LayerNorm(visual + dropout(attention))``.

    Args:
        visual_channels: Channels of the visual feature map.
        text_dim: Width of the text features.
        hidden_dim: Output channels.
        num_heads: Attention heads.
        dropout: Dropout on the attention weights and the residual branch.
        mode: ``"sentence"`` attends to the pooled sentence feature (the reference design);
            ``"tokens"`` attends to the token features, ignoring padding.
        attention: ``"sdpa"`` or ``"torch_mha"`` (see :class:`MultiHeadCrossAttention`).
        positions: Add a fixed 2D sine encoding of (y, x) to the projected visual features, so
            that attention and the layers after it can use absolute position ("on the left").

    Example:
        >>> fusion = CrossModalFusion(64, 32, hidden_dim=16, num_heads=2, mode="tokens")
        >>> text = TextFeatures(torch.randn(2, 32), torch.randn(2, 5, 32), torch.ones(2, 5).bool())
        >>> fusion(torch.randn(2, 3, 64, 4, 4), text).shape
        torch.Size([2, 3, 16, 4, 4])
    """

    def __init__(
        self,
        visual_channels: int,
        text_dim: int,
        hidden_dim: int = 256,
        num_heads: int = 8,
        dropout: float = 0.1,
        mode: str = "sentence",
        attention: str = "sdpa",
        positions: bool = False,
    ) -> None:
        super().__init__()
        if positions and hidden_dim % 4:
            raise ValueError(f"positions=True needs hidden_dim divisible by 4, got {hidden_dim}")
        self.positions = positions
        if mode not in FUSION_MODES:
            raise ValueError(f"mode must be one of {FUSION_MODES}, got {mode!r}")
        self.mode = mode
        self.visual_channels, self.text_dim, self.hidden_dim = visual_channels, text_dim, hidden_dim
        self.out_channels = hidden_dim
        self.visual_proj = nn.Sequential(
            nn.Conv2d(visual_channels, hidden_dim, kernel_size=1, bias=False),
            nn.BatchNorm2d(hidden_dim),
            nn.GELU(),
        )
        self.text_proj = nn.Sequential(
            nn.Linear(text_dim, hidden_dim), nn.LayerNorm(hidden_dim), nn.GELU()
        )
        self.attention = MultiHeadCrossAttention(hidden_dim, num_heads, dropout, attention)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden_dim)

    def forward(self, visual: torch.Tensor, text: TextFeatures) -> torch.Tensor:
        """Fuse.

        Args:
            visual: ``(B, T, C, h, w)`` visual features, ``C = visual_channels``.
            text: :class:`TextFeatures` with ``sentence (B, D)``, ``tokens (B, L, D)`` and
                ``mask (B, L)``, ``D = text_dim``.

        Returns:
            ``(B, T, hidden_dim, h, w)``.
        """
        if not is_compiling():
            check_tensor(
                visual, "visual", ("B", "T", self.visual_channels, "h", "w"), floating=True
            )
            check_tensor(text.sentence, "text.sentence", (visual.shape[0], self.text_dim))
            check_tensor(text.tokens, "text.tokens", (visual.shape[0], "L", self.text_dim))
        batch, frames, _, height, width = visual.shape
        projected = self.visual_proj(visual.flatten(0, 1))  # (B*T, hidden, h, w)
        queries = projected.unflatten(0, (batch, frames)).permute(0, 1, 3, 4, 2)
        if self.positions:
            encoding = sine_positions(height, width, self.hidden_dim, queries.device)
            queries = queries + encoding.to(queries.dtype)
        queries = queries.reshape(batch, frames * height * width, self.hidden_dim)
        if self.mode == "sentence":
            keys, key_mask = self.text_proj(text.sentence).unsqueeze(1), None
        else:
            keys, key_mask = self.text_proj(text.tokens), text.mask.bool()
        fused = self.norm(queries + self.dropout(self.attention(queries, keys, key_mask)))
        fused = fused.view(batch, frames, height, width, self.hidden_dim)
        return fused.permute(0, 1, 4, 2, 3)
