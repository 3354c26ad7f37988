"""Training: the :class:`Trainer`, checkpoints, callbacks and distributed helpers."""

from rvoslib.training.callbacks import Callback, LambdaCallback
from rvoslib.training.checkpoint import load_training_state, save_checkpoint
from rvoslib.training.controls import ShuffledTextDataset
from rvoslib.training.distributed import (
    DistributedContext,
    ShardSampler,
    all_reduce_mean,
    init_distributed,
)
from rvoslib.training.fast import apply_fast_path, maybe_compile
from rvoslib.training.trainer import (
    NonFiniteLossError,
    Trainer,
    TrainerConfig,
    batch_iou,
    predict_in_chunks,
)

__all__ = [
    "Callback",
    "DistributedContext",
    "LambdaCallback",
    "NonFiniteLossError",
    "ShardSampler",
    "ShuffledTextDataset",
    "Trainer",
    "TrainerConfig",
    "all_reduce_mean",
    "apply_fast_path",
    "batch_iou",
    "init_distributed",
    "load_training_state",
    "maybe_compile",
    "predict_in_chunks",
    "save_checkpoint",
]
