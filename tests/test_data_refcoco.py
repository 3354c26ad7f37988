"""RefCOCO/+/g as clips, pseudo clips, the RefCOCO dataset kinds and ReferFormer's recipes, on a
2-image refer layout written by the test."""

from __future__ import annotations

import json
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as coco_mask

from rvoslib.data import (
    DataConfig,
    PseudoClipAugmenter,
    RefCOCODataset,
    build_datasets,
    build_eval_dataset,
    make_pseudo_clip,
)
from rvoslib.data.io import write_frame, write_mask
from rvoslib.data.joint import coco_root_of, concat, refcoco_sets
from rvoslib.data.refer import decode_segmentation, in_split, load_refs
from rvoslib.training.config import TrainerConfig
from rvoslib.training.optim import StepDrops, build_scheduler

SIZES = {1: (40, 48), 2: (32, 40)}  # image id -> (H, W)


def _polygon(x0: float, y0: float, x1: float, y1: float) -> list[float]:
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def _block() -> np.ndarray:
    block = np.zeros(SIZES[2], np.uint8)
    block[5:20, 10:30] = 1
    return block


def _instances() -> dict:
    h2, w2 = SIZES[2]
    counts = coco_mask.encode(np.asfortranarray(_block()))["counts"].decode()
    return {
        "images": [
            {"id": i, "file_name": f"COCO_train2014_{i:012d}.jpg", "height": h, "width": w}
            for i, (h, w) in SIZES.items()
        ],
        "annotations": [  # two polygons (one object), a polygon, a compressed RLE
            {"id": 11, "image_id": 1, "category_id": 18, "iscrowd": 0, "bbox": [2, 3, 20, 20],
             "segmentation": [_polygon(2, 3, 12, 13), _polygon(15, 18, 22, 23)]},
            {"id": 12, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [25, 5, 15, 30],
             "segmentation": [_polygon(25, 5, 40, 35)]},
            {"id": 21, "image_id": 2, "category_id": 3, "iscrowd": 0, "bbox": [10, 5, 20, 15],
             "segmentation": {"size": [h2, w2], "counts": counts}},
        ],
        "categories": [{"id": 1, "name": "person"}],
    }  # fmt: skip


def _ref(ref_id: int, ann_id: int, image_id: int, split: str, *texts: str) -> dict:
    sentences = [
        {"sent_id": 100 * ref_id + k, "sent": t, "raw": t, "tokens": t.split()}
        for k, t in enumerate(texts)
    ]
    return {"ref_id": ref_id, "ann_id": ann_id, "image_id": image_id, "split": split,
            "category_id": 1, "file_name": "x.jpg", "sentences": sentences,
            "sent_ids": [s["sent_id"] for s in sentences]}  # fmt: skip


REFS = [
    _ref(1, 11, 1, "train", "dog on the left", "small dog"),
    _ref(2, 21, 2, "train", "the red block"),
    _ref(3, 12, 1, "val", "person right"),
    _ref(4, 12, 1, "testA", "tall person"),
]
REFS_FILES = {"refcoco": "refs(unc).p", "refcoco+": "refs(unc).p", "refcocog": "refs(umd).p"}


def write_refer(root: Path, datasets: tuple[str, ...] = ("refcoco",)) -> Path:
    """A refer layout: two jpgs in train2014/, a refs pickle of builtins and instances.json."""
    rng = np.random.default_rng(0)
    for image_id, (h, w) in SIZES.items():
        image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        write_frame(root / "train2014" / f"COCO_train2014_{image_id:012d}.jpg", image)
    for name in datasets:
        (root / name).mkdir(parents=True)
        (root / name / REFS_FILES[name]).write_bytes(pickle.dumps(REFS, protocol=2))
        (root / name / "instances.json").write_text(json.dumps(_instances()))
    return root


@pytest.fixture
def refer(tmp_path: Path) -> Path:
    return write_refer(tmp_path / "coco")


