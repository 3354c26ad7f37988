"""Streaming J&F evaluation over many videos, mergeable across distributed ranks.

A sequence is one ``(video_id, key)`` pair, the key naming a referring expression
(Ref-YouTube-VOS, Ref-DAVIS17) or an object id (DAVIS). Per-frame J and F are computed as the
frames arrive, chunk by chunk; the protocol and the statistics are applied in
:meth:`RVOSEvaluator.summary`, once every frame of a sequence is known. Summary values are means
over sequences, as the official DAVIS code averages over objects.
"""

from __future__ import annotations

import csv
import io
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from rvoslib._checks import format_shape
from rvoslib._io import atomic_write_bytes
from rvoslib.metrics.davis import MaskLike, boundary_f_measure, region_similarity
from rvoslib.metrics.statistics import PROTOCOLS, protocol_frames, summarize_frames

__all__ = ["SUMMARY_KEYS", "RVOSEvaluator"]

SUMMARY_KEYS = ("J", "F", "JF", "J_recall", "F_recall", "J_decay", "F_decay")
_CSV_FIELDS = ("video_id", "key", "num_frames", *SUMMARY_KEYS)


class _Track:
    """Per-frame J and F of one sequence, with the frame ids that order them."""

    def __init__(self) -> None:
        self.frame_ids: list[int | str] = []
        self.j_values: list[float] = []
        self.f_values: list[float] = []
        self.explicit_ids: bool | None = None

    def add(
        self,
        frame_ids: list[int | str],
        explicit: bool,
        j_values: list[float],
        f_values: list[float],
        name: object,
    ) -> None:
        if self.explicit_ids is not None and self.explicit_ids != explicit:
            raise ValueError(
                f"sequence {name} was updated both with and without frame_ids; pass frame_ids "
                "to every update of a sequence or to none"
            )
        if explicit:
            clash = set(self.frame_ids).intersection(frame_ids)
            if clash or len(set(frame_ids)) != len(frame_ids):
                shown = sorted(clash)[:5] if clash else "repeated within one update"
                raise ValueError(f"sequence {name} got frame ids twice: {shown}")
        self.explicit_ids = explicit
        self.frame_ids.extend(frame_ids)
        self.j_values.extend(float(v) for v in j_values)
        self.f_values.extend(float(v) for v in f_values)

    def ordered(self) -> tuple[np.ndarray, np.ndarray]:
        order = range(len(self.frame_ids))
        if self.explicit_ids:
            order = sorted(order, key=lambda i: self.frame_ids[i])
        order = list(order)
        return np.asarray(self.j_values)[order], np.asarray(self.f_values)[order]


def _take_frames(masks: MaskLike, index: torch.Tensor) -> MaskLike:
    """``masks[index]`` for a numpy array or a tensor (on its device)."""
    if isinstance(masks, torch.Tensor):
        return masks[index.to(masks.device)]
    return masks[index.numpy()]


