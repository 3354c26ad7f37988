"""ReferFormer's mask side: the cross-modal FPN pixel decoder and the CondInst dynamic mask head.

* :class:`CrossModalFPNDecoder` (``PIXEL_DECODERS`` ``"cross_modal_fpn"``, ReferFormer's
  ``CrossModalFPNDecoder``): an FPN over the stride-4 backbone level and the encoder's memory
  levels, where every level, before the top-down sum, goes through a vision-language block:
  self-attention over all the (spatially reduced) tokens of the clip, cross-attention to the
  text, FFN (post-norm). Output: ``mask_dim`` channels at the finest stride.
* :class:`CondInstMaskHead` (``MASK_HEADS`` ``"condinst"``): a controller MLP turns each query
  into the weights of a small per-query network of ``1x1`` convolutions (CondInst, Tian et al.
  ECCV 2020) that runs on the pixel features concatenated with two channels of coordinates
  relative to the query's reference point in its frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rvoslib._checks import check_tensor, format_shape, is_compiling
from rvoslib.models.fusion.mmf import _text_positions, _visual_positions
from rvoslib.models.positions import pixel_centres
from rvoslib.models.registry import MASK_HEADS, PIXEL_DECODERS
from rvoslib.models.text import TextFeatures
from rvoslib.models.transformer.referformer import MLP

__all__ = [
    "CondInstMaskHead",
    "CrossModalFPNDecoder",
    "VisionLanguageBlock",
    "relative_coordinates",
]


def relative_coordinates(reference_points: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Each pixel centre's offset from a reference point, in units of the image size.

    Channel 0 is ``x_ref - (j + 0.5) / w``, channel 1 is ``y_ref - (i + 0.5) / h`` (the sign of
    ReferFormer's ``reference - location``; ReferFormer measures them in input pixels).

    Args:
        reference_points: ``(..., 2)`` float points ``(x, y)`` in ``[0, 1]``.
        size: ``(h, w)`` of the map.

    Returns:
        ``(..., 2, h, w)``.

    Example:
        >>> relative_coordinates(torch.tensor([0.5, 0.5]), (1, 2)).tolist()
        [[[0.25, -0.25]], [[0.0, 0.0]]]
    """
    height, width = size
    xs = pixel_centres(width, reference_points.device, reference_points.dtype)
    ys = pixel_centres(height, reference_points.device, reference_points.dtype)
    rel_x = (reference_points[..., 0, None] - xs)[..., None, :].expand(
        *reference_points.shape[:-1], height, width
    )
    rel_y = (reference_points[..., 1, None] - ys)[..., :, None].expand(
        *reference_points.shape[:-1], height, width
    )
    return torch.stack([rel_x, rel_y], -3)


