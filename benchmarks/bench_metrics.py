"""Benchmark DAVIS J&F on one 480x854 sequence: numpy reference vs rvoslib's torch path.

Method: a synthetic 80-frame sequence (a moving ellipse and a perturbed prediction, so the
boundaries are as sparse as real ones); every method computes per-frame J and F of all
frames. Each timing is the median of ``--repeats`` runs after ``--warmup`` runs; CUDA timings
synchronise the device before the clock stops (masks start on the GPU). The slow references
run ``--reference-repeats`` times. All methods must agree exactly; the table shows the largest
difference from the reference.

Usage:
    python benchmarks/bench_metrics.py                # CPU, and CUDA when available
    python benchmarks/bench_metrics.py --json out.json --threads 1
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from rvoslib.metrics import boundary_f_measure, boundary_tolerance, region_similarity
from rvoslib.metrics import reference as ref


def make_sequence(frames: int, height: int, width: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """(pred, gt) (T, H, W) bool: a moving ellipse and a shifted, noisy-edged prediction."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    gt = np.zeros((frames, height, width), dtype=bool)
    pred = np.zeros_like(gt)
    for t in range(frames):
        cy, cx = height / 2 + 60 * np.sin(t / 10), width / 3 + 3 * t
        ry, rx = 120 + 10 * np.cos(t / 7), 90
        gt[t] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        jitter = rng.normal(0, 0.04)
        pred[t] = ((yy - cy - 4) / (ry * (1 + jitter))) ** 2 + ((xx - cx + 3) / rx) ** 2 <= 1
    return pred, gt


def time_it(run: Callable[[], object], repeats: int, warmup: int, sync: Callable[[], None]):
    for _ in range(warmup):
        run()
    sync()
    times = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def official_cv2(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The official algorithm as davis2017-evaluation runs it (cv2.dilate), if cv2 exists."""
    try:
        import cv2
    except ImportError:
        return None
    radius = boundary_tolerance(0.008, *gt.shape[1:])
    footprint = ref.disk_footprint(radius).astype(np.uint8)
    j_values, f_values = [], []
    for p, g in zip(pred, gt):
        j_values.append(ref.db_eval_iou(g, p))
        pb, gb = ref.seg2bmap(p), ref.seg2bmap(g)
        p_match = np.count_nonzero(pb & cv2.dilate(gb.astype(np.uint8), footprint).astype(bool))
        g_match = np.count_nonzero(gb & cv2.dilate(pb.astype(np.uint8), footprint).astype(bool))
        precision = p_match / pb.sum() if pb.any() else 1.0
        recall = g_match / gb.sum() if gb.any() else 1.0
        total = precision + recall
        f_values.append(0.0 if total == 0 else 2 * precision * recall / total)
    return np.asarray(j_values), np.asarray(f_values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=80)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--reference-repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--skip-reference", action="store_true", help="skip the slow numpy one")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pred, gt = make_sequence(args.frames, args.height, args.width)
    no_sync = lambda: None  # noqa: E731
    rows = []

    def record(name: str, device: str, seconds: float, result) -> None:
        j_values, f_values = (np.asarray(torch.as_tensor(v).cpu()) for v in result)
        rows.append(
            {"method": name, "device": device, "seconds": seconds, "j": j_values, "f": f_values}
        )

    if not args.skip_reference:

        def reference_run():
            return (
                np.array([ref.db_eval_iou(g, p) for p, g in zip(pred, gt)]),
                np.array([ref.f_measure(p, g) for p, g in zip(pred, gt)]),
            )

        seconds, result = time_it(reference_run, args.reference_repeats, 0, no_sync)
        record("numpy reference (per frame)", "cpu", seconds, result)
    if official_cv2(pred[:1], gt[:1]) is not None:
        seconds, result = time_it(
            lambda: official_cv2(pred, gt), args.reference_repeats, 1, no_sync
        )
        record("official algorithm, cv2.dilate", "cpu", seconds, result)

    def torch_run(p, g):
        return lambda: (region_similarity(p, g), boundary_f_measure(p, g))

    cpu_pred, cpu_gt = torch.from_numpy(pred), torch.from_numpy(gt)
    seconds, result = time_it(torch_run(cpu_pred, cpu_gt), args.repeats, args.warmup, no_sync)
    record(f"rvoslib torch ({torch.get_num_threads()} threads)", "cpu", seconds, result)
    if torch.cuda.is_available():
        gpu_pred, gpu_gt = cpu_pred.cuda(), cpu_gt.cuda()
        seconds, result = time_it(
            torch_run(gpu_pred, gpu_gt), args.repeats, args.warmup, torch.cuda.synchronize
        )
        record("rvoslib torch", f"cuda ({torch.cuda.get_device_name()})", seconds, result)

    base = rows[0]
    print(f"J&F of a {args.frames}x{args.height}x{args.width} sequence; median of runs")
    print(
        f"{'method':34s} {'device':28s} {'total ms':>10s} {'ms/frame':>9s} {'speed-up':>9s} "
        f"{'max |diff|':>10s}"
    )
    for row in rows:
        diff = max(np.abs(row["j"] - base["j"]).max(), np.abs(row["f"] - base["f"]).max())
        row["max_abs_diff"] = float(diff)
        row["speedup"] = base["seconds"] / row["seconds"]
        print(
            f"{row['method']:34s} {row['device']:28s} {row['seconds'] * 1e3:10.1f} "
            f"{row['seconds'] * 1e3 / args.frames:9.2f} {row['speedup']:8.1f}x {diff:10.1e}"
        )
    if args.json:
        meta = {
            "frames": args.frames,
            "height": args.height,
            "width": args.width,
            "repeats": args.repeats,
            "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(),
        }
        out = [{k: v for k, v in row.items() if k not in ("j", "f")} for row in rows]
        with open(args.json, "w") as file:
            json.dump({"meta": meta, "results": out}, file, indent=2)


if __name__ == "__main__":
    main()
