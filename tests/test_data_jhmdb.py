"""JHMDB-Sentences loader on a tiny tree in the released formats (see _a2d_fixtures)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

pytest.importorskip("h5py")  # _a2d_fixtures writes h5 files too

from _a2d_fixtures import (
    HEIGHT,
    JHMDB_VIDEOS,
    WIDTH,
    frame_number,
    make_jhmdb,
    puppet_mask,
)

from rvoslib.data import denormalize
from rvoslib.data.jhmdb import JHMDBSentencesDataset, read_puppet_masks


@pytest.fixture
def jhmdb(tmp_path: Path) -> Path:
    return make_jhmdb(tmp_path / "jhmdb")


def _mttr_samples(path: Path, entries: list[tuple[str, int, str]]) -> Path:
    """A samples file in MTTR's format, with its relative paths."""
    rows = []
    for video_id, number, query in entries:
        action, count, masks = JHMDB_VIDEOS[video_id]
        rows.append(
            [
                video_id,
                f"./jhmdb_sentences/Rename_Images/{action}/{video_id}/{number:05d}.png",
                f"./jhmdb_sentences/puppet_mask/{action}/{video_id}/puppet_mask.mat",
                min(count, masks),
                query,
            ]
        )
    path.write_text(json.dumps(rows))
    return path


def test_three_frames_per_expression_from_frames_with_masks(jhmdb: Path) -> None:
    dataset = JHMDBSentencesDataset(jhmdb)
    assert len(dataset) == 6
    by_video: dict[str, list[int]] = {}
    for record in dataset.records:
        by_video.setdefault(record.video_id, []).append(record.frame_number)
    assert sorted(by_video) == ["vid1", "vid2"]
    assert all(len(numbers) == len(set(numbers)) == 3 for numbers in by_video.values())
    assert all(1 <= n <= 9 for n in by_video["vid1"]) and all(1 <= n <= 6 for n in by_video["vid2"])
    again = JHMDBSentencesDataset(jhmdb, seed=42)
    assert [r.frame_number for r in again.records] == [r.frame_number for r in dataset.records]
    every = JHMDBSentencesDataset(jhmdb, frames_per_video=None)
    assert [(r.video_id, r.frame_number) for r in every.records] == [
        *(("vid1", n) for n in range(1, 10)),
        *(("vid2", n) for n in range(1, 7)),  # frames 7 and 8 have no mask
    ]
    assert {r.exp_id for r in every.records} == {"0", "1"}


def test_item_window_and_mask(jhmdb: Path) -> None:
    dataset = JHMDBSentencesDataset(jhmdb, num_frames=4, frames_per_video=None)
    index = [(r.video_id, r.frame_number) for r in dataset.records].index(("vid2", 6))
    item = dataset[index]
    assert item["frames"].shape == (4, 3, HEIGHT, WIDTH)
    # the window stops at the last frame with a mask (6), although frames 7-8 exist
    assert [frame_number(255 * f.numpy()) for f in denormalize(item["frames"])] == [3, 4, 5, 5]
    assert item["frame_ids"] == ["00004", "00005", "00006", "00006"]
    assert item["valid"].tolist() == [False, False, True, False]
    assert torch.equal(item["masks"][2], torch.from_numpy(puppet_mask("vid2", 6)).float())
    assert item["masks"].sum() == puppet_mask("vid2", 6).sum()
    assert item["instance_masks"].shape == (1, 4, HEIGHT, WIDTH)
    assert item["referred"].tolist() == [True] and item["obj_id"] == 1
    assert item["image_id"] == "v_vid2_f_6"
    assert item["expression"] == "a girl waving her left hand"
    assert np.array_equal(dataset.ground_truth(index), puppet_mask("vid2", 6))


def test_mttr_samples_file(jhmdb: Path, tmp_path: Path) -> None:
    entries = [("vid2", 5, "a girl waving her left hand"), ("vid1", 2, "man in black pulling up")]
    dataset = JHMDBSentencesDataset(jhmdb, samples_file=_mttr_samples(tmp_path / "s.json", entries))
    assert [(r.video_id, r.frame_number, r.exp_id) for r in dataset.records] == [
        ("vid2", 5, "1"),
        ("vid1", 2, "0"),
    ]
    item = dataset[1]
    assert torch.equal(item["masks"][4], torch.from_numpy(puppet_mask("vid1", 2)).float())
    bad = _mttr_samples(tmp_path / "b.json", [("vid2", 7, "a girl waving her left hand")])
    with pytest.raises(ValueError, match=r"frame .*00007.png' of video 'vid2' is not one of its 6"):
        JHMDBSentencesDataset(jhmdb, samples_file=bad)
    unknown = _mttr_samples(tmp_path / "u.json", [("vid1", 1, "someone else")])
    with pytest.raises(ValueError, match=r"entry 0: video 'vid1' with expression 'someone else'"):
        JHMDBSentencesDataset(jhmdb, samples_file=unknown)
    (tmp_path / "short.json").write_text(json.dumps([["vid1", "x.png"]]))
    with pytest.raises(ValueError, match=r"entry 0: expected \[video_id, frame_path"):
        JHMDBSentencesDataset(jhmdb, samples_file=tmp_path / "short.json")
    (tmp_path / "broken.json").write_text("[")
    with pytest.raises(ValueError, match="cannot parse samples_file .*broken.json"):
        JHMDBSentencesDataset(jhmdb, samples_file=tmp_path / "broken.json")
    with pytest.raises(FileNotFoundError, match="samples_file not found: .*none.json"):
        JHMDBSentencesDataset(jhmdb, samples_file=tmp_path / "none.json")


