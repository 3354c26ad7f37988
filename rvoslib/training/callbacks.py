"""Hooks that run at fixed points of :class:`~rvoslib.training.Trainer`'s loop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rvoslib.training.trainer import Trainer

__all__ = ["Callback", "LambdaCallback"]


class Callback:
    """Base class: override any hook. Set ``trainer.should_stop = True`` to stop after the epoch.

    Hooks run on every rank; use ``trainer.context.is_main`` to act on rank 0 only.
    """

    def on_train_start(self, trainer: Trainer) -> None:
        """Before the first epoch (after a resume, too)."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Before the epoch's first batch."""

    def on_step_end(self, trainer: Trainer, step: int, logs: dict[str, Any]) -> None:
        """After each optimizer step; ``logs`` holds lazily computed tensors (no host sync)."""

    def on_validation_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        """After validation, with the reduced metrics (``J``, ``F``, ``JF``, ``val_loss``)."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: dict[str, Any]) -> None:
        """After the epoch's record (the line of the history file) is complete."""

    def on_train_end(self, trainer: Trainer) -> None:
        """After the last epoch."""


class LambdaCallback(Callback):
    """A callback from plain functions, e.g. ``LambdaCallback(on_epoch_end=print_record)``.

    Args:
        **hooks: Hook name -> function with that hook's arguments.

    Raises:
        ValueError: a name is not a hook.
    """

    def __init__(self, **hooks: Any) -> None:
        valid = [name for name in vars(Callback) if name.startswith("on_")]
        unknown = sorted(set(hooks) - set(valid))
        if unknown:
            raise ValueError(f"unknown hooks {unknown}; valid hooks: {valid}")
        for name, function in hooks.items():
            setattr(self, name, function)
