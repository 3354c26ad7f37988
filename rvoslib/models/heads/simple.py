"""The reference head: one 3x3 block and a 1x1 classifier on the fused map, upsampled."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rvoslib._checks import check_tensor, is_compiling
from rvoslib.models.heads.common import conv_bn_gelu
from rvoslib.models.registry import HEADS
from rvoslib.models.text import TextFeatures

__all__ = ["SegmentationHead"]


@HEADS.register("simple")
class SegmentationHead(nn.Module):
    """``3x3 conv -> BatchNorm -> GELU -> Dropout -> 1x1 conv``, upsampled to the frame size.

    Logits are upsampled bilinearly to exactly ``output_size``, so inputs whose sides are not
    multiples of the stride (e.g. 97x131) come back at their own size.

    Args:
        in_channels: Channels ``C`` of the fused features.
        hidden_channels: Width of the 3x3 convolution.
        dropout: Dropout before the classifier.

    Example:
        >>> head = SegmentationHead(16, hidden_channels=8)
        >>> head(torch.randn(2, 3, 16, 4, 5), output_size=(97, 131)).shape
        torch.Size([2, 3, 1, 97, 131])
    """

    def __init__(self, in_channels: int, hidden_channels: int = 256, dropout: float = 0.3) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.block = conv_bn_gelu(in_channels, hidden_channels)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(hidden_channels, 1, kernel_size=1)

    def forward(
        self,
        fused: torch.Tensor,
        *,
        skips: Sequence[torch.Tensor] = (),
        text: TextFeatures | None = None,
        output_size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Predict mask logits.

        Args:
            fused: ``(B, T, C, h, w)`` fused features.
            skips: Not used by this head (the head contract passes the finer levels).
            text: Not used by this head.
            output_size: ``(H, W)`` of the logits; defaults to ``(h, w)``.

        Returns:
            ``(B, T, 1, H, W)`` logits.
        """
        if not is_compiling():
            check_tensor(fused, "fused", ("B", "T", self.in_channels, "h", "w"), floating=True)
        logits = self.classifier(self.dropout(self.block(fused.flatten(0, 1))))
        if output_size is not None and tuple(logits.shape[-2:]) != tuple(output_size):
            logits = F.interpolate(logits, size=output_size, mode="bilinear", align_corners=False)
        return logits.unflatten(0, fused.shape[:2])
