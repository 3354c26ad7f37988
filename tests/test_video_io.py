"""Video reading: folders, files, tensors, and errors that name the path."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from rvoslib.video_io import ImageReadError, list_frames, open_video, read_video


def _frames(folder, sizes):
    folder.mkdir(parents=True, exist_ok=True)
    for index, (width, height) in enumerate(sizes):
        Image.new("RGB", (width, height), (index * 20, 10, 200)).save(folder / f"{index:03d}.png")
    return folder


def test_folder_is_read_in_order(tmp_path):
    folder = _frames(tmp_path / "v", [(20, 10)] * 5)
    (folder / "notes.txt").write_text("ignored")
    video = read_video(folder)
    assert video.shape == (5, 3, 10, 20) and video.dtype == torch.uint8
    assert video[:, 0, 0, 0].tolist() == [0, 20, 40, 60, 80]


def test_empty_folder_names_the_path(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageReadError, match="empty"):
        open_video(tmp_path / "empty")


def test_missing_path_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        open_video(tmp_path / "nowhere.mp4")


def test_frames_of_different_sizes_name_the_first_odd_frame(tmp_path):
    folder = _frames(tmp_path / "v", [(20, 10), (20, 10), (22, 10), (24, 10)])
    with pytest.raises(ImageReadError, match="'002.png'"):
        open_video(folder)


def test_unreadable_video_file_names_the_path(tmp_path):
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"not a video at all")
    with pytest.raises(ImageReadError, match="broken.mp4"):
        open_video(path)


def test_corrupt_frame_names_the_file(tmp_path):
    folder = _frames(tmp_path / "v", [(20, 10)] * 2)
    (folder / "002.jpg").write_bytes(b"\xff\xd8garbage")
    with pytest.raises(ImageReadError, match="002.jpg"):
        read_video(folder)


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "video.txt"
    path.write_text("x")
    with pytest.raises(ImageReadError, match="unsupported suffix"):
        open_video(path)


def test_tensor_layouts():
    assert len(open_video(torch.zeros(4, 8, 9, 3, dtype=torch.uint8))) == 4
    assert open_video(torch.zeros(4, 3, 8, 9)).width == 9
    with pytest.raises(ValueError, match=r"\(T, 3, H, W\)"):
        open_video(torch.zeros(4, 8, 9))


def test_list_frames_sorted(tmp_path):
    folder = _frames(tmp_path / "v", [(4, 4)] * 3)
    assert [p.name for p in list_frames(folder)] == ["000.png", "001.png", "002.png"]
