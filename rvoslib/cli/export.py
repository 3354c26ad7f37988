"""``rvos export``: export a model folder to ONNX, TorchScript or a ``torch.export`` program."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``rvos export``."""
    parser = subparsers.add_parser(
        "export",
        help="export a model to ONNX / TorchScript / torch.export",
        description="Export a model folder. ONNX and 'export' keep batch, frames, height, "
        "width and token length dynamic; TorchScript is traced at the example shape.",
    )
    parser.add_argument("--checkpoint", required=True, help="model folder (save_pretrained)")
    parser.add_argument("--format", choices=("onnx", "torchscript", "export"), default="onnx")
    parser.add_argument("--out", required=True, help="output file (.onnx, .pt, .pt2)")
    parser.add_argument(
        "--check",
        action="store_true",
        help="ONNX: run with onnxruntime and compare with PyTorch (max abs diff <= --atol)",
    )
    parser.add_argument("--atol", type=float, default=1e-3)
    parser.add_argument("--frames", type=int, default=3, help="example clip length")
    parser.add_argument("--height", type=int, default=64, help="example height")
    parser.add_argument("--width", type=int, default=96, help="example width")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``rvos export``; returns the exit code."""
    from rvoslib.export import check_onnx, example_inputs, export_model
    from rvoslib.models import RVOSModel

    if args.check and args.format != "onnx":
        raise ValueError(f"--check compares ONNX with onnxruntime; --format is {args.format!r}")
    model = RVOSModel.from_pretrained(args.checkpoint).eval()
    inputs = example_inputs(model, num_frames=args.frames, height=args.height, width=args.width)
    path = export_model(model, Path(args.out), args.format, inputs=inputs)
    print(f"exported {args.format} to {path}", file=sys.stderr)
    if args.check:
        difference = check_onnx(model, path, atol=args.atol)
        print(f"onnxruntime vs PyTorch: max abs difference of logits = {difference:.3g}")
    return 0
