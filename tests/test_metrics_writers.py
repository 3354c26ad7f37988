"""Writers: DAVIS indexed PNGs, Ref-YouTube-VOS layout and zip, atomic writes."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from rvoslib.metrics import davis_palette, write_davis_masks, write_ytvos_masks, zip_submission


def test_davis_palette() -> None:
    palette = davis_palette()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    assert palette[:4].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    assert palette[255].tolist() == [224, 224, 192]  # the VOC "void" colour


def test_write_davis_masks_round_trip(tmp_path) -> None:
    masks = np.zeros((3, 9, 13), dtype=np.int64)
    masks[:, 2:5, 3:7] = 1
    masks[1, 6:, :4] = 2
    paths = write_davis_masks(torch.from_numpy(masks), tmp_path / "blackswan")
    assert [p.name for p in paths] == ["00000.png", "00001.png", "00002.png"]
    image = Image.open(paths[1])
    assert image.mode == "P" and image.size == (13, 9)
    np.testing.assert_array_equal(np.array(image), masks[1])
    assert image.getpalette()[:9] == [0, 0, 0, 128, 0, 0, 0, 128, 0]
    assert sorted(p.name for p in (tmp_path / "blackswan").iterdir()) == [p.name for p in paths]
    with pytest.raises(ValueError, match="object ids in 0..255, got 256..256"):
        write_davis_masks(np.full((2, 2), 256), tmp_path / "bad")
    with pytest.raises(ValueError, match=r"one name per frame \(3\), got 2"):
        write_davis_masks(masks, tmp_path / "x", frame_names=["a", "b"])
    with pytest.raises(ValueError, match=r"masks must be \(T, H, W\) or \(H, W\), got \(9\)"):
        write_davis_masks(np.zeros(9), tmp_path / "x")


def test_ytvos_layout_and_zip(tmp_path) -> None:
    masks = np.zeros((2, 6, 8), dtype=np.float32)
    masks[:, 1:4, 2:6] = 0.7  # nonzero -> 255
    write_ytvos_masks(tmp_path, "003234408d", "0", masks, ["00000", "00005"])
    write_ytvos_masks(tmp_path, "003234408d", "1", masks[:1] * 0, ["00000"])
    first = Image.open(tmp_path / "Annotations/003234408d/0/00005.png")
    assert first.mode == "L"
    assert sorted(np.unique(np.array(first)).tolist()) == [0, 255]
    np.testing.assert_array_equal(np.array(first) == 255, masks[1] != 0)
    archive = zip_submission(tmp_path)
    assert archive == tmp_path / "submission.zip"
    with zipfile.ZipFile(archive) as opened:
        assert opened.namelist() == [
            "Annotations/003234408d/0/00000.png",
            "Annotations/003234408d/0/00005.png",
            "Annotations/003234408d/1/00000.png",
        ]
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(FileNotFoundError, match="no Annotations folder"):
        zip_submission(tmp_path / "empty")
