"""Training checkpoints: the ``save_pretrained`` folder plus the training state, atomically.

A checkpoint folder holds ``config.json``, ``model.safetensors`` (and tokenizer files), as
written by :meth:`SegmentationModel.save_pretrained`, plus ``training_state.pt`` with the optimizer,
scheduler, grad scaler, epoch, step, best metric, RNG states and the trainer config. The folder
is built under a temporary name and renamed into place, so a crash never leaves a half-written
checkpoint and the previous one stays intact until the new one is complete.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rvoslib._io import atomic_directory
from rvoslib.models.base import CONFIG_FILE, WEIGHTS_FILE, SegmentationModel, load_weights

__all__ = [
    "TRAINING_STATE_FILE",
    "TRAINING_STATE_KEYS",
    "check_finite",
    "check_resumable",
    "config_differences",
    "get_rng_state",
    "load_training_state",
    "load_weights",
    "save_checkpoint",
    "set_rng_state",
    "training_state",
]

TRAINING_STATE_FILE = "training_state.pt"
#: The keys of a training state, exactly (``load_training_state`` refuses others).
TRAINING_STATE_KEYS = (
    "format_version",
    "optimizer",
    "scheduler",
    "scaler",
    "epoch",
    "step",
    "best_metric",
    "best_epoch",
    "validations_without_improvement",
    "nonfinite_steps",
    "history",
    "rng",
    "trainer_config",
    "model_config",
    "run_info",
    "world_size",
)
TRAINING_STATE_VERSION = 2


def get_rng_state() -> dict[str, Any]:
    """The Python, NumPy, torch CPU (and CUDA) random states."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore states returned by :func:`get_rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    directory: str | os.PathLike, model: SegmentationModel, state: dict[str, Any]
) -> Path:
    """Write model and training state into ``directory`` atomically.

    Args:
        directory: Target folder (replaced only once the new checkpoint is complete).
        model: The (unwrapped) model.
        state: Picklable training state (optimizer, scheduler, epoch, ...).

    Returns:
        The folder.
    """
    with atomic_directory(directory) as temp_dir:
        model.save_pretrained(temp_dir / "model")
        for item in (temp_dir / "model").iterdir():
            item.rename(temp_dir / item.name)
        (temp_dir / "model").rmdir()
        torch.save(state, temp_dir / TRAINING_STATE_FILE)
    return Path(directory)


def load_training_state(directory: str | os.PathLike) -> dict[str, Any]:
    """Read ``training_state.pt`` of a checkpoint folder.

    Raises:
        FileNotFoundError: the folder lacks a model or a training state (names the file).
        ValueError: the state's keys are not exactly :data:`TRAINING_STATE_KEYS` (a state of
            another rvoslib version, or not a training state): unknown and missing keys named.
    """
    directory = Path(directory)
    for name in (CONFIG_FILE, WEIGHTS_FILE, TRAINING_STATE_FILE):
        if not (directory / name).is_file():
            raise FileNotFoundError(
                f"{str(directory / name)!r} not found: a training checkpoint folder holds "
                f"{CONFIG_FILE}, {WEIGHTS_FILE} and {TRAINING_STATE_FILE}"
            )
    path = directory / TRAINING_STATE_FILE
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # pickle, zip and EOF errors of a damaged file
        raise ValueError(
            f"{str(path)!r} cannot be read (truncated or corrupt?): {type(error).__name__}: {error}"
        ) from error
    keys = set(state) if isinstance(state, dict) else set()
    unknown, missing = (
        sorted(keys - set(TRAINING_STATE_KEYS)),
        sorted(set(TRAINING_STATE_KEYS) - keys),
    )
    if unknown or missing or state.get("format_version") != TRAINING_STATE_VERSION:
        raise ValueError(
            f"{str(path)!r} is not a training state of this rvoslib version (format "
            f"{TRAINING_STATE_VERSION}): unknown keys {unknown}, missing keys {missing}"
        )
    return state


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Describe the keys whose values differ between two config dicts (nested dicts are
    compared key by key, named with dots: ``fusion.hidden_dim``).

    Returns:
        Lines like ``"lr: 0.0005 (checkpoint) != 0.001 (now)"``, sorted by key.
    """
    left_flat, right_flat = _flatten(saved), _flatten(current)
    lines = []
    for key in sorted(set(left_flat) | set(right_flat)):
        left, right = left_flat.get(key, "<missing>"), right_flat.get(key, "<missing>")
        if json.dumps(left, sort_keys=True, default=str) != json.dumps(
            right, sort_keys=True, default=str
        ):
            lines.append(f"{key}: {left!r} (checkpoint) != {right!r} (now)")
    return lines


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def check_finite(model: torch.nn.Module, where: str | os.PathLike) -> None:
    """Refuse to checkpoint a model holding NaN or infinite values.

    Raises:
        rvoslib.training.NonFiniteLossError: names the first tensors and ``where`` (whose
            previous checkpoint is kept).
    """
    from rvoslib.training.step import NonFiniteLossError

    bad = [
        name
        for name, value in model.state_dict().items()
        if value.is_floating_point() and not bool(torch.isfinite(value).all())
    ]
    if bad:
        raise NonFiniteLossError(
            f"refusing to save a checkpoint with non-finite values in {bad[:5]} ({len(bad)} "
            f"tensors); the previous checkpoint in {str(where)!r} is kept"
        )


def training_state(trainer: Any) -> dict[str, Any]:
    """Everything a :class:`~rvoslib.training.Trainer` needs to resume, except the weights
    (exactly the keys :data:`TRAINING_STATE_KEYS`)."""
    return {
        "format_version": TRAINING_STATE_VERSION,
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "scaler": trainer.scaler.state_dict(),
        "epoch": trainer.epoch,
        "step": trainer.step,
        "best_metric": trainer.best_metric,
        "best_epoch": trainer.best_epoch,
        "validations_without_improvement": trainer.validations_without_improvement,
        "nonfinite_steps": trainer.nonfinite_steps,
        "history": trainer.history,
        "rng": get_rng_state(),
        "trainer_config": trainer.config.to_dict(),
        "model_config": trainer.model.config.to_dict(),
        "run_info": trainer.run_info,
        "world_size": trainer.context.world_size,
    }


def check_resumable(
    state: dict[str, Any],
    directory: str | os.PathLike,
    config: Any,
    model: torch.nn.Module,
    run_info: dict[str, Any],
) -> None:
    """Refuse to resume when the trainer settings (but those in ``RESUMABLE_CHANGES``), the
    model's config or the run's facts (data, size, frames) differ from the checkpoint's.

    Raises:
        ValueError: lists every difference as ``key: saved (checkpoint) != current (now)``.
    """
    from rvoslib.training.config import RESUMABLE_CHANGES

    resumable = {k: v for k, v in state["trainer_config"].items() if k in RESUMABLE_CHANGES}
    differences = (
        config_differences({**state["trainer_config"], **resumable}, config.to_dict() | resumable)
        + config_differences(state["model_config"], model.config.to_dict())
        + config_differences(state["run_info"], run_info)
    )
    if differences:
        raise ValueError(
            f"cannot resume from {str(directory)!r}: its settings differ in "
            + "; ".join(differences)
        )
