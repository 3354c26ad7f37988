"""Write predicted masks as DAVIS indexed PNGs and as a Ref-YouTube-VOS submission.

* DAVIS: ``<out_dir>/<frame>.png``, mode ``P`` (indexed) with the DAVIS palette, pixel value =
  object id, as the official ``davis2017-evaluation`` reads them.
* Ref-YouTube-VOS: ``<root>/Annotations/<video>/<exp_id>/<frame>.png``, mode ``L`` with values
  0 and 255 (probabilities thresholded as ReferFormer and MTTR do), and a zip with
  ``Annotations/`` at its top, as the challenge server expects.

The Ref-DAVIS17 layout (expressions merged into one PNG per annotator) is written by
:class:`rvoslib.metrics.RefDAVISWriter`. Every file is written atomically (a temporary file,
then ``os.replace``), so an interrupted run never leaves a truncated PNG or zip behind.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rvoslib._checks import format_shape
from rvoslib._io import atomic_write_bytes
from rvoslib._palette import davis_palette
from rvoslib._paths import check_path_component, confined_path
from rvoslib.metrics.davis import MaskLike

__all__ = [
    "as_probabilities",
    "binarize_masks",
    "davis_palette",
    "indexed_png_bytes",
    "write_davis_masks",
    "write_ytvos_masks",
    "zip_submission",
]


def _frames(masks: MaskLike, name: str) -> np.ndarray:
    """(T, H, W) numpy view of ``masks`` ((H, W) becomes one frame)."""
    if isinstance(masks, torch.Tensor):
        masks = masks.detach()
        masks = (masks.float() if masks.dtype in (torch.bfloat16, torch.float16) else masks).cpu()
        masks = masks.numpy()
    masks = np.asarray(masks)
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3:
        raise ValueError(f"{name} must be (T, H, W) or (H, W), got {format_shape(masks.shape)}")
    return masks


def _frame_names(
    frame_names: Sequence[str] | None, num_frames: int, source: str = "frame_names"
) -> list[str]:
    """The T frame names (default ``00000``...), each checked to be a plain file name."""
    if frame_names is None:
        return [f"{index:05d}" for index in range(num_frames)]
    names = [str(name) for name in frame_names]
    if len(names) != num_frames:
        raise ValueError(
            f"frame_names must have one name per frame ({num_frames}), got {len(names)}"
        )
    for name in names:
        check_path_component(name, "frame name", source)
    return names


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def indexed_png_bytes(ids: np.ndarray) -> bytes:
    """An ``(H, W)`` uint8 object-id map encoded as an indexed (``P``) PNG, DAVIS palette."""
    image = Image.fromarray(np.ascontiguousarray(ids, dtype=np.uint8), mode="P")
    image.putpalette(davis_palette().ravel().tolist())
    return _png_bytes(image)


def as_probabilities(masks: MaskLike, name: str = "masks") -> np.ndarray:
    """Predicted masks as foreground probabilities, checked.

    Args:
        masks: bool, integer 0/1 or 0/255, or floating probabilities in [0, 1] (any shape; a
            tensor is copied to the CPU).
        name: The argument's name for error messages.

    Returns:
        A floating numpy array of the same shape (float32 for bool and integer masks, the
        input's precision for floats), values in [0, 1].

    Raises:
        ValueError: floats outside [0, 1] or NaN (logits?), integers other than 0/1 or 0/255.
        TypeError: any other dtype.
    """
    if isinstance(masks, torch.Tensor):
        masks = masks.detach()
        masks = (masks.float() if masks.dtype in (torch.bfloat16, torch.float16) else masks).cpu()
        masks = masks.numpy()
    masks = np.asarray(masks)
    if masks.dtype == np.bool_:
        return masks.astype(np.float32)
    if np.issubdtype(masks.dtype, np.floating):
        if masks.size and not (masks.min() >= 0 and masks.max() <= 1):  # also catches NaN
            raise ValueError(
                f"{name} must be probabilities in [0, 1] (apply sigmoid to logits) or binary "
                f"masks, got float values in [{float(np.nanmin(masks))}, "
                f"{float(np.nanmax(masks))}]{' and NaN' if np.isnan(masks).any() else ''}"
            )
        return masks
    if np.issubdtype(masks.dtype, np.integer):
        values = np.unique(masks)
        if not (set(values.tolist()) <= {0, 1} or set(values.tolist()) <= {0, 255}):
            raise ValueError(
                f"{name} of integer dtype must be binary, 0/1 or 0/255, got values "
                f"{values[:6].tolist()}"
            )
        return (masks != 0).astype(np.float32)
    raise TypeError(f"{name} must be bool, integer or floating, got dtype {masks.dtype}")


def binarize_masks(masks: MaskLike, threshold: float = 0.5, name: str = "masks") -> np.ndarray:
    """Foreground of predicted masks: probabilities above ``threshold``, binary masks as given.

    Args:
        masks: bool, integer 0/1 or 0/255, or floating probabilities in [0, 1] (any shape).
        threshold: Probabilities strictly above it are foreground, as ReferFormer's and MTTR's
            ``sigmoid(logits) > 0.5``; must be in [0, 1).
        name: The argument's name for error messages.

    Returns:
        bool array of the same shape.

    Raises:
        ValueError: floats outside [0, 1] or NaN (logits?), integers other than 0/1 or 0/255,
            a threshold outside [0, 1).

    Example:
        >>> binarize_masks(np.array([0.2, 0.5, 0.7])).tolist()
        [False, False, True]
    """
    if not 0 <= threshold < 1:
        raise ValueError(f"threshold must be in [0, 1), got {threshold!r}")
    return as_probabilities(masks, name) > threshold


def write_davis_masks(
    masks: MaskLike,
    out_dir: str | os.PathLike[str],
    frame_names: Sequence[str] | None = None,
) -> list[Path]:
    """Write object-id masks as DAVIS indexed PNGs, ``<out_dir>/<frame>.png``.

    Args:
        masks: (T, H, W) or (H, W) integer object ids in 0..255 (0 = background), or bool.
        out_dir: Folder of the sequence, e.g. ``results/<method>/<sequence>``.
        frame_names: T names without extension; default ``00000``, ``00001``, ...

    Returns:
        The written paths.

    Raises:
        ValueError: wrong rank, ids outside 0..255, a frame name count that differs from T, or
            a frame name that is not a plain file name (``..``, a separator, absolute, empty,
            NUL) or whose file would resolve outside ``out_dir``; checked before any file is
            written.
    """
    frames = _frames(masks, "masks")
    if frames.size and (frames.min() < 0 or frames.max() > 255):
        raise ValueError(
            f"masks must hold object ids in 0..255, got {frames.min()}..{frames.max()}"
        )
    if np.issubdtype(frames.dtype, np.floating) and not np.array_equal(frames, frames.round()):
        raise ValueError(
            "masks must hold integer object ids, got fractional float values; threshold "
            "probabilities first (or use write_ytvos_masks / RefDAVISWriter, which do)"
        )
    names = _frame_names(frame_names, len(frames), "write_davis_masks")
    targets = [confined_path(out_dir, f"{name}.png", source="write_davis_masks") for name in names]
    return [
        atomic_write_bytes(target, indexed_png_bytes(frame))
        for frame, target in zip(frames, targets)
    ]


def write_ytvos_masks(
    root: str | os.PathLike[str],
    video_id: str,
    exp_id: str,
    masks: MaskLike,
    frame_names: Sequence[str],
    threshold: float = 0.5,
) -> list[Path]:
    """Write one expression's masks in the Ref-YouTube-VOS submission layout.

    Files go to ``<root>/Annotations/<video_id>/<exp_id>/<frame>.png`` as mode ``L`` PNGs,
    255 on the object and 0 elsewhere.

    Args:
        root: The submission folder (holding ``Annotations/``).
        video_id: The video id, e.g. ``"003234408d"``.
        exp_id: The expression id within the video, e.g. ``"0"``.
        masks: (T, H, W) or (H, W) masks at the video's original resolution: probabilities in
            [0, 1] (foreground above ``threshold``), bool, or integer 0/1 or 0/255.
        frame_names: T frame names without extension, e.g. ``"00000"``.
        threshold: Probability threshold, see :func:`binarize_masks`.

    Returns:
        The written paths.

    Raises:
        ValueError: floats outside [0, 1], non-binary integers, a bad threshold, wrong rank,
            a frame name count that differs from T, or a video id, expression id or frame
            name that is not a plain file name (``..``, a separator, absolute, empty, NUL) or
            whose file would resolve outside ``root``; checked before any file is written.
    """
    if not 0 <= threshold < 1:
        raise ValueError(f"threshold must be in [0, 1), got {threshold!r}")
    check_path_component(str(video_id), "video id", "write_ytvos_masks")
    check_path_component(str(exp_id), "expression id", "write_ytvos_masks")
    frames = _frames(masks, "masks")
    names = _frame_names(frame_names, len(frames), "write_ytvos_masks")
    foreground = binarize_masks(frames, threshold)
    targets = [
        confined_path(
            root, "Annotations", str(video_id), str(exp_id), f"{name}.png",
            source="write_ytvos_masks",
        )
        for name in names
    ]  # fmt: skip
    paths = []
    for frame, target in zip(foreground, targets):
        image = Image.fromarray(np.where(frame, 255, 0).astype(np.uint8), mode="L")
        paths.append(atomic_write_bytes(target, _png_bytes(image)))
    return paths


def zip_submission(
    root: str | os.PathLike[str], zip_path: str | os.PathLike[str] | None = None
) -> Path:
    """Zip ``<root>/Annotations`` for the Ref-YouTube-VOS server, atomically.

    The archive holds ``Annotations/<video>/<exp_id>/<frame>.png`` at its top level, in
    sorted order.

    Args:
        root: The submission folder.
        zip_path: The archive to write; default ``<root>/submission.zip``.

    Returns:
        The archive's path.

    Raises:
        FileNotFoundError: ``<root>/Annotations`` does not exist.
    """
    annotations = Path(root) / "Annotations"
    if not annotations.is_dir():
        raise FileNotFoundError(f"no Annotations folder to zip in {Path(root)}")
    zip_path = Path(zip_path) if zip_path is not None else Path(root) / "submission.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(annotations.rglob("*.png")):
            archive.write(path, path.relative_to(root).as_posix())
    return atomic_write_bytes(zip_path, buffer.getvalue())
