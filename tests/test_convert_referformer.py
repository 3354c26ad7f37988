"""ReferFormer checkpoints convert into rvoslib and reproduce the original forward.

``tests/data/originals/referformer`` holds a reduced-size original ReferFormer (random weights,
the released checkpoint layout), fixed inputs and the original code's outputs; see its
README.md.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import torchvision

from rvoslib.convert import CONVERTERS, UnexpectedKeysError, convert_checkpoint
from rvoslib.convert.core import convert_state_dict
from rvoslib.convert.referformer import DECODER_RENAMES, convert_referformer
from rvoslib.models.architectures.query import referred_probabilities
from rvoslib.models.base import RVOSModel, SegmentationModel
from rvoslib.models.fusion.mmf import (
    BidirectionalMultimodalFusion,
    _text_positions,
    check_text_positions,
)
from rvoslib.models.heads.condinst import (
    CondInstMaskHead,
    CrossModalFPNDecoder,
    relative_coordinates,
)
from rvoslib.models.presets import get_preset_config
from rvoslib.models.transformer.referformer import ReferFormerTransformer

DATA = Path(__file__).parent / "data" / "originals" / "referformer"
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return torch.load(DATA / "checkpoint.pth", weights_only=True)["model"]


@pytest.fixture(scope="module")
def io() -> dict[str, torch.Tensor]:
    return torch.load(DATA / "io.pt", weights_only=True)


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> RVOSModel:
    out = tmp_path_factory.mktemp("converted") / "referformer"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no tokenizer files offline
        convert_checkpoint(DATA / "checkpoint.pth", "referformer", out)
    return RVOSModel.from_pretrained(out).eval()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


def outputs(model: SegmentationModel, io: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        text = model.encode_text(io["input_ids"], io["attention_mask"])
        return model.forward_outputs(io["frames"], text)


def test_converted_folder_reproduces_the_original(converted, io) -> None:
    with torch.no_grad():
        logits = converted(io["frames"], io["input_ids"], io["attention_mask"])
    batch, frames, _, height, width = io["frames"].shape
    assert logits.shape == (batch, frames, 1, height, width)
    assert max_diff(logits, io["chosen_logits"]) <= TOLERANCE
    result = outputs(converted, io)
    assert max_diff(result["is_referred"], io["pred_logits"]) <= TOLERANCE
    assert max_diff(result["boxes"], io["pred_boxes"]) <= TOLERANCE
    assert max_diff(result["masks"], io["pred_masks"]) <= TOLERANCE
    chosen = referred_probabilities(result["is_referred"][-1]).mean(1).argmax(-1)
    assert chosen.tolist() == io["chosen_query"].tolist()
    assert bool((io["score_margin"] > 1e-3).all())  # the choice is not a near tie


def test_conversion_detects_the_variant_and_drops_the_aliases(state) -> None:
    conversion = convert_referformer(state)
    assert CONVERTERS.get("referformer") is convert_referformer
    assert conversion.source == "referformer" and conversion.config.architecture == "referformer"
    assert conversion.variant == {
        "backbone": "custom", "text": "custom", "num_queries": 5, "num_levels": 4,
    }  # fmt: skip
    aliases = [k for k in state if k.startswith("transformer.decoder.bbox_embed.")]
    assert aliases and set(aliases) <= set(conversion.dropped)
    assert "text_encoder.embeddings.position_ids" in conversion.dropped
    config = conversion.config
    assert config.backbone["window_size"] == [8, 7, 7]
    assert config.backbone["embed_dim"] == 8 and config.backbone["depths"] == [1, 1, 2, 1]
    assert config.transformer["num_heads"] == 8 and config.transformer["num_points"] == 4
    assert config.transformer["text_positions"] == "original"
    assert config.pixel_decoder["text_positions"] == "original"
    assert config.mask_head["coordinates"] == "pixels"
    assert config.mask_head["hidden_channels"] == 8
    assert config.text_encoder["pooling"] == "pooler"
    assert config.text_encoder["projection"]["name"] == "feature_resizer"
    assert config.text_encoder["max_length"] is None


def test_swapped_decoder_norms_change_the_masks(state, io) -> None:
    """Deformable DETR's decoder norm1/norm2 have the same shapes: mapping them by name would
    load silently and compute something else."""
    assert DECODER_RENAMES["norm1"] == "norm2" and DECODER_RENAMES["norm2"] == "norm1"
    model, conversion = convert_state_dict(state, "referformer")
    swapped = dict(conversion.state_dict)
    for key in conversion.state_dict:
        if ".decoder.layers." in key and ".norm1." in key:
            other = key.replace(".norm1.", ".norm2.")
            swapped[key], swapped[other] = conversion.state_dict[other], conversion.state_dict[key]
    model.load_state_dict(swapped, strict=True)
    assert max_diff(outputs(model, io)["masks"], io["pred_masks"]) > 1e-2


def _resnet_state(state: dict[str, torch.Tensor], blocks: list[int]) -> dict[str, torch.Tensor]:
    """The fixture's tensors with a ResNet-50-layout backbone (random) in place of the Swin."""
    resnet = torchvision.models.resnet.ResNet(torchvision.models.resnet.Bottleneck, blocks)
    new = {k: v for k, v in state.items() if not k.startswith("backbone.0.body.")}
    for key, value in resnet.state_dict().items():
        if not key.startswith("fc."):
            new["backbone.0.body." + key] = value
    d_model = state["query_embed.weight"].shape[1]
    for index, channels in enumerate((512, 1024, 2048)):
        new[f"input_proj.{index}.0.weight"] = torch.zeros(d_model, channels, 1, 1)
    new["input_proj.3.0.weight"] = torch.zeros(d_model, 2048, 3, 3)
    new["pixel_decoder.adapter_1.weight"] = torch.zeros(d_model, 256, 1, 1)
    return new


