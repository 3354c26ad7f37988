"""``RVOSModel``: the common base of every architecture.

An architecture is an ``RVOSModel`` subclass registered in
:data:`~rvoslib.models.registry.ARCHITECTURES`, built from keyword-only injected parts, with a
config dataclass (:class:`~rvoslib.models.config.ArchitectureConfig`) and a ``from_config``
that builds the parts from their specs. The base gives every architecture the same contract:

* ``forward(frames (B, T, 3, H, W), text_ids (B, L), text_mask (B, L)) -> (B, T, 1, H, W)``
  mask logits of the referred object, so metrics, inference, export and the CLI work for all;
* ``forward_outputs(frames, text) -> dict`` the architecture's own, richer outputs, and
  ``referred_logits(outputs)`` picking the referred object's logits from them;
* ``forward_batch(batch) -> outputs`` and ``losses(outputs, batch) -> dict[str, Tensor]``, the
  weighted, named training loss terms (the Trainer sums and logs them);
* ``predict(batch, clip_len)`` for evaluation, ``save_pretrained`` / ``from_pretrained``.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from rvoslib._checks import check_tensor, format_shape, is_compiling
from rvoslib._io import atomic_directory
from rvoslib.models.config import CONFIG_FORMAT_VERSION, ArchitectureConfig
from rvoslib.models.registry import ARCHITECTURES, normalize_spec
from rvoslib.models.text import TextFeatures

__all__ = ["CONFIG_FILE", "WEIGHTS_FILE", "RVOSModel", "load_weights", "read_config"]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILES = ("tokenizer_config.json", "rvos_hash_tokenizer.json")


class RVOSModel(nn.Module):
    """Base of every architecture; also the entry point ``RVOSModel.from_pretrained(folder)``.

    Each subclass sets ``config_class`` (its :class:`ArchitectureConfig` subclass) and ``task``:
    ``"rvos"`` (referring: a sentence per clip) or ``"vos"`` (the first frame's mask).

    Example:
        >>> from rvoslib import create_model
        >>> model = create_model("tiny").eval()
        >>> tokens = model.tokenize(["the red circle"])
        >>> frames = torch.randn(1, 2, 3, 64, 64)
        >>> model(frames, tokens["input_ids"], tokens["attention_mask"]).shape
        torch.Size([1, 2, 1, 64, 64])
    """

    config_class: ClassVar[type[ArchitectureConfig]] = ArchitectureConfig
    task: ClassVar[str] = "rvos"
    text_encoder: nn.Module

    def __new__(cls, *args: Any, **kwargs: Any) -> RVOSModel:
        if cls is RVOSModel:  # rvoslib 0.1 built the seed design as RVOSModel(backbone=...)
            import warnings

            from rvoslib.models.architectures.fusion import FusionModel

            warnings.warn(
                "RVOSModel(backbone=..., ...) is deprecated since rvoslib 0.2: build the seed "
                "design with FusionModel(backbone=..., ...) (same keywords)",
                DeprecationWarning,
                stacklevel=2,
            )
            return super().__new__(FusionModel)
        return super().__new__(cls)

    # ------------------------------------------------------------------ building and config
    @classmethod
    def from_config(
        cls, config: ArchitectureConfig | Mapping[str, Any], *, pretrained: bool = False
    ) -> RVOSModel:
        """Build the architecture a config describes (``RVOSModel.from_config`` dispatches on
        the config's ``architecture``).

        Args:
            config: An :class:`ArchitectureConfig` or its dict.
            pretrained: Load pretrained weights of parts that have them (may download).
        """
        if isinstance(config, Mapping):
            data = dict(config)
            architecture = data.get("architecture", cls.config_class.architecture)
            config = ARCHITECTURES.get(architecture).config_class.from_dict(data)
        target = ARCHITECTURES.get(config.architecture)
        if target is cls or cls is RVOSModel:
            return target.build(config, pretrained=pretrained)
        raise ValueError(
            f"{cls.__name__}.from_config got a config of architecture {config.architecture!r}"
        )

    @classmethod
    def build(cls, config: ArchitectureConfig, *, pretrained: bool = False) -> RVOSModel:
        """Build the parts from their specs and wire them (implemented by each architecture)."""
        raise NotImplementedError(f"{cls.__name__} does not implement build(config)")

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
                registry = self.config_class.parts[name]
                values[name] = registry.spec_of(getattr(self, name))
            else:
                values[name] = copy.deepcopy(recorded[name])
        return self.config_class(**values)

    # ------------------------------------------------------------------ the forward contract
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
        self,
        frames: torch.Tensor,
        text_ids: torch.Tensor,
        text_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Segment the referred object in every frame.

        Args:
            frames: ``(B, T, 3, H, W)`` normalised float frames.
            text_ids: ``(B, L)`` token ids.
            text_mask: ``(B, L)`` attention mask (1/True for real tokens).

        Returns:
            ``(B, T, 1, H, W)`` mask logits.

        Raises:
            ValueError: a bad shape, an empty batch, clip or expression, or token ids outside
                the text encoder's vocabulary (each named with the expected and actual value).
            TypeError: integer frames or floating token ids.
        """
        if not is_compiling():
            check_tensor(text_ids, "text_ids", ("B", "L"), floating=False)
            check_tensor(frames, "frames", ("B", "T", 3, "H", "W"), floating=True)
            if text_ids.shape[0] != frames.shape[0]:
                raise ValueError(
                    f"frames and text_ids must have the same batch size B, got frames "
                    f"{format_shape(frames.shape)} and text_ids {format_shape(text_ids.shape)}"
                )
            if 0 in frames.shape or text_ids.shape[1] == 0:
                raise ValueError(
                    f"empty input: frames {format_shape(frames.shape)}, text_ids "
                    f"{format_shape(text_ids.shape)} (every dimension must be >= 1)"
                )
            vocab = getattr(getattr(self.text_encoder, "language_model", None), "config", None)
            size = getattr(vocab, "vocab_size", None)
            if size is not None and (int(text_ids.min()) < 0 or int(text_ids.max()) >= size):
                raise ValueError(
                    f"text_ids must be in [0, {size}) (the text encoder's vocabulary), got ids "
                    f"from {int(text_ids.min())} to {int(text_ids.max())}: tokenize with "
                    "model.tokenize"
                )
            frames = _matching_dtype(frames, self)
        return self.forward_with_text(frames, self.encode_text(text_ids, text_mask))

    def forward_with_text(self, frames: torch.Tensor, text: TextFeatures) -> torch.Tensor:
        """Like :meth:`forward` with precomputed :class:`TextFeatures` (batch ``B``)."""
        if not is_compiling():
            check_tensor(frames, "frames", ("B", "T", 3, "H", "W"), floating=True)
            if text.sentence.shape[0] != frames.shape[0]:
                raise ValueError(
                    f"text features must have batch size {frames.shape[0]} (frames "
                    f"{format_shape(frames.shape)}), got {text.sentence.shape[0]}"
                )
        return self.referred_logits(self.forward_outputs(frames, text))

    def forward_outputs(self, frames: torch.Tensor, text: TextFeatures) -> dict[str, torch.Tensor]:
        """The architecture's outputs for ``frames (B, T, 3, H, W)`` and encoded text."""
        raise NotImplementedError

    def referred_logits(self, outputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The referred object's ``(B, T, 1, H, W)`` logits among ``outputs`` (default: the
        ``"logits"`` entry)."""
        return outputs["logits"]

    def forward_batch(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Training outputs of a collated batch (``frames``, ``text_ids``, ``text_mask``...)."""
        text = self.encode_text(batch["text_ids"], batch.get("text_mask"))
        return self.forward_outputs(batch["frames"], text)

    def losses(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Weighted training loss terms (their sum is the loss) of :meth:`forward_batch`'s
        outputs against the batch's ``masks (B, T, H, W)``, ``valid (B, T)``..."""
        raise NotImplementedError

    @torch.no_grad()
    def predict(
        self, batch: Mapping[str, torch.Tensor], clip_len: int | None = None
    ) -> torch.Tensor:
        """Float32 logits ``(B, T, 1, H, W)`` of whole videos, ``clip_len`` frames per forward
        pass (``None``: all at once), the text encoded once."""
        frames = batch["frames"]
        chunk = clip_len or frames.shape[1]
        text = self.encode_text(batch["text_ids"], batch.get("text_mask"))
        pieces = [
            self.forward_with_text(frames[:, start : start + chunk], text)
            for start in range(0, frames.shape[1], chunk)
        ]
        return torch.cat(pieces, dim=1).float()

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
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json``, ``model.safetensors`` and tokenizer files (atomically).

        The config holds the specs of the model's current parts; the language model's
        architecture is recorded so that :meth:`from_pretrained` never needs a download.

        Returns:
            The folder.
        """
        from safetensors.torch import save_file

        config = self.config.to_dict()
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        with atomic_directory(directory) as temp_dir:
            text_encoder = getattr(self, "text_encoder", None)
            if text_encoder is not None and text_encoder.save_tokenizer(temp_dir):
                config["text_encoder"]["tokenizer"] = None
            config["format_version"] = CONFIG_FORMAT_VERSION
            _check_json(config)
            (temp_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2))
            save_file(state, str(temp_dir / WEIGHTS_FILE))
        return Path(directory)

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike, map_location: str | torch.device = "cpu"
    ) -> RVOSModel:
        """Restore a model written by :meth:`save_pretrained`, of any registered architecture
        (offline). Folders written by rvoslib 0.1 are converted.

        Raises:
            FileNotFoundError: ``config.json`` or ``model.safetensors`` is missing (named).
            KeyError: a part of the config is not registered (names the part, its kind, the
                registered names, and says to import the module that registers it).
        """
        directory = Path(directory)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (directory / name).is_file():
                raise FileNotFoundError(
                    f"{str(directory / name)!r} not found: a model folder needs {CONFIG_FILE} "
                    f"and {WEIGHTS_FILE} (written by RVOSModel.save_pretrained)"
                )
        config = read_config(directory)
        if "text_encoder" in config and any((directory / n).exists() for n in TOKENIZER_FILES):
            config["text_encoder"]["tokenizer"] = str(directory)
        model = cls.from_config(config, pretrained=False)
        model.load_state_dict(load_weights(directory / WEIGHTS_FILE, map_location))
        return model


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The config dict of a model folder, converted to the current format, with every part
    checked against the registries.

    Raises:
        KeyError: an architecture or part is not registered.
    """
    from rvoslib.models.legacy import convert_legacy_config

    path = Path(directory) / CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{str(path)!r} is not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{str(path)!r} must hold a JSON object, got {type(config).__name__}")
    if "architecture" not in config:
        config = convert_legacy_config(config)
    architecture = config["architecture"]
    try:
        config_class = ARCHITECTURES.get(architecture).config_class
    except KeyError as error:
        raise KeyError(f"{str(path)!r}: {error.args[0]}") from None
    for field_name, registry in config_class.parts.items():
        spec = config.get(field_name)
        if spec is None:
            continue
        name = normalize_spec(spec, registry.kind)["name"]
        if name not in registry:
            raise KeyError(
                f"{str(path)!r}: part {field_name!r} is {registry.kind} {name!r}, which is not "
                f"registered (registered {registry.kind}s: {', '.join(registry.names())}); "
                f"import the module that registers {name!r} before loading (rvos: --import "
                "MODULE)"
            )
    return config


def _matching_dtype(frames: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """Frames in the parameters' floating dtype (float64 or float16 frames of a float32 model
    would fail deep inside a convolution); under autocast they are left as they are."""
    if torch.is_autocast_enabled(frames.device.type):
        return frames
    parameter = next((p for p in model.parameters() if p.is_floating_point()), None)
    if parameter is not None and frames.dtype != parameter.dtype:
        return frames.to(parameter.dtype)
    return frames


def load_weights(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict:
    """The tensors of a ``model.safetensors`` file.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it is truncated or not a safetensors file (names the file).
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} not found")
    try:
        return load_file(str(path), device=str(device))
    except Exception as error:  # safetensors raises its own error types
        raise ValueError(
            f"{str(path)!r} is not a readable safetensors file (truncated or corrupt?): {error}"
        ) from error


def _check_json(config: dict[str, Any], path: str = "config") -> None:
    """Raise a clear error for a value that JSON cannot hold (names its place)."""
    if isinstance(config, dict):
        for key, value in config.items():
            _check_json(value, f"{path}[{key!r}]")
    elif isinstance(config, list):
        for index, value in enumerate(config):
            _check_json(value, f"{path}[{index}]")
    elif not (config is None or isinstance(config, (str, int, float, bool))):
        raise TypeError(
            f"{path} is a {type(config).__name__}, which config.json cannot hold; build the "
            "part with JSON values (numbers, strings, lists, dicts)"
        )
