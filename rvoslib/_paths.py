"""Paths made from data: names from annotation files confined to their folders.

Video names, expression ids, object ids and frame names are read from files a user may have
been sent (``meta_expressions.json``, ``meta.json``, split lists, the Ref-DAVIS17 and A2D /
JHMDB text files). They become parts of paths, to read frames and to write predictions, so
each must be one plain file name: :func:`check_path_component` refuses an empty name, ``.``,
``..``, a path separator (``/`` or ``\\``), an absolute name, a drive (``C:``) and NUL, naming
the file and the entry. :func:`confined_path` joins names under an output folder and refuses a
target that resolves outside it (through ``..`` or a symbolic link), before anything is
written.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["check_object_id", "check_path_component", "confined_path", "path_component_problem"]

_DRIVE = re.compile(r"^[A-Za-z]:")
_INTEGER = re.compile(r"^\s*-?\d+\s*$")


def path_component_problem(value: object) -> str | None:
    """Why ``value`` is not one plain file name, or None when it is.

    Example:
        >>> path_component_problem("blackswan") is None
        True
        >>> path_component_problem("../x")
        "contains '/'"
    """
    if not isinstance(value, str):
        return f"is a {type(value).__name__}, not a string"
    if not value:
        return "is empty"
    if "\x00" in value:
        return "contains NUL"
    if value.startswith(("/", "\\")):
        return "is absolute"
    if _DRIVE.match(value):
        return "starts with a drive"
    for separator in ("/", "\\"):
        if separator in value:
            return f"contains {separator!r}"
    if value in (".", ".."):
        return f"is {value!r}"
    return None


def check_path_component(value: object, what: str, source: str | os.PathLike) -> str:
    """``value`` if it is one plain file name, else a ValueError naming ``source`` and it.

    Args:
        value: The name, e.g. a video name read from ``meta_expressions.json``.
        what: What it is, for the message (``"video name"``, ``"expression id"``...).
        source: Where it was read (a file, ``file:line``, an argument), for the message.

    Returns:
        ``value`` unchanged.

    Raises:
        ValueError: ``value`` is empty, ``.`` or ``..``, contains ``/``, ``\\`` or NUL, is
            absolute or starts with a drive, e.g. ``"meta_expressions.json: video name '../x'
            is not a plain file name (contains '/')"``.

    Example:
        >>> check_path_component("00000", "frame name", "meta.json")
        '00000'
    """
    problem = path_component_problem(value)
    if problem is not None:
        raise ValueError(f"{source}: {what} {value!r} is not a plain file name ({problem})")
    return value  # type: ignore[return-value]  # a str: path_component_problem checked it


def check_object_id(value: object, what: str, source: str | os.PathLike) -> int:
    """``value`` as an int object id (an int, or a string of digits with an optional ``-``).

    Raises:
        ValueError: anything else, naming ``source`` and the value, e.g.
            ``"meta.json: object id '../1' of video 'a' is not an integer"``.

    Example:
        >>> check_object_id("2", "object id", "meta.json")
        2
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INTEGER.match(value):
        return int(value)
    raise ValueError(f"{source}: {what} {value!r} is not an integer")


def confined_path(root: str | os.PathLike, *components: str, source: str = "") -> Path:
    """``root / components...``, refused unless it resolves inside ``root``.

    Every component must be a plain file name (:func:`check_path_component`), and the joined
    path, resolved (symbolic links followed), must lie inside the resolved ``root``.

    Args:
        root: The output folder (need not exist yet).
        components: Folder and file names under it, e.g. ``("blackswan", "0", "00000.png")``.
        source: Who asks, for the message (e.g. ``"write_davis_masks"``); default the root.

    Returns:
        The joined path (not resolved).

    Raises:
        ValueError: a component that is not a plain file name, or a target that resolves
            outside ``root`` (both paths named).

    Example:
        >>> confined_path("out", "blackswan", "00000.png").as_posix()
        'out/blackswan/00000.png'
    """
    root = Path(root)
    where = source or str(root)
    for component in components:
        check_path_component(component, "path component", where)
    target = root.joinpath(*components)
    inside, resolved = root.resolve(), target.resolve()
    if not resolved.is_relative_to(inside):
        raise ValueError(
            f"{where}: {str(target)!r} resolves to {str(resolved)!r}, outside the output "
            f"folder {str(inside)!r}; refusing to write there"
        )
    return target
