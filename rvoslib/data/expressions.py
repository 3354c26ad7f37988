"""Expression files: Ref-YouTube-VOS ``meta_expressions.json`` and the Ref-DAVIS17 text files.

The Ref-DAVIS17 expressions (Khoreva et al. 2018, distributed by MPI as
``davis_text_annotations.zip``) are four text files, one line ``<video> <obj_id> "<text>"``
per expression:

==================================  =======================  ============================
file                                kind                     ReferFormer ``exp_id % 4``
==================================  =======================  ============================
``Davis17_annot1.txt``              annotator 1, 1st frame   0
``Davis17_annot1_full_video.txt``   annotator 1, full video  1
``Davis17_annot2.txt``              annotator 2, 1st frame   2
``Davis17_annot2_full_video.txt``   annotator 2, full video  3
==================================  =======================  ============================

:func:`load_refdavis_text` reads them as ReferFormer's ``tools/data/convert_davis_to_ytvos.py``
does, so that expression ids equal those of the ``meta_expressions.json`` it writes: the
encoding is detected (the ``annot2`` files are latin-1), three misspelt video names are fixed,
and an object's four expressions are numbered together, ``exp_id = 4 * i + kind`` for the
``i``-th object of the video (objects sorted by their id as written).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rvoslib._paths import check_object_id, check_path_component

__all__ = [
    "REFDAVIS_KINDS",
    "REFDAVIS_TEXT_FOLDER",
    "VIDEO_NAME_FIXES",
    "ExpressionRecord",
    "RefDAVISText",
    "find_refdavis_text",
    "load_meta_expressions",
    "load_refdavis_text",
    "parse_refdavis_text",
    "read_text_file",
]

REFDAVIS_KINDS = ("annot1", "annot1_full_video", "annot2", "annot2_full_video")
REFDAVIS_TEXT_FOLDER = "davis_text_annotations"
# The video names misspelt in the Ref-DAVIS17 text files, fixed as ReferFormer fixes them.
VIDEO_NAME_FIXES = {
    "clasic-car": "classic-car",
    "dog-scale": "dogs-scale",
    "motor-bike": "motorbike",
}
_LINE = re.compile(r"^\s*(\S+)\s+(-?\d+)\s*(.*?)\s*$")


@dataclass(frozen=True)
class ExpressionRecord:
    """One referring expression: which video and object it names, and its text.

    ``obj_id`` is ``-1`` where the source does not say (Ref-YouTube-VOS valid/test splits).
    """

    video_id: str
    exp_id: str
    obj_id: int
    expression: str


@dataclass(frozen=True)
class RefDAVISText:
    """The Ref-DAVIS17 expressions read by :func:`load_refdavis_text`, and what was done.

    Attributes:
        records: The expressions, ReferFormer's numbering, grouped by video.
        files: The file read for each kind, e.g. ``{"annot2": Path(".../Davis17_annot2.txt")}``.
        encodings: The encoding used for each file name (``"utf-8-sig"`` or ``"latin-1"`` when
            detected).
        renamed: Misspelt video names fixed, ``{"clasic-car": "classic-car"}``.
        dropped: Expressions left out because the files disagree in a video's number of
            objects (ReferFormer pairs the files object by object and drops the rest).
    """

    records: tuple[ExpressionRecord, ...]
    files: dict[str, Path] = field(default_factory=dict)
    encodings: dict[str, str] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)
    dropped: tuple[ExpressionRecord, ...] = ()


def _check_expression(text: object, video_id: str, obj_id: int, source: Path) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(
            f"empty expression for video {video_id!r}, object {obj_id} in {source}; "
            "every expression must be a non-empty string"
        )
    return text.strip()


def read_text_file(path: str | os.PathLike, encoding: str | None = None) -> tuple[str, str]:
    """Read a text file, detecting its encoding unless one is given.

    Args:
        path: The file.
        encoding: None to detect: UTF-8 (a byte-order mark is dropped), else latin-1 (which
            ReferFormer uses for ``Davis17_annot2*.txt``); or a codec name, strictly applied.

    Returns:
        ``(text, encoding used)``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not valid in the given ``encoding`` (the file, the byte and
            the codec are named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"text file not found: {path}")
    data = path.read_bytes()
    if encoding is None:
        try:
            return data.decode("utf-8-sig"), "utf-8-sig"
        except UnicodeDecodeError:
            return data.decode("latin-1"), "latin-1"  # decodes any byte
    try:
        return data.decode(encoding), encoding
    except UnicodeDecodeError as error:
        raise ValueError(
            f"cannot decode {path} as {encoding!r}: byte {data[error.start]:#04x} at offset "
            f"{error.start} ({error.reason}); pass encoding=None to detect the encoding (the "
            "Ref-DAVIS17 annot2 files are latin-1)"
        ) from error
    except LookupError as error:
        raise ValueError(f"unknown encoding {encoding!r} for {path}") from error


