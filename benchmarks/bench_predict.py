"""Throughput of ``rvos predict``: decoding alone, model alone, and end to end (frames/s).

Method: each measurement is repeated ``--repeats`` times after ``--warmup`` untimed runs and
the median is reported; CUDA work is synchronised before the clock stops.

* ``decode``: iterate the video's frames (parallel decoding threads, or GPU ``decode_jpeg``
  with ``--decode-device cuda``), nothing else.
* ``model``: :class:`~rvoslib.inference.VideoPredictor` on frames already in memory (a
  ``(T, 3, H, W)`` uint8 tensor): preprocessing, model, overlap averaging, resizing back and
  thresholding, without decoding.
* ``end_to_end``: ``VideoPredictor.predict_iter`` on the folder/file, decoding overlapped with
  the model, masks moved to the CPU (what ``rvos predict`` does minus PNG writing), and the
  ``rvos predict`` command itself (PNG writing included) with ``--cli``.

Example::

    python benchmarks/bench_predict.py \\
        --video ../shared/data/davis-mini/JPEGImages/480p/blackswan --preset tiny --size 360 --json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_fps(run, num_frames: int, device: torch.device, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        run()
        _sync(device)
        times.append(time.perf_counter() - start)
    return num_frames / statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--video", required=True, help="frame folder or video file")
    parser.add_argument("--preset", default="tiny", help="model preset (random weights)")
    parser.add_argument("--checkpoint", default=None, help="model folder instead of --preset")
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder for --preset")
    parser.add_argument("--device", default=None)
    parser.add_argument("--size", type=int, default=360)
    parser.add_argument("--clip-len", type=int, default=8)
    parser.add_argument("--overlap", type=int, default=2)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--decode-device", default="cpu")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cli", action="store_true", help="also time the rvos predict command")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    import rvoslib
    from rvoslib.inference import VideoPredictor
    from rvoslib.video_io import open_video, read_video

    if args.checkpoint:
        model = rvoslib.RVOSModel.from_pretrained(args.checkpoint)
    else:
        overrides = {"text_encoder": {"tokenizer": args.tokenizer}} if args.tokenizer else {}
        model = rvoslib.create_model(args.preset, **overrides)
    predictor = VideoPredictor(
        model,
        device=args.device,
        clip_len=args.clip_len,
        overlap=args.overlap,
        size=args.size,
        num_workers=args.workers,
        decode_device=args.decode_device,
    )
    device = predictor.device
    expression = ["the object in the middle"]
    frames = read_video(args.video)
    num_frames = int(frames.shape[0])

    def decode() -> None:
        for _ in open_video(args.video, num_workers=args.workers, decode_device=args.decode_device):
            pass

    def model_only() -> None:
        for _ in predictor.predict_iter(frames, expression):
            pass

    def end_to_end() -> None:
        for _ in predictor.predict_iter(args.video, expression):
            pass

    timing = {"warmup": args.warmup, "repeats": args.repeats}
    results = {
        "decode_fps": _median_fps(decode, num_frames, device, **timing),
        "model_fps": _median_fps(model_only, num_frames, device, **timing),
        "end_to_end_fps": _median_fps(end_to_end, num_frames, device, **timing),
    }
    if args.cli:
        from rvoslib.cli import main as rvos

        with tempfile.TemporaryDirectory() as folder:
            checkpoint = args.checkpoint or str(Path(folder) / "model")
            if not args.checkpoint:
                model.save_pretrained(checkpoint)
            command = [
                "predict", "--checkpoint", checkpoint, "--video", args.video,
                "--text", expression[0], "--out", str(Path(folder) / "out"),
                "--size", str(args.size), "--clip-len", str(args.clip_len),
                "--overlap", str(args.overlap), "--workers", str(args.workers), "--no-progress",
            ]  # fmt: skip
            if args.device:
                command += ["--device", args.device]
            results["cli_fps"] = _median_fps(lambda: rvos(command), num_frames, device, **timing)
    report = {
        "video": args.video,
        "frames": num_frames,
        "height": int(frames.shape[-2]),
        "width": int(frames.shape[-1]),
        "model": args.checkpoint or args.preset,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cpu_threads": torch.get_num_threads(),
        "size": args.size,
        "clip_len": args.clip_len,
        "overlap": args.overlap,
        "workers": args.workers,
        "decode_device": args.decode_device,
        "dtype": str(predictor.dtype),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "command": " ".join(sys.argv),
        **{key: round(value, 1) for key, value in results.items()},
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key:>16}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
