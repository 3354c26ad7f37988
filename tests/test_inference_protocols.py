"""Inference protocols (rvoslib.inference_protocols): each step against explicit computations,
VideoPredictor / evaluate / the CLI under a protocol, and the published systems' inference
reproduced on davis-mini frames from the original scripts' masks (tests/data/originals/inference,
made by tools/originals/make_inference_fixtures.py)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import rvoslib
from rvoslib._protocol_predict import model_candidates, protocol_frames
from rvoslib.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from rvoslib.evaluation import evaluate
from rvoslib.inference import VideoPredictor
from rvoslib.inference_protocols import (
    INFERENCE_PROTOCOLS,
    InferenceProtocol,
    choose_queries,
    forward_windows,
    get_protocol,
    masks_at_original_size,
    protocol_input_size,
    resize_frames,
    resolve_protocol,
)
from rvoslib.models.text import TextFeatures

FIXTURES = Path(__file__).parent / "data" / "originals" / "inference"
WHOLE = InferenceProtocol("whole", short_side=None)  # original size, one query for the video


class QueryFake(nn.Module):
    """Two queries: query 0 (mask logits +3) is likely in frames 0 and 1 (0.9, else 0.1),
    query 1 (logits -3) has 0.5 everywhere. Frame ``t`` has pixel value ``t``."""

    input_kind = "text"

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))
        self.passes: list[list[int]] = []

    def tokenize(self, texts):
        ids = torch.ones(len(texts), 2, dtype=torch.long)
        return {"input_ids": ids, "attention_mask": ids.clone()}

    def encode_text(self, ids, mask):
        sentence = torch.zeros(ids.shape[0], 1)
        return TextFeatures(sentence, sentence[:, None], mask.bool())

    def forward_outputs(self, frames, text):
        std, mean = IMAGENET_STD[0], IMAGENET_MEAN[0]
        index = ((frames[0, :, 0, 0, 0] * std + mean) * 255).round()
        self.passes.append(index.long().tolist())
        batch, num_frames, _, height, width = frames.shape
        first = torch.where(index < 2, 0.9, 0.1)
        scores = torch.stack([first, torch.full_like(first, 0.5)], -1)
        masks = torch.tensor([3.0, -3.0]).view(1, 1, 2, 1, 1)
        masks = masks.expand(batch, num_frames, 2, height // 2, width // 2).clone()
        return {"scores": scores[None].expand(batch, -1, -1), "masks": masks}

    def candidates(self, outputs):
        return outputs["masks"], outputs["scores"]

    def forward_with_text(self, frames, text):
        return self.forward_outputs(frames, text)["masks"][:, :, :1]


def _video(num_frames: int = 5, height: int = 20, width: int = 30) -> torch.Tensor:
    """``(T, 3, H, W)`` uint8 frames whose pixels equal their index."""
    values = torch.arange(num_frames, dtype=torch.uint8).view(-1, 1, 1, 1)
    return values.expand(num_frames, 3, height, width).clone()


def _run(protocol: InferenceProtocol, model: nn.Module | None = None):
    model = model or QueryFake()
    text = model.encode_text(torch.ones(1, 2, dtype=torch.long), torch.ones(1, 2))
    video = _video()
    results = list(
        protocol_frames(
            model, lambda: iter(video), (20, 30), text, protocol, device=torch.device("cpu")
        )
    )
    return torch.stack([masks[0] for _, _, masks, _ in results]), model


# ---------------------------------------------------------------- the protocols as data
def test_registered_protocols_and_unknown_name() -> None:
    assert {"rvoslib", "mttr", "referformer-ytvos", "referformer-davis", "soc", "soc-davis"} <= set(
        INFERENCE_PROTOCOLS.names()
    )
    mttr = get_protocol("mttr")
    assert (mttr.short_side, mttr.max_long_side, mttr.upsample) == (360, 640, "input_then_nearest")
    davis = get_protocol("referformer-davis")
    assert (davis.query, davis.clip_frames, davis.max_long_side) == ("clip", 36, None)
    assert get_protocol("rvoslib").query == "model"
    with pytest.raises(KeyError, match="unknown inference protocol 'nope'.*mttr"):
        get_protocol("nope")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"query": "frame"}, "query must be one of"),
        ({"resample": "cv2"}, "resample must be one of"),
        ({"upsample": "twice"}, "upsample must be one of"),
        ({"short_side": 0}, "short_side must be a positive int or None, got 0"),
        ({"clip_frames": 2.5}, "clip_frames must be a positive int or None, got 2.5"),
        ({"threshold": 1.0}, r"threshold must be in \(0, 1\), got 1.0"),
        ({"query": "clip"}, "query='clip' needs clip_frames"),
    ],
)
def test_protocol_fields_are_checked(changes, message) -> None:
    with pytest.raises(ValueError, match=message):
        InferenceProtocol("bad", **changes)
    with pytest.raises(ValueError, match=message):
        get_protocol("mttr").replace(**changes)


def test_resolve_protocol() -> None:
    model = nn.Linear(1, 1)
    assert resolve_protocol(None, model).name == "rvoslib"
    model.inference_protocol = "soc"
    assert resolve_protocol(None, model).name == "soc"
    assert resolve_protocol("mttr", model).name == "mttr"
    assert resolve_protocol(WHOLE) is WHOLE
    with pytest.raises(TypeError, match="registered name or an InferenceProtocol, got int"):
        resolve_protocol(3)


# ---------------------------------------------------------------- each step
def test_input_size_follows_detr_and_torchvision_rules() -> None:
    mttr, ytvos = get_protocol("mttr"), get_protocol("referformer-ytvos")
    assert protocol_input_size(480, 854, mttr) == (360, int(360 * 854 / 480))  # 640.5 -> 640
    assert protocol_input_size(720, 1920, mttr) == (240, 640)  # capped: round(640*720/1920)
    assert protocol_input_size(720, 1920, ytvos) == (360, 960)  # no cap
    assert protocol_input_size(854, 480, mttr) == (640, 360)  # portrait
    assert protocol_input_size(360, 500, ytvos) == (360, 500)  # already the size: kept
    assert protocol_input_size(33, 47, WHOLE) == (33, 47)
    with pytest.raises(ValueError, match=r"frame size must be positive, got \(height, width\)"):
        protocol_input_size(0, 10, mttr)


def test_resize_frames_pil_and_torch() -> None:
    frames = torch.randint(0, 256, (2, 3, 24, 40), dtype=torch.uint8)
    expected = [
        np.asarray(Image.fromarray(f.permute(1, 2, 0).numpy()).resize((25, 15), Image.BILINEAR))
        for f in frames
    ]
    pil = resize_frames(frames, (15, 25), "pil")
    assert pil.dtype == torch.float32 and pil.shape == (2, 3, 15, 25)
    assert torch.equal(pil, torch.from_numpy(np.stack(expected)).permute(0, 3, 1, 2) / 255.0)
    floats = frames.float() / 255
    torch_way = F.interpolate(floats, size=(15, 25), mode="bilinear", antialias=True)
    assert torch.allclose(resize_frames(frames, (15, 25), "torch"), torch_way)
    assert torch.equal(resize_frames(floats, (15, 25), "pil"), pil)  # floats rounded to uint8
    assert torch.equal(resize_frames(frames, (24, 40), "pil"), floats)  # same size: / 255
    with pytest.raises(ValueError, match=r"frames must be \(T, 3, H, W\), got \(3, 24, 40\)"):
        resize_frames(frames[0], (15, 25), "pil")
    with pytest.raises(ValueError, match="resample must be one of"):
        resize_frames(frames, (15, 25), "nearest")


def test_forward_windows() -> None:
    assert forward_windows(80, get_protocol("referformer-davis")) == [(0, 36), (36, 72), (72, 80)]
    assert forward_windows(36, get_protocol("soc-davis")) == [(0, 36)]
    assert forward_windows(100, get_protocol("mttr")) == [(0, 100)]
    with pytest.raises(ValueError, match="num_frames must be >= 1, got 0"):
        forward_windows(0, get_protocol("mttr"))


def test_choose_queries_mean_over_frames_first_on_ties() -> None:
    scores = torch.tensor([[[0.9, 0.5], [0.1, 0.5]], [[0.2, 0.2], [0.4, 0.4]]])
    assert choose_queries(scores).tolist() == [0, 0]  # 0.5 vs 0.5: the first
    assert choose_queries(torch.tensor([[[0.9, 0.5], [0.0, 0.5]]])).tolist() == [1]
    with pytest.raises(ValueError, match=r"scores must be \(E, T, N\), got \(2, 2\)"):
        choose_queries(scores[0])


def test_masks_upsampled_once_to_the_original_size() -> None:
    logits = torch.randn(2, 3, 6, 10)
    protocol = get_protocol("referformer-ytvos")
    probs, masks = masks_at_original_size(logits, (24, 40), (24, 40), (30, 50), protocol)
    expected = F.interpolate(logits, size=(30, 50), mode="bilinear", align_corners=False).sigmoid()
    assert torch.equal(probs, expected) and torch.equal(masks, expected > 0.5)


def test_masks_threshold_at_the_input_size_then_nearest() -> None:
    logits = torch.randn(1, 2, 7, 11)
    protocol = get_protocol("mttr")
    probs, masks = masks_at_original_size(logits, (26, 40), (28, 44), (39, 60), protocol)
    at_input = F.interpolate(logits, size=(28, 44), mode="bilinear", align_corners=False)
    cropped = (at_input.sigmoid() > 0.5)[..., :26, :40].float()
    expected = F.interpolate(cropped, size=(39, 60), mode="nearest") > 0.5
    assert torch.equal(masks, expected) and probs.shape == (1, 2, 39, 60)
    with pytest.raises(ValueError, match=r"logits must be \(E, T, h, w\), got \(2, 7, 11\)"):
        masks_at_original_size(logits[0], (26, 40), (28, 44), (39, 60), protocol)


# ---------------------------------------------------------------- whole videos
def test_model_candidates_of_query_and_plain_models() -> None:
    model = rvoslib.create_model("mttr-tiny").eval()
    text = model.encode_text(*model.tokenize(["a cat"]).values())
    frames = torch.randn(1, 2, 3, 32, 32)
    with torch.no_grad():
        logits, scores = model_candidates(model, frames, text)
        expected_logits, expected_scores = model.candidates(model.forward_outputs(frames, text))
    assert torch.equal(logits, expected_logits.float()) and torch.equal(scores, expected_scores)

    class Plain(nn.Module):  # only forward_with_text: its logits, score 1
        def forward_with_text(self, frames, text):
            return frames[:, :, :1] * 2

    logits, scores = model_candidates(Plain(), frames, text)
    assert torch.equal(logits, frames[:, :, :1] * 2) and torch.equal(scores, torch.ones(1, 2, 1))


def test_one_query_for_the_video_or_per_clip() -> None:
    masks, model = _run(WHOLE)  # mean: query 0 0.42, query 1 0.5
    assert not masks.any() and model.passes == [[0, 1, 2, 3, 4]]
    masks, model = _run(WHOLE.replace(query="clip", clip_frames=2))
    assert masks[:2].all() and not masks[2:].any()  # clip 0,1 -> query 0; others query 1
    assert model.passes == [[0, 1], [2, 3], [4]]
    masks, model = _run(WHOLE.replace(clip_frames=2))  # two passes: scores, then masks
    assert not masks.any() and model.passes == [[0, 1], [2, 3], [4]] * 2


def test_protocol_frames_refuses_the_model_query_and_empty_videos() -> None:
    model = QueryFake()
    text = model.encode_text(torch.ones(1, 2, dtype=torch.long), torch.ones(1, 2))
    cpu = torch.device("cpu")
    with pytest.raises(ValueError, match="query='model' is rvoslib's clip averaging"):
        next(protocol_frames(model, list, (4, 4), text, get_protocol("rvoslib"), device=cpu))
    for protocol in (WHOLE, WHOLE.replace(clip_frames=2)):
        with pytest.raises(ValueError, match="video 'clip' has no frame"):
            list(protocol_frames(model, list, (4, 4), text, protocol, device=cpu, name="clip"))


def test_video_predictor_under_a_protocol(tmp_path) -> None:
    video = _video()
    predictor = VideoPredictor(
        QueryFake(), "cpu", protocol=WHOLE.replace(query="clip", clip_frames=2)
    )
    masks, probs = predictor.predict(video, ["a", "b"], return_probs=True)
    assert masks.shape == probs.shape == (2, 5, 20, 30)
    assert masks[:, :2].all() and not masks[:, 2:].any()
    assert torch.allclose(probs[:, 0], torch.sigmoid(torch.tensor(3.0)).expand(2, 20, 30))
    results = list(predictor.predict_iter(video, "a", return_frames=True))
    assert [r.index for r in results] == list(range(5)) and torch.equal(results[3].frame, video[3])
    tokens = {"input_ids": torch.ones(1, 2, dtype=torch.long), "attention_mask": torch.ones(1, 2)}
    assert torch.equal(predictor.predict(video, tokens), masks[:1])
    with pytest.raises(ValueError, match=r"must hold 'input_ids' and 'attention_mask', got keys"):
        predictor.predict(video, {"input_ids": tokens["input_ids"]})


def test_video_predictor_default_protocol_is_the_models() -> None:
    model = rvoslib.create_model("mttr-tiny", inference="mttr")
    predictor = VideoPredictor(model, "cpu")
    assert predictor.protocol.name == "mttr" and predictor.dtype == torch.float32
    assert VideoPredictor(rvoslib.create_model("mttr-tiny"), "cpu").protocol.name == "rvoslib"
    with pytest.raises(KeyError, match="unknown inference protocol 'nope'"):
        VideoPredictor(model, "cpu", protocol="nope")
    video = torch.randint(0, 256, (3, 3, 40, 56), dtype=torch.uint8)
    assert predictor.predict(video, "a cat").shape == (1, 3, 40, 56)


# ---------------------------------------------------------------- the config field
def test_config_inference_field_round_trip(tmp_path) -> None:
    from rvoslib.models import SegmentationModel
    from rvoslib.models.presets import get_preset_config

    plain = rvoslib.create_model("mttr-tiny")
    assert plain.inference_protocol is None and "inference" not in plain.config.to_dict()
    assert "inference" not in plain.config.options()
    model = rvoslib.create_model("mttr-tiny", inference="referformer-davis")
    assert model.config.to_dict()["inference"] == "referformer-davis"
    model.save_pretrained(tmp_path / "m")
    assert (
        SegmentationModel.from_pretrained(tmp_path / "m").inference_protocol == "referformer-davis"
    )
    with pytest.raises(ValueError, match="inference must be a registered inference protocol"):
        get_preset_config("mttr-tiny", inference="nope")
    published = {"mttr-swin-t": "mttr", "losh-mttr-swin-t": "mttr", "soc-swin-t": "soc",
                 "referformer-swin-t": "referformer-ytvos"}  # fmt: skip
    for name, protocol in published.items():
        assert get_preset_config(name).inference == protocol
    assert get_preset_config("mttr-swin-t-rvoslib").inference is None


# ---------------------------------------------------------------- evaluation and the CLI
class _OneVideo(torch.utils.data.Dataset):
    def __init__(self, orig_size=(20, 30)) -> None:
        self.orig_size = orig_size

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index):
        return {}

    def collate(self, items):
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        frames = (_video().float() / 255 - mean) / std
        return {
            "frames": frames[None], "text_ids": torch.ones(1, 2, dtype=torch.long),
            "text_mask": torch.ones(1, 2, dtype=torch.bool),
            "masks": torch.zeros(1, 5, 20, 30), "valid": torch.ones(1, 5, dtype=torch.bool),
            "video_id": ["v"], "exp_id": ["0"], "orig_size": [self.orig_size],
            "unpadded_size": [(20, 30)],
        }  # fmt: skip


def test_evaluate_under_a_protocol() -> None:
    data = _OneVideo()
    predictions = []
    protocol = WHOLE.replace(query="clip", clip_frames=2)
    evaluate(QueryFake(), data, collate_fn=data.collate, inference=protocol,
             on_prediction=predictions.append)  # fmt: skip
    masks = predictions[0].masks
    assert masks.shape == (5, 20, 30) and masks[:2].all() and not masks[2:].any()
    resized = _OneVideo(orig_size=(40, 60))
    with pytest.raises(ValueError, match=r"resizes the original frames itself.*\(40, 60\)"):
        evaluate(QueryFake(), resized, collate_fn=resized.collate, inference="mttr")


def _tiny_checkpoint(tmp_path: Path) -> Path:
    model = rvoslib.create_model("mttr-tiny", inference="referformer-ytvos")
    return model.save_pretrained(tmp_path / "model")


def test_rvos_predict_inference_protocol(tmp_path, capsys) -> None:
    from rvoslib.cli import main

    frames = tmp_path / "frames"
    frames.mkdir()
    for index in range(3):
        Image.fromarray(np.full((24, 40, 3), 40 * index, np.uint8)).save(frames / f"{index}.jpg")
    checkpoint = _tiny_checkpoint(tmp_path)
    common = ["predict", "--checkpoint", str(checkpoint), "--video", str(frames), "--no-progress"]
    assert main([*common, "--text", "a cat", "--out", str(tmp_path / "a")]) == 0
    index = json.loads((tmp_path / "a" / "expressions.json").read_text())
    assert index["inference_protocol"] == "referformer-ytvos"  # the checkpoint's own
    assert len(list((tmp_path / "a" / "0").glob("*.png"))) == 3
    out = ["--out", str(tmp_path / "b"), "--inference-protocol", "mttr"]
    assert main([*common, "--text", "a cat", *out]) == 0
    assert (
        json.loads((tmp_path / "b" / "expressions.json").read_text())["inference_protocol"]
        == "mttr"
    )
    Image.fromarray(np.ones((24, 40), np.uint8), mode="L").save(tmp_path / "first.png")
    argv = [*common, "--mask", str(tmp_path / "first.png"), "--out", str(tmp_path / "c")]
    assert main([*argv, "--inference-protocol", "mttr"]) != 0
    assert "--inference-protocol mttr is for referring models" in capsys.readouterr().err


def test_rvos_eval_inference_protocol(tmp_path, capsys) -> None:
    from rvoslib.cli import main

    checkpoint = _tiny_checkpoint(tmp_path)
    argv = ["eval", "--json", "--checkpoint", str(checkpoint), "--dataset", "synthetic",
            "--val-videos", "1", "--val-frames", "2", "--device", "cpu"]  # fmt: skip
    assert main([*argv, "--inference-protocol", "mttr"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["inference_protocol"] == "mttr" and 0.0 <= summary["J"] <= 1.0
    assert main(argv) == 0  # the checkpoint's own protocol
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["inference_protocol"] == "referformer-ytvos"


# ---------------------------------------------------------------- the originals reproduced
@pytest.mark.parametrize(("system", "protocol"), [("mttr", "mttr"), ("referformer", None)])
def test_original_inference_reproduced_on_davis_frames(tmp_path, system, protocol) -> None:
    """The converted reduced checkpoint, run by VideoPredictor on the frame folder with the
    original token ids, gives the original inference script's masks (per-frame IoU >= 0.999).
    ReferFormer runs with its converted config's own protocol (``referformer-ytvos``)."""
    try:
        importlib.import_module(f"rvoslib.convert.{system}")
    except ModuleNotFoundError:
        pytest.skip(f"the {system} converter is not there")
    from rvoslib.convert import convert_state_dict

    frames = torch.load(FIXTURES / "frames.pt", weights_only=True)
    for name, data in zip(frames["frame_names"], frames["frames_jpeg"], strict=True):
        (tmp_path / f"{name}.jpg").write_bytes(data.numpy().tobytes())
    case = torch.load(FIXTURES / system / "case.pt", weights_only=True)
    checkpoint = torch.load(FIXTURES / system / "checkpoint.pth", weights_only=True)
    model, _ = convert_state_dict(
        checkpoint.get("model_state_dict", checkpoint.get("model")), system
    )
    predictor = VideoPredictor(model, "cpu", protocol=protocol)
    assert predictor.protocol.name == {"mttr": "mttr", "referformer": "referformer-ytvos"}[system]
    tokens = {"input_ids": case["input_ids"], "attention_mask": case["attention_mask"]}
    masks = predictor.predict(tmp_path, tokens)[0]
    shape = case["expected_shape"]
    bits = np.unpackbits(case["expected"].numpy())[: int(np.prod(shape))]
    expected = torch.from_numpy(bits.reshape(shape).astype(bool))
    assert masks.shape == expected.shape
    for index, (mine, theirs) in enumerate(zip(masks, expected, strict=True)):
        union = (mine | theirs).sum().item()
        iou = (mine & theirs).sum().item() / union if union else 1.0
        assert iou >= 0.999, f"frame {index}: IoU {iou}"
