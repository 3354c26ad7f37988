"""SOC's bidirectional multimodal fusion (MMF): multiplicative cross-attention both ways.

What the released code does (RobertLuo1/NeurIPS2023_SOC, ``models/vla.py`` class ``MMF`` and its
use in ``models/soc.py``):

* ``MMF(tgt, memory)`` returns ``tgt * MHA(query=tgt + query_pos, key=memory + pos,
  value=memory)`` with ``nn.MultiheadAttention(256, 8, dropout=0)``: no residual, no norm, no
  projection besides the attention's own.
* **Visual from text** (``vlf``, one module shared by all levels): at each of the 4 levels
  (strides 8/16/32 from the backbone, after their 1x1 conv + GroupNorm projection, and the extra
  stride-64 level) every visual token of the clip is a query over the RoBERTa word features
  (projected to 256); keys carry a 1D sine position, padding words are masked. The result
  replaces the level: ``v <- v * MHA(v, text)``.
* **Text from visual** (``lvf``, a second shared module): at the 3 backbone levels the word
  features (the *original* ones at each level, no query position) attend to all ``T x h x w``
  visual tokens of the clip (the projected, not yet fused level; keys carry the backbone's 2D
  sine position): ``t_l <- t * MHA(t, v_l)``. The visual fusion never uses ``t_l``; only the
  stride-32 level's ``t_l`` is used, by the video-text contrastive loss (mean over the real
  words). The other two are computed and discarded.

Here the text attends to the levels listed in ``text_levels`` (default: the last level given;
SOC's layout, levels at strides 8/16/32/64, corresponds to ``text_levels=[2]``); with several,
the fused texts are averaged (our generalisation). Visual tokens of all levels attend to the
text in one attention call (each token's attention is independent, so this equals per-level
calls). Not registered in ``FUSIONS``: it maps several levels and the text to several levels and
the text, not one map to one map.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from rvoslib._checks import check_tensor, is_compiling

__all__ = [
    "TEXT_POSITIONS",
    "BidirectionalMultimodalFusion",
    "FusedFeatures",
    "check_text_positions",
]


class FusedFeatures(NamedTuple):
    """What :class:`BidirectionalMultimodalFusion` returns.

    Attributes:
        visual: One ``(B, T, dim, h_i, w_i)`` tensor per input level.
        text: ``(B, L, dim)`` fused text tokens, zero at padding positions.
    """

    visual: list[torch.Tensor]
    text: torch.Tensor


def _sine(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """DETR's sine code of positions in ``[0, 1]`` (scaled to ``2 pi``): ``(..., dim)``."""
    index = torch.arange(dim, device=positions.device, dtype=torch.float32)
    frequencies = 10000.0 ** (2 * torch.div(index, 2, rounding_mode="floor") / dim)
    angles = positions.float().unsqueeze(-1) * (2 * math.pi) / frequencies
    return torch.where(index % 2 == 0, angles.sin(), angles.cos())


#: Where token ``k`` (1-based) of ``n`` real tokens sits on the 1D sine code: ``"centred"``
#: (rvoslib's, ``(k - 0.5) / n``) or ``"original"`` (ReferFormer's and SOC's
#: ``PositionEmbeddingSine1D(normalize=True)``: ``k / (n + 1e-6)``).
TEXT_POSITIONS = ("centred", "original")


def check_text_positions(text_positions: str) -> str:
    """``text_positions`` if it is one of :data:`TEXT_POSITIONS`, else a ``ValueError``.

    Example:
        >>> check_text_positions("original")
        'original'
    """
    if text_positions not in TEXT_POSITIONS:
        raise ValueError(f"text_positions must be one of {TEXT_POSITIONS}, got {text_positions!r}")
    return text_positions


def _text_positions(text_mask: torch.Tensor, dim: int, mode: str = "centred") -> torch.Tensor:
    """1D sine positions of the real tokens, normalised by their count: ``(B, L, dim)``.

    ``mode`` is one of :data:`TEXT_POSITIONS`; padding tokens (masked as keys) get the code of
    the last real token's position.
    """
    mask = text_mask.float()
    if mode == "original":
        cumulative = mask.cumsum(1)
        return _sine(cumulative / (cumulative[:, -1:] + 1e-6), dim)
    count = mask.sum(1, keepdim=True).clamp_min(1.0)
    return _sine((mask.cumsum(1) - 0.5) / count, dim)


