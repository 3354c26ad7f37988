"""MTTR: the multimodal transformer, the FPN pixel decoder, the kernel mask head, the model."""

from __future__ import annotations

import math

import pytest
import torch

import rvoslib.models  # noqa: F401  (registers the built-in parts)
from rvoslib.losses import query_targets
from rvoslib.models import RVOSModel, TextFeatures
from rvoslib.models.architectures.mttr import MTTR_CRITERION, MTTRConfig, MTTRModel
from rvoslib.models.architectures.query import plain_spec
from rvoslib.models.heads.mask_heads import KernelMaskHead
from rvoslib.models.heads.pixel_decoders import TextFPNPixelDecoder
from rvoslib.models.presets_query_mttr import (
    PRESET_DESCRIPTIONS,
    losh_mttr_swin_t,
    losh_tiny,
    mttr_swin_t,
    mttr_tiny,
)
from rvoslib.models.transformer.mttr import (
    MTTRDecoderLayer,
    MTTREncoderLayer,
    MTTRTransformer,
    detr_sine_positions,
)


def _parts(config) -> dict:
    """The parts of ``config``, built in its ``parts`` order as the one build path does."""
    built: dict = {}
    for name, part in config.part_slots().items():
        built[name] = part.build(getattr(config, name), built, config, False)
    return built


def _text(batch: int, length: int, dim: int, real: int | None = None) -> TextFeatures:
    mask = torch.zeros(batch, length, dtype=torch.bool)
    mask[:, : real or length] = True
    return TextFeatures(torch.randn(batch, dim), torch.randn(batch, length, dim), mask)


def _tiny_model(**changes) -> MTTRModel:
    torch.manual_seed(0)
    return RVOSModel.from_config(mttr_tiny().replace(**changes))


def _batch(model: MTTRModel, batch: int = 1, frames: int = 2, size: int = 64) -> dict:
    tokens = model.tokenize(["the red circle on the left", "a blue square"][:batch])
    masks = torch.zeros(batch, frames, size, size)
    masks[..., 8:30, 10:40] = 1
    return {
        "frames": torch.randn(batch, frames, 3, size, size),
        "text_ids": tokens["input_ids"],
        "text_mask": tokens["attention_mask"],
        "masks": masks,
        "valid": torch.ones(batch, frames, dtype=torch.bool),
    }


