"""Temporal modelling with 3D convolutions over (time, height, width)."""

from __future__ import annotations

import torch
from torch import nn

from rvoslib._checks import check_tensor, is_compiling
from rvoslib.models.registry import TEMPORAL_MODULES

__all__ = ["TemporalModule"]


@TEMPORAL_MODULES.register("conv3d")
class TemporalModule(nn.Module):
    """Three 3x3x3 convolutions (``C -> 2C -> 2C -> C``) with a 1x1x1 residual.

    Each convolution is followed by ``BatchNorm3d`` and ``GELU`` (the last one's GELU after
    the residual sum). Zero padding keeps the number of frames, so ``T = 1`` works.

    Args:
        channels: Input and output channels ``C``.
        expansion: Width multiplier of the inner layers.

    Example:
        >>> TemporalModule(8)(torch.randn(2, 1, 8, 5, 7)).shape
        torch.Size([2, 1, 8, 5, 7])
    """

    def __init__(self, channels: int, expansion: int = 2) -> None:
        super().__init__()
        inner = channels * expansion
        self.channels = channels

        def conv_bn(in_ch: int, out_ch: int) -> list[nn.Module]:
            return [nn.Conv3d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm3d(out_ch)]

        self.body = nn.Sequential(
            *conv_bn(channels, inner),
            nn.GELU(),
            *conv_bn(inner, inner),
            nn.GELU(),
            *conv_bn(inner, channels),
        )
        self.residual = nn.Conv3d(channels, channels, kernel_size=1)
        self.activation = nn.GELU()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Mix information across neighbouring frames.

        Args:
            features: ``(B, T, C, h, w)``.

        Returns:
            ``(B, T, C, h, w)``.
        """
        if not is_compiling():
            check_tensor(features, "features", ("B", "T", self.channels, "h", "w"), floating=True)
        volume = features.transpose(1, 2)  # (B, C, T, h, w)
        mixed = self.activation(self.body(volume) + self.residual(volume))
        return mixed.transpose(1, 2)
