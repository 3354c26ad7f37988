"""Each model part alone: backbones, text encoders, fusion, temporal module, heads."""

from __future__ import annotations

import pytest
import torch
import torchvision

from rvoslib.models import (
    CrossModalFusion,
    HashTokenizer,
    MultiHeadCrossAttention,
    MultiScaleSegmentationHead,
    SegmentationHead,
    TemporalModule,
    TextEncoder,
    TextFeatures,
    VisualBackbone,
    temporal_shift,
)

TINY_BERT = {
    "model_type": "bert",
    "vocab_size": 256,
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}


@pytest.mark.parametrize(
    ("name", "channels"),
    [
        ("resnet18", [64, 128, 256, 256]),
        ("resnet34", [64, 128, 256, 256]),
        ("resnet50", [256, 512, 1024, 1024]),
        ("resnet101", [256, 512, 1024, 1024]),
        ("tinycnn", [16, 32, 64, 64]),
    ],
)
def test_backbone_levels(name, channels) -> None:
    backbone = VisualBackbone(name)
    assert backbone.out_channels == channels
    assert backbone.strides == [4, 8, 16, 32]
    features = backbone(torch.randn(1, 2, 3, 64, 96))
    for feature, c, s in zip(features, backbone.out_channels, backbone.strides):
        assert feature.shape == (1, 2, c, 64 // s, 96 // s)


def test_timm_backbone() -> None:
    backbone = VisualBackbone("resnet10t", out_strides=(8, 16, 32), refine_last=False)
    features = backbone(torch.randn(2, 3, 64, 64))
    assert [f.shape[1] for f in features] == backbone.out_channels
    assert [64 // f.shape[-1] for f in features] == backbone.strides == [8, 16, 32]


def test_unknown_backbone_lists_valid_names() -> None:
    with pytest.raises(KeyError, match="resnet18, resnet34, resnet50, resnet101, tinycnn"):
        VisualBackbone("resnet-9000")
    with pytest.raises(
        ValueError, match=r"out_strides must be a subset of \(4, 8, 16, 32\), got \[2\]"
    ):
        VisualBackbone("tinycnn", out_strides=(2,))


def test_backbone_loads_local_torchvision_checkpoint(tmp_path) -> None:
    reference = torchvision.models.resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    backbone = VisualBackbone("resnet18", checkpoint_path=path)
    torch.testing.assert_close(backbone.trunk.stem[0].weight, reference.conv1.weight)
    torch.testing.assert_close(
        backbone.trunk.stages[3][1].conv2.weight, reference.layer4[1].conv2.weight
    )


def test_backbone_loads_local_timm_safetensors(tmp_path) -> None:
    from safetensors.torch import save_file

    source = VisualBackbone("resnet10t", refine_last=False)
    save_file(
        {k: v.contiguous() for k, v in source.trunk.state_dict().items()},
        tmp_path / "w.safetensors",
    )
    loaded = VisualBackbone(
        "resnet10t", refine_last=False, checkpoint_path=tmp_path / "w.safetensors"
    )
    images = torch.randn(1, 3, 64, 64)
    source.eval(), loaded.eval()
    for a, b in zip(source(images), loaded(images)):
        torch.testing.assert_close(a, b)


def test_backbone_checkpoint_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        VisualBackbone("resnet18", checkpoint_path=tmp_path / "missing.pth")
    torch.save({"unrelated.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="does not fit backbone 'resnet18'"):
        VisualBackbone("resnet18", checkpoint_path=tmp_path / "bad.pth")


def test_backbone_freezing() -> None:
    backbone = VisualBackbone("resnet18", freeze_stages=2, frozen_bn=True)
    assert not any(p.requires_grad for p in backbone.trunk.stem.parameters())
    assert not any(p.requires_grad for p in backbone.trunk.stages[0].parameters())
    assert all(p.requires_grad for p in backbone.trunk.stages[1].parameters() if p.ndim > 1)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in backbone.trunk.modules())


def test_backbone_rejects_wrong_channels() -> None:
    with pytest.raises(ValueError, match=r"frames must be \(N, 3, H, W\), got \(2, 1, 64, 64\)"):
        VisualBackbone("tinycnn")(torch.randn(2, 1, 64, 64))


def test_hash_tokenizer_is_deterministic_and_word_level() -> None:
    tokenizer = HashTokenizer(vocab_size=1000, max_length=6)
    first = tokenizer(["The red circle", "a b c d e f g"])
    again = HashTokenizer(vocab_size=1000)(["the RED circle"])
    assert torch.equal(first["input_ids"][0, :5], again["input_ids"][0])
    assert first["input_ids"].shape == (2, 6)  # truncated to max_length
    assert first["input_ids"][1, -1].item() == HashTokenizer.sep_token_id
    assert first["attention_mask"][0].tolist() == [1, 1, 1, 1, 1, 0]


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_text_encoder_shapes_and_padding_invariance(pooling) -> None:
    encoder = TextEncoder(
        "x", config=TINY_BERT, tokenizer="hash", out_dim=16, pooling=pooling
    ).eval()
    short = encoder.tokenize(["the red circle"])
    padded = {k: torch.cat([v, torch.zeros(1, 3, dtype=v.dtype)], 1) for k, v in short.items()}
    with torch.no_grad():
        a = encoder(short["input_ids"], short["attention_mask"])
        b = encoder(padded["input_ids"], padded["attention_mask"])
    assert (
        a.sentence.shape == (1, 16) and a.tokens.shape == (1, 5, 16) and a.mask.dtype == torch.bool
    )
    torch.testing.assert_close(a.sentence, b.sentence, atol=1e-5, rtol=1e-5)


def test_text_encoder_freeze() -> None:
    encoder = TextEncoder("x", config=TINY_BERT, tokenizer="hash", out_dim=8, freeze=True).train()
    assert not encoder.language_model.training
    tokens = encoder.tokenize(["a dog"])
    encoder(tokens["input_ids"], tokens["attention_mask"]).sentence.sum().backward()
    assert all(p.grad is None for p in encoder.language_model.parameters())
    assert all(p.grad is not None for p in encoder.projection.parameters())


def test_text_encoder_builds_known_architectures_offline() -> None:
    encoder = TextEncoder("bert-base-uncased", out_dim=8)
    assert encoder.hidden_size == 768
    assert encoder.language_model.config.num_hidden_layers == 12
    with pytest.raises(ValueError, match="cannot build text model 'no/such-model' offline"):
        TextEncoder("no/such-model")


def test_text_encoder_pooling_validated() -> None:
    with pytest.raises(ValueError, match="pooling must be 'cls', 'mean' or 'pooler', got 'max'"):
        TextEncoder("x", config=TINY_BERT, pooling="max")


def _features(batch=2, length=5, dim=32) -> TextFeatures:
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[0, 3:] = False
    return TextFeatures(torch.randn(batch, dim), torch.randn(batch, length, dim), mask)


@pytest.mark.parametrize("mode", ["sentence", "tokens"])
def test_fusion_shapes(mode) -> None:
    fusion = CrossModalFusion(24, 32, hidden_dim=16, num_heads=4, mode=mode)
    assert fusion(torch.randn(2, 3, 24, 5, 7), _features()).shape == (2, 3, 16, 5, 7)


def test_fusion_ignores_padding_tokens() -> None:
    fusion = CrossModalFusion(24, 32, hidden_dim=16, num_heads=4, mode="tokens").eval()
    visual, text = torch.randn(2, 1, 24, 4, 4), _features()
    changed = text.tokens.clone()
    changed[0, 3:] = 100.0  # padding positions of row 0
    with torch.no_grad():
        torch.testing.assert_close(
            fusion(visual, text), fusion(visual, text._replace(tokens=changed))
        )


def test_sdpa_attention_equals_torch_mha() -> None:
    sdpa = MultiHeadCrossAttention(16, 4, dropout=0.0, implementation="sdpa").eval()
    mha = MultiHeadCrossAttention(16, 4, dropout=0.0, implementation="torch_mha").eval()
    with torch.no_grad():
        mha.mha.in_proj_weight.copy_(torch.cat([sdpa.q_proj.weight, sdpa.kv_proj.weight]))
        mha.mha.in_proj_bias.copy_(torch.cat([sdpa.q_proj.bias, sdpa.kv_proj.bias]))
        mha.mha.out_proj.weight.copy_(sdpa.out_proj.weight)
        mha.mha.out_proj.bias.copy_(sdpa.out_proj.bias)
        queries, keys = torch.randn(2, 7, 16), torch.randn(2, 5, 16)
        key_mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
        torch.testing.assert_close(sdpa(queries, keys, key_mask), mha(queries, keys, key_mask))


def test_fusion_errors() -> None:
    fusion = CrossModalFusion(24, 32, hidden_dim=16, num_heads=4)
    with pytest.raises(
        ValueError, match=r"visual must be \(B, T, 24, h, w\), got \(2, 3, 8, 5, 7\)"
    ):
        fusion(torch.randn(2, 3, 8, 5, 7), _features())
    with pytest.raises(ValueError, match="mode must be one of"):
        CrossModalFusion(24, 32, mode="pixels")
    with pytest.raises(ValueError, match=r"num_heads \(3\) must divide the width \(16\)"):
        CrossModalFusion(24, 32, hidden_dim=16, num_heads=3)


@pytest.mark.parametrize("frames", [1, 4])
def test_temporal_module(frames) -> None:
    module = TemporalModule(8)
    out = module(torch.randn(2, frames, 8, 5, 6))
    assert out.shape == (2, frames, 8, 5, 6)
    with pytest.raises(ValueError, match=r"features must be \(B, T, 8, h, w\)"):
        module(torch.randn(2, 8, 5, 6))


def test_temporal_module_mixes_frames() -> None:
    module = TemporalModule(4).eval()
    video = torch.randn(1, 3, 4, 6, 6)
    changed = video.clone()
    changed[:, 0] += 1.0
    with torch.no_grad():
        assert not torch.allclose(module(video)[:, 1], module(changed)[:, 1])


def test_heads_upsample_to_exact_size() -> None:
    head = SegmentationHead(8, 4)
    assert head(torch.randn(1, 2, 8, 4, 5), output_size=(97, 131)).shape == (1, 2, 1, 97, 131)
    head = MultiScaleSegmentationHead(8, [6, 4], text_dim=10, hidden_channels=4)
    skips = [torch.randn(1, 2, 6, 7, 9), torch.randn(1, 2, 4, 13, 17)]
    text = TextFeatures(torch.randn(1, 10), torch.randn(1, 3, 10), torch.ones(1, 3).bool())
    fused = torch.randn(1, 2, 8, 4, 5)
    out = head(fused, skips=skips, text=text, output_size=(97, 131))
    assert out.shape == (1, 2, 1, 97, 131)
    with pytest.raises(ValueError, match=r"skips must hold 2 maps with channels \[6, 4\], got 1"):
        head(fused, skips=skips[:1], text=text, output_size=(97, 131))
    with pytest.raises(ValueError, match=r"text.sentence must be \(1, 10\), got \(1, 7\)"):
        bad = TextFeatures(torch.randn(1, 7), torch.randn(1, 3, 7), torch.ones(1, 3).bool())
        head(fused, skips=skips, text=bad, output_size=(97, 131))


def test_fusion_positions_make_output_position_dependent() -> None:
    from rvoslib.models import sine_positions

    codes = sine_positions(4, 4, 16)
    assert codes.shape == (4, 4, 16)
    assert not torch.allclose(codes[0, 0], codes[0, 3]) and not torch.allclose(
        codes[0, 0], codes[3, 0]
    )
    fusion = CrossModalFusion(8, 32, hidden_dim=16, num_heads=2, positions=True).eval()
    flat = torch.ones(1, 1, 8, 4, 4)  # the same feature everywhere
    with torch.no_grad():
        out = fusion(flat, _features(batch=1))
    assert not torch.allclose(out[..., 0, 0], out[..., 0, 3])
    with pytest.raises(ValueError, match="divisible by 4, got 18"):
        CrossModalFusion(8, 32, hidden_dim=18, num_heads=2, positions=True)


def test_dynamic_mask_kernels_locate_and_predict() -> None:
    from rvoslib.models import DynamicMaskKernels

    kernels = DynamicMaskKernels(4, 6, 5, width=3)
    with torch.no_grad():  # the query matches channel 0 of the keys, strongly
        kernels.key.weight.copy_(torch.eye(4)[:, :, None, None])
        kernels.key.bias.zero_()
        kernels.query.weight.zero_()
        kernels.query.bias.copy_(torch.tensor([50.0, 0, 0, 0]))
    coarse = torch.zeros(2, 4, 4, 8)
    coarse[0, 0, 1, 6] = 1.0  # frame 0 points at row 1, column 6
    coarse[1, 0, 3, 0] = 1.0
    location, pooled = kernels.locate(coarse, torch.randn(2, 5))
    expected = torch.tensor([[1.5 / 4, 6.5 / 8], [3.5 / 4, 0.5 / 8]])
    torch.testing.assert_close(location, expected, atol=1e-3, rtol=0)
    assert pooled.shape == (2, 4)
    pixels = torch.randn(2, 6, 16, 32, requires_grad=True)
    logits = kernels(coarse, pixels, torch.randn(2, 5))
    assert logits.shape == (2, 1, 16, 32)
    logits.sum().backward()
    assert pixels.grad is not None and kernels.controller.weight.grad is not None
    assert kernels.controller.out_features == 3 * 9 + 3 * 4 + 1 * 4  # (6+2)->3->3->1
    with pytest.raises(ValueError, match=r"pixels must be \(2, 6, H, W\), got \(2, 5, 16, 32\)"):
        kernels(coarse, torch.randn(2, 5, 16, 32), torch.randn(2, 5))


def test_dynamic_mask_head_adds_kernel_logits() -> None:
    from rvoslib.models import DynamicMaskHead

    head = DynamicMaskHead(8, [6], text_dim=10, hidden_channels=4, dynamic_width=3).eval()
    text = TextFeatures(torch.randn(2, 10), torch.randn(2, 3, 10), torch.ones(2, 3).bool())
    fused, skips = torch.randn(2, 1, 8, 4, 4), [torch.randn(2, 1, 6, 16, 16)]
    logits = head(fused, skips=skips, text=text, output_size=(61, 64))
    assert logits.shape == (2, 1, 1, 61, 64)
    with torch.no_grad():  # without its kernels it is the FPN head
        head.dynamic.controller.weight.zero_()
        head.dynamic.controller.bias.zero_()
        plain = MultiScaleSegmentationHead.forward(
            head, fused, skips=skips, text=text, output_size=(61, 64)
        )
        torch.testing.assert_close(head(fused, skips=skips, text=text, output_size=(61, 64)), plain)
    with pytest.raises(ValueError, match="num_layers and width must be >= 1, got 3 and 0"):
        DynamicMaskHead(8, [6], text_dim=10, dynamic_width=0)


def test_temporal_shift_moves_channels_between_frames() -> None:
    clip = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 16, 2, 3)  # frame t holds t
    shifted = temporal_shift(clip, num_frames=2, fold_div=4)  # two clips of two frames
    assert shifted.shape == clip.shape
    assert shifted[:, :4, 0, 0].tolist() == [[1.0] * 4, [0.0] * 4, [3.0] * 4, [0.0] * 4]
    assert shifted[:, 4:8, 0, 0].tolist() == [[0.0] * 4, [0.0] * 4, [0.0] * 4, [2.0] * 4]
    torch.testing.assert_close(shifted[:, 8:], clip[:, 8:])
    assert temporal_shift(clip, num_frames=1) is clip
    with pytest.raises(ValueError, match=r"features batch \(4\) must be a multiple of num_frames"):
        temporal_shift(clip, num_frames=3)


def test_backbone_temporal_shift_lets_frames_see_each_other() -> None:
    shifted = VisualBackbone("tinycnn", out_strides=(4, 8), temporal_shift_stages=(0, 1)).eval()
    plain = VisualBackbone("tinycnn", out_strides=(4, 8)).eval()
    plain.load_state_dict(shifted.state_dict())
    clip = torch.randn(1, 3, 3, 32, 32)
    changed = clip.clone()
    changed[:, 1] += 1.0  # only the middle frame changes
    for backbone, reacts in ((shifted, True), (plain, False)):
        with torch.no_grad():
            before, after = backbone(clip)[0], backbone(changed)[0]
        assert torch.allclose(before[:, 0], after[:, 0]) != reacts  # does frame 0 react?
    with torch.no_grad():  # a 4-D batch of single frames is not shifted
        torch.testing.assert_close(shifted(clip[0])[0], plain(clip[0])[0])
    with pytest.raises(ValueError, match=r"temporal_shift_stages must be stage indices in 0-3"):
        VisualBackbone("tinycnn", temporal_shift_stages=(4,))
