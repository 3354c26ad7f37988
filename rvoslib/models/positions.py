"""Fixed position encodings and pixel-centre coordinates."""

from __future__ import annotations

import torch

__all__ = ["pixel_centres", "sine_positions"]


def pixel_centres(
    size: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Centres of ``size`` cells along one axis in ``[0, 1]``: ``(i + 0.5) / size``, ``(size,)``."""
    return (torch.arange(size, device=device, dtype=dtype) + 0.5) / size


def sine_positions(
    height: int, width: int, dim: int, device: torch.device | None = None
) -> torch.Tensor:
    """A fixed 2D sine/cosine encoding of pixel centres in ``[0, 1]``.

    Args:
        height: Rows ``h``.
        width: Columns ``w``.
        dim: Channels, divisible by 4 (half for y, half for x; sine and cosine each).
        device: Device of the result.

    Returns:
        ``(h, w, dim)`` float32.

    Example:
        >>> sine_positions(2, 3, 8).shape
        torch.Size([2, 3, 8])
    """
    quarter = dim // 4
    frequencies = 2.0 ** torch.arange(quarter, device=device, dtype=torch.float32) * torch.pi
    ys, xs = pixel_centres(height, device), pixel_centres(width, device)
    y_angles, x_angles = ys[:, None] * frequencies, xs[:, None] * frequencies
    y_code = torch.cat([y_angles.sin(), y_angles.cos()], -1)[:, None, :].expand(height, width, -1)
    x_code = torch.cat([x_angles.sin(), x_angles.cos()], -1)[None, :, :].expand(height, width, -1)
    return torch.cat([y_code, x_code], dim=-1)
