"""Writers: DAVIS indexed PNGs, Ref-YouTube-VOS layout and zip, atomic writes."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from rvoslib.metrics import (
    binarize_masks,
    davis_palette,
    write_davis_masks,
    write_ytvos_masks,
    zip_submission,
)


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
    with pytest.raises(ValueError, match="integer object ids, got fractional float values"):
        write_davis_masks(np.full((2, 2), 0.7), tmp_path / "x")


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


def test_ytvos_threshold_and_refusals(tmp_path) -> None:
    probabilities = np.array([[[0.2, 0.5, 0.51, 1.0]]], dtype=np.float32)  # (1, 1, 4)
    write_ytvos_masks(tmp_path, "v", "0", probabilities, ["00000"])
    written = np.array(Image.open(tmp_path / "Annotations/v/0/00000.png"))
    assert written.tolist() == [[0, 0, 255, 255]]  # > 0.5, as ReferFormer and MTTR
    write_ytvos_masks(
        tmp_path, "v", "1", torch.from_numpy(probabilities).bfloat16(), ["00000"], 0.3
    )
    assert np.array(Image.open(tmp_path / "Annotations/v/1/00000.png")).tolist() == [
        [0, 255, 255, 255]
    ]
    write_ytvos_masks(tmp_path, "v", "2", np.array([[[0, 255]]], np.uint8), ["00000"])
    assert np.array(Image.open(tmp_path / "Annotations/v/2/00000.png")).tolist() == [[0, 255]]
    with pytest.raises(
        ValueError, match=r"probabilities in \[0, 1\] \(apply sigmoid.*\[-2.0, 3.0\]"
    ):
        write_ytvos_masks(tmp_path, "v", "3", np.array([[[-2.0, 3.0]]]), ["00000"])
    with pytest.raises(ValueError, match=r"got float values in \[0.5, 0.5\] and NaN"):
        write_ytvos_masks(tmp_path, "v", "3", np.array([[[np.nan, 0.5]]]), ["00000"])
    with pytest.raises(
        ValueError, match=r"integer dtype must be binary, 0/1 or 0/255, got values \[0, 2\]"
    ):
        write_ytvos_masks(tmp_path, "v", "3", np.array([[[0, 2]]]), ["00000"])
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\), got 1.5"):
        write_ytvos_masks(tmp_path, "v", "3", probabilities, ["00000"], threshold=1.5)
    with pytest.raises(TypeError, match="must be bool, integer or floating, got dtype complex128"):
        binarize_masks(np.zeros(2, complex))
    assert not (tmp_path / "Annotations/v/3").exists()  # refused before writing
    assert binarize_masks(np.array([True, False])).tolist() == [True, False]
