"""Segmentation heads: from fused features to mask logits at the input resolution."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rvoslib._checks import check_tensor, is_compiling

__all__ = ["MultiScaleSegmentationHead", "SegmentationHead"]


def _conv_bn_gelu(in_ch: int, out_ch: int, kernel_size: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.GELU(),
    )


class SegmentationHead(nn.Module):
    """The reference head: ``3x3 conv -> BatchNorm -> GELU -> Dropout -> 1x1 conv``, upsampled.

    Logits are upsampled bilinearly to exactly ``output_size``, so inputs whose sides are not
    multiples of the stride (e.g. 97x131) come back at their own size.

    Args:
        in_channels: Channels of the fused features.
        hidden_channels: Width of the 3x3 convolution.
        dropout: Dropout before the classifier.

    Example:
        >>> head = SegmentationHead(16, hidden_channels=8)
        >>> head(torch.randn(2, 16, 4, 5), output_size=(97, 131)).shape
        torch.Size([2, 1, 97, 131])
    """

    uses_skips = False

    def __init__(self, in_channels: int, hidden_channels: int = 256, dropout: float = 0.3) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.block = _conv_bn_gelu(in_channels, hidden_channels)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(hidden_channels, 1, kernel_size=1)

    def forward(
        self,
        fused: torch.Tensor,
        skips: Sequence[torch.Tensor] = (),
        output_size: tuple[int, int] | None = None,
        text: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict mask logits.

        Args:
            fused: ``(N, C, h, w)`` fused features.
            skips: Unused (for interface compatibility with the multi-scale head).
            output_size: ``(H, W)`` of the logits; defaults to the feature size.
            text: Unused.

        Returns:
            ``(N, 1, H, W)`` logits.
        """
        if not is_compiling():
            check_tensor(fused, "fused", ("N", self.in_channels, "h", "w"), floating=True)
        logits = self.classifier(self.dropout(self.block(fused)))
        if output_size is not None and tuple(logits.shape[-2:]) != tuple(output_size):
            logits = F.interpolate(logits, size=output_size, mode="bilinear", align_corners=False)
        return logits


class MultiScaleSegmentationHead(nn.Module):
    """FPN-style head that refines the fused map with the backbone's finer levels.

    Starting from the fused (coarse) map, each step upsamples, adds a 1x1 lateral projection of
    the next finer backbone level (e.g. strides 16, 8, 4) and smooths with a 3x3 conv. When
    ``text_dim`` is set, the sentence feature modulates every lateral (FiLM: per-channel scale
    and shift), so the fine levels also know which object is referred to. Logits are predicted
    at the finest level and upsampled to ``output_size``.

    Args:
        in_channels: Channels of the fused features.
        skip_channels: Channels of the finer backbone levels, coarse to fine.
        hidden_channels: Width of the pyramid.
        dropout: Dropout before the classifier.
        text_dim: Width of the sentence feature for FiLM modulation, or ``None``.

    Example:
        >>> head = MultiScaleSegmentationHead(16, [12, 8], hidden_channels=8)
        >>> skips = [torch.randn(2, 12, 8, 8), torch.randn(2, 8, 16, 16)]
        >>> head(torch.randn(2, 16, 4, 4), skips, output_size=(64, 64)).shape
        torch.Size([2, 1, 64, 64])
    """

    uses_skips = True

    def __init__(
        self,
        in_channels: int,
        skip_channels: Sequence[int],
        hidden_channels: int = 128,
        dropout: float = 0.1,
        text_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.skip_channels = list(skip_channels)
        self.top = _conv_bn_gelu(in_channels, hidden_channels, 1)
        self.laterals = nn.ModuleList(
            nn.Conv2d(c, hidden_channels, kernel_size=1) for c in self.skip_channels
        )
        self.smooth = nn.ModuleList(
            _conv_bn_gelu(hidden_channels, hidden_channels) for _ in self.skip_channels
        )
        self.film = None
        if text_dim is not None:
            self.film = nn.ModuleList(
                nn.Linear(text_dim, 2 * hidden_channels) for _ in self.skip_channels
            )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(hidden_channels, 1, kernel_size=1)

    def forward(
        self,
        fused: torch.Tensor,
        skips: Sequence[torch.Tensor] = (),
        output_size: tuple[int, int] | None = None,
        text: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict mask logits.

        Args:
            fused: ``(N, C, h, w)`` fused (coarsest) features.
            skips: Finer backbone levels, coarse to fine, ``(N, C_i, h_i, w_i)``.
            output_size: ``(H, W)`` of the logits; defaults to the finest level's size.
            text: ``(N, text_dim)`` sentence features (required when ``text_dim`` was set).

        Returns:
            ``(N, 1, H, W)`` logits.
        """
        if not is_compiling():
            check_tensor(fused, "fused", ("N", self.in_channels, "h", "w"), floating=True)
            if len(skips) != len(self.skip_channels):
                raise ValueError(
                    f"skips must hold {len(self.skip_channels)} maps with channels "
                    f"{self.skip_channels}, got {len(skips)}"
                )
            for i, (skip, channels) in enumerate(zip(skips, self.skip_channels)):
                check_tensor(skip, f"skips[{i}]", (fused.shape[0], channels, "h", "w"))
            if self.film is not None and text is None:
                raise ValueError("text (N, text_dim) is required: the head was built with text_dim")
        hidden = self.top(fused)
        for i, skip in enumerate(skips):
            lateral = self.laterals[i](skip)
            if self.film is not None:
                scale, shift = self.film[i](text).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
                lateral = lateral * (1 + scale) + shift
            hidden = F.interpolate(
                hidden, size=skip.shape[-2:], mode="bilinear", align_corners=False
            )
            hidden = self.smooth[i](hidden + lateral)
        logits = self.classifier(self.dropout(hidden))
        if output_size is not None and tuple(logits.shape[-2:]) != tuple(output_size):
            logits = F.interpolate(logits, size=output_size, mode="bilinear", align_corners=False)
        return logits
