"""Seeing results: mask overlays, clip figures, animations and training curves.

Matplotlib is only imported inside the functions that draw figures, and figures are drawn on
an Agg canvas without ``pyplot`` (no global state, no display needed). Install with
``pip install rvoslib[viz]``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "ANIMATION_FORMATS",
    "AnimationWriter",
    "davis_colors",
    "overlay_masks",
    "plot_clip",
    "plot_history",
    "save_animation",
    "write_overlay_strips",
]

from rvoslib.animation import ANIMATION_FORMATS, AnimationWriter, save_animation
from rvoslib.overlay import ArrayLike, _font, _frames_hwc, davis_colors, overlay_masks

#: Colour of ground-truth masks in figures and strips.
_TRUTH_COLOR = (0, 160, 255)
#: Colour of a predicted mask: what ``overlay_masks`` gives object 1 (the DAVIS palette's).
_PREDICTION_COLOR = tuple(int(c) for c in davis_colors(2)[1])


def plot_clip(
    frames: ArrayLike,
    masks: ArrayLike | None = None,
    gt_masks: ArrayLike | None = None,
    *,
    video_id: str | None = None,
    expression: str | None = None,
    max_frames: int = 6,
    alpha: float = 0.5,
    frame_ids: Sequence[str | int] | None = None,
    interpolation: str = "antialiased",
) -> Figure:
    """A figure with rows of frames, predicted masks and (optionally) ground truth.

    Args:
        frames: ``(T, 3, H, W)`` / ``(T, H, W, 3)`` uint8 or float in ``[0, 1]``.
        masks: ``(T, H, W)`` predicted masks (see :func:`overlay_masks`), or ``None``.
        gt_masks: ``(T, H, W)`` ground-truth masks, or ``None``.
        video_id: Shown in the title.
        expression: Shown in the title.
        max_frames: At most this many frames, evenly spaced, are shown.
        alpha: Mask opacity.
        frame_ids: Column labels (default: the frame indices).
        interpolation: How Matplotlib resamples the frames to the figure's pixels:
            ``"antialiased"`` (its default, smooth) or ``"nearest"`` (each pixel a sharp
            block: shows small frames as the model saw them, and their PNGs compress better).

    Returns:
        A Matplotlib ``Figure`` on an Agg canvas (``figure.savefig(path)`` writes it).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    images = _frames_hwc(frames)
    num_frames = images.shape[0]
    shown = np.unique(np.linspace(0, num_frames - 1, min(max_frames, num_frames)).round())
    shown = shown.astype(int)
    rows = [("frames", images)]
    if masks is not None:
        rows.append(("prediction", overlay_masks(images, masks, alpha)))
    if gt_masks is not None:
        rows.append(("ground truth", overlay_masks(images, gt_masks, alpha, [_TRUTH_COLOR])))
    height, width = images.shape[1:3]
    cell = 2.2
    figure = Figure(figsize=(cell * len(shown), cell * height / width * len(rows) + 0.6))
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(rows), len(shown), squeeze=False)
    for row, (label, row_images) in enumerate(rows):
        for column, index in enumerate(shown):
            axis = axes[row, column]
            axis.imshow(row_images[index], interpolation=interpolation)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                name = frame_ids[index] if frame_ids is not None else index
                axis.set_title(f"frame {name}", fontsize=8)
            if column == 0:
                axis.set_ylabel(label, fontsize=9)
    title = " - ".join(
        part for part in (video_id, f'"{expression}"' if expression else None) if part
    )
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


_PANELS = (
    ("loss", ("train_loss", "val_loss", "loss")),
    ("IoU / J&F", ("train_iou", "val_iou", "iou", "J", "F", "JF", "J&F")),
    ("learning rate", ("lr", "learning_rate")),
)


