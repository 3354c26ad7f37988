"""Building blocks of the image backbones: staged trunks, the tiny CNN, temporal shift (TSM),
frozen BatchNorm and local weight files."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

__all__ = [
    "StageHook",
    "TinyConvNet",
    "freeze_batchnorm",
    "load_state_dict_file",
    "temporal_shift",
]


#: ``hook(stage_index, features (N, C, h, w)) -> features``: changes a stage's output.
StageHook = Callable[[int, torch.Tensor], torch.Tensor]


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a state dict from a ``.safetensors``, ``.pth``/``.pt`` or ``.bin`` file.

    Checkpoints that wrap the weights (``{"state_dict": ...}`` or ``{"model": ...}``) are
    unwrapped.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint_path {path!r} does not exist")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` in ``module`` by a ``FrozenBatchNorm2d`` with its statistics.

    Returns:
        The converted module (``module`` itself unless it is a BatchNorm layer).
    """
    if isinstance(module, nn.BatchNorm2d):
        frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
        if module.affine:
            frozen.weight.copy_(module.weight.detach())
            frozen.bias.copy_(module.bias.detach())
        if module.running_mean is not None:
            frozen.running_mean.copy_(module.running_mean)
            frozen.running_var.copy_(module.running_var)
        return frozen
    for name, child in module.named_children():
        converted = freeze_batchnorm(child)
        if converted is not child:
            setattr(module, name, converted)
    return module


def temporal_shift(features: torch.Tensor, num_frames: int, fold_div: int = 8) -> torch.Tensor:
    """Shift a fraction of the channels one frame forward and one backward in time (TSM).

    The first ``C // fold_div`` channels of frame ``t`` take frame ``t + 1``'s values, the next
    ``C // fold_div`` take frame ``t - 1``'s (zeros past the ends); the rest stay. A 2D
    convolution after the shift sees neighbouring frames at its own resolution, so motion
    becomes visible to a per-frame backbone at no cost in FLOPs (Lin et al., ICCV 2019).

    Args:
        features: ``(B * T, C, H, W)``, frames of one clip consecutive.
        num_frames: ``T``.
        fold_div: One over the fraction of channels shifted each way.

    Returns:
        A tensor of the same shape.

    Example:
        >>> x = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 8, 1, 1)  # frame t holds t
        >>> temporal_shift(x, num_frames=3)[:, :2, 0, 0].tolist()
        [[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]]
    """
    total, channels, height, width = features.shape
    if total % num_frames:
        raise ValueError(
            f"features batch ({total}) must be a multiple of num_frames ({num_frames})"
        )
    fold = channels // fold_div
    if num_frames == 1 or fold == 0:
        return features
    clip = features.view(total // num_frames, num_frames, channels, height, width)
    zeros = clip.new_zeros(clip.shape[0], 1, fold, height, width)
    from_next = torch.cat([clip[:, 1:, :fold], zeros], dim=1)
    from_previous = torch.cat([zeros, clip[:, :-1, fold : 2 * fold]], dim=1)
    shifted = torch.cat([from_next, from_previous, clip[:, :, 2 * fold :]], dim=2)
    return shifted.view(total, channels, height, width)


class _StagedTrunk(nn.Module):
    """A ``stem`` followed by ``stages``; returns every stage's output."""

    stem: nn.Module
    stages: nn.ModuleList

    def forward(
        self,
        images: torch.Tensor,
        num_frames: int = 1,
        shift_stages: Sequence[int] = (),
        stage_hook: StageHook | None = None,
    ) -> list[torch.Tensor]:
        """``images (N, 3, H, W)`` -> one map per stage ``(N, C_i, H / s_i, W / s_i)``.

        The input of every stage in ``shift_stages`` is temporally shifted over clips of
        ``num_frames`` consecutive images (see :func:`temporal_shift`). ``stage_hook(index,
        features)`` replaces every stage's output before the next stage sees it.
        """
        features = []
        hidden = self.stem(images)
        for index, stage in enumerate(self.stages):
            if index in shift_stages:
                hidden = temporal_shift(hidden, num_frames)
            hidden = stage(hidden)
            if stage_hook is not None:
                hidden = stage_hook(index, hidden)
            features.append(hidden)
        return features


class TinyConvNet(_StagedTrunk):
    """A small four-stage CNN (strides 4, 8, 16, 32) for fast CPU experiments and tests.

    Args:
        channels: Output channels of the four stages.
    """

    def __init__(self, channels: Sequence[int] = (16, 32, 64, 128)) -> None:
        super().__init__()
        if len(channels) != 4:
            raise ValueError(f"channels must have 4 entries, got {list(channels)}")

        def conv_bn(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(out_ch),
                nn.ReLU(inplace=True),
            )

        c1, c2, c3, c4 = channels
        self.stem = nn.Sequential(conv_bn(3, c1 // 2, 2), conv_bn(c1 // 2, c1, 2))
        self.stages = nn.ModuleList(
            [
                conv_bn(c1, c1, 1),
                nn.Sequential(conv_bn(c1, c2, 2), conv_bn(c2, c2, 1)),
                nn.Sequential(conv_bn(c2, c3, 2), conv_bn(c3, c3, 1)),
                nn.Sequential(conv_bn(c3, c4, 2), conv_bn(c4, c4, 1)),
            ]
        )
        self.channels = list(channels)


class _TorchvisionResNetTrunk(_StagedTrunk):
    """Stem + layer1..layer4 of a torchvision ResNet, returning the four stage outputs."""

    def __init__(self, resnet: nn.Module) -> None:
        super().__init__()
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
        self.stages = nn.ModuleList([resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4])
