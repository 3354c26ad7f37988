"""The ``rvos`` command line (also ``python -m rvoslib``).

Each subcommand lives in its own module (:data:`SUBCOMMANDS`) exposing ``command_line(argv)``
(a :class:`~rvoslib.cli.options.CommandLine`, jsonargparse underneath) and ``run(args)``;
only the module of the subcommand given is imported, so ``rvos --help`` and every ``--help``
start fast. Exit codes: 0 success; 2 bad input (the message names the
argument, file or value); 3 a training run whose steps were skipped for non-finite values, or
stopped by them.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rvoslib.version import __version__

if TYPE_CHECKING:
    from rvoslib.cli.options import CommandLine

__all__ = ["SUBCOMMANDS", "main", "top_level"]

#: subcommand name -> module that implements it
SUBCOMMANDS = {
    "train": "rvoslib.cli.train",
    "eval": "rvoslib.cli.evaluate",
    "predict": "rvoslib.cli.predict",
    "export": "rvoslib.cli.export",
    "bench": "rvoslib.cli.bench",
    "convert": "rvoslib.cli.convert",
    "demo": "rvoslib.cli.demo",
}
_SUMMARIES = {
    "train": "train a model (runs the quickstart recipe by default)",
    "eval": "evaluate a checkpoint or a folder of predictions (J, F, J&F)",
    "predict": "segment objects in a video (by expression or first-frame mask)",
    "export": "export a model to ONNX / TorchScript / torch.export",
    "bench": "benchmark forward/backward/train step/inference",
    "convert": "convert a published MTTR / ReferFormer / SOC / LoSh checkpoint",
    "demo": 'a browser demo of a checkpoint (Gradio; pip install "rvoslib[demo]")',
}


def top_level() -> CommandLine:
    """The parser of ``rvos``'s own options (those before the subcommand)."""
    from rvoslib.cli.options import CommandLine

    commands = "\n".join(f"  {name:<9} {summary}" for name, summary in _SUMMARIES.items())
    cli = CommandLine(
        "rvos",
        "Referring video object segmentation with rvoslib: rvos [OPTIONS] COMMAND ...\n\n"
        f"commands (rvos COMMAND --help shows its options and their defaults):\n{commands}",
    )
    cli.add(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a Python module first, e.g. one that registers your own model parts, "
        "presets or datasets (repeatable)",
    )
    cli.add("--version", action="store_true", help="print the version and exit")
    return cli


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``rvos`` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    position = next((i for i, token in enumerate(argv) if token in SUBCOMMANDS), len(argv))
    head, command, rest = argv[:position], argv[position : position + 1], argv[position + 1 :]
    top = top_level()
    if top.wants_help(head):
        print(top.format_help(), end="")
        return 0
    try:
        options = top.parse(head)
    except ValueError as error:
        return _fail("", error)
    if options.version:
        print(f"rvoslib {__version__}")
        return 0
    if not command:
        print(top.format_help(), end="", file=sys.stderr)
        return 2
    for module_name in options.imports:  # before the parser: they may register choices
        importlib.import_module(module_name)
    name = command[0]
    module = importlib.import_module(SUBCOMMANDS[name])
    try:
        cli = module.command_line(rest)
        if cli.wants_help(rest):
            print(cli.format_help(), end="")
            return 0
        with warnings.catch_warnings(record=True) as caught:  # deprecated options
            warnings.simplefilter("always")
            args = cli.parse(rest)
    except (OSError, ValueError, KeyError, TypeError) as error:
        return _fail(name, error)
    for warning in caught:
        print(f"rvos {name}: warning: {warning.message}", file=sys.stderr)
    from rvoslib.training.run_folder import RunLockedError
    from rvoslib.training.step import NonFiniteLossError

    try:
        result = module.run(args)
    except NonFiniteLossError as error:
        print(f"rvos {name}: error: {error}", file=sys.stderr)
        return 3
    except (OSError, ValueError, KeyError, TypeError, RunLockedError) as error:
        return _fail(name, error)
    return int(result or 0)


def _fail(command: str, error: Exception) -> int:
    message = error.args[0] if isinstance(error, KeyError) and error.args else error
    print(f"rvos{' ' + command if command else ''}: error: {message}", file=sys.stderr)
    return 2
