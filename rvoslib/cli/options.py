"""Command-line options generated from config dataclasses: one option per field.

The option of field ``max_time`` is ``--max-time``; its default is the field's default and its
help is the field's line in the class docstring's ``Attributes:`` section, so the CLI and the
configs cannot drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["add_dataclass_options", "field_docs", "given_options", "option_name"]

_NONE_WORDS = ("none", "null")


def option_name(field_name: str) -> str:
    """``"max_time"`` -> ``"--max-time"``."""
    return "--" + field_name.replace("_", "-")


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> its description in the class docstring's ``Attributes:`` section."""
    doc = inspect.getdoc(cls) or ""
    section = doc.split("Attributes:", 1)[1] if "Attributes:" in doc else ""
    docs: dict[str, str] = {}
    current = None
    for line in section.splitlines():
        match = re.match(r"^    (\w+): (.*)$", line)
        if match:
            current = match.group(1)
            docs[current] = match.group(2).strip()
        elif current and line.startswith("        "):
            docs[current] += " " + line.strip()
        elif line.strip() and not line.startswith(" "):
            break
    return {k: re.sub(r"[:`]+(\w+:)?", "", v).replace("%", "%%") for k, v in docs.items()}


def _parse_optional(convert: Any) -> Any:
    def parse(text: str) -> Any:
        return None if text.lower() in _NONE_WORDS else convert(text)

    parse.__name__ = getattr(convert, "__name__", "value")
    return parse


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error}): {text!r}") from None


def add_dataclass_options(
    parser: argparse._ActionsContainer,
    cls: type,
    *,
    choices: Mapping[str, Sequence[str]] | None = None,
    aliases: Mapping[str, Sequence[str]] | None = None,
    dest_prefix: str = "",
) -> None:
    """Add one option per field of the dataclass ``cls``.

    Args:
        parser: A parser or argument group.
        cls: The dataclass.
        choices: Field -> allowed values.
        aliases: Field -> extra option strings (e.g. ``--out`` for ``output_dir``).
        dest_prefix: Prefix of the namespace attribute (``"data."`` -> ``data.size``).
    """
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    choices, aliases = choices or {}, aliases or {}
    for item in dataclasses.fields(cls):
        default = (
            item.default_factory()  # type: ignore[misc]
            if item.default_factory is not dataclasses.MISSING
            else item.default
        )
        kwargs: dict[str, Any] = {"dest": dest_prefix + item.name, "default": default}
        kwargs["help"] = docs.get(item.name, "")
        annotation = hints[item.name]
        args = typing.get_args(annotation)
        optional = type(None) in args
        base = (
            next((a for a in args if a is not type(None)), annotation) if optional else annotation
        )
        origin = typing.get_origin(base)
        if base is bool:
            if item.name.startswith("no_"):  # argparse would read --no-x as False
                raise ValueError(f"boolean field {item.name!r} must not start with 'no_'")
            kwargs["action"] = argparse.BooleanOptionalAction
        elif origin in (tuple,):
            kwargs.update(nargs=len(typing.get_args(base)), type=typing.get_args(base)[0])
        elif origin in (list,):
            kwargs.update(nargs="+", type=typing.get_args(base)[0])
        elif origin in (dict,) or base is dict:
            kwargs.update(type=_json_value, metavar="JSON")
        elif base in (int, float, str):
            kwargs["type"] = _parse_optional(base) if optional else base
        elif isinstance(base, types.UnionType):
            kwargs["type"] = str
        else:
            kwargs["type"] = str
        if item.name in choices:
            kwargs["choices"] = list(choices[item.name])
            if optional:
                kwargs["choices"].append(None)
        strings = [option_name(item.name), *aliases.get(item.name, ())]
        parser.add_argument(*strings, **kwargs)


def given_options(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """The ``dest`` names of the options present on the command line ``argv``."""
    probe = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            kwargs: dict[str, Any] = {"dest": action.dest, "default": argparse.SUPPRESS}
            if isinstance(action, argparse.BooleanOptionalAction):
                kwargs["action"] = argparse.BooleanOptionalAction
            elif action.nargs == 0:
                kwargs["action"] = "store_const"
                kwargs["const"] = True
            else:
                kwargs["nargs"] = action.nargs
            probe.add_argument(*action.option_strings, **kwargs)
    known, _ = probe.parse_known_args(list(argv))
    return set(vars(known))