def _parse_lines(path: Path, text: str) -> list[tuple[str, str, str]]:
    """``(video, obj_id as written, expression)`` per non-blank line of a Ref-DAVIS17 file."""
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _LINE.match(line)
        if match is None:
            raise ValueError(
                f"{path}:{number}: expected '<video> <obj_id> \"<expression>\"', got {line!r}"
            )
        video_id, obj_text, text_part = match.groups()
        check_path_component(video_id, "video name", f"{path}:{number}")
        text_part = " ".join(text_part.split())  # one space between words, as ReferFormer
        if len(text_part) >= 2 and text_part[0] == text_part[-1] and text_part[0] in "\"'":
            text_part = text_part[1:-1]
        text_part = _check_expression(text_part, video_id, int(obj_text), path)
        entries.append((video_id, obj_text, text_part))
    return entries


def _fix_name(video_id: str, path: Path, renamed: dict[str, str], where: dict) -> str:
    fixed = VIDEO_NAME_FIXES.get(video_id)
    if fixed is None:
        return video_id
    renamed[video_id] = fixed
    where.setdefault(video_id, set()).add(path.name)
    return fixed


def _warn_renamed(renamed: dict[str, str], where: dict[str, set[str]]) -> None:
    if renamed:
        shown = ", ".join(
            f"{old} -> {new} ({', '.join(sorted(where[old]))})" for old, new in renamed.items()
        )
        warnings.warn(
            f"Ref-DAVIS17 text files: renamed misspelt videos as ReferFormer does: {shown}",
            UserWarning,
            stacklevel=3,
        )


def find_refdavis_text(root: str | os.PathLike) -> Path | None:
    """The folder holding the Ref-DAVIS17 text files for a DAVIS root, or None.

    Looks in ``root``, ``root/davis_text_annotations`` and ``root/../davis_text_annotations``
    (ReferFormer's ``data/ref-davis/{DAVIS, davis_text_annotations}``), in this order.
    """
    root = Path(root)
    for folder in (root, root / REFDAVIS_TEXT_FOLDER, root.parent / REFDAVIS_TEXT_FOLDER):
        if any((folder / f"Davis17_{kind}.txt").is_file() for kind in REFDAVIS_KINDS):
            return folder
    return None


def load_refdavis_text(
    source: str | os.PathLike,
    kinds: Sequence[str] = REFDAVIS_KINDS,
    encoding: str | None = None,
) -> RefDAVISText:
    """Read the Ref-DAVIS17 text files as ReferFormer's conversion does.

    * encodings are detected per file (see :func:`read_text_file`);
    * the misspelt names ``clasic-car``, ``dog-scale`` and ``motor-bike`` become
      ``classic-car``, ``dogs-scale`` and ``motorbike``, with a warning listing them (also in
      :attr:`RefDAVISText.renamed`);
    * in each file a video's expressions are sorted by object id as written (a string sort,
      stable), and the ``i``-th expression of kind ``k`` (its index in
      :data:`REFDAVIS_KINDS`) gets ``exp_id = 4 * i + k``. Several kinds are paired object by
      object; where the files disagree in a video's count, the extra expressions are dropped
      with a warning, as ReferFormer's ``zip`` drops them.

    Args:
        source: The folder of the text files, or a DAVIS root (searched as
            :func:`find_refdavis_text` does).
        kinds: Which files, a subset of :data:`REFDAVIS_KINDS`.
        encoding: None to detect each file's encoding, or a codec applied to all.

    Returns:
        A :class:`RefDAVISText`.

    Raises:
        ValueError: an unknown kind, a malformed line, an empty expression, a video name that
            is not a plain file name (``file:line`` named) or a file not decodable in
            ``encoding``.
        FileNotFoundError: a file is missing (the folders searched are named).

    Example:
        >>> load_refdavis_text("data/ref-davis/DAVIS").records[0]  # doctest: +SKIP
        ExpressionRecord(video_id='bike-packing', exp_id='0', obj_id=1, expression='...')
    """
    kinds = list(kinds)
    unknown = [kind for kind in kinds if kind not in REFDAVIS_KINDS]
    if unknown or not kinds:
        raise ValueError(f"kinds must be a non-empty subset of {REFDAVIS_KINDS}, got {kinds}")
    source = Path(source)
    folder = find_refdavis_text(source) or source
    files = {kind: folder / f"Davis17_{kind}.txt" for kind in kinds}
    missing = [path.name for path in files.values() if not path.is_file()]
    if missing:
        searched = [source, source / REFDAVIS_TEXT_FOLDER, source.parent / REFDAVIS_TEXT_FOLDER]
        raise FileNotFoundError(
            f"Ref-DAVIS17 file(s) {missing} not found; looked in {[str(p) for p in searched]} "
            "(unzip davis_text_annotations.zip next to the DAVIS folder, as ReferFormer does)"
        )
    renamed: dict[str, str] = {}
    where: dict[str, set[str]] = {}
    encodings: dict[str, str] = {}
    per_kind: dict[str, dict[str, list[tuple[str, str]]]] = {}
    videos: dict[str, None] = {}
    for kind, path in files.items():
        text, encodings[path.name] = read_text_file(path, encoding)
        lists: dict[str, list[tuple[str, str]]] = {}
        for video_id, obj_text, expression in _parse_lines(path, text):
            video_id = _fix_name(video_id, path, renamed, where)
            lists.setdefault(video_id, []).append((obj_text, expression))
            videos.setdefault(video_id)
        per_kind[kind] = {v: sorted(entries, key=lambda e: e[0]) for v, entries in lists.items()}
    records: list[ExpressionRecord] = []
    dropped: list[ExpressionRecord] = []
    for video_id in videos:
        counts = [len(per_kind[kind].get(video_id, [])) for kind in kinds]
        for kind in kinds:
            k = REFDAVIS_KINDS.index(kind)
            for i, (obj_text, expression) in enumerate(per_kind[kind].get(video_id, [])):
                record = ExpressionRecord(video_id, str(4 * i + k), int(obj_text), expression)
                (records if i < min(counts) else dropped).append(record)
    order = {video_id: index for index, video_id in enumerate(videos)}
    records.sort(key=lambda r: (order[r.video_id], int(r.exp_id)))
    _warn_renamed(renamed, where)
    if dropped:
        by_video = sorted({record.video_id for record in dropped})
        warnings.warn(
            f"Ref-DAVIS17 text files disagree in the number of expressions of {by_video[:5]}; "
            f"{len(dropped)} expressions without a partner in every file were dropped, as "
            "ReferFormer drops them (see RefDAVISText.dropped)",
            UserWarning,
            stacklevel=2,
        )
    return RefDAVISText(tuple(records), files, encodings, renamed, tuple(dropped))


