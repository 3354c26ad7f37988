"""ReferFormer: its deformable transformer with early fusion, the cross-modal FPN pixel decoder,
the CondInst mask head, the architecture and its presets."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rvoslib.models.architectures.referformer import ReferFormerConfig, ReferFormerModel
from rvoslib.models.base import RVOSModel
from rvoslib.models.heads.condinst import (
    CondInstMaskHead,
    CrossModalFPNDecoder,
    relative_coordinates,
)
from rvoslib.models.presets_query_deformable import (
    referformer_swin_t,
    referformer_tiny,
    soc_swin_t,
    soc_tiny,
)
from rvoslib.models.registry import MASK_HEADS, PIXEL_DECODERS, TRANSFORMERS
from rvoslib.models.text import TextFeatures
from rvoslib.models.transformer.referformer import ReferFormerTransformer

SMALL_TRANSFORMER = {
    "d_model": 16, "num_queries": 3, "num_encoder_layers": 1, "num_decoder_layers": 2,
    "num_heads": 2, "num_points": 2, "ffn_dim": 32,
}  # fmt: skip


def _parts(config) -> dict:
    """The parts of ``config``, built in its ``parts`` order as the one build path does."""
    built: dict = {}
    for name, part in config.part_slots().items():
        built[name] = part.build(getattr(config, name), built, config, False)
    return built


def _text(batch: int = 1, length: int = 3, dim: int = 12) -> TextFeatures:
    mask = torch.ones(batch, length, dtype=torch.bool)
    return TextFeatures(torch.randn(batch, dim), torch.randn(batch, length, dim), mask)


def _batch(model: RVOSModel, batch: int = 1, frames: int = 2, size: int = 64) -> dict:
    torch.manual_seed(3)
    tokens = model.tokenize(["the red circle moving left", "a square"][:batch] * batch)
    masks = torch.zeros(batch, frames, size, size)
    masks[:, :, 10:30, 20:40] = 1
    masks[:, -1] = 0  # the object leaves in the last frame
    return {
        "frames": torch.randn(batch, frames, 3, size, size),
        "text_ids": tokens["input_ids"][:batch],
        "text_mask": tokens["attention_mask"][:batch],
        "masks": masks,
        "valid": torch.ones(batch, frames, dtype=torch.bool),
    }


@pytest.fixture(scope="module")
def model() -> ReferFormerModel:
    torch.manual_seed(0)
    return RVOSModel.from_config(referformer_tiny())


def _check_gradients(module: torch.nn.Module) -> None:
    missing = [n for n, p in module.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    bad = [
        n
        for n, p in module.named_parameters()
        if p.grad is not None and not p.grad.isfinite().all()
    ]
    assert not bad, f"non-finite gradients: {bad[:5]}"


# ---------------------------------------------------------------- the architecture
def test_forward_backward_losses_and_shapes(model: ReferFormerModel) -> None:
    model.train().zero_grad()
    batch = _batch(model, frames=3)
    outputs = model.forward_batch(batch)
    layers, queries = model.transformer.num_layers, model.transformer.num_queries
    assert outputs["is_referred"].shape == (layers, 1, 3, queries, 1)
    assert outputs["boxes"].shape == (layers, 1, 3, queries, 4)
    assert outputs["masks"].shape == (layers, 1, 3, queries, 16, 16)
    assert outputs["logits"].shape == (1, 3, 1, 64, 64)
    assert ((outputs["boxes"] > 0) & (outputs["boxes"] < 1)).all()
    losses = model.losses(outputs, batch)
    assert sorted(losses) == ["box_l1", "class", "dice", "giou", "mask_focal"]
    assert all(value.ndim == 0 and value.isfinite() for value in losses.values())
    sum(losses.values()).backward()
    _check_gradients(model)


def test_forward_is_the_best_query_of_the_last_layer(model: ReferFormerModel) -> None:
    model.eval()
    batch = _batch(model)
    with torch.no_grad():
        outputs = model.forward_batch(batch)
        logits = model(batch["frames"], batch["text_ids"], batch["text_mask"])
    scores = outputs["is_referred"][-1, 0, :, :, 0].sigmoid().mean(0)  # (N,)
    best = int(scores.argmax())
    expected = F.interpolate(outputs["masks"][-1, 0, :, best : best + 1], size=(64, 64),
                             mode="bilinear", align_corners=False)  # fmt: skip
    torch.testing.assert_close(logits[0], expected)


def test_clips_of_a_batch_are_independent(model: ReferFormerModel) -> None:
    model.eval()
    batch = _batch(model, batch=2)
    with torch.no_grad():
        both = model.forward_batch(batch)
        first = model.forward_batch({k: v[:1] for k, v in batch.items()})
    for key in ("is_referred", "masks", "boxes"):
        torch.testing.assert_close(both[key][:, :1], first[key], atol=1e-5, rtol=1e-4)


def test_frames_are_processed_alike(model: ReferFormerModel) -> None:
    """Without a temporal backbone ReferFormer-tiny is equivariant to the order of frames: query
    n of every frame comes from the same learned position (one track), nothing else orders
    frames (the pixel decoder's attention over the clip has no temporal position)."""
    model.eval()
    batch = _batch(model, frames=3)
    order = torch.tensor([2, 0, 1])
    with torch.no_grad():
        outputs = model.forward_batch(batch)
        permuted = model.forward_batch({**batch, "frames": batch["frames"][:, order]})
    for key in ("is_referred", "masks", "boxes"):
        torch.testing.assert_close(permuted[key], outputs[key][:, :, order], atol=1e-5, rtol=1e-4)


def test_odd_frame_size(model: ReferFormerModel) -> None:
    model.eval()
    tokens = model.tokenize(["the cross"])
    with torch.no_grad():
        logits = model(torch.randn(1, 2, 3, 61, 67), tokens["input_ids"])
    assert logits.shape == (1, 2, 1, 61, 67) and logits.isfinite().all()


def test_save_and_load_round_trip(model: ReferFormerModel, tmp_path) -> None:
    model.eval()
    model.save_pretrained(tmp_path / "referformer")
    loaded = RVOSModel.from_pretrained(tmp_path / "referformer").eval()
    assert isinstance(loaded, ReferFormerModel)
    for field in ("backbone", "transformer", "pixel_decoder", "mask_head", "criterion"):
        assert getattr(loaded.config, field) == getattr(model.config, field)
    batch = _batch(model)
    with torch.no_grad():
        expected = model.forward_batch(batch)
        actual = loaded.forward_batch(batch)
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=0)


