"""SOC checkpoints convert into rvoslib and reproduce the released inference.

``tests/data/originals/soc`` holds a reduced-size original SOC (random weights, the released
checkpoint layout), fixed inputs and the original code's outputs; see its README.md.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

import rvoslib
from rvoslib.convert import CONVERTERS, UnexpectedKeysError, convert_checkpoint
from rvoslib.convert.core import convert_state_dict, detect_source
from rvoslib.convert.soc import convert_soc
from rvoslib.models.architectures.query import referred_probabilities
from rvoslib.models.architectures.soc import HEAD_WIRINGS, SOCModel
from rvoslib.models.base import RVOSModel
from rvoslib.models.presets import get_preset_config
from rvoslib.models.presets_query_deformable import soc_swin_b, soc_swin_t, soc_swin_t_rvoslib

DATA = Path(__file__).parent / "data" / "originals" / "soc"
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return torch.load(DATA / "checkpoint.pth", weights_only=True)["model_state_dict"]


@pytest.fixture(scope="module")
def inputs() -> dict[str, torch.Tensor]:
    return torch.load(DATA / "inputs.pt", weights_only=True)


@pytest.fixture(scope="module")
def expected() -> dict:
    return torch.load(DATA / "expected.pt", weights_only=True)


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> RVOSModel:
    out = tmp_path_factory.mktemp("converted") / "soc"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no tokenizer files offline
        convert_checkpoint(DATA / "checkpoint.pth", "soc", out)
    return RVOSModel.from_pretrained(out).eval()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


def test_registered():
    assert CONVERTERS.get("soc") is convert_soc


def test_detects_the_variant(state):
    conversion = convert_soc(state)
    assert conversion.source == "soc"
    assert conversion.variant == {
        "backbone": "custom", "text": "custom", "num_queries": 5, "num_levels": 4
    }  # fmt: skip
    config = conversion.config
    assert config.head_wiring == "released"
    assert config.backbone["window_size"] == [2, 3, 3]
    assert config.text_encoder["config"]["hidden_size"] == 64
    assert config.text_encoder["config"]["num_attention_heads"] == 1
    assert config.text_encoder["pooling"] == "pooler"
    assert config.transformer["name"] == "deformable_soc"
    assert config.transformer["text_positions"] == "original"
    assert (config.transformer["d_model"], config.transformer["num_decoder_layers"]) == (128, 2)
    assert config.voc == {"name": "voc", "num_encoder_layers": 1, "num_decoder_layers": 1,
                          "num_heads": 8, "ffn_dim": 32}  # fmt: skip
    assert config.mask_head["coordinates"] == "pixels"
    assert config.pixel_decoder == {"name": "fpn_text", "out_channels": 8}


def test_every_key_used_or_dropped(state):
    conversion = convert_soc(state)
    assert "text_encoder.embeddings.position_ids" in conversion.dropped
    assert any(k.startswith("transformer.decoder.bbox_embed.") for k in conversion.dropped)
    assert any(k.endswith("relative_position_index") for k in conversion.dropped)
    model, _ = convert_state_dict(state, "soc")  # loads with strict=True
    assert isinstance(model, SOCModel)


def test_profiler_counters_are_dropped(state):
    counted = {**state, "total_ops": torch.zeros(1), "voc.total_params": torch.zeros(1)}
    assert {"total_ops", "voc.total_params"} <= set(convert_soc(counted).dropped)


def test_unexpected_key_is_named(state):
    with pytest.raises(UnexpectedKeysError, match=r"'soc' conversion: 'extra_head\.weight'"):
        convert_soc({**state, "extra_head.weight": torch.zeros(2)})


def test_not_a_soc_checkpoint_is_named(state):
    without = {k: v for k, v in state.items() if not k.startswith("voc.")}
    with pytest.raises(ValueError, match="not a SOC checkpoint"):
        convert_soc(without)


def test_missing_tensor_is_named(state):
    without = {k: v for k, v in state.items() if k != "spatial_decoder.out_lay.weight"}
    with pytest.raises(ValueError, match="spatial_decoder.out_lay"):
        convert_soc(without)


def test_source_detected(state):
    assert detect_source(state) == "soc"


def test_reproduces_the_released_inference(converted, inputs, expected):
    frames, ids, mask = inputs["frames"], inputs["input_ids"], inputs["attention_mask"]
    with torch.no_grad():
        logits = converted(frames, ids, mask)
        outputs = converted.forward_outputs(frames, converted.encode_text(ids, mask))
    assert logits.shape == (1, 3, 1, 64, 96)
    assert outputs["masks"].shape[0] == 1  # the one layer the released inference reports
    assert max_diff(outputs["masks"][0, 0], expected["pred_masks"]) <= TOLERANCE
    assert max_diff(outputs["is_referred"][0, 0], expected["pred_cls"]) <= TOLERANCE
    assert max_diff(outputs["boxes"][0, 0], expected["pred_boxes"]) <= TOLERANCE
    chosen = referred_probabilities(outputs["is_referred"][-1]).mean(1).argmax(-1)
    assert chosen.tolist() == [expected["chosen_query"]]
    assert max_diff(logits, expected["logits"]) <= TOLERANCE


def test_training_mode_clusters_every_layer(converted, inputs):
    frames, ids, mask = inputs["frames"], inputs["input_ids"], inputs["attention_mask"]
    converted.train()
    try:
        with torch.no_grad():
            outputs = converted.forward_outputs(frames, converted.encode_text(ids, mask))
    finally:
        converted.eval()
    assert outputs["masks"].shape[0] == 2
    assert outputs["video_queries"].shape[:2] == (2, 1)


def test_last_layer_wiring_differs(converted, inputs):
    frames, ids, mask = inputs["frames"], inputs["input_ids"], inputs["attention_mask"]
    converted.head_wiring = "last_layer"
    try:
        with torch.no_grad():
            outputs = converted.forward_outputs(frames, converted.encode_text(ids, mask))
    finally:
        converted.head_wiring = "released"
    assert outputs["masks"].shape[0] == 2


def test_bad_head_wiring_is_named():
    config = rvoslib.get_preset_config("soc-tiny")
    config.head_wiring = "first_layer"
    with pytest.raises(ValueError, match=r"head_wiring must be one of .*'first_layer'"):
        SOCModel.from_config(config)
    assert HEAD_WIRINGS == ("last_layer", "released")


def test_presets():
    assert soc_swin_t().head_wiring == soc_swin_b().head_wiring == "released"
    assert soc_swin_b().backbone["name"] == "video_swin_b"
    assert soc_swin_t_rvoslib().head_wiring == "last_layer"
    assert get_preset_config("soc-swin-b").backbone["name"] == "video_swin_b"
    assert get_preset_config("soc-swin-t-rvoslib").text_encoder["pooling"] == "cls"
    assert get_preset_config("soc-swin-t-rvoslib").inference is None
    assert get_preset_config("soc-swin-t").inference == "soc"
    assert get_preset_config("soc-tiny").head_wiring == "last_layer"
