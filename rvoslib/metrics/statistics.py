"""Per-sequence DAVIS statistics (mean, recall, decay) and the evaluation protocols.

``sequence_statistics`` follows the official ``db_statistics``; ``evaluate_sequence`` scores
one object (or one referring expression) of one video under a protocol:

* ``"all"``: every frame (Ref-YouTube-VOS);
* ``"semi-supervised"``: every frame but the first and the last, as the official DAVIS-2017
  semi-supervised evaluation (the first frame's mask is given to the method).

These score one expression (or object) at a time. ReferFormer's Ref-DAVIS17 protocol merges the
expressions of a video first and matches objects: see :mod:`rvoslib.metrics.official`
(``"refer-davis"``).
"""

from __future__ import annotations

import numpy as np
import torch

from rvoslib.metrics.davis import MaskLike, boundary_f_measure, region_similarity

__all__ = [
    "PROTOCOLS",
    "evaluate_sequence",
    "protocol_frames",
    "sequence_statistics",
    "summarize_frames",
]

PROTOCOLS = ("all", "semi-supervised")


def protocol_frames(num_frames: int, protocol: str) -> slice:
    """The frames a protocol evaluates.

    Args:
        num_frames: Number of frames T with ground truth.
        protocol: ``"all"`` or ``"semi-supervised"`` (drops the first and the last frame).

    Returns:
        A slice over the T frames.

    Raises:
        ValueError: unknown protocol.

    Example:
        >>> protocol_frames(5, "semi-supervised")
        slice(1, 4, None)
    """
    if protocol == "all":
        return slice(0, num_frames)
    if protocol == "semi-supervised":
        return slice(1, max(1, num_frames - 1))
    raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")


def sequence_statistics(values: np.ndarray | torch.Tensor | list[float]) -> dict[str, float]:
    """Mean, recall and decay of per-frame J or F values, as the official ``db_statistics``.

    * mean: the mean over frames (NaN frames ignored);
    * recall: the share of frames whose value is above 0.5;
    * decay: the mean of the first quarter of the frames minus the mean of the last quarter.
      The quarters are the official bins: with ``ids = round(linspace(1, T, 5)) - 1``, bin
      ``i`` holds frames ``ids[i] .. ids[i + 1]`` (both ends included, so neighbouring bins
      share a frame). Unlike the official code (which stores ``ids`` as uint8), this stays
      correct for sequences longer than 256 frames.

    Args:
        values: (T,) per-frame values.

    Returns:
        ``{"mean", "recall", "decay"}`` as floats; all NaN when T = 0.

    Example:
        >>> sequence_statistics([1.0, 1.0, 0.5, 0.0, 0.0])
        {'mean': 0.5, 'recall': 0.4, 'decay': 1.0}
    """
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    num_frames = values.size
    if num_frames == 0:
        return {"mean": float("nan"), "recall": float("nan"), "decay": float("nan")}
    ids = (np.round(np.linspace(1, num_frames, 5) + 1e-10) - 1).astype(np.int64)
    bins = [values[ids[i] : ids[i + 1] + 1] for i in range(4)]
    return {
        "mean": _nanmean(values),
        "recall": float(np.mean(values > 0.5)),
        "decay": _nanmean(bins[0]) - _nanmean(bins[3]),
    }


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


def evaluate_sequence(
    pred: MaskLike,
    gt: MaskLike,
    void: MaskLike | None = None,
    protocol: str = "all",
    bound_th: float = 0.008,
    *,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """J, F and their statistics for one object of one video.

    Args:
        pred: (T, H, W) predicted masks, foreground where nonzero.
        gt: (T, H, W) ground-truth masks, foreground where nonzero.
        void: Optional (T, H, W) pixels to ignore.
        protocol: ``"all"`` or ``"semi-supervised"`` (frames 1 .. T-2).
        bound_th: F-measure tolerance, see :func:`rvoslib.metrics.boundary_tolerance`.
        device: Where to compute; default ``pred``'s device.

    Returns:
        ``{"J", "J_recall", "J_decay", "F", "F_recall", "F_decay", "JF", "num_frames"}``;
        ``JF = (J + F) / 2``.

    Raises:
        ValueError: shapes differ or are not (T, H, W); unknown protocol; the protocol leaves
            no frame (semi-supervised needs T >= 3).

    Example:
        >>> import numpy as np
        >>> masks = np.zeros((4, 16, 16), dtype=bool); masks[:, 4:12, 4:12] = True
        >>> evaluate_sequence(masks, masks)["JF"]
        1.0
    """
    for name, value in (("pred", pred), ("gt", gt)):
        if getattr(value, "ndim", None) != 3:
            shape = tuple(getattr(value, "shape", ()))
            raise ValueError(f"{name} must be (T, H, W), got {shape}")
    frames = protocol_frames(pred.shape[0], protocol)
    if frames.stop <= frames.start:
        raise ValueError(
            f"protocol {protocol!r} evaluates no frame of a sequence of {pred.shape[0]} frames"
        )
    pred, gt = pred[frames], gt[frames]
    void = None if void is None else void[frames]
    j_values = region_similarity(pred, gt, void, device=device)
    f_values = boundary_f_measure(pred, gt, void, bound_th, device=device)
    return summarize_frames(j_values, f_values)


def summarize_frames(
    j_values: np.ndarray | torch.Tensor, f_values: np.ndarray | torch.Tensor
) -> dict[str, float]:
    """Statistics of per-frame ``j_values: (T,)`` and ``f_values: (T,)`` as one flat dict."""
    j_stats = sequence_statistics(j_values)
    f_stats = sequence_statistics(f_values)
    return {
        "J": j_stats["mean"],
        "J_recall": j_stats["recall"],
        "J_decay": j_stats["decay"],
        "F": f_stats["mean"],
        "F_recall": f_stats["recall"],
        "F_decay": f_stats["decay"],
        "JF": (j_stats["mean"] + f_stats["mean"]) / 2,
        "num_frames": len(j_values),
    }
