"""DAVIS region similarity J and boundary F-measure, batched over frames in torch.

The numbers are exactly those of the official ``davis2017-evaluation`` code (``db_eval_iou``
and ``f_measure``), computed for all frames at once on CPU or CUDA:

* masks are foreground where nonzero (object ids, 0/255 masks, probabilities > 0 all count);
* void pixels are removed from both masks before anything is counted;
* the boundary map is the official ``_seg2bmap``: a pixel is on the boundary if it differs from
  its right, bottom or bottom-right neighbour, where that neighbour exists;
* the boundaries are dilated with the ``skimage.morphology.disk`` footprint of radius
  ``ceil(bound_th * sqrt(H**2 + W**2))``.

Masks may be numpy arrays or torch tensors of shape ``(T, H, W)`` or ``(H, W)``. The result has
the leading shape, ``(T,)`` or ``()``, and the kind of ``pred``: a float64 numpy array for numpy
input, a float64 tensor on ``pred``'s device for tensor input.

On CPU the measures run on one torch thread by default (``num_threads=1``), whatever torch's
global setting: their passes over the masks are memory-bound, and several threads that wait for
each other on a busy machine made them many times slower than the official single-threaded code
(``benchmarks/bench_metrics.py`` measures both).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from rvoslib._checks import format_shape
from rvoslib.metrics._kernels import (
    boundary_indices,
    count_near,
    count_true,
    cpu_threads,
    frame_chunks,
    seg2bmap_flat,
)

__all__ = [
    "boundary_f_measure",
    "boundary_tolerance",
    "disk_footprint",
    "region_similarity",
    "seg2bmap",
]

MaskLike = np.ndarray | torch.Tensor


def _as_bool_tensor(value: object, name: str) -> torch.Tensor:
    """``value != 0`` as a bool tensor of rank 2 or 3, numpy arrays converted without a copy."""
    if isinstance(value, np.ndarray):
        value = value if value.dtype == np.bool_ else value != 0
        tensor = torch.from_numpy(np.ascontiguousarray(value))
    elif isinstance(value, torch.Tensor):
        tensor = value if value.dtype == torch.bool else value != 0
    else:
        raise TypeError(
            f"{name} must be a numpy array or a torch.Tensor, got {type(value).__name__}"
        )
    if tensor.ndim not in (2, 3):
        raise ValueError(f"{name} must be (T, H, W) or (H, W), got {format_shape(tensor.shape)}")
    return tensor


def _prepare(
    pred: MaskLike,
    gt: MaskLike,
    void: MaskLike | None,
    device: torch.device | str | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Check the shapes and return ``(T, H, W)`` bool tensors on the computation device."""
    pred_t = _as_bool_tensor(pred, "pred")
    gt_t = _as_bool_tensor(gt, "gt")
    if pred_t.shape != gt_t.shape:
        raise ValueError(
            "pred and gt must have the same shape, got "
            f"pred {format_shape(pred_t.shape)} and gt {format_shape(gt_t.shape)}"
        )
    void_t = None
    if void is not None:
        void_t = _as_bool_tensor(void, "void")
        if void_t.shape != pred_t.shape:
            raise ValueError(
                "void must have the same shape as pred and gt, got "
                f"void {format_shape(void_t.shape)} and pred {format_shape(pred_t.shape)}"
            )
    if device is None:
        device = pred_t.device

    def frames(mask: torch.Tensor) -> torch.Tensor:
        return mask.to(device).reshape(-1, *mask.shape[-2:]).contiguous()

    return frames(pred_t), frames(gt_t), None if void_t is None else frames(void_t)


def _finish(values: torch.Tensor, like: MaskLike) -> np.ndarray | torch.Tensor:
    """Give ``values: (T,)`` the leading shape and the kind (numpy / tensor) of ``like``."""
    values = values.reshape(like.shape[:-2])
    if isinstance(like, torch.Tensor):
        return values.to(like.device)
    return values.cpu().numpy()


