"""A short, explicit training loop for every RVOS architecture: read it top to bottom.

``fit`` runs epochs of ``train_epoch`` (forward, the model's own loss terms, backward,
accumulation, clipping, optimizer and schedule steps), ``validate`` (official J and F, through
:func:`rvoslib.evaluation.evaluate`), and ``save`` (atomic ``last/`` and ``best/`` checkpoints
with everything needed to resume exactly). The Trainer knows no architecture: the model returns
its training outputs (:meth:`RVOSModel.forward_batch`) and its named loss terms
(:meth:`RVOSModel.losses`); the Trainer sums the terms and logs each one.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from rvoslib._io import atomic_write_text
from rvoslib.evaluation import evaluate, move_to_device
from rvoslib.metrics.batch import batch_iou
from rvoslib.models.base import WEIGHTS_FILE, RVOSModel
from rvoslib.training import checkpoint, fast, optim
from rvoslib.training.callbacks import Callback
from rvoslib.training.config import RESUMABLE_CHANGES, TrainerConfig
from rvoslib.training.distributed import DistributedContext, ShardSampler, init_distributed

__all__ = ["HISTORY_FILE", "NonFiniteLossError", "Trainer", "TrainingStep"]

HISTORY_FILE = "history.jsonl"


class NonFiniteLossError(RuntimeError):
    """Raised when too many consecutive steps produce a NaN or infinite loss."""


class TrainingStep(nn.Module):
    """The model's training forward as one module, so DDP and ``torch.compile`` wrap it whole.

    ``forward(batch)`` returns the model's weighted loss terms and the referred object's
    logits ``(B, T, 1, H, W)``; a ``criterion`` replaces the model's terms with
    ``{"loss": criterion(logits, masks, valid)}``.
    """

    def __init__(self, model: RVOSModel, criterion: Callable[..., torch.Tensor] | None = None):
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


class Trainer:
    """Train an :class:`~rvoslib.models.RVOSModel` and validate it with J and F.

    Args:
        model: The model (unwrapped; the trainer moves it and wraps it for DDP/compile).
        train_dataset: Items as produced by :mod:`rvoslib.data` datasets.
        val_dataset: Whole-video items for validation, or ``None``.
        config: A :class:`TrainerConfig`.
        criterion: Optional replacement of the model's own loss terms, called as
            ``criterion(logits (B, T, 1, H, W), masks (B, T, H, W), valid (B, T))``.
        callbacks: :class:`~rvoslib.training.Callback` objects.
        resume: A checkpoint folder (``.../last``) to continue from exactly.
        collate_fn: Batch builder; default :class:`~rvoslib.data.RVOSCollator` with the
            model's tokenizer.
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
        model: RVOSModel,
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
        self.callbacks = list(callbacks)
        self.train_dataset, self.val_dataset = train_dataset, val_dataset
        self.collate_fn = collate_fn or _default_collator(model)
        self.output_dir = Path(config.output_dir) if config.output_dir else None
        self.run_info = dict(run_info or {})
        self.amp_dtype = _amp_dtype(config.amp, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.amp == "fp16")
        self.model = model.to(self.device)
        if config.fast:
            fast.prepare_fast_path(self.model, self.device)
        self.optimizer = optim.build_optimizer(
            self.model,
            lr=config.lr,
            weight_decay=config.weight_decay,
            betas=config.betas,
            multipliers={"backbone": config.backbone_lr_mult, "text": config.text_lr_mult},
            fused=(config.fast or config.compile) and fast.use_fused_optimizer(self.device),
        )
        self.steps_per_epoch = _steps_per_epoch(len(train_dataset), config, self.context)
        self.scheduler = optim.build_scheduler(
            self.optimizer,
            steps_per_epoch=self.steps_per_epoch,
            t_0=config.t_0,
            t_mult=config.t_mult,
            eta_min=config.eta_min,
            warmup_steps=config.warmup_steps,
        )
        self.epoch, self.step = 0, 0
        self.best_metric, self.best_epoch = -math.inf, -1
        self.validations_without_improvement = 0
        self.nonfinite_steps = 0
        self.history: list[dict[str, Any]] = []
        self.should_stop = False
        self._compiled = False
        if resume is not None:
            self.load(Path(resume))
        self.train_step = self._wrap(TrainingStep(self.model, criterion))

    # ----------------------------------------------------------------------------- the loop
    def fit(self) -> list[dict[str, Any]]:
        """Train until ``epochs`` (or ``max_steps``, ``max_time``, early stopping); returns the
        history (one record per epoch)."""
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
            self.history.append(record)
            self.epoch = epoch + 1
            self.save(improved=self.best_epoch == epoch)
            self._callbacks("on_epoch_end", self, epoch, record)
            if self.should_stop or self._time_exhausted():
                break
        self._callbacks("on_train_end", self)
        return self.history

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """One pass over the training data; returns ``train_loss``, ``train_<term>`` for every
        loss term, ``train_iou``, ``lr``, ``grad_norm``, ``steps``, ``nonfinite_steps`` and
        ``clips_per_s``."""
        config, accumulation = self.config, self.config.accumulation_steps
        _reseed(config.seed, epoch, self.context.rank)
        loader = self._loader(self.train_dataset, epoch)
        self.train_step.train()
        sums: dict[str, torch.Tensor] = {}
        counted, steps_done, streak, clips = 0, 0, 0, 0
        started = time.perf_counter()
        progress = self._progress(loader, f"epoch {epoch}")
        self.optimizer.zero_grad(set_to_none=True)
        for index, batch in enumerate(progress):
            batch = move_to_device(batch, self.device)
            group_start = index - index % accumulation
            group_size = min(accumulation, len(loader) - group_start)
            last_in_group = index - group_start == group_size - 1
            if self._compiled:
                fast.mark_step()
            with self._no_sync(not last_in_group), self._autocast():
                terms, logits = self.train_step(_tensors(batch))
                loss = sum(terms.values())
            if self._finite(loss):
                streak = 0
                self.scaler.scale(loss / group_size).backward()
                terms = {"loss": loss, **terms, "iou": batch_iou(logits, batch["masks"])}
                for name, value in terms.items():
                    sums[name] = sums.get(name, 0) + value.detach().float()
                counted += 1
                clips += batch["frames"].shape[0]
            else:
                streak += 1
                self.nonfinite_steps += 1
                if streak > config.max_nonfinite_steps:
                    raise NonFiniteLossError(
                        f"{streak} consecutive non-finite losses (epoch {epoch}, batch "
                        f"{index}); lower the learning rate or check the data"
                    )
            if not last_in_group:
                continue
            sums["grad_norm"] = sums.get("grad_norm", 0) + self._optimizer_step()
            steps_done += 1
            self.step += 1
            logs = {"loss": loss.detach(), "lr": self.current_lr}
            self._callbacks("on_step_end", self, self.step, logs)
            if hasattr(progress, "set_postfix") and self.step % config.log_every == 0:
                progress.set_postfix(_postfix(sums, counted, steps_done, self.current_lr))
            if self._steps_exhausted() or self._time_exhausted():
                break
        elapsed = time.perf_counter() - started
        self._average_buffers()
        means = _reduced_means(sums, counted, steps_done, self.context)
        return {
            **{("train_" + k if k != "grad_norm" else k): v for k, v in means.items()},
            "lr": self.current_lr,
            "steps": self.step,
            "nonfinite_steps": self.nonfinite_steps,
            "clips_per_s": clips * self.context.world_size / max(elapsed, 1e-9),
        }

    def validate(self) -> dict[str, float]:
        """Evaluate whole videos: ``val_loss``, ``J``, ``F``, ``JF`` (reduced over ranks).

        Referring models are scored on every frame; VOS models, which are given the first
        frame's mask, on the official semi-supervised frames (first and last left out)."""
        result = evaluate(
            self.model,
            self.val_dataset,
            collate_fn=self.collate_fn,
            device=self.device,
            clip_len=self.config.val_clip_len,
            threshold=self.config.threshold,
            protocol="semi-supervised" if self.model.task == "vos" else "all",
            autocast_dtype=self.amp_dtype,
            context=self.context if self.context.is_distributed else None,
            progress=lambda items: self._progress(items, "validate"),
        )
        metrics = {key: float(result.summary[key]) for key in ("J", "F", "JF")}
        return {"val_loss": result.loss, **metrics}

    # ----------------------------------------------------------------------------- state
    def save(self, improved: bool) -> None:
        """Write ``last/`` (and ``best/`` when ``improved``) and the history, on rank 0."""
        if self.output_dir is None:
            return
        if self.context.is_main:
            state = self.state_dict()
            checkpoint.save_checkpoint(self.output_dir / "last", self.model, state)
            if improved:
                checkpoint.save_checkpoint(self.output_dir / "best", self.model, state)
            lines = "".join(json.dumps(record) + "\n" for record in self.history)
            atomic_write_text(self.output_dir / HISTORY_FILE, lines)
        self.context.barrier()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume, except the model weights."""
        return {
            "format_version": checkpoint.TRAINING_STATE_VERSION,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "validations_without_improvement": self.validations_without_improvement,
            "nonfinite_steps": self.nonfinite_steps,
            "history": self.history,
            "rng": checkpoint.get_rng_state(),
            "trainer_config": self.config.to_dict(),
            "model_config": self.model.config.to_dict(),
            "run_info": self.run_info,
            "world_size": self.context.world_size,
        }

    def load(self, directory: Path) -> None:
        """Restore weights and training state from a checkpoint folder (refuses a checkpoint
        whose trainer, model or run settings differ, listing the differences)."""
        from safetensors.torch import load_file

        state = checkpoint.load_training_state(directory)
        resumable = {k: v for k, v in state["trainer_config"].items() if k in RESUMABLE_CHANGES}
        differences = (
            checkpoint.config_differences(
                {**state["trainer_config"], **resumable}, self.config.to_dict() | resumable
            )
            + checkpoint.config_differences(state["model_config"], self.model.config.to_dict())
            + checkpoint.config_differences(state["run_info"], self.run_info)
        )
        if differences:
            raise ValueError(
                f"cannot resume from {str(directory)!r}: its settings differ in "
                + "; ".join(differences)
            )
        self.model.load_state_dict(load_file(str(directory / WEIGHTS_FILE), str(self.device)))
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
    @property
    def current_lr(self) -> float:
        """The largest learning rate of the parameter groups."""
        return max(group["lr"] for group in self.optimizer.param_groups)

    def _optimizer_step(self) -> torch.Tensor:
        self.scaler.unscale_(self.optimizer)
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        max_norm = self.config.clip_grad_norm
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm else math.inf)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm.detach().float()

    def _finite(self, loss: torch.Tensor) -> bool:
        finite = torch.isfinite(loss.detach()).float()
        if self.context.is_distributed:  # every rank must agree, or DDP would hang
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        return bool(finite.item())

    def _wrap(self, module: nn.Module) -> nn.Module:
        if self.context.is_distributed:
            if self.config.sync_batchnorm:
                nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            module = nn.parallel.DistributedDataParallel(module, device_ids=device_ids)
        if self.config.fast and self.device.type == "cuda":
            self._compiled = True
            return fast.maybe_compile(module, **fast.compile_options())
        if self.config.compile:
            self._compiled = True
            return fast.maybe_compile(module)
        return module

    def _no_sync(self, skip: bool) -> contextlib.AbstractContextManager:
        module = getattr(self.train_step, "_orig_mod", self.train_step)
        if skip and self.context.is_distributed:
            return module.no_sync()
        return contextlib.nullcontext()

    def _loader(self, dataset: Dataset, epoch: int) -> DataLoader:
        context = self.context
        sampler = ShardSampler(
            len(dataset), context.rank, context.world_size, True, self.config.seed
        )
        sampler.set_epoch(epoch)
        return DataLoader(
            dataset,
            batch_size=self.config.batch_size,
            sampler=sampler,
            collate_fn=self.collate_fn,
            num_workers=self.config.num_workers,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=_seed_worker,
            generator=torch.Generator().manual_seed(self.config.seed * 7919 + epoch),
        )

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _progress(self, iterable: Iterable, description: str) -> Iterable:
        if not (self.config.progress and self.context.is_main):
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=description, leave=False, dynamic_ncols=True)

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

    def _average_buffers(self) -> None:
        """Average BatchNorm statistics over ranks, so every rank holds the same model."""
        if not self.context.is_distributed:
            return
        from rvoslib.training.distributed import all_reduce_mean

        for buffer in self.model.buffers():
            if buffer.is_floating_point():
                buffer.copy_(all_reduce_mean(buffer, self.context))

    def _steps_exhausted(self) -> bool:
        return self.config.max_steps is not None and self.step >= self.config.max_steps

    def _time_exhausted(self) -> bool:
        started, limit = getattr(self, "_fit_started", None), self.config.max_time
        if limit is None or started is None:
            return False
        over = torch.tensor(float(time.perf_counter() - started > limit))
        if self.context.is_distributed:  # every rank must stop at the same step
            over = over.to(self.device)
            torch.distributed.all_reduce(over, op=torch.distributed.ReduceOp.MAX)
        return bool(over.item())


def _default_collator(model: RVOSModel) -> Any:
    from rvoslib.data import RVOSCollator

    if getattr(model, "task", "rvos") != "rvos":
        return RVOSCollator(None)
    return RVOSCollator(model.text_encoder, model.text_encoder.max_length)


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" else "off"
    if amp == "fp16" and device.type != "cuda":
        raise ValueError(f"amp='fp16' needs a CUDA device, got {device}")
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def _steps_per_epoch(length: int, config: TrainerConfig, context: DistributedContext) -> int:
    per_rank = math.ceil(length / context.world_size)
    return max(1, math.ceil(math.ceil(per_rank / config.batch_size) / config.accumulation_steps))


def _tensors(batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The tensor entries of a batch (strings would make ``torch.compile`` recompile)."""
    return {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}


