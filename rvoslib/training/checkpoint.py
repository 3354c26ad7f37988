"""Training checkpoints: the ``save_pretrained`` folder plus the training state, atomically.

A checkpoint folder holds ``config.json``, ``model.safetensors`` (and tokenizer files), as
written by :meth:`SegmentationModel.save_pretrained`, plus ``training_state.pt`` with the optimizer,
scheduler, grad scaler, epoch, step, best metric, RNG states and the trainer config. The folder
is built under a temporary name and renamed into place, so a crash never leaves a half-written
checkpoint and the previous one stays intact until the new one is complete; a full disk is
reported with the folder's path and the word that the previous checkpoint is intact.

The training state holds only tensors, numbers, strings, booleans, ``None``, lists and dicts
(the RNG states too: :func:`get_rng_state`), so it is read with ``torch.load(...,
weights_only=True)``: a file whose pickle carries anything else (code to run) is refused,
naming the file, and nothing in it is executed.
"""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rvoslib._io import atomic_directory
from rvoslib.models.base import CONFIG_FILE, WEIGHTS_FILE, SegmentationModel, load_weights
from rvoslib.models.saving import card_of

__all__ = [
    "TRAINING_STATE_FILE",
    "TRAINING_STATE_KEYS",
    "check_finite",
    "check_resumable",
    "config_differences",
    "get_rng_state",
    "load_training_state",
    "load_weights",
    "run_card",
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
#: 3: RNG states as plain lists and tensors, read with ``weights_only=True``.
TRAINING_STATE_VERSION = 3


def get_rng_state() -> dict[str, Any]:
    """The Python, NumPy, torch CPU (and CUDA) random states, as plain data.

    Returns:
        ``{"python": [version, [625 ints], gauss_next], "numpy": [name, keys (624,) int64
        tensor, pos, has_gauss, cached_gaussian], "torch": ByteTensor, "cuda": [ByteTensor,
        ...]}`` (``cuda`` only when CUDA is available): nothing that needs a pickle class.
    """
    version, internal, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [int(version), [int(value) for value in internal], gauss_next],
        "numpy": [
            str(name),
            torch.from_numpy(np.asarray(keys, dtype=np.int64).copy()),
            int(pos),
            int(has_gauss),
            float(cached),
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore states returned by :func:`get_rng_state`."""
    version, internal, gauss_next = state["python"]
    random.setstate((int(version), tuple(int(value) for value in internal), gauss_next))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(
        (str(name), keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached))
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def run_card(
    model: SegmentationModel,
    history: list[dict[str, Any]],
    run_info: dict[str, Any],
    config: Any,
) -> str:
    """The model card of a run's checkpoints: the last epoch's held-out J, F and J&F, the
    dataset and the trainer settings (:func:`rvoslib.models.saving.card_of`)."""
    last = history[-1] if history else {}
    data = run_info.get("data") or {}
    return card_of(
        model,
        metrics={k: last[k] for k in ("J", "F", "JF") if last.get(k) is not None},
        dataset=data.get("dataset"),
        recipe={"data": data, "trainer": config.to_dict()} if data else None,
    )


def save_checkpoint(
    directory: str | os.PathLike,
    model: SegmentationModel,
    state: dict[str, Any],
    card: str | None = None,
) -> Path:
    """Write model and training state into ``directory`` atomically.

    Args:
        directory: Target folder (replaced only once the new checkpoint is complete).
        model: The (unwrapped) model.
        state: The training state (:func:`training_state`: plain data and tensors).
        card: The model card (``README.md``; default: the model's own, without metrics).

    Returns:
        The folder.

    Raises:
        OSError: the disk is full (``errno.ENOSPC``): the message names ``directory`` and says
            that the previous checkpoint there is intact (it is: nothing was replaced).
    """
    directory = Path(directory)
    try:
        with atomic_directory(directory) as temp_dir:
            model.save_pretrained(temp_dir / "model", card=card)
            for item in (temp_dir / "model").iterdir():
                item.rename(temp_dir / item.name)
            (temp_dir / "model").rmdir()
            _write_state(temp_dir / TRAINING_STATE_FILE, state)
    except Exception as error:
        if not _disk_full(error):
            raise
        kept = (
            f"the previous checkpoint in {str(directory)!r} is intact"
            if directory.is_dir()
            else "no previous checkpoint was there, and nothing was written"
        )
        raise OSError(
            errno.ENOSPC,
            f"no space left on the device while saving the checkpoint {str(directory)!r}; "
            f"{kept}; free some space and resume",
        ) from error
    return directory


def _write_state(path: Path, state: dict[str, Any]) -> None:
    """Serialise in memory, then write with Python's file API (whose ``OSError`` keeps its
    ``errno``, unlike the writer inside ``torch.save``)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with open(path, "wb") as stream:
        stream.write(buffer.getbuffer())


def _disk_full(error: BaseException | None) -> bool:
    """Whether ``error`` (or one it was raised from) says the disk is full; safetensors' Rust
    writer reports it only in its message (``os error 28``, ``StorageFull``)."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return True
        text = str(error)
        if any(mark in text for mark in ("No space left", "StorageFull", "os error 28")):
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def load_training_state(directory: str | os.PathLike) -> dict[str, Any]:
    """Read ``training_state.pt`` of a checkpoint folder.

    The file is read with ``weights_only=True``: nothing in it runs.

    Raises:
        FileNotFoundError: the folder lacks a model or a training state (names the file).
        ValueError: the file holds objects other than tensors and plain data (a pickle that
            would run code, or a state of format 2 and older): refused, naming the file;
            it is truncated or corrupt; or the state's keys are not exactly
            :data:`TRAINING_STATE_KEYS` (a state of another rvoslib version, or not a training
            state): unknown and missing keys named.
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
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only" not in str(error).lower():
            raise ValueError(
                f"{str(path)!r} cannot be read (truncated or corrupt?): "
                f"{type(error).__name__}: {error}"
            ) from error
        raise ValueError(
            f"{str(path)!r} is not a plain rvoslib training state: its pickle holds objects "
            "other than tensors, numbers, strings, lists and dicts (code that would run on "
            "loading, or a state written by an older rvoslib), so it was refused unread; "
            f"only load it if you trust its source. Detail: {_first_line(error)}"
        ) from None
    except Exception as error:  # zip and EOF errors of a damaged file
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


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    found = [line for line in lines if "unsupported" in line.lower()]
    return (found or lines or [""])[0]


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