def test_resnet50_checkpoint_converts(state) -> None:
    model, conversion = convert_state_dict(_resnet_state(state, [3, 4, 6, 3]), "referformer")
    assert conversion.variant["backbone"] == "resnet50"
    assert conversion.config.backbone == {
        "name": "resnet50", "out_strides": [4, 8, 16, 32], "refine_last": False,
        "frozen_bn": True, "freeze_stages": 2,
    }  # fmt: skip
    assert any(k.endswith("num_batches_tracked") for k in conversion.dropped)
    assert model.backbone.out_channels == [256, 512, 1024, 2048]


def test_unsupported_resnet_depth_is_named(state) -> None:
    with pytest.raises(ValueError, match=r"\[2, 2, 2, 2\] blocks per stage; ResNet-50"):
        convert_referformer(_resnet_state(state, [2, 2, 2, 2]))


def test_foreign_key_is_named(state) -> None:
    bad = {**state, "sentence_encoder.weight": torch.zeros(1)}
    with pytest.raises(
        UnexpectedKeysError, match=r"'referformer' conversion: 'sentence_encoder\.weight'"
    ):
        convert_referformer(bad)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"class_embed.0.weight": torch.zeros(65, 32)}, "65 classes: a model trained without"),
        ({"controller.layers.2.weight": torch.zeros(7, 32)}, "predicts 7 parameters"),
        ({"backbone.0.body.patch_embed.proj.weight": torch.zeros(8, 3, 4, 4)}, "a 2D Swin"),
        (
            {
                "transformer.encoder.layers.0.self_attn.attention_weights.weight": torch.zeros(
                    36, 32
                )
            },
            "36 rows, not a multiple of 8 heads x 4 levels",
        ),
        ({"transformer.decoder.bbox_embed.0.layers.0.bias": torch.ones(32)}, "differs from"),
    ],
)
def test_unknown_shapes_are_named(state, change, message) -> None:
    with pytest.raises(ValueError, match=message):
        convert_referformer({**state, **change})


def test_missing_parts_are_named(state) -> None:
    no_refine = {k: v for k, v in state.items() if not k.startswith("transformer.decoder.bbox")}
    with pytest.raises(ValueError, match="without --with_box_refine"):
        convert_referformer(no_refine)
    no_backbone = {k: v for k, v in state.items() if not k.startswith("backbone.")}
    with pytest.raises(ValueError, match="no backbone found"):
        convert_referformer(no_backbone)
    with pytest.raises(ValueError, match="lacks 'query_embed.weight'"):
        convert_referformer({k: v for k, v in state.items() if k != "query_embed.weight"})


