"""Benchmark DAVIS J and F on one 480x854 sequence: the official algorithm vs rvoslib's.

Method: a synthetic sequence (a moving ellipse and a perturbed prediction, so the boundaries
are as sparse as real ones); every method computes per-frame J, then per-frame F, of all
frames. For each CPU thread count of ``--threads`` (torch's and OpenCV's), the methods are:

* ``numpy reference``: :mod:`rvoslib.metrics.reference`, the official functions transcribed
  frame by frame with a textbook dilation (slow; ``--reference-repeats`` runs);
* ``official (cv2.dilate)``: the official algorithms as davis2017-evaluation runs them:
  ``db_eval_iou`` on the whole (T, H, W) stack (``np.sum`` of boolean maps) for J, and
  ``f_measure`` frame by frame with ``cv2.dilate`` for F;
* ``rvoslib default``: ``region_similarity`` / ``boundary_f_measure`` as called by default
  (``num_threads=1``: one torch thread for the metric, whatever torch's setting);
* ``rvoslib num_threads=None``: the same on torch's thread count (the former default).

Each timing is the median of ``--repeats`` runs after ``--warmup`` runs; CUDA timings
synchronise the device. ``--busy N`` keeps N other processes spinning during the runs (a busy
machine: other workers, data loaders), where extra threads that wait for each other hurt. All
methods must agree exactly; the table shows the largest difference from the first method.

Usage:
    python benchmarks/bench_metrics.py                          # threads 1 and 2, CUDA too
    python benchmarks/bench_metrics.py --threads 1,2 --busy 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from rvoslib._io import atomic_write_text
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


def official_j(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """The official ``db_eval_iou`` as ``evaluation.py`` calls it: all frames at once, no void."""
    annotation, segmentation = gt.astype(bool), pred.astype(bool)
    keep = np.logical_not(np.zeros_like(segmentation))
    inters = np.sum((segmentation & annotation) & keep, axis=(-2, -1))
    union = np.sum((segmentation | annotation) & keep, axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        values = inters / union
    values[np.isclose(union, 0)] = 1
    return values


def official_f(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """The official ``f_measure`` algorithm, frame by frame with ``cv2.dilate``."""
    import cv2

    radius = boundary_tolerance(0.008, *gt.shape[1:])
    footprint = ref.disk_footprint(radius).astype(np.uint8)
    values = []
    for p, g in zip(pred, gt):
        pb, gb = ref.seg2bmap(p), ref.seg2bmap(g)
        p_match = np.count_nonzero(pb & cv2.dilate(gb.astype(np.uint8), footprint).astype(bool))
        g_match = np.count_nonzero(gb & cv2.dilate(pb.astype(np.uint8), footprint).astype(bool))
        precision = p_match / pb.sum() if pb.any() else 1.0
        recall = g_match / gb.sum() if gb.any() else 1.0
        total = precision + recall
        values.append(0.0 if total == 0 else 2 * precision * recall / total)
    return np.asarray(values)


def _spin() -> None:
    while True:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--reference-repeats", type=int, default=1)
    parser.add_argument("--threads", default="1,2", help="comma-separated CPU thread counts")
    parser.add_argument("--busy", type=int, default=0, help="spinning processes during the runs")
    parser.add_argument("--skip-reference", action="store_true", help="skip the slow numpy one")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    pred, gt = make_sequence(args.frames, args.height, args.width)
    cpu_pred, cpu_gt = torch.from_numpy(pred), torch.from_numpy(gt)
    no_sync = lambda: None  # noqa: E731
    try:
        import cv2
    except ImportError:
        cv2 = None
    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.busy)]
    for spinner in spinners:
        spinner.start()
    rows = []
    try:
        for threads in (int(t) for t in args.threads.split(",")):
            torch.set_num_threads(threads)
            if cv2 is not None:
                cv2.setNumThreads(threads)
            methods: list[tuple[str, str, Callable, Callable, int, int]] = []
            if not args.skip_reference:
                j_ref = lambda: np.array([ref.db_eval_iou(g, p) for p, g in zip(pred, gt)])  # noqa: E731
                f_ref = lambda: np.array([ref.f_measure(p, g) for p, g in zip(pred, gt)])  # noqa: E731
                methods.append(("numpy reference", "cpu", j_ref, f_ref, args.reference_repeats, 0))
            if cv2 is not None:
                methods.append(
                    (
                        "official (cv2.dilate)",
                        "cpu",
                        lambda: official_j(pred, gt),
                        lambda: official_f(pred, gt),
                        3,
                        1,
                    )
                )
            for label, kwargs in (
                ("rvoslib default", {}),
                ("rvoslib num_threads=None", {"num_threads": None}),
            ):
                methods.append(
                    (
                        label,
                        "cpu",
                        lambda kw=kwargs: region_similarity(cpu_pred, cpu_gt, **kw),
                        lambda kw=kwargs: boundary_f_measure(cpu_pred, cpu_gt, **kw),
                        args.repeats,
                        args.warmup,
                    )
                )
            for name, device, j_run, f_run, repeats, warmup in methods:
                for measure, run in (("J", j_run), ("F", f_run)):
                    seconds, result = time_it(run, repeats, warmup, no_sync)
                    values = np.asarray(torch.as_tensor(result).cpu())
                    rows.append(
                        {
                            "measure": measure,
                            "method": name,
                            "device": device,
                            "threads": threads,
                            "seconds": seconds,
                            "values": values,
                        }
                    )
        if torch.cuda.is_available():
            gpu_pred, gpu_gt = cpu_pred.cuda(), cpu_gt.cuda()
            for measure, run in (
                ("J", lambda: region_similarity(gpu_pred, gpu_gt)),
                ("F", lambda: boundary_f_measure(gpu_pred, gpu_gt)),
            ):
                seconds, result = time_it(run, args.repeats, args.warmup, torch.cuda.synchronize)
                rows.append(
                    {
                        "measure": measure,
                        "method": "rvoslib default",
                        "device": f"cuda ({torch.cuda.get_device_name()})",
                        "threads": None,
                        "seconds": seconds,
                        "values": np.asarray(result.cpu()),
                    }
                )
    finally:
        for spinner in spinners:
            spinner.terminate()
            spinner.join()

    official = {
        (row["measure"], row["threads"]): row["seconds"]
        for row in rows
        if row["method"] == "official (cv2.dilate)"
    }
    first = {}
    print(
        f"J and F of a {args.frames}x{args.height}x{args.width} sequence, {args.busy} busy "
        f"processes, {torch.get_num_interop_threads()} interop threads; median of runs"
    )
    print(
        f"{'':2s} {'method':26s} {'device':10s} {'threads':>7s} {'total ms':>9s} {'ms/frame':>9s} "
        f"{'official/this':>13s} {'max |diff|':>10s}"
    )
    for row in rows:
        base = first.setdefault(row["measure"], row["values"])
        row["max_abs_diff"] = float(np.abs(row["values"] - base).max())
        reference = official.get((row["measure"], row["threads"]))
        row["official_over_this"] = reference / row["seconds"] if reference else None
        ratio = f"{row['official_over_this']:12.2f}x" if reference else f"{'':13s}"
        print(
            f"{row['measure']:2s} {row['method']:26s} {row['device'][:10]:10s} "
            f"{row['threads'] or '':>7} {row['seconds'] * 1e3:9.1f} "
            f"{row['seconds'] * 1e3 / args.frames:9.2f} {ratio} {row['max_abs_diff']:10.1e}"
        )
    if args.json:
        meta = {
            "frames": args.frames,
            "height": args.height,
            "width": args.width,
            "repeats": args.repeats,
            "busy": args.busy,
            "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(),
        }
        out = [{k: v for k, v in row.items() if k != "values"} for row in rows]
        atomic_write_text(args.json, json.dumps({"meta": meta, "results": out}, indent=2) + "\n")


if __name__ == "__main__":
    main()
