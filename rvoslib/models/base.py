"""The model contract: ``SegmentationModel``, and ``RVOSModel`` / ``VOSModel`` on top.

An architecture is a subclass of :class:`RVOSModel` (it takes a sentence per clip) or
:class:`VOSModel` (it takes the first frame's mask of the object), registered in
:data:`~rvoslib.models.registry.ARCHITECTURES`, with a config dataclass
(:class:`~rvoslib.models.config.ArchitectureConfig`) listing its parts. Every architecture has
the same contract, so training, evaluation, inference, export and the CLI work for all:

* ``inputs`` (:class:`ModelInputs`): what a batch must hold, and the tokenizer; the data
  side builds its collator from it (:func:`rvoslib.data.collator_for`);
* ``forward_batch(batch) -> outputs`` (the architecture's own outputs) and
  ``losses(outputs, batch) -> dict[str, Tensor]``: the weighted loss terms of the registered
  ``criterion`` part (the Trainer sums and logs them);
* ``predict(batch, clip_len) -> (B, T, 1, H, W)`` float32 logits of whole videos,
  ``candidates(outputs)`` (masks and scores of protocols that score several objects),
  ``save_pretrained`` / ``SegmentationModel.from_pretrained`` (any architecture).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from rvoslib._checks import check_tensor, format_shape, is_compiling
from rvoslib.models.config import ArchitectureConfig
from rvoslib.models.inputs import (
    MASK_KEYS,
    TEXT_KEYS,
    ModelInputs,
    check_finite,
    check_first_mask,
    check_mask_inputs,
    check_model_kind,
    check_text_inputs,
    matching_dtype,
)
from rvoslib.models.registry import ARCHITECTURES
from rvoslib.models.saving import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    load_into,
    load_weights,
    locate_tokenizer,
    read_config,
    save_model,
)
from rvoslib.models.text import TextFeatures

__all__ = [
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "ModelInputs",
    "RVOSModel",
    "SegmentationModel",
    "VOSModel",
    "check_first_mask",
    "load_weights",
    "read_config",
]


class SegmentationModel(nn.Module):
    """The one base of every architecture (see the module docstring).

    ``SegmentationModel.from_pretrained(folder)`` and ``SegmentationModel.from_config(config)``
    build any registered architecture.
    """

    config_class: ClassVar[type[ArchitectureConfig]] = ArchitectureConfig
    #: ``"text"`` or ``"first_mask"``: the input that says which object to segment.
    input_kind: ClassVar[str] = ""
    task: ClassVar[str] = ""  # "rvos" or "vos", for users; code reads :attr:`inputs`
    #: The batch keys the forward pass reads (``inputs.keys``, known without the tokenizer).
    input_keys: ClassVar[tuple[str, ...]] = ()
    _takes: ClassVar[str] = ""
    criterion: nn.Module
    #: ``True`` lets frames with NaN / inf values through (else an error naming the frame).
    allow_non_finite: bool = False

    # ------------------------------------------------------------------ building and config
    @classmethod
    def from_config(
        cls, config: ArchitectureConfig | Mapping[str, Any], *, pretrained: bool = False
    ) -> SegmentationModel:
        """Build the architecture ``config`` (an :class:`ArchitectureConfig` or its dict)
        describes; the base classes dispatch on its ``architecture``. ``pretrained``: load the
        pretrained weights of parts that have them (may download).

        Raises:
            ValueError: the config is another architecture's than ``cls``'s.
        """
        if isinstance(config, Mapping):
            data = dict(config)
            architecture = data.get("architecture", cls.config_class.architecture)
            config = ARCHITECTURES.get(architecture).config_class.from_dict(data)
        target = ARCHITECTURES.get(config.architecture)
        check_model_kind(cls, target, f"config of architecture {config.architecture!r}")
        return target.build(config, pretrained=pretrained)

    @classmethod
    def build(cls, config: ArchitectureConfig, *, pretrained: bool = False) -> SegmentationModel:
        """Build the parts of ``config`` in its ``parts`` order, each receiving what its
        :class:`~rvoslib.models.config.Part` injects from the parts built before it, then
        ``cls(**parts, **config.options())``: every option is checked once, by ``__init__``.
        """
        built: dict[str, Any] = {}
        for name, part in config.part_slots().items():
            built[name] = part.build(getattr(config, name), built, config, pretrained)
        model = cls(**built, **config.options())
        model.inference_protocol = config.inference  # the default inference protocol
        return model

    @property
    def architecture(self) -> str:
        """The registered name of this model's architecture."""
        return self.config_class.architecture

    @property
    def config(self) -> ArchitectureConfig:
        """The config of the model as it is now: the specs of its current parts.

        Raises:
            ValueError: a part is not registered (the message says how to register it).
        """
        recorded = ARCHITECTURES.spec_of(self)
        values: dict[str, Any] = {}
        for name in self.config_class.field_names():
            if name in self.config_class.parts:
                registry = self.config_class.part_registry(name)
                values[name] = registry.spec_of(getattr(self, name))
            elif name == "inference":
                values[name] = getattr(self, "inference_protocol", None)
            else:
                values[name] = copy.deepcopy(recorded[name])
        return self.config_class(**values)

    # ------------------------------------------------------------------ the contract
    @property
    def inputs(self) -> ModelInputs:
        """What the model reads from a batch (see :class:`ModelInputs`)."""
        raise NotImplementedError

    def check_batch(self, batch: Mapping[str, Any]) -> None:
        """Check that ``batch`` holds the input the model takes.

        Raises:
            ValueError: a key of :attr:`inputs` is missing; the message says which input the
                model takes (a mask given to a text model, or text to a mask model).
        """
        missing = [key for key in self.input_keys if key not in batch and key != "text_mask"]
        if missing:
            raise ValueError(
                f"{type(self).__name__} (architecture {self.architecture!r}) {self._takes}; "
                f"the batch lacks {missing} (got keys {sorted(batch)})"
            )

    def forward_batch(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """The architecture's outputs for a collated batch (keys: :attr:`inputs`)."""
        raise NotImplementedError

    def referred_logits(self, outputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The segmented object's ``(B, T, 1, H, W)`` logits among ``outputs`` (default: the
        ``"logits"`` entry)."""
        return outputs["logits"]

    def candidates(self, outputs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Candidate masks and their scores, for protocols that score several objects per
        frame (A2D-Sentences: every query with its probability of being the referred one).

        Returns:
            ``logits (B, T, N, h, w)`` (``h, w`` may be below the frames' size) and ``scores
            (B, T, N)`` in ``[0, 1]``. Default: ``N = 1``, the referred logits, score 1.
        """
        logits = self.referred_logits(outputs)
        return logits, logits.new_ones(logits.shape[:3])

    def losses(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]
    ) -> dict[str, torch.Tensor]:
        """Weighted, named training loss terms (their sum is the loss) of
        :meth:`forward_batch`'s outputs against the batch (``masks (B, T, H, W)``, ``valid
        (B, T)``...): the registered ``criterion`` part's."""
        return self.criterion(outputs, batch)

    def predict(self, batch: Mapping[str, Any], clip_len: int | None = None) -> torch.Tensor:
        """Float32 logits ``(B, T, 1, H, W)`` of whole videos, ``clip_len`` frames a pass."""
        raise NotImplementedError

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by learning-rate group: ``backbone``, ``text`` (the language
        model) and ``other``."""
        groups: dict[str, list[nn.Parameter]] = {"backbone": [], "text": [], "other": []}
        owners = {}
        if hasattr(self, "backbone"):
            owners.update({id(p): "backbone" for p in self.backbone.parameters()})
        language = getattr(getattr(self, "text_encoder", None), "language_model", None)
        if language is not None:
            owners.update({id(p): "text" for p in language.parameters()})
        for param in self.parameters():
            if param.requires_grad:
                groups[owners.get(id(param), "other")].append(param)
        return groups

    # ------------------------------------------------------------------ saving and loading
    def save_pretrained(self, directory: str | os.PathLike, *, card: str | None = None) -> Path:
        """Write ``config.json`` (the specs of the current parts, the language model's
        architecture included: loading never downloads), ``model.safetensors``, tokenizer
        files and a ``README.md`` model card (atomically); returns the folder.

        Args:
            directory: The folder (replaced only once the new one is complete).
            card: The model card's text (default: :func:`rvoslib.model_card.model_card` of
                the config: architecture, paper, how to load).
        """
        return save_model(
            self, directory, extra_files=None if card is None else {"README.md": card}
        )

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Save this model and upload it to the Hugging Face Hub repo ``repo_id``; see
        :func:`rvoslib.hub.push_to_hub` (``token``, ``private``, ``revision``,
        ``commit_message``). Returns the commit's URL.

        Raises:
            PermissionError: no Hugging Face token (nothing is sent).
        """
        from rvoslib.hub import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike,
        map_location: str | torch.device = "cpu",
        *,
        revision: str | None = None,
    ) -> SegmentationModel:
        """Restore a model written by :meth:`save_pretrained`: a local folder, a Hugging Face
        Hub repo id (``"org/name"``, at ``revision``) or ``"hf-hub:org/name"``, the latter
        through the Hub cache (:func:`rvoslib.hub.resolve_model_folder`; offline with
        ``HF_HUB_OFFLINE=1`` once downloaded). Folders written by older versions are
        converted. ``SegmentationModel.from_pretrained`` loads any
        architecture; ``RVOSModel.from_pretrained`` / ``VOSModel.from_pretrained`` only their
        kind.

        Raises:
            FileNotFoundError: ``config.json`` or ``model.safetensors`` is missing (named), or
                a Hub repo that does not exist or cannot be reached
                (:class:`~rvoslib.hub.HubModelNotFoundError`, named, with the offline hint).
            KeyError: a part of the config is not registered (names the part, its kind, the
                registered names, and says to import the module that registers it).
            ValueError: a model of another kind than ``cls``, or weights unlike config.json's.
        """
        from rvoslib.hub import resolve_model_folder

        directory = resolve_model_folder(directory, revision)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (directory / name).is_file():
                raise FileNotFoundError(
                    f"{str(directory / name)!r} not found: a model folder needs {CONFIG_FILE} "
                    f"and {WEIGHTS_FILE} (written by save_pretrained)"
                )
        config = read_config(directory)
        check_model_kind(cls, ARCHITECTURES.get(config["architecture"]), f"{str(directory)!r}")
        locate_tokenizer(config, directory)
        model = SegmentationModel.from_config(config, pretrained=False)
        load_into(model, directory, map_location)
        return model


