"""Temporal modules: mix information across the frames of a clip (``TEMPORAL_MODULES``)."""

from rvoslib.models.temporal.conv3d import TemporalModule
from rvoslib.models.temporal.convlstm import ConvLSTM, ConvLSTMCell
from rvoslib.models.temporal.correlation import (
    CorrelationMotion,
    local_correlation,
    soft_argmax_displacement,
)
from rvoslib.models.temporal.identity import NoTemporalMixing

__all__ = [
    "ConvLSTM",
    "ConvLSTMCell",
    "CorrelationMotion",
    "NoTemporalMixing",
    "TemporalModule",
    "local_correlation",
    "soft_argmax_displacement",
]
