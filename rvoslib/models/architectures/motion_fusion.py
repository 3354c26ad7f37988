"""Motion and language inside the backbone: the design that learns the synthetic main job.

:class:`~rvoslib.models.architectures.video_fusion.VideoFusionModel` mixes frames only on the
coarsest map (stride 16: a 64-pixel frame is 4 x 4 cells there), where objects that move 2-4
pixels a frame shift by a fraction of a cell; it never learns which object moves where (motion
expressions stay at chance, even when they are the only expressions of the job). Here

1. a motion part (``correlation``: :class:`~rvoslib.models.temporal.CorrelationMotion`)
   correlates each frame with the next at a fine stage of the backbone (stride 4 by default)
   and adds what it finds (a soft-argmax displacement per place) to that stage's output, so
   the deeper stages carry "this object moves left" over the whole object;
2. the sentence modulates every backbone stage (FiLM: ``x * (1 + scale) + shift`` from the
   pooled sentence, initialised to the identity), so the trunk can keep what the expression
   asks about (a colour, a motion) before the features are pooled to the coarsest level;
3. then, as in ``video_fusion``: the temporal module on the coarsest level, cross-attention to
   the expression's tokens, and the FPN head. The presets ``tiny-motion`` and ``tiny-film``
   use the ``identity`` temporal module there: 3x3x3 convolutions on that map cost a quarter
   of a training step and changed nothing measurable (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from rvoslib._checks import check_fit
from rvoslib.models.architectures.video_fusion import VideoFusionConfig, VideoFusionModel
from rvoslib.models.config import Part
from rvoslib.models.heads.common import film
from rvoslib.models.registry import ARCHITECTURES, TEMPORAL_MODULES, Registry
from rvoslib.models.text import TextFeatures

__all__ = ["MotionFusionConfig", "MotionFusionModel"]


@dataclasses.dataclass
class MotionFusionConfig(VideoFusionConfig):
    """Config of :class:`MotionFusionModel`: the fields of
    :class:`~rvoslib.models.architectures.video_fusion.VideoFusionConfig`, plus

    Attributes:
        motion: Motion part spec (``TEMPORAL_MODULES``, ``(B, T, C, h, w)`` in and out);
            receives the channels of stage ``motion_stage`` as ``channels``.
        motion_stage: Index of the backbone stage whose output the motion part changes
            (0 = stride 4).
    """

    architecture: ClassVar[str] = "motion_fusion"
    parts: ClassVar[dict[str, Part | Registry]] = {
        **{k: v for k, v in VideoFusionConfig.parts.items() if k not in ("temporal", "head",
                                                                          "criterion")},
        "motion": Part(TEMPORAL_MODULES, lambda built, config: {
            "channels": _stage_channels(built["backbone"], config.motion_stage)}),
        **{k: VideoFusionConfig.parts[k] for k in ("temporal", "head", "criterion")},
    }  # fmt: skip

    motion: dict[str, Any] = dataclasses.field(default_factory=lambda: {"name": "correlation"})
    motion_stage: int = 0


@ARCHITECTURES.register("motion_fusion")
class MotionFusionModel(VideoFusionModel):
    """Backbone with motion and sentence FiLM inside -> temporal module -> fusion -> head.

    Args:
        motion: Changes stage ``motion_stage``'s output ``(B, T, C_s, h_s, w_s)``.
        motion_stage: Backbone stage of the motion part.
        **parts: The parts of :class:`VideoFusionModel`; the backbone must be staged (tinycnn
            or a torchvision ResNet, with ``stage_channels``); the text encoder's pooled
            sentence ``(B, D)`` modulates every stage.

    Raises:
        ValueError: the backbone has no stages to hook, ``motion_stage`` is not one of them, or
            neighbouring parts' channels do not match (names both parts).

    Example:
        >>> from rvoslib import create_model
        >>> model = create_model("tiny-motion")
        >>> model.architecture, model.config.motion["name"], model.config.motion_stage
        ('motion_fusion', 'correlation', 0)
    """

    config_class = MotionFusionConfig

    def __init__(self, *, motion: nn.Module, motion_stage: int = 0, **parts: nn.Module) -> None:
        backbone = parts["backbone"]
        channels = _stage_channels(backbone, motion_stage)
        check_fit(f"backbone stage {motion_stage}", channels, "motion",
                  getattr(motion, "channels", None))  # fmt: skip
        super().__init__(**parts)
        self.motion = motion
        self.motion_stage = motion_stage
        self.stage_film = nn.ModuleList(
            nn.Linear(self.text_encoder.out_dim, 2 * width) for width in backbone.stage_channels
        )
        for layer in self.stage_film:  # start as the identity: x * (1 + 0) + 0
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def levels(self, frames: torch.Tensor, text: TextFeatures) -> list[torch.Tensor]:
        """The backbone's levels ``[(B, T, C_i, h_i, w_i)]`` with the motion part after stage
        ``motion_stage`` and the sentence's FiLM after every stage."""
        clip = frames.shape[:2]
        sentence = text.sentence.repeat_interleave(clip[1], dim=0)  # (B*T, D)

        def condition(index: int, features: torch.Tensor) -> torch.Tensor:
            if index == self.motion_stage:  # (B*T, C, h, w): add how each place moves
                features = self.motion(features.unflatten(0, clip)).flatten(0, 1)
            return film(features, self.stage_film[index](sentence))

        return self.backbone(frames, stage_hook=condition)


def _stage_channels(backbone: nn.Module, stage: int) -> int:
    """Channels of ``backbone``'s stage ``stage``, checking that it has such a stage."""
    stages = list(getattr(backbone, "stage_channels", []))
    if not stages:
        raise ValueError(
            "backbone must run its stages one by one (tinycnn or a torchvision ResNet) for "
            f"motion_fusion, got {type(backbone).__name__} {getattr(backbone, 'model_name', '')!r}"
        )
    if not 0 <= stage < len(stages):
        raise ValueError(
            f"motion_stage must be a backbone stage in [0, {len(stages) - 1}], got {stage}"
        )
    return stages[stage]