def region_similarity(
    pred: MaskLike,
    gt: MaskLike,
    void: MaskLike | None = None,
    *,
    device: torch.device | str | None = None,
    num_threads: int | None = 1,
) -> np.ndarray | torch.Tensor:
    """Region similarity J (intersection over union) per frame, as the official ``db_eval_iou``.

    Args:
        pred: (T, H, W) or (H, W) predicted masks, foreground where nonzero.
        gt: (T, H, W) or (H, W) ground-truth masks, foreground where nonzero.
        void: Optional (T, H, W) or (H, W) pixels to ignore (nonzero = void).
        device: Where to compute; default ``pred``'s device (CPU for numpy input).
        num_threads: torch CPU threads used (restored afterwards); None keeps torch's setting.

    Returns:
        (T,) or () float64 J per frame, 1 where the union is empty; a numpy array for numpy
        ``pred``, a tensor on ``pred``'s device for tensor ``pred``.

    Raises:
        ValueError: ``pred``, ``gt`` and ``void`` differ in shape or are not rank 2 or 3.

    Example:
        >>> import numpy as np
        >>> gt = np.zeros((4, 4), dtype=bool); gt[:2] = True  # 8 pixels
        >>> pred = np.zeros((4, 4), dtype=bool); pred[0] = True  # 4 of them
        >>> float(region_similarity(pred, gt))
        0.5
        >>> float(region_similarity(np.zeros((4, 4)), np.zeros((4, 4))))
        1.0
    """
    pred_t, gt_t, void_t = _prepare(pred, gt, void, device)
    with cpu_threads(pred_t.device, num_threads):
        inter_count = torch.zeros(pred_t.shape[0], dtype=torch.float64, device=pred_t.device)
        union_count = torch.zeros_like(inter_count)
        for frames in frame_chunks(pred_t):
            inter = pred_t[frames] & gt_t[frames]
            union = pred_t[frames] | gt_t[frames]
            if void_t is not None:
                inter &= ~void_t[frames]
                union &= ~void_t[frames]
            inter_count[frames] = count_true(inter).double()
            union_count[frames] = count_true(union).double()
        ratio = inter_count / union_count.clamp(min=1)
        j_values = torch.where(union_count == 0, torch.ones_like(ratio), ratio)
    return _finish(j_values, pred)


def disk_footprint(radius: int) -> np.ndarray:
    """The disk structuring element of ``skimage.morphology.disk(radius)``.

    Args:
        radius: Non-negative integer radius.

    Returns:
        (2 * radius + 1, 2 * radius + 1) bool, True where ``dy**2 + dx**2 <= radius**2``.

    Example:
        >>> int(disk_footprint(8).sum())
        197
    """
    if isinstance(radius, bool) or int(radius) != radius or radius < 0:
        raise ValueError(f"radius must be a non-negative integer, got {radius!r}")
    offsets = np.arange(-int(radius), int(radius) + 1)
    return offsets[:, None] ** 2 + offsets[None, :] ** 2 <= int(radius) ** 2


def boundary_tolerance(bound_th: float, height: int, width: int) -> int:
    """Dilation radius in pixels used by the F-measure.

    Args:
        bound_th: A fraction of the image diagonal if below 1, else a radius in pixels (then
            it must be a whole number).
        height: Image height H.
        width: Image width W.

    Returns:
        ``bound_th`` if ``bound_th >= 1``, else ``ceil(bound_th * sqrt(H**2 + W**2))``.

    Example:
        >>> boundary_tolerance(0.008, 480, 854)
        8
    """
    if not bound_th > 0:
        raise ValueError(f"bound_th must be positive, got {bound_th!r}")
    if bound_th >= 1:
        if int(bound_th) != bound_th:
            raise ValueError(
                f"bound_th >= 1 is a radius in pixels and must be a whole number, got {bound_th!r}"
            )
        return int(bound_th)
    # sqrt of the exact integer sum, as np.linalg.norm((H, W)) in the official code.
    return math.ceil(bound_th * math.sqrt(height * height + width * width))


