"""``rvos export``: export a model folder to ONNX, TorchScript or a ``torch.export`` program.

ONNX and ``export`` keep batch, frames, height, width and token length dynamic; TorchScript is
traced at the example shape (``--frames --height --width``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rvoslib.cli.options import CommandLine

__all__ = ["command_line", "run"]


def command_line(argv: Sequence[str] = ()) -> CommandLine:
    """The parser of ``rvos export``."""
    cli = CommandLine("rvos export", __doc__)
    cli.add("--checkpoint", required=True, help="model folder (written by save_pretrained)")
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
    from rvoslib.export import check_onnx, example_inputs, export_model
    from rvoslib.models import SegmentationModel

    if args.check and args.format != "onnx":
        raise ValueError(f"--check compares ONNX with onnxruntime; --format is {args.format!r}")
    model = SegmentationModel.from_pretrained(args.checkpoint).eval()
    inputs = example_inputs(model, num_frames=args.frames, height=args.height, width=args.width)
    path = export_model(model, Path(args.out), args.format, inputs=inputs)
    print(f"exported {args.format} to {path}", file=sys.stderr)
    if args.check:
        difference = check_onnx(model, path, atol=args.atol)
        print(f"onnxruntime vs PyTorch: max abs difference of logits = {difference:.3g}")
    return 0
