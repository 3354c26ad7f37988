"""Profile one training step (and one inference call) of a preset with ``torch.profiler``.

Prints the operators that take the most device (or CPU) time, the number of graph breaks
``torch.compile`` meets (``torch._dynamo.explain``), and optionally writes a Chrome trace.

Method: the step is the benchmark's ``fast`` or ``reference`` step (see
:mod:`rvoslib.benchmark`); ``--warmup`` untimed steps (compilation happens there), then
``--steps`` profiled steps.

Example::

    python benchmarks/profile_step.py --preset seed-r50 --mode fast --batch 4 --frames 8 \\
        --size 384 --device cuda --trace step.json
"""

from __future__ import annotations

import argparse
import contextlib

import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--mode", default="fast", choices=["reference", "fp32", "fast"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--text-length", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--compile-mode", default="default", help="fast-path compile mode")
    parser.add_argument("--rows", type=int, default=30, help="operators to print")
    parser.add_argument("--trace", default=None, help="write a Chrome trace here")
    parser.add_argument("--explain", action="store_true", help="count torch.compile graph breaks")
    args = parser.parse_args(argv)

    from torch.profiler import ProfilerActivity, profile

    from rvoslib.benchmark import _configure, benchmark_batch

    device = torch.device(args.device)
    compile_mode = None if args.no_compile else args.compile_mode
    model, step_module, infer, optimizer, dtype, scaler, compiled = _configure(
        args.mode, args.preset, device, compile_mode
    )
    batch = benchmark_batch(model, args.batch, args.frames, args.size, args.text_length, device)
    if args.mode == "fast":
        batch["frames"] = batch["frames"].contiguous(memory_format=torch.channels_last_3d)
    mark_step = getattr(torch.compiler, "cudagraph_mark_step_begin", lambda: None)
    autocast = (
        (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else contextlib.nullcontext
    )
    model.train()

    if args.explain:
        from rvoslib.training import TrainingStep

        explanation = torch._dynamo.explain(TrainingStep(model))(batch)
        print(f"graph breaks: {explanation.graph_break_count}, graphs: {explanation.graph_count}")
        for reason in explanation.break_reasons[:10]:
            print("  break:", reason.reason)
        torch._dynamo.reset()

    def step() -> None:
        mark_step()
        with autocast():
            loss = sum(step_module(batch)[0].values())
        (scaler.scale(loss) if scaler else loss).backward()
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities, record_shapes=True) as prof:
        for _ in range(args.steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"== train step ({args.mode}, compiled={compiled}), {args.steps} steps, by {sort}")
    print(prof.key_averages().table(sort_by=sort, row_limit=args.rows, max_name_column_width=60))
    if args.trace:
        prof.export_chrome_trace(args.trace)

    model.eval()
    with torch.inference_mode(), autocast():
        for _ in range(args.warmup):
            mark_step()
            infer(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        with profile(activities=activities) as prof:
            for _ in range(args.steps):
                mark_step()
                infer(batch)
            if device.type == "cuda":
                torch.cuda.synchronize()
    print(f"== inference ({args.mode}), {args.steps} calls, by {sort}")
    print(prof.key_averages().table(sort_by=sort, row_limit=args.rows, max_name_column_width=60))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
