"""The pieces of one training step: the model's forward and loss terms as one module, a guard
that undoes what a non-finite step did to the buffers, and the epoch's running sums."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from rvoslib._distributed import DistributedContext, all_reduce_mean

__all__ = [
    "BufferGuard",
    "NonFiniteLossError",
    "RunningSums",
    "TrainingStep",
    "amp_dtype",
    "autocast",
    "default_collator",
    "finite_or_none",
    "make_loader",
    "progress_bar",
    "reseed",
    "seed_worker",
    "steps_per_epoch",
    "tensor_entries",
]


class NonFiniteLossError(RuntimeError):
    """Raised when too many consecutive steps produce a NaN or infinite loss or gradient, or
    when a checkpoint would hold non-finite values."""


class TrainingStep(nn.Module):
    """The model's training forward as one module, so DDP and ``torch.compile`` wrap it whole.

    ``forward(batch)`` returns the model's weighted loss terms and the referred object's
    logits ``(B, T, 1, H, W)``; a ``criterion`` replaces the model's terms with
    ``{"loss": criterion(logits, masks, valid)}``.

    Args:
        model: A :class:`~rvoslib.models.SegmentationModel`.
        criterion: Optional replacement of the model's loss terms.
    """

    def __init__(self, model: nn.Module, criterion: Callable[..., torch.Tensor] | None = None):
        super().__init__()
        self.model, self.criterion = model, criterion

    def forward(
        self, batch: Mapping[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        outputs = self.model.forward_batch(batch)
        logits = self.model.referred_logits(outputs)
        if self.criterion is not None:
            return {"loss": self.criterion(logits, batch["masks"], batch.get("valid"))}, logits
        return self.model.losses(outputs, batch), logits


class BufferGuard:
    """A copy of a module's buffers (BatchNorm statistics and counters) to restore after a step
    whose loss or gradient was not finite: its forward passes have already changed them.

    Args:
        module: The model.

    Example:
        >>> norm = nn.BatchNorm1d(2)
        >>> guard = BufferGuard(norm)
        >>> _ = norm(torch.tensor([[1.0, float("nan")], [2.0, 3.0]]))
        >>> guard.restore()
        >>> norm.running_var.tolist(), int(norm.num_batches_tracked)
        ([1.0, 1.0], 0)
    """

    def __init__(self, module: nn.Module) -> None:
        self.buffers = [b for b in module.buffers()]
        self.saved = [b.detach().clone() for b in self.buffers]

    def save(self) -> None:
        """Remember the buffers' current values."""
        if self.buffers:
            torch._foreach_copy_(self.saved, [b.detach() for b in self.buffers])

    def restore(self) -> None:
        """Put the remembered values back."""
        if self.buffers:
            with torch.no_grad():
                torch._foreach_copy_(self.buffers, self.saved)


class RunningSums:
    """Device-side sums of an epoch's loss terms (no host sync until :meth:`means`)."""

    def __init__(self) -> None:
        self.terms: dict[str, torch.Tensor] = {}
        self.micro_batches = 0
        self.steps = 0

    def add_terms(self, terms: Mapping[str, torch.Tensor]) -> None:
        """Add one micro-batch's values; non-finite values count as 0 (their step is skipped)."""
        for name, value in terms.items():
            value = value.detach().float()
            value = torch.where(torch.isfinite(value), value, torch.zeros_like(value))
            self.terms[name] = self.terms.get(name, 0) + value
        self.micro_batches += 1

    def add_step(self, grad_norm: torch.Tensor) -> None:
        """Add one optimizer step's gradient norm."""
        self.terms["grad_norm"] = self.terms.get("grad_norm", 0) + grad_norm
        self.steps += 1

    def postfix(self, lr: float) -> dict[str, str]:
        """Progress-bar values (syncs the host)."""
        shown = {
            k: f"{(v / max(self.micro_batches, 1)).item():.4f}"
            for k, v in self.terms.items()
            if k != "grad_norm"
        }
        if "grad_norm" in self.terms:
            shown["gnorm"] = f"{(self.terms['grad_norm'] / max(self.steps, 1)).item():.2f}"
        shown["lr"] = f"{lr:.2e}"
        return shown

    def means(self, context: DistributedContext) -> dict[str, float]:
        """Means over micro-batches (gradient norm: over steps), averaged over ranks."""
        names = sorted(self.terms)
        if not names:
            return {}
        values = [torch.as_tensor(self.terms[n], dtype=torch.float32).cpu() for n in names]
        counts = torch.tensor([float(self.micro_batches), float(self.steps)])
        totals = all_reduce_mean(
            torch.cat([torch.stack(values), counts]).to(context.device), context
        )
        totals = totals.cpu()
        micro, steps = max(float(totals[-2]), 1.0), max(float(totals[-1]), 1.0)
        return {
            name: float(totals[i]) / (steps if name == "grad_norm" else micro)
            for i, name in enumerate(names)
        }


def finite_or_none(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by ``None`` (recursively), for strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def reseed(seed: int, epoch: int, rank: int) -> None:
    """Seed torch, NumPy and Python for one epoch of one rank (resume is then exact)."""
    value = seed * 1_000_003 + epoch * 1009 + rank
    torch.manual_seed(value)
    np.random.seed(value % 2**32)
    random.seed(value)


def seed_worker(worker_id: int) -> None:
    """DataLoader worker seeding from torch's per-worker seed."""
    value = torch.initial_seed() % 2**32
    np.random.seed(value)
    random.seed(value)


def tensor_entries(batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The tensor entries of a batch (strings would make ``torch.compile`` recompile)."""
    return {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}


def default_collator(model: nn.Module) -> Any:
    """The collator of what the model reads (:func:`rvoslib.data.collator_for` of
    ``model.inputs``: the tokenizer for a text model, the first-frame mask for a VOS one)."""
    from rvoslib.data import collator_for

    return collator_for(model.inputs)


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``TrainerConfig.amp`` on ``device`` (``None``: float32)."""
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" else "off"
    if amp == "fp16" and device.type != "cuda":
        raise ValueError(f"amp='fp16' needs a CUDA device, got {device}")
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def steps_per_epoch(length: int, config: Any, context: DistributedContext) -> int:
    """Optimizer steps in an epoch of ``length`` items on each of the ranks."""
    per_rank = math.ceil(length / context.world_size)
    return max(1, math.ceil(math.ceil(per_rank / config.batch_size) / config.accumulation_steps))


def make_loader(
    dataset: Any,
    config: Any,
    context: DistributedContext,
    epoch: int,
    collate_fn: Any,
    device: torch.device,
) -> Any:
    """The training DataLoader of one epoch: this rank's shard, shuffled per epoch."""
    from torch.utils.data import DataLoader

    from rvoslib._distributed import ShardSampler

    sampler = ShardSampler(len(dataset), context.rank, context.world_size, True, config.seed)
    sampler.set_epoch(epoch)
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        collate_fn=collate_fn,
        num_workers=config.num_workers,
        pin_memory=device.type == "cuda",
        worker_init_fn=seed_worker,
        generator=torch.Generator().manual_seed(config.seed * 7919 + epoch),
    )


def autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    """``torch.autocast`` to ``dtype`` on ``device``, or a no-op context for ``None``."""
    import contextlib

    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def progress_bar(iterable: Any, description: str, enabled: bool) -> Any:
    """A tqdm bar over ``iterable`` when ``enabled``, else the iterable itself."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=description, leave=False, dynamic_ncols=True)
