"""Visual backbones: multi-scale features of every frame (``BACKBONES``)."""

from rvoslib.models.backbones.trunks import (
    TinyConvNet,
    freeze_batchnorm,
    load_state_dict_file,
    temporal_shift,
)
from rvoslib.models.backbones.vgg import VGGBackbone
from rvoslib.models.backbones.video_swin import VideoSwinBackbone
from rvoslib.models.backbones.visual import VisualBackbone

__all__ = [
    "TinyConvNet",
    "VGGBackbone",
    "VideoSwinBackbone",
    "VisualBackbone",
    "freeze_batchnorm",
    "load_state_dict_file",
    "temporal_shift",
]
