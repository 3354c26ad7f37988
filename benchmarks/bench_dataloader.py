"""DataLoader throughput of rvoslib.data: frames per second for several ``num_workers``.

Method: for each worker count, build a DataLoader (persistent workers), consume ``--warmup``
batches (worker start-up, first-touch costs), then time ``--runs`` consecutive chunks of
``--batches`` batches each and report the median frames/s (frames = batch x clip length) and
the spread. Items are drawn at random with replacement, so the dataset size does not matter.
Data is CPU-only; nothing is moved to a GPU.

Examples:
    python benchmarks/bench_dataloader.py                       # synthetic 64x64 clips
    python benchmarks/bench_dataloader.py --size 128 --workers 0 2 4 --threads 1 --json out.json
    python benchmarks/bench_dataloader.py --root ../shared/data/davis-mini --split val \\
        --num-frames 5 --resize 320
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from rvoslib.data import RefDAVISDataset, RVOSCollator, SyntheticRVOSDataset, train_transform


def build_dataset(args: argparse.Namespace) -> Dataset:
    """The synthetic dataset, or RefDAVISDataset when ``--root`` is given."""
    if args.root is None:
        return SyntheticRVOSDataset(
            num_videos=100_000, num_frames=args.num_frames, size=args.size, seed=0
        )
    transform = train_transform(args.resize) if args.resize else None
    return RefDAVISDataset(
        args.root, split=args.split, num_frames=args.num_frames, transform=transform
    )


def measure(dataset: Dataset, workers: int, args: argparse.Namespace) -> dict[str, Any]:
    """Median frames/s over ``args.runs`` timed chunks with ``workers`` DataLoader workers."""
    total = (args.warmup + args.runs * args.batches) * args.batch_size
    loader = DataLoader(
        dataset,
        batch_size=args.batch_size,
        sampler=RandomSampler(dataset, replacement=True, num_samples=total),
        num_workers=workers,
        persistent_workers=workers > 0,
        collate_fn=RVOSCollator(),
    )
    batches = iter(loader)
    for _ in range(args.warmup):
        next(batches)
    rates = []
    for _ in range(args.runs):
        frames = 0
        start = time.perf_counter()
        for _ in range(args.batches):
            batch = next(batches)
            frames += int(batch["frames"].shape[0] * batch["frames"].shape[1])
        rates.append(frames / (time.perf_counter() - start))
    del batches, loader
    return {
        "num_workers": workers,
        "frames_per_s_median": statistics.median(rates),
        "frames_per_s_min": min(rates),
        "frames_per_s_max": max(rates),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=None, help="DAVIS-2017 root (default: synthetic)")
    parser.add_argument("--split", default="val", help="DAVIS split with --root")
    parser.add_argument("--num-frames", type=int, default=8, help="frames per clip")
    parser.add_argument("--size", type=int, default=64, help="synthetic frame size")
    parser.add_argument("--resize", type=int, default=None, help="train_transform size (DAVIS)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2, 4])
    parser.add_argument("--batches", type=int, default=25, help="batches per timed run")
    parser.add_argument("--runs", type=int, default=5, help="timed runs (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches first")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (main process)")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    dataset = build_dataset(args)
    report: dict[str, Any] = {
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "dataset": type(dataset).__name__,
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "results": [],
    }
    print(f"{report['dataset']}: {args.batch_size} clips x {args.num_frames} frames per batch")
    for workers in args.workers:
        result = measure(dataset, workers, args)
        report["results"].append(result)
        print(
            f"num_workers={workers}: {result['frames_per_s_median']:.0f} frames/s "
            f"(min {result['frames_per_s_min']:.0f}, max {result['frames_per_s_max']:.0f})"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as stream:
            json.dump(report, stream, indent=2)
    return report


if __name__ == "__main__":
    main()
