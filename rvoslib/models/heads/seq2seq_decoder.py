"""The decoder of the sequence-to-sequence VOS model : blocks of two convolutions
and a x2 bilinear upsampling, then a convolution to one logit."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rvoslib.models.registry import DECODERS

__all__ = ["Seq2SeqDecoder", "conv_bn_relu"]


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int) -> list[nn.Module]:
    """``[Conv2d (no bias, "same" padding), BatchNorm2d, ReLU]``."""
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


@DECODERS.register("seq2seq", description="Blocks of 2 conv + BN + ReLU and x2 upsampling.")
class Seq2SeqDecoder(nn.Module):
    """Blocks of [two conv + BN + ReLU, x2 bilinear upsampling], then a conv to 1 channel.

    Args:
        in_channels: Channels of the hidden states.
        channels: Output channels of each block (one x2 upsampling per block).
        kernel_size: Odd kernel size of every convolution.

    Example:
        >>> decoder = Seq2SeqDecoder(8, [8, 4], kernel_size=3)
        >>> decoder(torch.randn(3, 8, 4, 5), output_size=(16, 20)).shape
        torch.Size([3, 1, 16, 20])
    """

    def __init__(self, in_channels: int, channels: Sequence[int], kernel_size: int = 5) -> None:
        super().__init__()
        if not channels or any(int(c) < 1 for c in channels):
            raise ValueError(f"decoder channels must be positive widths, got {list(channels)}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"decoder kernel_size must be a positive odd int, got {kernel_size}")
        blocks = []
        previous = in_channels
        for width in channels:
            blocks.append(
                nn.Sequential(
                    *conv_bn_relu(previous, int(width), kernel_size),
                    *conv_bn_relu(int(width), int(width), kernel_size),
                    nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                )
            )
            previous = int(width)
        self.blocks = nn.Sequential(*blocks)
        self.predictor = nn.Conv2d(previous, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, hidden: torch.Tensor, output_size: tuple[int, int]) -> torch.Tensor:
        """``hidden (N, C, h, w)`` -> logits ``(N, 1, H, W)`` (bilinearly resized to
        ``output_size`` where ``h * 2**blocks`` differs from it)."""
        logits = self.predictor(self.blocks(hidden))
        if tuple(logits.shape[-2:]) != tuple(output_size):
            logits = F.interpolate(logits, size=output_size, mode="bilinear", align_corners=False)
        return logits
