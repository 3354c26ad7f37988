"""The ``rvos`` command line (also ``python -m rvoslib``).

Each subcommand lives in its own module exposing ``add_parser(subparsers)`` (which registers
the subcommand and sets ``func``) and is registered in :data:`SUBCOMMANDS`. Exit codes: 0
success; 2 bad input (the message names the argument, file or value); 3 a training run whose
steps were skipped for non-finite values, or stopped by them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from rvoslib.version import __version__

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

#: subcommand name -> module that implements it
SUBCOMMANDS = {
    "train": "rvoslib.cli.train",
    "eval": "rvoslib.cli.evaluate",
    "predict": "rvoslib.cli.predict",
    "export": "rvoslib.cli.export",
    "bench": "rvoslib.cli.bench",
}


def build_parser() -> argparse.ArgumentParser:
    """The ``rvos`` argument parser with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="rvos", description="Referring video object segmentation with rvoslib."
    )
    parser.add_argument("--version", action="version", version=f"rvoslib {__version__}")
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a Python module first, e.g. one that registers your own model parts",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMANDS.values():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``rvos`` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for module_name in _imports(argv):  # before the parser: they may register choices
        importlib.import_module(module_name)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    args._argv = argv[argv.index(args.command) + 1 :]  # the subcommand's own arguments
    from rvoslib.training.run_folder import RunLockedError
    from rvoslib.training.step import NonFiniteLossError

    try:
        result = args.func(args)
    except NonFiniteLossError as error:
        print(f"rvos {args.command}: error: {error}", file=sys.stderr)
        return 3
    except (OSError, ValueError, KeyError, TypeError, RunLockedError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"rvos {args.command}: error: {message}", file=sys.stderr)
        return 2
    return int(result or 0)


def _imports(argv: Sequence[str]) -> list[str]:
    """The modules named by ``--import MODULE`` / ``--import=MODULE`` before the subcommand."""
    names = []
    for index, token in enumerate(argv):
        if token in SUBCOMMANDS:
            break
        if token == "--import" and index + 1 < len(argv):
            names.append(argv[index + 1])
        elif token.startswith("--import="):
            names.append(token.split("=", 1)[1])
    return names