# ---------------------------------------------------------------- the options
def test_text_positions_original_is_k_over_n() -> None:
    mask = torch.tensor([[True, True, True, True, False]])
    original = _text_positions(mask, 2, "original")[0, :, 0]  # sin(2 pi x)
    expected = torch.sin(2 * torch.pi * torch.tensor([1, 2, 3, 4, 4]) / (4 + 1e-6))
    assert torch.allclose(original, expected, atol=1e-6)
    centred = _text_positions(mask, 2)[0, :4, 0]
    assert torch.allclose(centred, torch.sin(2 * torch.pi * (torch.arange(4) + 0.5) / 4))
    assert check_text_positions("centred") == "centred"
    with pytest.raises(ValueError, match=r"text_positions must be one of .*got 'middle'"):
        check_text_positions("middle")


@pytest.mark.parametrize(
    "build",
    [
        lambda: ReferFormerTransformer(
            [8], text_dim=8, d_model=8, num_heads=2, num_levels=1, text_positions="middle"
        ),
        lambda: CrossModalFPNDecoder(
            [8], text_dim=8, conv_dim=8, num_heads=2, text_positions="middle"
        ),
        lambda: BidirectionalMultimodalFusion(8, 8, dim=8, num_heads=2, text_positions="middle"),
    ],
)
def test_parts_refuse_unknown_text_positions(build) -> None:
    with pytest.raises(ValueError, match="text_positions must be one of"):
        build()


def test_relative_coordinates_in_pixels() -> None:
    points = torch.tensor([0.25, 0.5])
    coords = relative_coordinates(points, (2, 3), "pixels", image_size=(8, 12), stride=4)
    # x: 0.25 * 12 - (4j + 2) = 1, -3, -7; y: 0.5 * 8 - (4i + 2) = 2, -2
    assert coords[0, 0].tolist() == [1.0, -3.0, -7.0]
    assert coords[1, :, 0].tolist() == [2.0, -2.0]
    assert torch.equal(relative_coordinates(points, (2, 3), "pixels"), coords)
    with pytest.raises(ValueError, match=r"units must be one of \('image', 'pixels'\), got 'px'"):
        relative_coordinates(points, (2, 3), "px")
    with pytest.raises(ValueError, match="coordinates must be one of"):
        CondInstMaskHead(query_dim=8, pixel_channels=4, coordinates="px")


def test_condinst_pixels_uses_the_image_size() -> None:
    torch.manual_seed(0)
    head = CondInstMaskHead(query_dim=8, pixel_channels=4, coordinates="pixels").eval()
    queries, pixels = torch.randn(1, 1, 2, 3, 8), torch.randn(1, 2, 4, 5, 6)
    points = torch.rand(1, 1, 2, 3, 2)
    default = head(queries, pixels, reference_points=points)
    same = head(queries, pixels, reference_points=points, image_size=(20, 24))
    other = head(queries, pixels, reference_points=points, image_size=(18, 22))
    assert torch.equal(default, same) and not torch.allclose(default, other)


def test_presets_original_and_rvoslib() -> None:
    original = get_preset_config("referformer-swin-t")
    assert original.text_encoder["pooling"] == "pooler"
    assert original.transformer["text_positions"] == "original"
    assert original.mask_head["coordinates"] == "pixels"
    own = get_preset_config("referformer-swin-t-rvoslib")
    assert own.text_encoder["pooling"] == "cls"
    assert "text_positions" not in own.transformer and "coordinates" not in own.mask_head
    for name, backbone in [("referformer-r50", "resnet50"), ("referformer-r101", "resnet101"),
                           ("referformer-swin-s", "video_swin_s"),
                           ("referformer-swin-b", "video_swin_b")]:  # fmt: skip
        config = get_preset_config(name)
        assert config.backbone["name"] == backbone
        assert config.transformer == original.transformer