# ---------------------------------------------------------------------- positions
def test_detr_sine_positions_match_the_definition() -> None:
    height, width, dim, temperature = 3, 5, 8, 10000.0
    codes = detr_sine_positions(height, width, dim, temperature)
    features = dim // 2
    expected = torch.zeros(height, width, dim)
    for i in range(height):
        for j in range(width):
            y = (i + 1) / (height + 1e-6) * 2 * math.pi
            x = (j + 1) / (width + 1e-6) * 2 * math.pi
            for k in range(features):
                omega = temperature ** (2 * (k // 2) / features)
                trig = math.sin if k % 2 == 0 else math.cos
                expected[i, j, k] = trig(y / omega)
                expected[i, j, features + k] = trig(x / omega)
    torch.testing.assert_close(codes, expected, rtol=1e-5, atol=1e-5)


def test_detr_sine_positions_bad_dim() -> None:
    with pytest.raises(ValueError, match="multiple of 4, got 6"):
        detr_sine_positions(2, 2, 6)


# ---------------------------------------------------------------------- transformer
def _transformer(visual_channels: tuple[int, ...] = (12,), **kwargs) -> MTTRTransformer:
    torch.manual_seed(0)
    args = {"d_model": 16, "num_heads": 2, "num_encoder_layers": 2, "num_decoder_layers": 3,
            "ffn_dim": 32, "dropout": 0.0, "num_queries": 4, **kwargs}  # fmt: skip
    return MTTRTransformer(list(visual_channels), 10, **args).eval()


def test_transformer_shapes() -> None:
    transformer = _transformer()
    out = transformer([torch.randn(2, 3, 12, 4, 5)], _text(2, 6, 10))
    assert out["queries"].shape == (3, 2, 3, 4, 16)
    assert [m.shape for m in out["memory"]] == [(2, 3, 16, 4, 5)]
    assert transformer.d_model == 16 and transformer.num_queries == 4


def test_transformer_several_levels() -> None:
    transformer = _transformer((6, 12))
    out = transformer([torch.randn(1, 2, 6, 8, 8), torch.randn(1, 2, 12, 4, 4)], _text(1, 3, 10))
    assert out["queries"].shape == (3, 1, 2, 4, 16)
    assert [tuple(m.shape) for m in out["memory"]] == [(1, 2, 16, 8, 8), (1, 2, 16, 4, 4)]
    assert transformer.level_embed is not None and transformer.level_embed.shape == (2, 16)


def test_transformer_ignores_padding_tokens() -> None:
    transformer = _transformer()
    visual, text = torch.randn(2, 2, 12, 3, 3), _text(2, 6, 10, real=3)
    changed = text.tokens.clone()
    changed[:, 3:] = 100.0  # padding features must not matter
    with torch.no_grad():
        first = transformer([visual], text)
        second = transformer([visual], text._replace(tokens=changed))
    torch.testing.assert_close(first["queries"], second["queries"])
    torch.testing.assert_close(first["memory"][0], second["memory"][0])


def test_transformer_queries_are_tracks_shared_by_frames() -> None:
    """Frames are independent and the query positions are shared: equal frames give equal
    queries; the text matters."""
    transformer = _transformer()
    frame = torch.randn(1, 1, 12, 3, 3)
    text = _text(1, 4, 10)
    with torch.no_grad():
        queries = transformer([frame.expand(1, 3, 12, 3, 3).contiguous()], text)["queries"]
        other = transformer([frame.expand(1, 3, 12, 3, 3).contiguous()], _text(1, 4, 10))
    torch.testing.assert_close(queries[:, :, 0], queries[:, :, 2])
    assert not torch.allclose(queries, other["queries"])


def test_transformer_batches_frames_like_separate_calls() -> None:
    transformer = _transformer()
    visual, text = torch.randn(2, 3, 12, 3, 4), _text(2, 5, 10, real=4)
    with torch.no_grad():
        together = transformer([visual], text)["queries"]
        alone = transformer([visual[1:, 2:]], TextFeatures(*(v[1:] for v in text)))["queries"]
    torch.testing.assert_close(together[:, 1:, 2:], alone, rtol=1e-5, atol=1e-5)


def test_transformer_layers_are_post_norm() -> None:
    encoder = MTTREncoderLayer(8, 2, 16, dropout=0.0).eval()
    out = encoder(torch.randn(2, 5, 8) * 10, torch.zeros(1, 5, 8))
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 5), atol=1e-5, rtol=0)
    decoder = MTTRDecoderLayer(8, 2, 16, dropout=0.0).eval()
    out = decoder(torch.randn(2, 3, 8), torch.randn(2, 5, 8), torch.zeros(1, 3, 8),
                  torch.zeros(1, 5, 8))  # fmt: skip
    torch.testing.assert_close(out.std(-1, unbiased=False), torch.ones(2, 3), atol=1e-3, rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"d_model": 18, "num_heads": 2}, "multiple of 4"),
        ({"num_heads": 3}, r"num_heads \(3\) must divide d_model \(16\)"),
        ({"num_decoder_layers": 0}, "num_decoder_layers >= 1"),
        ({"num_queries": 0}, "num_queries must be >= 1, got 0"),
        ({"activation": "tanh"}, "activation must be one of"),
    ],
)
def test_transformer_bad_options(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _transformer(**kwargs)


def test_transformer_bad_inputs() -> None:
    transformer = _transformer()
    with pytest.raises(ValueError, match="list of 1 maps"):
        transformer([torch.randn(1, 2, 12, 3, 3)] * 2, _text(1, 3, 10))
    with pytest.raises(ValueError, match=r"levels\[0\] must be \(B, T, 12, h, w\)"):
        transformer([torch.randn(1, 2, 8, 3, 3)], _text(1, 3, 10))
    with pytest.raises(ValueError, match=r"text.tokens must be \(2, L, 10\)"):
        transformer([torch.randn(2, 2, 12, 3, 3)], _text(1, 3, 10))
    with pytest.raises(ValueError, match="visual_channels must be positive ints"):
        _transformer(())


# ---------------------------------------------------------------------- pixel decoder
def test_pixel_decoder_widths_follow_mttr() -> None:
    decoder = TextFPNPixelDecoder([96, 192, 256], text_dim=256)
    widths = [stage[0].out_channels for stage in [*decoder.top, *decoder.stages]]
    assert widths == [256, 128, 64, 32]  # MTTR: d_model, /2, /4, /8 for two finer levels
    assert [a.out_channels for a in decoder.adapters] == [128, 64]
    assert decoder.output.out_channels == 8 and decoder.out_channels == 8
    deeper = TextFPNPixelDecoder([48, 96, 192, 256], text_dim=256)  # MTTR's 'extra layer'
    assert deeper.output.in_channels == 16


def test_pixel_decoder_shapes_and_film() -> None:
    torch.manual_seed(0)
    levels = [torch.randn(2, 3, 4, 16, 16), torch.randn(2, 3, 6, 8, 8), torch.randn(2, 3, 16, 3, 3)]
    plain = TextFPNPixelDecoder([4, 6, 16], text_dim=12, out_channels=5)
    text = _text(2, 3, 12)
    assert plain(levels, text).shape == (2, 3, 5, 16, 16)
    film = TextFPNPixelDecoder([4, 6, 16], text_dim=12, out_channels=5, film=True)
    film.load_state_dict(plain.state_dict(), strict=False)
    torch.testing.assert_close(film(levels, text), plain(levels, text))  # zero-initialised
    torch.nn.init.normal_(film.film[0].weight)
    other = text._replace(sentence=torch.randn(2, 12))
    assert not torch.allclose(film(levels, text), film(levels, other))
    assert torch.equal(plain(levels, text), plain(levels, other))  # MTTR: no sentence input


def test_pixel_decoder_bad_inputs() -> None:
    decoder = TextFPNPixelDecoder([4, 16], text_dim=12)
    with pytest.raises(ValueError, match="list of 2 maps"):
        decoder([torch.randn(1, 1, 16, 3, 3)], _text(1, 2, 12))
    with pytest.raises(ValueError, match=r"levels\[1\] must be \(B, T, 16, h, w\)"):
        decoder([torch.randn(1, 1, 4, 6, 6), torch.randn(1, 1, 8, 3, 3)], _text(1, 2, 12))
    with pytest.raises(ValueError, match="in_channels must be a non-empty list"):
        TextFPNPixelDecoder([], text_dim=12)
    with pytest.raises(ValueError, match="must be >= 1, got 16, 0, 8 and 12"):
        TextFPNPixelDecoder([4, 16], text_dim=12, out_channels=0)
    film = TextFPNPixelDecoder([4, 16], text_dim=12, film=True)
    levels = [torch.randn(1, 1, 4, 6, 6), torch.randn(1, 1, 16, 3, 3)]
    with pytest.raises(ValueError, match=r"text.sentence must be \(1, 12\)"):
        film(levels, _text(1, 2, 10))


# ---------------------------------------------------------------------- mask head
def test_kernel_mask_head_equals_explicit_dot_products() -> None:
    torch.manual_seed(0)
    head = KernelMaskHead(query_dim=6, pixel_channels=3)
    queries, pixels = torch.randn(2, 1, 2, 4, 6), torch.randn(1, 2, 3, 5, 7)
    masks = head(queries, pixels)
    assert masks.shape == (2, 1, 2, 4, 5, 7)
    linear1, linear2 = head.layers
    for layer in range(2):
        for t in range(2):
            for n in range(4):
                kernel = linear2(torch.relu(linear1(queries[layer, 0, t, n])))
                expected = (kernel[:, None, None] * pixels[0, t]).sum(0)
                torch.testing.assert_close(masks[layer, 0, t, n], expected, rtol=1e-5, atol=1e-5)


def test_kernel_mask_head_bad_inputs() -> None:
    head = KernelMaskHead(query_dim=6, pixel_channels=3)
    with pytest.raises(ValueError, match=r"pixels must be \(B, T, 3, h, w\)"):
        head(torch.randn(1, 1, 2, 4, 6), torch.randn(1, 2, 4, 5, 5))
    with pytest.raises(ValueError, match="must share"):
        head(torch.randn(1, 1, 2, 4, 6), torch.randn(1, 3, 3, 5, 5))
    with pytest.raises(ValueError, match="must be >= 1"):
        KernelMaskHead(query_dim=6, pixel_channels=3, num_layers=0)


# ---------------------------------------------------------------------- the model
def test_mttr_forward_backward_and_losses() -> None:
    model = _tiny_model()
    batch = _batch(model)
    outputs = model.forward_batch(batch)
    layers, queries = 2, 5
    assert outputs["is_referred"].shape == (layers, 1, 2, queries, 2)
    assert outputs["masks"].shape == (layers, 1, 2, queries, 16, 16)
    assert outputs["logits"].shape == (1, 2, 1, 64, 64)
    terms = model.losses(outputs, batch)
    assert sorted(terms) == ["class", "dice", "mask_focal"]
    sum(terms.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
    assert all(p.grad.isfinite().all() for p in model.parameters() if p.grad is not None)


def test_mttr_aux_loss_switch() -> None:
    criterion = {**mttr_tiny().criterion, "aux_loss": False}
    model = _tiny_model(criterion=criterion)
    batch = _batch(model)
    outputs = model.forward_batch(batch)
    last = {k: v[-1:] for k, v in outputs.items() if k != "logits"}
    expected = model.criterion.set_criterion(last, query_targets(batch))
    terms = model.losses(outputs, batch)
    assert sorted(terms) == sorted(expected)
    for key, value in terms.items():
        torch.testing.assert_close(value, expected[key])
    everything = _tiny_model().losses(outputs, batch)["dice"]
    assert everything > terms["dice"]  # two layers supervised instead of one


def test_mttr_referred_logits_pick_the_best_query(monkeypatch) -> None:
    model = _tiny_model().eval()
    batch = _batch(model, frames=3)
    scores = torch.zeros(2, 1, 3, 5, 2)  # (Ly, B, T, N, K): softmax, index 0 = referred
    scores[-1, 0, :, 3, 0] = torch.tensor([2.0, 0.5, 2.0])  # query 3 best on average ...
    scores[-1, 0, 1, 1, 0] = 4.0  # ... although query 1 wins one frame
    masks = torch.arange(5.0).view(1, 1, 1, 5, 1, 1).expand(2, 1, 3, 5, 16, 16)
    monkeypatch.setattr(model, "predict_queries", lambda q, p: {"is_referred": scores,
                                                                 "masks": masks})  # fmt: skip
    logits = model(batch["frames"], batch["text_ids"], batch["text_mask"])
    assert logits.shape == (1, 3, 1, 64, 64) and torch.all(logits == 3.0)


def test_mttr_more_objects_than_queries_is_an_error() -> None:
    model = _tiny_model()
    batch = _batch(model)
    batch["instance_masks"] = [torch.zeros(6, 2, 64, 64)]  # 6 objects, 5 queries
    batch["referred"] = [torch.tensor([True] + [False] * 5)]
    with pytest.raises(ValueError, match="M=6 real targets but only N=5 queries"):
        model.losses(model.forward_batch(batch), batch)


def test_mttr_save_and_load_round_trip(tmp_path) -> None:
    model = _tiny_model().eval()
    batch = _batch(model, batch=2)
    model.save_pretrained(tmp_path / "mttr")
    loaded = RVOSModel.from_pretrained(tmp_path / "mttr").eval()
    assert isinstance(loaded, MTTRModel)
    saved, built = loaded.config.to_dict(), model.config.to_dict()
    assert saved.pop("text_encoder")["config"] == built.pop("text_encoder")["config"]
    assert saved == built
    with torch.no_grad():
        expected = model(batch["frames"], batch["text_ids"], batch["text_mask"])
        actual = loaded(batch["frames"], batch["text_ids"], batch["text_mask"])
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def test_mttr_predict_in_chunks_and_parameter_groups() -> None:
    model = _tiny_model().eval()
    batch = _batch(model, frames=4)
    whole = model.predict(batch)
    assert whole.shape == (1, 4, 1, 64, 64) and whole.dtype == torch.float32
    chunked = model.predict(batch, clip_len=2)
    first = model(batch["frames"][:, :2], batch["text_ids"], batch["text_mask"])
    torch.testing.assert_close(chunked[:, :2], first)
    groups = model.parameter_groups()
    assert groups["backbone"] and groups["text"] and groups["other"]
    owned = {id(p) for p in model.transformer.parameters()}
    assert owned <= {id(p) for p in groups["other"]}


def test_mttr_swin_t_wiring_on_a_shrunk_backbone() -> None:
    """The published config's strides and channels, with a small Video Swin and text model."""
    config = mttr_swin_t()
    assert config.backbone["out_strides"] == [4, 8, 16] and config.transformer_levels == 1
    assert config.text_encoder["model_name_or_path"] == "roberta-base"
    assert config.text_encoder["freeze"] is True and config.transformer["num_queries"] == 50
    small = config.replace(
        backbone={"embed_dim": 8, "depths": [1, 1, 1], "num_heads": [1, 1, 1]},
        text_encoder=mttr_tiny().text_encoder,
        transformer={"d_model": 32, "ffn_dim": 16, "num_queries": 3, "num_heads": 2},
    )
    model = RVOSModel.from_config(small).eval()
    assert model.transformer.visual_channels == [32]  # stride 16 of embed_dim 8: 4 x 8
    assert model.pixel_decoder.in_channels == [8, 16, 32]  # strides 4, 8 and the memory
    tokens = model.tokenize(["a man"])
    assert model(torch.randn(1, 2, 3, 64, 96), tokens["input_ids"]).shape == (1, 2, 1, 64, 96)


def test_mttr_config_errors() -> None:
    with pytest.raises(ValueError, match=r"transformer_levels must be in \[1, 3\]"):
        RVOSModel.from_config(mttr_tiny().replace(transformer_levels=4))
    with pytest.raises(ValueError, match=r"transformer_levels must be in \[1, 3\].*got 0"):
        RVOSModel.from_config(mttr_tiny().replace(transformer_levels=0))
    parts = _parts(mttr_tiny())
    other = _parts(mttr_tiny().replace(pixel_decoder={"out_channels": 4}))
    with pytest.raises(ValueError, match="pixel_decoder gives 4 channels but mask_head expects 8"):
        MTTRModel(**{**parts, "pixel_decoder": other["pixel_decoder"]})
    with pytest.raises(ValueError, match="unknown MTTRConfig keys"):
        MTTRConfig.from_dict({"num_queries": 3})


def test_preset_functions() -> None:
    assert mttr_tiny().architecture == "mttr" and losh_tiny().architecture == "losh"
    swin_t = losh_mttr_swin_t()
    assert swin_t.cross_attention is None and swin_t.criterion["flow_weight"] == 0
    # losh-tiny keeps LoSh's cross-attention but leaves the flow term off: it needs flow data
    assert losh_tiny().cross_attention["name"] == "long_short"
    assert losh_tiny().criterion["flow_weight"] == 0
    assert mttr_tiny().criterion == plain_spec(MTTR_CRITERION)
    assert set(PRESET_DESCRIPTIONS) == {"mttr-swin-t", "mttr-swin-t-rvoslib", "mttr-tiny",
                                        "losh-mttr-swin-t", "losh-mttr-swin-t-rvoslib",
                                        "losh-tiny"}  # fmt: skip


def test_query_model_candidates_are_every_query_with_its_referred_probability() -> None:
    model = _tiny_model().eval()
    batch = _batch(model)
    with torch.no_grad():
        outputs = model.forward_batch(batch)
    logits, scores = model.candidates(outputs)
    assert logits.shape == outputs["masks"].shape[1:] and scores.shape == logits.shape[:3]
    torch.testing.assert_close(scores, outputs["is_referred"][-1].softmax(-1)[..., 0])
