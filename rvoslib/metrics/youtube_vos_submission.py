"""The YouTube-VOS submission layout: one indexed (palette) PNG per frame listed for
evaluation, ``Annotations/<video>/<frame>.png``, pixel value = object id, at the video's
original size, and the zip the challenge server takes."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rvoslib._checks import format_shape
from rvoslib._io import atomic_write_bytes
from rvoslib._palette import voc_palette
from rvoslib._paths import check_path_component, confined_path
from rvoslib.metrics.davis import MaskLike

__all__ = ["write_youtube_vos_masks", "zip_youtube_vos_submission"]


def _png(ids: np.ndarray) -> bytes:
    image = Image.fromarray(np.ascontiguousarray(ids, dtype=np.uint8), mode="P")
    image.putpalette(voc_palette().reshape(-1).tolist())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_youtube_vos_masks(
    root: str | os.PathLike,
    video_id: str,
    masks: MaskLike,
    frame_ids: Sequence[str],
    *,
    size: Sequence[int] | None = None,
    keep: Collection[str] | None = None,
) -> list[Path]:
    """Write one video's object-id maps as ``<root>/Annotations/<video_id>/<frame>.png``.

    Indexed PNGs with the DAVIS palette (pixel value = object id), written atomically.

    Args:
        root: The submission folder.
        video_id: The video.
        masks: ``(T, H, W)`` object ids in 0..255 (e.g. :func:`merge_object_scores`) at the
            video's original size.
        frame_ids: The ``T`` frame names, without extension.
        size: The original ``(H, W)``, checked when given.
        keep: Only these frames are written (the frames listed for evaluation,
            :func:`evaluation_frames`); None writes all.

    Returns:
        The written paths.

    Raises:
        ValueError: ``masks`` is not ``(T, H, W)``, ``len(frame_ids) != T``, ids outside
            0..255, a size other than ``size`` (both named), or a video id or frame id that is
            not a plain file name (``..``, a separator, absolute, empty, NUL) or whose file
            would resolve outside ``root``; checked before any file is written.
    """
    source = "write_youtube_vos_masks"
    check_path_component(str(video_id), "video id", source)
    values = masks.detach().cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    if values.ndim != 3:
        raise ValueError(f"masks must be (T, H, W) object ids, got {format_shape(values.shape)}")
    if len(frame_ids) != values.shape[0]:
        raise ValueError(
            f"frame_ids must name the {values.shape[0]} frames of masks "
            f"{format_shape(values.shape)}, got {len(frame_ids)} names"
        )
    if size is not None and tuple(values.shape[1:]) != (int(size[0]), int(size[1])):
        raise ValueError(
            f"video {video_id!r}: masks are {values.shape[1]}x{values.shape[2]} but the "
            f"original frames are {int(size[0])}x{int(size[1])} (HxW); the submission needs the "
            "original size (rvoslib.data.restore_size)"
        )
    if values.size and (values.min() < 0 or values.max() > 255):
        raise ValueError(
            f"masks must hold object ids in 0..255, got {values.min()}..{values.max()}"
        )
    for frame_id in frame_ids:
        check_path_component(str(frame_id), "frame id", source)
    chosen = [
        (confined_path(root, "Annotations", str(video_id), f"{frame_id}.png", source=source), ids)
        for frame_id, ids in zip(frame_ids, values)
        if keep is None or str(frame_id) in keep
    ]
    paths = []
    for path, ids in chosen:
        atomic_write_bytes(path, _png(ids))
        paths.append(path)
    return paths


def zip_youtube_vos_submission(
    root: str | os.PathLike,
    zip_path: str | os.PathLike | None = None,
    *,
    expected: Mapping[str, Sequence[str]] | None = None,
) -> Path:
    """Zip ``<root>/Annotations/<video>/<frame>.png`` for the YouTube-VOS server, atomically.

    Args:
        root: The submission folder.
        zip_path: The archive; default ``<root>/submission.zip``.
        expected: ``{video_id: frame ids}`` listed for evaluation (:func:`evaluation_frames`);
            when given, every listed frame must have a PNG and only those are archived.

    Returns:
        The archive's path (entries ``Annotations/<video>/<frame>.png``, sorted).

    Raises:
        FileNotFoundError: no ``Annotations`` folder, or listed frames without a PNG (the
            first few are named).
    """
    annotations = Path(root) / "Annotations"
    if not annotations.is_dir():
        raise FileNotFoundError(f"no Annotations folder to zip in {Path(root)}")
    found = {
        (path.parent.name, path.stem): path
        for path in annotations.glob("*/*.png")
        if not path.name.startswith(".")
    }
    if expected is not None:
        wanted = {(str(v), str(f)) for v, frames in expected.items() for f in frames}
        missing = sorted(wanted - set(found))
        if missing:
            shown = ", ".join(f"{v}/{f}.png" for v, f in missing[:5])
            raise FileNotFoundError(
                f"{len(missing)} frames listed for evaluation have no PNG in {annotations}: {shown}"
            )
        found = {key: path for key, path in found.items() if key in wanted}
    target = Path(zip_path) if zip_path is not None else Path(root) / "submission.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for (video_id, frame_id), path in sorted(found.items()):
            archive.write(path, f"Annotations/{video_id}/{frame_id}.png")
    atomic_write_bytes(target, buffer.getvalue())
    return target
