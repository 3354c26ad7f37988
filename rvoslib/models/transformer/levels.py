"""Helpers around a feature pyramid for deformable attention: flattening levels into one token
sequence and back, valid (unpadded) ratios, the encoder's reference points, inverse sigmoid."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rvoslib._checks import check_tensor, format_shape
from rvoslib.models.positions import pixel_centres
from rvoslib.models.transformer.deformable_attention import SpatialShapes, as_spatial_shapes

__all__ = [
    "check_levels",
    "encoder_reference_points",
    "flatten_levels",
    "inverse_sigmoid",
    "split_levels",
    "valid_ratios",
]


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``log(x / (1 - x))`` with ``x`` clamped to ``[0, 1]`` and both terms to ``>= eps``.

    Example:
        >>> inverse_sigmoid(torch.tensor([0.5, 0.0])).tolist()[0]
        0.0
    """
    x = x.clamp(0, 1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def flatten_levels(features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Concatenate feature maps into one token sequence, finest first, each row-major.

    Args:
        features: ``L`` maps ``(N, C, h_l, w_l)``.

    Returns:
        ``tokens (N, S, C)`` with ``S = sum(h_l * w_l)``, and the sizes ``[(h_l, w_l)]``.

    Example:
        >>> tokens, shapes = flatten_levels([torch.zeros(2, 8, 4, 6), torch.zeros(2, 8, 2, 3)])
        >>> tokens.shape, shapes
        (torch.Size([2, 30, 8]), [(4, 6), (2, 3)])
    """
    shapes = [(f.shape[-2], f.shape[-1]) for f in features]  # symbolic under export
    return torch.cat([f.flatten(2).transpose(1, 2) for f in features], dim=1), shapes


def split_levels(tokens: torch.Tensor, spatial_shapes: SpatialShapes) -> list[torch.Tensor]:
    """Inverse of :func:`flatten_levels`: ``(N, S, C)`` -> ``L`` maps ``(N, C, h_l, w_l)``."""
    shapes = as_spatial_shapes(spatial_shapes)
    parts = tokens.split([h * w for h, w in shapes], dim=1)
    return [p.transpose(1, 2).unflatten(2, shape) for p, shape in zip(parts, shapes)]


def valid_ratios(padding_masks: Sequence[torch.Tensor]) -> torch.Tensor:
    """Fraction of each level that is image, not padding (padding at the bottom/right).

    Args:
        padding_masks: ``L`` masks ``(N, h_l, w_l)`` bool, ``True`` at padding.

    Returns:
        ``(N, L, 2)`` float32, ``(valid width / w, valid height / h)`` per level.

    Example:
        >>> mask = torch.zeros(1, 4, 4, dtype=torch.bool)
        >>> mask[:, :, 3:] = True  # last column is padding
        >>> valid_ratios([mask]).tolist()
        [[[0.75, 1.0]]]
    """
    ratios = []
    for mask in padding_masks:
        valid_h = (~mask[:, :, 0]).sum(1).float() / mask.shape[1]
        valid_w = (~mask[:, 0, :]).sum(1).float() / mask.shape[2]
        ratios.append(torch.stack([valid_w, valid_h], -1))
    return torch.stack(ratios, 1)


def encoder_reference_points(
    spatial_shapes: SpatialShapes,
    ratios: torch.Tensor | None = None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Reference points of the encoder: each token's pixel centre, seen on every level.

    A token at pixel ``(i, j)`` of an ``h x w`` level has its centre ``((j + 0.5) / w,
    (i + 0.5) / h)``; with ``ratios``, the centre is taken relative to the valid (unpadded)
    part of its level and mapped to the valid part of every level (Deformable DETR).

    Args:
        spatial_shapes: ``L`` level sizes ``(h, w)``.
        ratios: ``(N, L, 2)`` valid ratios (:func:`valid_ratios`); ``None`` for no padding.
        device: Device of the result when ``ratios`` is ``None``.

    Returns:
        ``(N, S, L, 2)`` (``N = 1`` without ``ratios``) points ``(x, y)``.

    Example:
        >>> encoder_reference_points([(1, 2)])[0, :, 0].tolist()
        [[0.25, 0.5], [0.75, 0.5]]
    """
    shapes = as_spatial_shapes(spatial_shapes)
    device = ratios.device if ratios is not None else device
    centres = []
    for height, width in shapes:
        ys, xs = pixel_centres(height, device), pixel_centres(width, device)
        grid = torch.stack(
            [xs[None, :].expand(height, width), ys[:, None].expand(height, width)], -1
        )
        centres.append(grid.reshape(height * width, 2))
    points = torch.cat(centres, 0)[None]  # (1, S, 2)
    if ratios is None:
        return points[:, :, None, :].expand(1, points.shape[1], len(shapes), 2)
    own = torch.cat(
        [ratios[:, level : level + 1].expand(-1, h * w, 2) for level, (h, w) in enumerate(shapes)],
        1,
    )
    return (points / own)[:, :, None, :] * ratios[:, None, :, :]


def check_levels(levels: Sequence[torch.Tensor], channels: Sequence[int], name: str) -> None:
    """Check a list of visual levels ``[(B, T, C_i, h_i, w_i)]`` against the channels a part
    was built for.

    Args:
        levels: The levels, fine to coarse.
        channels: The expected ``C_i``, one per level.
        name: The name of ``channels`` in messages (``"in_channels"``).

    Raises:
        ValueError: not a list of ``len(channels)`` maps, or a level whose shape, channels or
            ``(B, T)`` do not fit (named).
        TypeError: a level is not a floating tensor.

    Example:
        >>> check_levels([torch.zeros(1, 2, 3, 4, 4)], [4], "in_channels")
        Traceback (most recent call last):
        ...
        ValueError: levels[0] must be (B, T, 4, h, w), got (1, 2, 3, 4, 4)
    """
    if not isinstance(levels, (list, tuple)) or len(levels) != len(channels):
        count = len(levels) if isinstance(levels, (list, tuple)) else type(levels).__name__
        raise ValueError(
            f"levels must be a list of {len(channels)} maps ({name}={list(channels)}), got {count}"
        )
    for index, (level, width) in enumerate(zip(levels, channels)):
        check_tensor(level, f"levels[{index}]", ("B", "T", width, "h", "w"), floating=True)
        if level.shape[:2] != levels[0].shape[:2]:
            raise ValueError(
                f"levels[{index}] must have the (B, T) of levels[0] "
                f"{tuple(levels[0].shape[:2])}, got {format_shape(level.shape)}"
            )
