"""Sequence-to-sequence video object segmentation with a ConvLSTM (Xu et al., ECCV 2018).

Semi-supervised VOS. Given the first frame's mask of an object (no sentence), the
model segments the object in the following frames:

1. **initializer**: frame 0 and its mask, ``(B, 4, H, W)``, go through the input adapter
   (none for a 4-channel backbone; a 3x3 conv + BN + ReLU to 3 channels for an RGB one) and a
   backbone (VGG-16); its coarsest map, ``(B, C, H/32, W/32)``, goes through two adapters
   (1x1 conv + BN + ReLU) giving the ConvLSTM's initial memory ``c0`` and hidden state ``h0``
   ``(B, S, H/32, W/32)``;
2. **encoder**: frames ``1..T-1`` go through a second backbone and an adapter (a 1x1
   convolution) to ``(B, T-1, S, H/32, W/32)``;
3. **temporal**: a ConvLSTM (``TEMPORAL_MODULES`` ``"convlstm"``) started from ``(h0, c0)``
   runs over those frames;
4. **decoder** (``DECODERS`` ``"seq2seq"``): each hidden state goes through blocks of [two
   5x5 conv + BN + ReLU, x2 bilinear upsampling] (``512 -> 512 -> 256 -> 128 -> 64 -> 64``
   for VGG-16) and a 5x5 convolution to one channel: the mask logits ``(B, T-1, 1, H, W)``.

Frame 0's output is the given mask as logits (``+-FIRST_FRAME_LOGIT``), so the output always has
``T`` frames and scoring or writing results needs no special case. The model outputs logits and
trains with BCE-with-logits (criterion ``"first_frame_mask"``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

# registers the default parts: the "vgg16"/"tinyvgg" backbones, "convlstm", the adapters,
# the "seq2seq" decoder and the "first_frame_mask" criterion
import rvoslib.losses.mask_criteria
import rvoslib.models.adapters
import rvoslib.models.backbones.vgg
import rvoslib.models.temporal.convlstm  # noqa: F401
from rvoslib._checks import check_fit, check_tensor, is_compiling
from rvoslib.losses.registry import CRITERIA
from rvoslib.models.base import VOSModel, check_first_mask
from rvoslib.models.config import ArchitectureConfig, Part
from rvoslib.models.heads.seq2seq_decoder import Seq2SeqDecoder
from rvoslib.models.inputs import check_mask_inputs
from rvoslib.models.registry import (
    ADAPTERS,
    ARCHITECTURES,
    BACKBONES,
    DECODERS,
    TEMPORAL_MODULES,
    Registry,
)

__all__ = [
    "FIRST_FRAME_LOGIT",
    "Seq2SeqConfig",
    "Seq2SeqDecoder",
    "Seq2SeqModel",
    "check_first_mask",
]

#: Logit magnitude that stands for the given first-frame mask in the output.
FIRST_FRAME_LOGIT = 20.0


def _to_state(source: str) -> Any:
    """Injector of an adapter from ``source``'s coarsest channels to ``state_channels``."""

    def inject(built: Mapping[str, Any], config: Any) -> dict[str, int]:
        channels = built[source].out_channels[-1]
        return {"in_channels": channels, "out_channels": config.state_channels}

    return inject


def _adapter_input(built: Mapping[str, Any], config: Any) -> dict[str, int]:
    """Frame + mask (4 channels) to the initializer's input channels."""
    return {"in_channels": 4, "out_channels": getattr(built["initializer"], "in_channels", 3)}


