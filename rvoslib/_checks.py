"""Input checks shared by the public entry points.

Every public ``forward`` and function validates what the user handed it with these helpers,
so that bad input fails early with a message naming the argument, the expected and the actual
value, instead of a stack trace from deep inside torch. The checks are skipped while
``torch.compile`` traces (they would only add guards to the compiled graph).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["check_fit", "check_ranges", "check_tensor", "format_shape", "is_compiling"]


def is_compiling() -> bool:
    """Whether the code is being traced by ``torch.compile`` / ``torch.export``."""
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and hasattr(compiler, "is_compiling"):
        return bool(compiler.is_compiling())
    return False


def format_shape(shape: Sequence[int]) -> str:
    """Format a shape as ``(2, 3, 64, 64)``."""
    return "(" + ", ".join(str(int(size)) for size in shape) + ")"


def check_tensor(
    value: object,
    name: str,
    dims: Sequence[str | int],
    *,
    floating: bool | None = None,
) -> torch.Tensor:
    """Check that ``value`` is a tensor of the given rank (and fixed sizes).

    Args:
        value: The argument to check.
        name: The argument's name, used in the error message.
        dims: One entry per dimension: a symbolic name such as ``"B"`` (any size) or an
            integer that the size must equal.
        floating: ``True`` requires a floating dtype, ``False`` an integer or bool dtype,
            ``None`` accepts any dtype.

    Returns:
        The tensor, unchanged.

    Raises:
        TypeError: ``value`` is not a tensor or has the wrong kind of dtype.
        ValueError: the rank or a fixed size differs. The message names the argument, the
            expected layout and the actual shape, e.g.
            ``frames must be (B, T, 3, H, W), got (3, 3, 97, 131)``.
    """
    expected = "(" + ", ".join(str(dim) for dim in dims) + ")"
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape {expected}, got {type(value).__name__}"
        )
    if value.ndim != len(dims) or any(
        isinstance(dim, int) and value.shape[i] != dim for i, dim in enumerate(dims)
    ):
        raise ValueError(f"{name} must be {expected}, got {format_shape(value.shape)}")
    if floating is True and not value.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype, got {value.dtype}")
    if floating is False and value.is_floating_point():
        raise TypeError(f"{name} must have an integer or bool dtype, got {value.dtype}")
    return value


def check_fit(left: str, provided: Any, right: str, expected: Any) -> None:
    """Raise when part ``right``'s input width differs from what part ``left`` gives.

    Widths are an int or a list per level; ``expected=None`` (a part that declares no
    width) is not checked.

    Raises:
        ValueError: naming both parts and both widths, e.g. ``backbone gives 64 channels but
            fusion expects 10; build fusion with 64 (...)``.
    """
    if expected is None:
        return
    given = [int(v) for v in provided] if isinstance(provided, (list, tuple)) else int(provided)
    wanted = [int(v) for v in expected] if isinstance(expected, (list, tuple)) else int(expected)
    if given != wanted:
        raise ValueError(
            f"{left} gives {given} channels but {right} expects {wanted}; build {right} with "
            f"{given} (the builder passes it when parts come from specs)"
        )


def check_ranges(config: Any, ranges: dict[str, tuple[float, float, bool, bool]]) -> None:
    """Check numeric fields of a config: ``name -> (low, high, optional, low_included)``;
    ``high`` is excluded (``inf``: no bound); ``optional`` fields may be ``None``.

    Raises:
        ValueError: names the field, the valid range and the value, e.g.
            ``clip_grad_norm must be > 0 (or None to disable), got -1.0``.

    Example:
        >>> from types import SimpleNamespace
        >>> check_ranges(SimpleNamespace(lr=0.1), {"lr": (0, float("inf"), False, False)})
        >>> check_ranges(SimpleNamespace(lr=0), {"lr": (0, float("inf"), False, False)})
        Traceback (most recent call last):
        ...
        ValueError: lr must be > 0, got 0
    """
    for name, (low, high, optional, included) in ranges.items():
        value = getattr(config, name)
        if value is None and optional:
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or value < low or (value == low and not included) or value >= high:
            lower = f">= {low}" if included else f"> {low}"
            upper = "" if high == float("inf") else f" and < {high}"
            none = " (or None to disable)" if optional else ""
            raise ValueError(f"{name} must be {lower}{upper}{none}, got {value!r}")
