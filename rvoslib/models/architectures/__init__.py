"""Architectures (``ARCHITECTURES``): each file wires registered parts into one design."""

from rvoslib.models.architectures.fusion import FusionConfig, FusionModel

__all__ = ["FusionConfig", "FusionModel"]
