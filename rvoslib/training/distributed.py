"""Distributed training helpers for ``torchrun`` launches (defined in :mod:`rvoslib._distributed`,
which evaluation shares)."""

from rvoslib._distributed import (
    DistributedContext,
    ShardSampler,
    all_reduce_mean,
    average_buffers,
    broadcast_flag,
    elastic_restart_problem,
    init_distributed,
    time_exhausted,
)

__all__ = [
    "DistributedContext",
    "ShardSampler",
    "all_reduce_mean",
    "average_buffers",
    "broadcast_flag",
    "elastic_restart_problem",
    "init_distributed",
    "time_exhausted",
]
