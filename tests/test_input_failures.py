"""Fast, named failures on bad input (issue 24): corrupt frames, model folders missing their
tokenizer or holding another architecture's config, VOS input checks equal to the RVOS ones,
non-finite frames, token ids past the position limit, Unicode forms, 0/255 first-frame masks
and Ref-DAVIS17 folders without annotator folders."""

from __future__ import annotations

import io
import json
import shutil
import time
import unicodedata
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import rvoslib
from rvoslib.cli import main
from rvoslib.data.collate import RVOSCollator
from rvoslib.inference import VideoPredictor
from rvoslib.metrics.refer_davis import annotator_folders
from rvoslib.models import HashTokenizer, SegmentationModel
from rvoslib.video_io import ImageReadError, open_video, read_video
from rvoslib.vos_inference import read_first_mask, segment_from_first_mask

CAFE_NFC = unicodedata.normalize("NFC", "the café table")
CAFE_NFD = unicodedata.normalize("NFD", "the café table")


def _image_bytes(fmt: str, seed: int, size: tuple[int, int] = (96, 128)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def _frames(folder, count: int = 4, suffix: str = ".jpg", broken: int | None = None):
    """``count`` frames in ``folder``; frame ``broken`` cut to half its bytes."""
    folder.mkdir()
    fmt = "JPEG" if suffix == ".jpg" else "PNG"
    for index in range(count):
        data = _image_bytes(fmt, index)
        if index == broken:
            data = data[: len(data) // 2]
        (folder / f"{index:05d}{suffix}").write_bytes(data)
    return folder


@pytest.fixture(scope="module")
def tiny():
    return rvoslib.create_model("tiny").eval()


@pytest.fixture(scope="module")
def s2s():
    return rvoslib.create_model("s2s-tiny").eval()


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, tiny):
    return tiny.save_pretrained(tmp_path_factory.mktemp("models") / "tiny")


# ---------------------------------------------------------------- corrupt frames
@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_frame_is_an_error_naming_it(tmp_path, suffix):
    folder = _frames(tmp_path / "video", suffix=suffix, broken=2)
    with pytest.raises(ImageReadError, match=rf"00002\{suffix}'.*truncated.*on_corrupt='skip'"):
        open_video(folder)
    header = Image.open(folder / f"00002{suffix}")  # the header is intact: only the data is cut
    assert header.size == (128, 96)
    header.close()
    with pytest.raises(ImageReadError, match=rf"00002\{suffix}"):
        read_video(folder)


def test_truncated_frame_skipped_with_a_warning_naming_it(tmp_path):
    folder = _frames(tmp_path / "video", broken=1)
    with pytest.warns(UserWarning, match=r"skipping frame .*00001\.jpg"):
        source = open_video(folder, on_corrupt="skip")
    assert [path.name for path in source.files] == ["00000.jpg", "00002.jpg", "00003.jpg"]
    assert len(source) == 3 and read_video(source).shape == (3, 3, 96, 128)


def test_all_frames_corrupt_with_skip_is_an_error(tmp_path):
    folder = tmp_path / "video"
    folder.mkdir()
    (folder / "00000.jpg").write_bytes(_image_bytes("JPEG", 0)[:100])
    with pytest.warns(UserWarning), pytest.raises(ImageReadError, match="all 1 frames"):
        open_video(folder, on_corrupt="skip")


def test_complete_frame_with_trailing_bytes_is_read(tmp_path):
    folder = _frames(tmp_path / "video", count=2)
    frame = folder / "00001.jpg"
    frame.write_bytes(frame.read_bytes() + b"\x00trailer" * 20)  # data after the end marker
    assert read_video(folder).shape == (2, 3, 96, 128)


def test_bad_on_corrupt_is_refused(tmp_path):
    folder = _frames(tmp_path / "video", count=1)
    with pytest.raises(ValueError, match=r"on_corrupt must be one of \('error', 'skip'\), got 'x'"):
        open_video(folder, on_corrupt="x")


def test_predictor_refuses_a_truncated_frame_before_predicting(tmp_path, tiny):
    folder = _frames(tmp_path / "video", broken=3)
    predictor = VideoPredictor(tiny, device="cpu", clip_len=2, overlap=0, size=32)
    with pytest.raises(ImageReadError, match=r"00003\.jpg"):
        next(predictor.predict_iter(folder, "the cat"))


def test_cli_predict_corrupt_frame(tmp_path, tiny_folder, capsys):
    folder = _frames(tmp_path / "video", broken=1)
    common = ["predict", "--checkpoint", str(tiny_folder), "--video", str(folder), "--text",
              "a cat", "--size", "32", "--no-progress"]  # fmt: skip
    assert main([*common, "--out", str(tmp_path / "refused")]) != 0
    assert "00001.jpg': truncated" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()
    with pytest.warns(UserWarning, match=r"00001\.jpg"):
        code = main([*common, "--out", str(tmp_path / "out"), "--skip-corrupt-frames"])
    assert code == 0
    written = sorted(path.name for path in (tmp_path / "out" / "0").iterdir())
    assert written == ["00000.png", "00002.png", "00003.png"]


# ---------------------------------------------------------------- model folders
def test_missing_tokenizer_file_is_named_without_network(tmp_path, tiny_folder):
    folder = tmp_path / "model"
    shutil.copytree(tiny_folder, folder)
    (folder / "rvos_hash_tokenizer.json").unlink()
    model = SegmentationModel.from_pretrained(folder)
    started = time.perf_counter()
    with pytest.raises(FileNotFoundError, match=r"tokenizer of folder .*model'.*rvos_hash_tok"):
        model.tokenize(["a cat"])
    assert time.perf_counter() - started < 5.0  # no network retries


def test_config_of_another_architecture_is_named(tmp_path, tiny_folder, s2s):
    other = s2s.save_pretrained(tmp_path / "s2s")
    folder = tmp_path / "mixed"
    shutil.copytree(tiny_folder, folder)
    shutil.copy(other / "config.json", folder / "config.json")
    pattern = (r"model\.safetensors' does not fit the model .*config\.json' describes "
               r"\(architecture 'seq2seq'\): \d+ keys missing from the file \(e\.g\. "
               r"initializer.*unexpected keys.*The file's modules: .*text_encoder")  # fmt: skip
    with pytest.raises(ValueError, match=pattern):
        SegmentationModel.from_pretrained(folder)


def test_same_architecture_other_sizes_is_named(tmp_path, tiny_folder):
    folder = tmp_path / "resized"
    shutil.copytree(tiny_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    config["text_encoder"]["out_dim"] = 2 * config["text_encoder"].get("out_dim", 16)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"does not fit .*(shapes differ|keys)"):
        SegmentationModel.from_pretrained(folder)


# ---------------------------------------------------------------- VOS input checks
def _first_mask(size: int = 32) -> torch.Tensor:
    mask = torch.zeros(1, size, size)
    mask[0, 8:16, 8:16] = 1
    return mask


def test_vos_empty_clip_is_named_like_rvos(s2s, tiny):
    frames = torch.randn(1, 0, 3, 32, 32)
    with pytest.raises(ValueError, match=r"empty input: frames \(1, 0, 3, 32, 32\)"):
        s2s(frames, _first_mask())
    with pytest.raises(ValueError, match=r"empty input: frames \(1, 0, 3, 32, 32\)"):
        s2s.predict({"frames": frames, "first_mask": _first_mask()})
    ids = tiny.tokenize(["a cat"])["input_ids"]
    with pytest.raises(ValueError, match=r"empty input: frames \(1, 0, 3, 32, 32\)"):
        tiny(frames, ids)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_vos_casts_frames_like_rvos(s2s, tiny, dtype):
    frames = torch.randn(1, 2, 3, 32, 32)
    expected = s2s.predict({"frames": frames, "first_mask": _first_mask()})
    for output in (
        s2s(frames.to(dtype), _first_mask()),
        s2s.predict({"frames": frames.to(dtype), "first_mask": _first_mask()}),
    ):
        assert output.shape == (1, 2, 1, 32, 32) and output.dtype == torch.float32
        assert torch.allclose(output, expected, atol=0.05)
    ids = tiny.tokenize(["a cat"])["input_ids"]
    assert tiny(frames.to(dtype), ids).shape == (1, 2, 1, 32, 32)


# ---------------------------------------------------------------- non-finite frames
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_frames_are_named(s2s, tiny, value):
    frames = torch.randn(2, 3, 3, 32, 32)
    frames[1, 2, 0, 5, 5] = value
    pattern = r"NaN or infinite values: clip \(batch item\) 1, frame 2 \(1 such"
    with pytest.raises(ValueError, match=pattern):
        s2s(frames, _first_mask().expand(2, -1, -1))
    with pytest.raises(ValueError, match=pattern):
        s2s.predict({"frames": frames, "first_mask": _first_mask().expand(2, -1, -1)})
    ids = tiny.tokenize(["a cat", "a dog"])["input_ids"]
    with pytest.raises(ValueError, match=pattern):
        tiny(frames, ids)


def test_non_finite_frames_allowed_on_request(tmp_path):
    model = rvoslib.create_model("s2s-tiny").eval()
    model.allow_non_finite = True
    frames = torch.randn(1, 2, 3, 32, 32)
    frames[0, 1, 0, 0, 0] = float("nan")
    assert model(frames, _first_mask()).shape == (1, 2, 1, 32, 32)


def test_predictor_names_the_non_finite_frame(tiny):
    video = torch.rand(5, 3, 32, 32)
    video[3, 1, 2, 2] = float("nan")
    predictor = VideoPredictor(tiny, device="cpu", clip_len=2, overlap=0, size=32)
    with pytest.raises(ValueError, match=r"frame 3 of video 'video' holds NaN or infinite"):
        predictor.predict(video, "a cat")


# ---------------------------------------------------------------- text
def test_token_ids_past_the_position_limit_are_named(tiny):
    limit = tiny.text_encoder.position_limit
    assert limit == tiny.text_encoder.language_model.config.max_position_embeddings
    ids = torch.full((1, 3000), 5, dtype=torch.long)
    with pytest.raises(ValueError, match=rf"3000 tokens .* at most {limit} \(the position limit"):
        tiny(torch.randn(1, 1, 3, 32, 32), ids)
    with pytest.raises(ValueError, match=rf"max_length 3000 exceeds .* limit of {limit} tokens"):
        tiny.tokenize(["a cat"], max_length=3000)
    assert tiny.tokenize(["word " * 3000])["input_ids"].shape[1] <= limit


def test_unicode_forms_tokenise_alike(tiny):
    assert CAFE_NFC != CAFE_NFD
    first, second = tiny.tokenize([CAFE_NFC]), tiny.tokenize([CAFE_NFD])
    assert torch.equal(first["input_ids"], second["input_ids"])
    tokenizer = HashTokenizer(vocab_size=1000)
    assert torch.equal(tokenizer(CAFE_NFC)["input_ids"], tokenizer(CAFE_NFD)["input_ids"])


def test_collator_normalises_text_to_nfc():
    seen = []

    def tokenize(texts, max_length=None):
        seen.extend(texts)
        return {"input_ids": torch.ones(len(texts), 2, dtype=torch.long),
                "attention_mask": torch.ones(len(texts), 2)}  # fmt: skip

    RVOSCollator(tokenize).tokenize([CAFE_NFD])
    assert seen == [CAFE_NFC]


# ---------------------------------------------------------------- first-frame masks
def test_binary_0_255_mask_is_object_1(tmp_path):
    pixels = np.zeros((32, 32), dtype=np.uint8)
    pixels[8:16, 8:16] = 255
    path = tmp_path / "first.png"
    Image.fromarray(pixels, mode="L").save(path)
    with pytest.warns(UserWarning, match=r"first\.png' holds only the values 0 and 255.*object 1"):
        ids = read_first_mask(path)
    assert ids.dtype == np.uint8 and set(np.unique(ids)) == {0, 1}
    assert (ids == 1).sum() == 64


def test_binary_mask_array_in_segment_from_first_mask(s2s):
    pixels = np.zeros((32, 32), dtype=np.uint8)
    pixels[8:16, 8:16] = 255
    video = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    with pytest.warns(UserWarning, match="object 1"):
        ids = segment_from_first_mask(s2s, video, pixels, size=32)
    assert set(np.unique(ids.numpy())) <= {0, 1} and (ids[0].numpy() == 1).sum() == 64


def test_indexed_mask_with_object_255_among_others_is_kept(tmp_path):
    pixels = np.zeros((8, 8), dtype=np.uint8)
    pixels[0, 0], pixels[1, 1] = 3, 255
    path = tmp_path / "first.png"
    Image.fromarray(pixels, mode="L").save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert set(np.unique(read_first_mask(path))) == {0, 3, 255}


# ---------------------------------------------------------------- Ref-DAVIS17 folders
def test_refer_davis_without_annotator_folders_is_refused(tmp_path):
    (tmp_path / "blackswan").mkdir()
    (tmp_path / "anno_x").mkdir()
    (tmp_path / "anno_3").write_text("a file, not a folder")
    with pytest.raises(ValueError, match=r"'.*' has no anno_<k> folder \(it holds anno_3, anno_x, "
                       r"blackswan\).*anno_<k>/<video>/<frame>\.png"):  # fmt: skip
        annotator_folders(tmp_path)
    (tmp_path / "anno_10").mkdir()
    (tmp_path / "anno_2").mkdir()
    assert [path.name for path in annotator_folders(tmp_path)] == ["anno_2", "anno_10"]
    with pytest.raises(FileNotFoundError, match="predictions folder .*missing' not found"):
        annotator_folders(tmp_path / "missing")