def _expected_mask(ann_id: int) -> np.ndarray:
    if ann_id == 21:  # the compressed RLE
        return _block().astype(np.float32)
    ann = next(a for a in _instances()["annotations"] if a["id"] == ann_id)
    h, w = SIZES[ann["image_id"]]
    with warnings.catch_warnings():  # pycocotools 2.0 on numpy 2
        warnings.simplefilter("ignore", DeprecationWarning)
        decoded = coco_mask.decode(coco_mask.frPyObjects(ann["segmentation"], h, w))
    return (decoded.any(axis=2) if decoded.ndim == 3 else decoded).astype(np.float32)


def test_loader_counts_masks_and_text(refer: Path) -> None:
    dataset = RefCOCODataset(refer, "refcoco", "train")
    assert len(dataset) == 3 and dataset.annotations == "refer"
    expected = [(11, "dog on the left"), (11, "small dog"), (21, "the red block")]
    for index, (ann_id, text) in enumerate(expected):
        item = dataset[index]
        assert item["expression"] == text and item["obj_id"] == ann_id
        assert item["frames"].shape == (1, 3, *SIZES[1 if ann_id == 11 else 2])
        assert torch.equal(item["masks"][0], torch.from_numpy(_expected_mask(ann_id)))
        assert item["valid"].tolist() == [True] and item["dataset"] == "refcoco"
    assert dataset[0]["video_id"] == "COCO_train2014_000000000001"
    assert dataset[1]["exp_id"] == "101" and dataset[1]["ref_id"] == 1
    assert dataset[0]["masks"][0].sum() > 0 and "sentence 100" in dataset.describe_item(0)


def test_splits_as_the_refer_api(refer: Path) -> None:
    assert [len(RefCOCODataset(refer, split=s)) for s in ("val", "testA", "test")] == [1, 1, 1]
    assert in_split("testAB", "testB") and in_split("testA", "test")
    assert not in_split("train", "val") and in_split("val", "val")
    with pytest.raises(ValueError, match=r"refcoco \(unc\) has no expressions in split 'testB'"):
        RefCOCODataset(refer, split="testB")


def test_decode_segmentation_polygons_and_rle() -> None:
    polygons = [_polygon(0, 0, 4, 4), _polygon(6, 6, 8, 8)]
    mask = decode_segmentation(polygons, 10, 10)
    assert mask.dtype == np.uint8 and mask.shape == (10, 10)
    assert mask[1, 1] == 1 and mask[7, 7] == 1 and mask[5, 5] == 0
    rle = _instances()["annotations"][2]["segmentation"]
    assert np.array_equal(decode_segmentation(rle, *SIZES[2]), _expected_mask(21))


def _referformer_convert(root: Path, name: str, split: str) -> None:
    """The per-split COCO json of ReferFormer's conversion: one image entry per sentence."""
    instances = _instances()
    images = {i["id"]: i for i in instances["images"]}
    anns = {a["id"]: a for a in instances["annotations"]}
    out = {"images": [], "annotations": [], "categories": instances["categories"]}
    for ref in (r for r in REFS if r["split"] == split):
        for sentence in ref["sentences"]:
            number = len(out["images"]) + 1
            image, ann = images[ref["image_id"]], anns[ref["ann_id"]]
            out["images"].append({**image, "id": number, "original_id": image["id"],
                                  "caption": sentence["sent"], "dataset_name": name})  # fmt: skip
            out["annotations"].append({**ann, "id": number, "image_id": number,
                                       "original_id": ann["id"]})  # fmt: skip
    (root / name / f"instances_{name}_{split}.json").write_text(json.dumps(out))