def _postfix(sums: dict[str, Any], counted: int, steps: int, lr: float) -> dict[str, str]:
    shown = {k: f"{(v / max(counted, 1)).item():.4f}" for k, v in sums.items() if k != "grad_norm"}
    shown["gnorm"] = f"{(sums['grad_norm'] / max(steps, 1)).item():.2f}"
    shown["lr"] = f"{lr:.2e}"
    return shown


def _reduced_means(
    sums: dict[str, Any], counted: int, steps: int, context: DistributedContext
) -> dict[str, float]:
    """Means of the epoch's sums (loss terms per micro-batch, grad norm per step), over ranks."""
    from rvoslib.training.distributed import all_reduce_mean

    names = sorted(sums)
    if not names:
        return {}
    totals = torch.stack([torch.as_tensor(sums[n], dtype=torch.float32) for n in names]).cpu()
    totals = torch.cat([totals, torch.tensor([float(counted), float(steps)])]).to(context.device)
    totals = all_reduce_mean(totals, context).cpu()
    counted_mean, steps_mean = max(float(totals[-2]), 1.0), max(float(totals[-1]), 1.0)
    return {
        name: float(totals[i]) / (steps_mean if name == "grad_norm" else counted_mean)
        for i, name in enumerate(names)
    }


def _reseed(seed: int, epoch: int, rank: int) -> None:
    value = seed * 1_000_003 + epoch * 1009 + rank
    torch.manual_seed(value)
    np.random.seed(value % 2**32)
    random.seed(value)


def _seed_worker(worker_id: int) -> None:
    value = torch.initial_seed() % 2**32
    np.random.seed(value)
    random.seed(value)
