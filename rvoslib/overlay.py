"""Mask overlays: frames with coloured, semi-transparent object masks (the DAVIS palette by
default), as ``(T, H, W, 3)`` uint8 arrays for figures, animations and videos, optionally with
a legend (colour swatch -> expression) drawn on every frame."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rvoslib._checks import format_shape
from rvoslib._palette import davis_palette

__all__ = ["LEGEND_POSITIONS", "ArrayLike", "davis_colors", "draw_legend", "overlay_masks"]

ArrayLike = torch.Tensor | np.ndarray
#: Corners where :func:`draw_legend` puts the legend.
LEGEND_POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right")
_ELLIPSIS = "..."


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
    labels: Sequence[str] | None = None,
    legend_position: str = "top-left",
) -> np.ndarray:
    """Blend coloured masks over frames, optionally with a legend.

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
        labels: A legend: ``labels[k]`` names object ``k + 1`` (e.g. the expressions), drawn
            with its colour in a corner of every frame (see :func:`draw_legend`). ``None``:
            no legend (and the colours of a Matplotlib colormap are spread over the objects
            present; with labels, over ``len(labels)`` objects).
        legend_position: One of :data:`LEGEND_POSITIONS`.

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
    if labels is not None:
        labels = _check_labels(labels, max_id)
    palette = _colors(colormap, max_id if labels is None else max(max_id, len(labels)))
    colors = torch.from_numpy(palette)
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
    if labels is not None:
        result = draw_legend(result, labels, palette[1 : len(labels) + 1], legend_position)
    return result[0] if single else result


def _check_labels(labels: Sequence[str], max_id: int) -> list[str]:
    if isinstance(labels, str) or not all(isinstance(text, str) for text in labels):
        raise TypeError(f"labels must be a list of str (one per object), got {labels!r}")
    labels = list(labels)
    if len(labels) < max_id:
        raise ValueError(
            f"labels must name every object: masks hold object ids up to {max_id}, got "
            f"{len(labels)} labels"
        )
    return labels


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size)
    except (ImportError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _fit(text: str, font: Any, width: float) -> str:
    """``text`` on one line, cut with an ellipsis to at most ``width`` pixels."""
    text = " ".join(text.split())
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + _ELLIPSIS) > width:
        text = text[:-1]
    return text.rstrip() + _ELLIPSIS


def _legend_patch(labels: Sequence[str], colors: np.ndarray, height: int, width: int) -> Any:
    """The legend as an RGBA image (Pillow), at most ``width`` wide."""
    from PIL import Image, ImageDraw

    size = max(10, round(height / 30))  # 12 px text at 360p
    font, pad, swatch = _font(size), max(2, size // 3), size
    line = size + pad
    room = max(1, (2 * width) // 3 - 4 * pad - swatch)  # at most 2/3 of the frame
    texts = [_fit(text, font, room) for text in labels]
    text_width = max(font.getlength(text) for text in texts)
    box = (round(2 * pad + swatch + pad + text_width), len(texts) * line + pad)
    patch = Image.new("RGBA", (min(box[0], width), min(box[1], height)), (0, 0, 0, 160))
    draw = ImageDraw.Draw(patch)
    for row, (text, color) in enumerate(zip(texts, colors)):
        top = pad + row * line
        rgb = tuple(int(c) for c in color)
        draw.rectangle((pad, top, pad + swatch - 1, top + swatch - 1), fill=(*rgb, 255))
        draw.text((2 * pad + swatch, top + size / 2), text, font=font, fill=(255, 255, 255, 255),
                  anchor="lm")  # fmt: skip
    return patch


def draw_legend(
    images: np.ndarray,
    labels: Sequence[str],
    colors: ArrayLike | Sequence[Sequence[int]],
    position: str = "top-left",
) -> np.ndarray:
    """Draw a legend (a colour swatch and a label per line) in a corner of frames.

    The box is dark and translucent, the text white in Pillow's default font, sized for the
    frame height (12 px at 360p); a label too long for the frame is cut with an ellipsis.

    Args:
        images: ``(T, H, W, 3)`` or ``(H, W, 3)`` uint8 frames (not modified).
        labels: One text per line.
        colors: ``(len(labels), 3)`` RGB colours of the swatches.
        position: One of :data:`LEGEND_POSITIONS`.

    Returns:
        A copy of ``images`` with the legend, same shape and dtype.

    Raises:
        ValueError: an unknown ``position``, fewer colours than labels, or no label.

    Example:
        >>> frames = np.zeros((1, 90, 160, 3), np.uint8)
        >>> out = draw_legend(frames, ["the dog"], [(128, 0, 0)])
        >>> out[0, 10, 10].tolist()
        [128, 0, 0]
    """
    if position not in LEGEND_POSITIONS:
        raise ValueError(f"position must be one of {LEGEND_POSITIONS}, got {position!r}")
    colors = np.asarray(colors)
    if not labels or colors.ndim != 2 or colors.shape[0] < len(labels) or colors.shape[1] != 3:
        raise ValueError(
            f"draw_legend needs at least one label and colors of shape ({len(labels)}, 3), got "
            f"{len(labels)} labels and colors of shape {colors.shape}"
        )
    single = images.ndim == 3
    out = np.array(images[None] if single else images, dtype=np.uint8, copy=True)
    height, width = out.shape[1:3]
    patch = np.asarray(_legend_patch(labels, colors, height, width)).astype(np.float32)
    ph, pw = patch.shape[:2]
    margin = min(4, height - ph, width - pw)
    top = margin if position.startswith("top") else height - ph - margin
    left = margin if position.endswith("left") else width - pw - margin
    region = out[:, top : top + ph, left : left + pw].astype(np.float32)
    alpha = patch[..., 3:] / 255.0
    blended = region * (1 - alpha) + patch[..., :3] * alpha
    out[:, top : top + ph, left : left + pw] = blended.round().astype(np.uint8)
    return out[0] if single else out
