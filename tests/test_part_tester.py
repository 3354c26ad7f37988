"""One generic tester for every registered part of every kind (in the style of smp's tester).

Each part is built from a tiny spec through its registry, with the keywords the builder would
inject; it must run forward and backward on tiny inputs with finite gradients for every
trainable parameter, and rebuild from its saved spec with identical outputs.
"""

from __future__ import annotations

import pytest
import torch

import rvoslib.models  # noqa: F401  (registers the built-in parts)
from rvoslib.models import BACKBONES, FUSIONS, HEADS, TEMPORAL_MODULES, TEXT_ENCODERS, TextFeatures
from rvoslib.models.architectures import mttr as _mttr  # noqa: F401  (registers MTTR's parts)
from rvoslib.models.presets_common import TINY_TEXT_CONFIG
from rvoslib.models.registry import (
    ADAPTERS,
    DECODERS,
    MASK_HEADS,
    PIXEL_DECODERS,
    TEXT_PROJECTIONS,
    TRANSFORMERS,
    Registry,
)

TINY_BERT = {**TINY_TEXT_CONFIG, "vocab_size": 128, "num_hidden_layers": 1, "hidden_size": 16,
             "intermediate_size": 32}  # fmt: skip
#: Small keyword arguments of parts whose defaults are big (unknown names get none).
TINY_SPECS = {
    ("backbone", "timm"): {"model": "resnet10t"},
    ("backbone", "tinycnn"): {"channels": [8, 8, 16, 16]},
    ("backbone", "video_swin_t"): {"embed_dim": 8, "depths": [1, 1, 1, 1],
                                   "num_heads": [1, 1, 1, 1]},
    ("backbone", "video_swin_s"): {"embed_dim": 8, "depths": [1, 1, 1, 1],
                                   "num_heads": [1, 1, 1, 1]},
    ("backbone", "video_swin_b"): {"embed_dim": 8, "depths": [1, 1, 1, 1],
                                   "num_heads": [1, 1, 1, 1]},
    ("text encoder", "huggingface"): {"config": TINY_BERT, "tokenizer": "hash", "out_dim": 12},
    ("fusion", "cross_attention"): {"hidden_dim": 8, "num_heads": 2},
    ("head", "simple"): {"hidden_channels": 4},
    ("head", "fpn"): {"hidden_channels": 4},
    ("head", "fpn_dynamic"): {"hidden_channels": 4, "dynamic_width": 3},
    ("transformer", "deformable_referformer"): {"d_model": 16, "num_queries": 3,
        "num_encoder_layers": 1, "num_decoder_layers": 2, "num_heads": 2, "num_points": 2,
        "ffn_dim": 32},
    ("transformer", "deformable_soc"): {"d_model": 16, "num_queries": 3, "num_encoder_layers": 1,
        "num_decoder_layers": 2, "num_heads": 2, "num_points": 2, "ffn_dim": 32},
    ("pixel decoder", "cross_modal_fpn"): {"conv_dim": 16, "mask_dim": 8, "ffn_dim": 32,
                                           "num_heads": 2},
    ("mask head", "condinst"): {"hidden_channels": 4},
    ("transformer", "mttr"): {"d_model": 16, "num_heads": 2, "num_encoder_layers": 1,
                              "num_decoder_layers": 2, "ffn_dim": 32, "num_queries": 3},
    ("pixel decoder", "fpn_text"): {"film": True},
    ("decoder", "seq2seq"): {"channels": [8, 4], "kernel_size": 3},
}  # fmt: skip
VISUAL, TEXT, SIZE = 16, 12, 64
#: The kinds of part this file has a tester for (one line per owner of registries).
TESTED_KINDS = {
    "backbone", "text encoder", "fusion", "temporal module", "head", "transformer",
    "pixel decoder", "mask head",
    "decoder", "adapter", "text projection", "criterion",  # seq2seq parts, text projection
}  # fmt: skip


def _builtin(registry) -> list[str]:
    return [n for n in registry.names() if registry.get(n).__module__.startswith("rvoslib.")]


def _spec(registry, name: str) -> dict:
    return {"name": name, **TINY_SPECS.get((registry.kind, name), {})}


