"""Build, from davis-mini, the Ref-DAVIS17 layouts that ReferFormer users have.

* :func:`build_raw_refdavis`: ReferFormer's README layout before conversion,
  ``data/ref-davis/{DAVIS, davis_text_annotations}``: the DAVIS unsupervised download
  (``Annotations_unsupervised`` only) and the MPI text files (``annot2`` in latin-1, the
  misspelt ``dog-scale`` of the real files).
* :func:`referformer_convert`: what ``tools/data/convert_davis_to_ytvos.py`` leaves behind,
  written here from its documented behaviour (not its code): the video folders *moved* to
  ``{train,valid}/{JPEGImages,Annotations}``, ``meta_expressions/<split>/meta_expressions.json``
  (annot1 read as UTF-8, annot2 as latin-1, three names fixed, each file's expressions sorted by
  the object id string, then the four files paired object by object: ids 4i .. 4i+3) and
  ``<split>/meta.json`` from ``DAVIS/davis_semantics.json``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from _davis_mini import toy_video

from rvoslib.data.io import write_frame, write_mask

KINDS = ("annot1", "annot1_full_video", "annot2", "annot2_full_video")
BLACKSWAN_FRAMES = 6

# (video as written in the files, obj_id, expression); deliberately not sorted by object.
TEXTS = {
    "annot1": [
        ("dog-scale", 3, "the small white dog on the right"),
        ("blackswan", 1, "a black swan"),
        ("dog-scale", 1, "the black dog in front"),
        ("dog-scale", 2, "a brown dog"),
    ],
    "annot1_full_video": [
        ("blackswan", 1, "a black swan swimming  in a pond"),
        ("dog-scale", 1, "the black dog walking forward"),
        ("dog-scale", 2, "a brown dog sitting"),
        ("dog-scale", 3, "the white dog jumping"),
    ],
    "annot2": [
        ("blackswan", 1, "un cygne noir sur l'étang"),
        ("dog-scale", 2, "the dog near the café"),
        ("dog-scale", 1, "dog number one"),
        ("dog-scale", 3, "the third dog, déjà vu"),
    ],
    "annot2_full_video": [
        ("blackswan", 1, "a naïve swan gliding"),
        ("dog-scale", 1, "first dog"),
        ("dog-scale", 3, "third dog"),
        ("dog-scale", 2, "second dog"),
    ],
}
FIXES = {"clasic-car": "classic-car", "dog-scale": "dogs-scale", "motor-bike": "motorbike"}


def write_mpi_texts(folder: Path, texts: dict = TEXTS) -> None:
    """The four files, one ``<video> <obj_id> "<expression>"`` per line; annot2 in latin-1."""
    folder.mkdir(parents=True, exist_ok=True)
    for kind, lines in texts.items():
        text = "".join(f'{video} {obj_id} "{expression}"\n' for video, obj_id, expression in lines)
        encoding = "latin-1" if kind.startswith("annot2") else "utf-8"
        (folder / f"Davis17_{kind}.txt").write_bytes(text.encode(encoding))


def build_raw_refdavis(davis_mini: Path, target: Path) -> Path:
    """``target/ref-davis`` as ReferFormer's README has it before conversion; returns it."""
    data_root = target / "ref-davis"
    davis = data_root / "DAVIS"
    for kind, suffix in (("JPEGImages", ".jpg"), ("Annotations_unsupervised", ".png")):
        folder = davis / kind / "480p" / "blackswan"
        folder.mkdir(parents=True)
        source = "Annotations" if kind.startswith("Annotations") else kind
        for index in range(BLACKSWAN_FRAMES):
            name = f"{index:05d}{suffix}"
            shutil.copy(davis_mini / source / "480p" / "blackswan" / name, folder / name)
    frames, labels = toy_video(5, 48, 64, 3, seed=3)
    for t, (frame, label) in enumerate(zip(frames, labels)):
        write_frame(davis / "JPEGImages/480p/dogs-scale" / f"{t:05d}.jpg", frame)
        write_mask(davis / "Annotations_unsupervised/480p/dogs-scale" / f"{t:05d}.png", label)
    (davis / "ImageSets/2017").mkdir(parents=True)
    (davis / "ImageSets/2017/val.txt").write_text("blackswan\ndogs-scale\n")
    (davis / "ImageSets/2017/train.txt").write_text("")
    semantics = {"blackswan": {"1": "swan"}, "dogs-scale": {"1": "dog", "2": "dog", "3": "dog"}}
    (davis / "davis_semantics.json").write_text(json.dumps(semantics))
    write_mpi_texts(data_root / "davis_text_annotations")
    return data_root


def dogs_scale_labels() -> np.ndarray:
    """The (T, H, W) object ids of the toy ``dogs-scale`` video."""
    return toy_video(5, 48, 64, 3, seed=3)[1]


def referformer_meta(data_root: Path) -> dict:
    """The ``{"videos": ...}`` expressions ReferFormer's conversion writes for every video."""
    per_kind = {}
    for kind in KINDS:
        encoding = "latin-1" if kind.startswith("annot2") else "utf-8"
        lines = (data_root / "davis_text_annotations" / f"Davis17_{kind}.txt").read_text(
            encoding=encoding
        )
        videos: dict[str, list[dict]] = {}
        for line in lines.splitlines():
            words = line.strip().split()
            video = FIXES.get(words[0], words[0])
            videos.setdefault(video, []).append(
                {"exp": " ".join(words[2:])[1:-1], "obj_id": words[1]}
            )
        per_kind[kind] = {v: sorted(e, key=lambda e: e["obj_id"]) for v, e in videos.items()}
    meta = {}
    for video in per_kind["annot1"]:
        expressions = {}
        for i, group in enumerate(zip(*(per_kind[kind][video] for kind in KINDS))):
            for k, entry in enumerate(group):
                expressions[str(4 * i + k)] = entry
        meta[video] = {"expressions": expressions}
    return meta


def referformer_convert(data_root: Path) -> None:
    """Turn :func:`build_raw_refdavis`'s folder into what the conversion leaves behind."""
    davis = data_root / "DAVIS"
    meta = referformer_meta(data_root)
    semantics = json.loads((davis / "davis_semantics.json").read_text())
    for split, list_name in (("train", "train.txt"), ("valid", "val.txt")):
        videos = (davis / "ImageSets/2017" / list_name).read_text().split()
        for kind, source in (
            ("JPEGImages", "JPEGImages"),
            ("Annotations", "Annotations_unsupervised"),
        ):
            (data_root / split / kind).mkdir(parents=True)
            for video in videos:  # mv, as the script does
                shutil.move(davis / source / "480p" / video, data_root / split / kind / video)
        split_meta = {}
        for video in videos:
            frames = sorted(p.stem for p in (data_root / split / "JPEGImages" / video).iterdir())
            split_meta[video] = {**meta[video], "frames": frames}
        (data_root / "meta_expressions" / split).mkdir(parents=True)
        (data_root / "meta_expressions" / split / "meta_expressions.json").write_text(
            json.dumps({"videos": split_meta})
        )
        objects = {
            video: {"objects": {k: {"category": c} for k, c in semantics[video].items()}}
            for video in videos
        }
        (data_root / split / "meta.json").write_text(json.dumps({"videos": objects}))
