"""Distributed helpers for ``torchrun`` launches (DDP, NCCL on GPU, gloo on CPU), used by
training and by evaluation (which must not import :mod:`rvoslib.training`)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

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


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a (possibly single-process) run.

    Attributes:
        rank: Global rank.
        local_rank: Rank on this node.
        world_size: Number of processes.
        device: The device this process trains on.
        process_group: Whether a process group was created (every ``torchrun`` launch, even
            with one process, so that ``--nproc_per_node=1`` runs the same DDP/NCCL code).
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    process_group: bool = False

    @property
    def is_distributed(self) -> bool:
        """Whether the run goes through a process group (DDP, collective operations)."""
        return self.world_size > 1 or self.process_group

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0 (which logs and writes checkpoints)."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every rank (no-op when not distributed)."""
        if self.is_distributed and dist.is_initialized():
            dist.barrier()


def _pick_device(device: str | torch.device | None, local_rank: int) -> torch.device:
    if device in (None, "auto"):
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    requested = str(device)
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ValueError(
            f"device {requested!r} is not a device name (cpu, cuda, cuda:1, auto)"
        ) from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {requested!r} requested but CUDA is not available on this machine "
            "(torch.cuda.is_available() is False); use device 'cpu' or 'auto'"
        )
    if resolved.type == "cuda" and resolved.index is None:
        resolved = torch.device("cuda", local_rank)
    return resolved


def elastic_restart_problem(environ: Mapping[str, str]) -> str | None:
    """Why a ``torchrun`` restart of this multi-node launch would fail, or ``None``.

    ``torchrun`` shares its rendezvous store with the workers unless
    ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``; after one node's workers fail and restart, the
    new process group can read the previous round's addresses from that store and fail to
    connect (pytorch/pytorch#135712). Only a launch of several nodes with ``--max-restarts``
    above 0 is concerned.

    Args:
        environ: A worker's environment (``os.environ``).
    """
    shared = environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    restarts = environ.get("TORCHELASTIC_MAX_RESTARTS", "0")
    nodes = environ.get("GROUP_WORLD_SIZE", "1")
    if not (shared and restarts.isdigit() and int(restarts) > 0):
        return None
    if not (nodes.isdigit() and int(nodes) > 1):
        return None
    return (
        f"torchrun runs {nodes} nodes with --max-restarts {restarts} and shares its rendezvous "
        "store with the workers (TORCHELASTIC_USE_AGENT_STORE=True): after a worker fails, the "
        "restarted process group can connect to the previous round's addresses and fail "
        "(pytorch/pytorch#135712); launch every torchrun with "
        "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 in its environment"
    )


def init_distributed(device: str | torch.device | None = "auto") -> DistributedContext:
    """Set up the process group when launched by ``torchrun`` (``RANK`` and ``WORLD_SIZE`` in
    the environment), also for one process.

    Uses NCCL for CUDA devices and gloo for the CPU. A plain ``python`` process gets none.
    Rank 0 warns when torchrun could not restart a failed node
    (:func:`elastic_restart_problem`).

    Args:
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, or a device.

    Returns:
        The :class:`DistributedContext` of this process.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = _pick_device(device, local_rank)
    launched = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    if launched and not dist.is_initialized():
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        dist.init_process_group(backend=backend)
        problem = elastic_restart_problem(os.environ)
        if problem is not None and rank == 0:
            warnings.warn(problem, RuntimeWarning, stacklevel=2)
    return DistributedContext(rank, local_rank, world_size, resolved, dist.is_initialized())


def all_reduce_mean(value: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """Average a tensor over ranks (returns it unchanged in a single process)."""
    if not context.is_distributed:
        return value
    reduced = value.detach().clone()
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced / context.world_size


def average_buffers(model: torch.nn.Module, context: DistributedContext) -> None:
    """Average floating buffers (BatchNorm statistics) over ranks, so every rank holds the
    same model (no-op in a single process)."""
    if not context.is_distributed:
        return
    for buffer in model.buffers():
        if buffer.is_floating_point():
            buffer.copy_(all_reduce_mean(buffer, context))


def broadcast_flag(flag: bool, context: DistributedContext) -> bool:
    """Rank 0's ``flag``, on every rank (``flag`` itself in a single process).

    For decisions that read files (does the run folder hold a checkpoint?), which ranks must
    take together even when they would see the files at different moments.
    """
    if not context.is_distributed:
        return flag
    value = torch.tensor([float(flag)], device=context.device)
    dist.broadcast(value, src=0)
    return bool(value.item())


def time_exhausted(started: float, limit: float | None, context: DistributedContext) -> bool:
    """Whether ``limit`` seconds have passed since ``started`` (``time.perf_counter``), agreed
    by every rank (any rank over the limit stops all, at the same step)."""
    import time

    if limit is None:
        return False
    over = torch.tensor(float(time.perf_counter() - started > limit))
    if context.is_distributed:
        over = over.to(context.device)
        dist.all_reduce(over, op=dist.ReduceOp.MAX)
    return bool(over.item())


class ShardSampler(Sampler[int]):
    """Deterministic shuffled (or ordered) shards of a dataset, one per rank, without padding.

    Unlike ``DistributedSampler`` no index is repeated, so evaluation never counts an item
    twice; for training the shards differ by at most one item. ``set_epoch`` reshuffles.

    Args:
        length: Dataset length.
        rank: This process's rank.
        world_size: Number of processes.
        shuffle: Shuffle with ``seed + epoch``.
        seed: Base seed.
    """

    def __init__(
        self, length: int, rank: int = 0, world_size: int = 1, shuffle: bool = True, seed: int = 0
    ) -> None:
        self.length, self.rank, self.world_size = length, rank, world_size
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch``."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.length, generator=generator).tolist()
        else:
            order = list(range(self.length))
        return iter(order[self.rank :: self.world_size])

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world_size))
