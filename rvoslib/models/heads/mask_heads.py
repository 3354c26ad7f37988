"""Mask heads (``MASK_HEADS``): object queries x per-pixel features -> one mask per query.

:class:`KernelMaskHead` (``"kernel"``) is MTTR's: a small MLP maps every query to a ``P``-dim
kernel (MTTR: 2 layers, ``P = 8``, as CondInst's mask dimension), and the mask logits are the dot
product of that kernel with the pixel decoder's ``P`` features at every pixel of the same frame
(released ``models/mttr.py``: ``einsum('ltbnc,tbchw->ltbnhw')``).
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rvoslib._checks import check_tensor, format_shape, is_compiling
from rvoslib.models.registry import MASK_HEADS

__all__ = ["KernelMaskHead"]


@MASK_HEADS.register("kernel")
class KernelMaskHead(nn.Module):
    """Per-query dynamic ``1x1`` kernels applied to the pixel features of the query's frame.

    Args:
        query_dim: Width ``D`` of the queries (injected).
        pixel_channels: Channels ``P`` of the pixel features (injected) = the kernel size.
        hidden_dim: Hidden width of the MLP (``None``: ``query_dim``, as MTTR).
        num_layers: Linear layers of the MLP, ReLU between them (MTTR: 2).

    Raises:
        ValueError: a size below 1.

    Example:
        >>> head = KernelMaskHead(query_dim=16, pixel_channels=8)
        >>> queries, pixels = torch.randn(3, 2, 4, 5, 16), torch.randn(2, 4, 8, 12, 12)
        >>> head(queries, pixels).shape  # (Ly, B, T, N, h, w)
        torch.Size([3, 2, 4, 5, 12, 12])
    """

    def __init__(
        self,
        query_dim: int,
        pixel_channels: int,
        hidden_dim: int | None = None,
        num_layers: int = 2,
    ) -> None:
        super().__init__()
        hidden = query_dim if hidden_dim is None else int(hidden_dim)
        if min(query_dim, pixel_channels, hidden, num_layers) < 1:
            raise ValueError(
                "query_dim, pixel_channels, hidden_dim and num_layers must be >= 1, got "
                f"{query_dim}, {pixel_channels}, {hidden} and {num_layers}"
            )
        self.query_dim, self.pixel_channels = int(query_dim), int(pixel_channels)
        widths = [query_dim] + [hidden] * (num_layers - 1) + [pixel_channels]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))

    def kernels(self, queries: torch.Tensor) -> torch.Tensor:
        """The MLP: ``(..., D)`` queries -> ``(..., P)`` kernels."""
        for index, layer in enumerate(self.layers):
            queries = layer(queries)
            if index < len(self.layers) - 1:
                queries = F.relu(queries)
        return queries

    def forward(self, queries: torch.Tensor, pixels: torch.Tensor, **extras: Any) -> torch.Tensor:
        """Mask logits of every query in every frame.

        Args:
            queries: ``(Ly, B, T, N, D)`` object queries of every decoder layer.
            pixels: ``(B, T, P, h, w)`` per-pixel features.
            **extras: Ignored (other mask heads take e.g. reference points).

        Returns:
            ``(Ly, B, T, N, h, w)`` mask logits.

        Raises:
            ValueError: shapes that do not fit (named).
        """
        if not is_compiling():
            check_tensor(queries, "queries", ("Ly", "B", "T", "N", self.query_dim), floating=True)
            check_tensor(pixels, "pixels", ("B", "T", self.pixel_channels, "h", "w"), floating=True)
            if queries.shape[1:3] != pixels.shape[:2]:
                raise ValueError(
                    f"queries (Ly, B, T, N, D) and pixels (B, T, P, h, w) must share (B, T), got "
                    f"{format_shape(queries.shape)} and {format_shape(pixels.shape)}"
                )
        kernels = self.kernels(queries)  # (Ly, B, T, N, P)
        return torch.einsum("lbtnp,btphw->lbtnhw", kernels, pixels.to(kernels.dtype))
