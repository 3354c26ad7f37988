"""Dataset kinds: the registry :data:`DATASETS` and the built-in kinds (synthetic, DAVIS,
Ref-YouTube-VOS, YouTube-VOS, A2D-Sentences, JHMDB-Sentences, RefCOCO/+/g and the joint
Ref-YouTube-VOS + RefCOCO set).

Each kind is a :class:`DatasetBuilder`: how to build the training and held-out sets of a
:class:`~rvoslib.data.DataConfig`, and the set it is evaluated on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch.utils.data import Dataset, Subset

from rvoslib.data.config import DataConfig
from rvoslib.registry import Registry

__all__ = [
    "DATASETS",
    "DatasetBuilder",
    "held_out_split",
    "list_datasets",
    "register_dataset",
]

#: Synthetic videos are kept in memory up to this total size (frames and labels).
SYNTHETIC_CACHE_BYTES = 2**30
#: Seed offset of the synthetic held-out videos (disjoint from the training videos).
HELD_OUT_SEED = 100_003

TrainBuilder = Callable[[DataConfig, int], tuple[Dataset, Dataset]]
EvalBuilder = Callable[[DataConfig, int], Dataset]


@dataclass(frozen=True)
class DatasetBuilder:
    """What :data:`DATASETS` holds for one dataset kind.

    Attributes:
        train: ``train(config, seed) -> (training set, held-out set)``; None for a dataset
            that is only evaluated on (JHMDB-Sentences).
        evaluation: ``evaluation(config, seed) -> dataset``; None: the held-out set of
            ``train``.
    """

    train: TrainBuilder | None = None
    evaluation: EvalBuilder | None = None


#: Dataset kinds: name -> :class:`DatasetBuilder`.
DATASETS = Registry("dataset")


def register_dataset(
    name: str, *, evaluation: EvalBuilder | None = None, description: str = ""
) -> Callable[[TrainBuilder], TrainBuilder]:
    """Decorator registering ``builder(config, seed) -> (train, val)`` under ``name``.

    Args:
        name: The ``DataConfig.dataset`` value that selects it.
        evaluation: ``evaluation(config, seed) -> dataset`` for :func:`build_eval_dataset`;
            None evaluates on the held-out set ``builder`` returns.
        description: One line shown in listings.

    Raises:
        ValueError: ``name`` is taken (unregister it first: ``DATASETS.unregister(name)``).

    Example:
        >>> from rvoslib.data import SyntheticRVOSDataset
        >>> @register_dataset("tiny-shapes", description="two synthetic videos")
        ... def tiny(config, seed):
        ...     return SyntheticRVOSDataset(2, 2, 32, seed=seed), SyntheticRVOSDataset(
        ...         1, 2, 32, seed=seed + 1)
        >>> from rvoslib.data import DataConfig, build_eval_dataset
        >>> len(build_eval_dataset(DataConfig(dataset="tiny-shapes")))
        1
        >>> DATASETS.unregister("tiny-shapes")
    """

    def decorator(builder: TrainBuilder) -> TrainBuilder:
        DATASETS.register(name, DatasetBuilder(builder, evaluation), description=description)
        return builder

    return decorator


def list_datasets(pattern: str | None = None) -> list[str]:
    """The registered dataset kinds matching a shell-style ``pattern`` (all if None), sorted.

    Example:
        >>> list_datasets("*vos")
        ['youtube-vos', 'ytvos']
    """
    return DATASETS.list(pattern)


def held_out_split(length: int, fraction: float) -> tuple[range, range]:
    """Training and held-out indices of a dataset of ``length`` items: the first
    ``max(1, int(length * fraction))`` items are held out.

    Example:
        >>> held_out_split(100, 0.05)
        (range(5, 100), range(0, 5))
    """
    count = max(1, int(length * fraction))
    return range(count, length), range(count)


def _require_root(config: DataConfig) -> str:
    if not config.root:
        raise ValueError(f"root is required for dataset {config.dataset!r} (--root)")
    return config.root


def _require_task(config: DataConfig, *tasks: str) -> None:
    if config.task not in tasks:
        raise ValueError(
            f"dataset {config.dataset!r} has the task(s) {', '.join(tasks)}, got task "
            f"{config.task!r} (--task)"
        )


def _eval_transform(config: DataConfig) -> Any:
    from rvoslib.data.transforms import eval_transform

    return eval_transform(config.size) if config.size else None


def _synthetic_set(config: DataConfig, seed: int, train: bool) -> Dataset:
    from rvoslib.data.synthetic import SyntheticRVOSDataset
    from rvoslib.data.synthetic_vos import SyntheticVOSDataset

    kind = {"rvos": SyntheticRVOSDataset, "vos": SyntheticVOSDataset}[config.task]
    options: dict[str, Any] = {
        "attributes": config.attributes,
        "long_expressions": config.long_expressions,
        "with_flow": config.flow,  # validation too: its loss includes the flow term
    }
    if kind is SyntheticVOSDataset:
        options["first_mask"] = "zeros" if config.zero_first_mask else "target"
    size = config.size or 64
    if not train:
        return kind(
            config.val_videos, config.val_frames, size, seed=seed + HELD_OUT_SEED, **options
        )
    video_bytes = 4 * config.num_frames * size**2  # RGB frames + labels
    cache = config.train_videos * video_bytes <= SYNTHETIC_CACHE_BYTES
    return kind(config.train_videos, config.num_frames, size, seed=seed, cache=cache, **options)


def _synthetic_eval(config: DataConfig, seed: int) -> Dataset:
    return _synthetic_set(config, seed, train=False)


@register_dataset("synthetic", evaluation=_synthetic_eval, description="generated videos")
def _synthetic(config: DataConfig, seed: int) -> tuple[Dataset, Dataset]:
    return _synthetic_set(config, seed, train=True), _synthetic_set(config, seed, train=False)


def _as_task(config: DataConfig, dataset: Dataset) -> Dataset:
    """The semi-supervised task (one item per object, ``first_mask``) for task ``vos``."""
    if config.task != "vos":
        return dataset
    from rvoslib.data.vos import FirstFrameMaskDataset

    return FirstFrameMaskDataset(dataset)


def _davis_eval(config: DataConfig, seed: int) -> Dataset:
    from rvoslib.data.davis import RefDAVISDataset

    root = _require_root(config)
    val = RefDAVISDataset(root, split=config.val_split, transform=_eval_transform(config))
    return _as_task(config, val)  # vos: DAVIS-2017 semi-supervised


@register_dataset(
    "davis", evaluation=_davis_eval, description="Ref-DAVIS17 / DAVIS-2017 (rvos, vos)"
)
def _davis(config: DataConfig, seed: int) -> tuple[Dataset, Dataset]:
    from rvoslib.data.davis import RefDAVISDataset
    from rvoslib.data.transforms import train_transform

    root = _require_root(config)
    train = RefDAVISDataset(
        root,
        split=config.train_split,
        num_frames=config.num_frames,
        transform=train_transform(config.size),
    )
    return _as_task(config, train), _davis_eval(config, seed)


def _split_train(config: DataConfig, kind: Any, train: bool = True) -> tuple[Dataset, Dataset]:
    """Ref-YouTube-VOS / YouTube-VOS: ``val_fraction`` of the ``train`` split held out."""
    from rvoslib.data.transforms import train_transform

    root = _require_root(config)
    whole = kind(root, split="train", transform=_eval_transform(config))
    train_ids, val_ids = held_out_split(len(whole), config.val_fraction)
    held_out = Subset(whole, val_ids)
    if not train:
        return held_out, held_out
    full = kind(
        root, split="train", num_frames=config.num_frames, transform=train_transform(config.size)
    )
    return Subset(full, train_ids), held_out


def _ytvos_eval(config: DataConfig, seed: int) -> Dataset:
    from rvoslib.data.ytvos import RefYouTubeVOSDataset

    _require_task(config, "rvos")
    root = _require_root(config)
    split = "valid" if config.val_split == "val" else config.val_split
    return RefYouTubeVOSDataset(root, split, transform=_eval_transform(config))


@register_dataset("ytvos", evaluation=_ytvos_eval, description="Ref-YouTube-VOS (rvos only)")
def _ytvos(config: DataConfig, seed: int) -> tuple[Dataset, Dataset]:
    from rvoslib.data.ytvos import RefYouTubeVOSDataset

    _require_task(config, "rvos")
    return _split_train(config, RefYouTubeVOSDataset)


def _youtube_vos_eval(config: DataConfig, seed: int) -> Dataset:
    from rvoslib.data.youtube_vos import YouTubeVOSDataset

    _require_task(config, "vos")
    return _split_train(config, YouTubeVOSDataset, train=False)[1]


@register_dataset("youtube-vos", evaluation=_youtube_vos_eval, description="YouTube-VOS (vos only)")
def _youtube_vos(config: DataConfig, seed: int) -> tuple[Dataset, Dataset]:
    from rvoslib.data.youtube_vos import YouTubeVOSDataset

    _require_task(config, "vos")
    return _split_train(config, YouTubeVOSDataset)


def _window_transform(config: DataConfig) -> Any:
    from rvoslib.data.transforms import eval_transform

    size = config.size or 320
    return eval_transform(size, max_size=int(size * 1.8))


def _a2d_eval(config: DataConfig, seed: int) -> Dataset:
    from rvoslib.data.a2d import A2DSentencesDataset

    _require_task(config, "rvos")
    root = _require_root(config)
    split = "test" if config.val_split == "val" else config.val_split
    return A2DSentencesDataset(
        root, split=split, num_frames=config.num_frames, transform=_window_transform(config)
    )


@register_dataset("a2d", evaluation=_a2d_eval, description="A2D-Sentences (rvos only)")
def _a2d(config: DataConfig, seed: int) -> tuple[Dataset, Dataset]:
    from rvoslib.data.a2d import A2DSentencesDataset
    from rvoslib.data.transforms import train_transform

    _require_task(config, "rvos")
    root = _require_root(config)
    train = A2DSentencesDataset(
        root, split="train", num_frames=config.num_frames, transform=train_transform(config.size)
    )
    val = A2DSentencesDataset(
        root, split="test", num_frames=config.num_frames, transform=_window_transform(config)
    )
    return train, val


def _jhmdb_eval(config: DataConfig, seed: int) -> Dataset:
    from rvoslib.data.jhmdb import JHMDBSentencesDataset

    _require_task(config, "rvos")
    root = _require_root(config)
    return JHMDBSentencesDataset(
        root, num_frames=config.num_frames, transform=_window_transform(config)
    )


DATASETS.register(
    "jhmdb",
    DatasetBuilder(evaluation=_jhmdb_eval),
    description="JHMDB-Sentences (rvos, evaluation only)",
)


#: RefCOCO kinds (their datasets: :data:`rvoslib.data.joint.REFCOCO_KINDS`) -> description.
_REFCOCO_KINDS = {
    "refcoco": "RefCOCO unc, images as clips (rvos only)",
    "refcoco+": "RefCOCO+ unc, images as clips (rvos only)",
    "refcocog": "RefCOCOg umd, images as clips (rvos only)",
    "refcocog-google": "RefCOCOg google, images as clips (rvos only)",
    "refcoco-all": "RefCOCO + RefCOCO+ + RefCOCOg, ReferFormer's image pretraining (rvos only)",
}


def _register_refcoco(name: str, description: str) -> None:
    def train(config: DataConfig, seed: int) -> tuple[Dataset, Dataset]:
        from rvoslib.data.joint import REFCOCO_KINDS, build_refcoco

        return build_refcoco(config, REFCOCO_KINDS[name], seed)

    def evaluation(config: DataConfig, seed: int) -> Dataset:
        from rvoslib.data.joint import REFCOCO_KINDS, build_refcoco_eval

        return build_refcoco_eval(config, REFCOCO_KINDS[name], seed)

    register_dataset(name, evaluation=evaluation, description=description)(train)


for _name, _description in _REFCOCO_KINDS.items():
    _register_refcoco(_name, _description)


@register_dataset(
    "ytvos+refcoco",
    evaluation=_ytvos_eval,
    description="Ref-YouTube-VOS + RefCOCO/+/g pseudo clips, ReferFormer's joint training",
)
def _ytvos_refcoco(config: DataConfig, seed: int) -> tuple[Dataset, Dataset]:
    from rvoslib.data.joint import build_joint
    from rvoslib.data.ytvos import RefYouTubeVOSDataset

    _require_task(config, "rvos")
    return build_joint(config, _split_train(config, RefYouTubeVOSDataset))