def test_referformer_converted_layout_gives_the_same_items(refer: Path) -> None:
    raw = RefCOCODataset(refer, split="train")
    _referformer_convert(refer, "refcoco", "train")
    assert RefCOCODataset(refer, split="train").annotations == "refer"  # refs first
    converted = RefCOCODataset(refer, split="train", annotations="referformer")
    (refer / "refcoco" / "refs(unc).p").unlink()
    assert RefCOCODataset(refer, split="train").annotations == "referformer"
    assert len(converted) == len(raw)
    for index in range(len(raw)):
        a, b = raw[index], converted[index]
        assert (a["expression"], a["obj_id"], a["video_id"]) == (
            b["expression"],
            b["obj_id"],
            b["video_id"],
        )
        assert torch.equal(a["masks"], b["masks"]) and torch.equal(a["frames"], b["frames"])


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_refs_pickle_with_a_payload_is_refused(refer: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    refs_file = refer / "refcoco" / "refs(unc).p"
    refs_file.write_bytes(pickle.dumps([{"ref_id": _Payload(marker)}]))
    pickle.loads(pickle.dumps(_Payload(tmp_path / "control")))  # the payload does run unguarded
    assert (tmp_path / "control").exists()
    with pytest.raises(ValueError, match=r"refs\(unc\)\.p: not a plain refer refs pickle") as info:
        RefCOCODataset(refer)
    assert "pathlib.Path.touch" in str(info.value) or "pathlib" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"a": 1}, "expected a list of refs, got dict"),
        (["x"], "ref 0 must be a dict, got str"),
        ([{"ref_id": 1, "ann_id": "2", "image_id": 1}], "'ann_id' must be an int, got '2'"),
        ([{"ref_id": 1, "ann_id": 2, "image_id": 1}], "'split' must be a string"),
        ([{"ref_id": 1, "ann_id": 2, "image_id": 1, "split": "val"}], "'sentences' must be"),
        ([{**REFS[0], "sentences": [{"x": 1}]}], "a dict with a 'sent' string"),
        ([{**REFS[0], "sentences": [{"sent": " ", "sent_id": 7}]}], "sentence 7 is empty"),
    ],
)
def test_load_refs_checks_the_content(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps(content))
    with pytest.raises(ValueError, match=message) as info:
        load_refs(path)
    assert str(path) in str(info.value)


def test_load_refs_corrupt_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps(REFS)[:20])
    with pytest.raises(ValueError, match=r"cannot read the refs pickle"):
        load_refs(path)
    with pytest.raises(FileNotFoundError, match=r"(?s)refer refs file not found: .*nope\.p"):
        load_refs(tmp_path / "nope.p")
    assert load_refs(write_refer(tmp_path / "ok") / "refcoco" / "refs(unc).p") == REFS


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"(?s)RefCOCO root not found: .*absent"):
        RefCOCODataset(tmp_path / "absent")
    (tmp_path / "coco").mkdir()
    with pytest.raises(FileNotFoundError, match=r"(?s)train2014 images not found .*refer layout"):
        RefCOCODataset(tmp_path / "coco")
    root = write_refer(tmp_path / "c2")
    message = r"(?s)no refcoco\+ annotations: neither .*refs\(unc"
    with pytest.raises(FileNotFoundError, match=message):
        RefCOCODataset(root, "refcoco+")
    (root / "refcoco" / "instances.json").unlink()
    message = r"(?s)annotation file not found: .*instances\.json"
    with pytest.raises(FileNotFoundError, match=message):
        RefCOCODataset(root)
    with pytest.raises(FileNotFoundError, match=r"instances_refcoco_val\.json"):
        RefCOCODataset(root, split="val", annotations="referformer")


def test_names_from_annotations_are_confined(refer: Path) -> None:
    instances = _instances()
    instances["images"][0]["file_name"] = "../../etc/passwd"
    (refer / "refcoco" / "instances.json").write_text(json.dumps(instances))
    with pytest.raises(ValueError, match=r"image file name '\.\./\.\./etc/passwd' is not a plain"):
        RefCOCODataset(refer)


