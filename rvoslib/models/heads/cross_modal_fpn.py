"""ReferFormer's cross-modal FPN pixel decoder (``PIXEL_DECODERS`` ``"cross_modal_fpn"``).

:class:`CrossModalFPNDecoder` (ReferFormer's ``CrossModalFPNDecoder``): an FPN over the stride-4
backbone level and the encoder's memory levels, where every level, before the top-down sum,
goes through a :class:`VisionLanguageBlock`: self-attention over all the (spatially reduced)
tokens of the clip, cross-attention to the text, FFN (post-norm). Output: ``mask_dim`` channels
at the finest stride.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rvoslib._checks import check_tensor, format_shape, is_compiling
from rvoslib.models.fusion.mmf import _text_positions, _visual_positions, check_text_positions
from rvoslib.models.registry import PIXEL_DECODERS
from rvoslib.models.text import TextFeatures

__all__ = ["CrossModalFPNDecoder", "VisionLanguageBlock"]


class VisionLanguageBlock(nn.Module):
    """ReferFormer's ``VisionLanguageBlock``: self-attention over a clip's tokens (spatially
    reduced by ``reduction``), cross-attention to the text, FFN; post-norm.

    Args:
        dim: Channels ``C``.
        num_heads: Attention heads.
        ffn_dim: Hidden width of the FFN.
        dropout: Dropout of attention weights and residual branches.
        reduction: Keys, values and queries of the self-attention are taken on a grid
            ``reduction`` times coarser (nearest), its output upsampled back (bilinear).
    """

    def __init__(
        self, dim: int, num_heads: int, ffn_dim: int, dropout: float, reduction: int = 1
    ) -> None:
        super().__init__()
        self.reduction = int(reduction)
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.linear1, self.linear2 = nn.Linear(dim, ffn_dim), nn.Linear(ffn_dim, dim)
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(3))
        self.dropout = nn.Dropout(dropout)
        for parameter in self.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)

    def forward(
        self,
        features: torch.Tensor,
        frames: int,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        text_pos: torch.Tensor,
    ) -> torch.Tensor:
        """``features (B*T, C, h, w)``, ``text (B, L, C)``, ``text_mask (B, L)`` bool (true =
        real token), ``text_pos (B, L, C)`` -> ``(B*T, C, h, w)``."""
        total, channels, height, width = features.shape
        batch = total // frames
        pos = _visual_positions(height, width, channels, features.device).to(features.dtype)
        pos_map = pos.t().reshape(1, channels, height, width)
        queries, values = features + pos_map, features
        if self.reduction > 1:
            size = (max(1, height // self.reduction), max(1, width // self.reduction))
            queries = F.interpolate(queries, size=size, mode="nearest")
            values = F.interpolate(values, size=size, mode="nearest")

        def clip_tokens(maps: torch.Tensor) -> torch.Tensor:  # (B*T, C, h, w) -> (B, T*h*w, C)
            return maps.flatten(2).transpose(1, 2).reshape(batch, -1, channels)

        attended = self.self_attn(
            clip_tokens(queries), clip_tokens(queries), clip_tokens(values), need_weights=False
        )[0]
        attended = attended.reshape(total, -1, channels).transpose(1, 2)
        attended = attended.unflatten(2, queries.shape[-2:])
        if self.reduction > 1:
            attended = F.interpolate(
                attended, size=(height, width), mode="bilinear", align_corners=False
            )
        tokens = self.norms[0](clip_tokens(features) + self.dropout(clip_tokens(attended)))
        with_pos = tokens + pos.repeat(frames, 1)[None]
        attended = self.cross_attn(
            with_pos, text + text_pos, text, key_padding_mask=~text_mask, need_weights=False
        )[0]
        tokens = self.norms[1](tokens + self.dropout(attended))
        hidden = self.linear2(self.dropout(F.relu(self.linear1(tokens))))
        tokens = self.norms[2](tokens + self.dropout(hidden))
        return (
            tokens.reshape(total, height * width, channels)
            .transpose(1, 2)
            .unflatten(2, (height, width))
        )


def _conv(in_channels: int, out_channels: int, kernel_size: int, norm: bool) -> nn.Module:
    """Conv (no bias before a norm) [+ GroupNorm], detectron2's ``c2_xavier_fill`` init."""
    conv = nn.Conv2d(
        in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=not norm
    )
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    if not norm:
        return conv
    return nn.Sequential(conv, nn.GroupNorm(math.gcd(8, out_channels), out_channels))