def test_parts_that_do_not_fit_are_named() -> None:
    parts = _parts(referformer_tiny())
    parts["mask_head"] = CondInstMaskHead(query_dim=32, pixel_channels=8)
    with pytest.raises(ValueError, match="transformer gives 64 channels but mask_head expects 32"):
        ReferFormerModel(**parts)
    parts = _parts(referformer_tiny())
    parts["pixel_decoder"] = CrossModalFPNDecoder([16, 64, 64, 64], text_dim=64, conv_dim=8)
    with pytest.raises(ValueError, match="pixel_decoder expects"):
        ReferFormerModel(**parts)


def test_config_round_trip_and_presets() -> None:
    config = referformer_tiny()
    assert ReferFormerConfig.from_dict(config.to_dict()) == config
    published = referformer_swin_t()
    assert published.backbone["name"] == "video_swin_t"
    assert published.backbone["out_strides"] == [4, 8, 16, 32]
    assert published.text_encoder["model_name_or_path"] == "roberta-base"
    transformer = TRANSFORMERS.get(published.transformer["name"])
    assert transformer is ReferFormerTransformer
    assert published.transformer["num_queries"] == 5
    assert published.mask_head["hidden_channels"] == 8
    soc = soc_swin_t()
    assert soc.transformer == {"name": "deformable_soc", "num_queries": 20,
                               "text_positions": "original"}  # fmt: skip
    assert soc.pixel_decoder == {"name": "fpn_text", "out_channels": 8}
    assert soc_tiny().backbone["temporal_shift_stages"] == [0, 1]


# ---------------------------------------------------------------- the transformer
def _transformer(**changes) -> ReferFormerTransformer:
    torch.manual_seed(0)
    options = {**SMALL_TRANSFORMER, "num_levels": 3, **changes}
    return ReferFormerTransformer([8, 16], text_dim=12, **options).eval()


def _levels(batch: int = 1, frames: int = 2) -> list[torch.Tensor]:
    return [torch.randn(batch, frames, 8, 8, 8), torch.randn(batch, frames, 16, 4, 4)]


