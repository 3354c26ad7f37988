"""Layers shared by the segmentation heads."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["conv_bn_gelu", "film"]


def conv_bn_gelu(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Sequential:
    """``Conv2d (no bias) -> BatchNorm2d -> GELU`` with "same" padding."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.GELU(),
    )


def film(features: torch.Tensor, parameters: torch.Tensor) -> torch.Tensor:
    """FiLM: ``features * (1 + scale) + shift``.

    Args:
        features: ``(N, C, h, w)``.
        parameters: ``(N, 2C)``: scales, then shifts.

    Returns:
        ``(N, C, h, w)``.
    """
    scale, shift = parameters[..., None, None].chunk(2, dim=1)
    return features * (1 + scale) + shift
