"""No temporal mixing: frames stay independent after the fusion."""

from __future__ import annotations

import torch
from torch import nn

from rvoslib.models.registry import TEMPORAL_MODULES

__all__ = ["NoTemporalMixing"]


@TEMPORAL_MODULES.register("identity")
class NoTemporalMixing(nn.Module):
    """Returns its input ``(B, T, C, h, w)`` unchanged (the temporal part of per-frame models).

    Args:
        channels: Channels ``C`` (accepted for the temporal-module contract).

    Example:
        >>> NoTemporalMixing(8)(torch.ones(1, 2, 8, 3, 3)).shape
        torch.Size([1, 2, 8, 3, 3])
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, h, w)`` -> the same tensor."""
        return features
