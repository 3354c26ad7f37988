"""A short, explicit training loop for RVOS models: read it top to bottom.

Recipe (the reference design's, made robust): AdamW with separate learning-rate multipliers
for the backbone and the language model, ``CosineAnnealingWarmRestarts`` stepped by fractional
epoch, mixed precision (bf16 on CUDA by default, fp16 with a grad scaler as an option),
gradient accumulation and clipping, validation with the official J and F, atomic ``last/`` and
``best/`` checkpoints with exact resume, early stopping, callbacks, and DDP under ``torchrun``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from rvoslib._io import atomic_write_text
from rvoslib.losses import RVOSLoss
from rvoslib.models.base import WEIGHTS_FILE, RVOSModel
from rvoslib.training.callbacks import Callback
from rvoslib.training.checkpoint import (
    config_differences,
    get_rng_state,
    load_training_state,
    save_checkpoint,
    set_rng_state,
)
from rvoslib.training.distributed import (
    DistributedContext,
    ShardSampler,
    all_reduce_mean,
    init_distributed,
)

__all__ = ["NonFiniteLossError", "Trainer", "TrainerConfig", "batch_iou", "predict_in_chunks"]

HISTORY_FILE = "history.jsonl"
# Trainer settings that may change between a run and its resumption.
RESUMABLE_CHANGES = {
    "epochs",
    "max_steps",
    "max_time",
    "output_dir",
    "progress",
    "num_workers",
    "device",
    "early_stopping_patience",
    "log_every",
}


class NonFiniteLossError(RuntimeError):
    """Raised when too many consecutive steps produce a NaN or infinite loss."""


@dataclass
class TrainerConfig:
    """Settings of :class:`Trainer` (saved in every checkpoint).

    Attributes:
        epochs: Number of epochs.
        max_steps: Stop after this many optimizer steps (``None``: no limit).
        max_time: Stop training after this many seconds of :meth:`Trainer.fit` (the current
            epoch ends early, then validates and saves as usual); ``None``: no limit. A safety
            net for time budgets: a run cut short is not bit-for-bit reproducible.
        batch_size: Clips per micro-batch (per process).
        num_workers: DataLoader worker processes.
        lr: Base learning rate of AdamW.
        weight_decay: AdamW weight decay (not applied to biases and norm parameters).
        betas: AdamW betas.
        backbone_lr_mult: Learning-rate multiplier of the visual backbone.
        text_lr_mult: Learning-rate multiplier of the language model.
        t_0: Epochs of the first cosine cycle.
        warmup_steps: Optimizer steps over which the learning rate rises linearly to the
            schedule's value (step ``k`` uses ``(k + 1) / warmup_steps`` of it); 0 disables it.
            A larger language model trained from scratch may need it (a 4-layer BERT in
            ``tiny`` made no progress at 2e-3 without it).
        t_mult: Growth factor of the cycle length.
        eta_min: Lowest learning rate of the cosine schedule.
        amp: ``"auto"`` (bf16 on CUDA, off on CPU), ``"bf16"``, ``"fp16"`` (with a grad
            scaler) or ``"off"``.
        accumulation_steps: Micro-batches per optimizer step (the loss is divided by it);
            an epoch's last, incomplete group still makes a step.
        clip_grad_norm: Maximum gradient norm (``None`` disables clipping).
        early_stopping_patience: Stop after this many validations without a better J&F.
        max_nonfinite_steps: Consecutive non-finite losses tolerated before stopping.
        threshold: Probability threshold of predicted masks.
        val_clip_len: Frames per forward pass at validation (``None``: the whole video).
        seed: Seed of data order, augmentation and dropout (per epoch, so resume is exact).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        output_dir: Folder for ``last/``, ``best/`` and ``history.jsonl`` (``None``: no files).
        sync_batchnorm: Convert BatchNorm to SyncBatchNorm in distributed runs.
        fast: Use the library's fast path: channels_last (2D) / channels_last_3d (3D) layouts,
            cuDNN autotuning, fused AdamW and ``torch.compile`` on CUDA (bf16 autocast is the
            CUDA default anyway). See the performance docs.
        compile: Compile the model with ``torch.compile`` (falls back to eager if unavailable).
        progress: Show tqdm progress bars (rank 0).
        log_every: Optimizer steps between progress-bar updates (each update syncs the host).
    """

    epochs: int = 30
    max_steps: int | None = None
    max_time: float | None = None
    batch_size: int = 2
    num_workers: int = 0
    lr: float = 5e-4
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    backbone_lr_mult: float = 1.0
    text_lr_mult: float = 0.1
    t_0: int = 5
    warmup_steps: int = 0
    t_mult: int = 2
    eta_min: float = 1e-6
    amp: str = "auto"
    accumulation_steps: int = 4
    clip_grad_norm: float | None = 1.0
    early_stopping_patience: int | None = None
    max_nonfinite_steps: int = 5
    threshold: float = 0.5
    val_clip_len: int | None = None
    seed: int = 0
    device: str = "auto"
    output_dir: str | None = None
    sync_batchnorm: bool = False
    fast: bool = False
    compile: bool = False
    progress: bool = True
    log_every: int = 10

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        if self.amp not in ("auto", "bf16", "fp16", "off"):
            raise ValueError(f"amp must be 'auto', 'bf16', 'fp16' or 'off', got {self.amp!r}")
        if self.accumulation_steps < 1:
            raise ValueError(f"accumulation_steps must be >= 1, got {self.accumulation_steps}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        data = dataclasses.asdict(self)
        data["betas"] = list(self.betas)
        return data


def batch_iou(
    logits: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean per-frame IoU of thresholded logits (> 0) against masks; empty union counts as 1.

    Args:
        logits: ``(B, T, 1, H, W)`` or ``(B, T, H, W)``.
        masks: ``(B, T, H, W)``.
        valid: ``(B, T)`` bool frames to count.

    Returns:
        Scalar tensor on the logits' device (no host sync).
    """
    if logits.ndim == 5:
        logits = logits.squeeze(2)
    pred, target = logits > 0, masks > 0.5
    intersection = (pred & target).flatten(2).sum(-1).float()
    union = (pred | target).flatten(2).sum(-1).float()
    iou = torch.where(union > 0, intersection / union.clamp_min(1), torch.ones_like(union))
    if valid is None:
        return iou.mean()
    weight = valid.float()
    return (iou * weight).sum() / weight.sum().clamp_min(1)