@dataclasses.dataclass
class Seq2SeqConfig(ArchitectureConfig):
    """Config of :class:`Seq2SeqModel` (defaults: ``s2s-vgg16``), parts in build order.

    Attributes:
        initializer: Backbone spec for frame 0 + its mask (``in_channels`` 4, or 3 behind an
            input adapter).
        encoder: Backbone spec for the other frames (its coarsest level is used).
        temporal: Temporal module spec with ``forward_with_state(features, (h0, c0))``
            (``"convlstm"``); receives ``channels = state_channels``.
        input_adapter: ``ADAPTERS`` spec from frame + mask (4 channels) to the initializer's
            ``in_channels`` (``"identity"`` for a 4-channel initializer; ``{"name":
            "conv_bn_relu", "kernel_size": 3}`` in front of an RGB one).
        initial_memory: ``ADAPTERS`` spec from the initializer's coarsest channels to the
            ConvLSTM's initial memory ``c0`` (``state_channels``).
        initial_hidden: Same, to the initial hidden state ``h0``.
        encoder_projection: ``ADAPTERS`` spec from the encoder's coarsest channels to
            ``state_channels``.
        decoder: ``DECODERS`` spec; receives ``in_channels = state_channels``.
        criterion: ``CRITERIA`` spec (``"first_frame_mask"``: BCE, optional Dice).
        state_channels: Channels ``S`` of ``h0``, ``c0``, the encoder projection and the
            ConvLSTM.
    """

    architecture: ClassVar[str] = "seq2seq"
    parts: ClassVar[dict[str, Part | Registry]] = {
        "initializer": BACKBONES,
        "encoder": BACKBONES,
        "temporal": Part(TEMPORAL_MODULES, lambda built, config: {
            "channels": config.state_channels}),
        "input_adapter": Part(ADAPTERS, _adapter_input),
        "initial_memory": Part(ADAPTERS, _to_state("initializer")),
        "initial_hidden": Part(ADAPTERS, _to_state("initializer")),
        "encoder_projection": Part(ADAPTERS, _to_state("encoder")),
        "decoder": Part(DECODERS, lambda built, config: {"in_channels": config.state_channels}),
        "criterion": CRITERIA,
    }  # fmt: skip

    initializer: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"name": "vgg16", "in_channels": 4, "out_strides": [32]}
    )
    encoder: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"name": "vgg16", "out_strides": [32]}
    )
    temporal: dict[str, Any] = dataclasses.field(default_factory=lambda: {"name": "convlstm"})
    input_adapter: dict[str, Any] = dataclasses.field(default_factory=lambda: {"name": "identity"})
    initial_memory: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"name": "conv_bn_relu", "kernel_size": 1}
    )
    initial_hidden: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"name": "conv_bn_relu", "kernel_size": 1}
    )
    encoder_projection: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"name": "conv", "kernel_size": 1}
    )
    decoder: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {
            "name": "seq2seq",
            "channels": [512, 256, 128, 64, 64],
            "kernel_size": 5,
        }
    )
    criterion: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"name": "first_frame_mask"}
    )
    state_channels: int = 512


