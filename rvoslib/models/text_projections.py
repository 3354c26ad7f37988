"""Projections of the language model's features to the model width (``TEXT_PROJECTIONS``).

``linear_norm_gelu`` is rvoslib's default; ``feature_resizer`` is the projection of MTTR,
ReferFormer and SOC. Both map ``(..., in_dim) -> (..., out_dim)``.
"""

from __future__ import annotations

import torch
from torch import nn

from rvoslib.models.registry import TEXT_PROJECTIONS

__all__ = ["FeatureResizer", "LinearNormGELU"]


@TEXT_PROJECTIONS.register(
    "linear_norm_gelu", description="Linear -> LayerNorm -> GELU (the default projection)."
)
class LinearNormGELU(nn.Sequential):
    """``Linear(in_dim, out_dim) -> LayerNorm(out_dim) -> GELU``: the text encoder's default
    projection of the language model's features, ``(..., in_dim) -> (..., out_dim)``.

    Example:
        >>> LinearNormGELU(8, 4)(torch.randn(2, 3, 8)).shape
        torch.Size([2, 3, 4])
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__(nn.Linear(in_dim, out_dim), nn.LayerNorm(out_dim), nn.GELU())
        self.in_dim, self.out_dim = in_dim, out_dim


@TEXT_PROJECTIONS.register(
    "feature_resizer",
    description="Linear -> LayerNorm(eps 1e-12) -> Dropout (MTTR's, ReferFormer's and SOC's).",
)
class FeatureResizer(nn.Module):
    """``Linear(in_dim, out_dim) -> LayerNorm(out_dim, eps=1e-12) -> Dropout(dropout)``, the
    projection of the language model's features in MTTR, ReferFormer and SOC (their
    ``FeatureResizer``), ``(..., in_dim) -> (..., out_dim)``.

    Its state dict keys are ``fc.*`` and ``layer_norm.*``, the originals' names.

    Args:
        in_dim: Width of the language model's features.
        out_dim: Width of the projected features.
        dropout: Dropout probability after the normalisation (the originals use 0.1).

    Example:
        >>> FeatureResizer(8, 4)(torch.randn(2, 3, 8)).shape
        torch.Size([2, 3, 4])
    """

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim)
        self.layer_norm = nn.LayerNorm(out_dim, eps=1e-12)
        self.dropout = nn.Dropout(dropout)
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(..., in_dim) -> (..., out_dim)``."""
        return self.dropout(self.layer_norm(self.fc(features)))
