"""VideoPredictor: clip schedule, exact overlap averaging, streaming, real frames, errors."""

from __future__ import annotations

import tracemalloc

import pytest
import torch
from torch import nn

import rvoslib
from rvoslib.inference import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VideoPredictor,
    clip_windows,
    model_input_size,
)
from rvoslib.models.text import TextFeatures
from rvoslib.video_io import FrameFolderSource


class FrameIndexModel(nn.Module):
    """Fake model: frame ``t`` of a video whose pixels equal ``t`` gets logits ``f(t)``.

    ``mode="frame"``: logits depend only on the frame (a constant model per frame);
    ``mode="clip"``: logits are the number of the clip (0, 1, ...), different per clip.
    Records every clip's frame indices and counts text encodings.
    """

    def __init__(self, mode: str = "frame", value: float = 0.25) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))
        self.mode, self.value = mode, value
        self.clips: list[list[int]] = []
        self.encode_calls = 0

    def tokenize(self, texts):
        return {"input_ids": torch.ones(len(texts), 2, dtype=torch.long),
                "attention_mask": torch.ones(len(texts), 2, dtype=torch.long)}  # fmt: skip

    def encode_text(self, ids, mask):
        self.encode_calls += 1
        n = ids.shape[0]
        sentence = torch.arange(n, dtype=torch.float32)[:, None]
        return TextFeatures(sentence, sentence[:, None], mask.bool())

    def forward_with_text(self, frames, text):
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        index = ((frames[0, :, :, 0, 0] * std[:, 0, 0] + mean[:, 0, 0]) * 255).round()[:, 0]
        self.clips.append(index.long().tolist())
        batch, num_frames, _, height, width = frames.shape
        if self.mode == "frame":
            values = self.value * index  # (T,)
        else:
            values = torch.full((num_frames,), float(len(self.clips) - 1))
        values = values[None, :] + text.sentence  # expression n adds n
        return values[:, :, None, None, None].expand(batch, num_frames, 1, height, width).clone()


def index_video(num_frames: int, height: int = 32, width: int = 32) -> torch.Tensor:
    return torch.arange(num_frames, dtype=torch.uint8)[:, None, None, None].expand(
        num_frames, 3, height, width
    )


@pytest.mark.parametrize(
    ("num_frames", "clip_len", "overlap"),
    [(1, 4, 1), (3, 8, 2), (8, 8, 2), (9, 8, 2), (10, 4, 1), (11, 4, 1), (17, 5, 0), (20, 6, 5)],
)
def test_clip_windows_cover_every_frame(num_frames, clip_len, overlap):
    windows = clip_windows(num_frames, clip_len, overlap)
    covered = torch.zeros(num_frames, dtype=torch.long)
    for start, end in windows:
        assert 0 <= start < end <= num_frames
        assert end - start == min(clip_len, num_frames)
        covered[start:end] += 1
    assert covered.min() >= 1
    assert windows[-1][1] == num_frames


@pytest.mark.parametrize(("num_frames", "clip_len", "overlap"), [(3, 8, 2), (11, 4, 1), (25, 6, 3)])
def test_streaming_runs_the_documented_clips(num_frames, clip_len, overlap):
    model = FrameIndexModel()
    predictor = VideoPredictor(model, "cpu", clip_len=clip_len, overlap=overlap, size=None)
    predictor.predict(index_video(num_frames), "anything")
    expected = [list(range(s, e)) for s, e in clip_windows(num_frames, clip_len, overlap)]
    assert model.clips == expected
    assert model.encode_calls == 1  # text encoded once per video, not per clip


@pytest.mark.parametrize(("num_frames", "clip_len", "overlap"), [(5, 8, 2), (13, 4, 3), (10, 4, 0)])
def test_overlap_average_is_exact_for_a_constant_model(num_frames, clip_len, overlap):
    model = FrameIndexModel(mode="frame", value=0.1)  # 0.1 is inexact in binary on purpose
    predictor = VideoPredictor(model, "cpu", clip_len=clip_len, overlap=overlap, size=None)
    masks, probs = predictor.predict(
        index_video(num_frames), ["first", "second"], return_probs=True
    )
    assert masks.shape == probs.shape == (2, num_frames, 32, 32)
    logits = 0.1 * torch.arange(num_frames, dtype=torch.float32)
    expected = torch.sigmoid(torch.stack([logits, logits + 1]))[:, :, None, None]
    assert torch.equal(probs, expected.expand_as(probs))
    assert torch.equal(masks, probs > 0.5)


