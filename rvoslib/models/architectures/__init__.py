"""Architectures (``ARCHITECTURES``): each file wires registered parts into one design."""

from rvoslib.models.architectures.fusion import FusionConfig, FusionModel
from rvoslib.models.architectures.query import (
    QueryRVOSModel,
    query_targets,
    referred_probabilities,
    select_referred,
)

__all__ = [
    "FusionConfig",
    "FusionModel",
    "QueryRVOSModel",
    "query_targets",
    "referred_probabilities",
    "select_referred",
]
