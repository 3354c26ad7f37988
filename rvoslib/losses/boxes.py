"""Box utilities for the box terms of query-based models: format conversion, boxes from masks, GIoU.

Boxes are normalised to ``[0, 1]`` by the image size. Two formats are used: ``cxcywh`` (centre,
width, height; what a model predicts after a sigmoid) and ``xyxy`` (corners). Every function works
on any number of leading dimensions.
"""

from __future__ import annotations

import torch

from rvoslib._checks import format_shape, is_compiling

__all__ = [
    "box_cxcywh_to_xyxy",
    "box_xyxy_to_cxcywh",
    "elementwise_generalized_box_iou",
    "generalized_box_iou",
    "masks_to_boxes",
]

_EPS = 1e-12


def _check_boxes(boxes: object, name: str) -> None:
    if not isinstance(boxes, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape (..., 4), got {type(boxes).__name__}"
        )
    if boxes.ndim == 0 or boxes.shape[-1] != 4:
        raise ValueError(f"{name} must be (..., 4), got {format_shape(boxes.shape)}")


def box_cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """Convert ``(cx, cy, w, h)`` boxes to ``(x0, y0, x1, y1)``.

    Args:
        boxes: ``(..., 4)`` boxes as centre, width, height.

    Returns:
        ``(..., 4)`` boxes as corners.

    Example:
        >>> box_cxcywh_to_xyxy(torch.tensor([0.5, 0.5, 0.2, 0.4])).tolist()
        [0.4000000059604645, 0.30000001192092896, 0.6000000238418579, 0.699999988079071]
    """
    if not is_compiling():
        _check_boxes(boxes, "boxes")
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)


def box_xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """Convert ``(x0, y0, x1, y1)`` boxes to ``(cx, cy, w, h)``.

    Args:
        boxes: ``(..., 4)`` boxes as corners.

    Returns:
        ``(..., 4)`` boxes as centre, width, height.

    Example:
        >>> box_xyxy_to_cxcywh(torch.tensor([0.0, 0.0, 1.0, 0.5])).tolist()
        [0.5, 0.25, 1.0, 0.5]
    """
    if not is_compiling():
        _check_boxes(boxes, "boxes")
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack(((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0), dim=-1)


def masks_to_boxes(masks: torch.Tensor, extent: str = "pixels") -> torch.Tensor:
    """Tight boxes around binary masks, normalised ``cxcywh``; an empty mask gives zeros.

    With ``extent="pixels"`` pixel ``i`` covers ``[i, i + 1)``, so the box of a mask spanning
    columns ``x_min..x_max`` runs from ``x_min / W`` to ``(x_max + 1) / W``: a full mask gives
    ``(0.5, 0.5, 1, 1)`` and a single pixel a box of size ``(1/W, 1/H)`` (never a degenerate
    box). With ``extent="indices"`` (ReferFormer's datasets) it runs from ``x_min / W`` to
    ``x_max / W``. Pixels above 0.5 (or ``True``) belong to the object. Vectorised over all
    masks.

    Args:
        masks: ``(..., H, W)`` binary masks (bool or numbers).
        extent: ``"pixels"`` or ``"indices"`` (see above).

    Returns:
        ``(..., 4)`` float32 boxes ``(cx, cy, w, h)`` in ``[0, 1]``.

    Example:
        >>> masks = torch.zeros(2, 4, 8)
        >>> masks[0, 1:3, 2:6] = 1
        >>> masks_to_boxes(masks).tolist()
        [[0.5, 0.5, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0]]
    """
    if not is_compiling():
        if not isinstance(masks, torch.Tensor):
            raise TypeError(
                f"masks must be a torch.Tensor of shape (..., H, W), got {type(masks).__name__}"
            )
        if masks.ndim < 2:
            raise ValueError(f"masks must be (..., H, W), got {format_shape(masks.shape)}")
        if extent not in ("pixels", "indices"):
            raise ValueError(f"extent must be 'pixels' or 'indices', got {extent!r}")
    end = 1 if extent == "pixels" else 0
    height, width = masks.shape[-2:]
    binary = masks if masks.dtype == torch.bool else masks > 0.5
    rows, cols = binary.any(-1), binary.any(-2)  # (..., H), (..., W)
    ys = torch.arange(height, device=masks.device)
    xs = torch.arange(width, device=masks.device)
    x0 = torch.where(cols, xs, width).amin(-1)
    x1 = torch.where(cols, xs, -1).amax(-1) + end
    y0 = torch.where(rows, ys, height).amin(-1)
    y1 = torch.where(rows, ys, -1).amax(-1) + end
    scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=masks.device)
    boxes = torch.stack((x0, y0, x1, y1), dim=-1).float() / scale
    boxes = box_xyxy_to_cxcywh(boxes)
    return torch.where(cols.any(-1, keepdim=True), boxes, torch.zeros_like(boxes))


