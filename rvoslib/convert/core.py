"""Convert an original checkpoint file into an ordinary rvoslib model folder.

:func:`convert_checkpoint` reads the file safely (:func:`load_original_checkpoint`), runs the
source's converter (:data:`CONVERTERS`), loads the result into the model its config describes
with ``strict=True`` and writes the folder (``config.json``, ``model.safetensors``, the
tokenizer's files, ``conversion.json``) atomically: ``RVOSModel.from_pretrained(out)`` then
loads it like any other. :func:`load_checkpoint` loads either a folder or, converting it on the
fly, an original file (what ``rvos predict/eval/export --checkpoint FILE.pth`` do).

Example:
    >>> convert_checkpoint("mttr_a2d.pth", "mttr", "converted/mttr-a2d")  # doctest: +SKIP
    PosixPath('converted/mttr-a2d')
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from rvoslib.convert.base import CONVERTERS, Conversion
from rvoslib.convert.safe_load import load_original_checkpoint

__all__ = [
    "CONVERSION_FILE",
    "convert_checkpoint",
    "convert_state_dict",
    "detect_source",
    "load_checkpoint",
    "load_tokenizer",
]

#: Converter name -> (the original repository, its licence as a Hub licence id; ``None``: the
#: repository states none), written into converted folders' model cards.
ORIGINAL_SOURCES: dict[str, tuple[str, str | None]] = {
    "mttr": ("https://github.com/mttr2021/MTTR", "apache-2.0"),
    "referformer": ("https://github.com/wjn922/ReferFormer", "apache-2.0"),
    "soc": ("https://github.com/RobertLuo1/NeurIPS2023_SOC", None),
    "losh": ("https://github.com/LinfengYuan1997/LoSh", None),
}

#: What a converted folder records about its origin.
CONVERSION_FILE = "conversion.json"
#: Suffixes of checkpoint files (a missing path with one is named as a missing file).
_FILE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".tar")
_TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "vocab.txt", "vocab.json")


def detect_source(state: Mapping[str, torch.Tensor]) -> str:
    """The one converter that accepts ``state`` (each registered converter is tried).

    Raises:
        ValueError: no converter accepts it (each one's reason given), or several do (named).
    """
    accepted, reasons = [], []
    for name in CONVERTERS.list():
        try:
            CONVERTERS.get(name)(state)
        except Exception as error:  # a converter's refusal: its reason is reported
            reasons.append(f"{name}: {str(error).splitlines()[0][:200]}")
        else:
            accepted.append(name)
    if len(accepted) == 1:
        return accepted[0]
    if accepted:
        raise ValueError(
            f"the checkpoint fits several converters ({', '.join(accepted)}); pass --from NAME"
        )
    listed = "; ".join(reasons) or "none is registered"
    raise ValueError(f"no converter accepts the checkpoint ({listed}); pass --from NAME")


def convert_state_dict(
    state: Mapping[str, torch.Tensor], source: str
) -> tuple[torch.nn.Module, Conversion]:
    """Convert an original state dict and load it into the model it describes.

    Args:
        state: The original code's tensors under its names (:func:`load_original_checkpoint`).
        source: A name of :data:`CONVERTERS` (``"mttr"``, ``"referformer"``, ``"soc"``,
            ``"losh"``).

    Returns:
        The model (eval mode) and the converter's :class:`Conversion`.

    Raises:
        KeyError: unknown ``source`` (the registered names listed).
        UnexpectedKeysError: original keys the converter neither renames nor drops (named).
        ValueError: the converted state dict does not fit the model (missing or unexpected
            keys, other shapes: named), a converter bug.
    """
    from rvoslib.models import SegmentationModel

    conversion = CONVERTERS.get(source)(state)
    model = SegmentationModel.from_config(conversion.config, pretrained=False)
    _check_fit(model.state_dict(), conversion.state_dict, source)
    model.load_state_dict(conversion.state_dict, strict=True)
    return model.eval(), conversion


def _check_fit(
    expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor], source: str
) -> None:
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [
        f"{k} {tuple(given[k].shape)} converted, {tuple(v.shape)} in the model"
        for k, v in expected.items()
        if k in given and tuple(given[k].shape) != tuple(v.shape)
    ]
    problems = [
        f"{len(items)} {what}: {', '.join(items[:5])}"
        for items, what in (
            (missing, "model keys missing from the conversion"),
            (unexpected, "converted keys the model does not have"),
            (shapes, "shapes differ"),
        )
        if items
    ]
    if problems:
        raise ValueError(
            f"the {source!r} converter's state dict does not fit the model its config "
            f"describes ({'; '.join(problems)}); this is a bug of the converter"
        )


def load_tokenizer(path: str | os.PathLike, vocab_size: int | None = None) -> Any:
    """A tokenizer from a local folder (Hugging Face or rvoslib's hash tokenizer), offline.

    Args:
        path: A folder with ``tokenizer_config.json``, ``tokenizer.json``, ``vocab.json`` or
            ``vocab.txt`` (or ``rvos_hash_tokenizer.json``).
        vocab_size: The language model's vocabulary size; the tokenizer must not exceed it.

    Raises:
        FileNotFoundError: ``path`` is not a folder, or holds no tokenizer file (named).
        ValueError: the tokenizer has more tokens than the language model (both numbers).
    """
    from rvoslib.models.hash_tokenizer import HASH_TOKENIZER_FILE, HashTokenizer

    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"--tokenizer {str(folder)!r}: not a folder")
    if (folder / HASH_TOKENIZER_FILE).is_file():
        tokenizer = HashTokenizer.from_pretrained(folder)
        size = tokenizer.vocab_size
    elif any((folder / name).is_file() for name in _TOKENIZER_FILES):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        size = len(tokenizer)
    else:
        raise FileNotFoundError(
            f"--tokenizer {str(folder)!r} holds no tokenizer file (expected one of "
            f"{', '.join((*_TOKENIZER_FILES, HASH_TOKENIZER_FILE))})"
        )
    if vocab_size is not None and size > vocab_size:
        raise ValueError(
            f"--tokenizer {str(folder)!r} has {size} tokens, more than the {vocab_size} of the "
            "checkpoint's language model: it is another model's tokenizer"
        )
    return tokenizer


def _cached_tokenizer(name: str) -> Any:
    """The tokenizer of hub model ``name`` from the local Hugging Face cache, or None."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name, local_files_only=True)
    except Exception:  # not cached (or not a hub name): never downloaded here
        return None


def _pick_tokenizer(model: Any, tokenizer: str | os.PathLike | None) -> tuple[Any, str | None]:
    """The tokenizer to save with ``model`` and where it came from (None: none found)."""
    encoder = getattr(model, "text_encoder", None)
    if encoder is None:
        return False, None
    if tokenizer is not None:
        vocab = getattr(encoder.language_model.config, "vocab_size", None)
        return load_tokenizer(tokenizer, vocab), str(tokenizer)
    if model.config.to_dict()["text_encoder"].get("tokenizer") == "hash":
        return True, "hash (built in)"
    name = encoder.model_name_or_path
    cached = _cached_tokenizer(name)
    if cached is not None and len(cached) <= encoder.language_model.config.vocab_size:
        return cached, f"{name} (local Hugging Face cache)"
    return False, None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_out(out: Path, checkpoint: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file, expected a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(
            f"--out {str(out)!r} exists and is not empty; pass --overwrite to replace it (it is "
            "kept until the converted folder is complete)"
        )
    if out.resolve() in checkpoint.resolve().parents:
        raise ValueError(
            f"--out {str(out)!r} holds the checkpoint {str(checkpoint)!r}: replacing it would "
            "delete the checkpoint; choose another folder"
        )


def convert_checkpoint(
    path: str | os.PathLike,
    source: str | None,
    out: str | os.PathLike,
    *,
    tokenizer: str | os.PathLike | None = None,
    overwrite: bool = False,
    allow_globals: Iterable[Any] = (),
    log: Callable[[str], None] | None = None,
) -> Path:
    """Convert an original checkpoint file into the rvoslib model folder ``out``.

    Args:
        path: The original ``.pth`` file.
        source: The converter (``"mttr"``, ``"referformer"``, ``"soc"``, ``"losh"``); None
            tries every registered converter and takes the one that accepts the file.
        out: The folder to write (built under a temporary name beside it, then renamed).
        tokenizer: A local tokenizer folder to save with the model. None: the text model's
            tokenizer from the local Hugging Face cache if there, else none (a warning says
            how to add it; the model runs on token ids either way).
        overwrite: Replace an existing non-empty ``out`` (kept until the new one is complete).
        allow_globals: Objects the file may hold beyond the allowed ones (trusted files only;
            see :func:`load_original_checkpoint`).
        log: Called with one line per step (what was detected, where it was written).

    Returns:
        ``out``, loadable with ``RVOSModel.from_pretrained(out)``.

    Raises:
        FileNotFoundError: the checkpoint or the tokenizer folder is missing (named).
        ValueError: ``out`` exists (without ``overwrite``), is a file or holds the checkpoint;
            the file is unsafe, corrupt or of another system (named); see also
            :func:`convert_state_dict`.
    """
    from rvoslib.model_card import CARD_FILE
    from rvoslib.models.saving import card_of, save_model
    from rvoslib.version import __version__

    path, out, say = Path(path), Path(out), log or (lambda line: None)
    _check_out(out, path, overwrite)
    state = load_original_checkpoint(path, allow_globals=allow_globals)
    if source is None:
        source = detect_source(state)
        say(f"detected checkpoint of {source!r}")
    model, conversion = convert_state_dict(state, source)
    variant = ", ".join(f"{k}={v}" for k, v in conversion.variant.items()) or "default"
    say(f"{source}: {variant}; {len(conversion.dropped)} original key(s) dropped")
    chosen, origin = _pick_tokenizer(model, tokenizer)
    if origin is None and getattr(model, "text_encoder", None) is not None:
        name = model.text_encoder.model_name_or_path
        warnings.warn(
            f"{str(out)!r} is written without tokenizer files (the model runs on token ids); "
            f"to add them, convert with --tokenizer PATH (tokenizer=PATH), a local folder of "
            f"the {name!r} tokenizer, or copy the {name!r} tokenizer files (tokenizer.json, "
            "vocab.json, merges.txt, tokenizer_config.json) from a local Hugging Face cache "
            "into the folder",
            UserWarning,
            stacklevel=2,
        )
    record = {
        "source_file": path.name,
        "sha256": _sha256(path),
        "converter": source,
        "variant": conversion.variant,
        "dropped": list(conversion.dropped),
        "notes": list(conversion.notes),
        "tokenizer": origin,
        "rvoslib_version": __version__,
    }
    text = json.dumps(record, indent=2, default=str)
    repository, licence = ORIGINAL_SOURCES.get(source, ("", None))
    card = card_of(
        model,
        source={
            "name": source,
            "repository": repository,
            "license": licence,
            "file": path.name,
            "sha256": record["sha256"],
        },
    )
    save_model(model, out, tokenizer=chosen, extra_files={CONVERSION_FILE: text, CARD_FILE: card})
    say(f"wrote {out}")
    return out


def load_checkpoint(
    checkpoint: str | os.PathLike,
    source: str | None = None,
    *,
    tokenizer: str | os.PathLike | None = None,
    allow_globals: Iterable[Any] = (),
    cls: Any = None,
    log: Callable[[str], None] | None = None,
) -> Any:
    """A model from a model folder, or from an original checkpoint file converted on the fly.

    Args:
        checkpoint: A folder written by ``save_pretrained`` (or ``rvos convert``), or an
            original ``.pth`` file.
        source: The converter of a file (None: detected, and the detection logged).
        tokenizer: A local tokenizer folder for a converted file (see
            :func:`convert_checkpoint`).
        allow_globals: See :func:`load_original_checkpoint`.
        cls: The model class whose ``from_pretrained`` loads (default ``SegmentationModel``).
        log: Called with what is done (default: printed on stderr).

    Raises:
        FileNotFoundError: ``checkpoint`` does not exist (named).
        ValueError: a converted text model has no tokenizer (says how to give one); see
            :func:`convert_checkpoint`.
    """
    from rvoslib.models import SegmentationModel

    cls = cls or SegmentationModel
    path = Path(checkpoint)
    if not path.exists() and path.suffix in _FILE_SUFFIXES:
        raise FileNotFoundError(f"--checkpoint {str(path)!r}: no such file")
    if path.is_dir() or not path.exists():
        if source is not None and path.is_dir():
            raise ValueError(
                f"--from {source} converts an original checkpoint file; --checkpoint "
                f"{str(path)!r} is a folder (an rvoslib model folder needs no --from)"
            )
        return cls.from_pretrained(path)
    say = log or (lambda line: print(line, file=sys.stderr))
    say(f"converting original checkpoint {str(path)!r} on the fly (rvos convert saves it)")
    folder = Path(tempfile.mkdtemp(prefix="rvos-convert-"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the tokenizer is checked below
            convert_checkpoint(
                path,
                source,
                folder / "model",
                tokenizer=tokenizer,
                allow_globals=allow_globals,
                log=say,
            )
        model = cls.from_pretrained(folder / "model")
        encoder = getattr(model, "text_encoder", None)
        if encoder is not None:
            try:
                encoder.tokenizer  # noqa: B018 - loaded now, before the folder is removed
            except (OSError, ValueError):
                raise ValueError(
                    f"--checkpoint {str(path)!r}: no tokenizer for the converted model (none "
                    f"in the local Hugging Face cache for {encoder.model_name_or_path!r}); "
                    "pass --tokenizer PATH, a local tokenizer folder"
                ) from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return model