def predict_in_chunks(
    model: nn.Module,
    frames: torch.Tensor,
    text_ids: torch.Tensor,
    text_mask: torch.Tensor,
    clip_len: int | None = None,
) -> torch.Tensor:
    """Logits of whole videos computed ``clip_len`` frames at a time (text encoded once).

    Args:
        model: An :class:`~rvoslib.models.RVOSModel`.
        frames: ``(B, T, 3, H, W)``.
        text_ids: ``(B, L)``.
        text_mask: ``(B, L)``.
        clip_len: Frames per forward pass (``None``: all ``T`` at once).

    Returns:
        ``(B, T, 1, H, W)`` float32 logits.
    """
    chunk = clip_len or frames.shape[1]
    text = model.encode_text(text_ids, text_mask)
    pieces = [
        model.forward_with_text(frames[:, start : start + chunk], text)
        for start in range(0, frames.shape[1], chunk)
    ]
    return torch.cat(pieces, dim=1).float()


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


class Trainer:
    """Train an :class:`RVOSModel` on an RVOS dataset and validate with J and F.

    Args:
        model: The model (unwrapped; the trainer moves it and wraps it in DDP when needed).
        train_dataset: Items as produced by :mod:`rvoslib.data` datasets.
        val_dataset: Whole-video items for validation, or ``None``.
        config: A :class:`TrainerConfig`.
        criterion: The loss (default :class:`~rvoslib.losses.RVOSLoss`).
        callbacks: :class:`~rvoslib.training.Callback` objects.
        resume: A checkpoint folder (``.../last``) to continue from exactly.
        collate_fn: Batch builder; default :class:`~rvoslib.data.RVOSCollator` with the
            model's tokenizer.
        context: The distributed context (default: from ``torchrun``'s environment).

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
        criterion: nn.Module | None = None,
        callbacks: Sequence[Callback] = (),
        resume: str | Path | None = None,
        collate_fn: Any = None,
        context: DistributedContext | None = None,
    ) -> None:
        self.config = config or TrainerConfig()
        self.context = context or init_distributed(self.config.device)
        self.device = self.context.device
        self.criterion = criterion or RVOSLoss()
        self.callbacks = list(callbacks)
        self.train_dataset, self.val_dataset = train_dataset, val_dataset
        if collate_fn is None:
            from rvoslib.data import RVOSCollator

            collate_fn = RVOSCollator(model.text_encoder, model.text_encoder.max_length)
        self.collate_fn = collate_fn
        self.output_dir = Path(self.config.output_dir) if self.config.output_dir else None
        self.amp_dtype, use_scaler = self._resolve_amp()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=use_scaler)

        self.model = model.to(self.device)
        if self.config.fast:
            from rvoslib.training.fast import apply_fast_path

            apply_fast_path(self.model)
            if self.device.type == "cuda":
                torch.backends.cudnn.benchmark = True
        self.optimizer = self._build_optimizer(self.model)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            self.optimizer,
            T_0=self.config.t_0,
            T_mult=self.config.t_mult,
            eta_min=self.config.eta_min,
        )
        self.epoch, self.step = 0, 0
        self._apply_warmup()
        self.best_metric, self.best_epoch = -math.inf, -1
        self.validations_without_improvement = 0
        self.nonfinite_steps = 0
        self.history: list[dict[str, Any]] = []
        self.should_stop = False
        if resume is not None:
            self._load(Path(resume))
        self.train_model = self._wrap(self.model)

    # ----------------------------------------------------------------------------- set-up
    def _resolve_amp(self) -> tuple[torch.dtype | None, bool]:
        amp = self.config.amp
        if amp == "auto":
            amp = "bf16" if self.device.type == "cuda" else "off"
        if amp == "fp16" and self.device.type != "cuda":
            raise ValueError(f"amp='fp16' needs a CUDA device, got {self.device}")
        return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp], amp == "fp16"

    def _build_optimizer(self, model: RVOSModel) -> torch.optim.Optimizer:
        config = self.config
        backbone = {id(p) for p in model.backbone.parameters()}
        language = {id(p) for p in model.text_encoder.language_model.parameters()}
        groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
        for param in model.parameters():
            if not param.requires_grad:
                continue
            part = (
                "backbone" if id(param) in backbone else "text" if id(param) in language else "head"
            )
            groups.setdefault((part, param.ndim > 1), []).append(param)
        multipliers = {
            "backbone": config.backbone_lr_mult,
            "text": config.text_lr_mult,
            "head": 1.0,
        }
        param_groups = [
            {
                "params": params,
                "lr": config.lr * multipliers[part],
                "weight_decay": config.weight_decay if decay else 0.0,
                "name": f"{part}{'' if decay else '_no_decay'}",
            }
            for (part, decay), params in sorted(groups.items())
        ]
        fused = self.device.type == "cuda" and (config.fast or config.compile)
        return torch.optim.AdamW(
            param_groups, lr=config.lr, betas=config.betas, fused=fused or None
        )

    def _wrap(self, model: nn.Module) -> nn.Module:
        if self.context.is_distributed:
            if self.config.sync_batchnorm:
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        if self.config.compile or (self.config.fast and self.device.type == "cuda"):
            from rvoslib.training.fast import maybe_compile

            model = maybe_compile(model)
        return model

    def _loader(self, dataset: Dataset, epoch: int, train: bool) -> DataLoader:
        sampler = ShardSampler(
            len(dataset),
            self.context.rank,
            self.context.world_size,
            shuffle=train,
            seed=self.config.seed,
        )
        sampler.set_epoch(epoch)
        return DataLoader(
            dataset,
            batch_size=self.config.batch_size if train else 1,
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

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        non_blocking = self.device.type == "cuda"
        return {
            k: v.to(self.device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()
        }

    # ----------------------------------------------------------------------------- loop
    def fit(self) -> list[dict[str, Any]]:
        """Train until ``epochs`` (or ``max_steps``, ``max_time``, early stopping); returns the
        history."""
        self._fit_started = time.perf_counter()
        for callback in self.callbacks:
            callback.on_train_start(self)
        while self.epoch < self.config.epochs and not self._steps_exhausted():
            epoch = self.epoch
            for callback in self.callbacks:
                callback.on_epoch_start(self, epoch)
            started = time.perf_counter()
            record: dict[str, Any] = {"epoch": epoch, **self.train_epoch(epoch)}
            if self.val_dataset is not None:
                metrics = self.validate()
                record.update(metrics)
                for callback in self.callbacks:
                    callback.on_validation_end(self, epoch, metrics)
                self._track_best(metrics["JF"])
            record["epoch_time"] = time.perf_counter() - started
            self.history.append(record)
            self.epoch = epoch + 1
            self._save(improved=self.best_epoch == epoch)
            for callback in self.callbacks:
                callback.on_epoch_end(self, epoch, record)
            if self.should_stop or self._time_exhausted():
                break
        for callback in self.callbacks:
            callback.on_train_end(self)
        return self.history

    def _steps_exhausted(self) -> bool:
        return self.config.max_steps is not None and self.step >= self.config.max_steps

    def _time_exhausted(self) -> bool:
        started = getattr(self, "_fit_started", None)
        limit = self.config.max_time
        if limit is None or started is None:
            return False
        over = torch.tensor(float(time.perf_counter() - started > limit))
        if self.context.is_distributed:  # every rank must stop at the same step
            over = over.to(self.device)
            torch.distributed.all_reduce(over, op=torch.distributed.ReduceOp.MAX)
        return bool(over.item())

    def _reseed(self, epoch: int) -> None:
        seed = self.config.seed * 1_000_003 + epoch * 1009 + self.context.rank
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training data; returns ``train_loss``, ``train_iou``, ``lr``,
        ``grad_norm``, ``nonfinite_steps`` and ``clips_per_s``."""
        config = self.config
        self._reseed(epoch)
        loader = self._loader(self.train_dataset, epoch, train=True)
        model = self.train_model.train()
        num_batches = len(loader)
        steps_per_epoch = math.ceil(num_batches / config.accumulation_steps)
        totals = torch.zeros(4, device=self.device)  # loss, iou, grad norm, counted micro-batches
        steps_done, streak, clips = 0, 0, 0
        started = time.perf_counter()
        progress = self._progress(loader, f"epoch {epoch}")
        self.optimizer.zero_grad(set_to_none=True)
        for index, batch in enumerate(progress):
            batch = self._to_device(batch)
            group_start = index - index % config.accumulation_steps
            group_size = min(config.accumulation_steps, num_batches - group_start)
            last_in_group = index - group_start == group_size - 1
            sync = contextlib.nullcontext()
            if self.context.is_distributed and not last_in_group:
                sync = model.no_sync()
            with sync:
                with self._autocast():
                    logits = model(batch["frames"], batch["text_ids"], batch["text_mask"])
                loss = self.criterion(logits, batch["masks"], batch["valid"])
                if self._finite(loss):
                    streak = 0
                    self.scaler.scale(loss / group_size).backward()
                    totals[0] += loss.detach()
                    totals[1] += batch_iou(logits.detach(), batch["masks"], batch["valid"])
                    totals[3] += 1
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
            totals[2] += self._optimizer_step()
            steps_done += 1
            self.step += 1
            self.scheduler.step(epoch + steps_done / steps_per_epoch)
            self._apply_warmup()
            logs = {"loss": loss.detach(), "lr": self.current_lr}
            for callback in self.callbacks:
                callback.on_step_end(self, self.step, logs)
            if hasattr(progress, "set_postfix") and self.step % config.log_every == 0:
                counted = totals[3].clamp_min(1)
                progress.set_postfix(
                    loss=f"{(totals[0] / counted).item():.4f}",
                    iou=f"{(totals[1] / counted).item():.3f}",
                    gnorm=f"{(totals[2] / steps_done).item():.2f}",
                    lr=f"{logs['lr']:.2e}",
                )
            if self._steps_exhausted() or self._time_exhausted():
                break
        elapsed = time.perf_counter() - started
        self._average_buffers()
        totals = all_reduce_mean(totals, self.context)
        counted = totals[3].clamp_min(1)
        return {
            "train_loss": (totals[0] / counted).item(),
            "train_iou": (totals[1] / counted).item(),
            "grad_norm": (totals[2] / max(steps_done, 1)).item(),
            "lr": self.current_lr,
            "steps": self.step,
            "nonfinite_steps": self.nonfinite_steps,
            "clips_per_s": clips * self.context.world_size / max(elapsed, 1e-9),
        }

    def _average_buffers(self) -> None:
        """Average BatchNorm statistics over ranks, so every rank holds the same model."""
        if not self.context.is_distributed:
            return
        for buffer in self.model.buffers():
            if buffer.is_floating_point():
                buffer.copy_(all_reduce_mean(buffer, self.context))

    def _apply_warmup(self) -> None:
        """Scale the scheduled learning rates of the next step during the warm-up."""
        warmup = self.config.warmup_steps
        if warmup > 0 and self.step < warmup:
            for group in self.optimizer.param_groups:
                group["lr"] *= (self.step + 1) / warmup

    @property
    def current_lr(self) -> float:
        """The largest learning rate of the parameter groups (the base ``lr`` times the largest
        multiplier, 1 for fusion, temporal module and head)."""
        return max(group["lr"] for group in self.optimizer.param_groups)

    def _finite(self, loss: torch.Tensor) -> bool:
        finite = torch.isfinite(loss.detach()).float()
        if self.context.is_distributed:  # every rank must agree, or DDP would hang
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        return bool(finite.item())

    def _optimizer_step(self) -> torch.Tensor:
        self.scaler.unscale_(self.optimizer)
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        if self.config.clip_grad_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, self.config.clip_grad_norm)
        else:
            grads = [p.grad.detach().norm() for p in params if p.grad is not None]
            norm = torch.stack(grads).norm() if grads else torch.zeros((), device=self.device)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return norm.detach().float()

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Evaluate whole videos: ``val_loss``, ``J``, ``F``, ``JF`` (reduced over ranks)."""
        from rvoslib.metrics import RVOSEvaluator

        model = self.model.eval()
        evaluator = RVOSEvaluator()
        loss_total = torch.zeros(2, device=self.device)
        for batch in self._progress(self._loader(self.val_dataset, 0, train=False), "validate"):
            batch = self._to_device(batch)
            logits = self.predict_logits(model, batch)
            loss_total[0] += self.criterion(logits, batch["masks"], batch["valid"])
            loss_total[1] += 1
            predicted = logits.float().sigmoid()[:, :, 0] > self.config.threshold
            for i in range(predicted.shape[0]):
                height, width = predicted.shape[-2:]
                if "unpadded_size" in batch:  # leave out the padding of eval transforms
                    height, width = (int(v) for v in batch["unpadded_size"][i])
                evaluator.update(
                    batch["video_id"][i],
                    str(batch["exp_id"][i]),
                    predicted[i, :, :height, :width],
                    batch["masks"][i, :, :height, :width] > 0.5,
                    valid=batch["valid"][i],
                )
        evaluator.all_gather()
        summary = evaluator.summary()
        loss_total = all_reduce_mean(loss_total, self.context)
        return {
            "val_loss": (loss_total[0] / loss_total[1].clamp_min(1)).item(),
            "J": float(summary["J"]),
            "F": float(summary["F"]),
            "JF": float(summary["JF"]),
        }

    def predict_logits(self, model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        """Logits ``(B, T, 1, H, W)`` of a batch, in chunks of ``val_clip_len`` frames."""
        with self._autocast():
            return predict_in_chunks(
                model,
                batch["frames"],
                batch["text_ids"],
                batch["text_mask"],
                self.config.val_clip_len,
            )

    @torch.no_grad()
    def write_overlays(
        self,
        dataset: Dataset,
        folder: str | Path,
        count: int,
        frames_per_strip: int | None = None,
    ) -> list[Path]:
        """Draw predictions on the first ``count`` items of ``dataset``, one PNG strip each.

        Each ``<video>_<exp_id>.png`` shows the clip's frames side by side with the predicted
        mask overlaid; ``captions.txt`` lists the expressions.

        Args:
            dataset: Items as for validation.
            folder: Output folder (created).
            count: Number of items to draw.
            frames_per_strip: Evenly spaced frames per strip (``None``: every frame).

        Returns:
            The written PNG paths.
        """
        from PIL import Image

        from rvoslib.data import denormalize
        from rvoslib.viz import overlay_masks

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        model = self.model.eval()
        captions, paths = [], []
        for index in range(min(count, len(dataset))):
            batch = self._to_device(self.collate_fn([dataset[index]]))
            masks = (
                self.predict_logits(model, batch).sigmoid()[0, :, 0] > self.config.threshold
            ).cpu()
            images = np.asarray(overlay_masks(denormalize(batch["frames"][0].cpu()), masks))
            if frames_per_strip is not None:
                images = images[:: max(1, len(images) // frames_per_strip)][:frames_per_strip]
            name = f"{batch['video_id'][0]}_{batch['exp_id'][0]}.png"
            Image.fromarray(np.concatenate(list(images), axis=1)).save(folder / name)
            captions.append(f"{name}: {batch['expression'][0]}\n")
            paths.append(folder / name)
        atomic_write_text(folder / "captions.txt", "".join(captions))
        return paths

    def _progress(self, iterable: Iterable, description: str) -> Iterable:
        if not (self.config.progress and self.context.is_main):
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=description, leave=False, dynamic_ncols=True)

    # ----------------------------------------------------------------------------- state
    def _track_best(self, metric: float) -> None:
        if metric > self.best_metric:
            self.best_metric, self.best_epoch = metric, self.epoch
            self.validations_without_improvement = 0
        else:
            self.validations_without_improvement += 1
            patience = self.config.early_stopping_patience
            if patience is not None and self.validations_without_improvement >= patience:
                self.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume, except the model weights."""
        return {
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
            "rng": get_rng_state(),
            "trainer_config": self.config.to_dict(),
            "model_config": _model_config(self.model),
            "world_size": self.context.world_size,
        }

    def _save(self, improved: bool) -> None:
        if self.output_dir is None:
            return
        if self.context.is_main:
            state = self.state_dict()
            save_checkpoint(self.output_dir / "last", self.model, state)
            if improved:
                save_checkpoint(self.output_dir / "best", self.model, state)
            lines = "".join(json.dumps(record) + "\n" for record in self.history)
            atomic_write_text(self.output_dir / HISTORY_FILE, lines)
        self.context.barrier()

    def _load(self, directory: Path) -> None:
        from safetensors.torch import load_file

        state = load_training_state(directory)
        differences = config_differences(
            {k: v for k, v in state["trainer_config"].items() if k not in RESUMABLE_CHANGES},
            {k: v for k, v in self.config.to_dict().items() if k not in RESUMABLE_CHANGES},
        ) + config_differences(state["model_config"], _model_config(self.model))
        if differences:
            raise ValueError(
                f"cannot resume from {str(directory)!r}: its config differs in "
                + "; ".join(differences)
            )
        weights = load_file(str(directory / WEIGHTS_FILE), device=str(self.device))
        self.model.load_state_dict(weights)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step = state["epoch"], state["step"]
        self.best_metric, self.best_epoch = state["best_metric"], state["best_epoch"]
        self.validations_without_improvement = state["validations_without_improvement"]
        self.nonfinite_steps = state["nonfinite_steps"]
        self.history = list(state["history"])
        set_rng_state(state["rng"])


def _model_config(model: nn.Module) -> dict[str, Any]:
    config = _unwrap(model).config
    if config is None:
        return {}
    data = config.to_dict()
    data.pop("text_config", None)  # save_pretrained fills these in; they do not change training
    data.pop("tokenizer", None)
    return data
