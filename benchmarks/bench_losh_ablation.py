"""LoSh's additions, one at a time, on the synthetic long-expression job (same seed, budget).

Method: ``rvos train --config losh_synthetic`` (``rvoslib/recipes/losh_synthetic.yaml``) with
the overrides of each variant, one run at a time; held-out J&F of the best epoch, and J per
kind from ``rvos eval --by-kind`` on the run's held-out videos with long expressions. Writes
``OUT/losh_ablation.json`` and prints a Markdown table.

Example::

    python benchmarks/bench_losh_ablation.py --out runs/losh_ablation -- --max-time 300
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

#: name -> (what it is, model overrides)
VARIANTS = {
    "mttr": ("MTTR alone (no short branch)", {"joint_prediction": False}),
    "joint": ("+ joint prediction and intersection loss", {"cross_attention": None}),
    "joint+xattn": ("+ long-short cross-attention", {}),
    "joint+xattn+flow": ("+ flow consistency", {"criterion": {"flow_weight": 1.0}}),
}


def _rvos(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "rvoslib", *argv], capture_output=True, text=True, env=env
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", default="runs/losh_ablation")
    parser.add_argument(
        "train_args", nargs="*", help="more rvos train options for every variant (after --)"
    )
    args = parser.parse_args(argv)
    rows = []
    for name in args.variants:
        label, overrides = VARIANTS[name]
        out = Path(args.out) / name
        started = time.perf_counter()
        train = _rvos(
            "train", "--config", "losh_synthetic", "--overrides", json.dumps(overrides),
            "--out", str(out), "--overwrite", "--no-progress", "--overlays", "0", *args.train_args,
        )  # fmt: skip
        wall = time.perf_counter() - started
        if train.returncode not in (0, 3):
            raise RuntimeError(f"rvos train {name} failed:\n{train.stderr[-2000:]}")
        evaluation = _rvos(
            "eval", "--checkpoint", str(out / "best"), "--dataset", "synthetic", "--by-kind",
            "--json", "--long-expressions", "--val-videos", "96", "--val-frames", "8",
            "--size", "64",
        )  # fmt: skip
        summary = json.loads(evaluation.stdout.strip().splitlines()[-1])
        metrics = json.loads((out / "metrics.json").read_text())
        rows.append({"variant": name, "what": label, "JF": summary["JF"], "J": summary["J"],
                     "best_JF": metrics["best_JF"], "wall_time_s": round(wall, 1)})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "losh_ablation.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("| variant | held-out J&F | J | wall |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['what']} | {row['JF']:.3f} | {row['J']:.3f} | {row['wall_time_s']:.0f} s |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
