"""CPU/GPU time of one training step of a preset, with config variants side by side.

Method: one fixed batch of synthetic clips, ``TrainingStep`` (forward and the model's loss
terms) ``-> backward -> AdamW step`` (fp32, no autocast), ``--warmup`` untimed steps, then
the median of ``--repeats`` timed steps (``torch.cuda.synchronize`` around each on CUDA).
Each variant is a JSON object of :func:`rvoslib.create_model` overrides (part specs) applied
to the preset.

Examples:
    python benchmarks/bench_train_step.py                     # tiny: temporal expansion 2 vs 1
    python benchmarks/bench_train_step.py --threads 2 --variants '{}' \\
        '{"temporal": {"name": "identity"}}'
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from rvoslib import create_model
from rvoslib.data import RVOSCollator, SyntheticRVOSDataset
from rvoslib.training import TrainingStep


def time_step(preset: str, overrides: dict, args: argparse.Namespace) -> dict:
    """Median seconds of one optimizer step of ``preset`` with ``overrides``."""
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = create_model(preset, **overrides).to(device)
    dataset = SyntheticRVOSDataset(args.batch, args.frames, args.size, seed=0)
    batch = RVOSCollator(model.text_encoder, 16)([dataset[i] for i in range(args.batch)])
    tensors = {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
    training_step = TrainingStep(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = sum(training_step(tensors)[0].values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for _ in range(args.warmup):
        step()
    times = [step() for _ in range(args.repeats)]
    return {
        "preset": preset,
        "overrides": overrides,
        "median_ms": round(1000 * statistics.median(times), 1),
        "min_ms": round(1000 * min(times), 1),
        "parameters": sum(p.numel() for p in model.parameters()),
        "batch": [args.batch, args.frames, args.size],
        "threads": torch.get_num_threads(),
        "device": str(device),
        "torch": torch.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="tiny")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=['{"temporal": {"expansion": 2}}', '{"temporal": {"expansion": 1}}'],
        help="JSON objects of create_model overrides",
    )
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for variant in args.variants:
        print(json.dumps(time_step(args.preset, json.loads(variant), args)))


if __name__ == "__main__":
    main()
