"""Model parts, their registries, the architectures that compose them, and presets.

Importing this package registers every built-in part and architecture.
"""

from rvoslib.models.architectures import (
    FusionConfig,
    FusionModel,
    LoShConfig,
    LoShModel,
    MTTRConfig,
    MTTRModel,
    ReferFormerConfig,
    ReferFormerModel,
    Seq2SeqConfig,
    Seq2SeqModel,
    SOCConfig,
    SOCModel,
)
from rvoslib.models.backbones import (
    TinyConvNet,
    VGGBackbone,
    VideoSwinBackbone,
    VisualBackbone,
    freeze_batchnorm,
    load_state_dict_file,
    temporal_shift,
)
from rvoslib.models.base import CONFIG_FILE, WEIGHTS_FILE, RVOSModel, read_config
from rvoslib.models.config import ArchitectureConfig
from rvoslib.models.flow import (
    FlowConsistencyLoss,
    FlowEstimator,
    flow_consistency_loss,
    forward_backward_occlusion,
    warp,
)
from rvoslib.models.fusion import (
    BidirectionalMultimodalFusion,
    CrossModalFusion,
    MultiHeadCrossAttention,
)
from rvoslib.models.heads import (
    CondInstMaskHead,
    CrossModalFPNDecoder,
    DynamicMaskHead,
    DynamicMaskKernels,
    KernelMaskHead,
    MultiScaleSegmentationHead,
    SegmentationHead,
    TextFPNPixelDecoder,
)
from rvoslib.models.legacy import RVOSConfig, convert_legacy_config
from rvoslib.models.positions import pixel_centres, sine_positions
from rvoslib.models.presets import create_model, get_preset_config, list_presets, register_preset
from rvoslib.models.registry import (
    ARCHITECTURES,
    BACKBONES,
    FUSIONS,
    HEADS,
    MASK_HEADS,
    PIXEL_DECODERS,
    TEMPORAL_MODULES,
    TEXT_ENCODERS,
    TRANSFORMERS,
    Registry,
)
from rvoslib.models.temporal import ConvLSTM, ConvLSTMCell, NoTemporalMixing, TemporalModule
from rvoslib.models.text import HashTokenizer, TextEncoder, TextFeatures
from rvoslib.models.transformer import (
    LongShortCrossAttention,
    MTTRTransformer,
    ReferFormerTransformer,
    SOCTransformer,
)

__all__ = [
    "ARCHITECTURES",
    "BACKBONES",
    "CONFIG_FILE",
    "FUSIONS",
    "HEADS",
    "MASK_HEADS",
    "PIXEL_DECODERS",
    "TEMPORAL_MODULES",
    "TEXT_ENCODERS",
    "TRANSFORMERS",
    "WEIGHTS_FILE",
    "ArchitectureConfig",
    "BidirectionalMultimodalFusion",
    "CondInstMaskHead",
    "ConvLSTM",
    "ConvLSTMCell",
    "CrossModalFPNDecoder",
    "CrossModalFusion",
    "DynamicMaskHead",
    "DynamicMaskKernels",
    "FlowConsistencyLoss",
    "FlowEstimator",
    "FusionConfig",
    "FusionModel",
    "HashTokenizer",
    "KernelMaskHead",
    "LoShConfig",
    "LoShModel",
    "LongShortCrossAttention",
    "MTTRConfig",
    "MTTRModel",
    "MTTRTransformer",
    "MultiHeadCrossAttention",
    "MultiScaleSegmentationHead",
    "NoTemporalMixing",
    "RVOSConfig",
    "RVOSModel",
    "ReferFormerConfig",
    "ReferFormerModel",
    "ReferFormerTransformer",
    "Registry",
    "SOCConfig",
    "SOCModel",
    "SOCTransformer",
    "SegmentationHead",
    "Seq2SeqConfig",
    "Seq2SeqModel",
    "TemporalModule",
    "TextEncoder",
    "TextFPNPixelDecoder",
    "TextFeatures",
    "TinyConvNet",
    "VGGBackbone",
    "VideoSwinBackbone",
    "VisualBackbone",
    "convert_legacy_config",
    "create_model",
    "flow_consistency_loss",
    "forward_backward_occlusion",
    "freeze_batchnorm",
    "get_preset_config",
    "list_presets",
    "load_state_dict_file",
    "pixel_centres",
    "read_config",
    "register_preset",
    "sine_positions",
    "temporal_shift",
    "warp",
]