def test_transformer_shapes() -> None:
    transformer = _transformer()
    out = transformer(_levels(2, 3), _text(2))
    assert out["queries"].shape == (2, 2, 3, 3, 16)
    assert out["boxes"].shape == out["references"].shape == (2, 2, 3, 3, 4)
    assert out["initial_reference"].shape == (2, 3, 3, 2)
    assert [tuple(m.shape) for m in out["memory"]] == [(2, 3, 16, 8, 8), (2, 3, 16, 4, 4),
                                                       (2, 3, 16, 2, 2)]  # fmt: skip
    assert out["text"].tokens.shape == (2, 3, 16) and out["text"].sentence.shape == (2, 16)
    torch.testing.assert_close(out["references"], out["boxes"])  # detached copies


def test_predict_boxes_equals_the_decoder_refinement() -> None:
    out = _transformer()(_levels(), _text())
    boxes = _transformer().predict_boxes(
        out["queries"], out["initial_reference"], out["references"]
    )
    torch.testing.assert_close(boxes, out["boxes"])


def test_identical_frames_give_identical_queries() -> None:
    """Query n has the same position and content in every frame: the frames of a clip are
    decoded alike (query n is one track)."""
    level_frames = [level[:, :1].expand(-1, 3, -1, -1, -1) for level in _levels()]
    out = _transformer()(level_frames, _text())
    for frame in (1, 2):
        torch.testing.assert_close(out["queries"][:, :, frame], out["queries"][:, :, 0])


def test_query_content_is_the_sentence() -> None:
    transformer = _transformer(fusion="none")
    text, other, levels = _text(), _text(), _levels()
    other = TextFeatures(other.sentence, text.tokens, text.mask)  # only the sentence differs
    with torch.no_grad():
        first = transformer(levels, text)["queries"]
        second = transformer(levels, other)["queries"]
    assert not torch.allclose(first, second)
    zero = _transformer(fusion="none", query_content="zero")
    with torch.no_grad():
        torch.testing.assert_close(zero(levels, text)["queries"], zero(levels, other)["queries"])


def test_early_fusion_is_visual_times_attention_per_level() -> None:
    """All levels fused in one call equal ReferFormer's per-level ``v * MHA(v, text + pos)``."""
    from rvoslib.models.fusion.mmf import _text_positions

    transformer = _transformer()
    projected = [torch.randn(2, 16, 8, 8), torch.randn(2, 16, 4, 4)]  # (B*T, D, h, w), B=1, T=2
    tokens, mask = torch.randn(1, 3, 16), torch.tensor([[True, True, False]])
    fused, _ = transformer._fuse(projected, tokens, mask, 1, 2)
    keys = tokens + _text_positions(mask, 16)
    for level, result in zip(projected, fused):
        visual = level.unflatten(0, (1, 2)).permute(0, 1, 3, 4, 2).reshape(1, -1, 16)
        attended = transformer.early_fusion(visual, keys, tokens, key_padding_mask=~mask)[0]
        expected = (visual * attended).reshape(2, *level.shape[-2:], 16).permute(0, 3, 1, 2)
        torch.testing.assert_close(result, expected, atol=1e-5, rtol=1e-4)


def test_padding_tokens_do_not_matter() -> None:
    transformer = _transformer()
    text = _text(length=4)
    text = TextFeatures(text.sentence, text.tokens, torch.tensor([[True, True, True, False]]))
    changed = text.tokens.clone()
    changed[:, 3] = 100.0
    levels = _levels()
    with torch.no_grad():
        first = transformer(levels, text)["queries"]
        second = transformer(levels, text._replace(tokens=changed))["queries"]
    torch.testing.assert_close(first, second)


