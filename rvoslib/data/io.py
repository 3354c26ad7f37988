"""Image reading/writing and expression-file parsing for the dataset loaders.

Every read names the file in its error, so that a corrupt frame in a dataset of a hundred
thousand files can be found. Images are read with Pillow.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from rvoslib._palette import voc_palette

__all__ = [
    "IMAGE_EXTENSIONS",
    "ExpressionRecord",
    "ImageReadError",
    "davis_palette",
    "image_size",
    "list_images",
    "load_meta_expressions",
    "parse_refdavis_text",
    "read_frame",
    "read_mask",
    "write_frame",
    "write_mask",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


class ImageReadError(OSError):
    """A frame or annotation could not be decoded. ``path`` names the file."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        super().__init__(f"cannot read image {self.path}: {reason}")


@dataclass(frozen=True)
class ExpressionRecord:
    """One referring expression: which video and object it names, and its text.

    ``obj_id`` is ``-1`` where the source does not say (Ref-YouTube-VOS valid/test splits).
    """

    video_id: str
    exp_id: str
    obj_id: int
    expression: str


def davis_palette() -> list[int]:
    """The 256-colour palette of DAVIS / YouTube-VOS annotation PNGs (flat RGB list, 768 ints)."""
    return voc_palette().reshape(-1).tolist()


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Sorted image files (``.jpg``, ``.jpeg``, ``.png``) in ``folder``; hidden files skipped."""
    return sorted(
        path
        for path in Path(folder).iterdir()
        if path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")
    )


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` of an image, reading only its header."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, ValueError) as error:
        raise ImageReadError(path, str(error)) from error
    return height, width


def read_frame(path: str | os.PathLike) -> np.ndarray:
    """Read an RGB frame.

    Returns:
        ``(H, W, 3)`` uint8 array.

    Raises:
        ImageReadError: the file is missing, truncated or not an image (the path is named).
    """
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageReadError(path, str(error) or type(error).__name__) from error


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read an annotation PNG whose pixel values are object ids (0 = background).

    Indexed (``P``) and greyscale (``L``) PNGs are read as stored; the palette is ignored.

    Returns:
        ``(H, W)`` uint8 array of object ids.

    Raises:
        ImageReadError: unreadable file, or a colour image that holds no object ids.
    """
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L", "1", "I", "I;16"):
                raise ImageReadError(
                    path, f"expected an indexed ('P') or greyscale PNG, got mode {image.mode!r}"
                )
            array = np.asarray(image)
    except ImageReadError:
        raise
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageReadError(path, str(error) or type(error).__name__) from error
    if array.max(initial=0) > 255:
        raise ImageReadError(path, f"object ids must be < 256, found {int(array.max())}")
    return array.astype(np.uint8)


def write_frame(path: str | os.PathLike, frame: np.ndarray, quality: int = 95) -> None:
    """Write an ``(H, W, 3)`` uint8 frame as JPEG (``quality``) or PNG, chosen by suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8), mode="RGB")
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.save(path, quality=quality, subsampling=0)
    else:
        image.save(path)


def write_mask(path: str | os.PathLike, mask: np.ndarray) -> None:
    """Write an ``(H, W)`` uint8 object-id map as an indexed PNG with the DAVIS palette."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8), mode="P")
    image.putpalette(davis_palette())
    image.save(path)


def _check_expression(text: object, video_id: str, obj_id: int, source: Path) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(
            f"empty expression for video {video_id!r}, object {obj_id} in {source}; "
            "every expression must be a non-empty string"
        )
    return text.strip()


def load_meta_expressions(
    path: str | os.PathLike, require_obj_id: bool = True
) -> tuple[list[ExpressionRecord], dict[str, list[str]]]:
    """Read a Ref-YouTube-VOS style ``meta_expressions.json``.

    The layout is ``{"videos": {vid: {"expressions": {"0": {"exp": str, "obj_id": "1"}},
    "frames": ["00000", ...]}}}``.

    Args:
        path: The JSON file.
        require_obj_id: Whether every expression must name its object (training splits).

    Returns:
        The expressions in file order, and each video's frame list (empty if not given).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: malformed JSON, a missing ``obj_id`` or an empty expression.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expression file not found: {path}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot parse {path} as JSON: {error}") from error
    if not isinstance(meta, dict) or not isinstance(meta.get("videos"), dict):
        raise ValueError(f'{path} must hold {{"videos": {{video_id: {{"expressions": ...}}}}}}')
    records: list[ExpressionRecord] = []
    frames: dict[str, list[str]] = {}
    for video_id, video in meta["videos"].items():
        frames[video_id] = [str(frame) for frame in video.get("frames", [])]
        for exp_id, entry in video.get("expressions", {}).items():
            raw_obj = entry.get("obj_id")
            if raw_obj is None and require_obj_id:
                raise ValueError(
                    f"expression {exp_id} of video {video_id!r} in {path} has no obj_id"
                )
            obj_id = -1 if raw_obj is None else int(raw_obj)
            text = _check_expression(entry.get("exp"), video_id, obj_id, path)
            records.append(ExpressionRecord(video_id, str(exp_id), obj_id, text))
    return records, frames


_REFDAVIS_LINE = re.compile(r"^\s*(\S+)\s+(-?\d+)\s*(.*?)\s*$")


def parse_refdavis_text(
    paths: str | os.PathLike | list[str | os.PathLike],
) -> list[ExpressionRecord]:
    """Read original Ref-DAVIS17 text files (Khoreva et al.).

    Each line is ``<video> <obj_id> "<expression>"``; the quotes are optional and blank lines
    are skipped. Expression ids count per video across the files in the order given.

    Raises:
        FileNotFoundError: a file does not exist.
        ValueError: a line that does not match the format, or an empty expression.
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    records: list[ExpressionRecord] = []
    counts: dict[str, int] = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(
                f"Ref-DAVIS17 expression file not found: {path} (expected lines like "
                "'blackswan 1 \"a black swan swimming in a pond\"')"
            )
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            match = _REFDAVIS_LINE.match(line)
            if match is None:
                raise ValueError(
                    f"{path}:{number}: expected '<video> <obj_id> \"<expression>\"', got {line!r}"
                )
            video_id, obj_id = match.group(1), int(match.group(2))
            text = match.group(3)
            if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
                text = text[1:-1]
            text = _check_expression(text, video_id, obj_id, path)
            exp_id = str(counts.get(video_id, 0))
            counts[video_id] = counts.get(video_id, 0) + 1
            records.append(ExpressionRecord(video_id, exp_id, obj_id, text))
    return records
