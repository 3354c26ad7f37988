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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rvoslib.model_card import CARD_FILE, model_card
from rvoslib.models.config import CONFIG_FORMAT_VERSION
from rvoslib.models.registry import ARCHITECTURES, normalize_spec

__all__ = [
    "CONFIG_FILE",
    "TOKENIZER_FILES",
    "WEIGHTS_FILE",
    "card_of",
    "check_json",
    "load_into",
    "load_weights",
    "locate_tokenizer",
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


def locate_tokenizer(config: dict[str, Any], directory: str | os.PathLike) -> None:
    """Point ``config``'s text encoder at the tokenizer saved in model folder ``directory``.

    A ``text_encoder.tokenizer`` of ``None`` means that :func:`save_model` wrote the
    tokenizer's files beside ``config.json``: the folder is then the tokenizer's source even
    when its files are missing, so that the missing file is named when the tokenizer is
    loaded (never looked for on the network under the language model's hub name).
    """
    text = config.get("text_encoder")
    if not isinstance(text, dict):
        return
    saved = any((Path(directory) / name).exists() for name in TOKENIZER_FILES)
    if saved or text.get("tokenizer") is None:
        text["tokenizer"] = str(directory)


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


def load_into(model: Any, directory: str | os.PathLike, device: Any = "cpu") -> None:
    """Load ``directory/model.safetensors`` into ``model``, built from ``config.json``.

    Raises:
        FileNotFoundError, ValueError: see :func:`load_weights`.
        ValueError: the weights do not fit the architecture ``config.json`` describes
            (missing or unexpected keys, or other shapes; a few of each named, with the
            top-level modules of both sides), e.g. a ``config.json`` of another architecture.
    """
    path = Path(directory) / WEIGHTS_FILE
    state = load_weights(path, device)
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    shapes = [
        f"{key} {tuple(state[key].shape)} in the file, {tuple(value.shape)} in the model"
        for key, value in expected.items()
        if key in state and tuple(state[key].shape) != tuple(value.shape)
    ]
    if missing or unexpected or shapes:
        problems = [
            f"{len(items)} {what} (e.g. {', '.join(items[:3])})"
            for items, what in (
                (missing, "keys missing from the file"),
                (unexpected, "unexpected keys"),
                (shapes, "shapes differ"),
            )
            if items
        ]
        architecture = getattr(model, "architecture", type(model).__name__)
        raise ValueError(
            f"{str(path)!r} does not fit the model {str(Path(directory) / CONFIG_FILE)!r} "
            f"describes (architecture {architecture!r}): {'; '.join(problems)}. The file's "
            f"modules: {', '.join(_modules(state))}; the model's: "
            f"{', '.join(_modules(expected))}. config.json and the weights come from different "
            "models: save both with save_pretrained"
        )
    model.load_state_dict(state)


def _modules(state: Any) -> list[str]:
    """The top-level module names of a state dict's keys, in order."""
    return list(dict.fromkeys(key.split(".", 1)[0] for key in state))


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


def save_model(
    model: Any,
    directory: str | os.PathLike,
    *,
    tokenizer: Any = True,
    extra_files: Mapping[str, str] | None = None,
) -> Path:
    """Write ``model``'s ``config.json`` (with ``format_version``), ``model.safetensors`` and
    its text encoder's tokenizer files into ``directory`` (atomically); the folder.

    Args:
        model: The model.
        directory: The folder (replaced only once the new one is complete).
        tokenizer: ``True``: the text encoder's own tokenizer, if it can be loaded; ``False``:
            none (the folder's config then looks for tokenizer files beside it, so that
            files copied in later are found and a missing one is named, never downloaded);
            or a tokenizer object with ``save_pretrained(folder)``, written instead.
        extra_files: More text files to write into the folder, ``{file name: text}`` (plain
            names, not ``config.json`` or ``model.safetensors``). A ``README.md`` given here
            replaces the model card written by default (:func:`rvoslib.model_card.model_card`:
            the architecture, its paper, how to load it).

    Raises:
        ValueError: an ``extra_files`` name is a path or one of the folder's own files.
        TypeError: the config holds a value JSON cannot hold (named).
    """
    from safetensors.torch import save_file

    from rvoslib._io import atomic_directory

    extra_files = dict(extra_files or {})
    for name in extra_files:
        if name == CARD_FILE:
            continue
        if Path(name).name != name or name in (CONFIG_FILE, WEIGHTS_FILE, *TOKENIZER_FILES):
            raise ValueError(
                f"extra_files names must be plain file names other than {CONFIG_FILE} and "
                f"{WEIGHTS_FILE}, got {name!r}"
            )
    config = model.config.to_dict()
    if CARD_FILE not in extra_files:
        extra_files[CARD_FILE] = card_of(model)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_directory(directory) as temp_dir:
        text_encoder = getattr(model, "text_encoder", None)
        if text_encoder is not None and _save_tokenizer(text_encoder, tokenizer, temp_dir):
            config["text_encoder"]["tokenizer"] = None
        config["format_version"] = CONFIG_FORMAT_VERSION
        check_json(config)
        (temp_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2))
        save_file(state, str(temp_dir / WEIGHTS_FILE))
        for name, text in extra_files.items():
            (temp_dir / name).write_text(text, encoding="utf-8")
    return Path(directory)


def card_of(model: Any, **details: Any) -> str:
    """``model``'s model card (:func:`rvoslib.model_card.model_card`) with ``details``
    (``metrics``, ``dataset``, ``recipe``, ``source``); the task is read from the model's
    class, so no tokenizer is loaded."""
    task = "vos" if getattr(type(model), "input_kind", "text") == "first_mask" else "rvos"
    return model_card(model.config.to_dict(), task=task, **details)


def _save_tokenizer(text_encoder: Any, tokenizer: Any, folder: Path) -> bool:
    """Write the tokenizer ``save_model`` was asked for; whether the folder is its source."""
    if tokenizer is True:
        return bool(text_encoder.save_tokenizer(folder))
    if tokenizer is False or tokenizer is None:
        return True  # files may be copied in later; a missing one is named, not downloaded
    tokenizer.save_pretrained(os.fspath(folder))
    return True
