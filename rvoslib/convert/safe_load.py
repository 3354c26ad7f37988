"""Safe reading of the original systems' checkpoint files (``.pth``): tensors only, no code.

The checkpoints published with MTTR, ReferFormer, SOC and LoSh are pickles written by
``torch.save``. They are read with ``torch.load(weights_only=True)``, which rebuilds tensors and
plain containers but never imports or calls arbitrary code; the few other objects these files
hold are allowed by name (:func:`default_safe_globals`): ReferFormer's ``argparse.Namespace`` of
training options, and NumPy scalars that training loops store next to the weights. A file that
needs anything else is refused, naming the global, unless the caller trusts it
(``allow_globals=["module.Name"]``, ``rvos convert --trust-global module.Name``).

The model's state dict is then taken out of its wrapper: ``{"model_state_dict": ...}`` (MTTR,
SOC, LoSh), ``{"model": ...}`` (ReferFormer), ``{"state_dict": ...}`` or a bare state dict;
optimizer, scheduler, epoch and argument entries are ignored, and the ``module.`` prefix of a
model saved from ``DistributedDataParallel`` is stripped.

Example:
    >>> import tempfile, torch, os
    >>> path = os.path.join(tempfile.mkdtemp(), "checkpoint.pth")
    >>> torch.save({"model_state_dict": {"module.w": torch.ones(2)}, "epoch": 3}, path)
    >>> load_original_checkpoint(path)
    {'w': tensor([1., 1.])}
"""

from __future__ import annotations

import importlib
import os
import pickle
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "UnsafeCheckpointError",
    "default_safe_globals",
    "load_original_checkpoint",
    "resolve_global",
    "unwrap_state_dict",
]

#: Wrapper keys that hold the model's state dict, in the order they are looked for.
STATE_KEYS = ("model_state_dict", "model", "state_dict")
_DDP_PREFIX = "module."


class UnsafeCheckpointError(pickle.UnpicklingError, ValueError):
    """The file needs a Python object that is not allowed (``names``); nothing was run."""

    def __init__(self, path: str, names: list[str]) -> None:
        self.path, self.names = path, names
        listed = ", ".join(names)
        first = names[0] if names else "module.Name"
        super().__init__(
            f"refusing to load {path!r}: it needs the Python object(s) {listed}, which a "
            "checkpoint of weights does not need and which could run code while loading. If "
            f"you trust the file, allow them: load_original_checkpoint(path, allow_globals="
            f"[{first!r}]) or rvos convert ... --trust-global {first}"
        )


def _numpy_globals() -> list[tuple[Any, str]]:
    """NumPy's scalar and array reconstruction under the names numpy 1.x and 2.x write."""
    try:
        import numpy as np
    except ModuleNotFoundError:  # pragma: no cover - numpy is a dependency of torch here
        return []
    try:
        from numpy._core import multiarray
    except ModuleNotFoundError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]
    entries: list[tuple[Any, str]] = [(np.dtype, "numpy.dtype"), (np.ndarray, "numpy.ndarray")]
    for package in ("numpy.core", "numpy._core"):
        entries.append((multiarray.scalar, f"{package}.multiarray.scalar"))
        entries.append((multiarray._reconstruct, f"{package}.multiarray._reconstruct"))
    for kind in (np.float64, np.float32, np.float16, np.int64, np.int32, np.bool_):
        dtype_class = type(np.dtype(kind))
        entries.append((dtype_class, f"numpy.dtypes.{dtype_class.__name__}"))
    return entries


def default_safe_globals() -> list[tuple[Any, str]]:
    """The objects beyond tensors and containers that published checkpoints hold, with the
    names their pickles use: ``argparse.Namespace`` and NumPy scalars, dtypes and arrays.
    (``collections.Counter``/``OrderedDict`` of scheduler and state dicts are allowed by
    torch itself.)"""
    import argparse

    return [(argparse.Namespace, "argparse.Namespace"), *_numpy_globals()]


