"""Readers of the refer API's files (https://github.com/lichengunc/refer): the ``refs(*).p``
pickles without running code, ``instances.json`` / COCO json, and COCO segmentations.

``refs(*).p`` files are Python pickles. :func:`load_refs` reads them with an unpickler that
refuses every global (class or function), so that a tampered file cannot run code: the refer
refs are lists of dicts of numbers and strings, which need none.
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "REFCOCO_LAYOUT",
    "by_id",
    "decode_segmentation",
    "in_split",
    "load_refs",
    "read_coco_json",
]

REFCOCO_LAYOUT = """expected the refer layout (https://github.com/lichengunc/refer) and COCO
train2014 images (https://cocodataset.org/#download, 2014 Train images):
  <root>/train2014/COCO_train2014_000000000009.jpg ...
  <root>/refcoco/refs(unc).p, refs(google).p, instances.json
  <root>/refcoco+/refs(unc).p, instances.json
  <root>/refcocog/refs(umd).p, refs(google).p, instances.json
or ReferFormer's conversion of it (tools/data/convert_refexp_to_coco.py):
  <root>/<dataset>/instances_<dataset>_<split>.json"""


class _RefusedGlobal(pickle.UnpicklingError):
    """A pickle names a class or function."""


class _NoGlobals(pickle.Unpickler):
    """An unpickler of builtins only: every class or function reference is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise _RefusedGlobal(f"it names the global {module}.{name}")


def load_refs(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a refer ``refs(<split_by>).p`` file without running code from it.

    Returns:
        The refs: dicts with ``ref_id``, ``ann_id``, ``image_id``, ``split``, ``category_id``
        and ``sentences`` (dicts with ``sent_id`` and ``sent``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the pickle references a class or function (it is not loaded: a refs file
            holds only lists and dicts of numbers and strings), is corrupt, or holds something
            other than such refs (the file and the entry are named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"refer refs file not found: {path}\n{REFCOCO_LAYOUT}")
    try:
        with path.open("rb") as file:
            refs = _NoGlobals(file, fix_imports=True, encoding="utf-8").load()
    except _RefusedGlobal as error:
        raise ValueError(
            f"{path}: not a plain refer refs pickle ({error}); refs files hold only lists and "
            "dicts of numbers and strings, and a pickle that names a class or function could "
            "run code, so it was not loaded"
        ) from None
    except (pickle.UnpicklingError, EOFError, UnicodeDecodeError, ValueError, TypeError) as error:
        raise ValueError(f"{path}: cannot read the refs pickle: {error}") from None
    if not isinstance(refs, list):
        raise ValueError(f"{path}: expected a list of refs, got {type(refs).__name__}")
    for index, ref in enumerate(refs):
        _check_ref(ref, index, path)
    return refs


def _check_ref(ref: object, index: int, path: Path) -> None:
    where = f"{path}: ref {index}"
    if not isinstance(ref, dict):
        raise ValueError(f"{where} must be a dict, got {type(ref).__name__}")
    for key in ("ref_id", "ann_id", "image_id"):
        if not isinstance(ref.get(key), int) or isinstance(ref.get(key), bool):
            raise ValueError(f"{where}: {key!r} must be an int, got {ref.get(key)!r}")
    if not isinstance(ref.get("split"), str):
        raise ValueError(f"{where}: 'split' must be a string, got {ref.get('split')!r}")
    sentences = ref.get("sentences")
    if not isinstance(sentences, list):
        raise ValueError(f"{where}: 'sentences' must be a list, got {type(sentences).__name__}")
    for sentence in sentences:
        if not isinstance(sentence, dict) or not isinstance(sentence.get("sent"), str):
            raise ValueError(f"{where}: each sentence must be a dict with a 'sent' string")
        if not sentence["sent"].strip():
            raise ValueError(f"{where}: sentence {sentence.get('sent_id')!r} is empty")


def in_split(ref_split: str, split: str) -> bool:
    """Whether a ref of split ``ref_split`` belongs to ``split``, as the refer API decides."""
    if split in ("testA", "testB", "testC"):
        return split[-1] in ref_split
    if split == "test":
        return "test" in ref_split
    return ref_split == split


def read_coco_json(path: Path) -> dict[str, Any]:
    """A COCO-style json with ``images`` and ``annotations`` lists.

    Raises:
        FileNotFoundError: ``path`` does not exist (the layout is shown).
        ValueError: not JSON, or without those lists (the file is named).
    """
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}\n{REFCOCO_LAYOUT}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot parse {path} as JSON: {error}") from None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations")
    ):
        raise ValueError(f"{path} must hold COCO 'images' and 'annotations' lists")
    return data


def by_id(entries: list[Any], what: str, path: str | os.PathLike) -> dict[int, dict[str, Any]]:
    """COCO entries (``images``, ``annotations``) by their ``id``.

    Raises:
        ValueError: an entry that is not a dict with an int ``id`` (``path`` and ``what``
            are named).

    Example:
        >>> by_id([{"id": 3, "file_name": "a.jpg"}], "images", "instances.json")
        {3: {'id': 3, 'file_name': 'a.jpg'}}
    """
    table = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), int):
            raise ValueError(f"{path}: every entry of {what!r} must be a dict with an int 'id'")
        table[entry["id"]] = entry
    return table


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A COCO segmentation (polygons, or RLE compressed or not) as an ``(H, W)`` uint8 mask:
    the union of its parts, decoded with pycocotools as ReferFormer decodes it (a compressed
    RLE, which ReferFormer's ``frPyObjects`` call cannot read, as the COCO API reads it).

    Raises:
        ImportError: pycocotools is not installed (``pip install pycocotools``).
    """
    try:
        from pycocotools import mask as coco_mask
    except ImportError as error:
        raise ImportError(
            "RefCOCO masks are decoded with pycocotools: pip install pycocotools "
            "(or rvoslib[refcoco])"
        ) from error
    if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), str):
        rles = {**segmentation, "counts": segmentation["counts"].encode("ascii")}  # compressed
    else:  # polygons, or an uncompressed RLE (counts a list), as ReferFormer converts them
        rles = coco_mask.frPyObjects(segmentation, height, width)
    with warnings.catch_warnings():  # pycocotools 2.0 on numpy 2: a DeprecationWarning on copy
        warnings.simplefilter("ignore", DeprecationWarning)
        decoded = coco_mask.decode(rles)
    if decoded.ndim == 3:
        decoded = decoded.any(axis=2)
    return np.ascontiguousarray(decoded, dtype=np.uint8)
