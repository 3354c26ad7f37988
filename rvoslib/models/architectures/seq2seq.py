"""Sequence-to-sequence video object segmentation with a ConvLSTM (Xu et al., ECCV 2018).

Seed ``003``: semi-supervised VOS. Given the first frame's mask of an object (no sentence), the
model segments the object in the following frames:

1. **initializer**: frame 0 and its mask, ``(B, 4, H, W)``, go through a backbone (VGG-16);
   its coarsest map, ``(B, C, H/32, W/32)``, goes through two separate 1x1 conv + BN + ReLU
   giving the ConvLSTM's initial memory ``c0`` and hidden state ``h0``
   ``(B, S, H/32, W/32)``;
2. **encoder**: frames ``1..T-1`` go through a second backbone and a 1x1 convolution to
   ``(B, T-1, S, H/32, W/32)``;
3. **temporal**: a ConvLSTM (``TEMPORAL_MODULES`` ``"convlstm"``) started from ``(h0, c0)``
   runs over those frames;
4. **decoder**: each hidden state goes through blocks of [two 5x5 conv + BN + ReLU, x2
   bilinear upsampling] (``512 -> 512 -> 256 -> 128 -> 64 -> 64`` for VGG-16) and a 5x5
   convolution to one channel: the mask logits ``(B, T-1, 1, H, W)``.

Frame 0's output is the given mask as logits (``+-FIRST_FRAME_LOGIT``), so the output always has
``T`` frames and scoring or writing results needs no special case. The model outputs logits and
trains with BCE-with-logits (seed 003's sigmoid + ``BCELoss`` is numerically fragile).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

# registers the default parts: the "vgg16"/"tinyvgg" backbones and the "convlstm" module
import rvoslib.models.backbones.vgg
import rvoslib.models.temporal.convlstm  # noqa: F401
from rvoslib._checks import check_tensor, format_shape, is_compiling
from rvoslib.losses import bce_loss, dice_loss
from rvoslib.models.base import RVOSModel
from rvoslib.models.config import ArchitectureConfig
from rvoslib.models.heads.seq2seq_decoder import Seq2SeqDecoder, conv_bn_relu
from rvoslib.models.registry import ARCHITECTURES, BACKBONES, TEMPORAL_MODULES, Registry

__all__ = [
    "FIRST_FRAME_LOGIT",
    "Seq2SeqConfig",
    "Seq2SeqDecoder",
    "Seq2SeqModel",
    "check_first_mask",
]

#: Logit magnitude that stands for the given first-frame mask in the output.
FIRST_FRAME_LOGIT = 20.0
_DECODER_CHANNELS = (512, 256, 128, 64, 64)


def _default_loss() -> dict[str, float]:
    return {"bce_weight": 1.0, "dice_weight": 0.0}


@dataclasses.dataclass
class Seq2SeqConfig(ArchitectureConfig):
    """Config of :class:`Seq2SeqModel` (defaults: ``s2s-vgg16``).

    Attributes:
        initializer: Backbone spec for frame 0 + its mask. A backbone with ``in_channels=4``
            takes the mask directly; one with 3 input channels gets seed 003's adapter (3x3
            conv 4 -> 3 + BN + ReLU) in front.
        encoder: Backbone spec for the other frames (its coarsest level is used).
        temporal: Temporal module spec: one with ``forward_with_state(features, (h0, c0))``
            (``"convlstm"``); receives ``channels = state_channels``.
        state_channels: Channels ``S`` of ``h0``, ``c0``, the encoder projection and the
            ConvLSTM.
        decoder_channels: Output channels of the decoder blocks, each upsampling x2.
        decoder_kernel_size: Kernel size of the decoder convolutions.
        loss: ``bce_weight`` and ``dice_weight`` (terms over frames ``1..T-1``).
    """

    architecture: ClassVar[str] = "seq2seq"
    parts: ClassVar[dict[str, Registry]] = {
        "initializer": BACKBONES,
        "encoder": BACKBONES,
        "temporal": TEMPORAL_MODULES,
    }

    initializer: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"name": "vgg16", "in_channels": 4, "out_strides": [32]}
    )
    encoder: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"name": "vgg16", "out_strides": [32]}
    )
    temporal: dict[str, Any] = dataclasses.field(default_factory=lambda: {"name": "convlstm"})
    state_channels: int = 512
    decoder_channels: list[int] = dataclasses.field(default_factory=lambda: [*_DECODER_CHANNELS])
    decoder_kernel_size: int = 5
    loss: dict[str, float] = dataclasses.field(default_factory=_default_loss)


def check_first_mask(
    first_mask: object, frames: torch.Tensor, *, require_object: bool = False
) -> torch.Tensor:
    """Check the first frame's mask against the frames.

    Args:
        first_mask: ``(B, H, W)`` mask of the object to track in frame 0 (nonzero = object).
        frames: ``(B, T, 3, H, W)`` frames.
        require_object: Also check that every mask has an object pixel (reads the values:
            one host sync).

    Returns:
        ``first_mask``.

    Raises:
        TypeError: ``first_mask`` is not a tensor.
        ValueError: its shape is not ``(B, H, W)`` of the frames (both sizes named), or a mask
            is empty (``require_object``).
    """
    if not isinstance(first_mask, torch.Tensor):
        raise TypeError(
            f"first_mask must be a torch.Tensor (B, H, W) (the mask of the object to track in "
            f"frame 0), got {type(first_mask).__name__}"
        )
    expected = (frames.shape[0], *frames.shape[-2:])
    if tuple(first_mask.shape) != tuple(expected):
        raise ValueError(
            f"first_mask must be (B, H, W) = {format_shape(expected)} to match frames "
            f"{format_shape(frames.shape)} (frames of {frames.shape[-2]}x{frames.shape[-1]}), "
            f"got {format_shape(first_mask.shape)}"
        )
    if require_object:
        empty = (first_mask.flatten(1) == 0).all(dim=1).nonzero().flatten().tolist()
        if empty:
            raise ValueError(
                f"first_mask of batch item(s) {empty} is empty: the mask of the object to track "
                "in frame 0 must have at least one object pixel"
            )
    return first_mask


@ARCHITECTURES.register("seq2seq")
class Seq2SeqModel(RVOSModel):
    """Initializer -> encoder -> ConvLSTM -> decoder (see the module docstring).

    A VOS model (``task = "vos"``): ``forward(frames (B, T, 3, H, W), first_mask (B, H, W))
    -> (B, T, 1, H, W)`` logits, frame 0 being the given mask. It has no text encoder.

    Args:
        initializer: Backbone for frame 0 + mask (``in_channels`` 4, or 3 with an adapter).
        encoder: Backbone for the frames; its coarsest stride must equal the initializer's.
        temporal: Stateful temporal module, ``forward_with_state(features, (h0, c0))``, with
            ``channels`` and ``hidden_channels`` equal to ``state_channels``.
        state_channels: Channels ``S`` of the LSTM state.
        decoder_channels: Decoder block widths.
        decoder_kernel_size: Decoder kernel size.
        loss: ``{"bce_weight": float, "dice_weight": float}``.

    Raises:
        ValueError: parts that do not fit (channels, strides, a temporal module without
            state); the message names both parts.

    Example:
        >>> from rvoslib.models.architectures.seq2seq import Seq2SeqConfig
        >>> config = Seq2SeqConfig(
        ...     initializer={"name": "tinyvgg", "in_channels": 4, "out_strides": [8]},
        ...     encoder={"name": "tinyvgg", "out_strides": [8]},
        ...     state_channels=16, decoder_channels=[16, 8, 8], decoder_kernel_size=3)
        >>> model = RVOSModel.from_config(config).eval()
        >>> first_mask = torch.zeros(1, 32, 32); first_mask[0, 8:16, 8:16] = 1
        >>> model(torch.randn(1, 3, 3, 32, 32), first_mask).shape
        torch.Size([1, 3, 1, 32, 32])
    """

    config_class = Seq2SeqConfig
    task: ClassVar[str] = "vos"

    def __init__(
        self,
        *,
        initializer: nn.Module,
        encoder: nn.Module,
        temporal: nn.Module,
        state_channels: int = 512,
        decoder_channels: Sequence[int] = _DECODER_CHANNELS,
        decoder_kernel_size: int = 5,
        loss: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        _check_parts(initializer, encoder, temporal, state_channels)
        self.initializer = initializer
        self.encoder = encoder
        self.temporal = temporal
        if getattr(initializer, "in_channels", 3) == 4:
            self.initializer_input: nn.Module = nn.Identity()
        else:  # seed 003's adapter in front of a 3-channel backbone
            self.initializer_input = nn.Sequential(*conv_bn_relu(4, 3, 3))
        initial_channels = initializer.out_channels[-1]
        self.initial_memory = nn.Sequential(*conv_bn_relu(initial_channels, state_channels, 1))
        self.initial_hidden = nn.Sequential(*conv_bn_relu(initial_channels, state_channels, 1))
        self.encoder_projection = nn.Conv2d(encoder.out_channels[-1], state_channels, 1)
        self.decoder = Seq2SeqDecoder(state_channels, decoder_channels, decoder_kernel_size)
        weights = {**_default_loss(), **(loss or {})}
        unknown = sorted(set(weights) - set(_default_loss()))
        if unknown:
            raise ValueError(f"loss has unknown keys {unknown}; valid: {sorted(_default_loss())}")
        self.bce_weight = float(weights["bce_weight"])
        self.dice_weight = float(weights["dice_weight"])

    @classmethod
    def build(cls, config: Seq2SeqConfig, *, pretrained: bool = False) -> Seq2SeqModel:
        """Build the parts from ``config``'s specs (``pretrained``: the backbones' weights)."""
        return cls(
            initializer=BACKBONES.build(config.initializer, pretrained=pretrained),
            encoder=BACKBONES.build(config.encoder, pretrained=pretrained),
            temporal=TEMPORAL_MODULES.build(config.temporal, channels=config.state_channels),
            state_channels=config.state_channels,
            decoder_channels=config.decoder_channels,
            decoder_kernel_size=config.decoder_kernel_size,
            loss=config.loss,
        )

    # ------------------------------------------------------------------ no text
    def tokenize(self, texts: list[str] | str, max_length: int | None = None) -> Any:
        """Not available: raises ``TypeError`` (a VOS model takes the first frame's mask)."""
        raise TypeError(self._no_text_message("tokenize"))

    def encode_text(self, text_ids: torch.Tensor, text_mask: torch.Tensor | None = None) -> Any:
        """Not available: raises ``TypeError`` (a VOS model takes the first frame's mask)."""
        raise TypeError(self._no_text_message("encode_text"))

    def forward_with_text(self, frames: torch.Tensor, text: Any) -> torch.Tensor:
        """Not available: raises ``TypeError`` (a VOS model takes the first frame's mask)."""
        raise TypeError(self._no_text_message("forward_with_text"))

    def _no_text_message(self, method: str) -> str:
        return (
            f"{type(self).__name__}.{method}: architecture {self.architecture!r} is a VOS model "
            "(task 'vos'): it takes the first frame's mask, first_mask (B, H, W), not text; "
            "call model(frames, first_mask) or model.predict({'frames': ..., 'first_mask': ...})"
        )

    # ------------------------------------------------------------------ the forward pass
    def forward(self, frames: torch.Tensor, first_mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Segment the object of ``first_mask`` in every frame.

        Args:
            frames: ``(B, T, 3, H, W)`` float, ImageNet-normalised.
            first_mask: ``(B, H, W)`` float, 1 on the object in frame 0, 0 elsewhere.

        Returns:
            ``(B, T, 1, H, W)`` logits; frame 0 holds ``+-FIRST_FRAME_LOGIT`` from
            ``first_mask``.

        Raises:
            ValueError: bad shapes (names the argument, the expected and the actual shape).
        """
        return self.forward_outputs(frames, first_mask)["logits"]

    def forward_outputs(  # type: ignore[override]
        self, frames: torch.Tensor, first_mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """``frames (B, T, 3, H, W)``, ``first_mask (B, H, W)`` -> ``{"logits": (B, T, 1, H,
        W)}``."""
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

    # ------------------------------------------------------------------ training and evaluation
    def forward_batch(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Training outputs of a batch with ``frames (B, T, 3, H, W)`` and ``first_mask
        (B, H, W)``.

        Raises:
            KeyError: ``first_mask`` or ``frames`` is missing (the message says what a VOS
                batch holds).
        """
        _require_keys(batch, ("frames", "first_mask"))
        return self.forward_outputs(batch["frames"], batch["first_mask"])

    def losses(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]
    ) -> dict[str, torch.Tensor]:
        """BCE-with-logits (and Dice, if weighted) over frames ``1..T-1`` where ``valid``.

        Frame 0 (the given mask) is not a prediction and is left out, as in seed 003. BCE is
        the mean over the counted pixels (seed 003 sums per-frame means; the mean keeps the
        learning rate independent of the clip length). ``void (B, T, H, W)`` pixels, when the
        batch has them, are excluded.

        Args:
            outputs: ``{"logits": (B, T, 1, H, W)}``.
            batch: ``masks (B, T, H, W)`` float, optional ``valid (B, T)`` bool and ``void``.

        Returns:
            ``{"bce": ...}`` (plus ``"dice"`` when ``dice_weight > 0``), weighted float32
            scalars.

        Raises:
            KeyError: ``masks`` is missing.
            ValueError: ``masks`` does not match the logits (both shapes named).
        """
        _require_keys(batch, ("masks",))
        logits, masks = outputs["logits"][:, 1:, 0], batch["masks"][:, 1:]
        if not is_compiling() and logits.shape != masks.shape:
            raise ValueError(
                f"batch['masks'] must be (B, T, H, W) = "
                f"{format_shape(outputs['logits'].shape[:2] + outputs['logits'].shape[-2:])} "
                f"to match the logits, got {format_shape(batch['masks'].shape)}"
            )
        weight = torch.ones_like(masks, dtype=torch.float32)
        valid = batch.get("valid")
        if valid is not None:
            weight = weight * valid[:, 1:, None, None].to(torch.float32)
        void = batch.get("void")
        if void is not None:
            weight = weight * (1 - void[:, 1:].to(torch.float32))
        terms = {"bce": self.bce_weight * bce_loss(logits, masks, weight)}
        if self.dice_weight > 0:
            terms["dice"] = self.dice_weight * dice_loss(logits, masks, weight)
        return terms

    @torch.no_grad()
    def predict(self, batch: Mapping[str, Any], clip_len: int | None = None) -> torch.Tensor:
        """Float32 logits ``(B, T, 1, H, W)`` of whole videos.

        The ConvLSTM state is carried from chunk to chunk, so ``clip_len`` (frames per
        encoder/decoder pass; None: all at once) bounds memory without changing the result.

        Args:
            batch: ``frames (B, T, 3, H, W)`` and ``first_mask (B, H, W)``.
            clip_len: Frames per pass.

        Raises:
            KeyError: a key is missing.
            ValueError: bad shapes, ``clip_len < 1``, or an empty ``first_mask`` (nothing to
                track).
        """
        _require_keys(batch, ("frames", "first_mask"))
        frames, first_mask = batch["frames"], batch["first_mask"]
        if clip_len is not None and clip_len < 1:
            raise ValueError(f"clip_len must be a positive int or None, got {clip_len!r}")
        check_tensor(frames, "frames", ("B", "T", 3, "H", "W"), floating=True)
        check_first_mask(first_mask, frames, require_object=True)
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


def _require_keys(batch: Mapping[str, Any], keys: Sequence[str]) -> None:
    missing = [key for key in keys if key not in batch]
    if missing:
        raise KeyError(
            f"batch lacks {missing} (got keys {sorted(batch)}); a VOS batch holds frames "
            "(B, T, 3, H, W), first_mask (B, H, W) (the object's mask in frame 0) and, for "
            "training, masks (B, T, H, W) and valid (B, T)"
        )


def _check_parts(
    initializer: nn.Module, encoder: nn.Module, temporal: nn.Module, state_channels: int
) -> None:
    """Raise ValueError for parts that do not fit together (names both parts)."""
    in_channels = getattr(initializer, "in_channels", 3)
    if in_channels not in (3, 4):
        raise ValueError(
            f"initializer takes {in_channels} input channels; seq2seq needs 4 (RGB + mask) or "
            "3 (an adapter 4 -> 3 is added)"
        )
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
