"""Peak memory under long work: ``rvos predict`` on a short and a 10x longer video, and
``rvos eval`` on a small and a 10x larger synthetic set.

Method: a ``tiny`` model (seeded, random weights) saved once; a frame folder of JPEG frames
(moving square, ``--height`` x ``--width``); each command runs in a fresh Python process that
calls ``rvoslib.cli.main`` and reports its own peak resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``), so the figures hold the interpreter, torch and
the model as well as the work. Work that keeps what it has done in memory grows with the
length; bounded work stays flat. Prints a Markdown table and writes ``OUT/memory.json``.

Example::

    python benchmarks/bench_memory.py --out runs/memory
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

_CHILD = """
import json, resource, sys, time
from rvoslib.cli import main
started = time.perf_counter()
code = main(sys.argv[1:])
print(json.dumps({"code": code, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                  / 1024, "wall_s": time.perf_counter() - started}))
"""


def _measure(argv: list[str]) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *argv], capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        raise RuntimeError(f"rvos {' '.join(argv[:1])} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _frames(folder: Path, count: int, height: int, width: int) -> Path:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        image = np.full((height, width, 3), 40, np.uint8)
        x = (index * 3) % (width - 24)
        image[height // 3 : height // 3 + 24, x : x + 24] = (200, 30, 30)
        Image.fromarray(image).save(folder / f"{index:05d}.jpg", quality=90)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/memory")
    parser.add_argument("--frames", type=int, nargs=2, default=[300, 3000])
    parser.add_argument("--videos", type=int, nargs=2, default=[100, 1000])
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--width", type=int, default=160)
    args = parser.parse_args(argv)

    import torch

    from rvoslib import create_model

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "tiny"
    torch.manual_seed(0)
    create_model("tiny").save_pretrained(checkpoint)
    rows = []
    for count in args.frames:
        video = _frames(out / f"video-{count}", count, args.height, args.width)
        started = time.perf_counter()
        result = _measure([
            "predict", "--checkpoint", str(checkpoint), "--video", str(video),
            "--text", "the red square", "--out", str(out / f"predicted-{count}"),
            "--overwrite", "--size", "64", "--device", "cpu",
        ])  # fmt: skip
        rows.append({"command": "rvos predict", "size": f"{count} frames", **result,
                     "total_s": round(time.perf_counter() - started, 1)})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    for count in args.videos:
        result = _measure([
            "eval", "--checkpoint", str(checkpoint), "--dataset", "synthetic",
            "--val-videos", str(count), "--val-frames", "8", "--size", "64", "--device", "cpu",
        ])  # fmt: skip
        rows.append({"command": "rvos eval", "size": f"{count} videos", **result})
        print(json.dumps(rows[-1]), flush=True)
    (out / "memory.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("| command | work | peak RSS (MiB) | wall (s) |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['command']} | {row['size']} | {row['peak_rss_mib']:.0f} | "
              f"{row['wall_s']:.0f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