def test_overlap_average_of_different_clips():
    model = FrameIndexModel(mode="clip")
    predictor = VideoPredictor(model, "cpu", clip_len=4, overlap=2, size=None, threshold=0.9)
    _, probs = predictor.predict(index_video(9), "x", return_probs=True)
    windows = clip_windows(9, 4, 2)
    sums, counts = torch.zeros(9), torch.zeros(9)
    for clip, (start, end) in enumerate(windows):
        sums[start:end] += clip
        counts[start:end] += 1
    assert torch.allclose(probs[0, :, 0, 0], torch.sigmoid(sums / counts), atol=0, rtol=1e-6)


def test_davis_blackswan_returns_masks_at_original_resolution(davis_mini):
    folder = davis_mini / "JPEGImages" / "480p" / "blackswan"
    predictor = VideoPredictor(rvoslib.create_model("tiny"), "cpu", clip_len=10, overlap=2, size=64)
    masks = predictor.predict(folder, "a black swan swimming")
    assert masks.shape == (1, 50, 480, 854)
    assert masks.dtype == torch.bool


def test_long_video_memory_stays_bounded(tmp_path):
    from PIL import Image

    folder = tmp_path / "long"
    folder.mkdir()
    for index in range(500):
        Image.new("RGB", (16, 12), (index % 256, 0, 0)).save(folder / f"{index:05d}.jpg")
    source = FrameFolderSource(folder, num_workers=2, prefetch=4)
    live, peak = set(), 0
    original_iter = FrameFolderSource.__iter__

    class Tracked(FrameFolderSource):
        def __iter__(self):
            nonlocal peak
            for count, frame in enumerate(original_iter(self)):
                live.add(count)
                peak = max(peak, len(live))
                yield frame

    source.__class__ = Tracked
    model = FrameIndexModel()
    predictor = VideoPredictor(model, "cpu", clip_len=8, overlap=2, size=None)
    tracemalloc.start()
    count = 0
    for result in predictor.predict_iter(source, ["a", "b"]):
        assert result.index == count
        assert result.masks.shape == (2, 12, 16)
        live.discard(result.index)
        count += 1
        if count == 50:
            early_peak = tracemalloc.get_traced_memory()[1]
    final_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 500
    assert peak <= 8 + 6 + 1  # frames decoded but not yet final: clip_len + stride + 1
    assert final_peak < early_peak * 1.5 + 256 * 1024  # no growth with the video's length


def test_video_file_input(tmp_path):
    cv2 = pytest.importorskip("cv2")
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (40, 24))
    for index in range(7):
        writer.write(torch.full((24, 40, 3), index * 30, dtype=torch.uint8).numpy())
    writer.release()
    predictor = VideoPredictor(FrameIndexModel(), "cpu", clip_len=4, overlap=1, size=None)
    assert predictor.predict(path, "x").shape == (1, 7, 24, 40)


def test_tensor_layouts_and_resize():
    predictor = VideoPredictor(rvoslib.create_model("tiny"), "cpu", clip_len=3, size=32)
    channels_last = torch.randint(0, 256, (4, 30, 50, 3), dtype=torch.uint8)
    floats = channels_last.permute(0, 3, 1, 2).float() / 255
    a = predictor.predict(channels_last, "the cat", return_probs=True)[1]
    b = predictor.predict(floats, "the cat", return_probs=True)[1]
    assert a.shape == (1, 4, 30, 50)
    assert torch.allclose(a, b, atol=1e-5)


def test_model_input_size():
    assert model_input_size(480, 854, 360) == (352, 640)
    assert model_input_size(480, 854, None) == (480, 864)
    assert model_input_size(10, 10, 8) == (32, 32)


@pytest.mark.parametrize("expressions", ["", "   ", [], ["ok", ""]])
def test_empty_expression_raises_value_error(expressions):
    predictor = VideoPredictor(FrameIndexModel(), "cpu", size=None)
    with pytest.raises(ValueError, match="expression"):
        predictor.predict(index_video(2), expressions)


def test_bad_arguments():
    with pytest.raises(ValueError, match="overlap"):
        VideoPredictor(FrameIndexModel(), "cpu", clip_len=4, overlap=4)
    with pytest.raises(ValueError, match="threshold"):
        VideoPredictor(FrameIndexModel(), "cpu", threshold=1.5)
    with pytest.raises(TypeError, match="tokenize"):
        VideoPredictor(nn.Linear(1, 1), "cpu")


def test_models_of_the_other_input_kind_are_refused_with_what_they_take():
    import numpy as np

    from rvoslib.vos_inference import segment_from_first_mask

    with pytest.raises(TypeError, match="needs a model that takes text.*Seq2SeqModel takes "
                       "'first_mask'.*segment_from_first_mask"):  # fmt: skip
        VideoPredictor(rvoslib.create_model("s2s-tiny"), "cpu")
    video = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(TypeError, match="needs a VOS model.*FusionModel takes 'text'"):
        segment_from_first_mask(rvoslib.create_model("tiny"), video, np.ones((8, 8), np.uint8))
