"""rvoslib: composable, tested PyTorch parts for referring video object segmentation.

Example:
    >>> import torch, rvoslib
    >>> model = rvoslib.create_model("tiny").eval()
    >>> tokens = model.tokenize(["the red circle moving left"])
    >>> logits = model(torch.randn(1, 4, 3, 64, 64), tokens["input_ids"], tokens["attention_mask"])
    >>> logits.shape
    torch.Size([1, 4, 1, 64, 64])
"""

from rvoslib.data import RefDAVISDataset, RefYouTubeVOSDataset, RVOSCollator, SyntheticRVOSDataset
from rvoslib.inference import VideoPredictor
from rvoslib.losses import LossTerms, RVOSLoss, bce_loss, dice_loss, sigmoid_focal_loss
from rvoslib.metrics import RVOSEvaluator
from rvoslib.models import (
    CrossModalFusion,
    HashTokenizer,
    MultiHeadCrossAttention,
    MultiScaleSegmentationHead,
    RVOSModel,
    SegmentationHead,
    SegmentationModel,
    TemporalModule,
    TextEncoder,
    TextFeatures,
    TinyConvNet,
    VisualBackbone,
    VOSModel,
    create_model,
    freeze_batchnorm,
    get_preset_config,
    list_presets,
    register_preset,
)
from rvoslib.training import Trainer, TrainerConfig
from rvoslib.version import __version__

__all__ = [
    "CrossModalFusion",
    "HashTokenizer",
    "LossTerms",
    "MultiHeadCrossAttention",
    "MultiScaleSegmentationHead",
    "RVOSCollator",
    "RVOSEvaluator",
    "RVOSLoss",
    "RVOSModel",
    "RefDAVISDataset",
    "RefYouTubeVOSDataset",
    "SegmentationHead",
    "SegmentationModel",
    "SyntheticRVOSDataset",
    "TemporalModule",
    "TextEncoder",
    "TextFeatures",
    "TinyConvNet",
    "Trainer",
    "TrainerConfig",
    "VOSModel",
    "VideoPredictor",
    "VisualBackbone",
    "__version__",
    "bce_loss",
    "create_model",
    "dice_loss",
    "freeze_batchnorm",
    "get_preset_config",
    "list_presets",
    "register_preset",
    "sigmoid_focal_loss",
]
