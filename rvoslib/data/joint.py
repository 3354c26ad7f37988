"""The RefCOCO dataset kinds and ReferFormer's joint Ref-YouTube-VOS + RefCOCO training set.

:mod:`rvoslib.data.kinds` registers, through the builders here:

=====================  ===============================================================
kind                   what
=====================  ===============================================================
``refcoco``            RefCOCO (``unc``)
``refcoco+``           RefCOCO+ (``unc``)
``refcocog``           RefCOCOg (``umd``)
``refcocog-google``    RefCOCOg (``google``)
``refcoco-all``        the three above, concatenated (ReferFormer's ``--dataset_file all``
                       image pretraining, ``main_pretrain.py``)
``ytvos+refcoco``      Ref-YouTube-VOS ``train`` and the three above as pseudo clips,
                       concatenated (ReferFormer's ``main_joint.py``)
=====================  ===============================================================

``DataConfig.root`` is the COCO folder for the RefCOCO kinds (``REFCOCO_LAYOUT``) and the
Ref-YouTube-VOS folder for ``ytvos+refcoco``, whose COCO folder is ``DataConfig.coco_root``
(None: ``coco`` next to ``root``, ReferFormer's ``data/ref-youtube-vos`` and ``data/coco``).
Every RefCOCO training item is a clip of ``num_frames`` frames (1: the image; more: a pseudo
clip, :mod:`rvoslib.data.pseudo_clip`), augmented by ``train_transform(size)`` as every other
training set; the held-out set is the ``val_split`` split of the same datasets (for
``ytvos+refcoco``: the held-out Ref-YouTube-VOS videos, as for ``ytvos``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import ConcatDataset, Dataset

from rvoslib.data.config import DataConfig

__all__ = [
    "REFCOCO_KINDS",
    "build_joint",
    "build_refcoco",
    "build_refcoco_eval",
    "coco_root_of",
    "concat",
    "refcoco_sets",
]

#: Dataset kind -> the (dataset, split_by) pairs it concatenates.
REFCOCO_KINDS: dict[str, tuple[tuple[str, str], ...]] = {
    "refcoco": (("refcoco", "unc"),),
    "refcoco+": (("refcoco+", "unc"),),
    "refcocog": (("refcocog", "umd"),),
    "refcocog-google": (("refcocog", "google"),),
    "refcoco-all": (("refcoco", "unc"), ("refcoco+", "unc"), ("refcocog", "umd")),
}
#: The RefCOCO part of ``ytvos+refcoco`` (ReferFormer's ``datasets/concat_dataset.py``).
JOINT_REFCOCO = REFCOCO_KINDS["refcoco-all"]


def concat(parts: Sequence[Dataset]) -> Dataset:
    """The one dataset of ``parts``, or their :class:`~torch.utils.data.ConcatDataset`."""
    return parts[0] if len(parts) == 1 else ConcatDataset(list(parts))


def refcoco_sets(
    root: str | Path,
    pairs: Sequence[tuple[str, str]],
    split: str,
    *,
    pseudo_clip_frames: int = 1,
    transform: Any = None,
) -> Dataset:
    """The ``split`` of each ``(dataset, split_by)`` of ``pairs`` under ``root``, concatenated.

    Args:
        root: The COCO folder (see :data:`rvoslib.data.refcoco.REFCOCO_LAYOUT`).
        pairs: E.g. ``[("refcoco", "unc"), ("refcocog", "umd")]``.
        split: The split of each (``"train"``, ``"val"``...).
        pseudo_clip_frames: Frames per item (see :class:`~rvoslib.data.RefCOCODataset`).
        transform: The clip transform of every item.

    Raises:
        ValueError: ``pairs`` is empty; and what :class:`~rvoslib.data.RefCOCODataset` raises.
        FileNotFoundError: what :class:`~rvoslib.data.RefCOCODataset` raises.
    """
    from rvoslib.data.refcoco import RefCOCODataset

    if not pairs:
        raise ValueError("pairs must name at least one (dataset, split_by)")
    return concat(
        [
            RefCOCODataset(
                root,
                name,
                split,
                split_by,
                pseudo_clip_frames=pseudo_clip_frames,
                transform=transform,
            )
            for name, split_by in pairs
        ]
    )


def _check(config: DataConfig) -> str:
    if config.task != "rvos":
        raise ValueError(
            f"dataset {config.dataset!r} has the task(s) rvos, got task {config.task!r} (--task)"
        )
    if not config.root:
        raise ValueError(f"root is required for dataset {config.dataset!r} (--root)")
    return config.root


def build_refcoco_eval(
    config: DataConfig, pairs: Sequence[tuple[str, str]], seed: int = 0
) -> Dataset:
    """The ``val_split`` split of ``pairs`` (1-frame items; ``size`` None: original size)."""
    from rvoslib.data.transforms import eval_transform

    root = _check(config)
    transform = eval_transform(config.size) if config.size else None
    return refcoco_sets(root, pairs, config.val_split, transform=transform)


def build_refcoco(
    config: DataConfig, pairs: Sequence[tuple[str, str]], seed: int = 0
) -> tuple[Dataset, Dataset]:
    """The training (``train_split``, clips of ``num_frames`` frames, ``train_transform``) and
    held-out (:func:`build_refcoco_eval`) sets of ``pairs``."""
    from rvoslib.data.transforms import train_transform

    root = _check(config)
    train = refcoco_sets(
        root,
        pairs,
        config.train_split,
        pseudo_clip_frames=config.num_frames,
        transform=train_transform(config.size),
    )
    return train, build_refcoco_eval(config, pairs, seed)


def coco_root_of(config: DataConfig) -> Path:
    """The COCO folder of ``ytvos+refcoco``: ``coco_root``, else ``coco`` next to ``root``.

    Raises:
        ValueError: neither ``coco_root`` nor ``root`` is set.
        FileNotFoundError: the folder does not exist (it and ``--coco-root`` are named).
    """
    given = "coco_root" if config.coco_root else f"'coco' next to root {config.root!r}"
    folder = Path(config.coco_root) if config.coco_root else Path(_check(config)).parent / "coco"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"RefCOCO folder not found: {folder} ({given}); give the COCO folder with "
            "--coco-root (data.coco_root)"
        )
    return folder


def build_joint(config: DataConfig, ytvos: tuple[Dataset, Dataset]) -> tuple[Dataset, Dataset]:
    """ReferFormer's joint training set: RefCOCO, RefCOCO+, RefCOCOg (``train``, pseudo clips
    of ``num_frames`` frames) and the Ref-YouTube-VOS training set, concatenated in this order
    as ReferFormer concatenates them; the held-out set is Ref-YouTube-VOS's.

    Args:
        config: The data settings (``root``: Ref-YouTube-VOS; ``coco_root``: COCO).
        ytvos: The Ref-YouTube-VOS ``(training, held-out)`` sets of ``config``.
    """
    from rvoslib.data.transforms import train_transform

    coco = refcoco_sets(
        coco_root_of(config),
        JOINT_REFCOCO,
        "train",
        pseudo_clip_frames=config.num_frames,
        transform=train_transform(config.size),
    )
    parts = list(coco.datasets) if isinstance(coco, ConcatDataset) else [coco]
    return ConcatDataset([*parts, ytvos[0]]), ytvos[1]
