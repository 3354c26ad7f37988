"""Visual backbones: torchvision ResNets, any timm model, and a tiny built-in CNN.

A :class:`VisualBackbone` maps frames to a list of feature maps, one per requested output
stride (4, 8, 16 and/or 32), and declares each level's ``out_channels`` and ``strides`` so that
the parts after it can be wired without guessing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torchvision
from torch import nn

from rvoslib._checks import check_tensor, format_shape, is_compiling
from rvoslib._hub import torchvision_download
from rvoslib.models.backbones.trunks import (
    StageHook,
    TinyConvNet,
    _StagedTrunk,
    _TorchvisionResNetTrunk,
    freeze_batchnorm,
    load_state_dict_file,
)
from rvoslib.models.registry import BACKBONES

__all__ = ["VisualBackbone"]

TORCHVISION_RESNETS = {
    "resnet18": ("resnet18", "ResNet18_Weights", [64, 128, 256, 512]),
    "resnet34": ("resnet34", "ResNet34_Weights", [64, 128, 256, 512]),
    "resnet50": ("resnet50", "ResNet50_Weights", [256, 512, 1024, 2048]),
    "resnet101": ("resnet101", "ResNet101_Weights", [256, 512, 1024, 2048]),
}
TINY_NAME = "tinycnn"
VALID_STRIDES = (4, 8, 16, 32)


@BACKBONES.register("timm")
@BACKBONES.register(TINY_NAME, model=TINY_NAME)
@BACKBONES.register("resnet101", model="resnet101")
@BACKBONES.register("resnet50", model="resnet50")
@BACKBONES.register("resnet34", model="resnet34")
@BACKBONES.register("resnet18", model="resnet18")
class VisualBackbone(nn.Module):
    """Multi-scale image features from a torchvision ResNet, a timm model or ``tinycnn``.

    The trunk's stage outputs at the requested ``out_strides`` are returned. As in the
    reference design, a 1x1 ``feature_refine`` convolution halves the channels of the last
    (coarsest) level when ``refine_last`` is true.

    Args:
        model: ``"resnet18"``, ``"resnet34"``, ``"resnet50"``, ``"resnet101"`` (torchvision),
            ``"tinycnn"`` (built in), or any timm model name (optionally prefixed ``"timm/"``)
            that supports ``features_only``.
        pretrained: Load ImageNet weights from torchvision/timm (downloads on first use).
        checkpoint_path: A local weights file (``.pth``, ``.pt``, ``.bin`` or
            ``.safetensors``) for the trunk, in the torchvision/timm key layout. Works offline.
        out_strides: Strides of the returned levels, a subset of ``(4, 8, 16, 32)``.
        refine_last: Add the 1x1 ``feature_refine`` conv that halves the last level's channels.
        freeze_stages: Number of leading parts to freeze: 0 = nothing, 1 = the stem,
            ``k`` = the stem and the first ``k - 1`` stages (torchvision ResNets and tinycnn).
        frozen_bn: Replace BatchNorm layers of the trunk by ``FrozenBatchNorm2d``.
        channels: Stage widths for ``tinycnn``.
        temporal_shift_stages: Stages (0-3, strides 4-32) whose input is temporally shifted
            (:func:`temporal_shift`) when clips ``(B, T, 3, H, W)`` are passed, so the
            per-frame trunk sees motion (torchvision ResNets and tinycnn).
        **timm_kwargs: Extra arguments for ``timm.create_model``.

    Attributes:
        out_channels: Channels of each returned level.
        strides: Stride of each returned level.
        stage_channels: Output channels of every stage the trunk runs (what a ``stage_hook``
            of :meth:`forward` receives); empty for timm models.

    Example:
        >>> backbone = VisualBackbone("resnet18")
        >>> [f.shape[-1] for f in backbone(torch.zeros(2, 3, 64, 64))]
        [16, 8, 4, 2]
        >>> backbone.out_channels, backbone.strides
        ([64, 128, 256, 256], [4, 8, 16, 32])
    """

    def __init__(
        self,
        model: str = "resnet50",
        *,
        pretrained: bool = False,
        checkpoint_path: str | os.PathLike | None = None,
        out_strides: Sequence[int] = VALID_STRIDES,
        refine_last: bool = True,
        freeze_stages: int = 0,
        frozen_bn: bool = False,
        channels: Sequence[int] = (16, 32, 64, 128),
        temporal_shift_stages: Sequence[int] = (),
        **timm_kwargs: object,
    ) -> None:
        super().__init__()
        out_strides = sorted(int(s) for s in out_strides)
        if not out_strides or any(s not in VALID_STRIDES for s in out_strides):
            raise ValueError(f"out_strides must be a subset of {VALID_STRIDES}, got {out_strides}")
        self.model_name = name = model
        if name in TORCHVISION_RESNETS:
            self.trunk, trunk_channels = self._build_torchvision(name, pretrained)
            trunk_strides = list(VALID_STRIDES)
        elif name == TINY_NAME:
            if pretrained:
                raise ValueError("tinycnn has no pretrained weights; use pretrained=False")
            self.trunk = TinyConvNet(channels)
            trunk_channels, trunk_strides = list(channels), list(VALID_STRIDES)
        else:
            self.trunk, trunk_channels, trunk_strides = self._build_timm(
                name, pretrained, out_strides, timm_kwargs
            )
        missing = [s for s in out_strides if s not in trunk_strides]
        if missing:
            raise ValueError(
                f"backbone {name!r} has no level at strides {missing}; available {trunk_strides}"
            )
        self._level_indices = [trunk_strides.index(s) for s in out_strides]
        if self._uses_all_levels:  # drop the stages after the deepest requested level
            self.trunk.stages = self.trunk.stages[: max(self._level_indices) + 1]
        self.temporal_shift_stages = tuple(int(i) for i in temporal_shift_stages)
        if self.temporal_shift_stages and not (
            self._uses_all_levels and set(self.temporal_shift_stages) <= {0, 1, 2, 3}
        ):
            raise ValueError(
                "temporal_shift_stages must be stage indices in 0-3 of a torchvision ResNet or "
                f"tinycnn, got {list(temporal_shift_stages)} for backbone {name!r}"
            )
        if checkpoint_path is not None:
            self.load_trunk_weights(checkpoint_path)
        self.strides = out_strides
        self.stage_channels = (
            list(trunk_channels[: len(self.trunk.stages)]) if self._uses_all_levels else []
        )
        self.out_channels = [trunk_channels[i] for i in self._level_indices]
        self.feature_refine: nn.Module | None = None
        if refine_last:
            refined = max(1, self.out_channels[-1] // 2)
            self.feature_refine = nn.Conv2d(self.out_channels[-1], refined, kernel_size=1)
            self.out_channels[-1] = refined
        if frozen_bn:
            freeze_batchnorm(self.trunk)
        self._freeze(freeze_stages)

    @staticmethod
    def _build_torchvision(name: str, pretrained: bool) -> tuple[nn.Module, list[int]]:
        builder_name, weights_name, channels = TORCHVISION_RESNETS[name]
        weights = getattr(torchvision.models, weights_name).DEFAULT if pretrained else None
        with torchvision_download(weights):
            resnet = getattr(torchvision.models, builder_name)(weights=weights)
        return _TorchvisionResNetTrunk(resnet), list(channels)

    @staticmethod
    def _build_timm(
        name: str, pretrained: bool, out_strides: list[int], kwargs: dict
    ) -> tuple[nn.Module, list[int], list[int]]:
        import timm

        model_name = name.removeprefix("timm/")
        if not timm.is_model(model_name):
            valid = ", ".join([*TORCHVISION_RESNETS, TINY_NAME])
            raise KeyError(
                f"unknown backbone {name!r}: expected one of {valid} or a timm model name "
                f"(see timm.list_models())"
            )
        probe = timm.create_model(model_name, pretrained=False, features_only=True, **kwargs)
        reductions = list(probe.feature_info.reduction())
        indices = [reductions.index(s) for s in out_strides if s in reductions]
        if pretrained:
            trunk = timm.create_model(
                model_name, pretrained=True, features_only=True, out_indices=indices, **kwargs
            )
        else:
            trunk = timm.create_model(
                model_name, pretrained=False, features_only=True, out_indices=indices, **kwargs
            )
        return trunk, list(trunk.feature_info.channels()), list(trunk.feature_info.reduction())

    def load_trunk_weights(self, checkpoint_path: str | os.PathLike) -> None:
        """Load trunk weights from a local file (torchvision or timm key layout).

        Keys of a full torchvision ResNet (``conv1.weight``, ``layer1.0...``, ``fc.*``) are
        mapped onto the trunk; classifier weights are ignored.

        Raises:
            FileNotFoundError: the file does not exist.
            ValueError: the file's keys do not fit the trunk (names the missing keys).
        """
        state = load_state_dict_file(checkpoint_path)
        if isinstance(self.trunk, _TorchvisionResNetTrunk):
            state = _torchvision_keys_to_trunk(state)
        else:
            own = set(self.trunk.state_dict())
            state = {k: v for k, v in state.items() if k in own}
        missing, _ = self.trunk.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing:
            raise ValueError(
                f"checkpoint_path {os.fspath(checkpoint_path)!r} does not fit backbone "
                f"{self.model_name!r}: {len(missing)} missing keys, e.g. {missing[:3]}"
            )

    def _freeze(self, freeze_stages: int) -> None:
        if freeze_stages <= 0:
            return
        parts: list[nn.Module]
        if isinstance(self.trunk, _StagedTrunk):
            parts = [self.trunk.stem, *self.trunk.stages]
        else:
            parts = list(self.trunk.children())
        if freeze_stages > len(parts):
            raise ValueError(f"freeze_stages must be <= {len(parts)}, got {freeze_stages}")
        for part in parts[:freeze_stages]:
            part.requires_grad_(False)

    def forward(
        self, frames: torch.Tensor, stage_hook: StageHook | None = None
    ) -> list[torch.Tensor]:
        """Compute the multi-scale features.

        Args:
            frames: ``(N, 3, H, W)`` or ``(B, T, 3, H, W)`` float images.
            stage_hook: ``hook(stage_index, features (N, C_i, h_i, w_i)) -> features`` replaces
                every stage's output (frames flattened, ``N = B * T``) before the next stage
                sees it, e.g. to add motion or condition on text inside the trunk (torchvision
                ResNets and tinycnn).

        Returns:
            One map per stride in ``self.strides``: ``(N, C_i, ceil(H/s_i), ceil(W/s_i))``
            (or ``(B, T, C_i, ...)`` for 5-D input), channels ``self.out_channels``.
        """
        video_shape = None
        if not is_compiling():
            if not isinstance(frames, torch.Tensor) or frames.ndim not in (4, 5):
                shape = format_shape(frames.shape) if isinstance(frames, torch.Tensor) else None
                raise ValueError(f"frames must be (N, 3, H, W) or (B, T, 3, H, W), got {shape}")
            dims = ("B", "T", 3, "H", "W") if frames.ndim == 5 else ("N", 3, "H", "W")
            check_tensor(frames, "frames", dims, floating=True)
        if frames.ndim == 5:
            video_shape = frames.shape[:2]
            frames = frames.flatten(0, 1)
        if stage_hook is not None and not self._uses_all_levels:
            raise ValueError(
                f"stage_hook needs a staged trunk (a torchvision ResNet or tinycnn), got backbone "
                f"{self.model_name!r}"
            )
        if self.temporal_shift_stages and video_shape is not None:
            levels = self.trunk(frames, int(video_shape[1]), self.temporal_shift_stages, stage_hook)
        elif stage_hook is not None:  # int(T) is read only when needed: export keeps T dynamic
            levels = self.trunk(frames, stage_hook=stage_hook)
        else:
            levels = self.trunk(frames)
        features = [levels[i] for i in self._level_indices] if self._uses_all_levels else levels
        if self.feature_refine is not None:
            features = [*features[:-1], self.feature_refine(features[-1])]
        if video_shape is not None:
            features = [f.unflatten(0, video_shape) for f in features]
        return features

    @property
    def _uses_all_levels(self) -> bool:
        return isinstance(self.trunk, _StagedTrunk)


def _torchvision_keys_to_trunk(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map full-ResNet keys (``conv1``, ``bn1``, ``layerK``) to the trunk's ``stem``/``stages``."""
    mapped = {}
    for key, value in state.items():
        if key.startswith("conv1."):
            mapped["stem.0." + key[len("conv1.") :]] = value
        elif key.startswith("bn1."):
            mapped["stem.1." + key[len("bn1.") :]] = value
        elif key.startswith("layer"):
            index, rest = key[len("layer") :].split(".", 1)
            mapped[f"stages.{int(index) - 1}.{rest}"] = value
        elif key.startswith(("stem.", "stages.")):
            mapped[key] = value
    return mapped