@PIXEL_DECODERS.register("cross_modal_fpn")
class CrossModalFPNDecoder(nn.Module):
    """ReferFormer's text-conditioned FPN (see the module docstring).

    Per level (coarse to fine): a lateral ``1x1`` conv + GroupNorm to ``conv_dim``, a
    :class:`VisionLanguageBlock` (self-attention reduced ``2^(L-1-i)`` times at level ``i``,
    ReferFormer's 8/4/2/1), the sum with the coarser result (nearest upsampling) and a ``3x3``
    conv + GroupNorm + ReLU; then a ``3x3`` conv to ``mask_dim`` channels.

    Args:
        in_channels: Channels of the levels, fine to coarse (ReferFormer: the stride-4 backbone
            level, then the encoder memory at strides 8, 16, 32).
        text_dim: Width of the text tokens; projected (Linear + LayerNorm) when it differs from
            ``conv_dim``.
        conv_dim: Width of the FPN.
        mask_dim: Output channels (ReferFormer 256).
        ffn_dim: FFN width of the vision-language blocks (ReferFormer 2048).
        num_heads: Attention heads (8).
        dropout: Dropout of the blocks (0.1).
        vision_language: ``False`` drops the blocks: a plain FPN (no text, no attention).
        text_positions: Positions of the text keys, one of
            :data:`~rvoslib.models.fusion.mmf.TEXT_POSITIONS` (``"centred"``: rvoslib's;
            ``"original"``: the released code's).

    Attributes:
        out_channels: ``mask_dim``.

    Example:
        >>> decoder = CrossModalFPNDecoder([8, 16], text_dim=16, conv_dim=16, mask_dim=8,
        ...                                ffn_dim=32, num_heads=2)
        >>> levels = [torch.randn(1, 2, 8, 16, 16), torch.randn(1, 2, 16, 8, 8)]
        >>> text = TextFeatures(torch.randn(1, 16), torch.randn(1, 3, 16), torch.ones(1, 3).bool())
        >>> decoder(levels, text).shape
        torch.Size([1, 2, 8, 16, 16])
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        text_dim: int,
        conv_dim: int = 256,
        mask_dim: int = 256,
        ffn_dim: int = 2048,
        num_heads: int = 8,
        dropout: float = 0.1,
        vision_language: bool = True,
        text_positions: str = "centred",
    ) -> None:
        super().__init__()
        self.text_positions = check_text_positions(text_positions)
        channels = [int(c) for c in in_channels]
        if not channels or min(channels) < 1 or min(conv_dim, mask_dim, text_dim) < 1:
            raise ValueError(
                "in_channels must be positive ints and conv_dim, mask_dim, text_dim >= 1, got "
                f"{list(in_channels)}, {conv_dim}, {mask_dim}, {text_dim}"
            )
        if vision_language and (conv_dim % num_heads or conv_dim % 4):
            raise ValueError(
                f"num_heads ({num_heads}) must divide conv_dim ({conv_dim}), a multiple of 4"
            )
        self.in_channels, self.text_dim, self.conv_dim = channels, int(text_dim), conv_dim
        self.out_channels, self.vision_language = mask_dim, vision_language
        self.lateral = nn.ModuleList(_conv(c, conv_dim, 1, norm=True) for c in channels)
        self.output = nn.ModuleList(
            nn.Sequential(_conv(conv_dim, conv_dim, 3, norm=True), nn.ReLU()) for _ in channels
        )
        levels = len(channels)
        self.blocks = nn.ModuleList(
            VisionLanguageBlock(conv_dim, num_heads, ffn_dim, dropout, 2 ** (levels - 1 - index))
            for index in range(levels if vision_language else 0)
        )
        self.text_proj = (
            nn.Identity()
            if text_dim == conv_dim or not vision_language
            else nn.Sequential(nn.Linear(text_dim, conv_dim), nn.LayerNorm(conv_dim))
        )
        self.mask_features = _conv(conv_dim, mask_dim, 3, norm=False)

    def forward(self, levels: Sequence[torch.Tensor], text: TextFeatures) -> torch.Tensor:
        """Decode the pyramid.

        Args:
            levels: ``len(in_channels)`` maps ``(B, T, C_i, h_i, w_i)`` float, fine to coarse.
            text: :class:`TextFeatures` with ``tokens (B, L, text_dim)`` and ``mask (B, L)``.

        Returns:
            ``(B, T, mask_dim, h_0, w_0)``.
        """
        if not is_compiling():
            self._check(levels, text)
        batch, frames = levels[0].shape[:2]
        if self.vision_language:
            mask = text.mask.bool()
            tokens = self.text_proj(text.tokens)
            text_pos = _text_positions(mask, self.conv_dim, self.text_positions).to(tokens.dtype)
        result = None
        for index in reversed(range(len(levels))):
            features = self.lateral[index](levels[index].flatten(0, 1))
            if self.vision_language:
                features = self.blocks[index](features, frames, tokens, mask, text_pos)
            if result is not None:
                features = features + F.interpolate(
                    result, size=features.shape[-2:], mode="nearest"
                )
            result = self.output[index](features)
        return self.mask_features(result).unflatten(0, (batch, frames))

    def _check(self, levels: Sequence[torch.Tensor], text: TextFeatures) -> None:
        if isinstance(levels, torch.Tensor) or not isinstance(levels, Sequence):
            raise TypeError(
                f"levels must be a list of (B, T, C, h, w) tensors, got {type(levels).__name__}"
            )
        if len(levels) != len(self.in_channels):
            raise ValueError(
                f"levels must hold {len(self.in_channels)} maps (in_channels={self.in_channels}), "
                f"got {len(levels)}"
            )
        first = check_tensor(levels[0], "levels[0]", ("B", "T", "C", "h", "w"), floating=True)
        batch, frames = first.shape[:2]
        for index, (level, channels) in enumerate(zip(levels, self.in_channels)):
            check_tensor(
                level, f"levels[{index}]", (batch, frames, channels, "h", "w"), floating=True
            )
        if self.vision_language:
            check_tensor(text.tokens, "text.tokens", (batch, "L", self.text_dim), floating=True)
            if tuple(text.mask.shape) != tuple(text.tokens.shape[:2]):
                raise ValueError(
                    f"text.mask must be (B, L) = {tuple(text.tokens.shape[:2])}, "
                    f"got {format_shape(text.mask.shape)}"
                )
