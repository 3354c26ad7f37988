"""The Ref-DAVIS17 layouts ReferFormer users have, built from davis-mini, read by the loaders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from _davis_mini import require_davis_mini
from _refdavis_layouts import (
    build_raw_refdavis,
    dogs_scale_labels,
    referformer_convert,
    referformer_meta,
    write_mpi_texts,
)
from PIL import Image

from rvoslib.data import RefDAVISDataset, RefYouTubeVOSDataset
from rvoslib.data.expressions import (
    find_refdavis_text,
    load_refdavis_text,
    parse_refdavis_text,
    read_text_file,
)

RENAMED = r"renamed misspelt videos as ReferFormer does: dog-scale -> dogs-scale"


@pytest.fixture
def raw_root(tmp_path: Path) -> Path:
    return build_raw_refdavis(require_davis_mini(), tmp_path)


def _records(records) -> list[tuple[str, str, int, str]]:
    return sorted((r.video_id, r.exp_id, r.obj_id, r.expression) for r in records)


def _meta_records(meta: dict) -> list[tuple[str, str, int, str]]:
    return sorted(
        (video, exp_id, int(entry["obj_id"]), entry["exp"])
        for video, content in meta.items()
        for exp_id, entry in content["expressions"].items()
    )


def test_converted_layout_reads_valid_ground_truth(raw_root: Path) -> None:
    referformer_convert(raw_root)
    assert not (raw_root / "DAVIS/JPEGImages/480p/blackswan").exists()  # moved by the script
    dataset = RefYouTubeVOSDataset(raw_root, "valid")
    assert dataset.has_masks and len(dataset) == 16  # 4 objects x 4 expressions
    meta = json.loads((raw_root / "meta_expressions/valid/meta_expressions.json").read_text())
    assert _records(dataset.records) == _meta_records(meta["videos"])
    labels = dogs_scale_labels()
    for index, record in enumerate(dataset.records):
        if record.video_id == "dogs-scale" and record.exp_id in ("6", "9"):  # objects 2 and 3
            item = dataset[index]
            assert item["valid"].all() and item["obj_id"] == record.obj_id
            np.testing.assert_array_equal(item["masks"].numpy(), labels == record.obj_id)
    swan = next(i for i, r in enumerate(dataset.records) if r.video_id == "blackswan")
    truth = np.asarray(Image.open(raw_root / "valid/Annotations/blackswan/00003.png")) == 1
    item = dataset[swan]
    assert item["masks"][3].bool().numpy().tolist() == truth.tolist() and truth.any()


def test_converted_layout_moved_frames_hint(raw_root: Path) -> None:
    referformer_convert(raw_root)
    with (
        pytest.warns(UserWarning, match=RENAMED),
        pytest.raises(FileNotFoundError, match=r"moved by ReferFormer's convert_davis_to_ytvos.py"),
    ):
        RefDAVISDataset(raw_root / "DAVIS")


def test_raw_davis_and_mpi_texts(raw_root: Path, tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match=RENAMED + r" \(Davis17_annot1.txt, "):
        dataset = RefDAVISDataset(raw_root / "DAVIS")  # texts found next to the root
    assert dataset.annotations == "Annotations_unsupervised"
    assert dataset.text.renamed == {"dog-scale": "dogs-scale"}
    assert dataset.text.encodings == {
        "Davis17_annot1.txt": "utf-8-sig",
        "Davis17_annot1_full_video.txt": "utf-8-sig",
        "Davis17_annot2.txt": "latin-1",
        "Davis17_annot2_full_video.txt": "latin-1",
    }
    assert dataset.text.files["annot2"] == raw_root / "davis_text_annotations/Davis17_annot2.txt"
    # Equal to what ReferFormer's conversion writes: ids 4i..4i+3 per object, texts decoded.
    assert _records(dataset.records) == _meta_records(referformer_meta(raw_root))
    by_key = {(r.video_id, r.exp_id): r for r in dataset.records}
    assert by_key[("blackswan", "1")].expression == "a black swan swimming in a pond"
    assert by_key[("blackswan", "2")].expression == "un cygne noir sur l'étang"
    assert by_key[("dogs-scale", "6")].obj_id == 2  # object 2's annot2 expression
    assert by_key[("dogs-scale", "6")].expression == "the dog near the café"
    index = dataset.records.index(by_key[("dogs-scale", "11")])
    item = dataset[index]
    np.testing.assert_array_equal(item["masks"].numpy(), dogs_scale_labels() == 3)
    assert item["frames"].shape == (5, 3, 48, 64)


def test_text_folder_search_and_annotation_choice(raw_root: Path, tmp_path: Path) -> None:
    davis = raw_root / "DAVIS"
    assert find_refdavis_text(davis) == raw_root / "davis_text_annotations"
    assert find_refdavis_text(raw_root) == raw_root / "davis_text_annotations"
    assert find_refdavis_text(tmp_path / "nowhere") is None
    with pytest.warns(UserWarning, match=RENAMED):
        one = RefDAVISDataset(davis, expressions="annot2_full_video")
    assert sorted(int(r.exp_id) % 4 for r in one.records) == [3] * 4
    with pytest.warns(UserWarning, match=RENAMED):
        folder = RefDAVISDataset(davis, expressions=raw_root / "davis_text_annotations")
    assert len(folder) == 16
    shutil.copytree(davis / "Annotations_unsupervised", davis / "Annotations")
    with pytest.warns(UserWarning, match=RENAMED):
        semi = RefDAVISDataset(davis, annotations="Annotations")
    assert semi.annotations == "Annotations"
    with pytest.raises(ValueError, match=r"annotations must be one of .* got 'Annotation'"):
        RefDAVISDataset(davis, annotations="Annotation")


def test_encoding_errors_name_the_file(raw_root: Path, tmp_path: Path) -> None:
    annot2 = raw_root / "davis_text_annotations/Davis17_annot2.txt"
    with pytest.raises(ValueError, match=r"cannot decode .*Davis17_annot2\.txt as 'utf-8': byte"):
        load_refdavis_text(raw_root / "DAVIS", encoding="utf-8")
    with pytest.raises(ValueError, match=r"cannot decode .*Davis17_annot2\.txt as 'utf-8'"):
        RefDAVISDataset(raw_root / "DAVIS", encoding="utf-8")
    with pytest.raises(ValueError, match=r"unknown encoding 'klingon' for .*Davis17_annot2"):
        read_text_file(annot2, "klingon")
    assert read_text_file(annot2)[1] == "latin-1"
    with pytest.raises(FileNotFoundError, match="text file not found"):
        read_text_file(tmp_path / "missing.txt")
    bom = tmp_path / "bom.txt"
    bom.write_bytes('\ufeffblackswan 1 "a swan"\n'.encode())
    assert read_text_file(bom) == ('blackswan 1 "a swan"\n', "utf-8-sig")
    with pytest.warns(UserWarning, match="clasic-car -> classic-car"):
        (tmp_path / "own.txt").write_text('clasic-car 1 "a car"\n')
        records = parse_refdavis_text(tmp_path / "own.txt")
    assert records[0].video_id == "classic-car"


def test_text_file_errors(raw_root: Path, tmp_path: Path) -> None:
    texts = raw_root / "davis_text_annotations"
    with pytest.raises(ValueError, match=r"kinds must be a non-empty subset of .* \['annot3'\]"):
        load_refdavis_text(texts, kinds=["annot3"])
    (texts / "Davis17_annot1_full_video.txt").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"\['Davis17_annot1_full_video.txt'\] not found; looked in"
    ):
        RefDAVISDataset(raw_root / "DAVIS")
    shutil.rmtree(texts)
    with pytest.raises(FileNotFoundError, match=r"no expressions found .*davis_text_annotations"):
        RefDAVISDataset(raw_root / "DAVIS")
    uneven = {kind: [("blackswan", 1, "a swan")] for kind in ("annot1", "annot2")}
    uneven["annot1"].append(("blackswan", 2, "another swan"))
    write_mpi_texts(tmp_path / "uneven", uneven)
    with pytest.warns(UserWarning, match=r"disagree .*\['blackswan'\]; 1 expressions"):
        text = load_refdavis_text(tmp_path / "uneven", kinds=("annot1", "annot2"))
    assert [(r.exp_id, r.obj_id) for r in text.records] == [("0", 1), ("2", 1)]
    assert [(r.exp_id, r.obj_id) for r in text.dropped] == [("4", 2)]


def test_more_layout_errors(raw_root: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"Ref-DAVIS17 expression file not found: .*x.txt"):
        parse_refdavis_text(tmp_path / "x.txt")
    referformer_convert(raw_root)
    shutil.rmtree(raw_root / "valid/Annotations/blackswan")
    with pytest.raises(FileNotFoundError, match=r"annotation folder not found: .*blackswan"):
        RefYouTubeVOSDataset(raw_root, "valid")
    shutil.rmtree(raw_root / "valid/Annotations")
    without = RefYouTubeVOSDataset(raw_root, "valid")  # no Annotations: inference only
    assert not without.has_masks and not without[0]["valid"].any()
