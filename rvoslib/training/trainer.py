"""A short, explicit training loop for every RVOS architecture: read it top to bottom.

``fit`` runs epochs of ``train_epoch`` (forward, the model's own loss terms, backward,
accumulation, clipping, optimizer and schedule steps), ``validate`` (official J and F, through
:func:`rvoslib.evaluation.evaluate`), and ``save`` (atomic ``last/`` and ``best/`` checkpoints
with everything needed to resume exactly). The Trainer knows no architecture: the model returns
its training outputs (:meth:`SegmentationModel.forward_batch`) and its named loss terms
(:meth:`SegmentationModel.losses`); the Trainer sums the terms and logs each one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from rvoslib._distributed import (
    DistributedContext,
    average_buffers,
    broadcast_flag,
    init_distributed,
    time_exhausted,
)
from rvoslib._io import atomic_write_text, recover_directory
from rvoslib.evaluation import default_protocol, evaluate, move_to_device
from rvoslib.metrics.batch import batch_iou
from rvoslib.models.base import WEIGHTS_FILE, SegmentationModel
from rvoslib.training import checkpoint, fast, logs, optim
from rvoslib.training.callbacks import Callback, tensorboard_callback
from rvoslib.training.config import TrainerConfig
from rvoslib.training.memory import enable_activation_checkpointing
from rvoslib.training.step import (
    BufferGuard,
    NonFiniteLossError,
    RunningSums,
    TrainingStep,
    amp_dtype,
    autocast,
    default_collator,
    finite_or_none,
    make_loader,
    progress_bar,
    reseed,
    steps_per_epoch,
    tensor_entries,
)

__all__ = ["AUTO_RESUME", "HISTORY_FILE", "NonFiniteLossError", "Trainer", "TrainingStep"]

HISTORY_FILE = "history.jsonl"
#: ``Trainer(resume=AUTO_RESUME)``: continue from ``output_dir/last`` when it exists, else start.
AUTO_RESUME = "auto"


class Trainer:
    """Train a :class:`~rvoslib.models.SegmentationModel` and validate it with J and F.

    A step whose loss or gradient is not finite is skipped: parameters, optimizer state and
    buffers (BatchNorm statistics) stay exactly as before it; the skips are counted
    (``nonfinite_steps``) and more than ``max_nonfinite_steps`` in a row, across epochs, stop
    the run with :class:`NonFiniteLossError`. A checkpoint is never written with non-finite
    values.

    Args:
        model: The model (unwrapped; the trainer moves it and wraps it for DDP/compile).
        train_dataset: Items as produced by :mod:`rvoslib.data` datasets.
        val_dataset: Whole-video items for validation, or ``None``.
        config: A :class:`TrainerConfig`.
        criterion: Optional replacement of the model's own loss terms, called as
            ``criterion(logits (B, T, 1, H, W), masks (B, T, H, W), valid (B, T))``.
        callbacks: :class:`~rvoslib.training.Callback` objects.
        resume: A checkpoint folder (``.../last``) to continue from exactly, or ``"auto"``
            (:data:`AUTO_RESUME`): continue from ``config.output_dir/last`` when it exists
            (rank 0 looks, every rank follows), else start fresh. With ``"auto"`` one command
            line both starts a run and resumes it, which a worker restarted by
            ``torchrun --max-restarts`` needs. A folder named ``auto``: pass ``Path("auto")``.
        collate_fn: Batch builder; default ``rvoslib.data.collator_for(model.inputs)``.
        context: The distributed context (default: from ``torchrun``'s environment).
        run_info: JSON-able facts about the run (e.g. the data settings) saved in checkpoints;
            a resume must have the same.

    Example:
        >>> from rvoslib import create_model
        >>> from rvoslib.data import SyntheticRVOSDataset
        >>> data = SyntheticRVOSDataset(num_videos=4, num_frames=2, size=32)
        >>> trainer = Trainer(create_model("tiny"), data, config=TrainerConfig(
        ...     epochs=1, batch_size=2, accumulation_steps=1, progress=False))
        >>> history = trainer.fit()
        >>> sorted(history[0])[:3]
        ['clips_per_s', 'epoch', 'epoch_time']
    """

    def __init__(
        self,
        model: SegmentationModel,
        train_dataset: Dataset,
        val_dataset: Dataset | None = None,
        config: TrainerConfig | None = None,
        *,
        criterion: Callable[..., torch.Tensor] | None = None,
        callbacks: Sequence[Callback] = (),
        resume: str | Path | None = None,
        collate_fn: Any = None,
        context: DistributedContext | None = None,
        run_info: dict[str, Any] | None = None,
    ) -> None:
        self.config = config = config or TrainerConfig()
        self.context = context or init_distributed(config.device)
        self.device = self.context.device
        self.train_dataset, self.val_dataset = train_dataset, val_dataset
        if len(train_dataset) == 0:  # type: ignore[arg-type]
            raise ValueError("train_dataset is empty: there is nothing to train on")
        self.collate_fn = collate_fn or default_collator(model)
        self.output_dir = Path(config.output_dir) if config.output_dir else None
        self.run_info = dict(run_info or {})
        self.amp_dtype = amp_dtype(config.amp, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.amp == "fp16")
        self.model = model.to(self.device)
        if config.fast:
            fast.prepare_fast_path(self.model, self.device)
        if config.activation_checkpointing:
            enable_activation_checkpointing(self.model)
        self.steps_per_epoch = steps_per_epoch(len(train_dataset), config, self.context)
        self.optimizer, self.scheduler = optim.from_config(
            self.model, config, self.steps_per_epoch, self.device
        )
        self.epoch, self.step = 0, 0
        self.best_metric, self.best_epoch = -math.inf, -1
        self.validations_without_improvement = 0
        self.nonfinite_steps = self.nonfinite_streak = 0
        self.history: list[dict[str, Any]] = []
        self.should_stop, self.stopped_by = False, None
        resume = self._resolve_resume(resume)
        if resume is not None:
            self.load(resume)
        self.callbacks = list(callbacks)
        if config.tensorboard and self.output_dir is not None and self.context.is_main:
            self.callbacks.extend(tensorboard_callback(self.output_dir / "tensorboard"))
        self.guard = BufferGuard(self.model)
        self.train_step = fast.wrap_for_training(
            TrainingStep(self.model, criterion), self.model, config, self.context
        )
        self._compiled = hasattr(self.train_step, "_orig_mod")

    # ----------------------------------------------------------------------------- the loop
    def fit(self) -> list[dict[str, Any]]:
        """Train until ``epochs`` (or ``max_steps``, ``max_time``, early stopping); returns the
        history (one record per epoch). ``stopped_by`` says what ended the run early."""
        self._fit_started = time.perf_counter()
        self._callbacks("on_train_start", self)
        while self.epoch < self.config.epochs and not self._steps_exhausted():
            epoch, started = self.epoch, time.perf_counter()
            self._callbacks("on_epoch_start", self, epoch)
            record: dict[str, Any] = {"epoch": epoch, **self.train_epoch(epoch)}
            if self.val_dataset is not None:
                metrics = self.validate()
                record.update(metrics)
                self._callbacks("on_validation_end", self, epoch, metrics)
                self._track_best(metrics["JF"])
            record["epoch_time"] = time.perf_counter() - started
            self.history.append(finite_or_none(record))
            if self.context.is_main:
                logging.getLogger(logs.LOGGER_NAME).info(
                    logs.epoch_line(self.history[-1], self.config.epochs)
                )
            self.epoch = epoch + 1
            self.save(improved=self.best_epoch == epoch)
            self._callbacks("on_epoch_end", self, epoch, record)
            if self.should_stop or self._time_exhausted():
                break
        if self._time_exhausted():
            self.stopped_by = "max_time"
        elif self.should_stop:
            self.stopped_by = "early_stopping"
        if self.output_dir is not None and self.context.is_main and self.history:
            logs.write_curves(self.history, self.output_dir / logs.CURVES_FILE)
        self._callbacks("on_train_end", self)
        return self.history

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """One pass over the training data; returns ``train_loss``, ``train_<term>`` for every
        loss term, ``train_iou``, ``lr`` (the largest rate of the epoch's last step, not the
        next one: a schedule that restarts after the last epoch does not show as a jump),
        ``grad_norm``, ``steps``, ``nonfinite_steps`` and ``clips_per_s``."""
        config, accumulation = self.config, self.config.accumulation_steps
        reseed(config.seed, epoch, self.context.rank)
        loader = make_loader(
            self.train_dataset, config, self.context, epoch, self.collate_fn, self.device
        )
        self.train_step.train()
        sums, clips, started = RunningSums(), 0, time.perf_counter()
        step_lr = self.current_lr  # the rate the epoch's last step used (the schedule moves on)
        progress = self._progress(loader, f"epoch {epoch + 1}/{config.epochs}")
        self.optimizer.zero_grad(set_to_none=True)
        for index, batch in enumerate(progress):
            batch = move_to_device(batch, self.device)
            group_start = index - index % accumulation
            group_size = min(accumulation, len(loader) - group_start)
            last_in_group = index - group_start == group_size - 1
            if index == group_start:
                self.guard.save()  # the buffers before the step, to undo a non-finite one
            if self._compiled:
                fast.mark_step()
            with self._no_sync(not last_in_group), self._autocast():
                terms, logits = self.train_step(tensor_entries(batch))
                loss = sum(terms.values())
            self.scaler.scale(loss / group_size).backward()
            sums.add_terms({"loss": loss, **terms, "iou": batch_iou(logits, batch["masks"])})
            clips += batch["frames"].shape[0]
            if not last_in_group:
                continue
            step_lr = self.current_lr
            if not self._optimizer_step(sums):
                self._skip_step(epoch, index)
                continue
            self.nonfinite_streak = 0
            self.step += 1
            self._callbacks("on_step_end", self, self.step, {"loss": loss.detach(),
                                                             "lr": self.current_lr})  # fmt: skip
            if hasattr(progress, "set_postfix") and self.step % config.log_every == 0:
                progress.set_postfix(sums.postfix(self.current_lr))
            if self._steps_exhausted() or self._time_exhausted():
                break
        elapsed = time.perf_counter() - started
        average_buffers(self.model, self.context)
        means = sums.means(self.context)
        return {
            **{("train_" + k if k != "grad_norm" else k): v for k, v in means.items()},
            "lr": step_lr,
            "steps": self.step,
            "nonfinite_steps": self.nonfinite_steps,
            "clips_per_s": clips * self.context.world_size / max(elapsed, 1e-9),
        }

    def validate(self) -> dict[str, float]:
        """Evaluate whole videos: ``val_loss``, ``J``, ``F``, ``JF`` (reduced over ranks).

        The frames scored follow the model's input (:func:`~rvoslib.evaluation.default_protocol`):
        every frame for a text model; for one given the first frame's mask, the official
        semi-supervised frames (first and last left out)."""
        result = evaluate(
            self.model,
            self.val_dataset,
            collate_fn=self.collate_fn,
            device=self.device,
            clip_len=self.config.val_clip_len,
            threshold=self.config.threshold,
            protocol=default_protocol(self.model.inputs),
            autocast_dtype=self.amp_dtype,
            context=self.context if self.context.is_distributed else None,
            progress=lambda items: self._progress(items, "validate"),
        )
        metrics = {key: float(result.summary[key]) for key in ("J", "F", "JF")}
        return {"val_loss": result.loss, **metrics}

    # ----------------------------------------------------------------------------- state
    def save(self, improved: bool) -> None:
        """Write ``last/`` (and ``best/`` when ``improved``) and the history, on rank 0.

        Raises:
            NonFiniteLossError: the model holds non-finite values (names the tensors); nothing
                is written.
        """
        if self.output_dir is None:
            return
        if self.context.is_main:
            checkpoint.check_finite(self.model, self.output_dir)
            state = self.state_dict()
            card = checkpoint.run_card(self.model, self.history, self.run_info, self.config)
            checkpoint.save_checkpoint(self.output_dir / "last", self.model, state, card)
            if improved:
                checkpoint.save_checkpoint(self.output_dir / "best", self.model, state, card)
            lines = "".join(json.dumps(record, allow_nan=False) + "\n" for record in self.history)
            atomic_write_text(self.output_dir / HISTORY_FILE, lines)
            logs.write_csv(self.history, self.output_dir / logs.CSV_FILE)
        self.context.barrier()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume, except the model weights."""
        return checkpoint.training_state(self)

    def load(self, directory: Path) -> None:
        """Restore weights and training state from a checkpoint folder (refuses a checkpoint
        whose trainer, model or run settings differ, listing the differences)."""
        recover_directory(directory)
        state = checkpoint.load_training_state(directory)
        checkpoint.check_resumable(state, directory, self.config, self.model, self.run_info)
        self.model.load_state_dict(checkpoint.load_weights(directory / WEIGHTS_FILE, self.device))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step = state["epoch"], state["step"]
        self.best_metric, self.best_epoch = state["best_metric"], state["best_epoch"]
        self.validations_without_improvement = state["validations_without_improvement"]
        self.nonfinite_steps = state["nonfinite_steps"]
        self.history = list(state["history"])
        checkpoint.set_rng_state(state["rng"])

    # ----------------------------------------------------------------------------- helpers
    def _resolve_resume(self, resume: str | Path | None) -> Path | None:
        """The checkpoint folder to load: ``resume`` itself, or for ``"auto"`` the run
        folder's ``last/`` when rank 0 finds one (``None``: start fresh).

        Raises:
            ValueError: ``"auto"`` without ``config.output_dir``.
        """
        if not (isinstance(resume, str) and resume == AUTO_RESUME):
            return None if resume is None else Path(resume)
        if self.output_dir is None:
            raise ValueError(
                "resume='auto' continues the run in config.output_dir from its last/ checkpoint, "
                "but config.output_dir is None; set output_dir (or pass a checkpoint folder)"
            )
        last = self.output_dir / "last"
        found = False
        if self.context.is_main:
            recover_directory(last)  # an interrupted save leaves the previous checkpoint
            found = last.exists()
        return last if broadcast_flag(found, self.context) else None

    @property
    def current_lr(self) -> float:
        """The largest learning rate of the parameter groups."""
        return max(group["lr"] for group in self.optimizer.param_groups)

    def _optimizer_step(self, sums: RunningSums) -> bool:
        """Clip, step the optimizer and the schedule; ``False`` (nothing changed) when the
        gradient is not finite. One host sync per step."""
        self.scaler.unscale_(self.optimizer)
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        max_norm = self.config.clip_grad_norm
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm else math.inf)
        if not self.scaler.is_enabled() and not bool(torch.isfinite(norm)):
            self.optimizer.zero_grad(set_to_none=True)
            return False
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        sums.add_step(norm.detach().float())
        return True

    def _skip_step(self, epoch: int, index: int) -> None:
        """Undo a non-finite step's buffer updates, count it, stop after too many in a row."""
        self.guard.restore()
        self.nonfinite_steps += 1
        self.nonfinite_streak += 1
        if self.nonfinite_streak > self.config.max_nonfinite_steps:
            raise NonFiniteLossError(
                f"{self.nonfinite_streak} consecutive steps with a non-finite loss or gradient "
                f"(epoch {epoch}, batch {index}); lower the learning rate or check the data"
            )

    def _no_sync(self, skip: bool) -> contextlib.AbstractContextManager:
        module = getattr(self.train_step, "_orig_mod", self.train_step)
        if skip and self.context.is_distributed:
            return module.no_sync()
        return contextlib.nullcontext()

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.amp_dtype)

    def _progress(self, iterable: Iterable, description: str) -> Iterable:
        return progress_bar(iterable, description, self.config.progress and self.context.is_main)

    def _callbacks(self, hook: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(*args)

    def _track_best(self, metric: float) -> None:
        if metric > self.best_metric:
            self.best_metric, self.best_epoch = metric, self.epoch
            self.validations_without_improvement = 0
        else:
            self.validations_without_improvement += 1
            patience = self.config.early_stopping_patience
            if patience is not None and self.validations_without_improvement >= patience:
                self.should_stop = True

    def _steps_exhausted(self) -> bool:
        return self.config.max_steps is not None and self.step >= self.config.max_steps

    def _time_exhausted(self) -> bool:
        started = getattr(self, "_fit_started", None)
        return started is not None and time_exhausted(started, self.config.max_time, self.context)
