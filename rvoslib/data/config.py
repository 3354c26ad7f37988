"""``DataConfig``: which data a run trains, validates and is evaluated on.

``rvos train`` and ``rvos eval`` take one option per field (same name, same default); recipes
set them. :func:`rvoslib.data.build_datasets` and :func:`rvoslib.data.build_eval_dataset` turn
it into datasets.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from rvoslib._checks import check_ranges
from rvoslib.data.synthetic_scene import ATTRIBUTES as SYNTHETIC_ATTRIBUTES

__all__ = ["SYNTHETIC_ATTRIBUTES", "TASKS", "DataConfig"]

TASKS = ("rvos", "vos")
_INF = float("inf")
#: Valid ranges: (low, high (excluded), may be None, low included).
_RANGES = {
    "num_frames": (1, _INF, False, True),
    "size": (32, _INF, True, True),
    "train_videos": (1, _INF, False, True),
    "val_videos": (1, _INF, False, True),
    "val_frames": (1, _INF, False, True),
    "val_fraction": (0, 1, False, False),
}


@dataclass
class DataConfig:
    """The data of a training run.

    Attributes:
        dataset: A registered dataset kind (:func:`~rvoslib.data.list_datasets`):
            ``synthetic``, ``davis`` (Ref-DAVIS17 / DAVIS-2017), ``ytvos`` (Ref-YouTube-VOS),
            ``youtube-vos`` (YouTube-VOS, VOS task only), ``a2d`` (A2D-Sentences), ``jhmdb``
            (JHMDB-Sentences, evaluation only), ``refcoco``, ``refcoco+``, ``refcocog``,
            ``refcocog-google``, ``refcoco-all`` (images as clips) and ``ytvos+refcoco``
            (ReferFormer's joint training).
        task: ``rvos`` (a sentence per clip) or ``vos`` (the first frame's mask per clip,
            ``first_mask``); the model must solve the same task.
        root: Dataset root folder (not used by ``synthetic``).
        coco_root: The COCO folder of RefCOCO/+/g (``train2014/``, ``refcoco*/``) for the joint
            dataset ``ytvos+refcoco``, whose ``root`` is Ref-YouTube-VOS; None: ``coco`` next
            to ``root`` (ReferFormer's ``data/ref-youtube-vos`` and ``data/coco``).
        train_split: Split to train on.
        val_split: Split to validate on (``davis``) and to evaluate on
            (:func:`build_eval_dataset`).
        num_frames: Frames per training clip (and per A2D / JHMDB evaluation window).
        size: Image size, >= 32 (training: square crop for real data; side of synthetic
            videos). None only for :func:`build_eval_dataset`: each dataset's own evaluation
            size (DAVIS, Ref-YouTube-VOS: the original frames; synthetic: 64; A2D, JHMDB: 320).
        train_videos: Number of synthetic training videos.
        val_videos: Number of synthetic held-out videos.
        val_frames: Frames of each synthetic held-out video.
        attributes: What synthetic expressions may name (:data:`SYNTHETIC_ATTRIBUTES`):
            ``color``, ``shape``, ``motion``, ``position``.
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
    coco_root: str | None = None
    train_split: str = "train"
    val_split: str = "val"
    num_frames: int = 4
    size: int | None = 64
    train_videos: int = 4096
    val_videos: int = 96
    val_frames: int = 8
    attributes: list[str] = dataclasses.field(default_factory=lambda: list(SYNTHETIC_ATTRIBUTES))
    val_fraction: float = 0.05
    shuffle_text: bool = False
    long_expressions: bool = False
    flow: bool = False
    zero_first_mask: bool = False

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        check_ranges(self, _RANGES)
        valid = ", ".join(SYNTHETIC_ATTRIBUTES)
        if not self.attributes:
            raise ValueError(f"attributes must name at least one of {valid}")
        unknown = [name for name in self.attributes if name not in SYNTHETIC_ATTRIBUTES]
        if unknown:
            raise ValueError(f"unknown attributes {unknown}; valid attributes: {valid}")
        if self.zero_first_mask and (self.task != "vos" or self.dataset != "synthetic"):
            raise ValueError("zero_first_mask is a control of the synthetic VOS task (--task vos)")
        if self.coco_root is not None and self.dataset != "ytvos+refcoco":
            raise ValueError(
                "coco_root is the COCO folder of the joint dataset 'ytvos+refcoco'; the "
                f"RefCOCO kinds take it as root. Got dataset {self.dataset!r}"
            )
        if (self.long_expressions or self.flow) and self.dataset != "synthetic":
            raise ValueError(
                "long_expressions and flow are options of the synthetic dataset, got dataset "
                f"{self.dataset!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return dataclasses.asdict(self)
