"""Cross-modal fusion: visual features meet the expression (``FUSIONS``)."""

from rvoslib.models.fusion.attention import CrossModalFusion, MultiHeadCrossAttention

__all__ = ["CrossModalFusion", "MultiHeadCrossAttention"]