def test_transformer_bad_input() -> None:
    transformer = _transformer()
    with pytest.raises(
        ValueError, match=r"levels must hold 2 maps \(visual_channels=\[8, 16\]\), got 1"
    ):
        transformer(_levels()[:1], _text())
    with pytest.raises(ValueError, match=r"levels\[1\] must be \(1, 2, 16, h, w\)"):
        transformer([_levels()[0], torch.randn(1, 2, 5, 4, 4)], _text())
    with pytest.raises(ValueError, match="text.sentence must be"):
        transformer(_levels(), _text(dim=7))
    with pytest.raises(TypeError, match="levels must be a list"):
        transformer(torch.randn(1, 2, 8, 8, 8), _text())
    with pytest.raises(ValueError, match="fusion must be one of"):
        ReferFormerTransformer([8], 12, fusion="sum")
    with pytest.raises(ValueError, match="query_content must be one of"):
        ReferFormerTransformer([8], 12, query_content="learned")
    with pytest.raises(
        ValueError, match=r"num_levels \(1\) must be >= the number of visual levels \(2\)"
    ):
        ReferFormerTransformer([8, 8], 12, num_levels=1)
    with pytest.raises(ValueError, match="text_level must index"):
        ReferFormerTransformer(
            [8], 12, d_model=16, num_heads=2, fusion="bidirectional", text_level=3
        )


# ---------------------------------------------------------------- the mask side
def test_relative_coordinates_by_hand() -> None:
    # a 2 x 4 map: pixel centres x = 0.125, 0.375, 0.625, 0.875 and y = 0.25, 0.75
    coords = relative_coordinates(torch.tensor([[0.5, 0.25]]), (2, 4))
    assert coords.shape == (1, 2, 2, 4)
    assert coords[0, 0].tolist() == [[0.375, 0.125, -0.125, -0.375]] * 2
    assert coords[0, 1].tolist() == [[0.0] * 4, [-0.5] * 4]


def test_condinst_equals_per_query_convolutions() -> None:
    """Against CondInst's definition: per query, 1x1 convolutions on [pixels, x_ref - x,
    y_ref - y] with weights and biases cut from the controller output (weights first)."""
    torch.manual_seed(0)
    head = CondInstMaskHead(query_dim=6, pixel_channels=3, hidden_channels=4)
    queries, pixels = torch.randn(2, 1, 2, 3, 6), torch.randn(1, 2, 3, 5, 7)
    references = torch.rand(2, 1, 2, 3, 2)
    out = head(queries, pixels, reference_points=references)
    assert out.shape == (2, 1, 2, 3, 5, 7)
    shapes = [(4, 5), (4, 4), (1, 4)]
    for layer in range(2):
        for frame in range(2):
            for query in range(3):
                params = head.controller(queries[layer, 0, frame, query])
                weights, offset = [], 0
                for out_ch, in_ch in shapes:
                    weights.append(
                        params[offset : offset + out_ch * in_ch].view(out_ch, in_ch, 1, 1)
                    )
                    offset += out_ch * in_ch
                biases = []
                for out_ch, _ in shapes:
                    biases.append(params[offset : offset + out_ch])
                    offset += out_ch
                x_ref, y_ref = references[layer, 0, frame, query].tolist()
                xs = (torch.arange(7) + 0.5) / 7
                ys = (torch.arange(5) + 0.5) / 5
                rel = torch.stack([(x_ref - xs).expand(5, 7), (y_ref - ys)[:, None].expand(5, 7)])
                hidden = torch.cat([pixels[0, frame], rel])[None]
                for index, (weight, bias) in enumerate(zip(weights, biases)):
                    hidden = F.conv2d(hidden, weight, bias)
                    if index < 2:
                        hidden = F.relu(hidden)
                torch.testing.assert_close(
                    out[layer, 0, frame, query], hidden[0, 0], atol=1e-5, rtol=1e-4
                )


def test_condinst_without_references_uses_the_centre() -> None:
    torch.manual_seed(0)
    head = CondInstMaskHead(query_dim=6, pixel_channels=3)
    queries, pixels = torch.randn(1, 1, 2, 3, 6), torch.randn(1, 2, 3, 4, 4)
    centre = torch.full((1, 1, 2, 3, 2), 0.5)
    torch.testing.assert_close(
        head(queries, pixels), head(queries, pixels, reference_points=centre)
    )
    plain = CondInstMaskHead(query_dim=6, pixel_channels=3, relative_coordinates=False)
    assert plain.layer_shapes[0] == (8, 3) and plain(queries, pixels).shape == (1, 1, 2, 3, 4, 4)


