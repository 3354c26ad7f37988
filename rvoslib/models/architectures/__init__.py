"""Architectures (``ARCHITECTURES``): each file wires registered parts into one design."""

from rvoslib.models.architectures.fusion import FusionConfig, FusionModel
from rvoslib.models.architectures.losh import LoShConfig, LoShModel, pair_text, referred_flow_loss
from rvoslib.models.architectures.motion_fusion import MotionFusionConfig, MotionFusionModel
from rvoslib.models.architectures.mttr import MTTRConfig, MTTRModel
from rvoslib.models.architectures.query import (
    QueryRVOSModel,
    query_targets,
    referred_probabilities,
    select_referred,
)
from rvoslib.models.architectures.referformer import ReferFormerConfig, ReferFormerModel
from rvoslib.models.architectures.seq2seq import (
    Seq2SeqConfig,
    Seq2SeqDecoder,
    Seq2SeqModel,
    check_first_mask,
)
from rvoslib.models.architectures.soc import SOCConfig, SOCModel
from rvoslib.models.architectures.video_fusion import VideoFusionConfig, VideoFusionModel

__all__ = [
    "FusionConfig",
    "FusionModel",
    "LoShConfig",
    "LoShModel",
    "MTTRConfig",
    "MTTRModel",
    "MotionFusionConfig",
    "MotionFusionModel",
    "QueryRVOSModel",
    "ReferFormerConfig",
    "ReferFormerModel",
    "SOCConfig",
    "SOCModel",
    "Seq2SeqConfig",
    "Seq2SeqDecoder",
    "Seq2SeqModel",
    "VideoFusionConfig",
    "VideoFusionModel",
    "check_first_mask",
    "pair_text",
    "query_targets",
    "referred_flow_loss",
    "referred_probabilities",
    "select_referred",
]