def test_annotation_errors(refer: Path) -> None:
    refs_file = refer / "refcoco" / "refs(unc).p"
    refs_file.write_bytes(pickle.dumps([{**REFS[0], "ann_id": 99}]))
    with pytest.raises(ValueError, match=r"ref 1 names ann_id 99, which .*instances\.json"):
        RefCOCODataset(refer)
    refs_file.write_bytes(pickle.dumps(REFS))
    instances = _instances()
    instances["images"][0]["height"] = 41
    (refer / "refcoco" / "instances.json").write_text(json.dumps(instances))
    with pytest.raises(ValueError, match=r"000000000001\.jpg is 40x48 but its annotation says 41"):
        RefCOCODataset(refer)[0]
    (refer / "refcoco" / "instances.json").write_text("{")
    with pytest.raises(ValueError, match=r"cannot parse .*instances\.json as JSON"):
        RefCOCODataset(refer)
    (refer / "refcoco" / "instances.json").write_text(
        '{"images": [{"id": "1"}], "annotations": []}'
    )
    with pytest.raises(
        ValueError, match=r"every entry of 'images' must be a dict with an int 'id'"
    ):
        RefCOCODataset(refer)
    (refer / "refcoco" / "instances.json").write_text('{"images": []}')
    with pytest.raises(ValueError, match=r"must hold COCO 'images' and 'annotations' lists"):
        RefCOCODataset(refer)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dataset": "refclef"}, "dataset must be one of"),
        ({"split": "testD"}, "split must be one of"),
        ({"dataset": "refcoco+", "split_by": "google"}, r"split_by of refcoco\+ must be one of"),
        ({"annotations": "coco"}, "annotations must be 'auto', 'refer' or 'referformer'"),
        ({"pseudo_clip_frames": 0}, "pseudo_clip_frames must be a positive int, got 0"),
    ],
)
def test_argument_errors(refer: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RefCOCODataset(refer, **kwargs)


def test_pseudo_clip_items(refer: Path) -> None:
    dataset = RefCOCODataset(refer, pseudo_clip_frames=3)
    torch.manual_seed(0)
    item = dataset[2]
    assert item["frames"].shape == (3, 3, *SIZES[2]) and item["valid"].all()
    stem = "COCO_train2014_000000000002"
    assert sorted(item["frame_ids"]) == [stem, f"{stem}_copy1", f"{stem}_copy2"]
    original = item["frame_ids"].index(stem)
    assert torch.equal(item["masks"][original], torch.from_numpy(_expected_mask(21)))
    torch.manual_seed(0)
    again = dataset[2]
    assert torch.equal(again["frames"], item["frames"])
    assert torch.equal(again["masks"], item["masks"])


def test_make_pseudo_clip_moves_mask_with_image() -> None:
    image = np.zeros((40, 60, 3), np.uint8)
    image[10:20, 20:30] = 200
    mask = (image[..., 0] > 0).astype(np.uint8)
    shift_only = PseudoClipAugmenter(
        perspective=0.0, rotation=(0, 0), translate=(0.1, 0.1), brightness=(0, 0),
        hue_saturation=(0, 0), motion_blur_p=0.0,
    )  # fmt: skip
    frames, masks, order = make_pseudo_clip(image, mask, 2, shift_only, shuffle=False)
    assert order == [0, 1] and np.array_equal(frames[0], image)
    assert np.array_equal(masks[1], np.roll(np.roll(mask, 4, axis=0), 6, axis=1))
    assert np.array_equal(frames[1][..., 0] > 100, masks[1] > 0)
    torch.manual_seed(1)
    frames, masks, order = make_pseudo_clip(image, mask, 4)
    assert sorted(order) == [0, 1, 2, 3] and frames.shape == (4, 40, 60, 3)
    assert masks.shape == (4, 40, 60) and set(np.unique(masks)) <= {0, 1}
    assert "PseudoClipAugmenter(perspective=0.08" in repr(PseudoClipAugmenter())


def test_pseudo_clip_errors() -> None:
    image, mask = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)
    with pytest.raises(ValueError, match="num_frames must be a positive int, got 0"):
        make_pseudo_clip(image, mask, 0)
    with pytest.raises(ValueError, match=r"image must be an \(H, W, 3\) uint8 array, got \(8, 8\)"):
        PseudoClipAugmenter()(mask, mask)
    with pytest.raises(ValueError, match=r"mask must be an \(H, W\) = \(8, 8\) array, got \(4,"):
        PseudoClipAugmenter()(image, mask[:4])
    for kwargs, message in [
        ({"perspective": -1}, "perspective must be >= 0"),
        ({"motion_blur_p": 2}, r"motion_blur_p must be in \[0, 1\]"),
        ({"motion_blur_sizes": (1,)}, "motion_blur_sizes must be kernel sizes >= 3"),
        ({"rotation": (5, -5)}, r"rotation must be a \(low, high\) pair"),
    ]:
        with pytest.raises(ValueError, match=message):
            PseudoClipAugmenter(**kwargs)


