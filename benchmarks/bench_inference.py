"""Inference speed of a preset on clips of any size, eager against the fast path.

Method: random weights, one clip ``(1, T, 3, H, W)`` (a ``--text-length`` token expression or a
first-frame mask), ``torch.inference_mode``; *eager* is float32 (TF32 allowed) without
compilation; *fast* is the library's fast path (bf16 autocast, channels_last, ``torch.compile``
in its CUDA-graph mode). Each is timed after ``--warmup`` calls (compilation happens there) as
the median of ``--repeats`` calls with CUDA events; frames/s = ``T`` / median time.

Example::

    python benchmarks/bench_inference.py --preset mttr-swin-t --frames 12 --height 360 \\
        --width 640 --device cuda
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys

import torch


def _time(run, device: torch.device, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            import time

            began = time.perf_counter()
            run()
            times.append(time.perf_counter() - began)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--text-length", type=int, default=20)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--modes", default="eager,fast")
    args = parser.parse_args(argv)

    from rvoslib import create_model
    from rvoslib.training import fast

    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    model = create_model(args.preset).to(device).eval()
    generator = torch.Generator().manual_seed(0)
    frames = torch.randn(1, args.frames, 3, args.height, args.width, generator=generator)
    batch = {"frames": frames.to(device)}
    if model.task == "vos":
        batch["first_mask"] = (torch.rand(1, args.height, args.width) > 0.5).float().to(device)
    else:
        vocab = model.text_encoder.language_model.config.vocab_size
        ids = torch.randint(5, vocab, (1, args.text_length), generator=generator)
        batch["text_ids"], batch["text_mask"] = ids.to(device), torch.ones_like(ids).to(device)

    def infer(values):
        return model.referred_logits(model.forward_batch(values))

    result = {
        "preset": args.preset,
        "frames": args.frames,
        "height": args.height,
        "width": args.width,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "command": " ".join(["python", *sys.argv]),
    }
    for mode in args.modes.split(","):
        run_fn, autocast = infer, contextlib.nullcontext
        if mode == "fast":
            fast.prepare_fast_path(model, device)
            batch["frames"] = batch["frames"].contiguous(memory_format=torch.channels_last_3d)
            if device.type == "cuda":
                run_fn = fast.maybe_compile(infer, **fast.compile_options())

                def autocast():
                    return torch.autocast("cuda", dtype=torch.bfloat16)

        def run(run_fn=run_fn, autocast=autocast):
            fast.mark_step()
            with torch.inference_mode(), autocast():
                run_fn(batch)

        seconds = _time(run, device, args.warmup, args.repeats)
        result[f"{mode}_ms"] = round(seconds * 1000, 2)
        result[f"{mode}_frames_per_s"] = round(args.frames / seconds, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