class RVOSModel(SegmentationModel):
    """Base of referring architectures: a sentence says which object to segment.

    Example:
        >>> from rvoslib import create_model
        >>> model = create_model("tiny").eval()
        >>> tokens = model.tokenize(["the red circle"])
        >>> frames = torch.randn(1, 2, 3, 64, 64)
        >>> model(frames, tokens["input_ids"], tokens["attention_mask"]).shape
        torch.Size([1, 2, 1, 64, 64])
    """

    input_kind: ClassVar[str] = "text"
    input_keys: ClassVar[tuple[str, ...]] = TEXT_KEYS
    task: ClassVar[str] = "rvos"
    text_encoder: nn.Module

    @property
    def inputs(self) -> ModelInputs:
        """``kind="text"``: ``frames``, ``text_ids``, ``text_mask``; the text encoder's
        tokenizer (loaded on first access) and ``max_length``."""
        encoder = self.text_encoder
        return ModelInputs("text", TEXT_KEYS, encoder.tokenizer, encoder.max_length)

    _takes = (
        "is a referring (RVOS) model: it takes text, text_ids (B, L) and text_mask (B, L) "
        "(model.tokenize, or a collator from model.inputs), not a first-frame mask"
    )

    def tokenize(
        self, texts: list[str] | str, max_length: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Tokenize expressions with the text encoder's tokenizer."""
        return self.text_encoder.tokenize(texts, max_length)

    def encode_text(
        self, text_ids: torch.Tensor, text_mask: torch.Tensor | None = None
    ) -> TextFeatures:
        """Encode expressions once, e.g. to reuse them for many clips of one video."""
        return self.text_encoder(text_ids, text_mask)

    def forward(
        self, frames: torch.Tensor, text_ids: torch.Tensor, text_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Segment the referred object in every frame.

        Args:
            frames: ``(B, T, 3, H, W)`` normalised float frames.
            text_ids: ``(B, L)`` token ids.
            text_mask: ``(B, L)`` attention mask (1/True for real tokens).

        Returns:
            ``(B, T, 1, H, W)`` mask logits.

        Raises:
            ValueError: a bad shape, an empty batch, clip or expression, token ids outside the
                text encoder's vocabulary or past its position limit, or NaN / inf frames
                (each named with the expected and actual value).
            TypeError: integer frames or floating token ids.
        """
        if not is_compiling():
            vocab = getattr(getattr(self.text_encoder, "language_model", None), "config", None)
            check_text_inputs(frames, text_ids, getattr(vocab, "vocab_size", None))
            frames = matching_dtype(frames, self)
        return self.forward_with_text(frames, self.encode_text(text_ids, text_mask))

    def forward_with_text(self, frames: torch.Tensor, text: TextFeatures) -> torch.Tensor:
        """Like :meth:`forward` with precomputed :class:`TextFeatures` (batch ``B``)."""
        if not is_compiling():
            check_tensor(frames, "frames", ("B", "T", 3, "H", "W"), floating=True)
            check_finite(frames, self)
            if text.sentence.shape[0] != frames.shape[0]:
                raise ValueError(
                    f"text features must have batch size {frames.shape[0]} (frames "
                    f"{format_shape(frames.shape)}), got {text.sentence.shape[0]}"
                )
        return self.referred_logits(self.forward_outputs(frames, text))

    def forward_outputs(self, frames: torch.Tensor, text: TextFeatures) -> dict[str, torch.Tensor]:
        """The architecture's outputs for ``frames (B, T, 3, H, W)`` and encoded text."""
        raise NotImplementedError

    def forward_batch(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Outputs of a collated batch (``frames``, ``text_ids``, ``text_mask``).

        Raises:
            ValueError: the batch has no text (the message says what the model takes).
        """
        self.check_batch(batch)
        text = self.encode_text(batch["text_ids"], batch.get("text_mask"))
        return self.forward_outputs(batch["frames"], text)

    @torch.no_grad()
    def predict(self, batch: Mapping[str, Any], clip_len: int | None = None) -> torch.Tensor:
        """Float32 logits ``(B, T, 1, H, W)`` of whole videos, ``clip_len`` frames per forward
        pass (``None``: all at once), the text encoded once."""
        self.check_batch(batch)
        frames = batch["frames"]
        chunk = clip_len or frames.shape[1]
        text = self.encode_text(batch["text_ids"], batch.get("text_mask"))
        pieces = [
            self.forward_with_text(frames[:, start : start + chunk], text)
            for start in range(0, frames.shape[1], chunk)
        ]
        return torch.cat(pieces, dim=1).float()


class VOSModel(SegmentationModel):
    """Base of semi-supervised VOS architectures: the first frame's mask says which object to
    segment; ``forward(frames (B, T, 3, H, W), first_mask (B, H, W)) -> (B, T, 1, H, W)``."""

    input_kind: ClassVar[str] = "first_mask"
    input_keys: ClassVar[tuple[str, ...]] = MASK_KEYS
    task: ClassVar[str] = "vos"

    @property
    def inputs(self) -> ModelInputs:
        """``kind="first_mask"``: ``frames`` and ``first_mask``; no tokenizer."""
        return ModelInputs("first_mask", MASK_KEYS)

    _takes = (
        "is a VOS model: it takes the first frame's mask, first_mask (B, H, W) (the object "
        "to track in frame 0), not text"
    )

    def forward(self, frames: torch.Tensor, first_mask: torch.Tensor) -> torch.Tensor:
        """Segment the object of ``first_mask (B, H, W)`` in every frame of ``frames (B, T, 3,
        H, W)``: ``(B, T, 1, H, W)`` logits.

        Raises:
            TypeError, ValueError: bad inputs (see :func:`check_mask_inputs`).
        """
        if not is_compiling():
            frames = check_mask_inputs(frames, first_mask, self)
        return self.referred_logits(self.forward_outputs(frames, first_mask))

    def forward_outputs(self, frames: torch.Tensor, first_mask: torch.Tensor) -> dict[str, Any]:
        """The architecture's outputs for ``frames (B, T, 3, H, W)`` and ``first_mask``."""
        raise NotImplementedError

    def forward_batch(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Outputs of a collated batch (``frames``, ``first_mask``).

        Raises:
            ValueError: the batch has no ``first_mask`` (the message says what the model
                takes).
        """
        self.check_batch(batch)
        return self.forward_outputs(batch["frames"], batch["first_mask"])

    @torch.no_grad()
    def predict(self, batch: Mapping[str, Any], clip_len: int | None = None) -> torch.Tensor:
        """Float32 logits ``(B, T, 1, H, W)`` of whole videos (default: one pass; stateful
        architectures override it to carry their state over chunks of ``clip_len``)."""
        self.check_batch(batch)
        return self(batch["frames"], batch["first_mask"]).float()
