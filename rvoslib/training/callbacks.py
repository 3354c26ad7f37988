"""Hooks that run at fixed points of :class:`~rvoslib.training.Trainer`'s loop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rvoslib.training.trainer import Trainer

__all__ = ["Callback", "LambdaCallback", "TensorBoardCallback", "tensorboard_callback"]


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


class TensorBoardCallback(Callback):
    """Log the step loss and learning rate (every ``log_every`` steps) and every value of the
    epoch records to TensorBoard.

    Args:
        writer: A ``torch.utils.tensorboard.SummaryWriter``.
        log_every: Steps between step logs (each one syncs the host once).
    """

    def __init__(self, writer: Any, log_every: int = 10) -> None:
        self.writer, self.log_every = writer, log_every

    def on_step_end(self, trainer: Trainer, step: int, logs: dict[str, Any]) -> None:
        if step % self.log_every == 0:
            self.writer.add_scalar("step/loss", float(logs["loss"]), step)
            self.writer.add_scalar("step/lr", float(logs["lr"]), step)

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: dict[str, Any]) -> None:
        for key, value in record.items():
            if isinstance(value, (int, float)) and key != "epoch":
                self.writer.add_scalar(f"epoch/{key}", value, epoch)
        self.writer.flush()

    def on_train_end(self, trainer: Trainer) -> None:
        self.writer.close()


def tensorboard_callback(folder: Any, log_every: int = 10) -> list[Callback]:
    """``[TensorBoardCallback]`` writing to ``folder`` when TensorBoard is installed, else
    ``[]`` (TensorBoard is optional: ``pip install tensorboard``)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return []
    return [TensorBoardCallback(SummaryWriter(str(folder)), log_every)]
