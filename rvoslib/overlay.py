"""Mask overlays: frames with coloured, semi-transparent object masks (the DAVIS palette by
default), as ``(T, H, W, 3)`` uint8 arrays for figures, animations and videos."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from rvoslib._checks import format_shape
from rvoslib._palette import davis_palette

__all__ = ["ArrayLike", "davis_colors", "overlay_masks"]

ArrayLike = torch.Tensor | np.ndarray


def davis_colors(count: int = 256) -> np.ndarray:
    """The DAVIS / VOC palette: ``(count, 3)`` uint8, object 1 = ``(128, 0, 0)``.

    Example:
        >>> davis_colors(3).tolist()
        [[0, 0, 0], [128, 0, 0], [0, 128, 0]]
    """
    palette = davis_palette()
    return np.resize(palette, (count, 3)) if count > len(palette) else palette[:count].copy()


def _colors(colormap: str | Sequence[Sequence[int]] | None, count: int) -> np.ndarray:
    """``(count + 1, 3)`` uint8 colours; row ``k`` colours object ``k``."""
    if colormap is None or colormap == "davis":
        return davis_colors(max(count + 1, 2))
    if isinstance(colormap, str):
        from matplotlib import colormaps

        try:
            cmap = colormaps[colormap]
        except KeyError as error:
            raise ValueError(
                f"colormap must be 'davis', a Matplotlib colormap name or a list of RGB "
                f"colours, got {colormap!r}"
            ) from error
        samples = cmap(np.linspace(0, 1, max(count, 1)) if cmap.N > 32 else np.arange(count))
        colors = (np.asarray(samples)[:, :3] * 255).round().astype(np.uint8)
        return np.concatenate([np.zeros((1, 3), np.uint8), colors])
    colors = np.asarray(colormap, dtype=np.int64)
    if colors.ndim != 2 or colors.shape[1] != 3 or len(colors) < count:
        raise ValueError(
            f"colormap must list at least {count} RGB colours (shape ({count}, 3)), got shape "
            f"{colors.shape}"
        )
    return np.concatenate([np.zeros((1, 3), np.uint8), colors.clip(0, 255).astype(np.uint8)])


def _frames_hwc(frames: ArrayLike) -> np.ndarray:
    """Any supported frame layout -> ``(T, H, W, 3)`` uint8 numpy."""
    array = frames.detach().cpu() if isinstance(frames, torch.Tensor) else torch.as_tensor(frames)
    if array.ndim == 3:
        array = array.unsqueeze(0)
    if array.ndim != 4 or 3 not in (array.shape[1], array.shape[-1]):
        raise ValueError(
            "frames must be (T, 3, H, W), (T, H, W, 3), (3, H, W) or (H, W, 3), got "
            f"{format_shape(array.shape)}"
        )
    if array.shape[1] == 3 and array.shape[-1] != 3:
        array = array.permute(0, 2, 3, 1)
    if array.is_floating_point():
        array = (array.float().clamp(0, 1) * 255).round()
    return np.ascontiguousarray(array.to(torch.uint8).numpy())


def _object_ids(masks: ArrayLike, num_frames: int, size: tuple[int, int]) -> torch.Tensor:
    """Masks -> ``(T, H, W)`` int64 object ids (0 = background)."""
    masks = torch.as_tensor(masks).detach().cpu()
    if masks.ndim == 2:
        masks = masks.unsqueeze(0)
    if masks.ndim == 4:  # (N, T, H, W) one binary mask per object: later ones on top
        ids = torch.zeros(masks.shape[1:], dtype=torch.int64)
        for index, mask in enumerate(masks, start=1):
            ids[mask > 0.5 if mask.is_floating_point() else mask.bool()] = index
        masks = ids
    elif masks.dtype == torch.bool or masks.is_floating_point():
        masks = (masks > 0.5).long()
    if masks.ndim != 3 or masks.shape[0] != num_frames or tuple(masks.shape[1:]) != size:
        raise ValueError(
            f"masks must be (T, H, W) ids or (N, T, H, W) with T={num_frames} and "
            f"(H, W)={size} like frames, got {format_shape(masks.shape)}"
        )
    return masks.long()


def overlay_masks(
    frames: ArrayLike,
    masks: ArrayLike,
    alpha: float = 0.5,
    colormap: str | Sequence[Sequence[int]] | None = "davis",
    *,
    contour: bool = True,
) -> np.ndarray:
    """Blend coloured masks over frames.

    Args:
        frames: ``(T, 3, H, W)`` / ``(T, H, W, 3)`` (or one frame without ``T``), uint8 or
            float in ``[0, 1]``; tensor or array.
        masks: ``(T, H, W)`` bool (one object), ``(T, H, W)`` integer object ids (0 =
            background), or ``(N, T, H, W)`` bool, one mask per expression (object ``n + 1``).
            Without ``T`` when ``frames`` has none.
        alpha: Opacity of the colour inside masks.
        colormap: ``"davis"`` (object 1 = dark red, 2 = green, ...), a Matplotlib colormap
            name, or a list of RGB colours (one per object).
        contour: Draw mask boundaries in the opaque colour.

    Returns:
        ``(T, H, W, 3)`` uint8 array (``(H, W, 3)`` for a single frame), ready for
        Matplotlib, Pillow or imageio.

    Example:
        >>> frames = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
        >>> masks = torch.zeros(2, 8, 8, dtype=torch.bool)
        >>> masks[:, 2:6, 2:6] = True
        >>> out = overlay_masks(frames, masks, alpha=1.0)
        >>> out.shape, out[0, 3, 3].tolist(), out[0, 0, 0].tolist()
        ((2, 8, 8, 3), [128, 0, 0], [0, 0, 0])
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    single = len(frames.shape) == 3
    images = _frames_hwc(frames)
    ids = _object_ids(masks, images.shape[0], images.shape[1:3])
    max_id = int(ids.max()) if ids.numel() else 0
    if max_id > 255 or max_id < 0:
        raise ValueError(f"masks must hold object ids in [0, 255], found {max_id}")
    colors = torch.from_numpy(_colors(colormap, max_id))
    pixels = torch.from_numpy(images).float()
    colored = colors[ids].float()
    inside = (ids > 0).unsqueeze(-1)
    blended = torch.where(inside, pixels * (1 - alpha) + colored * alpha, pixels)
    if contour:
        padded = ids.unsqueeze(1).float()
        dilated = F.max_pool2d(padded, 3, stride=1, padding=1)
        eroded = -F.max_pool2d(-padded, 3, stride=1, padding=1)
        edge = ((dilated != padded) | (eroded != padded))[:, 0] & (ids > 0)
        blended = torch.where(edge.unsqueeze(-1), colored, blended)
    result = blended.round().clamp(0, 255).to(torch.uint8).numpy()
    return result[0] if single else result
