"""The contract of checkpoint converters: a registry of per-system functions and their result.

A converter takes the original code's state dict (tensors under the original names) and returns
a :class:`Conversion`: the rvoslib config that reproduces the original model, the state dict
under rvoslib's names, and the original keys deliberately dropped (aliases, buffers the original
never reads). Every original key is either renamed or listed in ``dropped``; anything else is an
error naming the key (:func:`unexpected_keys_error`).

Example:
    >>> sorted(CONVERTERS.list())  # doctest: +SKIP
    ['losh', 'mttr', 'referformer', 'soc']
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from rvoslib.registry import Registry

__all__ = ["CONVERTERS", "Conversion", "UnexpectedKeysError", "unexpected_keys_error"]

#: Converters by source name (``"mttr"``, ``"referformer"``, ``"soc"``, ``"losh"``): each is a
#: function ``(state: Mapping[str, Tensor]) -> Conversion``.
CONVERTERS = Registry("checkpoint converter")


@dataclass
class Conversion:
    """What a converter returns.

    Attributes:
        config: The rvoslib model config (a ``ModelConfig`` subclass) that reproduces the
            original model; ``create_model(config)`` builds it.
        state_dict: Tensors under rvoslib's names, loadable with ``strict=True``.
        dropped: Original keys deliberately not used (each one explained in ``notes``).
        source: The converter's name (``"mttr"``, ...).
        variant: What was detected, e.g. ``{"backbone": "video-swin-t", "text": "roberta-base"}``.
        notes: Human-readable remarks written into the converted folder.
    """

    config: Any
    state_dict: dict[str, torch.Tensor]
    dropped: list[str] = field(default_factory=list)
    source: str = ""
    variant: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class UnexpectedKeysError(ValueError):
    """The checkpoint holds keys that the converter neither uses nor knows to drop."""


def unexpected_keys_error(source: str, keys: Iterable[str], limit: int = 5) -> UnexpectedKeysError:
    """An error naming the first unexpected keys of a checkpoint given to ``source``'s converter.

    Args:
        source: The converter's name.
        keys: The keys that found no slot.
        limit: How many keys to name.
    """
    keys = sorted(keys)
    shown = ", ".join(repr(k) for k in keys[:limit])
    more = f" (and {len(keys) - limit} more)" if len(keys) > limit else ""
    return UnexpectedKeysError(
        f"{len(keys)} tensor(s) of the checkpoint find no slot in the {source!r} conversion: "
        f"{shown}{more}; is it a checkpoint of another architecture than --from {source}?"
    )