@MASK_HEADS.register("condinst")
class CondInstMaskHead(nn.Module):
    """Dynamic ``1x1`` convolutions predicted per query (ReferFormer's and SOC's mask head).

    Layer widths ``(P + 2) -> hidden -> ... -> hidden -> 1`` (``num_layers`` convolutions, ReLU
    between them; ReferFormer and SOC: 3 layers, ``hidden_channels`` 8). The controller is a
    ``controller_layers``-layer MLP from the query (Xavier weights, zero biases, as released);
    its output holds all weights, then all biases.

    Args:
        query_dim: Width ``D`` of the queries.
        pixel_channels: Channels ``P`` of the pixel features.
        hidden_channels: Width of the dynamic layers.
        num_layers: Number of dynamic convolutions.
        controller_layers: Layers of the controller MLP.
        relative_coordinates: Add the 2 relative-coordinate channels.

    Example:
        >>> head = CondInstMaskHead(query_dim=16, pixel_channels=4)
        >>> queries, pixels = torch.randn(2, 1, 3, 5, 16), torch.randn(1, 3, 4, 8, 8)
        >>> head(queries, pixels, reference_points=torch.rand(2, 1, 3, 5, 2)).shape
        torch.Size([2, 1, 3, 5, 8, 8])
    """

    def __init__(
        self,
        query_dim: int,
        pixel_channels: int,
        hidden_channels: int = 8,
        num_layers: int = 3,
        controller_layers: int = 3,
        relative_coordinates: bool = True,
    ) -> None:
        super().__init__()
        if min(query_dim, pixel_channels, hidden_channels, num_layers, controller_layers) < 1:
            raise ValueError(
                "query_dim, pixel_channels, hidden_channels, num_layers and controller_layers "
                f"must be >= 1, got {query_dim}, {pixel_channels}, {hidden_channels}, "
                f"{num_layers}, {controller_layers}"
            )
        self.query_dim, self.pixel_channels = query_dim, pixel_channels
        self.use_coordinates = relative_coordinates
        inputs = pixel_channels + (2 if relative_coordinates else 0)
        widths = [inputs] + [hidden_channels] * (num_layers - 1) + [1]
        self.layer_shapes = list(zip(widths[1:], widths[:-1]))  # (out, in) per layer
        self.weight_sizes = [out * inp for out, inp in self.layer_shapes]
        self.bias_sizes = [out for out, _ in self.layer_shapes]
        self.num_params = sum(self.weight_sizes) + sum(self.bias_sizes)
        self.controller = MLP(query_dim, query_dim, self.num_params, controller_layers)
        for layer in self.controller.layers:
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(
        self,
        queries: torch.Tensor,
        pixels: torch.Tensor,
        reference_points: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mask logits of every query in its frame.

        Args:
            queries: ``(Ly, B, T, N, D)`` float.
            pixels: ``(B, T, P, h, w)`` float pixel features.
            reference_points: ``(Ly, B, T, N, 2)`` points ``(x, y)`` in ``[0, 1]`` (ReferFormer:
                the centre of the box refined by decoder layer ``l``); ``None``: the image
                centre for every query.

        Returns:
            ``(Ly, B, T, N, h, w)`` logits.
        """
        if not is_compiling():
            self._check(queries, pixels, reference_points)
        channels, (height, width) = self.pixel_channels, pixels.shape[-2:]
        params = self.controller(queries).to(pixels.dtype)  # (Ly, B, T, N, num_params)
        pieces = params.split(self.weight_sizes + self.bias_sizes, dim=-1)
        weights = [w.unflatten(-1, shape) for w, shape in zip(pieces, self.layer_shapes)]
        biases = pieces[len(self.layer_shapes) :]
        first = weights[0]
        # layer 0 on [pixels, coordinates] without building the concatenation per query
        hidden = torch.einsum("lbtnoc,btck->lbtnok", first[..., :channels], pixels.flatten(3))
        if self.use_coordinates:
            if reference_points is None:
                reference_points = queries.new_full((*queries.shape[:4], 2), 0.5)
            coords = relative_coordinates(reference_points.to(pixels.dtype), (height, width))
            hidden = hidden + torch.einsum(
                "lbtnoc,lbtnck->lbtnok", first[..., channels:], coords.flatten(-2)
            )
        hidden = hidden + biases[0][..., None]
        for weight, bias in zip(weights[1:], biases[1:]):
            hidden = torch.einsum("lbtnoi,lbtnik->lbtnok", weight, F.relu(hidden)) + bias[..., None]
        return hidden[..., 0, :].unflatten(-1, (height, width))

    def _check(
        self, queries: torch.Tensor, pixels: torch.Tensor, reference_points: torch.Tensor | None
    ) -> None:
        queries = check_tensor(
            queries, "queries", ("Ly", "B", "T", "N", self.query_dim), floating=True
        )
        batch, frames = queries.shape[1:3]
        check_tensor(
            pixels, "pixels", (batch, frames, self.pixel_channels, "h", "w"), floating=True
        )
        if reference_points is not None:
            check_tensor(
                reference_points, "reference_points", (*queries.shape[:4], 2), floating=True
            )


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
    ) -> None:
        super().__init__()
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
            text_pos = _text_positions(mask, self.conv_dim).to(tokens.dtype)
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
