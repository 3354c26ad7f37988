"""``rvos export``: export a model folder to ONNX, TorchScript or a ``torch.export`` program.

ONNX and ``export`` keep batch, frames, height, width and token length dynamic; TorchScript is
traced at the example shape (``--frames --height --width``). A model that cannot be exported
(a VOS model; an architecture whose code fixes a dimension) is refused before any work; with
``--check`` the ONNX file is compared with PyTorch at a second shape and written only if it
passes.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rvoslib.cli.convert import CHECKPOINT_HELP, add_original_options, load_model
from rvoslib.cli.options import CommandLine

__all__ = ["command_line", "run"]


def command_line(argv: Sequence[str] = ()) -> CommandLine:
    """The parser of ``rvos export``."""
    cli = CommandLine("rvos export", __doc__)
    cli.add("--checkpoint", required=True, help=CHECKPOINT_HELP)
    add_original_options(cli)
    cli.add(
        "--format",
        choices=("onnx", "torchscript", "export"),
        default="onnx",
        help="onnx, torchscript (traced) or export (a torch.export program)",
    )
    cli.add("--out", required=True, help="output file (.onnx, .pt, .pt2)")
    cli.add(
        "--check",
        action="store_true",
        help="ONNX: run with onnxruntime and compare with PyTorch (max abs diff <= --atol)",
    )
    cli.add("--atol", type=float, default=1e-3, help="tolerance of --check")
    cli.add("--frames", type=int, default=3, help="frames of the example clip")
    cli.add("--height", type=int, default=64, help="height of the example clip")
    cli.add("--width", type=int, default=96, help="width of the example clip")
    return cli


def run(args: Any) -> int:
    """Run ``rvos export``; returns the exit code."""
    from rvoslib._io import atomic_write_bytes
    from rvoslib.export import (
        _onnx_bytes,
        _require,
        check_exportable,
        check_onnx,
        example_inputs,
        export_model,
        second_shape_inputs,
    )

    if args.check and args.format != "onnx":
        raise ValueError(f"--check compares ONNX with onnxruntime; --format is {args.format!r}")
    for name in ("frames", "height", "width"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if not args.atol >= 0:
        raise ValueError(f"--atol must be >= 0, got {args.atol}")
    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out must be a file, got the folder {str(out)!r}")
    if args.format == "onnx":
        try:
            _require("onnx", "onnxscript", *(["onnxruntime"] if args.check else []))
        except ModuleNotFoundError as error:  # before the model is loaded
            raise ValueError(f"--format onnx{' --check' * args.check}: {error}") from None
    model = load_model(args).eval()
    check_exportable(model, args.format)
    inputs = example_inputs(model, num_frames=args.frames, height=args.height, width=args.width)
    if args.check:  # the file is written only once the check at a second shape passed
        data = _onnx_bytes(model, inputs)
        second = second_shape_inputs(model, inputs)
        difference = check_onnx(model, data, inputs=second, atol=args.atol)
        path = atomic_write_bytes(out, data)
        print(f"exported onnx to {path}", file=sys.stderr)
        print(
            f"onnxruntime vs PyTorch at frames {tuple(second[0].shape)}: max abs difference "
            f"of logits = {difference:.3g}"
        )
        return 0
    path = export_model(model, out, args.format, inputs=inputs)
    print(f"exported {args.format} to {path}", file=sys.stderr)
    return 0
