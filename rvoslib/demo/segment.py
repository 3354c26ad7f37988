"""What the browser demo runs, without Gradio: find sample videos, read uploads, segment a
video and write its overlay (with a legend), a small preview GIF and a zip of mask PNGs."""

from __future__ import annotations

import json
import math
import os
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rvoslib.video_io import FRAME_EXTENSIONS, VIDEO_EXTENSIONS

__all__ = [
    "UPLOAD_EXTENSIONS",
    "DemoResult",
    "default_samples_root",
    "find_samples",
    "parse_expressions",
    "read_upload",
    "sample_expressions",
    "segment_video",
]

#: What the demo takes as an uploaded video: a video file, an animated GIF or a zip of frames.
UPLOAD_EXTENSIONS = (*VIDEO_EXTENSIONS, ".gif", ".zip")
#: Preview GIFs hold at most this many frames (every k-th frame of longer videos).
PREVIEW_FRAMES = 100
#: Preview GIFs are at most this wide.
PREVIEW_WIDTH = 480


@dataclass
class DemoResult:
    """The files the demo returns for one video.

    Attributes:
        preview: A small GIF of the overlay (at most ``PREVIEW_FRAMES`` frames, ``PREVIEW_WIDTH``
            wide) for the browser.
        overlay: The full overlay with its legend: a GIF, or an MP4 for long videos
            (:func:`~rvoslib.animation.choose_overlay_format`).
        masks: A zip with one PNG per frame (``00000.png``, ...), at the video's size; pixel =
            expression number (1, 2, ...; 0 = background) or object id for VOS models.
        num_frames: Frames segmented.
    """

    preview: Path
    overlay: Path
    masks: Path
    num_frames: int


def default_samples_root() -> Path | None:
    """davis-mini's ``JPEGImages/480p`` folder: ``$RVOSLIB_DAVIS_MINI``, else
    ``../shared/data/davis-mini`` next to the repository; ``None`` when absent."""
    candidate = os.environ.get("RVOSLIB_DAVIS_MINI")
    repo = Path(__file__).resolve().parents[2]
    root = Path(candidate) if candidate else repo.parent / "shared" / "data" / "davis-mini"
    folder = root / "JPEGImages" / "480p"
    return folder if folder.is_dir() else None


