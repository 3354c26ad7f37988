"""Datasets from a :class:`~rvoslib.data.DataConfig`: for training (:func:`build_datasets`)
and for evaluation (:func:`build_eval_dataset`).

Dataset kinds are registered in :data:`~rvoslib.data.DATASETS` (:mod:`rvoslib.data.kinds`):
``register_dataset(name)`` adds one, :func:`list_datasets` lists them.
"""

from __future__ import annotations

from torch.utils.data import Dataset

from rvoslib.data.config import SYNTHETIC_ATTRIBUTES, TASKS, DataConfig
from rvoslib.data.kinds import (
    DATASETS,
    DatasetBuilder,
    held_out_split,
    list_datasets,
    register_dataset,
)

__all__ = [
    "DATASETS",
    "SYNTHETIC_ATTRIBUTES",
    "TASKS",
    "DataConfig",
    "DatasetBuilder",
    "build_datasets",
    "build_eval_dataset",
    "dataset_names",
    "held_out_split",
    "list_datasets",
    "register_dataset",
]


def dataset_names() -> list[str]:
    """The registered dataset kinds, sorted (``list_datasets()``)."""
    return list_datasets()


def build_datasets(config: DataConfig, seed: int = 0) -> tuple[Dataset, Dataset]:
    """The training and held-out datasets ``config`` describes.

    Args:
        config: The data settings.
        seed: Seed of synthetic data and of the ``shuffle_text`` permutation.

    Raises:
        KeyError: unknown dataset kind (lists the registered ones).
        ValueError: ``root`` missing for a dataset that needs one, ``size`` None, a task the
            dataset does not have, or a dataset that is only evaluated on.
    """
    builder = DATASETS.get(config.dataset)
    if builder.train is None:
        trainable = [name for name in list_datasets() if DATASETS.get(name).train is not None]
        raise ValueError(
            f"dataset {config.dataset!r} is for evaluation only (build_eval_dataset); "
            f"datasets to train on: {', '.join(trainable)}"
        )
    if config.size is None:
        raise ValueError(
            "size=None (each dataset's evaluation size) is for build_eval_dataset only; "
            "training needs an int size (--size)"
        )
    train, val = builder.train(config, seed)
    if config.shuffle_text:
        from rvoslib.data.controls import ShuffledTextDataset

        train = ShuffledTextDataset(train, seed=seed)
    return train, val


def build_eval_dataset(config: DataConfig, seed: int = 0) -> Dataset:
    """The dataset ``config`` is evaluated on (``rvos eval``).

    ``synthetic`` and ``davis`` give the held-out set of :func:`build_datasets` with the same
    ``config`` and ``seed`` (with ``size=None``: DAVIS frames at their original size,
    synthetic at 64); ``ytvos`` the ``val_split`` split (``"val"`` reads ``valid``);
    ``youtube-vos`` the held-out share of ``train``; ``a2d`` the ``val_split`` split
    (``"val"`` reads ``test``) and ``jhmdb`` every sample, both in windows of ``num_frames``
    frames at ``size`` (None: 320) with the longer side at most 1.8 times that.

    Args:
        config: The data settings.
        seed: The run's seed (synthetic held-out videos use ``seed + 100003``).

    Raises:
        KeyError: unknown dataset kind (lists the registered ones).
        ValueError: ``root`` missing for a dataset that needs one, or a task the dataset does
            not have.
        FileNotFoundError: ``root`` or a file the dataset needs does not exist.

    Example:
        >>> dataset = build_eval_dataset(DataConfig(val_videos=3, val_frames=2, size=32))
        >>> len(dataset), tuple(dataset[0]["frames"].shape)
        (3, (2, 3, 32, 32))
    """
    builder = DATASETS.get(config.dataset)
    if builder.evaluation is not None:
        return builder.evaluation(config, seed)
    if config.size is None:
        raise ValueError(
            f"dataset {config.dataset!r} has no evaluation size of its own: give size (--size)"
        )
    return builder.train(config, seed)[1]
