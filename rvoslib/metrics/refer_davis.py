"""Write Ref-DAVIS17 predictions in the official layout: one indexed PNG per frame and annotator.

Ref-DAVIS17 has four expressions per object (two annotators, each describing the first frame
and the full video). ReferFormer's ``inference_davis.py`` and the ``refer-davis`` protocol of
:func:`~rvoslib.metrics.evaluate_davis_folder` score them as four separate result sets: for
each annotator / expression kind ``k``, the predictions of the video's objects for their
expression of kind ``k`` are merged into one id map per frame, written as
``<out_dir>/anno_<k>/<video>/<frame>.png`` (indexed PNG, DAVIS palette, pixel = object id,
0 = background), at the frames' original size, which the official unsupervised evaluation
reads.

The merge is ReferFormer's: probabilities below the threshold (0.5) become 0, a constant
background score of 0.1 is added, and each pixel takes the argmax over background and objects
(ties go to the background, then to the smaller object id). With ReferFormer's expression
numbering (:func:`rvoslib.data.expressions.load_refdavis_text`), ``k = int(exp_id) % 4``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from rvoslib._io import atomic_write_bytes
from rvoslib._paths import check_path_component, confined_path
from rvoslib.metrics.davis import MaskLike
from rvoslib.metrics.writers import _frame_names, _frames, as_probabilities, indexed_png_bytes

__all__ = [
    "BACKGROUND_SCORE",
    "NUM_REFDAVIS_ANNOTATORS",
    "RefDAVISWriter",
    "annotator_folders",
    "refdavis_annotator",
]

NUM_REFDAVIS_ANNOTATORS = 4
BACKGROUND_SCORE = 0.1  # ReferFormer's constant background channel
_ANNOTATOR_FOLDER = re.compile(r"^anno_\d+$")


def annotator_folders(predictions: str | os.PathLike) -> list[Path]:
    """The ``anno_<k>`` folders of a Ref-DAVIS17 predictions folder, by ``k``: what the
    ``refer-davis`` protocol scores (each annotator / expression kind on its own).

    Raises:
        FileNotFoundError: ``predictions`` is not a folder.
        ValueError: it holds no ``anno_<k>`` folder (names the folder, the expected layout
            and a few of the entries found).
    """
    folder = Path(predictions)
    if not folder.is_dir():
        raise FileNotFoundError(f"predictions folder {str(folder)!r} not found")
    entries = sorted(path.name for path in folder.iterdir())
    found = [folder / name for name in entries if _ANNOTATOR_FOLDER.match(name)]
    found = [path for path in found if path.is_dir()]
    if not found:
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "") or "nothing"
        raise ValueError(
            f"predictions folder {str(folder)!r} has no anno_<k> folder (it holds {shown}): "
            "the refer-davis protocol scores each Ref-DAVIS17 annotator / expression kind on "
            "its own and needs <predictions>/anno_<k>/<video>/<frame>.png (k = 0..3, as "
            "RefDAVISWriter writes them); score a <video>/<frame>.png folder with protocol "
            "'all' or 'semi-supervised'"
        )
    return sorted(found, key=lambda path: int(path.name[5:]))


def refdavis_annotator(exp_id: str | int) -> int:
    """The annotator / expression kind of a Ref-DAVIS17 expression in ReferFormer's numbering.

    0: annotator 1 first frame, 1: annotator 1 full video, 2: annotator 2 first frame,
    3: annotator 2 full video (``int(exp_id) % 4``).

    Raises:
        ValueError: ``exp_id`` is not a non-negative integer.

    Example:
        >>> [refdavis_annotator(i) for i in ("0", "5", "11")]
        [0, 1, 3]
    """
    text = str(exp_id)
    if not text.isdigit():
        raise ValueError(
            f"exp_id must be a non-negative integer in ReferFormer's Ref-DAVIS17 numbering "
            f"(exp_id % 4 = annotator), got {exp_id!r}; pass annotator= to RefDAVISWriter"
        )
    return int(text) % NUM_REFDAVIS_ANNOTATORS


class RefDAVISWriter:
    """Merge per-expression predictions into ``anno_<k>/<video>/<frame>.png`` files.

    Call :meth:`add` once per expression (whole videos or chunks of frames, in any order),
    then :meth:`flush` a finished video to write it and free its memory, or :meth:`close` to
    write everything. Used as a context manager, it closes on a normal exit.

    Args:
        out_dir: The output folder (gets one ``anno_<k>`` folder per annotator seen).
        threshold: Probabilities below it do not count (ReferFormer: 0.5).
        annotator: ``exp_id -> k``; default :func:`refdavis_annotator`.

    Example:
        >>> import numpy as np, tempfile
        >>> probs = np.zeros((2, 4, 6), dtype=np.float32); probs[:, 1:3, 1:4] = 0.9
        >>> with tempfile.TemporaryDirectory() as out:
        ...     with RefDAVISWriter(out) as writer:
        ...         writer.add("blackswan", "0", 1, probs, ["00000", "00001"])
        ...     sorted(p.name for p in (Path(out) / "anno_0" / "blackswan").iterdir())
        ['00000.png', '00001.png']
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        *,
        threshold: float = 0.5,
        annotator: Callable[[str], int] = refdavis_annotator,
    ) -> None:
        if not 0 <= threshold <= 1:
            raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
        self.out_dir = Path(out_dir)
        self.threshold = threshold
        self.annotator = annotator
        # (video, k) -> frame -> (best score (H, W) float32, best id (H, W) uint8)
        self._merged: dict[tuple[str, int], dict[str, tuple[np.ndarray, np.ndarray]]] = {}
        self._seen: dict[str, set[tuple[str, str]]] = {}  # video -> {(exp_id, frame)}
        self._sizes: dict[str, tuple[int, int]] = {}

    def add(
        self,
        video_id: str,
        exp_id: str,
        obj_id: int,
        masks: MaskLike,
        frame_ids: Sequence[str],
    ) -> None:
        """Merge one expression's predictions for some frames of a video.

        Args:
            video_id: The video.
            exp_id: The expression id (gives the annotator, see ``annotator``).
            obj_id: The object the expression names, 1..255 (the pixel value written).
            masks: (T, H, W) probabilities in [0, 1], or bool / 0-1 masks, at the frames'
                original size (numpy or tensor, any device).
            frame_ids: T frame names, e.g. ``"00000"``.

        Raises:
            ValueError: a bad ``obj_id``, masks outside [0, 1], a frame size that differs from
                the video's other frames, a frame count that differs from ``frame_ids``, or a
                frame given twice for one expression.
        """
        check_path_component(str(video_id), "video id", "RefDAVISWriter.add")
        if isinstance(obj_id, bool) or not 1 <= int(obj_id) <= 255 or int(obj_id) != obj_id:
            raise ValueError(f"obj_id must be an integer object id in 1..255, got {obj_id!r}")
        frames = _frames(masks, "masks")
        names = _frame_names(frame_ids, len(frames))
        probabilities = as_probabilities(frames, "masks").astype(np.float32, copy=False)
        size = self._sizes.setdefault(video_id, probabilities.shape[1:])
        if probabilities.shape[1:] != size:
            raise ValueError(
                f"video {video_id!r}: masks of expression {exp_id} are "
                f"{probabilities.shape[2]}x{probabilities.shape[1]} but earlier ones are "
                f"{size[1]}x{size[0]}; give every mask at the frames' original size"
            )
        seen = self._seen.setdefault(video_id, set())
        repeated = [name for name in names if (str(exp_id), name) in seen]
        if repeated:
            raise ValueError(
                f"video {video_id!r}, expression {exp_id}: frame(s) {repeated[:3]} given twice"
            )
        seen.update((str(exp_id), name) for name in names)
        merged = self._merged.setdefault((video_id, self.annotator(str(exp_id))), {})
        for name, frame in zip(names, probabilities):
            if name not in merged:
                merged[name] = (
                    np.full(size, BACKGROUND_SCORE, np.float32),
                    np.zeros(size, np.uint8),
                )
            best, ids = merged[name]
            score = np.where(frame >= self.threshold, frame, 0)
            wins = (score > best) | ((score == best) & (ids > obj_id))
            best[wins] = score[wins]
            ids[wins] = obj_id

    def flush(self, video_id: str | None = None) -> list[Path]:
        """Write the merged PNGs of one video (all videos if None) and forget them.

        Returns:
            The written paths.
        """
        keys = [key for key in self._merged if video_id is None or key[0] == video_id]
        targets = {  # every target checked before the first file is written
            (video, k, name): confined_path(
                self.out_dir, f"anno_{k}", video, f"{name}.png", source="RefDAVISWriter"
            )
            for video, k in keys
            for name in self._merged[(video, k)]
        }
        paths = []
        for video, k in keys:
            for name, (_, ids) in sorted(self._merged.pop((video, k)).items()):
                target = targets[(video, k, name)]
                paths.append(atomic_write_bytes(target, indexed_png_bytes(ids)))
        for video in {key[0] for key in keys}:
            self._seen.pop(video, None)
            self._sizes.pop(video, None)
        return paths

    def close(self) -> list[Path]:
        """Write everything not yet written; returns the paths."""
        return self.flush()

    def __enter__(self) -> RefDAVISWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
