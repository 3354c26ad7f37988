"""Pixel decoders (``PIXEL_DECODERS``): multi-scale maps -> per-pixel features for mask kernels.

:class:`TextFPNPixelDecoder` (``"fpn_text"``) is MTTR's ``FPNSpatialDecoder`` (released
``models/segmentation.py``). MTTR conditions it on the text through its *input*: the coarsest
map it receives is the multimodal transformer's encoded visual memory, whose tokens attended to
the expression's tokens in the encoder; the finer levels come straight from the backbone. An
option that is ours, off by default, also modulates every stage by the sentence (FiLM).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rvoslib._checks import check_tensor, is_compiling
from rvoslib.models.registry import PIXEL_DECODERS
from rvoslib.models.text import TextFeatures
from rvoslib.models.transformer.levels import check_levels

__all__ = ["TextFPNPixelDecoder"]


def _conv_gn(in_channels: int, out_channels: int, groups: int) -> nn.Sequential:
    """``3x3 conv -> GroupNorm`` (the ReLU comes after the optional FiLM)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.GroupNorm(math.gcd(groups, out_channels), out_channels),
    )


@PIXEL_DECODERS.register("fpn_text")
class TextFPNPixelDecoder(nn.Module):
    """MTTR's FPN spatial decoder: coarse text-aware memory refined with the finer levels.

    With ``C`` the width of the first stage (``hidden_channels``, MTTR: the memory width
    ``d_model``), the coarsest map goes through two ``3x3 conv -> GroupNorm(8) -> ReLU`` stages
    (widths ``C`` and ``C/2``); then for each finer level, coarse to fine, a ``1x1`` adapter of
    that level is added to the nearest-upsampled map and a ``3x3 conv -> GN -> ReLU`` halves the
    width (``C/4``, ``C/8``, ...; at least 8); a last ``3x3`` conv gives ``out_channels``
    (MTTR: 8) at the finest level's resolution (MTTR: stride 4). Convolutions use Kaiming-uniform
    (``a=1``) weights and zero biases, as released.

    Args:
        in_channels: Channels of the maps, fine to coarse (injected); the last is the coarse
            memory (MTTR: backbone strides 4 and 8, then the transformer memory at stride 16).
        text_dim: Width of the sentence feature (injected; used by ``film``).
        out_channels: Channels ``P`` of the output (MTTR: 8, the mask kernel size).
        hidden_channels: Width of the first stage (``None``: ``in_channels[-1]``, as MTTR).
        film: Ours, off in MTTR: after every GroupNorm, scale and shift the channels by a
            linear function of the sentence feature (``x * (1 + gamma) + beta``, zero-initialised
            so that training starts from MTTR's decoder).
        num_groups: GroupNorm groups (MTTR: 8; the gcd with the width when it does not divide).

    Attributes:
        out_channels: ``P``.

    Raises:
        ValueError: no input level or a size below 1.

    Example:
        >>> decoder = TextFPNPixelDecoder([4, 6, 16], text_dim=12)
        >>> levels = [torch.randn(2, 3, 4, 16, 16), torch.randn(2, 3, 6, 8, 8),
        ...           torch.randn(2, 3, 16, 4, 4)]
        >>> text = TextFeatures(torch.randn(2, 12), torch.randn(2, 5, 12), torch.ones(2, 5).bool())
        >>> decoder(levels, text).shape
        torch.Size([2, 3, 8, 16, 16])
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        text_dim: int,
        out_channels: int = 8,
        hidden_channels: int | None = None,
        film: bool = False,
        num_groups: int = 8,
    ) -> None:
        super().__init__()
        self.in_channels = [int(c) for c in in_channels]
        if not self.in_channels or min(self.in_channels) < 1:
            raise ValueError(
                f"in_channels must be a non-empty list of ints >= 1, got {in_channels}"
            )
        width = self.in_channels[-1] if hidden_channels is None else int(hidden_channels)
        if min(width, out_channels, num_groups, text_dim) < 1:
            raise ValueError(
                "hidden_channels, out_channels, num_groups and text_dim must be >= 1, got "
                f"{width}, {out_channels}, {num_groups} and {text_dim}"
            )
        self.out_channels, self.text_dim = int(out_channels), int(text_dim)
        widths = [width, max(width // 2, 8)]
        self.top = nn.ModuleList(
            [
                _conv_gn(self.in_channels[-1], widths[0], num_groups),
                _conv_gn(widths[0], widths[1], num_groups),
            ]
        )
        self.adapters, self.stages = nn.ModuleList(), nn.ModuleList()
        for channels in self.in_channels[-2::-1]:  # finer levels, coarse to fine
            current = widths[-1]
            self.adapters.append(nn.Conv2d(channels, current, kernel_size=1))
            widths.append(max(current // 2, 8))
            self.stages.append(_conv_gn(current, widths[-1], num_groups))
        self.output = nn.Conv2d(widths[-1], out_channels, 3, padding=1)
        self.film = nn.ModuleList(nn.Linear(text_dim, 2 * w) for w in widths) if film else None
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight, a=1)
                nn.init.zeros_(module.bias)
        if self.film is not None:
            for linear in self.film:
                nn.init.zeros_(linear.weight)
                nn.init.zeros_(linear.bias)

    def _activate(self, x: torch.Tensor, index: int, sentence: torch.Tensor | None) -> torch.Tensor:
        if self.film is not None and sentence is not None:
            gamma, beta = self.film[index](sentence).chunk(2, dim=-1)  # (B*T, w) each
            x = x * (1 + gamma[..., None, None]) + beta[..., None, None]
        return F.relu(x)

    def forward(self, levels: Sequence[torch.Tensor], text: TextFeatures) -> torch.Tensor:
        """Decode per-pixel features.

        Args:
            levels: ``[(B, T, C_i, h_i, w_i)]`` fine to coarse with channels ``in_channels``;
                the last is the (text-aware) memory.
            text: :class:`~rvoslib.models.TextFeatures` of batch ``B`` (``sentence (B, D)`` is
                used only with ``film``).

        Returns:
            ``(B, T, P, h_0, w_0)`` features at the finest level's resolution.

        Raises:
            ValueError: wrong number of levels, or shapes/channels that do not fit (named).
        """
        if not is_compiling():
            self._check_inputs(levels, text)
        batch, frames = levels[0].shape[:2]
        flat = [level.flatten(0, 1) for level in levels]  # [(B*T, C_i, h_i, w_i)]
        sentence = None
        if self.film is not None:
            sentence = text.sentence[:, None].expand(batch, frames, -1).flatten(0, 1)
        x = flat[-1]
        for index, stage in enumerate(self.top):
            x = self._activate(stage(x), index, sentence)
        for index, (adapter, stage, skip) in enumerate(
            zip(self.adapters, self.stages, flat[-2::-1])
        ):
            lateral = adapter(skip)
            x = lateral + F.interpolate(x, size=lateral.shape[-2:], mode="nearest")
            x = self._activate(stage(x), index + 2, sentence)
        return self.output(x).unflatten(0, (batch, frames))

    def _check_inputs(self, levels: Sequence[torch.Tensor], text: TextFeatures) -> None:
        check_levels(levels, self.in_channels, "in_channels")
        if self.film is not None:
            check_tensor(text.sentence, "text.sentence", (levels[0].shape[0], self.text_dim))
