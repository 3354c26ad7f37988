"""Write predicted masks as DAVIS indexed PNGs and as a Ref-YouTube-VOS submission.

* DAVIS: ``<out_dir>/<frame>.png``, mode ``P`` (indexed) with the DAVIS palette, pixel value =
  object id, as the official ``davis2017-evaluation`` reads them.
* Ref-YouTube-VOS: ``<root>/Annotations/<video>/<exp_id>/<frame>.png``, mode ``L`` with values
  0 and 255, and a zip with ``Annotations/`` at its top, as the challenge server expects.

Every file is written atomically (a temporary file, then ``os.replace``), so an interrupted run
never leaves a truncated PNG or zip behind.
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
from rvoslib._palette import voc_palette
from rvoslib.metrics._io import atomic_write_bytes
from rvoslib.metrics.davis import MaskLike

__all__ = ["davis_palette", "write_davis_masks", "write_ytvos_masks", "zip_submission"]


def davis_palette() -> np.ndarray:
    """The DAVIS palette (the PASCAL VOC colour map): id 0 black, 1 red, 2 green, ...

    Returns:
        (256, 3) uint8 RGB colours, row i for object id i.

    Example:
        >>> davis_palette()[:3].tolist()
        [[0, 0, 0], [128, 0, 0], [0, 128, 0]]
    """
    return voc_palette()


def _frames(masks: MaskLike, name: str) -> np.ndarray:
    """(T, H, W) numpy view of ``masks`` ((H, W) becomes one frame)."""
    if isinstance(masks, torch.Tensor):
        masks = masks.detach().cpu().numpy()
    masks = np.asarray(masks)
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3:
        raise ValueError(f"{name} must be (T, H, W) or (H, W), got {format_shape(masks.shape)}")
    return masks


def _frame_names(frame_names: Sequence[str] | None, num_frames: int) -> list[str]:
    if frame_names is None:
        return [f"{index:05d}" for index in range(num_frames)]
    names = [str(name) for name in frame_names]
    if len(names) != num_frames:
        raise ValueError(
            f"frame_names must have one name per frame ({num_frames}), got {len(names)}"
        )
    return names


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


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
        ValueError: wrong rank, ids outside 0..255, or a frame name count that differs from T.
    """
    frames = _frames(masks, "masks")
    if frames.size and (frames.min() < 0 or frames.max() > 255):
        raise ValueError(
            f"masks must hold object ids in 0..255, got {frames.min()}..{frames.max()}"
        )
    palette = davis_palette().reshape(-1).tolist()
    paths = []
    for frame, name in zip(frames, _frame_names(frame_names, len(frames))):
        image = Image.fromarray(frame.astype(np.uint8), mode="P")
        image.putpalette(palette)
        paths.append(atomic_write_bytes(Path(out_dir) / f"{name}.png", _png_bytes(image)))
    return paths


def write_ytvos_masks(
    root: str | os.PathLike[str],
    video_id: str,
    exp_id: str,
    masks: MaskLike,
    frame_names: Sequence[str],
) -> list[Path]:
    """Write one expression's masks in the Ref-YouTube-VOS submission layout.

    Files go to ``<root>/Annotations/<video_id>/<exp_id>/<frame>.png`` as mode ``L`` PNGs,
    255 where the mask is nonzero and 0 elsewhere.

    Args:
        root: The submission folder (holding ``Annotations/``).
        video_id: The video id, e.g. ``"003234408d"``.
        exp_id: The expression id within the video, e.g. ``"0"``.
        masks: (T, H, W) or (H, W) masks at the video's original resolution.
        frame_names: T frame names without extension, e.g. ``"00000"``.

    Returns:
        The written paths.
    """
    frames = _frames(masks, "masks")
    folder = Path(root) / "Annotations" / str(video_id) / str(exp_id)
    paths = []
    for frame, name in zip(frames, _frame_names(frame_names, len(frames))):
        image = Image.fromarray(np.where(frame != 0, 255, 0).astype(np.uint8), mode="L")
        paths.append(atomic_write_bytes(folder / f"{name}.png", _png_bytes(image)))
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