def _visual_positions(height: int, width: int, dim: int, device: torch.device) -> torch.Tensor:
    """2D sine positions of pixel centres, ``dim / 2`` channels for y then x: ``(h * w, dim)``."""
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
    y_code = _sine(ys, dim // 2)[:, None, :].expand(height, width, -1)
    x_code = _sine(xs, dim // 2)[None, :, :].expand(height, width, -1)
    return torch.cat([y_code, x_code], -1).reshape(height * width, dim)


class BidirectionalMultimodalFusion(nn.Module):
    """SOC's MMF: ``v <- v * MHA(v, text)`` at every level, ``t <- t * MHA(t, v)`` at some.

    Args:
        visual_channels: Channels of the incoming visual levels: one int per level, or one int
            for any number of levels. A level whose channels differ from ``dim`` is projected
            with a 1x1 convolution + GroupNorm (SOC's input projection); levels already at
            ``dim`` pass unchanged.
        text_dim: Width of the incoming text tokens; projected by Linear + LayerNorm when it
            differs from ``dim`` (SOC's ``FeatureResizer`` without its dropout).
        dim: Fusion width ``C``.
        num_heads: Heads of both attentions (SOC: 8); must divide ``dim``.
        text_levels: Indices of the levels the text attends to (negative counts from the end);
            ``None``: the last level. Several: the fused texts are averaged.
        dropout: Attention dropout (SOC: 0).
        positions: Add sine positions to the keys (text positions when the visual tokens
            attend to the text, 2D positions when the text attends to a level), as SOC does.
        text_positions: Where the text positions sit, one of :data:`TEXT_POSITIONS`
            (``"centred"``: rvoslib's; ``"original"``: SOC's released code).

    Raises:
        ValueError: ``num_heads`` does not divide ``dim``, ``dim`` is odd, a channel count is
            not positive, or ``text_levels`` is empty or out of range.

    Example:
        >>> fusion = BidirectionalMultimodalFusion([16, 16, 16], text_dim=16, dim=16, num_heads=2)
        >>> levels = [torch.randn(2, 3, 16, s, s) for s in (8, 4, 2)]
        >>> fused = fusion(levels, torch.randn(2, 5, 16), torch.ones(2, 5, dtype=torch.bool))
        >>> [level.shape[-1] for level in fused.visual], fused.text.shape
        ([8, 4, 2], torch.Size([2, 5, 16]))
    """

    def __init__(
        self,
        visual_channels: int | list[int],
        text_dim: int,
        dim: int = 256,
        num_heads: int = 8,
        text_levels: list[int] | None = None,
        dropout: float = 0.0,
        positions: bool = True,
        text_positions: str = "centred",
    ) -> None:
        super().__init__()
        self.text_positions = check_text_positions(text_positions)
        channels = [visual_channels] if isinstance(visual_channels, int) else visual_channels
        if not channels or any(int(c) < 1 for c in channels) or text_dim < 1:
            raise ValueError(
                f"visual_channels and text_dim must be positive, got {visual_channels} and "
                f"{text_dim}"
            )
        if num_heads < 1 or dim % num_heads or dim % 2:
            raise ValueError(f"num_heads ({num_heads}) must divide dim ({dim}), an even width")
        self.per_level = not isinstance(visual_channels, int)
        self.num_levels = len(channels) if self.per_level else None
        self.visual_channels = [int(c) for c in channels]
        self.text_dim, self.dim, self.positions = text_dim, dim, positions
        self.text_levels = [-1] if text_levels is None else [int(i) for i in text_levels]
        if not self.text_levels:
            raise ValueError("text_levels must name at least one level, got []")
        if self.num_levels is not None:
            self._resolve_text_levels(self.num_levels)
        self.visual_proj = nn.ModuleList(
            nn.Identity() if c == dim else _level_projection(c, dim) for c in self.visual_channels
        )
        self.text_proj = (
            nn.Identity()
            if text_dim == dim
            else nn.Sequential(nn.Linear(text_dim, dim), nn.LayerNorm(dim))
        )
        self.visual_attention = nn.MultiheadAttention(dim, num_heads, dropout, batch_first=True)
        self.text_attention = nn.MultiheadAttention(dim, num_heads, dropout, batch_first=True)

    def _resolve_text_levels(self, num_levels: int) -> list[int]:
        resolved = []
        for level in self.text_levels:
            if not -num_levels <= level < num_levels:
                raise ValueError(
                    f"text_levels entries must index {num_levels} levels, got {self.text_levels}"
                )
            resolved.append(level % num_levels)
        return resolved

    def forward(
        self, visual: Sequence[torch.Tensor], text_tokens: torch.Tensor, text_mask: torch.Tensor
    ) -> FusedFeatures:
        """Fuse.

        Args:
            visual: Levels ``(B, T, C_i, h_i, w_i)`` float, ``C_i = visual_channels[i]``.
            text_tokens: ``(B, L, text_dim)`` float word features.
            text_mask: ``(B, L)`` bool, true for real tokens (each text needs at least one).

        Returns:
            :class:`FusedFeatures`: ``visual`` levels ``(B, T, dim, h_i, w_i)`` and ``text``
            ``(B, L, dim)``, zero at padding; padding tokens never influence either.

        Raises:
            TypeError: a tensor has the wrong kind of dtype.
            ValueError: wrong number of levels or wrong shapes.
        """
        if not is_compiling():
            self._check(visual, text_tokens, text_mask)
        batch, frames = visual[0].shape[:2]
        mask = text_mask.bool()
        text = self.text_proj(text_tokens)
        levels = [self._project(index, level) for index, level in enumerate(visual)]
        tokens = [level.permute(0, 1, 3, 4, 2).reshape(batch, -1, self.dim) for level in levels]

        # visual <- visual * MHA(visual, text): all levels' tokens in one call
        code = _text_positions(mask, self.dim, self.text_positions).to(text.dtype)
        keys = text + code if self.positions else text
        queries = torch.cat(tokens, 1)
        attended = self.visual_attention(
            queries, keys, text, key_padding_mask=~mask, need_weights=False
        )[0]
        fused_tokens = (queries * attended).split([t.shape[1] for t in tokens], 1)
        fused_visual = [
            fused.reshape(batch, frames, *level.shape[-2:], self.dim).permute(0, 1, 4, 2, 3)
            for fused, level in zip(fused_tokens, levels)
        ]

        # text <- text * MHA(text, visual level), for each text level, averaged
        fused_texts = []
        for index in self._resolve_text_levels(len(levels)):
            values = tokens[index]
            if self.positions:
                height, width = levels[index].shape[-2:]
                code = _visual_positions(height, width, self.dim, values.device).to(values.dtype)
                keys = values + code.repeat(frames, 1).unsqueeze(0)
            else:
                keys = values
            attended = self.text_attention(text, keys, values, need_weights=False)[0]
            fused_texts.append(text * attended)
        fused_text = torch.stack(fused_texts).mean(0) if len(fused_texts) > 1 else fused_texts[0]
        return FusedFeatures(fused_visual, fused_text * mask.unsqueeze(-1).to(fused_text.dtype))

    def _project(self, index: int, level: torch.Tensor) -> torch.Tensor:
        projection = self.visual_proj[index if self.per_level else 0]
        if isinstance(projection, nn.Identity):
            return level
        batch, frames = level.shape[:2]
        return projection(level.flatten(0, 1)).unflatten(0, (batch, frames))

    def _check(
        self, visual: Sequence[torch.Tensor], text_tokens: torch.Tensor, text_mask: torch.Tensor
    ) -> None:
        if isinstance(visual, torch.Tensor) or not isinstance(visual, Sequence) or not visual:
            raise TypeError(
                "visual must be a non-empty list of (B, T, C, h, w) tensors, got "
                f"{type(visual).__name__}"
            )
        if self.num_levels is not None and len(visual) != self.num_levels:
            raise ValueError(
                f"visual must have {self.num_levels} levels (visual_channels="
                f"{self.visual_channels}), got {len(visual)}"
            )
        self._resolve_text_levels(len(visual))
        first = check_tensor(visual[0], "visual[0]", ("B", "T", "C", "h", "w"), floating=True)
        batch, frames = first.shape[:2]
        for index, level in enumerate(visual):
            channels = self.visual_channels[index if self.per_level else 0]
            check_tensor(
                level, f"visual[{index}]", (batch, frames, channels, "h", "w"), floating=True
            )
        check_tensor(text_tokens, "text_tokens", (batch, "L", self.text_dim), floating=True)
        check_tensor(text_mask, "text_mask", (batch, text_tokens.shape[1]))
        if text_mask.is_floating_point():
            raise TypeError(f"text_mask must be bool, got {text_mask.dtype}")


def _level_projection(in_channels: int, dim: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_channels, dim, kernel_size=1), nn.GroupNorm(math.gcd(32, dim), dim)
    )
