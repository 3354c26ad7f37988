"""``DataConfig``: which data a run trains and validates on, and the datasets it describes.

``rvos train`` generates one option per field (same name, same default); recipes set them.
Dataset kinds are registered builders: ``register_dataset(name)`` adds one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch.utils.data import Dataset, Subset

__all__ = ["TASKS", "DataConfig", "build_datasets", "dataset_names", "register_dataset"]

TASKS = ("rvos", "vos")
_INF = float("inf")
#: Valid ranges: (low, high (excluded), may be None, low included).
_RANGES = {
    "num_frames": (1, _INF, False, True),
    "size": (32, _INF, False, True),
    "train_videos": (1, _INF, False, True),
    "val_videos": (1, _INF, False, True),
    "val_frames": (1, _INF, False, True),
    "val_fraction": (0, 1, False, False),
}
#: Synthetic videos are kept in memory up to this total size (frames and labels).
SYNTHETIC_CACHE_BYTES = 2**30

_BUILDERS: dict[str, Callable[[DataConfig, int], tuple[Dataset, Dataset]]] = {}


@dataclass
class DataConfig:
    """The data of a training run.

    Attributes:
        dataset: A registered dataset kind (:func:`dataset_names`): ``synthetic``, ``davis``
            (Ref-DAVIS17 / DAVIS-2017), ``ytvos`` (Ref-YouTube-VOS), ``youtube-vos``
            (YouTube-VOS, VOS task only), ``a2d`` (A2D-Sentences).
        task: ``rvos`` (a sentence per clip) or ``vos`` (the first frame's mask per clip,
            ``first_mask``); the model must solve the same task.
        root: Dataset root folder (not used by ``synthetic``).
        train_split: Split to train on.
        val_split: Split to validate on (``davis``).
        num_frames: Frames per training clip.
        size: Training image size, >= 32 (square crop for real data; side of synthetic
            videos).
        train_videos: Number of synthetic training videos.
        val_videos: Number of synthetic held-out videos.
        val_frames: Frames of each synthetic held-out video.
        attributes: What synthetic expressions may name: ``color``, ``shape``, ``position``,
            ``motion``.
        val_fraction: Share of Ref-YouTube-VOS training videos held out for validation.
        shuffle_text: Control experiment: pair every training clip with another clip's
            expression (:class:`~rvoslib.data.ShuffledTextDataset`).
        long_expressions: Synthetic expressions with a relation clause and their short form
            (``short_expression``, for LoSh).
        flow: Synthetic items carry their exact optical flow (``flow_forward``,
            ``flow_backward``), for flow-consistency losses.
        zero_first_mask: Control experiment of the VOS task: the first-frame mask is all zeros
            (synthetic data), so the model cannot know which object to track.
    """

    dataset: str = "synthetic"
    task: str = "rvos"
    root: str | None = None
    train_split: str = "train"
    val_split: str = "val"
    num_frames: int = 4
    size: int = 64
    train_videos: int = 4096
    val_videos: int = 96
    val_frames: int = 8
    attributes: list[str] = dataclasses.field(
        default_factory=lambda: ["color", "shape", "motion", "position"]
    )
    val_fraction: float = 0.05
    shuffle_text: bool = False
    long_expressions: bool = False
    flow: bool = False
    zero_first_mask: bool = False

    def __post_init__(self) -> None:
        from rvoslib.training.config import check_ranges

        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        check_ranges(self, _RANGES)
        if not self.attributes:
            raise ValueError("attributes must name at least one of color, shape, motion, position")
        if self.zero_first_mask and (self.task != "vos" or self.dataset != "synthetic"):
            raise ValueError("zero_first_mask is a control of the synthetic VOS task (--task vos)")
        if (self.long_expressions or self.flow) and self.dataset != "synthetic":
            raise ValueError(
                "long_expressions and flow are options of the synthetic dataset, got dataset "
                f"{self.dataset!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return dataclasses.asdict(self)


def register_dataset(
    name: str,
) -> Callable[[Callable[[DataConfig, int], tuple[Dataset, Dataset]]], Any]:
    """Decorator registering ``builder(config, seed) -> (train, val)`` under ``name``."""

    def decorator(builder: Callable[[DataConfig, int], tuple[Dataset, Dataset]]) -> Any:
        _BUILDERS[name] = builder
        return builder

    return decorator


def dataset_names() -> list[str]:
    """The registered dataset kinds, sorted."""
    return sorted(_BUILDERS)


def build_datasets(config: DataConfig, seed: int = 0) -> tuple[Dataset, Dataset]:
    """The training and held-out datasets ``config`` describes.

    Args:
        config: The data settings.
        seed: Seed of synthetic data and of the ``shuffle_text`` permutation.

    Raises:
        KeyError: unknown dataset kind (lists the registered ones).
        ValueError: ``root`` missing for a dataset that needs one.
    """
    if config.dataset not in _BUILDERS:
        raise KeyError(
            f"unknown dataset {config.dataset!r}; registered datasets: {', '.join(dataset_names())}"
        )
    train, val = _BUILDERS[config.dataset](config, seed)
    if config.shuffle_text:
        from rvoslib.data.controls import ShuffledTextDataset

        train = ShuffledTextDataset(train, seed=seed)
    return train, val


def _require_root(config: DataConfig) -> str:
    if not config.root:
        raise ValueError(f"root is required for dataset {config.dataset!r} (--root)")
    return config.root


@register_dataset("synthetic")
def _synthetic(config: DataConfig, seed: int) -> tuple[Dataset, Dataset]:
    from rvoslib.data.synthetic import SyntheticRVOSDataset
    from rvoslib.data.synthetic_vos import SyntheticVOSDataset

    kind = SyntheticVOSDataset if config.task == "vos" else SyntheticRVOSDataset
    video_bytes = 4 * config.num_frames * config.size**2  # RGB frames + labels
    options: dict[str, Any] = {
        "attributes": config.attributes,
        "long_expressions": config.long_expressions,
        "with_flow": config.flow,  # validation too: its loss includes the flow term
    }
    if config.task == "vos":
        options["first_mask"] = "zeros" if config.zero_first_mask else "target"
    train = kind(
        config.train_videos,
        config.num_frames,
        config.size,
        seed=seed,
        cache=config.train_videos * video_bytes <= SYNTHETIC_CACHE_BYTES,
        **options,
    )
    val = kind(config.val_videos, config.val_frames, config.size, seed=seed + 100_003, **options)
    return train, val


@register_dataset("davis")
def _davis(config: DataConfig, seed: int) -> tuple[Dataset, Dataset]:
    from rvoslib.data.davis import RefDAVISDataset
    from rvoslib.data.transforms import eval_transform, train_transform

    root = _require_root(config)
    train = RefDAVISDataset(
        root,
        split=config.train_split,
        num_frames=config.num_frames,
        transform=train_transform(config.size),
    )
    val = RefDAVISDataset(root, split=config.val_split, transform=eval_transform(config.size))
    if config.task == "vos":  # DAVIS-2017 semi-supervised: one item per object
        from rvoslib.data.vos import FirstFrameMaskDataset

        return FirstFrameMaskDataset(train), FirstFrameMaskDataset(val)
    return train, val


@register_dataset("ytvos")
def _ytvos(config: DataConfig, seed: int) -> tuple[Dataset, Dataset]:
    from rvoslib.data.transforms import eval_transform, train_transform
    from rvoslib.data.ytvos import RefYouTubeVOSDataset

    root = _require_root(config)
    full = RefYouTubeVOSDataset(
        root, split="train", num_frames=config.num_frames, transform=train_transform(config.size)
    )
    held_out = max(1, int(len(full) * config.val_fraction))
    whole = RefYouTubeVOSDataset(root, split="train", transform=eval_transform(config.size))
    return Subset(full, range(held_out, len(full))), Subset(whole, range(held_out))


@register_dataset("youtube-vos")
def _youtube_vos(config: DataConfig, seed: int) -> tuple[Dataset, Dataset]:
    from rvoslib.data.transforms import eval_transform, train_transform
    from rvoslib.data.youtube_vos import YouTubeVOSDataset

    if config.task != "vos":
        raise ValueError("dataset 'youtube-vos' is the VOS task: use task 'vos' (--task vos)")
    root = _require_root(config)
    full = YouTubeVOSDataset(
        root, split="train", num_frames=config.num_frames, transform=train_transform(config.size)
    )
    held_out = max(1, int(len(full) * config.val_fraction))
    whole = YouTubeVOSDataset(root, split="train", transform=eval_transform(config.size))
    return Subset(full, range(held_out, len(full))), Subset(whole, range(held_out))


@register_dataset("a2d")
def _a2d(config: DataConfig, seed: int) -> tuple[Dataset, Dataset]:
    from rvoslib.data.a2d import A2DSentencesDataset
    from rvoslib.data.transforms import eval_transform, train_transform

    root = _require_root(config)
    train = A2DSentencesDataset(
        root, split="train", num_frames=config.num_frames, transform=train_transform(config.size)
    )
    val = A2DSentencesDataset(
        root,
        split="test",
        num_frames=config.num_frames,
        transform=eval_transform(config.size, max_size=int(config.size * 1.8)),
    )
    return train, val
