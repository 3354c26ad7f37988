"""The options of an ``rvos`` subcommand, on `jsonargparse <https://jsonargparse.readthedocs.io>`_.

:class:`CommandLine` wraps a jsonargparse parser. A config dataclass becomes a section of
options (:meth:`CommandLine.add_dataclass`): field ``max_time`` of section ``trainer`` is
``--trainer.max_time`` and, flat, ``--max-time``; its default is the value that will run (the
caller passes the selected recipe's values), its help the field's line in the class docstring's
``Attributes:`` section, verbatim. On the command line:

* a list or tuple takes several words (``--attributes color shape``) or one YAML list
  (``--attributes '[color, shape]'``); an optional value takes ``none`` or ``null``;
* a boolean field is a flag (``--shuffle-text``), takes a value (``--data.shuffle_text false``)
  or its ``--no-`` form (``--no-progress``);
* ``--section.field`` of a section opened with ``open_section`` that is not one of its fields
  is collected as a nested override (``--model.temporal.name identity``);
* an unknown option, or a dotted option naming no field, raises :class:`UsageError` naming it
  and listing the valid ones; a deprecated alias warns (``FutureWarning``) and is replaced.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import re
import types
import typing
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from jsonargparse import ArgumentError, ArgumentParser, DefaultHelpFormatter, Namespace

__all__ = ["CommandLine", "UsageError", "field_docs", "flat_name", "set_nested"]

_NONE_WORDS = ("none", "None", "NONE")
_HELP = ("-h", "--help")


class UsageError(ValueError):
    """A command line that cannot be parsed (exit code 2); the message names the option."""


class _Formatter(DefaultHelpFormatter):
    """jsonargparse's help (types and defaults) with the description's line breaks kept."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "".join(indent + line for line in text.splitlines(keepends=True))


@dataclasses.dataclass
class _Option:
    dest: str
    sequence: str | None = None  # "str" (quote the words) or "raw", for list and tuple types
    optional: bool = False
    boolean: bool = False
    negates: bool = False  # the --no- form of a boolean field


def flat_name(field_name: str) -> str:
    """``"max_time"`` -> ``"--max-time"``."""
    return "--" + field_name.replace("_", "-")


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> its description in the class docstring's ``Attributes:`` section, verbatim
    (continuation lines joined with spaces)."""
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
    return docs


def set_nested(values: dict[str, Any], path: Sequence[str], value: Any) -> None:
    """Set ``values[path[0]][path[1]]... = value``, creating (or replacing non-dict) levels."""
    for key in path[:-1]:
        if not isinstance(values.get(key), dict):
            values[key] = {}
        values = values[key]
    values[path[-1]] = value


def _scalar(text: str) -> Any:
    """A command-line word as YAML reads it, with ``1e-3``-style numbers as floats."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value):
        return float(value)  # YAML 1.1 reads 1e-3 as a string
    return value


