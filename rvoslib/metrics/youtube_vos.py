"""YouTube-VOS evaluation: J and F over seen and unseen categories, and the submission layout.

The benchmark reports region similarity J and boundary F (the official-exact DAVIS functions of
:mod:`rvoslib.metrics.davis`) averaged over objects separately for the categories of the
training set ("seen") and the others ("unseen"); the overall score is the mean of the four
numbers ``J_seen, J_unseen, F_seen, F_unseen``. Each object is scored on the frames that have
its ground truth, its first frame excluded (that mask is given to the method).

The challenge server takes a zip of ``Annotations/<video>/<frame>.png``: one indexed (palette)
PNG per frame listed for evaluation, pixel value = object id, at the video's original size.
Several objects of one video, segmented separately, are merged by score
(:func:`merge_object_scores`).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rvoslib._checks import format_shape
from rvoslib.metrics.davis import MaskLike, boundary_f_measure, region_similarity
from rvoslib.metrics.youtube_vos_submission import (
    write_youtube_vos_masks,
    zip_youtube_vos_submission,
)

__all__ = [
    "YTVOS_PROTOCOLS",
    "YTVOS_SUMMARY_KEYS",
    "YouTubeVOSEvaluator",
    "evaluation_frames",
    "merge_object_scores",
    "seen_categories",
    "write_youtube_vos_masks",
    "zip_youtube_vos_submission",
]

#: ``"first-excluded"``: every frame with ground truth but the object's first (default);
#: ``"semi-supervised"``: also without the last (the DAVIS-2017 protocol); ``"all"``.
YTVOS_PROTOCOLS = ("first-excluded", "semi-supervised", "all")
YTVOS_SUMMARY_KEYS = ("J_seen", "J_unseen", "F_seen", "F_unseen", "overall")


def _read_meta(meta: str | os.PathLike | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(meta, Mapping):
        data = meta
    else:
        path = Path(meta)
        if not path.is_file():
            raise FileNotFoundError(f"meta.json not found: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"cannot parse {path} as JSON: {error}") from error
    if not isinstance(data, Mapping) or not isinstance(data.get("videos"), Mapping):
        raise ValueError('meta must hold {"videos": {video_id: {"objects": ...}}}')
    return data


def seen_categories(train_meta: str | os.PathLike | Mapping[str, Any]) -> set[str]:
    """The categories of the objects of a training ``meta.json`` (path or loaded dict).

    Example:
        >>> seen_categories({"videos": {"v": {"objects": {"1": {"category": "cat"}}}}})
        {'cat'}
    """
    data = _read_meta(train_meta)
    return {
        str(entry["category"])
        for video in data["videos"].values()
        for entry in video.get("objects", {}).values()
        if entry.get("category") is not None
    }


def evaluation_frames(meta: str | os.PathLike | Mapping[str, Any]) -> dict[str, list[str]]:
    """The frames listed for evaluation: per video, the sorted union of its objects' frames.

    Example:
        >>> evaluation_frames({"videos": {"v": {"objects": {
        ...     "1": {"frames": ["00000", "00005"]}, "2": {"frames": ["00005", "00010"]}}}}})
        {'v': ['00000', '00005', '00010']}
    """
    data = _read_meta(meta)
    return {
        video_id: sorted(
            {str(f) for entry in video.get("objects", {}).values() for f in entry["frames"]}
        )
        for video_id, video in data["videos"].items()
    }


class YouTubeVOSEvaluator:
    """J and F per object, averaged over seen and unseen categories.

    Args:
        seen: The categories of the training set (:func:`seen_categories`).
        protocol: Frames scored per object, see ``YTVOS_PROTOCOLS``.
        bound_th: F tolerance (:func:`rvoslib.metrics.boundary_tolerance`).
        device: Where J and F are computed (default: the masks' device).

    Example:
        >>> gt = np.zeros((3, 16, 16), bool); gt[:, 4:12, 4:12] = True
        >>> evaluator = YouTubeVOSEvaluator(seen={"cat"})
        >>> evaluator.update("v1", 1, gt, gt, category="cat")
        >>> evaluator.update("v2", 1, np.zeros_like(gt), gt, category="zebra")
        >>> {k: round(v, 3) for k, v in evaluator.summary().items()}
        {'J_seen': 1.0, 'J_unseen': 0.0, 'F_seen': 1.0, 'F_unseen': 0.0, 'overall': 0.5, \
'num_seen': 1, 'num_unseen': 1}
    """

    def __init__(
        self,
        seen: Iterable[str],
        protocol: str = "first-excluded",
        bound_th: float = 0.008,
        device: torch.device | str | None = None,
    ) -> None:
        if isinstance(seen, str):
            raise TypeError(f"seen must be a collection of category names, got the string {seen!r}")
        if protocol not in YTVOS_PROTOCOLS:
            raise ValueError(f"protocol must be one of {YTVOS_PROTOCOLS}, got {protocol!r}")
        self.seen = {str(category) for category in seen}
        self.protocol, self.bound_th, self.device = protocol, bound_th, device
        self._objects: dict[tuple[str, int], dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self._objects)

    def update(
        self,
        video_id: str,
        obj_id: int,
        pred: MaskLike,
        gt: MaskLike,
        *,
        category: str,
        valid: MaskLike | Sequence[bool] | None = None,
    ) -> None:
        """Score one object over its frames, the first being its first (given) frame.

        Args:
            video_id: The video.
            obj_id: The object id within the video.
            pred: ``(T, H, W)`` predicted mask of the object (nonzero = object).
            gt: ``(T, H, W)`` ground truth of the object.
            category: The object's category (seen when in ``seen``).
            valid: ``(T,)`` bool, the frames that have ground truth (default all).

        Raises:
            ValueError: shapes differ or are not ``(T, H, W)``, ``valid`` is not ``(T,)``, the
                object was already scored, or ``category`` is missing.
        """
        key = (str(video_id), int(obj_id))
        if key in self._objects:
            raise ValueError(f"object {obj_id} of video {video_id!r} was already scored")
        if category is None or not str(category):
            raise ValueError(
                f"object {obj_id} of video {video_id!r}: category is needed to split seen and "
                f"unseen, got {category!r}"
            )
        for name, value in (("pred", pred), ("gt", gt)):
            if getattr(value, "ndim", None) != 3:
                raise ValueError(
                    f"{name} must be (T, H, W), got {format_shape(getattr(value, 'shape', ()))}"
                )
        num_frames = pred.shape[0]
        keep = np.ones(num_frames, bool)
        if valid is not None:
            flags = valid.cpu().numpy() if isinstance(valid, torch.Tensor) else np.asarray(valid)
            if flags.shape != (num_frames,):
                raise ValueError(
                    f"valid must be (T,) = ({num_frames},) for pred {format_shape(pred.shape)}, "
                    f"got {tuple(flags.shape)}"
                )
            keep = flags.astype(bool)
        index = np.flatnonzero(keep)
        index = index[_protocol_slice(len(index), self.protocol)]
        pred_part, gt_part = _take(pred, index), _take(gt, index)
        j_values = region_similarity(pred_part, gt_part, device=self.device)
        f_values = boundary_f_measure(
            pred_part, gt_part, bound_th=self.bound_th, device=self.device
        )
        self._objects[key] = {
            "category": str(category),
            "num_frames": len(index),
            "J": float(j_values.mean()) if len(index) else math.nan,
            "F": float(f_values.mean()) if len(index) else math.nan,
        }

    def per_object(self) -> list[dict[str, Any]]:
        """One row per object, sorted: ``video_id``, ``obj_id``, ``category``, ``seen``,
        ``num_frames``, ``J``, ``F``."""
        return [
            {"video_id": v, "obj_id": o, **row, "seen": row["category"] in self.seen}
            for (v, o), row in sorted(self._objects.items())
        ]

    def summary(self) -> dict[str, float]:
        """``J_seen``, ``J_unseen``, ``F_seen``, ``F_unseen`` (means over objects),
        ``overall`` (their mean), ``num_seen``, ``num_unseen``.

        A group without objects has NaN means and ``overall`` is then the mean of the defined
        numbers. Objects without a frame to score (one frame only) are left out, with a
        warning.
        """
        rows = self.per_object()
        scored = [row for row in rows if row["num_frames"] > 0]
        if len(scored) < len(rows):
            skipped = [(r["video_id"], r["obj_id"]) for r in rows if r["num_frames"] == 0]
            warnings.warn(
                f"{len(skipped)} objects have no frame to score under the {self.protocol!r} "
                f"protocol and are left out: {skipped[:5]}",
                stacklevel=2,
            )
        result: dict[str, float] = {}
        for group, is_seen in (("seen", True), ("unseen", False)):
            members = [row for row in scored if row["seen"] is is_seen]
            for metric in ("J", "F"):
                values = [row[metric] for row in members]
                result[f"{metric}_{group}"] = float(np.mean(values)) if values else math.nan
        defined = [result[k] for k in YTVOS_SUMMARY_KEYS[:4] if not math.isnan(result[k])]
        result["overall"] = float(np.mean(defined)) if defined else math.nan
        ordered = {key: result[key] for key in YTVOS_SUMMARY_KEYS}
        ordered["num_seen"] = sum(row["seen"] for row in scored)
        ordered["num_unseen"] = len(scored) - ordered["num_seen"]
        return ordered


def _take(masks: MaskLike, index: np.ndarray) -> MaskLike:
    """``masks[index]`` for a numpy array or a tensor (on its device)."""
    if isinstance(masks, torch.Tensor):
        return masks[torch.from_numpy(index).to(masks.device)]
    return np.asarray(masks)[index]


def _protocol_slice(num_frames: int, protocol: str) -> slice:
    if protocol == "all":
        return slice(0, num_frames)
    if protocol == "first-excluded":
        return slice(1, max(1, num_frames))
    return slice(1, max(1, num_frames - 1))


def merge_object_scores(
    scores: MaskLike, obj_ids: Sequence[int], threshold: float = 0.5
) -> np.ndarray:
    """Merge per-object probabilities into one object-id map per frame.

    Each pixel takes the id of the object with the highest probability if that probability
    exceeds ``threshold``, else 0 (background). Objects not started yet in a frame should
    have probability 0 there.

    Args:
        scores: ``(N, T, H, W)`` probabilities of the ``N`` objects (not logits).
        obj_ids: The ``N`` object ids, in 1..255.
        threshold: Lowest probability of a foreground pixel.

    Returns:
        ``(T, H, W)`` uint8 object ids.

    Raises:
        ValueError: ``scores`` is not ``(N, T, H, W)`` with ``N = len(obj_ids)``, or an id is
            outside 1..255.

    Example:
        >>> scores = np.array([[[[0.9, 0.6, 0.1]]], [[[0.2, 0.7, 0.3]]]])  # (2, 1, 1, 3)
        >>> merge_object_scores(scores, [3, 5]).tolist()
        [[[3, 5, 0]]]
    """
    values = scores.detach().float().cpu().numpy() if isinstance(scores, torch.Tensor) else scores
    values = np.asarray(values)
    ids = [int(i) for i in obj_ids]
    if values.ndim != 4 or values.shape[0] != len(ids):
        raise ValueError(
            f"scores must be (N, T, H, W) with N = len(obj_ids) = {len(ids)}, got "
            f"{format_shape(values.shape)}"
        )
    if any(not 1 <= i <= 255 for i in ids):
        raise ValueError(f"obj_ids must be in 1..255, got {ids}")
    if not ids:
        return np.zeros(values.shape[1:], np.uint8)
    best = values.argmax(axis=0)
    lookup = np.asarray(ids, np.uint8)
    return np.where(values.max(axis=0) > threshold, lookup[best], 0).astype(np.uint8)
