"""``rvos bench``: time forward, backward, train step and inference per mode (see
:mod:`rvoslib.benchmark` for the method)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from typing import Any

from rvoslib._io import atomic_write_text
from rvoslib.cli.options import CommandLine

__all__ = ["command_line", "format_table", "run"]

COLUMNS = (
    ("mode", "{}"),
    ("train_step_ms", "{:.1f}"),
    ("forward_ms", "{:.1f}"),
    ("backward_ms", "{:.1f}"),
    ("infer_ms", "{:.1f}"),
    ("peak_mem_mb", "{:.0f}"),
    ("tflops", "{:.3f}"),
    ("clips_per_s", "{:.1f}"),
    ("infer_frames_per_s", "{:.0f}"),
)


def command_line(argv: Sequence[str] = ()) -> CommandLine:
    """The parser of ``rvos bench``."""
    cli = CommandLine("rvos bench", __doc__)
    cli.add("--device", default="auto", help="cpu, cuda or auto")
    cli.add(
        "--preset", default=None, help="the model preset (default: seed-r50 on CUDA, tiny on CPU)"
    )
    cli.add("--batch", type=int, default=4, help="clips per step")
    cli.add("--frames", type=int, default=8, help="frames per clip")
    cli.add("--size", type=int, default=384, help="square frame size")
    cli.add("--text-length", type=int, default=20, help="tokens per expression")
    cli.add(
        "--modes",
        default="reference,fp32,fast",
        help="comma-separated modes of rvoslib.benchmark.MODES",
    )
    cli.add("--warmup", type=int, default=5, help="untimed runs before the timed ones")
    cli.add("--repeats", type=int, default=20, help="timed runs (the median is reported)")
    cli.add("--no-compile", action="store_true", help="no torch.compile in fast mode")
    cli.add(
        "--compile-mode",
        default=None,
        help="torch.compile mode of the fast path (default: reduce-overhead, i.e. CUDA graphs)",
    )
    cli.add("--quick", action="store_true", help="small sizes, few repeats (CI)")
    cli.add("--json", default=None, help="write the rows to this JSON file")
    return cli


def format_table(rows: list[dict]) -> str:
    """A Markdown table of benchmark rows."""
    header = "| " + " | ".join(name for name, _ in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    lines = [header, rule]
    for row in rows:
        lines.append("| " + " | ".join(fmt.format(row[name]) for name, fmt in COLUMNS) + " |")
    return "\n".join(lines)


def run(args: Any) -> int:
    """Run the benchmark, print a table and optionally write JSON."""
    import torch

    from rvoslib.benchmark import MODES, run_benchmarks

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device} requested but CUDA is not available")
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"unknown modes {unknown}; valid modes: {list(MODES)}")
    preset = args.preset or ("seed-r50" if device.startswith("cuda") else "tiny")
    batch, frames, size, warmup, repeats = (
        args.batch,
        args.frames,
        args.size,
        args.warmup,
        args.repeats,
    )
    if args.quick:
        batch, frames, size, warmup, repeats = 1, 2, 64, 1, 3
    results = run_benchmarks(
        modes,
        preset=preset,
        batch=batch,
        frames=frames,
        size=size,
        text_length=args.text_length,
        device=device,
        warmup=warmup,
        repeats=repeats,
        compile_model=not args.no_compile,
        compile_mode=args.compile_mode,
    )
    command = "rvos bench " + " ".join(shlex.quote(a) for a in args._argv)
    rows = []
    for result in results:
        result.command = command
        rows.append(result.to_dict())
    first = rows[0]
    print(
        f"{first['device']}, torch {first['torch_version']}, preset {preset}, "
        f"B={batch} T={frames} {size}x{size} L={args.text_length}, "
        f"{first['flops_per_step'] / 1e9:.2f} GFLOP per train step (forward + backward)"
    )
    print(format_table(rows))
    if "reference" in modes and "fast" in modes:
        by_mode = {row["mode"]: row for row in rows}
        speedup = by_mode["reference"]["train_step_ms"] / by_mode["fast"]["train_step_ms"]
        infer = by_mode["reference"]["infer_ms"] / by_mode["fast"]["infer_ms"]
        print(f"fast vs reference: train step {speedup:.2f}x, inference {infer:.2f}x")
    if args.json:
        atomic_write_text(args.json, json.dumps(rows, indent=2) + "\n")
    return 0
