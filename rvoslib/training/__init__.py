"""Training: the :class:`Trainer`, its config, optimizer and schedule, checkpoints, callbacks,
the fast path and distributed helpers."""

from rvoslib.training.callbacks import Callback, LambdaCallback
from rvoslib.training.checkpoint import load_training_state, save_checkpoint
from rvoslib.training.config import TrainerConfig
from rvoslib.training.distributed import (
    DistributedContext,
    ShardSampler,
    all_reduce_mean,
    broadcast_flag,
    elastic_restart_problem,
    init_distributed,
)
from rvoslib.training.fast import apply_fast_path, maybe_compile, prepare_fast_path
from rvoslib.training.optim import CosineRestarts, build_optimizer, build_scheduler
from rvoslib.training.run_folder import RunFolder, RunLockedError
from rvoslib.training.trainer import AUTO_RESUME, NonFiniteLossError, Trainer, TrainingStep

__all__ = [
    "AUTO_RESUME",
    "Callback",
    "CosineRestarts",
    "DistributedContext",
    "LambdaCallback",
    "NonFiniteLossError",
    "RunFolder",
    "RunLockedError",
    "ShardSampler",
    "Trainer",
    "TrainerConfig",
    "TrainingStep",
    "all_reduce_mean",
    "apply_fast_path",
    "broadcast_flag",
    "build_optimizer",
    "build_scheduler",
    "elastic_restart_problem",
    "init_distributed",
    "load_training_state",
    "maybe_compile",
    "prepare_fast_path",
    "save_checkpoint",
]
