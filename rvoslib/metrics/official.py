"""Score a folder of predictions in the official DAVIS layout, as ``davis2017-evaluation`` does.

The predictions are indexed PNGs ``<predictions>/<sequence>/<frame>.png`` (pixel = object id,
0 = background), named as the ground-truth frames; a folder of annotator folders
``<predictions>/anno_<k>/<sequence>/<frame>.png`` (the Ref-DAVIS17 layout written by
:class:`~rvoslib.metrics.RefDAVISWriter` and by ReferFormer) is scored annotator by annotator
and averaged. Protocols (:data:`EVAL_PROTOCOLS`):

``"semi-supervised"``
    The official semi-supervised task: ``Annotations/<res>``, every frame but the first and
    the last, predicted id ``k`` scored against ground-truth id ``k``; the ground truth's
    objects are the ids ``1 .. max`` of its first frame; void pixels are not used.
``"all"``
    The same on every frame.
``"refer-davis"``
    The official unsupervised task, which ReferFormer runs on Ref-DAVIS17 (its
    ``eval_davis.py``): ``Annotations_unsupervised/<res>``, every frame, void pixels (255)
    ignored, and each ground-truth object matched to a predicted id by the Hungarian algorithm
    on the mean of (mean J + mean F) / 2 (at most 20 predicted ids); on ``anno_<k>`` folders
    the annotators' results are averaged (ReferFormer's issue #30).

Per-frame J and F are those of :func:`~rvoslib.metrics.region_similarity` and
:func:`~rvoslib.metrics.boundary_f_measure` (identical to the official ones); the statistics are
the official ``db_statistics``; the global means are means over objects. The official CSV tables
are written and read by :mod:`rvoslib.metrics.tables`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rvoslib._io import ImageReadError
from rvoslib._paths import check_path_component
from rvoslib.metrics.davis import boundary_f_measure, region_similarity
from rvoslib.metrics.refer_davis import _ANNOTATOR_FOLDER, annotator_folders
from rvoslib.metrics.statistics import protocol_frames, summarize_frames

__all__ = [
    "EVAL_PROTOCOLS",
    "GLOBAL_COLUMNS",
    "MAX_PROPOSALS",
    "DAVISFolderResult",
    "ObjectScore",
    "evaluate_davis_folder",
    "score_sequence",
]

EVAL_PROTOCOLS = ("all", "semi-supervised", "refer-davis")
GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
MAX_PROPOSALS = 20  # the official unsupervised evaluation refuses more predicted ids
_VOID = 255
_STAT_KEYS = ("JF", "J", "J_recall", "J_decay", "F", "F_recall", "F_decay")


@dataclass(frozen=True)
class ObjectScore:
    """One ground-truth object of one sequence: its row of the official per-sequence table.

    Attributes:
        name: ``"<sequence>_<n>"``, the official row name (``n`` counts the rows of the
            sequence; for ``refer-davis`` the rows follow the matched predicted ids).
        sequence: The sequence.
        gt_id: The ground-truth object id.
        pred_id: The predicted id scored against it (0: none, an empty mask).
        j_frames: (T',) per-frame J over the protocol's frames.
        f_frames: (T',) per-frame F.
        stats: ``J, J_recall, J_decay, F, F_recall, F_decay, JF, num_frames``.
    """

    name: str
    sequence: str
    gt_id: int
    pred_id: int
    j_frames: np.ndarray
    f_frames: np.ndarray
    stats: dict[str, float]


@dataclass(frozen=True)
class DAVISFolderResult:
    """The scores of one predictions folder (or the average of its annotator folders).

    Attributes:
        protocol: The protocol.
        split: The DAVIS split, e.g. ``"val"``.
        objects: Every scored object, in the official order (empty for an average).
        annotators: ``{"anno_0": result, ...}`` for a folder of annotator folders, else empty.
        ground_truth: The annotation folder scored against (state it with the numbers).
    """

    protocol: str
    split: str
    objects: tuple[ObjectScore, ...] = ()
    annotators: dict[str, DAVISFolderResult] = field(default_factory=dict)
    ground_truth: Path | None = None

    def global_means(self) -> dict[str, float]:
        """The official global table: :data:`GLOBAL_COLUMNS` -> value (NaN when empty).

        Means over objects of each statistic, ``J&F-Mean = (J-Mean + F-Mean) / 2``; for
        annotator folders, the mean of the annotators' tables.
        """
        if self.annotators:
            tables = [result.global_means() for result in self.annotators.values()]
            return {name: float(np.mean([t[name] for t in tables])) for name in GLOBAL_COLUMNS}
        if not self.objects:
            return dict.fromkeys(GLOBAL_COLUMNS, float("nan"))
        means = {
            key: float(np.mean([obj.stats[key] for obj in self.objects])) for key in _STAT_KEYS
        }
        means["JF"] = (means["J"] + means["F"]) / 2
        return dict(zip(GLOBAL_COLUMNS, (means[key] for key in _STAT_KEYS)))

    def per_sequence(self) -> list[tuple[str, float, float]]:
        """The official per-sequence table: ``(name, J-Mean, F-Mean)`` per object.

        For annotator folders, each row is the mean over annotators of the rows of that name
        (every annotator has the same names: they depend on the ground truth only).
        """
        if not self.annotators:
            return [(obj.name, obj.stats["J"], obj.stats["F"]) for obj in self.objects]
        rows: dict[str, list[tuple[float, float]]] = {}
        for result in self.annotators.values():
            for name, j_mean, f_mean in result.per_sequence():
                rows.setdefault(name, []).append((j_mean, f_mean))
        return [(name, *map(float, np.mean(values, axis=0))) for name, values in rows.items()]

    def summary(self) -> dict[str, float]:
        """The global means under rvoslib's names (as ``RVOSEvaluator.summary``).

        Returns:
            ``J, F, JF, J_recall, F_recall, J_decay, F_decay``, ``num_objects`` (of one
            folder) and ``num_annotators`` (0 for a plain folder).
        """
        table = self.global_means()
        first = next(iter(self.annotators.values()), self)
        return {
            "J": table["J-Mean"],
            "F": table["F-Mean"],
            "JF": table["J&F-Mean"],
            "J_recall": table["J-Recall"],
            "F_recall": table["F-Recall"],
            "J_decay": table["J-Decay"],
            "F_decay": table["F-Decay"],
            "num_objects": len(first.objects),
            "num_annotators": len(self.annotators),
        }


def _read_ids(path: Path, what: str) -> np.ndarray:
    """An indexed / greyscale PNG as an (H, W) int64 id map, as ``np.array(Image.open())``."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L", "1", "I", "I;16"):
                raise ImageReadError(
                    path, f"expected an indexed ('P') PNG of object ids, got mode {image.mode!r}"
                )
            return np.asarray(image).astype(np.int64)
    except ImageReadError:
        raise
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageReadError(path, str(error) or type(error).__name__) from error


def _pairs(
    pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None, rows: int, columns: int, **kwargs
) -> tuple[np.ndarray, np.ndarray]:
    """J and F ``(rows, columns, T)`` of predicted id ``r + 1`` against ground-truth ``c + 1``."""
    shape = (rows, columns, pred.shape[0])
    j_values, f_values = np.zeros(shape), np.zeros(shape)
    for column in range(columns):
        truth = torch.from_numpy(gt == column + 1)
        for row in range(rows):
            mask = torch.from_numpy(pred == row + 1)
            j_values[row, column] = region_similarity(mask, truth, void, **kwargs).cpu().numpy()
            f_values[row, column] = boundary_f_measure(mask, truth, void, **kwargs).cpu().numpy()
    return j_values, f_values


def score_sequence(
    pred: np.ndarray,
    gt: np.ndarray,
    protocol: str = "semi-supervised",
    name: str = "sequence",
    *,
    device: torch.device | str | None = None,
) -> list[ObjectScore]:
    """Score the id maps of one sequence as the official evaluation does.

    Args:
        pred: (T, H, W) integer predicted ids (0 = background).
        gt: (T, H, W) integer ground-truth ids (0 = background, 255 = void).
        protocol: One of :data:`EVAL_PROTOCOLS` (see the module docstring).
        name: The sequence name (row names and messages).
        device: Where J and F are computed (default CPU).

    Returns:
        One :class:`ObjectScore` per ground-truth object (ids ``1 .. max(gt[0])``).

    Raises:
        ValueError: an unknown protocol, shapes that differ, a predicted id above the
            ground truth's objects (semi-supervised / all) or above :data:`MAX_PROPOSALS`
            (refer-davis), or a sequence too short for the protocol.
    """
    if protocol not in EVAL_PROTOCOLS:
        raise ValueError(f"protocol must be one of {EVAL_PROTOCOLS}, got {protocol!r}")
    pred, gt = np.asarray(pred).astype(np.int64), np.asarray(gt).astype(np.int64)
    if pred.ndim != 3 or pred.shape != gt.shape:
        raise ValueError(
            f"{name}: pred and gt must be (T, H, W) id maps of one shape, got pred "
            f"{pred.shape} and gt {gt.shape}"
        )
    void = gt == _VOID
    gt = np.where(void, 0, gt)
    num_gt = int(gt[0].max(initial=0))
    kwargs = {"device": device}
    if protocol == "refer-davis":
        num_pred = int(pred.max(initial=0))
        if num_pred > MAX_PROPOSALS:
            raise ValueError(
                f"{name}: predictions hold id {num_pred}, above the {MAX_PROPOSALS} proposals "
                "the official unsupervised evaluation allows"
            )
        from scipy.optimize import linear_sum_assignment

        rows = max(num_pred, num_gt)
        j_all, f_all = _pairs(pred, gt, torch.from_numpy(void), rows, num_gt, **kwargs)
        cost = (j_all.mean(axis=2) + f_all.mean(axis=2)) / 2
        matched_rows, matched_columns = linear_sum_assignment(-cost)
        pairs = list(zip(matched_rows.tolist(), matched_columns.tolist()))
        j_rows = [j_all[row, column] for row, column in pairs]
        f_rows = [f_all[row, column] for row, column in pairs]
        ids = [(column + 1, row + 1 if row < num_pred else 0) for row, column in pairs]
    else:
        frames = protocol_frames(gt.shape[0], protocol)
        if frames.stop <= frames.start:
            raise ValueError(
                f"{name}: protocol {protocol!r} evaluates no frame of a sequence of "
                f"{gt.shape[0]} frames"
            )
        pred, gt = pred[frames], gt[frames]
        num_pred = int(pred.max(initial=0))
        if num_pred > num_gt:
            raise ValueError(
                f"{name}: predictions hold object id {num_pred} but the ground truth has "
                f"{num_gt} objects (ids 1..{num_gt} of its first frame); the official "
                f"{protocol} evaluation stops here"
            )
        j_diag, f_diag = [], []
        for obj_id in range(1, num_gt + 1):
            mask, truth = torch.from_numpy(pred == obj_id), torch.from_numpy(gt == obj_id)
            j_diag.append(region_similarity(mask, truth, **kwargs).cpu().numpy())
            f_diag.append(boundary_f_measure(mask, truth, **kwargs).cpu().numpy())
        j_rows, f_rows = j_diag, f_diag
        ids = [(obj_id, obj_id) for obj_id in range(1, num_gt + 1)]
    return [
        ObjectScore(f"{name}_{n}", name, gt_id, pred_id, j, f, summarize_frames(j, f))
        for n, ((gt_id, pred_id), j, f) in enumerate(zip(ids, j_rows, f_rows), 1)
    ]


def _annotation_folder(root: Path, protocol: str, resolution: str, annotations: str | None):
    wanted = annotations or (
        "Annotations_unsupervised" if protocol == "refer-davis" else "Annotations"
    )
    folder = root / wanted / resolution
    if folder.is_dir() or annotations is not None:
        if not folder.is_dir():
            raise FileNotFoundError(f"annotation folder not found: {folder}")
        return folder
    other = root / ({"Annotations", "Annotations_unsupervised"} - {wanted}).pop() / resolution
    if not other.is_dir():
        raise FileNotFoundError(
            f"annotation folder not found: {folder} (the {protocol!r} protocol reads "
            f"{wanted}; {other} is missing too)"
        )
    warnings.warn(
        f"{folder} not found: scoring the {protocol!r} protocol against {other} instead; "
        f"the official code would stop (pass annotations= to choose)",
        UserWarning,
        stacklevel=3,
    )
    return other


def _score_folder(
    folder: Path, gt_folder: Path, sequences: list[str], protocol: str, split: str, device
) -> DAVISFolderResult:
    objects: list[ObjectScore] = []
    for sequence in sequences:
        gt_paths = sorted((gt_folder / sequence).glob("*.png"))
        if not gt_paths:
            raise FileNotFoundError(f"no ground-truth PNGs for {sequence!r} in {gt_folder}")
        if not (folder / sequence).is_dir():
            raise FileNotFoundError(
                f"no predictions for sequence {sequence!r}: {folder / sequence} not found "
                "(expected <predictions>/<sequence>/<frame>.png)"
            )
        gt = np.stack([_read_ids(path, "ground truth") for path in gt_paths])
        pred_paths = [folder / sequence / path.name for path in gt_paths]
        pred_frames = []
        for path, gt_path in zip(pred_paths, gt_paths):
            what = f"{sequence} frame {path.stem} (predictions are named as the ground truth)"
            frame = _read_ids(path, what)
            if frame.shape != gt.shape[1:]:
                raise ValueError(
                    f"prediction {path} is {frame.shape[1]}x{frame.shape[0]} but the ground "
                    f"truth {gt_path} is {gt.shape[2]}x{gt.shape[1]}; write predictions at "
                    "the frames' original size"
                )
            pred_frames.append(frame)
        objects += score_sequence(np.stack(pred_frames), gt, protocol, sequence, device=device)
    return DAVISFolderResult(protocol, split, tuple(objects), ground_truth=gt_folder)


def evaluate_davis_folder(
    predictions: str | os.PathLike,
    root: str | os.PathLike,
    protocol: str = "semi-supervised",
    *,
    split: str = "val",
    resolution: str = "480p",
    annotations: str | None = None,
    sequences: Sequence[str] | None = None,
    device: torch.device | str | None = None,
) -> DAVISFolderResult:
    """Score a predictions folder in the official layout against a DAVIS root, no model needed.

    Args:
        predictions: ``<predictions>/<sequence>/<frame>.png``, or annotator folders
            ``<predictions>/anno_<k>/<sequence>/<frame>.png`` (scored each, then averaged).
        root: The DAVIS folder (``ImageSets/2017/<split>.txt`` and the annotations).
        protocol: ``"semi-supervised"``, ``"all"`` or ``"refer-davis"``, see the module.
        split: The split whose sequences are scored.
        resolution: The resolution folder of the annotations.
        annotations: The annotation folder name; None takes the protocol's (``Annotations``,
            or ``Annotations_unsupervised`` for ``refer-davis``) and falls back to the other
            with a warning when it is missing.
        sequences: Score only these sequences (default: all of the split, as the official
            code).
        device: Where J and F are computed (default CPU).

    Returns:
        A :class:`DAVISFolderResult`; :func:`rvoslib.metrics.write_official_tables` writes its
        CSV tables.

    Raises:
        ValueError: an unknown protocol or bad predictions (see :func:`score_sequence`).
        FileNotFoundError: a missing folder, split file or prediction (named).

    Example:
        >>> result = evaluate_davis_folder("results/osvos", "DAVIS")  # doctest: +SKIP
        >>> result.global_means()["J&F-Mean"]  # doctest: +SKIP
    """
    if protocol not in EVAL_PROTOCOLS:
        raise ValueError(f"protocol must be one of {EVAL_PROTOCOLS}, got {protocol!r}")
    predictions, root = Path(predictions), Path(root)
    if not predictions.is_dir():
        raise FileNotFoundError(f"predictions folder not found: {predictions}")
    if not root.is_dir():
        raise FileNotFoundError(f"DAVIS root not found: {root}")
    if sequences is None:
        split_file = root / "ImageSets" / "2017" / f"{split}.txt"
        if not split_file.is_file():
            raise FileNotFoundError(f"split file not found: {split_file}")
        sequences = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
        for name in sequences:  # names read from a file never leave the folders
            check_path_component(name, "video name", split_file)
    sequences = list(sequences)
    gt_folder = _annotation_folder(root, protocol, resolution, annotations)
    annotators = sorted(
        (p for p in predictions.iterdir() if p.is_dir() and _ANNOTATOR_FOLDER.match(p.name)),
        key=lambda p: int(p.name[5:]),
    )
    if protocol == "refer-davis":
        annotators = annotator_folders(predictions)  # a folder without anno_<k> is refused
    if not annotators:
        return _score_folder(predictions, gt_folder, sequences, protocol, split, device)
    results = {
        folder.name: _score_folder(folder, gt_folder, sequences, protocol, split, device)
        for folder in annotators
    }
    return DAVISFolderResult(protocol, split, (), results, ground_truth=gt_folder)
