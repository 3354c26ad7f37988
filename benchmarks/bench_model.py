"""Benchmark the model's forward, backward, train step and inference per mode.

    python benchmarks/bench_model.py --device cuda --preset seed-r50 --batch 4 --frames 8 --size 384
    python benchmarks/bench_model.py --device cpu --quick

The same as ``rvos bench`` (see rvoslib/benchmark.py for the method); the results of a run are
recorded in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import sys

from rvoslib.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