def test_motion_blur_blurs_the_image_only() -> None:
    image = np.zeros((16, 16, 3), np.uint8)
    image[:, 8:] = 255
    mask = (image[..., 0] > 0).astype(np.uint8)
    blur_only = PseudoClipAugmenter(
        perspective=0.0, rotation=(0, 0), translate=(0, 0), brightness=(0, 0),
        hue_saturation=(0, 0), motion_blur_p=1.0, motion_blur_sizes=(9,),
    )  # fmt: skip
    torch.manual_seed(3)
    blurred, same_mask = blur_only(image, mask)
    assert np.array_equal(same_mask, mask) and not np.array_equal(blurred, image)
    assert blurred.min() >= 0 and 0 < blurred[8, 6:10, 0].mean() < 255


def test_refcoco_kinds_build(tmp_path: Path) -> None:
    root = write_refer(tmp_path / "coco", ("refcoco", "refcoco+", "refcocog"))
    config = DataConfig(dataset="refcoco-all", root=str(root), size=32, num_frames=1)
    train, val = build_datasets(config)
    assert len(train) == 9 and len(val) == 3
    assert train[0]["frames"].shape == (1, 3, 32, 32)
    single = DataConfig(dataset="refcocog", root=str(root), size=None, val_split="test")
    evaluation = build_eval_dataset(single)
    assert len(evaluation) == 1 and evaluation[0]["frames"].shape[-2:] == SIZES[1]
    assert len(refcoco_sets(root, [("refcoco", "unc")], "val")) == 1
    with pytest.raises(ValueError, match="pairs must name at least one"):
        refcoco_sets(root, [], "val")
    assert concat([val]) is val
    with pytest.raises(ValueError, match=r"has the task\(s\) rvos, got task 'vos'"):
        build_datasets(DataConfig(dataset="refcoco", root=str(root), task="vos"))
    with pytest.raises(ValueError, match=r"root is required for dataset 'refcoco\+'"):
        build_datasets(DataConfig(dataset="refcoco+"))


def write_ytvos(root: Path) -> None:
    """Two Ref-YouTube-VOS training videos of 4 frames, object 1, one expression each (the
    first is held out)."""
    labels = np.zeros((24, 32), np.uint8)
    labels[4:12, 6:20] = 1
    for video in ("v0", "v1"):
        for t in range(4):
            frame = np.full((24, 32, 3), 60 * t, np.uint8)
            write_frame(root / "train/JPEGImages" / video / f"{t:05d}.jpg", frame)
            write_mask(root / "train/Annotations" / video / f"{t:05d}.png", labels)
    video = {"expressions": {"0": {"exp": "a box", "obj_id": "1"}},
             "frames": [f"{t:05d}" for t in range(4)]}  # fmt: skip
    meta = {"videos": {"v0": video, "v1": video}}
    (root / "meta_expressions/train").mkdir(parents=True)
    (root / "meta_expressions/train/meta_expressions.json").write_text(json.dumps(meta))


def test_joint_ytvos_refcoco(tmp_path: Path) -> None:
    write_refer(tmp_path / "data" / "coco", ("refcoco", "refcoco+", "refcocog"))
    ytvos = tmp_path / "data" / "ref-youtube-vos"
    write_ytvos(ytvos)
    write_ytvos(tmp_path / "other" / "ytvos")
    config = DataConfig(dataset="ytvos+refcoco", root=str(ytvos), size=32, num_frames=2)
    torch.manual_seed(0)
    train, val = build_datasets(config)
    assert len(train) == 9 + 1 and len(val) == 1
    assert train[0]["frames"].shape == (2, 3, 32, 32) and train[0]["dataset"] == "refcoco"
    assert train[9]["video_id"] == "v1" and train[9]["frames"].shape[0] == 2
    other = DataConfig(
        dataset="ytvos+refcoco", root=str(tmp_path / "other/ytvos"), size=32, num_frames=2
    )
    with pytest.raises(FileNotFoundError, match=r"RefCOCO folder not found: .*other/coco .*--coco"):
        build_datasets(other)
    other.coco_root = str(tmp_path / "data" / "coco")
    assert coco_root_of(other) == tmp_path / "data" / "coco"
    assert len(build_datasets(other)[0]) == 10
    with pytest.raises(ValueError, match=r"root is required for dataset 'ytvos\+refcoco'"):
        coco_root_of(DataConfig(dataset="ytvos+refcoco"))
    with pytest.raises(ValueError, match=r"coco_root is the COCO folder of .*'refcoco-all'"):
        DataConfig(dataset="refcoco-all", coco_root=str(tmp_path))


