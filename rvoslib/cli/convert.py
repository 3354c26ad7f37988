"""``rvos convert``: convert a checkpoint published with MTTR, ReferFormer, SOC or LoSh into an
rvoslib model folder.

    rvos convert --from mttr mttr_a2d_sentences.pth --out converted/mttr-a2d

The file is read without running any of its code (tensors and a few known objects only; a
file needing anything else is refused, naming it: ``--trust-global module.Name`` allows it for
a file you trust). The variant (backbone, text model, queries) is detected from the tensors'
shapes, every original key is converted or deliberately dropped (listed in the folder's
``conversion.json``), and the folder, written atomically, loads with
``RVOSModel.from_pretrained(DIR)`` and ``rvos predict/eval/export --checkpoint DIR``. Those
commands also take the original file itself (``--checkpoint FILE.pth --from NAME``) and
convert it on the fly.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from typing import Any

from rvoslib.cli.options import CommandLine

__all__ = ["CHECKPOINT_HELP", "add_original_options", "command_line", "load_model", "run"]

#: The help of ``--checkpoint`` of the commands that load a model.
CHECKPOINT_HELP = (
    "model folder (written by save_pretrained or rvos convert), or an original checkpoint file "
    "of MTTR / ReferFormer / SOC / LoSh (converted on the fly; see --from)"
)


def command_line(argv: Sequence[str] = ()) -> CommandLine:
    """The parser of ``rvos convert``."""
    from rvoslib.convert import CONVERTERS

    cli = CommandLine("rvos convert", __doc__)
    cli.add("checkpoint", help="the original checkpoint file (.pth)")
    cli.add(
        "--from",
        dest="source",
        required=True,
        choices=CONVERTERS.list(),
        help="the system that wrote the checkpoint",
    )
    cli.add("--out", required=True, help="the rvoslib model folder to write")
    _add_tokenizer_and_trust(cli)
    cli.add(
        "--overwrite",
        action="store_true",
        help="replace a non-empty --out (kept until the new folder is complete)",
    )
    return cli


def _add_tokenizer_and_trust(cli: CommandLine) -> None:
    cli.add(
        "--tokenizer",
        default=None,
        help="for an original checkpoint: a local tokenizer folder (e.g. roberta-base's) for "
        "the converted model (default: the text model's, from the local Hugging Face cache if "
        "there, else none)",
    )
    cli.add(
        "--trust-global",
        dest="trust_globals",
        action="append",
        default=[],
        metavar="MODULE.NAME",
        help="allow the checkpoint to hold this Python object (only for a file you trust; "
        "repeatable)",
    )


def add_original_options(cli: CommandLine) -> None:
    """Add ``--from``, ``--tokenizer`` and ``--trust-global`` to a command taking
    ``--checkpoint``, so that it also takes an original checkpoint file (see
    :func:`load_model`)."""
    cli.add(
        "--from",
        dest="source",
        default=None,
        help="--checkpoint is an original checkpoint file of this system (mttr, referformer, "
        "soc, losh), converted on the fly (default for a file: detected)",
    )
    _add_tokenizer_and_trust(cli)


def load_model(args: Any, cls: Any = None) -> Any:
    """The model of ``args.checkpoint``: a model folder, or an original file converted on the
    fly (said on stderr) with ``args.source``, ``args.tokenizer`` and ``args.trust_globals``.

    Raises:
        KeyError: ``--from`` names no converter (the registered ones listed).
        FileNotFoundError, ValueError: see :func:`rvoslib.convert.load_checkpoint`.
    """
    from rvoslib.convert import CONVERTERS, load_checkpoint

    source = getattr(args, "source", None)
    if source is not None and source not in CONVERTERS:
        raise KeyError(f"--from must be one of {', '.join(CONVERTERS.list())}, got {source!r}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        model = load_checkpoint(
            args.checkpoint,
            source,
            tokenizer=getattr(args, "tokenizer", None),
            allow_globals=getattr(args, "trust_globals", None) or (),
            cls=cls,
        )
    _print_warnings(caught)
    return model


def _print_warnings(caught: list[Any], command: str = "") -> None:
    prefix = f"rvos {command}: " if command else ""
    for warning in caught:
        print(f"{prefix}warning: {warning.message}", file=sys.stderr)


def run(args: Any) -> int:
    """Run ``rvos convert``; returns the exit code."""
    from rvoslib.convert import convert_checkpoint

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        out = convert_checkpoint(
            args.checkpoint,
            args.source,
            args.out,
            tokenizer=args.tokenizer,
            overwrite=args.overwrite,
            allow_globals=args.trust_globals or (),
            log=lambda line: print(line, file=sys.stderr),
        )
    _print_warnings(caught, "convert")
    print(out)
    return 0
