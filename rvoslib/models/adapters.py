"""Small registered maps between parts (:data:`~rvoslib.models.registry.ADAPTERS`).

An adapter receives ``in_channels`` and ``out_channels`` from the architecture and maps
``(N, in_channels, h, w)`` to ``(N, out_channels, h, w)``: seq2seq's 4 -> 3 input adapter in
front of an RGB backbone, its initial-state convolutions and its encoder projection.
"""

from __future__ import annotations

from torch import nn

from rvoslib.models.heads.seq2seq_decoder import conv_bn_relu
from rvoslib.models.registry import ADAPTERS

__all__ = ["ConvAdapter", "ConvBNReLUAdapter", "IdentityAdapter"]


@ADAPTERS.register("identity", description="No adapter (in_channels must equal out_channels).")
class IdentityAdapter(nn.Identity):
    """Passes its input through; ``in_channels`` must equal ``out_channels``.

    Raises:
        ValueError: the channels differ (the message suggests an adapter that maps them).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        if in_channels != out_channels:
            raise ValueError(
                f"adapter 'identity' cannot map {in_channels} to {out_channels} channels; use "
                "{'name': 'conv_bn_relu', 'kernel_size': 3} or {'name': 'conv'}"
            )
        self.in_channels = self.out_channels = in_channels


@ADAPTERS.register("conv_bn_relu", description="Conv (no bias, 'same' padding) + BN + ReLU.")
class ConvBNReLUAdapter(nn.Sequential):
    """``Conv2d (no bias, "same" padding) -> BatchNorm2d -> ReLU``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Odd kernel size.

    Example:
        >>> import torch
        >>> ConvBNReLUAdapter(4, 3, kernel_size=3)(torch.randn(2, 4, 8, 8)).shape
        torch.Size([2, 3, 8, 8])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1) -> None:
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size}")
        super().__init__(*conv_bn_relu(in_channels, out_channels, kernel_size))
        self.in_channels, self.out_channels = in_channels, out_channels


@ADAPTERS.register("conv", description="One convolution with bias ('same' padding).")
class ConvAdapter(nn.Conv2d):
    """One ``Conv2d`` with bias and "same" padding.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Odd kernel size.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1) -> None:
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
