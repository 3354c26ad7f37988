"""RefCOCO, RefCOCO+ and RefCOCOg: referring expressions of COCO images, as 1-frame clips.

Each expression (sentence) of a split is one item: its image as a clip of one frame (or a
pseudo clip of ``pseudo_clip_frames`` frames, :mod:`rvoslib.data.pseudo_clip`, as
ReferFormer's joint training makes them), the referred object's mask decoded from the COCO
polygons or RLE of ``instances.json`` with pycocotools (``pip install pycocotools``), as
ReferFormer decodes them (the union of the object's polygons).

Two annotation layouts are read (``REFCOCO_LAYOUT``): the refer API's
(https://github.com/lichengunc/refer), ``<root>/<dataset>/refs(<split_by>).p`` and
``instances.json``, and the per-split COCO-style files that ReferFormer's
``tools/data/convert_refexp_to_coco.py`` writes from it. Both give the same items in the same
order: refs in file order, each ref's sentences in order, the text of each sentence its
``sent`` (lower-cased, tokenised) as ReferFormer uses.

``refs(*).p`` files are Python pickles. They are read with an unpickler that refuses every
global (class or function), so that a tampered file cannot run code: the refer refs are lists
of dicts of numbers and strings, which need none.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rvoslib._paths import check_path_component
from rvoslib.data.base import RecordDataset
from rvoslib.data.davis import Transform
from rvoslib.data.io import read_frame
from rvoslib.data.pseudo_clip import PseudoClipAugmenter, make_pseudo_clip
from rvoslib.data.refer import (
    REFCOCO_LAYOUT,
    by_id,
    decode_segmentation,
    in_split,
    load_refs,
    read_coco_json,
)

__all__ = [
    "REFCOCO_DATASETS",
    "REFCOCO_LAYOUT",
    "REFCOCO_SPLITS",
    "RefCOCODataset",
    "RefExpRecord",
    "decode_segmentation",
    "in_split",
    "load_refs",
]

#: Dataset -> its ``split_by`` values (the first is the default, ReferFormer's).
REFCOCO_DATASETS = {
    "refcoco": ("unc", "google"),
    "refcoco+": ("unc",),
    "refcocog": ("umd", "google"),
}
#: Splits as the refer API selects them: ``testA`` takes refs whose split contains ``A``,
#: ``test`` every test split, ``train`` and ``val`` their own.
REFCOCO_SPLITS = ("train", "val", "test", "testA", "testB", "testC")
IMAGE_FOLDERS = ("train2014", "images/mscoco/images/train2014")


@dataclass(frozen=True)
class RefExpRecord:
    """One expression: the image, the referred COCO annotation and the sentence."""

    dataset: str
    image_path: Path
    height: int
    width: int
    image_id: int
    ann_id: int
    ref_id: int
    sent_id: int
    category_id: int
    expression: str
    segmentation: Any

    @property
    def video_id(self) -> str:
        """The image's file stem, e.g. ``COCO_train2014_000000581857``."""
        return self.image_path.stem


