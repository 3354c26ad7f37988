"""``TrainerConfig``: every setting of the :class:`~rvoslib.training.Trainer`.

``rvos train`` generates one option per field (same name, dashes for underscores, same
default); recipes (``rvoslib/recipes/*.yaml``) set them by name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["RESUMABLE_CHANGES", "TrainerConfig"]

#: Settings that may change between a run and its resumption.
RESUMABLE_CHANGES = frozenset(
    {
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
)


@dataclass
class TrainerConfig:
    """Settings of :class:`~rvoslib.training.Trainer` (saved in every checkpoint).

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
        t_mult: Growth factor of the cycle length.
        eta_min: Lowest learning rate of the cosine schedule.
        warmup_steps: Optimizer steps of linear warm-up before the cosine schedule (0: none).
            A larger language model trained from scratch may need it.
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
        fast: Use the library's fast path (:mod:`rvoslib.training.fast`): channels_last
            layouts, cuDNN autotuning, fused AdamW and ``torch.compile`` on CUDA.
        compile: Compile the training step with ``torch.compile`` (also without ``fast``).
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
    t_mult: int = 2
    eta_min: float = 1e-6
    warmup_steps: int = 0
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