def plot_history(
    history: Sequence[Mapping[str, Any]],
    *,
    panels: Sequence[tuple[str, Sequence[str]]] = _PANELS,
) -> Figure:
    """Training curves from per-epoch records.

    Args:
        history: One dict per epoch, e.g. ``{"epoch": 3, "train_loss": 0.4, "val_loss": 0.5,
            "train_iou": 0.6, "J": 0.55, "F": 0.6, "JF": 0.57, "lr": 1e-4}``. Missing keys
            and ``None`` / NaN values are skipped; ``epoch`` defaults to the record's position.
        panels: ``(title, keys)`` per panel; panels without data are left out. The learning
            rate panel uses a log scale.

    Returns:
        A Matplotlib ``Figure`` on an Agg canvas.

    Raises:
        ValueError: ``history`` is empty, not a list of dicts, or holds none of the keys.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if isinstance(history, Mapping) or not history:
        raise ValueError("history must be a non-empty list of per-epoch dicts")
    for index, record in enumerate(history):
        if not isinstance(record, Mapping):
            raise ValueError(f"history[{index}] must be a dict, got {type(record).__name__}")
    epochs = [record.get("epoch", index) for index, record in enumerate(history)]

    def series(key: str) -> tuple[list[float], list[float]]:
        points = [
            (float(epoch), float(record[key]))
            for epoch, record in zip(epochs, history)
            if record.get(key) is not None and np.isfinite(float(record[key]))
        ]
        return [p[0] for p in points], [p[1] for p in points]

    active = [
        (title, [key for key in keys if series(key)[0]])
        for title, keys in panels
        if any(series(key)[0] for key in keys)
    ]
    if not active:
        wanted = sorted({key for _, keys in panels for key in keys})
        raise ValueError(f"history holds none of the plotted keys {wanted}")
    figure = Figure(figsize=(4.2 * len(active), 3.2))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(active), squeeze=False)[0]
    for axis, (title, keys) in zip(axes, active):
        for key in keys:
            xs, ys = series(key)
            axis.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=key)
        if title == "learning rate" and all(y > 0 for key in keys for y in series(key)[1]):
            axis.set_yscale("log")
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


@torch.no_grad()
def write_overlay_strips(
    model: torch.nn.Module,
    dataset: Any,
    folder: str | os.PathLike,
    count: int,
    *,
    collate_fn: Any,
    device: torch.device | str = "cpu",
    threshold: float = 0.5,
    clip_len: int | None = None,
    frames_per_strip: int | None = None,
) -> list[Path]:
    """Draw a model's predictions on the first ``count`` items of ``dataset``, one PNG each.

    Each ``<video>_<exp_id>.png`` shows the clip's frames side by side with the predicted mask
    overlaid (dark red). When the item has ground truth (``masks`` ``(T, H, W)`` or
    ``(T, 1, H, W)``), the PNG has two rows, each under a small label: "prediction" on top
    and "ground truth" (light blue) below; it is then ``2 * (band + H)`` pixels high, where
    ``band`` is the label's height (14 px for frames up to 240 px high). An item without
    ``masks`` gives one unlabelled row, ``H`` pixels high. ``captions.txt`` lists the
    expressions.

    Every tensor of the collated batch goes to the model (a first-mask VOS model reads its
    ``first_mask`` there).

    Args:
        model: An :class:`~rvoslib.models.RVOSModel` on ``device``.
        dataset: Whole-video items (as for validation): ``frames`` ``(T, 3, H, W)``
            normalised float, optionally ``masks`` ``(T, H, W)`` / ``(T, 1, H, W)`` (values
            above 0.5 are the object; frames without annotation are drawn without a mask).
        folder: Output folder (created).
        count: Number of items to draw.
        collate_fn: Builds a batch of one item.
        device: Where the model runs.
        threshold: Probability threshold.
        clip_len: Frames per forward pass (``None``: all).
        frames_per_strip: Evenly spaced frames per strip (``None``: every frame).

    Returns:
        The written PNG paths.

    Raises:
        ValueError: an item's ``masks`` is not ``(T, H, W)`` / ``(T, 1, H, W)`` like its
            frames.
    """
    from PIL import Image

    from rvoslib._io import atomic_write_text
    from rvoslib.data import denormalize

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.eval()
    captions, paths = [], []
    for index in range(min(count, len(dataset))):
        item = dataset[index]
        batch = collate_fn([item])
        tensors = {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
        probabilities = model.predict(tensors, clip_len).sigmoid()[0, :, 0].cpu()
        frames = denormalize(batch["frames"][0])
        keep = _strip_frames(len(frames), frames_per_strip)
        prediction = overlay_masks(frames, probabilities > threshold)[keep]
        truth = _item_masks(item, index)
        if truth is None:
            picture = np.concatenate(list(prediction), axis=1)
        else:
            truth = overlay_masks(frames, truth, colormap=[_TRUTH_COLOR])[keep]
            picture = _labelled_rows(
                [
                    ("prediction", _PREDICTION_COLOR, np.concatenate(list(prediction), axis=1)),
                    ("ground truth", _TRUTH_COLOR, np.concatenate(list(truth), axis=1)),
                ]
            )
        name = f"{batch['video_id'][0]}_{batch['exp_id'][0]}.png"
        Image.fromarray(picture).save(folder / name)
        captions.append(f"{name}: {batch['expression'][0]}\n")
        paths.append(folder / name)
    atomic_write_text(folder / "captions.txt", "".join(captions))
    return paths


def _strip_frames(num_frames: int, frames_per_strip: int | None) -> list[int]:
    """Indices of the frames a strip shows (every frame, or evenly strided)."""
    indices = list(range(num_frames))
    if frames_per_strip is None:
        return indices
    return indices[:: max(1, num_frames // frames_per_strip)][:frames_per_strip]


def _item_masks(item: Any, index: int) -> torch.Tensor | None:
    """An item's ground truth as ``(T, H, W)`` bool, or ``None`` when it has none."""
    masks = item.get("masks") if isinstance(item, Mapping) else None
    if masks is None:
        return None
    masks = torch.as_tensor(masks).detach().cpu()
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.ndim != 3:
        raise ValueError(
            f"dataset[{index}]['masks'] must be (T, H, W) or (T, 1, H, W), got shape "
            f"{tuple(masks.shape)}"
        )
    return masks.float() > 0.5


def _labelled_rows(rows: Sequence[tuple[str, tuple[int, int, int], np.ndarray]]) -> np.ndarray:
    """Stack picture rows, each under a white band with a colour swatch and a label.

    Args:
        rows: ``(label, RGB colour of the swatch, (H, W, 3) uint8 picture)`` per row, all of
            one size.

    Returns:
        ``(len(rows) * (band + H), W, 3)`` uint8, where ``band`` grows with ``H`` (14 px for
        ``H`` up to 240).
    """
    from PIL import Image, ImageDraw

    height, width = rows[0][2].shape[:2]
    size = max(10, round(height / 24))
    pad = max(2, size // 5)
    band = size + 2 * pad
    canvas = Image.new("RGB", (width, len(rows) * (band + height)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = _font(size)
    for row, (label, color, picture) in enumerate(rows):
        top = row * (band + height)
        draw.rectangle((pad, top + pad, pad + size - 1, top + pad + size - 1), fill=color)
        draw.text((2 * pad + size, top + pad), label, font=font, fill=(0, 0, 0))
        canvas.paste(Image.fromarray(picture), (0, top + band))
    return np.asarray(canvas)