def test_read_puppet_masks(tmp_path: Path) -> None:
    masks = np.stack([puppet_mask("v", n) for n in (1, 2, 3)], -1).astype(np.uint8)
    scipy.io.savemat(str(tmp_path / "m.mat"), {"part_mask": masks})
    read = read_puppet_masks(tmp_path / "m.mat")
    assert read.shape == (3, HEIGHT, WIDTH) and read.dtype == bool
    assert all(np.array_equal(read[n - 1], puppet_mask("v", n)) for n in (1, 2, 3))
    scipy.io.savemat(str(tmp_path / "other.mat"), {"mask": masks})
    with pytest.raises(ValueError, match=r"'part_mask' must be an \(H, W, T\) array, got None"):
        read_puppet_masks(tmp_path / "other.mat")
    (tmp_path / "text.mat").write_text("not a mat file")
    with pytest.raises(ValueError, match="cannot read .*text.mat as a MATLAB file"):
        read_puppet_masks(tmp_path / "text.mat")
    with pytest.raises(FileNotFoundError, match="puppet mask file not found: .*none.mat"):
        read_puppet_masks(tmp_path / "none.mat")


def test_mask_file_without_part_mask(jhmdb: Path) -> None:
    path = jhmdb / "puppet_mask/wave/vid2/puppet_mask.mat"
    scipy.io.savemat(str(path), {"mask": np.zeros((2, 2, 2), np.uint8)})
    with pytest.raises(ValueError, match=r"puppet_mask.mat: 'part_mask' must be an \(H, W, T\)"):
        JHMDBSentencesDataset(jhmdb)
    path.write_text("not a mat file")
    with pytest.raises(ValueError, match="cannot read .*puppet_mask.mat as a MATLAB file"):
        JHMDBSentencesDataset(jhmdb)


def test_missing_files_are_named(jhmdb: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="JHMDB-Sentences root not found: .*nowhere"):
        JHMDBSentencesDataset(tmp_path / "nowhere")
    (jhmdb / "puppet_mask/wave/vid2/puppet_mask.mat").unlink()
    with pytest.raises(FileNotFoundError, match=r"mask file of video 'vid2' not found: .*vid2"):
        JHMDBSentencesDataset(jhmdb)
    shutil.rmtree(jhmdb / "Rename_Images/pullup/vid1")
    with pytest.raises(FileNotFoundError, match="frame folder of video 'vid1' not found"):
        JHMDBSentencesDataset(jhmdb)
    shutil.rmtree(jhmdb / "puppet_mask")
    with pytest.raises(FileNotFoundError, match=r"folder not found: .*puppet_mask"):
        JHMDBSentencesDataset(jhmdb)
    (jhmdb / "jhmdb_annotation.txt").unlink()
    with pytest.raises(FileNotFoundError, match="expression file not found: .*jhmdb_annotation"):
        JHMDBSentencesDataset(jhmdb)


def test_bad_rows_and_arguments(jhmdb: Path) -> None:
    with pytest.raises(ValueError, match="frames_per_video must be a positive int or None, got 0"):
        JHMDBSentencesDataset(jhmdb, frames_per_video=0)
    with pytest.raises(ValueError, match="num_frames must be a positive int, got -1"):
        JHMDBSentencesDataset(jhmdb, num_frames=-1)
    text = jhmdb / "jhmdb_annotation.txt"
    text.write_text("video_id,query\nvid1\n")
    with pytest.raises(ValueError, match=r"jhmdb_annotation.txt, line 2: expected video_id,query"):
        JHMDBSentencesDataset(jhmdb)
    text.write_text("video_id,query\nvid1, \n")
    with pytest.raises(ValueError, match="line 2: empty expression for video 'vid1'"):
        JHMDBSentencesDataset(jhmdb)
    text.write_text("video_id,query\nvid1,a man\n")
    frame = jhmdb / "Rename_Images/pullup/vid1/00004.png"
    frame.write_bytes(b"broken")
    dataset = JHMDBSentencesDataset(jhmdb, frames_per_video=None, num_frames=1, on_error="skip")
    assert dataset[0] is not None
    with pytest.warns(RuntimeWarning, match=r"skipping item 3 \(video 'vid1', frame 00004\)"):
        assert dataset[3] is None
