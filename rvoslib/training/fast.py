"""The fast path: memory layouts and compilation that speed up training and inference."""

from __future__ import annotations

import warnings

import torch
from torch import nn

__all__ = ["apply_fast_path", "maybe_compile"]


def apply_fast_path(model: nn.Module) -> nn.Module:
    """Put 2D convolutions in ``channels_last`` and 3D ones in ``channels_last_3d`` (in place).

    ``model.to(memory_format=torch.channels_last)`` fails on Conv3d weights, so each layer is
    converted by its rank.

    Returns:
        The model.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.to(memory_format=torch.channels_last)
        elif isinstance(module, nn.Conv3d):
            module.to(memory_format=torch.channels_last_3d)
    return model


def maybe_compile(model: nn.Module, **kwargs: object) -> nn.Module:
    """``torch.compile(model)``, or the model unchanged (with a warning) where it is unavailable."""
    try:
        return torch.compile(model, **kwargs)
    except Exception as error:  # compile support differs by platform and version
        warnings.warn(f"torch.compile unavailable ({error}); running eagerly", stacklevel=2)
        return model
