"""``TrainerConfig``: every setting of the :class:`~rvoslib.training.Trainer`.

``rvos train`` generates one option per field (same name, dashes for underscores, same
default); recipes (``rvoslib/recipes/*.yaml``) set them by name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from rvoslib._checks import check_ranges  # re-exported: training configs check with it

__all__ = ["RESUMABLE_CHANGES", "TrainerConfig", "check_ranges"]

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
        "tensorboard",
    }
)


_INF = float("inf")
#: Valid ranges of the numeric fields: (low, high (excluded), may be None, low included).
_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "epochs": (1, _INF, False, True),
    "max_steps": (1, _INF, True, True),
    "max_time": (0, _INF, True, False),
    "batch_size": (1, _INF, False, True),
    "num_workers": (0, _INF, False, True),
    "lr": (0, _INF, False, False),
    "weight_decay": (0, _INF, False, True),
    "backbone_lr_mult": (0, _INF, False, True),
    "text_lr_mult": (0, _INF, False, True),
    "t_0": (1, _INF, False, True),
    "t_mult": (1, _INF, False, True),
    "eta_min": (0, _INF, False, True),
    "warmup_steps": (0, _INF, False, True),
    "lr_drop_factor": (0, 1.0, False, False),
    "accumulation_steps": (1, _INF, False, True),
    "clip_grad_norm": (0, _INF, True, False),
    "early_stopping_patience": (1, _INF, True, True),
    "max_nonfinite_steps": (0, _INF, False, True),
    "threshold": (0, 1.0, False, False),
    "val_clip_len": (1, _INF, True, True),
    "log_every": (1, _INF, False, True),
}


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
        lr_drops: Epochs at which the learning rate is multiplied by ``lr_drop_factor``
            (a step schedule, PyTorch's ``MultiStepLR`` stepped once per epoch, as the
            published systems train; it replaces the cosine one); empty: the cosine schedule.
        lr_drop_factor: Factor of each drop of ``lr_drops``.
        amp: ``"auto"`` (bf16 on CUDA, off on CPU), ``"bf16"``, ``"fp16"`` (with a grad
            scaler) or ``"off"``.
        accumulation_steps: Micro-batches per optimizer step (the loss is divided by it);
            an epoch's last, incomplete group still makes a step.
        clip_grad_norm: Maximum gradient norm, > 0 (``None`` disables clipping).
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
        activation_checkpointing: Recompute the activations of backbone and transformer
            blocks in the backward pass (less memory, more compute;
            :func:`~rvoslib.training.memory.enable_activation_checkpointing`).
        tensorboard: Log to ``output_dir/tensorboard`` when TensorBoard is installed.
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
    lr_drops: list[int] = dataclasses.field(default_factory=list)
    lr_drop_factor: float = 0.1
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
    activation_checkpointing: bool = False
    tensorboard: bool = True
    progress: bool = True
    log_every: int = 10

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        if self.amp not in ("auto", "bf16", "fp16", "off"):
            raise ValueError(f"amp must be 'auto', 'bf16', 'fp16' or 'off', got {self.amp!r}")
        check_ranges(self, _RANGES)
        self.lr_drops = list(self.lr_drops)
        if any(not isinstance(e, int) or isinstance(e, bool) or e < 1 for e in self.lr_drops):
            raise ValueError(f"lr_drops must be epochs >= 1, got {self.lr_drops}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {list(self.betas)}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        data = dataclasses.asdict(self)
        data["betas"] = list(self.betas)
        return data
