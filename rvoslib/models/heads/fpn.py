"""FPN-style head: the fused map refined with the backbone's finer levels, text-modulated."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rvoslib._checks import check_tensor, is_compiling
from rvoslib.models.heads.common import conv_bn_gelu, film
from rvoslib.models.registry import HEADS
from rvoslib.models.text import TextFeatures

__all__ = ["MultiScaleSegmentationHead"]


@HEADS.register("fpn")
class MultiScaleSegmentationHead(nn.Module):
    """Refine the fused (coarse) map with the finer backbone levels, FPN-style.

    Each step upsamples, adds a 1x1 lateral projection of the next finer level (e.g. strides 16,
    8, 4) and smooths with a 3x3 conv. With ``film`` the sentence modulates the top map and every
    lateral (per-channel scale and shift), so that features computed after the fusion (motion
    from the temporal module) and the fine levels are matched against the expression. Logits
    are predicted at the finest level and upsampled to ``output_size``.

    Args:
        in_channels: Channels of the fused features.
        skip_channels: Channels of the finer levels, coarse to fine.
        text_dim: Width ``D`` of the sentence feature (for FiLM).
        hidden_channels: Width of the pyramid.
        dropout: Dropout before the classifier.
        film: Modulate the top map and the laterals by the sentence.

    Example:
        >>> head = MultiScaleSegmentationHead(16, [12, 8], text_dim=4, hidden_channels=8)
        >>> skips = [torch.randn(2, 1, 12, 8, 8), torch.randn(2, 1, 8, 16, 16)]
        >>> text = TextFeatures(torch.randn(2, 4), torch.randn(2, 3, 4), torch.ones(2, 3).bool())
        >>> head(torch.randn(2, 1, 16, 4, 4), skips=skips, text=text, output_size=(64, 64)).shape
        torch.Size([2, 1, 1, 64, 64])
    """

    def __init__(
        self,
        in_channels: int,
        skip_channels: Sequence[int],
        text_dim: int,
        hidden_channels: int = 128,
        dropout: float = 0.1,
        film: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.skip_channels = [int(c) for c in skip_channels]
        self.text_dim = text_dim
        self.top = conv_bn_gelu(in_channels, hidden_channels, 1)
        self.laterals = nn.ModuleList(
            nn.Conv2d(c, hidden_channels, kernel_size=1) for c in self.skip_channels
        )
        self.smooth = nn.ModuleList(
            conv_bn_gelu(hidden_channels, hidden_channels) for _ in self.skip_channels
        )
        self.film = None
        if film:  # one FiLM for the top (fused) map, one per lateral
            self.film = nn.ModuleList(
                nn.Linear(text_dim, 2 * hidden_channels) for _ in range(len(self.skip_channels) + 1)
            )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(hidden_channels, 1, kernel_size=1)

    def forward(
        self,
        fused: torch.Tensor,
        *,
        skips: Sequence[torch.Tensor],
        text: TextFeatures,
        output_size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Predict mask logits.

        Args:
            fused: ``(B, T, C, h, w)`` fused (coarsest) features.
            skips: Finer levels, coarse to fine, ``(B, T, C_i, h_i, w_i)``.
            text: Encoded expressions (``text.sentence`` is ``(B, D)``).
            output_size: ``(H, W)`` of the logits; defaults to the finest level's size.

        Returns:
            ``(B, T, 1, H, W)`` logits.
        """
        if not is_compiling():
            self._check(fused, skips, text)
        hidden = self.pyramid(fused, skips, text)
        logits = self.classifier(self.dropout(hidden))
        return _resize(logits, output_size).unflatten(0, fused.shape[:2])

    def pyramid(
        self, fused: torch.Tensor, skips: Sequence[torch.Tensor], text: TextFeatures
    ) -> torch.Tensor:
        """The finest pyramid map ``(B*T, hidden, h_0, w_0)`` (frames flattened)."""
        num_frames = fused.shape[1]
        sentence = text.sentence.repeat_interleave(num_frames, dim=0)  # (B*T, D)
        hidden = self.top(fused.flatten(0, 1))
        if self.film is not None:
            hidden = film(hidden, self.film[0](sentence))
        for i, skip in enumerate(skips):
            lateral = self.laterals[i](skip.flatten(0, 1))
            if self.film is not None:
                lateral = film(lateral, self.film[i + 1](sentence))
            hidden = F.interpolate(
                hidden, size=lateral.shape[-2:], mode="bilinear", align_corners=False
            )
            hidden = self.smooth[i](hidden + lateral)
        return hidden

    def _check(
        self, fused: torch.Tensor, skips: Sequence[torch.Tensor], text: TextFeatures
    ) -> None:
        check_tensor(fused, "fused", ("B", "T", self.in_channels, "h", "w"), floating=True)
        if len(skips) != len(self.skip_channels):
            raise ValueError(
                f"skips must hold {len(self.skip_channels)} maps with channels "
                f"{self.skip_channels}, got {len(skips)}"
            )
        for i, (skip, channels) in enumerate(zip(skips, self.skip_channels)):
            check_tensor(skip, f"skips[{i}]", (*fused.shape[:2], channels, "h", "w"))
        check_tensor(text.sentence, "text.sentence", (fused.shape[0], self.text_dim))


def _resize(logits: torch.Tensor, output_size: tuple[int, int] | None) -> torch.Tensor:
    if output_size is not None and tuple(logits.shape[-2:]) != tuple(output_size):
        logits = F.interpolate(logits, size=output_size, mode="bilinear", align_corners=False)
    return logits