def _areas(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[..., 2] - boxes[..., 0]).clamp_min(0) * (boxes[..., 3] - boxes[..., 1]).clamp_min(
        0
    )


def _giou(boxes1: torch.Tensor, boxes2: torch.Tensor, smooth: float = 0.0) -> torch.Tensor:
    """GIoU of broadcast-compatible ``(..., 4)`` xyxy boxes; finite for degenerate boxes.
    ``smooth > 0`` adds it to both sides of each ratio (ReferFormer's ``box_ops``: 1e-6)."""
    area1, area2 = _areas(boxes1), _areas(boxes2)
    top_left = torch.maximum(boxes1[..., :2], boxes2[..., :2])
    bottom_right = torch.minimum(boxes1[..., 2:], boxes2[..., 2:])
    size = (bottom_right - top_left).clamp_min(0)
    inter = size[..., 0] * size[..., 1]
    union = area1 + area2 - inter
    enclosing_size = (
        torch.maximum(boxes1[..., 2:], boxes2[..., 2:])
        - torch.minimum(boxes1[..., :2], boxes2[..., :2])
    ).clamp_min(0)
    enclosing = enclosing_size[..., 0] * enclosing_size[..., 1]
    if smooth:
        iou = (inter + smooth) / (union + smooth)
        return iou - (enclosing - union + smooth) / (enclosing + smooth)
    iou = inter / union.clamp_min(_EPS)
    return iou - (enclosing - union) / enclosing.clamp_min(_EPS)


def generalized_box_iou(
    boxes1: torch.Tensor, boxes2: torch.Tensor, smooth: float = 0.0
) -> torch.Tensor:
    """Pairwise generalised IoU (Rezatofighi et al. 2019) of two sets of ``xyxy`` boxes.

    Equals ``torchvision.ops.generalized_box_iou`` for proper boxes, batched over leading
    dimensions; degenerate boxes (zero area) give finite values instead of NaN.

    Args:
        boxes1: ``(..., N, 4)`` boxes ``(x0, y0, x1, y1)``.
        boxes2: ``(..., M, 4)`` boxes, leading dimensions broadcastable with ``boxes1``'s.
        smooth: Added to the numerator and denominator of both ratios (0: exact; ReferFormer's
            and SOC's ``box_ops`` use 1e-6).

    Returns:
        ``(..., N, M)`` GIoU in ``[-1, 1]``.

    Example:
        >>> boxes = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])
        >>> generalized_box_iou(boxes, boxes[:1]).flatten().tolist()
        [1.0, -0.5]
    """
    if not is_compiling():
        _check_boxes(boxes1, "boxes1")
        _check_boxes(boxes2, "boxes2")
        if boxes1.ndim < 2 or boxes2.ndim < 2:
            raise ValueError(
                "boxes1 and boxes2 must be (..., N, 4) and (..., M, 4), got "
                f"{format_shape(boxes1.shape)} and {format_shape(boxes2.shape)}"
            )
    return _giou(boxes1.unsqueeze(-2), boxes2.unsqueeze(-3), smooth)


def elementwise_generalized_box_iou(
    boxes1: torch.Tensor, boxes2: torch.Tensor, smooth: float = 0.0
) -> torch.Tensor:
    """Generalised IoU of corresponding ``xyxy`` boxes (the diagonal of the pairwise GIoU).

    Args:
        boxes1: ``(..., 4)`` boxes ``(x0, y0, x1, y1)``.
        boxes2: ``(..., 4)`` boxes, broadcastable with ``boxes1``.
        smooth: As in :func:`generalized_box_iou`.

    Returns:
        ``(...)`` GIoU in ``[-1, 1]``.

    Example:
        >>> a = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
        >>> elementwise_generalized_box_iou(a, torch.tensor([[0.0, 0.0, 0.5, 1.0]])).tolist()
        [0.5]
    """
    if not is_compiling():
        _check_boxes(boxes1, "boxes1")
        _check_boxes(boxes2, "boxes2")
    return _giou(boxes1, boxes2, smooth)
