"""Cross-modal fusion: visual features meet the expression (``FUSIONS``)."""

from rvoslib.models.fusion.attention import CrossModalFusion, MultiHeadCrossAttention
from rvoslib.models.fusion.mmf import BidirectionalMultimodalFusion, FusedFeatures

__all__ = [
    "BidirectionalMultimodalFusion",
    "CrossModalFusion",
    "FusedFeatures",
    "MultiHeadCrossAttention",
]