@ARCHITECTURES.register("seq2seq")
class Seq2SeqModel(VOSModel):
    """Initializer -> encoder -> ConvLSTM -> decoder (see the module docstring).

    A VOS model: ``forward(frames (B, T, 3, H, W), first_mask (B, H, W)) -> (B, T, 1, H, W)``
    logits, frame 0 being the given mask. It has no text encoder.

    Args:
        initializer: Backbone for frame 0 + mask (``in_channels`` 4, or 3 with an adapter).
        encoder: Backbone for the frames; its coarsest stride must equal the initializer's.
        temporal: Stateful temporal module, ``forward_with_state(features, (h0, c0))``, with
            ``channels`` and ``hidden_channels`` equal to ``state_channels``.
        input_adapter: ``(B, 4, H, W)`` -> the initializer's input channels.
        initial_memory: The initializer's coarsest map -> ``c0 (B, S, h, w)``.
        initial_hidden: The initializer's coarsest map -> ``h0 (B, S, h, w)``.
        encoder_projection: The encoder's coarsest map -> ``(B*T, S, h, w)``.
        decoder: Hidden states ``(N, S, h, w)`` -> logits ``(N, 1, H, W)``.
        criterion: The training criterion (``criterion(outputs, batch)``).
        state_channels: Channels ``S`` of the LSTM state.

    Raises:
        ValueError: parts that do not fit (channels, strides, a temporal module without
            state); the message names both parts.

    Example:
        >>> from rvoslib.models.architectures.seq2seq import Seq2SeqConfig
        >>> config = Seq2SeqConfig(
        ...     initializer={"name": "tinyvgg", "in_channels": 4, "out_strides": [8]},
        ...     encoder={"name": "tinyvgg", "out_strides": [8]}, state_channels=16,
        ...     decoder={"name": "seq2seq", "channels": [16, 8, 8], "kernel_size": 3})
        >>> model = Seq2SeqModel.from_config(config).eval()
        >>> first_mask = torch.zeros(1, 32, 32); first_mask[0, 8:16, 8:16] = 1
        >>> model(torch.randn(1, 3, 3, 32, 32), first_mask).shape
        torch.Size([1, 3, 1, 32, 32])
    """

    config_class = Seq2SeqConfig

    def __init__(
        self,
        *,
        initializer: nn.Module,
        encoder: nn.Module,
        temporal: nn.Module,
        input_adapter: nn.Module,
        initial_memory: nn.Module,
        initial_hidden: nn.Module,
        encoder_projection: nn.Module,
        decoder: nn.Module,
        criterion: nn.Module,
        state_channels: int = 512,
    ) -> None:
        super().__init__()
        _check_parts(initializer, encoder, temporal, state_channels)
        check_fit("input_adapter", getattr(input_adapter, "out_channels", None), "initializer",
                  getattr(initializer, "in_channels", 3))  # fmt: skip
        self.initializer = initializer
        self.encoder = encoder
        self.temporal = temporal
        self.initializer_input = input_adapter
        self.initial_memory = initial_memory
        self.initial_hidden = initial_hidden
        self.encoder_projection = encoder_projection
        self.decoder = decoder
        self.criterion = criterion

    @property
    def input_adapter(self) -> nn.Module:
        """The input adapter part (the ``initializer_input`` module)."""
        return self.initializer_input

    # ------------------------------------------------------------------ the forward pass
    def forward_outputs(
        self, frames: torch.Tensor, first_mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """``frames (B, T, 3, H, W)``, ``first_mask (B, H, W)`` -> ``{"logits": (B, T, 1, H,
        W)}``; frame 0 holds ``+-FIRST_FRAME_LOGIT`` from ``first_mask``.

        Raises:
            ValueError: bad shapes (names the argument, the expected and the actual shape).
        """
        if not is_compiling():
            check_tensor(frames, "frames", ("B", "T", 3, "H", "W"), floating=True)
            check_first_mask(first_mask, frames)
        state = self.initial_state(frames[:, 0], first_mask)
        logits = [self.first_frame_logits(first_mask, frames.dtype)]
        if frames.shape[1] > 1:
            logits.append(self.track(frames[:, 1:], state)[0])
        return {"logits": torch.cat(logits, dim=1)}

    def initial_state(
        self, frame: torch.Tensor, first_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h0, c0)``, each ``(B, S, h, w)``, from ``frame (B, 3, H, W)`` and
        ``first_mask (B, H, W)``."""
        inputs = torch.cat([frame, first_mask.unsqueeze(1).to(frame.dtype)], dim=1)
        coarsest = self.initializer(self.initializer_input(inputs))[-1]
        return self.initial_hidden(coarsest), self.initial_memory(coarsest)

    def first_frame_logits(self, first_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``first_mask (B, H, W)`` as logits ``(B, 1, 1, H, W)`` (``+-FIRST_FRAME_LOGIT``)."""
        sign = (first_mask > 0.5).to(dtype) * 2 - 1
        return (sign * FIRST_FRAME_LOGIT)[:, None, None]

    def track(
        self, frames: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Continue the sequence from ``state`` over ``frames (B, T', 3, H, W)``.

        Returns:
            Logits ``(B, T', 1, H, W)`` and the state after the last frame.
        """
        batch, steps = frames.shape[:2]
        features = self.encoder(frames)[-1]  # (B, T', C, h, w)
        features = self.encoder_projection(features.flatten(0, 1)).unflatten(0, (batch, steps))
        hidden0, memory0 = state
        if hidden0.shape[-2:] != features.shape[-2:]:  # backbones that round sizes differently
            size = tuple(features.shape[-2:])
            hidden0 = F.interpolate(hidden0, size=size, mode="bilinear", align_corners=False)
            memory0 = F.interpolate(memory0, size=size, mode="bilinear", align_corners=False)
        hidden, state = self.temporal.forward_with_state(features, (hidden0, memory0))
        logits = self.decoder(hidden.flatten(0, 1), output_size=tuple(frames.shape[-2:]))
        return logits.unflatten(0, (batch, steps)), state

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def predict(self, batch: Mapping[str, Any], clip_len: int | None = None) -> torch.Tensor:
        """Float32 logits ``(B, T, 1, H, W)`` of whole videos.

        The ConvLSTM state is carried from chunk to chunk, so ``clip_len`` (frames per
        encoder/decoder pass; None: all at once) bounds memory without changing the result.

        Args:
            batch: ``frames (B, T, 3, H, W)`` and ``first_mask (B, H, W)``.
            clip_len: Frames per pass.

        Raises:
            ValueError: a key is missing (the message says what the model takes), bad shapes,
                no frame (``T = 0``), NaN / inf frames, ``clip_len < 1``, or an empty
                ``first_mask`` (nothing to track). Frames of another dtype than the model's
                are cast, as :meth:`forward` does.
        """
        self.check_batch(batch)
        frames, first_mask = batch["frames"], batch["first_mask"]
        if clip_len is not None and clip_len < 1:
            raise ValueError(f"clip_len must be a positive int or None, got {clip_len!r}")
        frames = check_mask_inputs(frames, first_mask, self, require_object=True)
        state = self.initial_state(frames[:, 0], first_mask)
        pieces = [self.first_frame_logits(first_mask, frames.dtype)]
        chunk = clip_len or frames.shape[1]
        for start in range(1, frames.shape[1], chunk):
            logits, state = self.track(frames[:, start : start + chunk], state)
            pieces.append(logits)
        return torch.cat(pieces, dim=1).float()

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by learning-rate group: ``backbone`` (the initializer's and
        the encoder's backbones), ``text`` (empty) and ``other``."""
        groups: dict[str, list[nn.Parameter]] = {"backbone": [], "text": [], "other": []}
        backbone = {id(p) for part in (self.initializer, self.encoder) for p in part.parameters()}
        for param in self.parameters():
            if param.requires_grad:
                groups["backbone" if id(param) in backbone else "other"].append(param)
        return groups


def _check_parts(
    initializer: nn.Module, encoder: nn.Module, temporal: nn.Module, state_channels: int
) -> None:
    """Raise ValueError for parts that do not fit together (names both parts)."""
    if initializer.strides[-1] != encoder.strides[-1]:
        raise ValueError(
            f"initializer's coarsest stride {initializer.strides[-1]} differs from the "
            f"encoder's {encoder.strides[-1]}; the LSTM state and the frame features must have "
            "the same size (set out_strides of both backbones alike)"
        )
    if not hasattr(temporal, "forward_with_state"):
        raise ValueError(
            f"temporal module {type(temporal).__name__} has no forward_with_state(features, "
            "(h0, c0)); seq2seq needs a stateful module such as 'convlstm'"
        )
    channels = getattr(temporal, "channels", state_channels)
    hidden = getattr(temporal, "hidden_channels", channels)
    if (channels, hidden) != (state_channels, state_channels):
        raise ValueError(
            f"temporal module has channels={channels}, hidden_channels={hidden} but "
            f"state_channels is {state_channels}; both must equal state_channels"
        )