def parse_refdavis_text(
    paths: str | os.PathLike | list[str | os.PathLike],
    encoding: str | None = None,
) -> list[ExpressionRecord]:
    """Read Ref-DAVIS17-format text files of your own, numbering expressions file by file.

    Each line is ``<video> <obj_id> "<expression>"``; the quotes are optional, blank lines are
    skipped. Expression ids count per video across the files in the order given. Encodings are
    detected and the misspelt video names fixed (with a warning), as in
    :func:`load_refdavis_text`, which reads the official four files with ReferFormer's
    numbering.

    Args:
        paths: One file or a list of files.
        encoding: None to detect each file's encoding, or a codec.

    Raises:
        FileNotFoundError: a file does not exist.
        ValueError: a line that does not match the format, an empty expression, a video name
            that is not a plain file name (``file:line`` named), or a file not decodable in
            ``encoding``.
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    records: list[ExpressionRecord] = []
    counts: dict[str, int] = {}
    renamed: dict[str, str] = {}
    where: dict[str, set[str]] = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(
                f"Ref-DAVIS17 expression file not found: {path} (expected lines like "
                "'blackswan 1 \"a black swan swimming in a pond\"')"
            )
        text, _ = read_text_file(path, encoding)
        for video_id, obj_text, expression in _parse_lines(path, text):
            video_id = _fix_name(video_id, path, renamed, where)
            exp_id = str(counts.get(video_id, 0))
            counts[video_id] = counts.get(video_id, 0) + 1
            records.append(ExpressionRecord(video_id, exp_id, int(obj_text), expression))
    _warn_renamed(renamed, where)
    return records


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
        ValueError: malformed JSON, a missing ``obj_id`` or an empty expression; a video
            name, expression id or frame name that is not a plain file name (``..``, a
            separator, absolute, empty, NUL), or a non-integer ``obj_id`` (checked for every
            entry before any is used; the file and the entry are named).
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
    _check_names(meta["videos"], path)
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


def _check_names(videos: dict, path: Path) -> None:
    """Check every name of a ``meta_expressions.json`` before any is used: video names,
    expression ids and frame names are plain file names, object ids integers."""
    for video_id, video in videos.items():
        check_path_component(video_id, "video name", path)
        if not isinstance(video, dict) or not isinstance(video.get("expressions", {}), dict):
            raise ValueError(
                f'{path}: video {video_id!r} must hold {{"expressions": {{exp_id: {{"exp": '
                f'..., "obj_id": ...}}}}, "frames": [...]}}, got {type(video).__name__}'
            )
        if not isinstance(video.get("frames", []), list):
            raise ValueError(
                f"{path}: 'frames' of video {video_id!r} must be a list of frame names, got "
                f"{type(video['frames']).__name__}"
            )
        for frame in video.get("frames", []):
            check_path_component(str(frame), f"frame name of video {video_id!r}", path)
        for exp_id, entry in video.get("expressions", {}).items():
            what = f"expression id of video {video_id!r}"
            check_path_component(str(exp_id), what, path)
            if not isinstance(entry, dict):
                raise ValueError(
                    f"{path}: expression {exp_id!r} of video {video_id!r} must be "
                    f'{{"exp": ..., "obj_id": ...}}, got {type(entry).__name__}'
                )
            if entry.get("obj_id") is not None:
                what = f"object id of expression {exp_id!r} of video {video_id!r}"
                check_object_id(entry["obj_id"], what, path)
