"""One palette, one image-reading error, one atomic writer, metrics on their own threads."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch

import rvoslib.metrics._kernels as kernels
from rvoslib import _io, _palette
from rvoslib.data import ImageReadError
from rvoslib.data import io as data_io
from rvoslib.metrics import boundary_f_measure, davis_palette, region_similarity


def test_one_palette() -> None:
    assert davis_palette is _palette.davis_palette is data_io.davis_palette
    assert _palette.voc_palette is davis_palette  # the former name
    palette = davis_palette()
    palette[0] = 7  # a copy: the shared table is untouched
    assert davis_palette()[0].tolist() == [0, 0, 0]


def test_one_image_error() -> None:
    import rvoslib.video_io as video_io

    assert ImageReadError is _io.ImageReadError is video_io.ImageReadError
    error = ImageReadError("clip/00002.jpg", "truncated", kind="video")
    assert isinstance(error, OSError) and isinstance(error, ValueError)
    assert str(error) == "cannot read video 'clip/00002.jpg': truncated" and error.path.endswith(
        "2.jpg"
    )
    assert not hasattr(video_io, "VideoReadError")  # the 0.1 alias is gone: ImageReadError
    with pytest.raises(AttributeError, match="has no attribute 'Nothing'"):
        video_io.Nothing  # noqa: B018
    import pickle

    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error) and copy.path == error.path


def test_atomic_writes_have_ordinary_permissions(tmp_path) -> None:
    assert not os.path.exists(os.path.join(os.path.dirname(kernels.__file__), "_io.py"))
    mask = os.umask(0o022)
    try:
        path = _io.atomic_write_bytes(tmp_path / "a" / "b.bin", b"x")
        data_io.write_mask(tmp_path / "m.png", np.ones((2, 2), np.uint8))
    finally:
        os.umask(mask)
    assert path == tmp_path / "a" / "b.bin" and path.read_bytes() == b"x"
    for written in (path, tmp_path / "m.png"):
        assert stat.S_IMODE(written.stat().st_mode) == 0o644
    assert not list(tmp_path.rglob(".*.tmp"))


def test_metrics_run_on_one_thread(monkeypatch) -> None:
    previous = torch.get_num_threads()
    seen = []
    original = kernels.count_near

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr("rvoslib.metrics.davis.count_near", spy)
    masks = np.zeros((2, 16, 16), bool)
    masks[:, 4:10, 4:12] = True
    torch.set_num_threads(2)
    try:
        default = boundary_f_measure(masks, np.roll(masks, 1, -1))
        assert seen == [1, 1] and torch.get_num_threads() == 2
        seen.clear()
        unlimited = boundary_f_measure(masks, np.roll(masks, 1, -1), num_threads=None)
        assert seen == [2, 2]
        np.testing.assert_array_equal(default, unlimited)
        assert region_similarity(masks, masks, num_threads=2).tolist() == [1.0, 1.0]
        with pytest.raises(ValueError, match="num_threads must be a positive int or None, got 0"):
            region_similarity(masks, masks, num_threads=0)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)