def test_condinst_bad_input() -> None:
    head = CondInstMaskHead(query_dim=6, pixel_channels=3)
    with pytest.raises(ValueError, match=r"queries must be \(Ly, B, T, N, 6\)"):
        head(torch.randn(1, 1, 2, 3, 5), torch.randn(1, 2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"pixels must be \(1, 2, 3, h, w\)"):
        head(torch.randn(1, 1, 2, 3, 6), torch.randn(1, 2, 4, 4, 4))
    with pytest.raises(ValueError, match=r"reference_points must be \(1, 1, 2, 3, 2\)"):
        head(torch.randn(1, 1, 2, 3, 6), torch.randn(1, 2, 3, 4, 4), torch.rand(1, 1, 2, 3, 4))
    with pytest.raises(ValueError, match="must be >= 1"):
        CondInstMaskHead(query_dim=6, pixel_channels=0)


def test_cross_modal_fpn() -> None:
    torch.manual_seed(0)
    decoder = CrossModalFPNDecoder([4, 16, 16], text_dim=12, conv_dim=16, mask_dim=8, ffn_dim=32,
                                   num_heads=2).eval()  # fmt: skip
    assert [block.reduction for block in decoder.blocks] == [4, 2, 1]
    levels = [
        torch.randn(1, 2, 4, 16, 16),
        torch.randn(1, 2, 16, 8, 8),
        torch.randn(1, 2, 16, 4, 4),
    ]
    text = _text()
    out = decoder(levels, text)
    assert out.shape == (1, 2, 8, 16, 16)
    other = decoder(levels, text._replace(tokens=torch.randn(1, 3, 12)))
    assert not torch.allclose(out, other)  # conditioned on the text
    plain = CrossModalFPNDecoder([4, 16, 16], text_dim=12, conv_dim=16, mask_dim=8,
                                 vision_language=False).eval()  # fmt: skip
    assert len(plain.blocks) == 0
    torch.testing.assert_close(
        plain(levels, text), plain(levels, text._replace(tokens=torch.randn(1, 3, 12)))
    )
    with pytest.raises(ValueError, match=r"levels must hold 3 maps"):
        decoder(levels[:2], text)
    with pytest.raises(ValueError, match=r"levels\[2\] must be \(1, 2, 16, h, w\)"):
        decoder([*levels[:2], torch.randn(1, 2, 8, 4, 4)], text)
    with pytest.raises(ValueError, match="num_heads"):
        CrossModalFPNDecoder([4], text_dim=12, conv_dim=18, num_heads=4)


# ---------------------------------------------------------------- generic part checks
PARTS = [
    (TRANSFORMERS, "deformable_referformer", {**SMALL_TRANSFORMER}),
    (TRANSFORMERS, "deformable_soc", {**SMALL_TRANSFORMER}),
    (
        PIXEL_DECODERS,
        "cross_modal_fpn",
        {"conv_dim": 16, "mask_dim": 8, "ffn_dim": 32, "num_heads": 2},
    ),
    (MASK_HEADS, "condinst", {"hidden_channels": 4}),
]


def _run_part(registry, part, seed: int):
    torch.manual_seed(seed)
    if registry is TRANSFORMERS:
        out = part(_levels(), _text())
        memory = sum(m.sum() for m in out["memory"])
        return out["queries"].sum() + out["boxes"].sum() + memory + out["text"].tokens.sum()
    if registry is PIXEL_DECODERS:
        return part([torch.randn(1, 2, 4, 16, 16), torch.randn(1, 2, 16, 8, 8)], _text())
    return part(torch.randn(2, 1, 2, 3, 16), torch.randn(1, 2, 8, 8, 8), torch.rand(2, 1, 2, 3, 2))


@pytest.mark.parametrize(("registry", "name", "spec"), PARTS, ids=[p[1] for p in PARTS])
def test_registered_parts(registry, name: str, spec: dict) -> None:
    injected = {
        TRANSFORMERS: {"visual_channels": [8, 16], "text_dim": 12},
        PIXEL_DECODERS: {"in_channels": [4, 16], "text_dim": 12},
        MASK_HEADS: {"query_dim": 16, "pixel_channels": 8},
    }[registry]
    torch.manual_seed(0)
    part = registry.build({"name": name, **spec}, **injected).train()
    out = _run_part(registry, part, 1)
    out.float().pow(2).mean().backward()
    _check_gradients(part)
    rebuilt = registry.build(registry.spec_of(part), **injected)
    rebuilt.load_state_dict(part.state_dict())
    part.eval(), rebuilt.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            _run_part(registry, rebuilt, 2), _run_part(registry, part, 2), rtol=0, atol=0
        )