def resolve_global(name: str) -> Any:
    """The object ``"module.Name"`` (or ``"module.Class.attribute"``) names, imported.

    Raises:
        ValueError: ``name`` has no dot, or the module or attribute does not exist (named).
    """
    if not isinstance(name, str) or "." not in name:
        raise ValueError(f"allow_globals entries must be 'module.Name' strings, got {name!r}")
    parts = name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            obj: Any = importlib.import_module(module_name)
        except ImportError:
            continue
        try:
            for attribute in parts[split:]:
                obj = getattr(obj, attribute)
        except AttributeError:
            break
        return obj
    raise ValueError(f"cannot allow global {name!r}: no importable module defines it")


def _allowlist(allow_globals: Iterable[Any]) -> list[Any]:
    entries: list[Any] = list(default_safe_globals())
    for item in allow_globals:
        entries.append((resolve_global(item), item) if isinstance(item, str) else item)
    return entries


def _unsafe_names(path: Path, error: Exception) -> list[str]:
    """The globals a refused file needs: all of them for a zip checkpoint, else the first."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # legacy (non-zip) format: only the one the unpickler met
        names = []
    if not names:
        names = re.findall(r"Unsupported global: GLOBAL (\S+)", str(error))
    return sorted(dict.fromkeys(names))


def load_original_checkpoint(
    path: str | os.PathLike, *, allow_globals: Iterable[Any] = ()
) -> dict[str, torch.Tensor]:
    """The model state dict of an original checkpoint file, read without running its code.

    Args:
        path: A ``.pth`` file written by ``torch.save`` (MTTR, ReferFormer, SOC, LoSh).
        allow_globals: More objects the file may hold, as ``"module.Name"`` strings or the
            objects themselves; only for files you trust.

    Returns:
        ``{name: tensor}`` on the CPU, wrapper and ``module.`` prefix removed.

    Raises:
        FileNotFoundError: ``path`` does not exist or is a folder (named).
        UnsafeCheckpointError: the file needs a Python object that is not allowed (named,
            with how to allow it); nothing of it was run.
        ValueError: the file is truncated, corrupt or not a torch checkpoint (named), or holds
            no state dict (its top-level keys listed).
    """
    path = Path(path)
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "not found"
        raise FileNotFoundError(f"checkpoint file {str(path)!r}: {what}")
    with torch.serialization.safe_globals(_allowlist(allow_globals)):
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            names = _unsafe_names(path, error)
            if names:
                raise UnsafeCheckpointError(str(path), names) from None
            raise _corrupt(path, error) from None
        except Exception as error:  # torch raises RuntimeError, KeyError, EOFError ...
            raise _corrupt(path, error) from None
    return unwrap_state_dict(loaded, str(path))


def _corrupt(path: Path, error: Exception) -> ValueError:
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return ValueError(
        f"cannot read checkpoint {str(path)!r}: not a readable torch.save file (truncated or "
        f"corrupt?): {type(error).__name__}: {reason}"
    )


def unwrap_state_dict(loaded: Any, name: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The state dict inside a loaded checkpoint (see the module docstring).

    Args:
        loaded: What ``torch.load`` returned.
        name: The file, for messages.

    Raises:
        ValueError: no state dict found (the top-level keys are listed), or an entry that is
            not a tensor (named).
    """
    if not isinstance(loaded, Mapping):
        raise ValueError(
            f"{name!r} holds a {type(loaded).__name__}, expected a dict with a state dict"
        )
    state: Any = loaded
    for key in STATE_KEYS:
        if isinstance(loaded.get(key), Mapping):
            state = loaded[key]
            break
    else:
        if not loaded or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
            keys = ", ".join(repr(k) for k in list(loaded)[:10])
            raise ValueError(
                f"{name!r} holds no model state dict: expected a key among "
                f"{', '.join(STATE_KEYS)} or a dict of tensors, got keys {keys or 'none'}"
            )
    others = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if others:
        raise ValueError(
            f"{name!r}: state dict entry {others[0]!r} is a {type(state[others[0]]).__name__}, "
            "expected a tensor"
        )
    keys = list(state)
    if keys and all(isinstance(k, str) and k.startswith(_DDP_PREFIX) for k in keys):
        return {k[len(_DDP_PREFIX) :]: v for k, v in state.items()}
    return {str(k): v for k, v in state.items()}