def _text(batch: int = 1) -> TextFeatures:
    mask = torch.ones(batch, 3, dtype=torch.bool)
    return TextFeatures(torch.randn(batch, TEXT), torch.randn(batch, 3, TEXT), mask)


def _check_gradients(part: torch.nn.Module) -> None:
    missing = [n for n, p in part.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    bad = [
        n for n, p in part.named_parameters() if p.grad is not None and not p.grad.isfinite().all()
    ]
    assert not bad, f"non-finite gradients: {bad[:5]}"


def _round_trip(registry, part, injected: dict, run) -> None:
    """Rebuild from the saved spec, load the weights, and compare outputs (eval mode)."""
    rebuilt = registry.build(registry.spec_of(part), **injected)
    rebuilt.load_state_dict(part.state_dict())
    part.eval(), rebuilt.eval()
    torch.manual_seed(1)
    inputs = run.inputs()
    with torch.no_grad():
        torch.testing.assert_close(run(rebuilt, inputs), run(part, inputs), rtol=0, atol=0)


class _Runner:
    def __init__(self, inputs, call) -> None:
        self.inputs, self.call = inputs, call

    def __call__(self, part, inputs):
        return self.call(part, inputs)


@pytest.mark.parametrize("name", _builtin(BACKBONES))
def test_backbones(name: str) -> None:
    torch.manual_seed(0)
    part = BACKBONES.build(_spec(BACKBONES, name), pretrained=False)
    assert len(part.out_channels) == len(part.strides) and part.strides == sorted(part.strides)
    frames = torch.randn(1, 2, 3, SIZE, SIZE)
    levels = part(frames)
    for level, channels, stride in zip(levels, part.out_channels, part.strides):
        assert level.shape == (1, 2, channels, -(-SIZE // stride), -(-SIZE // stride))
    sum(level.float().pow(2).mean() for level in levels).backward()
    _check_gradients(part)
    runner = _Runner(lambda: torch.randn(1, 2, 3, SIZE, SIZE), lambda p, x: p(x)[-1])
    _round_trip(BACKBONES, part, {"pretrained": False}, runner)


@pytest.mark.parametrize("name", _builtin(TEXT_ENCODERS))
def test_text_encoders(name: str) -> None:
    torch.manual_seed(0)
    part = TEXT_ENCODERS.build(_spec(TEXT_ENCODERS, name), pretrained=False)
    tokens = part.tokenize(["the red circle", "a dog"])
    features = part(tokens["input_ids"], tokens["attention_mask"])
    length = tokens["input_ids"].shape[1]
    assert features.sentence.shape == (2, part.out_dim)
    assert features.tokens.shape == (2, length, part.out_dim) and features.mask.shape == (2, length)
    (features.sentence.pow(2).mean() + features.tokens.pow(2).mean()).backward()
    _check_gradients(part)
    runner = _Runner(lambda: tokens, lambda p, t: p(t["input_ids"], t["attention_mask"]).sentence)
    _round_trip(TEXT_ENCODERS, part, {"pretrained": False}, runner)


@pytest.mark.parametrize("name", _builtin(FUSIONS))
def test_fusions(name: str) -> None:
    torch.manual_seed(0)
    injected = {"visual_channels": VISUAL, "text_dim": TEXT}
    part = FUSIONS.build(_spec(FUSIONS, name), **injected)
    visual = torch.randn(2, 3, VISUAL, 4, 5)
    fused = part(visual, _text(2))
    assert fused.shape == (2, 3, part.out_channels, 4, 5)
    fused.pow(2).mean().backward()
    _check_gradients(part)
    runner = _Runner(lambda: (torch.randn(2, 3, VISUAL, 4, 5), _text(2)), lambda p, x: p(*x))
    _round_trip(FUSIONS, part, injected, runner)


@pytest.mark.parametrize("name", _builtin(TEMPORAL_MODULES))
def test_temporal_modules(name: str) -> None:
    torch.manual_seed(0)
    injected = {"channels": 8}
    part = TEMPORAL_MODULES.build(_spec(TEMPORAL_MODULES, name), **injected)
    features = torch.randn(2, 3, 8, 4, 5, requires_grad=True)
    mixed = part(features)
    assert mixed.shape == features.shape
    mixed.pow(2).mean().backward()
    assert features.grad is not None and features.grad.isfinite().all()
    _check_gradients(part)
    runner = _Runner(lambda: torch.randn(2, 3, 8, 4, 5), lambda p, x: p(x))
    _round_trip(TEMPORAL_MODULES, part, injected, runner)


@pytest.mark.parametrize("name", _builtin(HEADS))
def test_heads(name: str) -> None:
    torch.manual_seed(0)
    injected = {"in_channels": 8, "skip_channels": [6, 4], "skip_strides": [8, 4], "text_dim": TEXT}
    part = HEADS.build(_spec(HEADS, name), **injected)

    def inputs():
        skips = [torch.randn(2, 2, 6, 8, 8), torch.randn(2, 2, 4, 16, 16)]
        return torch.randn(2, 2, 8, 4, 4), skips, _text(2)

    def run(head, values):
        fused, skips, text = values
        return head(fused, skips=skips, text=text, output_size=(61, 67))

    logits = run(part, inputs())
    assert logits.shape == (2, 2, 1, 61, 67)
    logits.pow(2).mean().backward()
    _check_gradients(part)
    _round_trip(HEADS, part, injected, _Runner(inputs, run))


@pytest.mark.parametrize("name", _builtin(TRANSFORMERS))
def test_transformers(name: str) -> None:
    torch.manual_seed(0)
    injected = {"visual_channels": [8, 16], "text_dim": TEXT}
    part = TRANSFORMERS.build(_spec(TRANSFORMERS, name), **injected)

    def inputs():
        return [torch.randn(2, 2, 8, 8, 8), torch.randn(2, 2, 16, 4, 4)], _text(2)

    out = part(*inputs())
    queries = out["queries"]
    assert queries.ndim == 5 and queries.shape[1:] == (2, 2, part.num_queries, part.d_model)
    for memory in out["memory"]:
        assert memory.shape[:3] == (2, 2, part.d_model)
    loss = queries.pow(2).mean() + sum(m.pow(2).mean() for m in out["memory"])
    if "boxes" in out:
        assert out["boxes"].shape == (*queries.shape[:4], 4)
        loss = loss + out["boxes"].pow(2).mean()
    if "text" in out:  # fused text features (SOC)
        loss = loss + out["text"].tokens.pow(2).mean() + out["text"].sentence.pow(2).mean()
    loss.backward()
    _check_gradients(part)
    runner = _Runner(inputs, lambda p, x: p(*x)["queries"])
    _round_trip(TRANSFORMERS, part, injected, runner)


@pytest.mark.parametrize("name", _builtin(PIXEL_DECODERS))
def test_pixel_decoders(name: str) -> None:
    torch.manual_seed(0)
    injected = {"in_channels": [4, 6, 16], "text_dim": TEXT}
    part = PIXEL_DECODERS.build(_spec(PIXEL_DECODERS, name), **injected)

    def inputs():
        sizes = ((4, 16), (6, 8), (16, 4))
        return [torch.randn(2, 2, c, s, s) for c, s in sizes], _text(2)

    pixels = part(*inputs())
    assert pixels.shape == (2, 2, part.out_channels, 16, 16)
    pixels.pow(2).mean().backward()
    _check_gradients(part)
    _round_trip(PIXEL_DECODERS, part, injected, _Runner(inputs, lambda p, x: p(*x)))


@pytest.mark.parametrize("name", _builtin(MASK_HEADS))
def test_mask_heads(name: str) -> None:
    torch.manual_seed(0)
    injected = {"query_dim": 16, "pixel_channels": 8}
    part = MASK_HEADS.build(_spec(MASK_HEADS, name), **injected)

    def inputs():
        return torch.randn(2, 2, 2, 3, 16), torch.randn(2, 2, 8, 12, 12)

    masks = part(*inputs())
    assert masks.shape == (2, 2, 2, 3, 12, 12)
    masks.pow(2).mean().backward()
    _check_gradients(part)
    _round_trip(MASK_HEADS, part, injected, _Runner(inputs, lambda p, x: p(*x)))


@pytest.mark.parametrize("name", _builtin(DECODERS))
def test_decoders(name: str) -> None:
    torch.manual_seed(0)
    injected = {"in_channels": 8}
    part = DECODERS.build(_spec(DECODERS, name), **injected)

    def inputs():
        return torch.randn(3, 8, 4, 5)

    logits = part(inputs(), output_size=(19, 23))
    assert logits.shape == (3, 1, 19, 23)
    logits.pow(2).mean().backward()
    _check_gradients(part)
    run = _Runner(inputs, lambda p, x: p(x, output_size=(16, 20)))
    _round_trip(DECODERS, part, injected, run)


@pytest.mark.parametrize("name", _builtin(ADAPTERS))
@pytest.mark.parametrize("channels", [(4, 3), (6, 6)])
def test_adapters(name: str, channels: tuple[int, int]) -> None:
    torch.manual_seed(0)
    injected = {"in_channels": channels[0], "out_channels": channels[1]}
    if name == "identity" and channels[0] != channels[1]:
        with pytest.raises(ValueError, match="adapter 'identity' cannot map 4 to 3 channels"):
            ADAPTERS.build(_spec(ADAPTERS, name), **injected)
        return
    part = ADAPTERS.build(_spec(ADAPTERS, name), **injected)
    features = torch.randn(2, channels[0], 5, 6, requires_grad=True)
    out = part(features)
    assert out.shape == (2, channels[1], 5, 6)
    out.pow(2).mean().backward()
    assert features.grad is not None and features.grad.isfinite().all()
    _check_gradients(part)
    _round_trip(ADAPTERS, part, injected, _Runner(lambda: torch.randn(2, channels[0], 5, 6),
                                                  lambda p, x: p(x)))  # fmt: skip


@pytest.mark.parametrize("name", _builtin(TEXT_PROJECTIONS))
def test_text_projections(name: str) -> None:
    torch.manual_seed(0)
    injected = {"in_dim": 16, "out_dim": TEXT}
    part = TEXT_PROJECTIONS.build(_spec(TEXT_PROJECTIONS, name), **injected)
    out = part(torch.randn(2, 4, 16))
    assert out.shape == (2, 4, TEXT)
    out.pow(2).mean().backward()
    _check_gradients(part)
    _round_trip(TEXT_PROJECTIONS, part, injected, _Runner(lambda: torch.randn(2, 4, 16),
                                                          lambda p, x: p(x)))  # fmt: skip


@pytest.mark.parametrize("name", ["mask", "first_frame_mask"])
def test_mask_criteria(name: str) -> None:
    """The criteria of one-mask models: named terms of ``(outputs, batch)``, gradients reach
    the logits, and the saved spec rebuilds the same terms."""
    from rvoslib.losses.registry import CRITERIA

    torch.manual_seed(0)
    part = CRITERIA.build({"name": name, "dice_weight": 0.5})
    logits = torch.randn(2, 3, 1, 8, 8, requires_grad=True)
    batch = {"masks": (torch.rand(2, 3, 8, 8) > 0.5).float(),
             "valid": torch.tensor([[True, True, False], [True, True, True]])}  # fmt: skip
    terms = part({"logits": logits}, batch)
    assert terms and all(v.ndim == 0 and v.isfinite() for v in terms.values())
    sum(terms.values()).backward()
    assert logits.grad is not None and logits.grad.isfinite().all()
    rebuilt = CRITERIA.build(CRITERIA.spec_of(part))
    again = rebuilt({"logits": logits.detach()}, batch)
    assert {k: v.item() for k, v in again.items()} == {k: v.item() for k, v in terms.items()}


def test_every_registry_has_a_tester() -> None:
    import rvoslib.losses.registry as criteria
    import rvoslib.models.registry as registries

    kinds = {
        value.kind
        for module in (registries, criteria)
        for value in vars(module).values()
        if isinstance(value, Registry) and value.kind != "architecture"
    }
    from test_part_tester_query import TESTED_KINDS as QUERY_KINDS

    tested = TESTED_KINDS | QUERY_KINDS
    assert kinds <= tested, f"registries without a tester: {sorted(kinds - tested)}"
