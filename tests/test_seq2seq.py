"""Seq2seq VOS model and the VGG backbone: shapes, training, saving, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rvoslib.losses.registry import CRITERIA
from rvoslib.models.architectures.seq2seq import (
    FIRST_FRAME_LOGIT,
    Seq2SeqConfig,
    Seq2SeqDecoder,
    Seq2SeqModel,
    check_first_mask,
)
from rvoslib.models.backbones.vgg import VGGBackbone
from rvoslib.models.base import SegmentationModel, VOSModel
from rvoslib.models.registry import ADAPTERS, BACKBONES, DECODERS, TEMPORAL_MODULES

TINY_VGG = {"name": "tinyvgg", "out_strides": [4], "channels": [8, 8, 8, 8, 8]}


def tiny_config(**changes) -> Seq2SeqConfig:
    config = Seq2SeqConfig(
        initializer={**TINY_VGG, "in_channels": 4},
        encoder=dict(TINY_VGG),
        state_channels=8,
        decoder={"name": "seq2seq", "channels": [8, 8], "kernel_size": 3},
        criterion={"name": "first_frame_mask", "dice_weight": 0.5},
    )
    return config.replace(**changes) if changes else config


def tiny_model(**changes) -> Seq2SeqModel:
    model = SegmentationModel.from_config(tiny_config(**changes))
    assert isinstance(model, Seq2SeqModel)
    return model


def first_mask(batch: int, height: int, width: int) -> torch.Tensor:
    mask = torch.zeros(batch, height, width)
    mask[:, height // 4 : height // 2, width // 4 : width // 2] = 1
    return mask


def make_batch(batch: int = 2, frames: int = 3, size: tuple[int, int] = (32, 32)) -> dict:
    masks = torch.zeros(batch, frames, *size)
    masks[:, :, 4:12, 6:14] = 1
    return {
        "frames": torch.randn(batch, frames, 3, *size),
        "first_mask": masks[:, 0].clone(),
        "masks": masks,
        "valid": torch.ones(batch, frames, dtype=torch.bool),
    }


# ---------------------------------------------------------------------------- VGG backbone
def test_vgg16_levels_and_channels() -> None:
    backbone = BACKBONES.build({"name": "vgg16"}, pretrained=False)
    assert backbone.strides == [2, 4, 8, 16, 32]
    assert backbone.out_channels == [64, 128, 256, 512, 512]
    levels = backbone(torch.randn(1, 1, 3, 64, 96))
    assert [tuple(level.shape) for level in levels] == [
        (1, 1, 64, 32, 48),
        (1, 1, 128, 16, 24),
        (1, 1, 256, 8, 12),
        (1, 1, 512, 4, 6),
        (1, 1, 512, 2, 3),
    ]
    assert BACKBONES.spec_of(backbone) == {
        "name": "vgg16",
        "in_channels": 3,
        "out_strides": [2, 4, 8, 16, 32],
    }


def test_vgg16_bn_and_truncation() -> None:
    backbone = BACKBONES.build({"name": "vgg16_bn", "out_strides": [8]}, pretrained=False)
    assert backbone.batch_norm and backbone.out_channels == [256]
    assert any(isinstance(layer, nn.BatchNorm2d) for layer in backbone.features)
    assert isinstance(backbone.features[-1], nn.MaxPool2d)  # stages after stride 8 dropped
    assert backbone(torch.randn(2, 3, 32, 32))[0].shape == (2, 256, 4, 4)
    assert BACKBONES.spec_of(backbone) == {"name": "vgg16_bn", "in_channels": 3, "out_strides": [8]}
    tiny = BACKBONES.build({"name": "tinyvgg", "out_strides": [4]})
    assert tiny.batch_norm and "batch_norm" not in BACKBONES.spec_of(tiny)


def test_vgg_widened_first_conv_loads_rgb_weights(tmp_path: Path) -> None:
    """A 3-channel checkpoint in a 4-channel backbone: RGB filters kept, the mask's at zero,
    so the output equals the RGB network's when the extra channel is anything."""
    rgb = VGGBackbone("tiny", out_strides=[4, 8])
    with torch.no_grad():
        for param in rgb.parameters():
            param.copy_(torch.randn_like(param))
    state = {f"features.{k}": v for k, v in rgb.features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # ignored
    path = tmp_path / "vgg.pth"
    torch.save(state, path)
    rgbm = VGGBackbone("tiny", in_channels=4, out_strides=[4, 8], checkpoint_path=str(path))
    first = rgbm.features[0].weight
    torch.testing.assert_close(first[:, :3], rgb.features[0].weight)
    assert first[:, 3].abs().sum() == 0
    rgb.eval()
    rgbm.eval()
    images = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = rgb(images)
        widened = rgbm(torch.cat([images, torch.randn(2, 1, 16, 16)], 1))
    for a, b in zip(expected, widened):
        torch.testing.assert_close(a, b)


def test_vgg_pretrained_loads_torchvision_weights_only_when_asked(monkeypatch) -> None:
    """``pretrained=True`` takes torchvision's ImageNet state (faked here: no download)."""
    import torchvision

    reference = torchvision.models.vgg16().state_dict()
    calls = []

    def fake_state_dict(self, *args, **kwargs):
        calls.append(str(self))
        return reference

    monkeypatch.setattr(
        type(torchvision.models.VGG16_Weights.DEFAULT), "get_state_dict", fake_state_dict
    )
    VGGBackbone("vgg16", out_strides=[4])
    assert calls == []
    backbone = BACKBONES.build({"name": "vgg16", "in_channels": 4}, pretrained=True)
    assert calls == ["VGG16_Weights.IMAGENET1K_V1"]
    torch.testing.assert_close(backbone.features[0].weight[:, :3], reference["features.0.weight"])
    assert backbone.features[0].weight[:, 3].abs().sum() == 0
    torch.testing.assert_close(backbone.features[28].weight, reference["features.28.weight"])


def test_vgg_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="model must be one of"):
        VGGBackbone("vgg15")
    with pytest.raises(ValueError, match=r"out_strides must be distinct values from \(2, 4"):
        VGGBackbone("tiny", out_strides=[64])
    with pytest.raises(ValueError, match="in_channels must be a positive int, got 0"):
        VGGBackbone("tiny", in_channels=0)
    with pytest.raises(ValueError, match="tiny VGG has no pretrained weights"):
        VGGBackbone("tiny", pretrained=True)
    with pytest.raises(ValueError, match="channels must be 5 positive widths"):
        VGGBackbone("tiny", channels=[8, 8])
    with pytest.raises(FileNotFoundError, match="checkpoint_path"):
        VGGBackbone("tiny", checkpoint_path=str(tmp_path / "missing.pth"))
    torch.save({"features.0.weight": torch.zeros(16, 3, 3, 3)}, tmp_path / "part.pth")
    with pytest.raises(ValueError, match=r"does not fit VGG backbone 'tiny'.*missing keys"):
        VGGBackbone("tiny", checkpoint_path=str(tmp_path / "part.pth"))
    torch.save({"features.0.weight": torch.zeros(16, 5, 3, 3)}, tmp_path / "five.pth")
    with pytest.raises(ValueError, match=r"first convolution is \(16, 5, 3, 3\) but this backbone"):
        VGGBackbone("tiny", in_channels=4, checkpoint_path=str(tmp_path / "five.pth"))
    backbone = VGGBackbone("tiny", in_channels=4)
    with pytest.raises(
        ValueError, match=r"frames must be \(B, T, 4, H, W\), got \(1, 1, 3, 8, 8\)"
    ):
        backbone(torch.randn(1, 1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"frames must be \(N, 4, H, W\) or"):
        backbone(torch.randn(8, 8))


# ---------------------------------------------------------------------------- the model
def test_shapes_first_frame_and_odd_sizes() -> None:
    model = tiny_model().eval()
    for size in ((32, 32), (33, 47)):
        batch = make_batch(2, 3, size)
        with torch.no_grad():
            logits = model(batch["frames"], batch["first_mask"])
        assert logits.shape == (2, 3, 1, *size)
        expected = (batch["first_mask"] * 2 - 1) * FIRST_FRAME_LOGIT
        torch.testing.assert_close(logits[:, 0, 0], expected)
    with torch.no_grad():  # one frame: only the given mask
        single = model(batch["frames"][:, :1], batch["first_mask"])
    assert single.shape == (2, 1, 1, 33, 47)


def test_mask_changes_the_prediction() -> None:
    model = tiny_model().eval()
    batch = make_batch(1, 3)
    other = torch.zeros_like(batch["first_mask"])
    other[:, 20:30, 20:30] = 1
    with torch.no_grad():
        a = model(batch["frames"], batch["first_mask"])[:, 1:]
        b = model(batch["frames"], other)[:, 1:]
    assert not torch.allclose(a, b)


def test_backward_reaches_every_part() -> None:
    model = tiny_model()
    batch = make_batch()
    terms = model.losses(model.forward_batch(batch), batch)
    assert set(terms) == {"bce", "dice"}
    sum(terms.values()).backward()
    for name in ("initializer", "encoder", "temporal", "decoder", "initial_hidden"):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert all(g is not None for g in grads), name
    for gate in ("input", "forget", "output"):
        grad = getattr(model.temporal.cell, f"peephole_{gate}").grad
        assert grad is not None and grad.abs().sum() > 0


def test_losses_match_bce_over_frames_after_the_first() -> None:
    model = tiny_model(criterion={"name": "first_frame_mask", "bce_weight": 2.0})
    batch = make_batch(2, 4)
    batch["valid"][1, 2] = False
    logits = torch.randn(2, 4, 1, 32, 32)
    terms = model.losses({"logits": logits}, batch)
    assert set(terms) == {"bce"}
    values = []
    for b in range(2):
        for t in range(1, 4):  # frame 0 is the given mask: never a loss
            if batch["valid"][b, t]:
                values.append(
                    F.binary_cross_entropy_with_logits(
                        logits[b, t, 0], batch["masks"][b, t], reduction="none"
                    ).flatten()
                )
    torch.testing.assert_close(terms["bce"], 2.0 * torch.cat(values).mean())
    changed = logits.clone()
    changed[:, 0] = 100.0
    torch.testing.assert_close(model.losses({"logits": changed}, batch)["bce"], terms["bce"])


def test_losses_respect_void_and_single_frame() -> None:
    model = tiny_model(criterion={"name": "first_frame_mask"})
    batch = make_batch(1, 2)
    logits = torch.randn(1, 2, 1, 32, 32)
    batch["void"] = torch.zeros(1, 2, 32, 32, dtype=torch.bool)
    batch["void"][:, 1, :16] = True
    expected = F.binary_cross_entropy_with_logits(logits[0, 1, 0, 16:], batch["masks"][0, 1, 16:])
    torch.testing.assert_close(model.losses({"logits": logits}, batch)["bce"], expected)
    single = make_batch(1, 1)
    loss = model.losses({"logits": torch.randn(1, 1, 1, 32, 32)}, single)["bce"]
    assert loss.item() == 0.0


def test_predict_carries_the_state_across_chunks() -> None:
    model = tiny_model().eval()
    batch = make_batch(2, 5)
    with torch.no_grad():
        whole = model(batch["frames"], batch["first_mask"])
    chunked = model.predict(batch, clip_len=2)
    assert chunked.dtype == torch.float32 and chunked.shape == (2, 5, 1, 32, 32)
    torch.testing.assert_close(chunked, whole)
    torch.testing.assert_close(model.predict(batch), whole)


def test_learns_to_follow_the_mask() -> None:
    """A few steps on one batch lower the loss (the parts are wired for training)."""
    torch.manual_seed(0)
    model = tiny_model()
    batch = make_batch(2, 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = sum(model.losses(model.forward_batch(batch), batch).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_save_and_restore_round_trip(tmp_path: Path) -> None:
    model = tiny_model()
    with torch.no_grad():
        for gate in ("input", "forget", "output"):
            getattr(model.temporal.cell, f"peephole_{gate}").copy_(torch.randn(8, 1, 1))
    model.eval()
    folder = model.save_pretrained(tmp_path / "s2s")
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "seq2seq" and config["temporal"]["name"] == "convlstm"
    assert config["initializer"]["in_channels"] == 4
    restored = VOSModel.from_pretrained(folder).eval()
    assert isinstance(restored, Seq2SeqModel) and restored.inputs.kind == "first_mask"
    for gate in ("input", "forget", "output"):
        name = f"peephole_{gate}"
        torch.testing.assert_close(
            getattr(restored.temporal.cell, name), getattr(model.temporal.cell, name)
        )
    batch = make_batch(1, 3)
    torch.testing.assert_close(restored.predict(batch), model.predict(batch))
    assert restored.config == model.config


def test_default_config_is_vgg16_seed_003() -> None:
    config = Seq2SeqConfig()
    assert config.initializer == {"name": "vgg16", "in_channels": 4, "out_strides": [32]}
    assert config.encoder["name"] == "vgg16" and config.temporal == {"name": "convlstm"}
    assert config.state_channels == 512
    assert config.decoder == {"name": "seq2seq", "channels": [512, 256, 128, 64, 64],
                              "kernel_size": 5}  # fmt: skip
    assert config.input_adapter == {"name": "identity"}
    assert config.criterion == {"name": "first_frame_mask"}


def test_any_registered_backbone_with_the_seed_adapter() -> None:
    spec = {"name": "tinycnn", "out_strides": [8], "channels": [8, 8, 8, 8], "refine_last": False}
    model = tiny_model(
        initializer=spec,
        encoder=spec,
        input_adapter={"name": "conv_bn_relu", "kernel_size": 3},
        decoder={"name": "seq2seq", "channels": [8, 8, 8], "kernel_size": 3},
    )
    assert isinstance(model.initializer_input, nn.Sequential)  # conv 4 -> 3 + BN + ReLU
    assert model.initializer_input[0].in_channels == 4
    assert model.input_adapter is model.initializer_input
    assert model.config.input_adapter == {"name": "conv_bn_relu", "kernel_size": 3}
    assert isinstance(tiny_model().initializer_input, nn.Identity)
    with pytest.raises(ValueError, match="adapter 'identity' cannot map 4 to 3 channels"):
        tiny_model(initializer=spec, encoder=spec)
    batch = make_batch(1, 2)
    assert model(batch["frames"], batch["first_mask"]).shape == (1, 2, 1, 32, 32)


def test_parameter_groups_put_both_backbones_in_backbone() -> None:
    model = tiny_model()
    groups = model.parameter_groups()
    backbone = {id(p) for p in [*model.initializer.parameters(), *model.encoder.parameters()]}
    assert {id(p) for p in groups["backbone"]} == backbone
    assert groups["text"] == []
    everything = [id(p) for group in groups.values() for p in group]
    assert sorted(everything) == sorted(id(p) for p in model.parameters())


def test_decoder_blocks() -> None:
    decoder = Seq2SeqDecoder(8, [8, 4, 4], kernel_size=5)
    assert len(decoder.blocks) == 3
    convs = [m for m in decoder.blocks[0] if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(5, 5), (5, 5)]
    assert decoder(torch.randn(2, 8, 3, 4), output_size=(24, 32)).shape == (2, 1, 24, 32)


def test_no_text_interface() -> None:
    model = tiny_model()
    assert isinstance(model, VOSModel)
    for name in ("tokenize", "encode_text", "forward_with_text", "text_encoder"):
        assert not hasattr(model, name), name
    assert model.inputs.tokenizer is None and model.inputs.max_length is None
    frames = torch.randn(1, 2, 3, 32, 32)
    with pytest.raises(ValueError, match=r"is a VOS model: .*first_mask \(B, H, W\).*not text"):
        model.predict({"frames": frames, "text_ids": torch.ones(1, 3, dtype=torch.long)})


def test_registered_decoder_adapters_and_criterion() -> None:
    decoder = DECODERS.build({"name": "seq2seq", "channels": [8], "kernel_size": 3}, in_channels=4)
    assert isinstance(decoder, Seq2SeqDecoder)
    assert DECODERS.spec_of(decoder) == {"name": "seq2seq", "channels": [8], "kernel_size": 3}
    conv = ADAPTERS.build({"name": "conv"}, in_channels=4, out_channels=2)
    assert conv(torch.randn(1, 4, 5, 5)).shape == (1, 2, 5, 5) and conv.bias is not None
    with pytest.raises(ValueError, match="kernel_size must be a positive odd int, got 2"):
        ADAPTERS.build({"name": "conv_bn_relu", "kernel_size": 2}, in_channels=4, out_channels=2)
    with pytest.raises(ValueError, match="kernel_size must be a positive odd int, got 0"):
        ADAPTERS.build({"name": "conv", "kernel_size": 0}, in_channels=4, out_channels=2)
    criterion = CRITERIA.build({"name": "first_frame_mask", "dice_weight": 0.5})
    assert CRITERIA.spec_of(criterion) == {
        "name": "first_frame_mask",
        "bce_weight": 1.0,
        "dice_weight": 0.5,
    }
    with pytest.raises(KeyError, match="unknown criterion 'nope'; registered criterions: .*mask"):
        tiny_model(criterion={"name": "nope"})


def test_bad_inputs() -> None:
    model = tiny_model()
    batch = make_batch(2, 3)
    with pytest.raises(
        ValueError,
        match=r"first_mask must be \(B, H, W\) = \(2, 32, 32\) to match frames \(2, 3, 3, 32, "
        r"32\) \(frames of 32x32\), got \(2, 16, 16\)",
    ):
        model(batch["frames"], first_mask(2, 16, 16))
    with pytest.raises(TypeError, match="first_mask must be a torch.Tensor"):
        model(batch["frames"], [[0, 1]])
    with pytest.raises(ValueError, match=r"frames must be \(B, T, 3, H, W\), got \(2, 3, 32, 32\)"):
        model(batch["frames"][:, 0], batch["first_mask"])
    with pytest.raises(ValueError, match=r"first_mask \(B, H, W\).*lacks \['first_mask'\]"):
        model.forward_batch({"frames": batch["frames"]})
    with pytest.raises(KeyError, match=r"criterion 'first_frame_mask' needs batch\['masks'\]"):
        model.losses({"logits": torch.zeros(2, 3, 1, 32, 32)}, {"frames": batch["frames"]})
    with pytest.raises(ValueError, match=r"batch\['masks'\] must be \(B, T, H, W\) = "):
        model.losses({"logits": torch.zeros(2, 3, 1, 32, 32)}, {"masks": torch.zeros(2, 3, 8, 8)})
    empty = dict(batch, first_mask=batch["first_mask"].clone())
    empty["first_mask"][1] = 0
    with pytest.raises(ValueError, match=r"first_mask of batch item\(s\) \[1\] is empty"):
        model.predict(empty)
    with pytest.raises(ValueError, match="clip_len must be a positive int or None, got 0"):
        model.predict(batch, clip_len=0)
    with pytest.raises(ValueError, match="is empty"):
        check_first_mask(torch.zeros(1, 4, 4), torch.zeros(1, 2, 3, 4, 4), require_object=True)


def test_parts_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="initializer's coarsest stride 4 differs from the encod"):
        tiny_model(encoder={**TINY_VGG, "out_strides": [8]})
    with pytest.raises(ValueError, match="adapter 'identity' cannot map 4 to 5 channels"):
        tiny_model(initializer={**TINY_VGG, "in_channels": 5})
    with pytest.raises(ValueError, match="has no forward_with_state"):
        tiny_model(temporal={"name": "identity"})
    lstm = TEMPORAL_MODULES.build({"name": "convlstm", "hidden_channels": 4}, channels=8)
    built = tiny_model()
    parts = {name: getattr(built, name) for name in tiny_config().part_slots()}
    with pytest.raises(ValueError, match="hidden_channels=4 but state_channels is 8"):
        Seq2SeqModel(**{**parts, "temporal": lstm}, state_channels=8)
    adapter = ADAPTERS.build({"name": "identity"}, in_channels=3, out_channels=3)
    with pytest.raises(
        ValueError, match="input_adapter gives 3 channels but initializer expects 4"
    ):
        Seq2SeqModel(**{**parts, "input_adapter": adapter}, state_channels=8)
    with pytest.raises(ValueError, match="decoder channels must be positive widths"):
        tiny_model(decoder={"name": "seq2seq", "channels": []})
    with pytest.raises(ValueError, match="decoder kernel_size must be a positive odd int, got 4"):
        tiny_model(decoder={"name": "seq2seq", "channels": [8], "kernel_size": 4})