class CommandLine:
    """The parser of one subcommand.

    Args:
        prog: Program name shown in the usage line, e.g. ``"rvos train"``.
        description: Shown at the top of ``--help`` (line breaks kept).
    """

    def __init__(self, prog: str, description: str = "") -> None:
        self.prog = prog
        self.parser = ArgumentParser(
            prog=prog,
            description=description,
            exit_on_error=False,
            formatter_class=_Formatter,
            default_env=False,
        )
        self.options: dict[str, _Option] = {}
        self.sections: dict[str, list[str]] = {}
        self.open_sections: set[str] = set()
        self.deprecated: dict[str, tuple[str, ...]] = {}

    # ------------------------------------------------------------------ declaring options
    def add(self, *names: str, group: Any = None, **kwargs: Any) -> None:
        """Add an option (``ArgumentParser.add_argument``'s keywords); ``help`` is required."""
        if not kwargs.get("help"):
            raise ValueError(f"option {names[0]} needs a help text")
        (group or self.parser).add_argument(*names, **kwargs)
        annotation = kwargs.get("type")
        union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
        members = typing.get_args(annotation) if union else (annotation,)
        base = next((a for a in members if a is not type(None)), annotation)
        origin = typing.get_origin(base)
        option = _Option(
            dest=kwargs.get("dest") or names[0].lstrip("-").replace("-", "_"),
            optional=type(None) in members,
            boolean=base is bool,
        )
        if origin in (list, tuple):
            item = typing.get_args(base)[0] if typing.get_args(base) else str
            option.sequence = "str" if item is str else "raw"
        for name in names:
            self.options[name] = option

    def add_group(self, title: str, description: str | None = None) -> Any:
        """A titled group of options in ``--help``."""
        return self.parser.add_argument_group(title, description)

    def mutually_exclusive(self, required: bool = False) -> Any:
        """A group of options of which at most one (exactly one if ``required``) is given."""
        return self.parser.add_mutually_exclusive_group(required=required)

    def add_dataclass(
        self,
        section: str,
        cls: type,
        defaults: Mapping[str, Any] | None = None,
        *,
        aliases: Mapping[str, Sequence[str]] | None = None,
        choices: Mapping[str, Sequence[str]] | None = None,
        skip: Iterable[str] = (),
        title: str | None = None,
    ) -> None:
        """Add ``--section.field`` and its flat ``--field`` (unless an option already has
        that name) for every field of ``cls``.

        Args:
            section: Name of the section (the key of the parsed values).
            cls: The dataclass.
            defaults: Field -> default shown and used (default: the dataclass's defaults).
            aliases: Field -> more option strings (e.g. ``--out`` for ``output_dir``).
            choices: Field -> allowed values (``str`` fields).
            skip: Fields that get no option.
        """
        hints = typing.get_type_hints(cls)
        docs = field_docs(cls)
        defaults, aliases, choices = defaults or {}, aliases or {}, choices or {}
        group = self.add_group(title or section, (inspect.getdoc(cls) or "").split("\n")[0])
        self.sections[section] = [f.name for f in dataclasses.fields(cls)]
        for item in dataclasses.fields(cls):
            if item.name in skip:
                continue
            if item.name in defaults:
                default = defaults[item.name]
            elif item.default_factory is not dataclasses.MISSING:
                default = item.default_factory()
            else:
                default = item.default
            annotation = hints[item.name]
            kwargs: dict[str, Any] = {
                "type": annotation,
                "default": default,
                "help": docs.get(item.name) or item.name.replace("_", " "),
            }
            if annotation is bool:
                kwargs.update(nargs="?", const=True)
                kwargs["help"] += f" ({flat_name('no_' + item.name)}: false)"
                self.options[flat_name("no_" + item.name)] = _Option(
                    f"{section}.{item.name}", negates=True
                )
            if item.name in choices:
                kwargs["choices"] = list(choices[item.name])
                kwargs.pop("type")
            names = [f"--{section}.{item.name}", *aliases.get(item.name, ())]
            if flat_name(item.name) not in self.options:  # e.g. --config: the recipe's, not model's
                names.insert(1, flat_name(item.name))
            self.add(*names, group=group, **kwargs)

    def open_section(self, section: str) -> None:
        """Collect ``--section.a.b VALUE`` that names no option as a nested value."""
        self.open_sections.add(section)

    def deprecate(self, old: str, *new: str) -> None:
        """``old`` still works, warns, and stands for the options ``new`` (same value)."""
        self.deprecated[old] = new

    # ------------------------------------------------------------------ parsing
    def format_help(self) -> str:
        """The ``--help`` text."""
        return self.parser.format_help()

    def wants_help(self, argv: Sequence[str]) -> bool:
        """``-h`` or ``--help`` is among the options."""
        return any(token in _HELP for token in argv)

    def parse(self, argv: Sequence[str]) -> Namespace:
        """Parse ``argv``.

        Returns:
            The parsed values, a nested ``Namespace`` (``args.trainer.lr``), with ``_argv``
            (``argv``) and ``_extras``: the nested values collected for the open sections
            (``{"model": {"temporal": {"name": "identity"}}}``).

        Raises:
            UsageError: an unknown option (named, with the valid ones), a dotted option naming
                no field of its section (named, with the section's fields), or a bad value.
        """
        tokens, extras = self._normalize(list(argv))
        try:
            args = self.parser.parse_args(tokens)
        except ArgumentError as error:
            raise UsageError(self._explain(str(error))) from None
        args._argv, args._extras = list(argv), extras
        return args

    def _normalize(self, argv: list[str]) -> tuple[list[str], dict[str, dict[str, Any]]]:
        """Replace aliases, ``--no-`` flags and multi-word lists; collect open-section values."""
        tokens: list[str] = []
        extras: dict[str, dict[str, Any]] = {}
        index = 0
        while index < len(argv):
            token = argv[index]
            index += 1
            if not token.startswith("--") or token in _HELP:
                tokens.append(token)
                continue
            name, has_value, value = token.partition("=")
            if "." in name:
                section, _, rest = name[2:].partition(".")
                name = f"--{section}.{rest.replace('-', '_')}"
            values = [value] if has_value else []
            while not has_value and index < len(argv) and not argv[index].startswith("--"):
                values.append(argv[index])
                index += 1
            if name in self.deprecated:
                new = self.deprecated[name]
                warnings.warn(
                    f"{name} is deprecated; use {' and '.join(new)}", FutureWarning, stacklevel=2
                )
                for replacement in new:
                    tokens.extend(self._option_tokens(replacement, values))
            elif name in self.options:
                tokens.extend(self._option_tokens(name, values))
            elif "." in name and name[2:].split(".")[0] in self.open_sections:
                section, *path = name[2:].split(".")
                if len(values) != 1:
                    raise UsageError(f"{name} takes one value, got {len(values)}")
                set_nested(extras.setdefault(section, {}), path, _scalar(values[0]))
            else:
                raise UsageError(self._unknown(name))
        return tokens, extras

    def _option_tokens(self, name: str, values: list[str]) -> list[str]:
        option = self.options[name]
        if option.negates:
            if values:
                raise UsageError(f"{name} takes no value, got {' '.join(values)!r}")
            return [f"--{option.dest}", "false"]
        if option.sequence and (len(values) > 1 or (values and not values[0].startswith("["))):
            words = [json.dumps(v) if option.sequence == "str" else v for v in values]
            values = ["[" + ", ".join(words) + "]"]
        if option.optional and len(values) == 1 and values[0] in _NONE_WORDS:
            values = ["null"]
        return [name, *values]

    def _unknown(self, name: str) -> str:
        section, dot, field = name[2:].partition(".")
        if dot and section in self.sections:
            valid = self.sections[section]
            return (
                f"{name}: {section} has no field {field!r}; valid {section} fields: "
                f"{', '.join(valid)}"
            )
        valid = sorted(n for n, o in self.options.items() if "." not in n and not o.negates)
        close = difflib.get_close_matches(name, list(self.options), n=3)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        return f"unknown option {name}{hint}; valid options: {', '.join(valid)}"

    def _explain(self, message: str) -> str:
        """jsonargparse's message with the option's names instead of its key."""
        match = re.match(r'Parser key "([\w.]+)":\s*(.*)', message, re.S)
        if not match:
            return message
        key, detail = match.groups()
        names = sorted({n for n, o in self.options.items() if o.dest == key and "-no-" not in n})
        detail = " ".join(line.strip() for line in detail.splitlines() if line.strip())
        detail = re.sub(r"Expected a <class '([\w.]+)'>\. Got value:", r"expected \1, got", detail)
        return f"{' / '.join(names) or key}: {detail}"
