"""Frame-by-frame numpy reference of the official DAVIS-2017 measures.

A plain transcription of what ``davis2017-evaluation`` computes (``db_eval_iou``,
``_seg2bmap``, ``f_measure``, ``db_statistics``), written for reading and cross-checking, not
speed: the dilation is the textbook one, an OR of the boundary shifted by every offset of the
disk. Use :func:`rvoslib.metrics.region_similarity` and
:func:`rvoslib.metrics.boundary_f_measure` for real work; they give identical numbers and are
batched over frames.
"""

from __future__ import annotations

import numpy as np

from rvoslib.metrics.davis import boundary_tolerance, disk_footprint

__all__ = ["db_eval_iou", "db_statistics", "dilate", "f_measure", "seg2bmap"]


def db_eval_iou(
    annotation: np.ndarray, segmentation: np.ndarray, void_pixels: np.ndarray | None = None
) -> float:
    """J of one frame: ``|A & S| / |A | S|`` outside the void pixels, 1 if the union is empty.

    Args:
        annotation: (H, W) ground truth, foreground where nonzero.
        segmentation: (H, W) prediction, foreground where nonzero.
        void_pixels: Optional (H, W) pixels to ignore.
    """
    keep = np.ones(annotation.shape, bool) if void_pixels is None else ~void_pixels.astype(bool)
    annotation, segmentation = annotation.astype(bool), segmentation.astype(bool)
    inter = np.count_nonzero(annotation & segmentation & keep)
    union = np.count_nonzero((annotation | segmentation) & keep)
    return 1.0 if union == 0 else inter / union


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """Boundary map of one (H, W) mask, step by step as the official ``_seg2bmap``."""
    seg = seg.astype(bool)
    east = np.zeros_like(seg)
    south = np.zeros_like(seg)
    south_east = np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    bmap = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    bmap[-1, :] = seg[-1, :] ^ east[-1, :]
    bmap[:, -1] = seg[:, -1] ^ south[:, -1]
    bmap[-1, -1] = False
    return bmap


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of one (H, W) mask with ``disk_footprint(radius)`` (zero outside)."""
    height, width = mask.shape
    padded = np.zeros((height + 2 * radius, width + 2 * radius), bool)
    padded[radius : radius + height, radius : radius + width] = mask
    out = np.zeros_like(mask, dtype=bool)
    for dy, dx in zip(*np.nonzero(disk_footprint(radius))):
        out |= padded[dy : dy + height, dx : dx + width]
    return out


def f_measure(
    foreground_mask: np.ndarray,
    gt_mask: np.ndarray,
    void_pixels: np.ndarray | None = None,
    bound_th: float = 0.008,
) -> float:
    """Boundary F-measure of one frame, as the official ``f_measure``.

    Args:
        foreground_mask: (H, W) prediction, foreground where nonzero.
        gt_mask: (H, W) ground truth, foreground where nonzero.
        void_pixels: Optional (H, W) pixels removed from both masks first.
        bound_th: Tolerance, a fraction of the diagonal (< 1) or pixels (>= 1).
    """
    keep = np.ones(gt_mask.shape, bool) if void_pixels is None else ~void_pixels.astype(bool)
    radius = boundary_tolerance(bound_th, *gt_mask.shape)
    fg_boundary = seg2bmap(foreground_mask.astype(bool) & keep)
    gt_boundary = seg2bmap(gt_mask.astype(bool) & keep)
    fg_match = np.count_nonzero(fg_boundary & dilate(gt_boundary, radius))
    gt_match = np.count_nonzero(gt_boundary & dilate(fg_boundary, radius))
    n_fg = np.count_nonzero(fg_boundary)
    n_gt = np.count_nonzero(gt_boundary)
    precision = 1.0 if n_fg == 0 else fg_match / n_fg
    recall = 1.0 if n_gt == 0 else gt_match / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def db_statistics(per_frame_values: np.ndarray) -> tuple[float, float, float]:
    """(mean, recall, decay) of (T,) per-frame values, as the official ``db_statistics``."""
    values = np.asarray(per_frame_values, dtype=np.float64)
    mean = float(np.nanmean(values))
    recall = float(np.mean(values > 0.5))
    ids = (np.round(np.linspace(1, len(values), 5) + 1e-10) - 1).astype(int)
    bins = [values[ids[i] : ids[i + 1] + 1] for i in range(4)]
    decay = float(np.nanmean(bins[0]) - np.nanmean(bins[3]))
    return mean, recall, decay
