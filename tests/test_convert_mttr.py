"""MTTR and LoSh-M checkpoints convert into rvoslib and reproduce the original forward.

The fixtures in ``tests/data/originals/{mttr,losh}`` hold reduced-size original models (random
weights, the original checkpoint layout), fixed inputs and the original code's outputs; see
their README.md. ``published_shapes.json`` lists the tensors of a published-size MTTR
checkpoint (shapes only), for detection.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rvoslib.convert import CONVERTERS, UnexpectedKeysError
from rvoslib.convert.losh import convert_losh
from rvoslib.convert.mttr import convert_mttr, convert_roberta, mttr_parts
from rvoslib.convert.video_swin import relative_position_index
from rvoslib.models.architectures.query import referred_probabilities
from rvoslib.models.base import RVOSModel, SegmentationModel
from rvoslib.models.presets_query_mttr import losh_mttr_swin_t, mttr_swin_t

DATA = Path(__file__).parent / "data" / "originals"
TOLERANCE = 1e-4


def load_fixture(system: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    checkpoint = torch.load(DATA / system / "checkpoint.pth", weights_only=True)
    return checkpoint["model_state_dict"], torch.load(DATA / system / "io.pt", weights_only=True)


@pytest.fixture(scope="module")
def mttr_fixture() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    return load_fixture("mttr")


@pytest.fixture(scope="module")
def losh_fixture() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    return load_fixture("losh")


def build(conversion) -> SegmentationModel:
    model = SegmentationModel.from_config(conversion.config).eval()
    model.load_state_dict(conversion.state_dict, strict=True)
    return model


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


def check_outputs(model: SegmentationModel, io: dict[str, torch.Tensor]) -> None:
    """Last-layer outputs (original layout (T, B, N, ...)), the chosen query and the logits."""
    with torch.no_grad():
        text = model.encode_text(io["input_ids"], io["attention_mask"])
        outputs = model.forward_outputs(io["frames"], text)
        logits = model(io["frames"], io["input_ids"], io["attention_mask"])
    assert max_diff(outputs["is_referred"][-1].transpose(0, 1), io["pred_is_referred"]) <= TOLERANCE
    assert max_diff(outputs["masks"][-1].transpose(0, 1), io["pred_masks"]) <= TOLERANCE
    chosen = referred_probabilities(outputs["is_referred"][-1]).mean(1).argmax(-1)
    assert chosen.tolist() == io["chosen"].tolist()
    assert logits.shape == (*io["frames"].shape[:2], 1, *io["frames"].shape[-2:])
    assert max_diff(logits, io["logits"]) <= TOLERANCE


def test_mttr_fixture_converts_and_reproduces_the_original(mttr_fixture) -> None:
    state, io = mttr_fixture
    conversion = convert_mttr(state)
    assert conversion.source == "mttr" and conversion.config.architecture == "mttr"
    assert conversion.dropped == ["transformer.text_encoder.embeddings.position_ids"]
    assert conversion.variant == {
        "backbone": "custom", "window_size": [2, 7, 7], "text": "custom", "d_model": 64,
        "num_queries": 5, "encoder_layers": 1, "decoder_layers": 2,
    }  # fmt: skip
    assert any("nheads" in note for note in conversion.notes)
    assert CONVERTERS.get("mttr") is convert_mttr
    check_outputs(build(conversion), io)


def test_mttr_converted_folder_reproduces_the_original(mttr_fixture, tmp_path) -> None:
    state, io = mttr_fixture
    build(convert_mttr(state)).save_pretrained(tmp_path / "mttr")
    model = RVOSModel.from_pretrained(tmp_path / "mttr").eval()
    with torch.no_grad():
        logits = model(io["frames"], io["input_ids"], io["attention_mask"])
    assert logits.shape == (2, 3, 1, 48, 64)
    assert max_diff(logits, io["logits"]) <= TOLERANCE


def test_losh_fixture_converts_and_reproduces_the_original(losh_fixture) -> None:
    state, io = losh_fixture
    conversion = convert_losh(state)
    assert conversion.source == "losh" and conversion.config.architecture == "losh"
    assert conversion.config.cross_attention is None and conversion.config.joint_prediction
    assert CONVERTERS.get("losh") is convert_losh
    model = build(conversion)
    check_outputs(model, io)  # one expression: the long branch, as LoSh's post-processing
    with torch.no_grad():
        long = model.encode_text(io["input_ids"], io["attention_mask"])
        short = model.encode_text(io["short_input_ids"], io["short_attention_mask"])
        pair = model.forward_pair(io["frames"], long, short)
    assert max_diff(pair["masks"][-1].transpose(0, 1), io["pred_masks"]) <= TOLERANCE
    assert max_diff(pair["short_masks"][-1].transpose(0, 1), io["short_pred_masks"]) <= TOLERANCE
    short_referred = pair["short_is_referred"][-1].transpose(0, 1)
    assert max_diff(short_referred, io["short_pred_is_referred"]) <= TOLERANCE


def test_losh_converted_folder_reproduces_the_original(losh_fixture, tmp_path) -> None:
    state, io = losh_fixture
    build(convert_losh(state)).save_pretrained(tmp_path / "losh")
    model = RVOSModel.from_pretrained(tmp_path / "losh").eval()
    with torch.no_grad():
        logits = model(io["frames"], io["input_ids"], io["attention_mask"])
    assert logits.shape == (2, 1, 1, 48, 64)
    assert max_diff(logits, io["logits"]) <= TOLERANCE


def published_state() -> dict[str, torch.Tensor]:
    """A published-size MTTR checkpoint as shapes (meta tensors) with real index buffers."""
    table = json.loads((DATA / "mttr" / "published_shapes.json").read_text())
    state = {}
    for key, (shape, dtype) in table.items():
        if key.endswith("relative_position_index"):
            state[key] = relative_position_index((8, 7, 7))
        else:
            state[key] = torch.empty(shape, dtype=getattr(torch, dtype[6:]), device="meta")
    return state


@pytest.mark.parametrize(
    ("converter", "preset"), [(convert_mttr, mttr_swin_t), (convert_losh, losh_mttr_swin_t)]
)
def test_published_shapes_give_the_published_preset(converter, preset) -> None:
    conversion = converter(published_state())
    assert conversion.variant["backbone"] == "video-swin-t"
    assert conversion.variant["text"] == "roberta-base"
    assert conversion.variant["num_queries"] == 50 and conversion.variant["d_model"] == 256
    assert conversion.config == preset()
    with torch.device("meta"):
        model = SegmentationModel.from_config(conversion.config)
    model.load_state_dict(conversion.state_dict, strict=True, assign=True)


def test_preset_text_side_is_the_originals() -> None:
    config = mttr_swin_t()
    assert config.text_encoder["projection"] == {"name": "feature_resizer", "dropout": 0.1}
    assert config.text_encoder["max_length"] is None
    assert config.transformer["text_dropout"] == 0.0
    assert losh_mttr_swin_t().text_encoder == config.text_encoder


def test_foreign_keys_are_named(mttr_fixture) -> None:
    state, _ = mttr_fixture
    with pytest.raises(UnexpectedKeysError, match=r"'mttr' conversion: 'class_embed.weight'"):
        convert_mttr({**state, "class_embed.weight": torch.zeros(1)})
    with pytest.raises(UnexpectedKeysError, match=r"'losh' conversion: 'transformer.level_embed'"):
        convert_losh({**state, "transformer.level_embed": torch.zeros(4, 64)})
    referformer_like = {
        "backbone.0.body.patch_embed.proj.weight": torch.zeros(1),
        "query_embed.weight": torch.zeros(1),
    }
    with pytest.raises(UnexpectedKeysError, match=r"'query_embed.weight'"):
        convert_mttr(referformer_like)


def test_mttr_checkpoint_given_to_other_converters_is_refused(mttr_fixture) -> None:
    state, _ = mttr_fixture
    others = [name for name in CONVERTERS.list() if name not in ("mttr", "losh")]
    for name in others:
        with pytest.raises((UnexpectedKeysError, KeyError, ValueError)):
            CONVERTERS.get(name)(state)


@pytest.mark.parametrize(
    ("key", "shape", "message"),
    [
        ("transformer.decoder.layers.0.linear1.weight", (32, 48),
         r"transformer.decoder.layers.0.linear1.weight has shape \(32, 48\)"),
        ("transformer.txt_proj.fc.weight", (64, 32),
         r"transformer.txt_proj.fc.weight has shape \(64, 32\)"),
        ("spatial_decoder.lay3.weight", (12, 32, 3, 3),
         r"spatial_decoder.lay3.weight has shape \(12, 32, 3, 3\)"),
        ("transformer.text_encoder.encoder.layer.0.intermediate.dense.weight", (128, 60),
         r"intermediate.dense.weight has shape \(128, 60\)"),
        ("backbone.patch_embed.proj.weight", (16, 3, 2, 4, 4),
         r"patch_embed.proj.weight has shape \(16, 3, 2, 4, 4\)"),
        ("backbone.layers.0.blocks.0.attn.relative_position_bias_table", (500, 1),
         r"relative_position_bias_table of shape \(500, 1\)"),
    ],
)  # fmt: skip
def test_unknown_variant_shapes_are_named(mttr_fixture, key, shape, message) -> None:
    state, _ = mttr_fixture
    with pytest.raises(ValueError, match=message):
        convert_mttr({**state, key: torch.zeros(shape)})


def test_missing_tensor_is_named(mttr_fixture) -> None:
    state, _ = mttr_fixture
    missing = {k: v for k, v in state.items() if k != "spatial_decoder.gn2.bias"}
    with pytest.raises(KeyError, match="lacks 'spatial_decoder.gn2.bias'"):
        convert_mttr(missing)
    no_words = {k: v for k, v in state.items() if "word_embeddings" not in k}
    with pytest.raises(KeyError, match="word_embeddings.weight"):
        convert_mttr(no_words)


def test_mismatched_backbone_and_decoder_are_named(mttr_fixture) -> None:
    state, _ = mttr_fixture
    fewer = {k: v for k, v in state.items() if not k.startswith("spatial_decoder.adapter2.")}
    with pytest.raises(ValueError, match="1 adapters but the backbone 3 stages"):
        mttr_parts(fewer, "mttr")


def test_convert_roberta_detects_published_sizes() -> None:
    def meta(*shape: int) -> torch.Tensor:
        return torch.empty(shape, device="meta")

    state = {
        "t.embeddings.word_embeddings.weight": meta(50265, 1024),
        "t.embeddings.position_embeddings.weight": meta(514, 1024),
        "t.embeddings.token_type_embeddings.weight": meta(1, 1024),
        "t.embeddings.position_ids": meta(1, 514),
        "t.pooler.dense.weight": meta(1024, 1024),
        **{f"t.encoder.layer.{i}.intermediate.dense.weight": meta(4096, 1024) for i in range(24)},
    }
    renamed, used, dropped, variant = convert_roberta(state, "t.", "lm.")
    assert variant["name"] == "roberta-large"
    assert variant["config"]["num_attention_heads"] == 16
    assert sorted(dropped) == ["t.embeddings.position_ids", "t.pooler.dense.weight"]
    assert "lm.encoder.layer.23.intermediate.dense.weight" in renamed and len(used) == 27