def seg2bmap(mask: MaskLike) -> np.ndarray | torch.Tensor:
    """Boundary map of a mask, as the official ``_seg2bmap`` for same-size output.

    A pixel is a boundary pixel if it differs from its right, bottom or bottom-right neighbour;
    the last row and column compare only with the neighbours that exist, so a mask covering the
    whole frame has no boundary.

    Args:
        mask: (T, H, W) or (H, W) mask, foreground where nonzero.

    Returns:
        Bool boundary map of the same shape and kind (numpy / tensor) as ``mask``.

    Example:
        >>> import numpy as np
        >>> mask = np.zeros((4, 4), dtype=np.uint8); mask[1:3, 1:3] = 1
        >>> seg2bmap(mask).astype(int)
        array([[1, 1, 1, 0],
               [1, 0, 1, 0],
               [1, 1, 1, 0],
               [0, 0, 0, 0]])
    """
    seg = _as_bool_tensor(mask, "mask")
    bmap = seg2bmap_flat(seg.reshape(-1, *seg.shape[-2:])).reshape(seg.shape)
    return bmap if isinstance(mask, torch.Tensor) else bmap.numpy()


def boundary_f_measure(
    pred: MaskLike,
    gt: MaskLike,
    void: MaskLike | None = None,
    bound_th: float = 0.008,
    *,
    device: torch.device | str | None = None,
    num_threads: int | None = 1,
) -> np.ndarray | torch.Tensor:
    """Boundary F-measure per frame, exactly as the official ``f_measure``.

    Precision is the share of predicted boundary pixels within the tolerance disk of a
    ground-truth boundary pixel, recall the share of ground-truth boundary pixels within the
    disk of a predicted one, ``F = 2PR / (P + R)``. Both boundaries empty gives F = 1, only one
    empty gives F = 0.

    Args:
        pred: (T, H, W) or (H, W) predicted masks, foreground where nonzero.
        gt: (T, H, W) or (H, W) ground-truth masks, foreground where nonzero.
        void: Optional (T, H, W) or (H, W) pixels to ignore; removed from both masks before
            the boundaries are computed.
        bound_th: Tolerance, see :func:`boundary_tolerance` (0.008 of the diagonal: 8 pixels
            at 480x854).
        device: Where to compute; default ``pred``'s device (CPU for numpy input).
        num_threads: torch CPU threads used (restored afterwards); None keeps torch's setting.
            One thread is never slower than the official code, however busy the machine.

    Returns:
        (T,) or () float64 F per frame, of ``pred``'s kind (numpy array or tensor).

    Raises:
        ValueError: ``pred``, ``gt`` and ``void`` differ in shape or are not rank 2 or 3, or
            ``bound_th`` is not positive.

    Example:
        >>> import numpy as np
        >>> gt = np.zeros((2, 32, 32), dtype=bool); gt[:, 8:24, 8:24] = True
        >>> pred = np.roll(gt, 1, axis=-1)  # one pixel off, within the tolerance
        >>> boundary_f_measure(pred, gt).tolist()
        [1.0, 1.0]
    """
    pred_t, gt_t, void_t = _prepare(pred, gt, void, device)
    shape = tuple(pred_t.shape)
    radius = boundary_tolerance(bound_th, shape[1], shape[2])
    with cpu_threads(pred_t.device, num_threads):
        pred_boundary = boundary_indices(pred_t, void_t)
        gt_boundary = boundary_indices(gt_t, void_t)
        pred_matched = count_near(pred_boundary, gt_boundary, shape, radius).double()
        gt_matched = count_near(gt_boundary, pred_boundary, shape, radius).double()
        frame_size = shape[1] * shape[2]
        num_pred = torch.bincount(pred_boundary // frame_size, minlength=shape[0]).double()
        num_gt = torch.bincount(gt_boundary // frame_size, minlength=shape[0]).double()
        ones = torch.ones_like(num_pred)
        # An empty boundary has precision (recall) 1; the matched share otherwise.
        precision = torch.where(num_pred == 0, ones, pred_matched / num_pred.clamp(min=1))
        recall = torch.where(num_gt == 0, ones, gt_matched / num_gt.clamp(min=1))
        total = precision + recall
        f_value = 2 * precision * recall / total.clamp(min=torch.finfo(torch.float64).tiny)
        f_values = torch.where(total == 0, torch.zeros_like(f_value), f_value)
    return _finish(f_values, pred)
