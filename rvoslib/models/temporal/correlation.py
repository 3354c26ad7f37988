"""Motion from local correlation between neighbouring frames (a learned, differentiable flow).

Every position of frame ``t`` is compared with the positions around it in frame ``t + 1``
(cosine similarity of learned keys over a ``(2r + 1) x (2r + 1)`` window, as in FlowNet's
correlation layer); a soft-argmax over the window gives a sub-cell displacement ``(dx, dy)``
and its confidence, as in MotionSqueeze (Kwon et al., ECCV 2020). The correlations, the
displacement and the confidence are projected back to the input's channels and added to it, so
a per-frame network that continues from these features knows how every place moves.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rvoslib._checks import check_tensor, is_compiling
from rvoslib.models.registry import TEMPORAL_MODULES

__all__ = ["CorrelationMotion", "local_correlation", "soft_argmax_displacement"]


def local_correlation(first: torch.Tensor, second: torch.Tensor, radius: int) -> torch.Tensor:
    """Dot products of every position of ``first`` with the window around it in ``second``.

    Args:
        first: ``(N, C, h, w)``.
        second: ``(N, C, h, w)``; positions outside the map count as zero vectors.
        radius: Window radius ``r``: displacements ``-r..r`` in y and x.

    Returns:
        ``(N, (2r + 1)^2, h, w)``: channel ``k = (dy + r) * (2r + 1) + (dx + r)`` holds
        ``sum_c first[:, c, y, x] * second[:, c, y + dy, x + dx]``.

    Example:
        >>> a = torch.zeros(1, 1, 3, 3); a[0, 0, 1, 1] = 1.0
        >>> b = torch.zeros(1, 1, 3, 3); b[0, 0, 1, 2] = 1.0  # moved one to the right
        >>> local_correlation(a, b, radius=1)[0, :, 1, 1].tolist()  # dx = +1, dy = 0
        [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    """
    batch, channels, height, width = first.shape
    size = 2 * radius + 1
    padded = F.pad(second, (radius, radius, radius, radius))  # (N, C, h + 2r, w + 2r)
    rows = first.permute(0, 2, 3, 1).reshape(batch * height, width, channels)
    wide = width + 2 * radius
    by_dy = []
    for dy in range(size):  # one batched matmul per row offset; the x offsets are diagonals
        band = padded[:, :, dy : dy + height].permute(0, 2, 1, 3)  # (N, h, C, w + 2r)
        products = torch.bmm(rows, band.reshape(batch * height, channels, wide))  # (N*h, w, w+2r)
        # products[:, x, x + dx] for dx in 0..2r: a strided view of the contiguous products
        by_dy.append(
            products.as_strided((batch * height, width, size), (width * wide, wide + 1, 1))
        )
    window = torch.stack(by_dy, dim=-2)  # (N*h, w, dy, dx)
    return window.reshape(batch, height, width, size * size).permute(0, 3, 1, 2)


def soft_argmax_displacement(
    correlation: torch.Tensor, radius: int, temperature: torch.Tensor | float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Expected displacement under ``softmax(temperature * correlation)`` over the window.

    Args:
        correlation: ``(N, (2r + 1)^2, h, w)`` from :func:`local_correlation`.
        radius: ``r``.
        temperature: Sharpness of the softmax (a scalar or a 0-d tensor).

    Returns:
        ``flow (N, 2, h, w)`` as ``(dx, dy)`` in cells and ``confidence (N, 1, h, w)``, the
        largest probability.
    """
    steps = torch.arange(-radius, radius + 1, device=correlation.device, dtype=correlation.dtype)
    probabilities = torch.softmax(temperature * correlation, dim=1)
    grid = probabilities.unflatten(1, (2 * radius + 1, 2 * radius + 1))  # (N, dy, dx, h, w)
    dx = (grid.sum(1) * steps[None, :, None, None]).sum(1)
    dy = (grid.sum(2) * steps[None, :, None, None]).sum(1)
    return torch.stack([dx, dy], dim=1), probabilities.amax(1, keepdim=True)


@TEMPORAL_MODULES.register("correlation")
class CorrelationMotion(nn.Module):
    """Add motion features from the correlation of each frame with the next one.

    Keys ``(N, key_channels)`` are a 1x1 projection of the features, L2-normalised. For frame
    ``t < T - 1`` the window correlation with frame ``t + 1``, its soft-argmax displacement and
    confidence (``(2r + 1)^2 + 3`` maps) go through ``3x3 conv -> BatchNorm -> ReLU`` to
    ``channels`` and are added to the input; the last frame reuses the motion into it (from
    ``T - 2``); a single frame gets zero correlations. Frames are ordered, so unlike attention
    over frames this part knows which way things move.

    Args:
        channels: Input and output channels ``C``.
        radius: Window radius in cells of the input map (objects moving up to about ``radius``
            cells per frame are located exactly; faster ones saturate).
        key_channels: Width of the correlation keys.
        temperature: Initial sharpness of the soft-argmax (learned).

    Example:
        >>> motion = CorrelationMotion(8, radius=1, key_channels=4)
        >>> motion(torch.randn(2, 3, 8, 6, 6)).shape
        torch.Size([2, 3, 8, 6, 6])
    """

    def __init__(
        self, channels: int, radius: int = 2, key_channels: int = 16, temperature: float = 10.0
    ) -> None:
        super().__init__()
        if radius < 1:
            raise ValueError(f"radius must be >= 1, got {radius}")
        self.channels, self.radius = channels, radius
        self.key = nn.Conv2d(channels, key_channels, kernel_size=1)
        self.temperature = nn.Parameter(torch.tensor(float(temperature)))
        self.project = nn.Sequential(
            nn.Conv2d((2 * radius + 1) ** 2 + 3, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )

    def motion(self, features: torch.Tensor) -> torch.Tensor:
        """The motion maps of every frame, ``(B, T, C, h, w)`` -> ``(B, T, (2r+1)^2 + 3, h, w)``
        (correlations, ``(dx, dy)`` and confidence)."""
        batch, frames = features.shape[:2]
        keys = F.normalize(self.key(features.flatten(0, 1)), dim=1).unflatten(0, (batch, frames))
        window = (2 * self.radius + 1) ** 2
        if frames == 1:
            correlation = keys.new_zeros(batch, 1, window, *keys.shape[-2:])
        else:
            pairs = local_correlation(
                keys[:, :-1].flatten(0, 1), keys[:, 1:].flatten(0, 1), self.radius
            ).unflatten(0, (batch, frames - 1))
            correlation = torch.cat([pairs, pairs[:, -1:]], dim=1)
        correlation = correlation.flatten(0, 1)
        flow, confidence = soft_argmax_displacement(correlation, self.radius, self.temperature)
        return torch.cat([correlation, flow, confidence], dim=1).unflatten(0, (batch, frames))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features (B, T, C, h, w)`` -> ``features + motion features``, same shape."""
        if not is_compiling():
            check_tensor(features, "features", ("B", "T", self.channels, "h", "w"), floating=True)
        motion = self.project(self.motion(features).flatten(0, 1))
        return features + motion.unflatten(0, features.shape[:2])
