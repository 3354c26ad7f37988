"""The main job for every preset: held-out J&F overall and per kind, wall time, parameters.

Method: for each preset, ``rvos train --config RECIPE --preset P --out OUT/P`` (one process at a
time, wall time measured around it), then ``rvos eval --checkpoint OUT/P/best --dataset synthetic
--by-kind`` on the recipe's held-out videos (same seed, count, frames and attributes as the
run's validation; ``--eval-videos`` takes more of the same seed's videos, so that rare kinds
such as motion alone have enough samples). ``--control`` adds a ``--shuffle-text`` run per
preset (``--control-only``: only that). The table is printed in Markdown and written to
``OUT/main_job.json``.

Example::

    python benchmarks/bench_main_job.py --presets tiny mttr-tiny referformer-tiny soc-tiny \\
        --out runs/main_job
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

KINDS = (
    "color", "shape", "motion", "position", "color+shape", "color+motion", "color+position",
    "shape+motion", "shape+position", "motion+position",
)  # fmt: skip


def _rvos(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "rvoslib", *argv], capture_output=True, text=True, env=env
    )


def run_preset(preset: str, args: argparse.Namespace, control: bool) -> dict:
    """Train and evaluate one preset; returns its row."""
    name = preset + args.suffix + ("-control" if control else "")
    out = Path(args.out) / name
    started = time.perf_counter()
    extra = ["--shuffle-text"] if control else []
    train = _rvos(
        "train", "--config", args.config, "--preset", preset, "--out", str(out), "--overwrite",
        "--no-progress", "--overlays", "0", *extra, *args.train_args,
    )  # fmt: skip
    wall = time.perf_counter() - started
    if train.returncode not in (0, 3):
        raise RuntimeError(f"rvos train {preset} failed:\n{train.stderr[-2000:]}")
    import yaml

    data = yaml.safe_load((out / "recipe.yaml").read_text())["data"]
    evaluation = _rvos(
        "eval", "--checkpoint", str(out / "best"), "--dataset", "synthetic", "--by-kind", "--json",
        "--val-videos", str(args.eval_videos or data["val_videos"]),
        "--val-frames", str(data["val_frames"]),
        "--size", str(data["size"]), "--seed", str(args.seed),
        "--attributes", json.dumps(data["attributes"]),
    )  # fmt: skip
    if evaluation.returncode != 0:
        raise RuntimeError(f"rvos eval {preset} failed:\n{evaluation.stderr[-2000:]}")
    summary = json.loads(evaluation.stdout.strip().splitlines()[-1])
    metrics = json.loads((out / "metrics.json").read_text())
    from rvoslib.models import RVOSModel

    trained = RVOSModel.from_pretrained(out / "best")  # the model as trained (with overrides)
    parameters = sum(p.numel() for p in trained.parameters())
    return {
        "preset": name,
        "JF": summary["JF"],
        "J": summary["J"],
        "F": summary["F"],
        "by_kind_J": {k: v["J"] for k, v in summary["by_kind"].items()},
        "wall_time_s": round(wall, 1),
        "steps": metrics["steps"],
        "parameters": parameters,
    }


def table(rows: list[dict]) -> str:
    """The Markdown table of the rows."""
    header = ["preset", "J&F", "J", "F", *[f"J {k}" for k in KINDS], "wall", "steps", "params"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        kinds = [f"{row['by_kind_J'][k]:.2f}" if k in row["by_kind_J"] else "-" for k in KINDS]
        minutes, seconds = divmod(round(row["wall_time_s"]), 60)
        lines.append(
            f"| {row['preset']} | {row['JF']:.3f} | {row['J']:.3f} | {row['F']:.3f} | "
            + " | ".join(kinds)
            + f" | {minutes}:{seconds:02d} | {row['steps']} | {row['parameters'] / 1e6:.2f} M |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=["tiny"])
    parser.add_argument("--config", default="quickstart", help="the recipe (default: quickstart)")
    parser.add_argument("--control", action="store_true", help="also run --shuffle-text")
    parser.add_argument(
        "--control-only", action="store_true", help="run only the --shuffle-text control"
    )
    parser.add_argument("--seed", type=int, default=0, help="the recipe's seed")
    parser.add_argument(
        "--eval-videos",
        type=int,
        default=None,
        help="held-out videos of the per-kind evaluation (default: the recipe's val_videos); "
        "the first val_videos of them are the run's own validation videos",
    )
    parser.add_argument("--out", default="runs/main_job")
    parser.add_argument(
        "--suffix", default="", help="appended to each row's name (runs with other options)"
    )
    parser.add_argument("train_args", nargs="*", help="more rvos train options (after --)")
    args = parser.parse_args(argv)
    rows = []
    for preset in args.presets:
        runs = (True,) if args.control_only else (False, True) if args.control else (False,)
        for control in runs:
            rows.append(run_preset(preset, args, control))
            print(json.dumps(rows[-1]), flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "main_job.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