def test_step_drops_schedule(tmp_path: Path) -> None:
    schedule = StepDrops(steps_per_epoch=4, drops=[2, 1], factor=0.5)
    assert [schedule(s) for s in (0, 3, 4, 8, 100)] == [1.0, 1.0, 0.5, 0.25, 0.25]
    layer = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=1.0)
    scheduler = build_scheduler(
        optimizer, steps_per_epoch=2, t_0=1, t_mult=1, eta_min=0.0, lr_drops=[1]
    )
    rates = []
    for _ in range(4):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([1.0, 1.0, 0.1, 0.1])
    torch.save(scheduler.state_dict(), tmp_path / "s.pt")  # a checkpoint loads it safely
    assert torch.load(tmp_path / "s.pt", weights_only=True)["lr_lambdas"][0]["drops"] == [1]
    with pytest.raises(ValueError, match=r"lr_drops must be epochs >= 1, got \[0\]"):
        TrainerConfig(lr_drops=[0])
    with pytest.raises(ValueError, match="lr_drop_factor"):
        TrainerConfig(lr_drop_factor=0.0)


def test_recipes_build(tmp_path: Path) -> None:
    from rvoslib.recipes import list_recipes, load_recipe, model_config

    assert {"referformer_pretrain_refcoco", "referformer_joint_ytvos_refcoco"} <= set(
        list_recipes()
    )
    pretrain = load_recipe("referformer_pretrain_refcoco")
    assert (pretrain.data.dataset, pretrain.data.num_frames) == ("refcoco-all", 1)
    assert (pretrain.trainer.epochs, pretrain.trainer.lr_drops, pretrain.trainer.lr) == (
        12,
        [8, 10],
        1e-4,
    )
    assert model_config(pretrain.model).text_encoder["freeze"] is False
    joint = load_recipe("referformer_joint_ytvos_refcoco")
    assert (joint.data.dataset, joint.data.num_frames, joint.trainer.batch_size) == (
        "ytvos+refcoco",
        5,
        1,
    )
    assert model_config(joint.model).text_encoder["freeze"] is True


TINY_RUN = [
    "--preset", "referformer-tiny", "--no-pretrained", "--size", "32", "--batch-size", "2",
    "--epochs", "1", "--max-steps", "1", "--device", "cpu", "--no-progress", "--overlays", "0",
    "--no-tensorboard", "--num-workers", "0",
]  # fmt: skip


@pytest.mark.slow
def test_pretrain_recipe_runs_a_step(tmp_path: Path) -> None:
    from rvoslib.cli import main

    root = write_refer(tmp_path / "coco", ("refcoco", "refcoco+", "refcocog"))
    out = tmp_path / "run"
    argv = ["train", "--config", "referformer_pretrain_refcoco", "--root", str(root)]
    assert main([*argv, *TINY_RUN, "--out", str(out)]) == 0
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert len(history) == 1 and (out / "last").is_dir()


@pytest.mark.slow
def test_joint_recipe_runs_a_step(tmp_path: Path) -> None:
    from rvoslib.cli import main

    coco = write_refer(tmp_path / "data" / "coco", ("refcoco", "refcoco+", "refcocog"))
    ytvos = tmp_path / "ytvos"
    write_ytvos(ytvos)
    argv = ["train", "--config", "referformer_joint_ytvos_refcoco", "--root", str(ytvos)]
    argv += ["--coco-root", str(coco), "--num-frames", "2"]
    assert main([*argv, *TINY_RUN, "--out", str(tmp_path / "run")]) == 0
    shutil.rmtree(tmp_path / "run")