class RefCOCODataset(RecordDataset):
    """RefCOCO / RefCOCO+ / RefCOCOg expressions as clips (see ``REFCOCO_LAYOUT``).

    Items hold ``frames`` ``(T, 3, H, W)`` float32 (ImageNet-normalised), ``masks``
    ``(T, H, W)`` float32, ``valid`` ``(T,)`` all True, ``expression``, ``video_id`` (the
    image's file stem), ``frame_ids`` (the stem, ``<stem>_copy<k>`` for the augmented copies of
    a pseudo clip), ``obj_id`` (the COCO annotation id), ``exp_id`` (the sentence id),
    ``ref_id``, ``dataset``, ``orig_size``, ``unpadded_size``. ``T`` is ``pseudo_clip_frames``.

    Args:
        root: The COCO folder: ``train2014/`` (or the refer README's
            ``images/mscoco/images/train2014/``) and one folder per dataset.
        dataset: ``"refcoco"``, ``"refcoco+"`` or ``"refcocog"``.
        split: One of ``REFCOCO_SPLITS`` (``testA``/``testB`` of RefCOCO and RefCOCO+,
            ``test`` of RefCOCOg umd).
        split_by: ``refs(<split_by>).p`` to read: ``unc`` (RefCOCO, RefCOCO+), ``umd`` or
            ``google`` (RefCOCOg), ``google`` (RefCOCO); None takes ReferFormer's choice
            (``unc``, ``unc``, ``umd``).
        annotations: ``"refer"`` (``refs(<split_by>).p`` + ``instances.json``),
            ``"referformer"`` (``instances_<dataset>_<split>.json``) or ``"auto"`` (the refer
            files when present, else ReferFormer's).
        pseudo_clip_frames: Frames per item: 1 is the image alone (ReferFormer's image
            pretraining); more makes a pseudo clip (ReferFormer's joint training,
            :func:`~rvoslib.data.pseudo_clip.make_pseudo_clip`).
        augmenter: Makes the copies of a pseudo clip (None: ReferFormer's settings).
        transform: A clip transform on the numpy sample (None keeps the original size).
        on_error: ``"raise"`` or ``"skip"`` (warn and return None) for unreadable images.

    Raises:
        FileNotFoundError: a missing root, image folder or annotation file (the path and the
            expected layout are named).
        ValueError: an unknown dataset, split, ``split_by`` or ``annotations``, a
            ``pseudo_clip_frames`` < 1, a refs pickle that names a class or function, a ref
            naming an image or annotation absent from ``instances.json``, an image file name
            that is not a plain file name, or a split without expressions.

    Example:
        >>> dataset = RefCOCODataset("data/coco", "refcoco", "val")  # doctest: +SKIP
        >>> dataset[0]["frames"].shape  # doctest: +SKIP
        torch.Size([1, 3, 427, 640])
    """

    def __init__(
        self,
        root: str | os.PathLike,
        dataset: str = "refcoco",
        split: str = "train",
        split_by: str | None = None,
        annotations: str = "auto",
        pseudo_clip_frames: int = 1,
        augmenter: PseudoClipAugmenter | None = None,
        transform: Transform | None = None,
        on_error: str = "raise",
    ) -> None:
        super().__init__(on_error)
        if dataset not in REFCOCO_DATASETS:
            raise ValueError(f"dataset must be one of {list(REFCOCO_DATASETS)}, got {dataset!r}")
        if split not in REFCOCO_SPLITS:
            raise ValueError(f"split must be one of {REFCOCO_SPLITS}, got {split!r}")
        split_by = split_by or REFCOCO_DATASETS[dataset][0]
        if split_by not in REFCOCO_DATASETS[dataset]:
            raise ValueError(
                f"split_by of {dataset} must be one of {REFCOCO_DATASETS[dataset]}, got "
                f"{split_by!r}"
            )
        if annotations not in ("auto", "refer", "referformer"):
            raise ValueError(
                f"annotations must be 'auto', 'refer' or 'referformer', got {annotations!r}"
            )
        if not isinstance(pseudo_clip_frames, int) or pseudo_clip_frames < 1:
            raise ValueError(
                f"pseudo_clip_frames must be a positive int, got {pseudo_clip_frames!r}"
            )
        self.root, self.dataset, self.split, self.split_by = Path(root), dataset, split, split_by
        self.pseudo_clip_frames = pseudo_clip_frames
        self.augmenter = augmenter or (PseudoClipAugmenter() if pseudo_clip_frames > 1 else None)
        self.transform = transform
        if not self.root.is_dir():
            raise FileNotFoundError(f"RefCOCO root not found: {self.root}\n{REFCOCO_LAYOUT}")
        self.image_dir = self._image_dir()
        refs_file = self.root / dataset / f"refs({split_by}).p"
        converted = self.root / dataset / f"instances_{dataset}_{split}.json"
        if annotations == "auto":
            if not refs_file.is_file() and not converted.is_file():
                raise FileNotFoundError(
                    f"no {dataset} annotations: neither {refs_file} nor {converted} exists\n"
                    f"{REFCOCO_LAYOUT}"
                )
            annotations = "refer" if refs_file.is_file() else "referformer"
        self.annotations = annotations
        if annotations == "refer":
            self.records = self._refer_records(refs_file)
        else:
            self.records = self._referformer_records()
        if not self.records:
            raise ValueError(f"{dataset} ({split_by}) has no expressions in split {split!r}")

    def _image_dir(self) -> Path:
        for folder in IMAGE_FOLDERS:
            if (self.root / folder).is_dir():
                return self.root / folder
        searched = [str(self.root / folder) for folder in IMAGE_FOLDERS]
        raise FileNotFoundError(f"COCO train2014 images not found in {searched}\n{REFCOCO_LAYOUT}")

    def _record(
        self, image: dict, ann: dict, ref_id: int, sent_id: int, text: str, source: Path
    ) -> RefExpRecord:
        name = check_path_component(image.get("file_name"), "image file name", source)
        return RefExpRecord(
            self.dataset,
            self.image_dir / name,
            int(image["height"]),
            int(image["width"]),
            int(image.get("original_id", image["id"])),
            int(ann.get("original_id", ann["id"])),
            ref_id,
            sent_id,
            int(ann.get("category_id", 0)),
            text.strip(),
            ann["segmentation"],
        )

    def _refer_records(self, refs_file: Path) -> list[RefExpRecord]:
        instances_file = self.root / self.dataset / "instances.json"
        refs = load_refs(refs_file)
        instances = read_coco_json(instances_file)
        images = by_id(instances["images"], "images", instances_file)
        anns = by_id(instances["annotations"], "annotations", instances_file)
        records = []
        for ref in refs:
            if not in_split(ref["split"], self.split):
                continue
            for key, table in (("image_id", images), ("ann_id", anns)):
                if ref[key] not in table:
                    raise ValueError(
                        f"{refs_file}: ref {ref['ref_id']} names {key} {ref[key]}, which "
                        f"{instances_file} does not have"
                    )
            image, ann = images[ref["image_id"]], anns[ref["ann_id"]]
            for number, sentence in enumerate(ref["sentences"]):
                sent_id = int(sentence.get("sent_id", number))
                text = sentence["sent"]
                records.append(self._record(image, ann, ref["ref_id"], sent_id, text, refs_file))
        return records

    def _referformer_records(self) -> list[RefExpRecord]:
        path = self.root / self.dataset / f"instances_{self.dataset}_{self.split}.json"
        data = read_coco_json(path)
        anns: dict[int, dict[str, Any]] = {}
        for ann in data["annotations"]:
            if not isinstance(ann, dict) or not isinstance(ann.get("image_id"), int):
                raise ValueError(f"{path}: every annotation must be a dict with an int image_id")
            anns.setdefault(ann["image_id"], ann)
        records = []
        for image in sorted(by_id(data["images"], "images", path).values(), key=lambda i: i["id"]):
            if image["id"] not in anns:
                raise ValueError(f"{path}: image {image['id']} has no annotation")
            text = image.get("caption")
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"{path}: image {image['id']} has no caption")
            records.append(self._record(image, anns[image["id"]], -1, image["id"], text, path))
        return records

    def load_sample(self, index: int) -> dict[str, Any]:
        """The item before tensor conversion: numpy frames ``(T, H, W, 3)`` uint8 and masks."""
        record = self.records[index]
        image = read_frame(record.image_path)
        if image.shape[:2] != (record.height, record.width):
            raise ValueError(
                f"{record.image_path} is {image.shape[0]}x{image.shape[1]} but its annotation "
                f"says {record.height}x{record.width}"
            )
        mask = decode_segmentation(record.segmentation, record.height, record.width)
        frames, masks, order = make_pseudo_clip(
            image, mask, self.pseudo_clip_frames, self.augmenter
        )
        stem = record.video_id
        sample = {
            "frames": frames,
            "masks": masks,
            "valid": np.ones(len(frames), bool),
            "expression": record.expression,
            "video_id": stem,
            "frame_ids": [stem if k == 0 else f"{stem}_copy{k}" for k in order],
            "obj_id": record.ann_id,
            "exp_id": str(record.sent_id),
            "ref_id": record.ref_id,
            "dataset": record.dataset,
            "orig_size": (record.height, record.width),
            "unpadded_size": (record.height, record.width),
        }
        if self.transform is not None:
            sample = self.transform(sample)
        return sample

    def describe_item(self, index: int) -> str:
        record = self.records[index]
        return f"{record.dataset} sentence {record.sent_id} (image {record.image_path.name})"
