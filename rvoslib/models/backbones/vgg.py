"""VGG backbones (Simonyan & Zisserman, 2015) from torchvision, and a tiny VGG for the CPU.

The ``features`` part of a VGG is five stages of 3x3 convolutions, each ending with a 2x2 max
pooling, so its levels have strides 2, 4, 8, 16 and 32; the backbone returns the maps after the
poolings at the requested strides. The seq2seq VOS model (Xu et al., ECCV 2018) uses the
stride-32 map of VGG-16: ``(512, 8, 14)`` for a ``256 x 448`` frame.

``in_channels`` other than 3 (4 for RGB + the first frame's mask in the seq2seq initializer)
widens the first convolution. When ImageNet weights (``pretrained``) or a local file
(``checkpoint_path``) with 3 input channels are loaded, the RGB filters are kept and the filters
of the extra channels start at zero, so the pretrained network initially sees the image exactly
as in ImageNet training and learns how to use the extra channels. (The sequence-to-sequence
VOS code this model was specified from instead puts a
randomly initialised 3x3 convolution 4 -> 3 + BN + ReLU in front of VGG, which scrambles the
input of the pretrained filters at the start of training; the seq2seq architecture uses that
adapter for backbones that take 3 channels only.)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import torch
import torchvision
from torch import nn
from torchvision.models.vgg import cfgs as vgg_layouts
from torchvision.models.vgg import make_layers

from rvoslib._checks import check_tensor, format_shape, is_compiling
from rvoslib._hub import torchvision_download
from rvoslib.models.backbones.trunks import load_state_dict_file
from rvoslib.models.registry import BACKBONES

__all__ = ["TINY_VGG_CHANNELS", "VGG_MODELS", "VGG_STRIDES", "VGGBackbone"]

#: torchvision VGG name -> its layout key in ``torchvision.models.vgg.cfgs``.
VGG_MODELS = {"vgg11": "A", "vgg13": "B", "vgg16": "D", "vgg19": "E"}
VGG_STRIDES = (2, 4, 8, 16, 32)
TINY_VGG_CHANNELS = (16, 32, 64, 64, 64)
_TINY = "tiny"


@BACKBONES.register("vgg")
@BACKBONES.register("tinyvgg", model=_TINY)
@BACKBONES.register("vgg16_bn", model="vgg16", batch_norm=True)
@BACKBONES.register("vgg16", model="vgg16", batch_norm=False)
class VGGBackbone(nn.Module):
    """Multi-scale features of a torchvision VGG (or a tiny VGG) at strides 2 to 32.

    Registered as ``"vgg16"``, ``"vgg16_bn"`` (with BatchNorm), ``"tinyvgg"`` (one
    conv+BN+ReLU per stage, widths ``channels``; random weights only) and ``"vgg"`` (any
    ``model``).

    Args:
        model: ``"vgg11"``, ``"vgg13"``, ``"vgg16"``, ``"vgg19"`` or ``"tiny"``.
        pretrained: Load torchvision's ImageNet weights (downloads on first use; never by
            default).
        checkpoint_path: A local weights file (``.pth``, ``.pt``, ``.bin``, ``.safetensors``)
            of a torchvision VGG (keys ``features.N.*``; the classifier is ignored) or of this
            backbone. Works offline.
        batch_norm: BatchNorm after every convolution (torchvision's ``vgg16_bn``; the tiny
            VGG always has it).
        in_channels: Input channels (3 for RGB, 4 for RGB + mask); see the module docstring
            for how pretrained 3-channel weights are adapted.
        out_strides: Strides of the returned levels, a subset of ``(2, 4, 8, 16, 32)``; the
            stages after the deepest one are dropped.
        channels: The five stage widths of ``"tiny"``.

    Attributes:
        out_channels: Channels of each returned level.
        strides: Stride of each returned level.
        in_channels: Input channels.

    Raises:
        ValueError: unknown ``model``, bad ``out_strides``/``channels``/``in_channels``, or
            ``pretrained`` for the tiny VGG.

    Example:
        >>> backbone = VGGBackbone("tiny", in_channels=4, out_strides=(8, 32))
        >>> [tuple(f.shape) for f in backbone(torch.zeros(1, 2, 4, 64, 96))]
        [(1, 2, 64, 8, 12), (1, 2, 64, 2, 3)]
        >>> backbone.out_channels, backbone.strides
        ([64, 64], [8, 32])
    """

    def __init__(
        self,
        model: str = "vgg16",
        *,
        pretrained: bool = False,
        checkpoint_path: str | os.PathLike | None = None,
        batch_norm: bool = False,
        in_channels: int = 3,
        out_strides: Sequence[int] = VGG_STRIDES,
        channels: Sequence[int] = TINY_VGG_CHANNELS,
    ) -> None:
        super().__init__()
        if model != _TINY and model not in VGG_MODELS:
            raise ValueError(f"model must be one of {[*VGG_MODELS, _TINY]}, got {model!r}")
        strides = sorted(int(s) for s in out_strides)
        if (
            not strides
            or any(s not in VGG_STRIDES for s in strides)
            or len(set(strides)) < len(strides)
        ):
            raise ValueError(
                f"out_strides must be distinct values from {VGG_STRIDES}, got {list(out_strides)}"
            )
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
        if model == _TINY:
            if pretrained:
                raise ValueError("the tiny VGG has no pretrained weights; use pretrained=False")
            if len(channels) != 5 or any(int(c) < 1 for c in channels):
                raise ValueError(f"channels must be 5 positive widths, got {list(channels)}")
            layout: list[int | str] = []
            for width in channels:
                layout += [int(width), "M"]
            batch_norm = True
        else:
            layout = list(vgg_layouts[VGG_MODELS[model]])
        self.model_name = model
        self.batch_norm = batch_norm
        self.in_channels = in_channels
        features = make_layers(layout, batch_norm=batch_norm)
        first = features[0]
        if in_channels != 3:
            features[0] = nn.Conv2d(in_channels, first.out_channels, 3, padding=1)
        pools = [i for i, layer in enumerate(features) if isinstance(layer, nn.MaxPool2d)]
        widths = [_last_conv_width(features, end) for end in pools]
        levels = [VGG_STRIDES.index(s) for s in strides]
        self.features = features[: pools[levels[-1]] + 1]  # drop the unused deeper stages
        self._taps = [pools[level] for level in levels]
        self.strides = strides
        self.out_channels = [widths[level] for level in levels]
        if pretrained:
            weight_name = f"{model.upper()}{'_BN' if batch_norm else ''}_Weights"
            weights = getattr(torchvision.models, weight_name).DEFAULT
            with torchvision_download(weights):
                state = weights.get_state_dict(progress=True)
            self.load_weights(state, source=str(weights))
        if checkpoint_path is not None:
            self.load_weights(
                load_state_dict_file(checkpoint_path), source=os.fspath(checkpoint_path)
            )

    def adjust_saved_spec(self, spec: dict[str, object]) -> dict[str, object]:
        """Leave out what the model ignores: ``channels`` of a torchvision VGG,
        ``batch_norm`` of the tiny VGG (always with BatchNorm)."""
        spec.pop("batch_norm" if self.model_name == _TINY else "channels", None)
        return spec

    def load_weights(self, state: Mapping[str, torch.Tensor], source: str = "state") -> None:
        """Load VGG weights: torchvision keys ``features.N.*`` (or ``N.*``); classifier and
        deeper-stage weights are ignored. 3-channel first-layer filters are widened to
        ``in_channels`` with zero filters for the extra channels.

        Raises:
            ValueError: keys missing for this backbone, or a first layer that cannot be
                adapted (names the source and both shapes).
        """
        own = self.features.state_dict()
        picked: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            name = key.removeprefix("features.")
            if name in own:
                picked[name] = value
        first = picked.get("0.weight")
        expected = own["0.weight"].shape
        if first is not None and first.shape != expected:
            if first.shape[1] == 3 and self.in_channels > 3 and first.shape[0] == expected[0]:
                widened = first.new_zeros(expected)
                widened[:, :3] = first
                picked["0.weight"] = widened
            else:
                raise ValueError(
                    f"{source}: first convolution is {format_shape(first.shape)} but this "
                    f"backbone needs {format_shape(expected)} (in_channels={self.in_channels})"
                )
        missing = [k for k in own if k not in picked and not k.endswith("num_batches_tracked")]
        if missing:
            raise ValueError(
                f"{source} does not fit VGG backbone {self.model_name!r} "
                f"(batch_norm={self.batch_norm}): {len(missing)} missing keys, e.g. {missing[:3]}"
            )
        self.features.load_state_dict(picked, strict=False)

    def forward(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """Compute the multi-scale features.

        Args:
            frames: ``(B, T, C_in, H, W)`` or ``(N, C_in, H, W)`` float, ImageNet-normalised
                RGB (plus the extra channels when ``in_channels > 3``).

        Returns:
            One map per stride in ``self.strides``, finest first: ``(B, T, C_i, H // s_i,
            W // s_i)`` (or ``(N, ...)`` for 4-D input; max pooling floors odd sizes).
        """
        if not is_compiling():
            if not isinstance(frames, torch.Tensor) or frames.ndim not in (4, 5):
                shape = format_shape(frames.shape) if isinstance(frames, torch.Tensor) else None
                raise ValueError(
                    f"frames must be (N, {self.in_channels}, H, W) or (B, T, {self.in_channels}"
                    f", H, W), got {shape or type(frames).__name__}"
                )
            dims = ("B", "T", self.in_channels, "H", "W")
            check_tensor(frames, "frames", dims[5 - frames.ndim :], floating=True)
        video_shape = frames.shape[:2] if frames.ndim == 5 else None
        hidden = frames.flatten(0, 1) if video_shape is not None else frames
        levels = []
        for index, layer in enumerate(self.features):
            hidden = layer(hidden)
            if index in self._taps:
                levels.append(hidden)
        if video_shape is not None:
            levels = [level.unflatten(0, video_shape) for level in levels]
        return levels


def _last_conv_width(features: nn.Sequential, end: int) -> int:
    """Output channels of the last convolution before layer ``end``."""
    convs = [layer for layer in list(features)[:end] if isinstance(layer, nn.Conv2d)]
    return int(convs[-1].out_channels)
