"""The optimizer and learning-rate schedule of the :class:`~rvoslib.training.Trainer`.

AdamW with one learning-rate multiplier per parameter group the model declares
(:meth:`SegmentationModel.parameter_groups`: ``backbone``, ``text``, ``other``), no weight decay on
biases and norm parameters; a schedule of per-step factors (``LambdaLR``): cosine annealing with
warm restarts (SGDR) over fractional epochs, or drops at given epochs (:class:`StepDrops`), after
an optional linear warm-up (``SequentialLR``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

__all__ = ["CosineRestarts", "StepDrops", "build_optimizer", "build_scheduler", "from_config"]


def build_optimizer(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float],
    multipliers: dict[str, float],
    fused: bool = False,
) -> torch.optim.AdamW:
    """AdamW over the model's parameter groups.

    Args:
        model: An :class:`~rvoslib.models.SegmentationModel` (its ``parameter_groups()`` names the
            groups; any other module is one ``other`` group).
        lr: Base learning rate.
        weight_decay: Weight decay of matrices and kernels (biases and norms get none).
        betas: AdamW betas.
        multipliers: Learning-rate multiplier per group name (missing names: 1).
        fused: Use the fused CUDA implementation.

    Returns:
        The optimizer; each param group has a ``name`` such as ``"backbone_no_decay"``.
    """
    named = (
        model.parameter_groups()
        if hasattr(model, "parameter_groups")
        else {"other": [p for p in model.parameters() if p.requires_grad]}
    )
    param_groups: list[dict[str, Any]] = []
    for name, params in named.items():
        for decay in (True, False):
            chosen = [p for p in params if (p.ndim > 1) == decay]
            if chosen:
                param_groups.append(
                    {
                        "params": chosen,
                        "lr": lr * multipliers.get(name, 1.0),
                        "weight_decay": weight_decay if decay else 0.0,
                        "name": name if decay else f"{name}_no_decay",
                    }
                )
    return torch.optim.AdamW(param_groups, lr=lr, betas=betas, fused=fused or None)


class CosineRestarts:
    """Learning-rate factor of SGDR (cosine annealing with warm restarts) at an optimizer step.

    The epoch position is ``step / steps_per_epoch``; cycles last ``t_0``, ``t_0 * t_mult``, ...
    epochs; within a cycle the learning rate goes from ``base`` to ``eta_min`` along a half
    cosine. The factor is ``lr / base`` for a group whose base rate is ``base``.

    Args:
        steps_per_epoch: Optimizer steps per epoch.
        t_0: Epochs of the first cycle.
        t_mult: Growth factor of the cycle length.
        eta_min: Lowest learning rate (absolute).
        base_lr: The group's base learning rate.

    Example:
        >>> schedule = CosineRestarts(steps_per_epoch=10, t_0=1, t_mult=1, eta_min=0.0, base_lr=1.0)
        >>> [round(schedule(step), 3) for step in (0, 5, 10)]
        [1.0, 0.5, 1.0]
    """

    def __init__(
        self, steps_per_epoch: int, t_0: int, t_mult: int, eta_min: float, base_lr: float
    ) -> None:
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.t_0, self.t_mult, self.eta_min, self.base_lr = t_0, t_mult, eta_min, base_lr

    def __call__(self, step: int) -> float:
        epoch = step / self.steps_per_epoch
        if self.t_mult == 1:
            position, length = epoch % self.t_0, self.t_0
        else:
            cycle = int(math.log(epoch / self.t_0 * (self.t_mult - 1) + 1, self.t_mult))
            start = self.t_0 * (self.t_mult**cycle - 1) / (self.t_mult - 1)
            position, length = epoch - start, self.t_0 * self.t_mult**cycle
        if self.base_lr <= 0:
            return 0.0
        floor = min(self.eta_min / self.base_lr, 1.0)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * position / length))


class StepDrops:
    """Learning-rate factor of a step schedule at an optimizer step: ``factor ** k`` in an
    epoch after ``k`` of the ``drops`` (PyTorch's ``MultiStepLR`` stepped once per epoch).

    Args:
        steps_per_epoch: Optimizer steps per epoch.
        drops: Epochs at which the rate drops (epoch ``e`` counts from 0: a drop at 8 lowers
            the rate of the 9th epoch on).
        factor: Factor of each drop.

    Example:
        >>> schedule = StepDrops(steps_per_epoch=10, drops=[1, 2], factor=0.1)
        >>> [round(schedule(step), 3) for step in (0, 9, 10, 25)]
        [1.0, 1.0, 0.1, 0.01]
    """

    def __init__(self, steps_per_epoch: int, drops: list[int], factor: float) -> None:
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.drops, self.factor = sorted(int(d) for d in drops), float(factor)

    def __call__(self, step: int) -> float:
        epoch = step // self.steps_per_epoch
        return self.factor ** sum(1 for drop in self.drops if drop <= epoch)


class _LinearWarmup:
    """Factor ``(step + 1) / steps`` (picklable, so the schedule's state can be saved)."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def __call__(self, step: int) -> float:
        return min(1.0, (step + 1) / self.steps)


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    steps_per_epoch: int,
    t_0: int,
    t_mult: int,
    eta_min: float,
    warmup_steps: int = 0,
    lr_drops: list[int] | None = None,
    lr_drop_factor: float = 0.1,
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step schedule: linear warm-up for ``warmup_steps`` steps, then SGDR (or the step
    schedule of ``lr_drops``).

    Call ``scheduler.step()`` after every optimizer step.

    Args:
        optimizer: The optimizer (its groups' current ``lr`` are the base rates).
        steps_per_epoch: Optimizer steps per epoch.
        t_0: Epochs of the first cosine cycle.
        t_mult: Growth factor of the cycle length.
        eta_min: Lowest learning rate of the cosine schedule.
        warmup_steps: Steps of linear warm-up (0: none).
        lr_drops: Epochs of the drops of a step schedule (:class:`StepDrops`) instead of SGDR.
        lr_drop_factor: Factor of each drop.
    """
    from torch.optim.lr_scheduler import LambdaLR, SequentialLR

    if lr_drops:
        cosine = LambdaLR(optimizer, StepDrops(steps_per_epoch, lr_drops, lr_drop_factor))
    else:
        cosine = LambdaLR(
            optimizer,
            [
                CosineRestarts(steps_per_epoch, t_0, t_mult, eta_min, group["lr"])
                for group in optimizer.param_groups
            ],
        )
    if warmup_steps <= 0:
        return cosine
    warmup = LambdaLR(optimizer, _LinearWarmup(warmup_steps))
    return SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_steps])


def from_config(
    model: nn.Module, config: Any, steps_per_epoch: int, device: torch.device
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The optimizer and schedule a :class:`~rvoslib.training.TrainerConfig` describes (the
    fused AdamW on CUDA with ``fast`` or ``compile``)."""
    from rvoslib.training import fast

    optimizer = build_optimizer(
        model,
        lr=config.lr,
        weight_decay=config.weight_decay,
        betas=config.betas,
        multipliers={"backbone": config.backbone_lr_mult, "text": config.text_lr_mult},
        fused=(config.fast or config.compile) and fast.use_fused_optimizer(device),
    )
    scheduler = build_scheduler(
        optimizer,
        steps_per_epoch=steps_per_epoch,
        t_0=config.t_0,
        t_mult=config.t_mult,
        eta_min=config.eta_min,
        warmup_steps=config.warmup_steps,
        lr_drops=config.lr_drops,
        lr_drop_factor=config.lr_drop_factor,
    )
    return optimizer, scheduler