class RVOSEvaluator:
    """Accumulates J and F per (video, expression or object) and summarises them.

    Args:
        protocol: ``"all"`` (every frame with ground truth) or ``"semi-supervised"`` (all but
            the first and the last of them, as the official DAVIS-2017 evaluation).
        bound_th: F-measure tolerance, see :func:`rvoslib.metrics.boundary_tolerance`.
        device: Where J and F are computed; default the device of the masks handed to
            :meth:`update`.

    Example:
        >>> import numpy as np
        >>> masks = np.zeros((3, 16, 16), dtype=bool); masks[:, 4:12, 4:12] = True
        >>> evaluator = RVOSEvaluator()
        >>> evaluator.update("video", "0", masks[:2], masks[:2])
        >>> evaluator.update("video", "0", masks[2:], masks[2:])  # the next chunk
        >>> evaluator.summary()["JF"], evaluator.summary()["num_sequences"]
        (1.0, 1)
    """

    def __init__(
        self,
        protocol: str = "all",
        bound_th: float = 0.008,
        device: torch.device | str | None = None,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        self.protocol = protocol
        self.bound_th = bound_th
        self.device = device
        self._tracks: dict[tuple[str, str], _Track] = {}

    def reset(self) -> None:
        """Forget every sequence."""
        self._tracks = {}

    def __len__(self) -> int:
        return len(self._tracks)

    def update(
        self,
        video_id: str,
        key: str,
        pred: MaskLike,
        gt: MaskLike,
        void: MaskLike | None = None,
        valid: MaskLike | Sequence[bool] | None = None,
        frame_ids: Sequence[int | str] | None = None,
    ) -> None:
        """Score a chunk of frames of one sequence.

        Call it again with the following chunks of the same ``(video_id, key)``; chunks are
        ordered by ``frame_ids`` when given, else by arrival.

        Args:
            video_id: The video.
            key: The expression id or object id within the video.
            pred: (T, H, W) predicted masks, foreground where nonzero.
            gt: (T, H, W) ground-truth masks, foreground where nonzero.
            void: Optional (T, H, W) pixels to ignore.
            valid: Optional (T,) bool, the frames that have ground truth; others are skipped.
            frame_ids: Optional (T,) frame indices or names (sortable); needed to merge parts
                of one sequence scored on different ranks.

        Raises:
            ValueError: shapes differ, ``valid`` or ``frame_ids`` is not (T,), or frame ids
                repeat within a sequence.
        """
        name = f"({video_id!r}, {key!r})"
        for arg_name, value in (("pred", pred), ("gt", gt)):
            if getattr(value, "ndim", None) != 3:
                shape = format_shape(getattr(value, "shape", ()))
                raise ValueError(f"{arg_name} must be (T, H, W), got {shape}")
        num_frames = pred.shape[0]
        if frame_ids is not None and len(frame_ids) != num_frames:
            raise ValueError(
                f"frame_ids must have one id per frame of pred {format_shape(pred.shape)}, "
                f"got {len(frame_ids)}"
            )
        track = self._tracks.get((video_id, key)) or _Track()
        if frame_ids is None:
            ids = list(range(len(track.frame_ids), len(track.frame_ids) + num_frames))
        else:
            ids = [i.item() if isinstance(i, np.generic | torch.Tensor) else i for i in frame_ids]
        if valid is not None:
            keep = valid if isinstance(valid, torch.Tensor) else torch.as_tensor(np.asarray(valid))
            if keep.shape != (num_frames,):
                raise ValueError(
                    f"valid must be (T,) for pred {format_shape(pred.shape)}, "
                    f"got {format_shape(keep.shape)}"
                )
            index = keep.bool().cpu().nonzero().squeeze(1)
            ids = [ids[i] for i in index.tolist()]
            pred, gt = _take_frames(pred, index), _take_frames(gt, index)
            void = None if void is None else _take_frames(void, index)
        j_values = region_similarity(pred, gt, void, device=self.device)
        f_values = boundary_f_measure(pred, gt, void, self.bound_th, device=self.device)
        track.add(ids, frame_ids is not None, j_values.tolist(), f_values.tolist(), name)
        self._tracks[(video_id, key)] = track

    def merge(self, other: RVOSEvaluator) -> RVOSEvaluator:
        """Add the sequences of ``other`` (e.g. another rank's) to this evaluator; returns self.

        Raises:
            ValueError: the protocols or tolerances differ, or a sequence present in both lacks
                ``frame_ids`` (its frames could not be ordered) or repeats a frame id.
        """
        if (other.protocol, other.bound_th) != (self.protocol, self.bound_th):
            raise ValueError(
                "can only merge evaluators with the same protocol and bound_th, got "
                f"({self.protocol!r}, {self.bound_th}) and ({other.protocol!r}, {other.bound_th})"
            )
        for seq, theirs in other._tracks.items():
            mine = self._tracks.get(seq)
            if mine is None:
                copy = _Track()
                explicit = bool(theirs.explicit_ids)
                copy.add(theirs.frame_ids, explicit, theirs.j_values, theirs.f_values, seq)
                self._tracks[seq] = copy
                continue
            if not (mine.explicit_ids and theirs.explicit_ids):
                raise ValueError(
                    f"sequence {seq} is on both evaluators without frame_ids; pass frame_ids "
                    "to update() to merge parts of one sequence"
                )
            mine.add(theirs.frame_ids, True, theirs.j_values, theirs.f_values, seq)
        return self

    def all_gather(self) -> RVOSEvaluator:
        """Gather every rank's sequences onto every rank; a no-op without torch.distributed.

        Uses ``torch.distributed.all_gather_object``; call it once, after the last update.
        Returns self.
        """
        distributed = torch.distributed
        if not (distributed.is_available() and distributed.is_initialized()):
            return self
        states: list[dict | None] = [None] * distributed.get_world_size()
        distributed.all_gather_object(states, self._tracks)
        merged = RVOSEvaluator(self.protocol, self.bound_th, self.device)
        for tracks in states:
            part = RVOSEvaluator(self.protocol, self.bound_th, self.device)
            part._tracks = tracks
            merged.merge(part)
        self._tracks = merged._tracks
        return self

    def per_sequence(self) -> list[dict[str, object]]:
        """One row per sequence, sorted by (video_id, key).

        Returns:
            Dicts with ``video_id``, ``key``, ``num_frames`` (frames evaluated under the
            protocol) and the statistics ``J, F, JF, J_recall, F_recall, J_decay, F_decay``
            (NaN when the protocol leaves no frame).
        """
        rows = []
        for (video_id, key), track in sorted(self._tracks.items()):
            j_values, f_values = track.ordered()
            frames = protocol_frames(len(j_values), self.protocol)
            stats = summarize_frames(j_values[frames], f_values[frames])
            rows.append({"video_id": video_id, "key": key, **stats})
        return rows

    def summary(self) -> dict[str, float]:
        """Means over sequences of J, F, J&F, recalls and decays.

        Sequences left without frames by the protocol (semi-supervised needs three) are left
        out, with a warning. ``JF = (J + F) / 2``.

        Returns:
            ``{"J", "F", "JF", "J_recall", "F_recall", "J_decay", "F_decay"}`` floats (NaN when
            nothing was scored), ``"num_sequences"`` and ``"num_frames"`` ints.
        """
        rows = self.per_sequence()
        scored = [row for row in rows if row["num_frames"] > 0]
        if len(scored) < len(rows):
            skipped = [(row["video_id"], row["key"]) for row in rows if row["num_frames"] == 0]
            warnings.warn(
                f"{len(skipped)} sequences have no frame to evaluate under the "
                f"{self.protocol!r} protocol and are left out of the summary: {skipped[:5]}",
                stacklevel=2,
            )
        result: dict[str, float] = {
            name: float(np.mean([row[name] for row in scored])) if scored else math.nan
            for name in SUMMARY_KEYS
        }
        result["num_sequences"] = len(scored)
        result["num_frames"] = int(sum(row["num_frames"] for row in scored))
        return result

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`per_sequence` as CSV, atomically; returns the path."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=_CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        for row in self.per_sequence():
            writer.writerow({name: row[name] for name in _CSV_FIELDS})
        return atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))
