"""Model folders: ``config.json`` (the architecture and its part specs), ``model.safetensors``
and the tokenizer's files, as written by
:meth:`~rvoslib.models.base.SegmentationModel.save_pretrained`.

Configs written by older versions are converted to the current layout when read
(:func:`read_config`; the converters live in :mod:`rvoslib.models.legacy`, imported only
then).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rvoslib.models.config import CONFIG_FORMAT_VERSION
from rvoslib.models.registry import ARCHITECTURES, normalize_spec

__all__ = [
    "CONFIG_FILE",
    "TOKENIZER_FILES",
    "WEIGHTS_FILE",
    "check_json",
    "load_weights",
    "read_config",
    "save_model",
]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILES = ("tokenizer_config.json", "rvos_hash_tokenizer.json")


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The config dict of a model folder, converted to the current format, with every part
    checked against the registries.

    Raises:
        ValueError: ``config.json`` is not a JSON object, was written by a newer rvoslib, or
            an old config cannot be converted (the message says why).
        KeyError: an architecture or part is not registered.
    """
    path = Path(directory) / CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{str(path)!r} is not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{str(path)!r} must hold a JSON object, got {type(config).__name__}")
    version = config.get("format_version", 0)
    if not isinstance(version, int) or version > CONFIG_FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} has format_version {version!r}; this rvoslib reads versions up to "
            f"{CONFIG_FORMAT_VERSION}: upgrade rvoslib"
        )
    if version < CONFIG_FORMAT_VERSION:
        from rvoslib.models.legacy import upgrade_config  # only for old folders

        config = upgrade_config(config)
    architecture = config["architecture"]
    try:
        config_class = ARCHITECTURES.get(architecture).config_class
    except KeyError as error:
        raise KeyError(f"{str(path)!r}: {error.args[0]}") from None
    for field_name in config_class.parts:
        registry = config_class.part_registry(field_name)
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


def load_weights(path: str | os.PathLike, device: Any = "cpu") -> dict:
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


def check_json(config: Any, path: str = "config") -> None:
    """Raise a clear ``TypeError`` for a value that JSON cannot hold (names its place)."""
    if isinstance(config, dict):
        for key, value in config.items():
            check_json(value, f"{path}[{key!r}]")
    elif isinstance(config, list):
        for index, value in enumerate(config):
            check_json(value, f"{path}[{index}]")
    elif not (config is None or isinstance(config, (str, int, float, bool))):
        raise TypeError(
            f"{path} is a {type(config).__name__}, which config.json cannot hold; build the "
            "part with JSON values (numbers, strings, lists, dicts)"
        )


def save_model(model: Any, directory: str | os.PathLike) -> Path:
    """Write ``model``'s ``config.json`` (with ``format_version``), ``model.safetensors`` and
    its text encoder's tokenizer files into ``directory`` (atomically); the folder."""
    from safetensors.torch import save_file

    from rvoslib._io import atomic_directory

    config = model.config.to_dict()
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_directory(directory) as temp_dir:
        text_encoder = getattr(model, "text_encoder", None)
        if text_encoder is not None and text_encoder.save_tokenizer(temp_dir):
            config["text_encoder"]["tokenizer"] = None
        config["format_version"] = CONFIG_FORMAT_VERSION
        check_json(config)
        (temp_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2))
        save_file(state, str(temp_dir / WEIGHTS_FILE))
    return Path(directory)