def find_samples(root: str | os.PathLike | None) -> dict[str, Path]:
    """Sample videos under ``root``: its sub-folders holding frames and its video files, by
    name (a DAVIS root's ``JPEGImages/480p`` is looked into). ``None``: no samples.

    Raises:
        FileNotFoundError: ``root`` is not a folder.

    Example:
        >>> find_samples(None)
        {}
    """
    if root is None:
        return {}
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"samples {str(root)!r} is not a folder")
    if (root / "JPEGImages" / "480p").is_dir():
        root = root / "JPEGImages" / "480p"
    samples = {}
    for path in sorted(root.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_dir() and any(p.suffix.lower() in FRAME_EXTENSIONS for p in path.iterdir()):
            samples[path.name] = path
        elif path.is_file() and path.suffix.lower() in (*VIDEO_EXTENSIONS, ".gif"):
            samples[path.stem] = path
    return samples


def sample_expressions(sample: Path) -> list[str]:
    """The expressions of a DAVIS sample, from the ``meta_expressions.json`` of its dataset
    (two folders up); ``[]`` when there is none."""
    for meta in (sample.parents[2] / "meta_expressions.json", sample.parent / "meta.json"):
        if meta.is_file():
            videos = json.loads(meta.read_text()).get("videos", {})
            entries = videos.get(sample.name, {}).get("expressions", {})
            texts = [entry.get("exp", "") for entry in entries.values()]
            return [text for text in texts if text]
    return []


def parse_expressions(text: str | None) -> list[str]:
    """Expressions typed one per line (blank lines skipped).

    Raises:
        ValueError: no expression.

    Example:
        >>> parse_expressions("a swan\\n\\n the water ")
        ['a swan', 'the water']
    """
    expressions = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not expressions:
        raise ValueError("expressions: type at least one expression (one per line)")
    return expressions


def read_upload(path: str | os.PathLike, work_dir: str | os.PathLike) -> str | torch.Tensor:
    """An uploaded video as something :func:`~rvoslib.video_io.open_video` reads.

    Args:
        path: A video file (``.mp4``, ...), an animated ``.gif`` or a ``.zip`` of frames.
        work_dir: Where a zip's frames are extracted.

    Returns:
        The video file's path, a frame folder, or ``(T, 3, H, W)`` uint8 frames of a GIF.

    Raises:
        ValueError: an unsupported suffix, or a zip without frames.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in UPLOAD_EXTENSIONS:
        raise ValueError(f"video must be one of {', '.join(UPLOAD_EXTENSIONS)}, got {path.name!r}")
    if suffix == ".gif":
        from PIL import Image, ImageSequence

        with Image.open(path) as gif:
            frames = [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(gif)]
        return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()
    if suffix != ".zip":
        return str(path)
    folder = Path(tempfile.mkdtemp(prefix="frames-", dir=work_dir))
    count = 0
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name = Path(info.filename).name  # flattened: no path leaves the folder
            if (
                info.is_dir()
                or name.startswith(".")
                or Path(name).suffix.lower() not in (FRAME_EXTENSIONS)
            ):
                continue
            (folder / name).write_bytes(archive.read(info))
            count += 1
    if count == 0:
        raise ValueError(
            f"video {path.name!r} holds no frame ({', '.join(FRAME_EXTENSIONS)} files)"
        )
    return str(folder)


def _mask_png(ids: np.ndarray) -> bytes:
    import io

    from PIL import Image

    from rvoslib._palette import davis_palette

    image = Image.fromarray(ids.astype(np.uint8), mode="P")
    image.putpalette(davis_palette().reshape(-1).tolist())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def segment_video(
    model: torch.nn.Module,
    video: str | os.PathLike | torch.Tensor,
    out_dir: str | os.PathLike,
    *,
    expressions: Sequence[str] | None = None,
    first_mask: str | os.PathLike | np.ndarray | None = None,
    device: str | torch.device | None = None,
    size: int = 360,
    fps: float | None = None,
) -> DemoResult:
    """Segment ``video`` and write the demo's files into ``out_dir``.

    A referring model (``model.inputs.kind == "text"``) takes ``expressions`` and runs
    through :class:`~rvoslib.inference.VideoPredictor` (its checkpoint's inference protocol);
    a VOS model (``"first_mask"``) takes ``first_mask`` (an indexed PNG, pixel = object id)
    and runs :func:`~rvoslib.vos_inference.segment_from_first_mask`.

    Args:
        model: The model.
        video: A frame folder, a video file or ``(T, 3, H, W)`` uint8 frames.
        out_dir: Where ``overlay.gif`` / ``overlay.mp4``, ``preview.gif`` and ``masks.zip``
            are written.
        expressions: The expressions (referring models).
        first_mask: The first frame's objects (VOS models).
        device: Where the model runs (``None``: CUDA when available).
        size: Shorter side of the frames given to the model.
        fps: Frames per second of the animations (default: the video's, else 10).

    Returns:
        The files written (:class:`DemoResult`).

    Raises:
        ValueError: the query does not suit the model (says what it takes), or bad inputs.
    """
    from rvoslib.video_io import open_video

    kind = getattr(getattr(model, "inputs", None), "kind", "text")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "first_mask":
        if first_mask is None:
            raise ValueError(
                "this checkpoint is a VOS model: it segments the objects of a first-frame "
                "mask; upload the first frame's mask (an indexed PNG, pixel = object id)"
            )
        frames_and_ids, labels = _segment_vos(model, video, first_mask, device, size)
    else:
        if expressions is None:
            raise ValueError(
                "this checkpoint is a referring model: give expressions (one per line)"
            )
        from rvoslib.inference import VideoPredictor, check_expressions

        labels = check_expressions(list(expressions))
        predictor = VideoPredictor(model, device=device, size=size)
        results = predictor.predict_iter(video, labels, return_frames=True)
        frames_and_ids = ((r.frame, _ids(r.masks)) for r in results)
    source = open_video(video)
    return _write(frames_and_ids, source.num_frames, Path(out_dir), labels, fps or source.fps)


def _ids(masks: torch.Tensor) -> np.ndarray:
    """``(N, H, W)`` bool -> ``(H, W)`` uint8 expression numbers (later ones on top)."""
    ids = np.zeros(masks.shape[1:], np.uint8)
    for number, mask in enumerate(masks.numpy(), start=1):
        ids[mask] = number
    return ids


def _segment_vos(
    model: torch.nn.Module, video: Any, first_mask: Any, device: Any, size: int
) -> tuple[Iterable[tuple[torch.Tensor, np.ndarray]], list[str]]:
    """Frames with their object ids, and a label per object id (``"object k"``)."""
    from rvoslib.video_io import open_video
    from rvoslib.vos_inference import read_first_mask, segment_from_first_mask

    if not isinstance(first_mask, np.ndarray):
        first_mask = read_first_mask(first_mask)
    ids = segment_from_first_mask(model, video, first_mask, size=size, device=device).numpy()
    count = int(max(first_mask.max(), ids.max()))
    return zip(open_video(video), ids), [f"object {k}" for k in range(1, count + 1)]


def _write(
    frames_and_ids: Iterable[tuple[torch.Tensor, np.ndarray]],
    num_frames: int | None,
    out_dir: Path,
    labels: list[str],
    fps: float | None,
) -> DemoResult:
    from rvoslib.animation import AnimationWriter, choose_overlay_format
    from rvoslib.overlay import overlay_masks

    out_dir.mkdir(parents=True, exist_ok=True)
    fps = float(fps or 10.0)
    total = num_frames or 0
    overlay_path = out_dir / f"overlay.{choose_overlay_format(total)}"
    step = max(1, math.ceil(total / PREVIEW_FRAMES))
    preview = AnimationWriter(out_dir / "preview.gif", fps, frame_step=step,
                              max_width=PREVIEW_WIDTH)  # fmt: skip
    count = 0
    with (
        AnimationWriter(overlay_path, fps) as overlay,
        preview,
        zipfile.ZipFile(out_dir / "masks.zip", "w", zipfile.ZIP_STORED) as archive,
    ):
        for frame, ids in frames_and_ids:
            image = overlay_masks(frame[None], ids[None], labels=labels or None)[0]
            overlay.add(image)
            preview.add(image)
            archive.writestr(f"{count:05d}.png", _mask_png(ids))
            count += 1
    if count == 0:
        raise ValueError("video holds no frame")
    return DemoResult(out_dir / "preview.gif", overlay_path, out_dir / "masks.zip", count)
