"""The generic part tester, continued: the parts of the query-based models and their criteria.

Video object clusters (SOC), long-short cross-attention (LoSh), flow estimators (LoSh's flow
term) and the set criteria (``set``, ``soc``, ``losh``). Each is built through its registry with
the keywords its architecture injects, runs on tiny inputs, passes gradients where it has
trainable parameters, and rebuilds from its saved spec with identical results.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rvoslib import create_model
from rvoslib.losses.registry import CRITERIA, FLOW_ESTIMATORS
from rvoslib.models.registry import LONG_SHORT_ATTENTIONS, VIDEO_OBJECT_CLUSTERS

FIXTURES = Path(__file__).parent / "data" / "pre_refactor"
#: The kinds of part this file has a tester for (``test_part_tester`` checks every kind has one).
TESTED_KINDS = {"video object cluster", "long-short attention", "flow estimator", "criterion"}
#: Set criteria -> a tiny preset whose criterion spec names it (inputs from its saved fixtures).
SET_CRITERIA = {"set": "mttr-tiny", "soc": "soc-tiny", "losh": "losh-tiny"}


def _builtin(registry) -> list[str]:
    return [n for n in registry.names() if registry.get(n).__module__.startswith("rvoslib.")]


def _same_after_rebuild(registry, part, injected: dict, run) -> None:
    rebuilt = registry.build(registry.spec_of(part), **injected)
    rebuilt.load_state_dict(part.state_dict())
    part.eval(), rebuilt.eval()
    with torch.no_grad():
        torch.testing.assert_close(run(rebuilt), run(part), rtol=0, atol=0)


def _check_gradients(part: torch.nn.Module) -> None:
    trainable = [(n, p) for n, p in part.named_parameters() if p.requires_grad]
    assert trainable, "the part has no trainable parameter"
    missing = [n for n, p in trainable if p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    bad = [n for n, p in trainable if not p.grad.isfinite().all()]
    assert not bad, f"non-finite gradients: {bad[:5]}"


@pytest.mark.parametrize("name", _builtin(VIDEO_OBJECT_CLUSTERS))
def test_video_object_clusters(name: str) -> None:
    torch.manual_seed(0)
    injected = {"dim": 16, "num_queries": 3}
    spec = {"name": name, "num_heads": 2, "ffn_dim": 32, "num_encoder_layers": 1,
            "num_decoder_layers": 2}  # fmt: skip
    part = VIDEO_OBJECT_CLUSTERS.build(spec, **injected)
    frame_queries, text = torch.randn(2, 4, 3, 16), torch.randn(2, 16)
    out = part(frame_queries, text)
    assert out.video_queries.shape == (2, 3, 16)
    assert out.frame_queries.shape == (2, 4, 3, 16)
    assert out.layer_video_queries.shape == (2, 2, 3, 16)
    (out.video_queries.pow(2).mean() + out.frame_queries.pow(2).mean()).backward()
    _check_gradients(part)
    with pytest.raises(ValueError, match="num_heads"):
        VIDEO_OBJECT_CLUSTERS.build({**spec, "num_heads": 3}, **injected)
    _same_after_rebuild(
        VIDEO_OBJECT_CLUSTERS, part, injected, lambda p: p(frame_queries, text).video_queries
    )


@pytest.mark.parametrize("name", _builtin(LONG_SHORT_ATTENTIONS))
def test_long_short_attentions(name: str) -> None:
    torch.manual_seed(0)
    injected = {"dim": 8, "num_queries": 4}
    part = LONG_SHORT_ATTENTIONS.build({"name": name, "num_heads": 2, "gate_init": 0.5}, **injected)
    long, short = torch.randn(2, 1, 3, 4, 8), torch.randn(2, 1, 3, 4, 8)  # (Ly, B, T, N, D)
    new_long, new_short = part(long, short)
    assert new_long.shape == new_short.shape == long.shape
    assert not torch.equal(new_long, long) and not torch.equal(new_short, short)
    (new_long.pow(2).mean() + new_short.pow(2).mean()).backward()
    _check_gradients(part)
    with pytest.raises(ValueError, match="N=4 queries"):
        part(torch.randn(1, 1, 2, 5, 8), torch.randn(1, 1, 2, 5, 8))
    _same_after_rebuild(LONG_SHORT_ATTENTIONS, part, injected, lambda p: p(long, short)[0])


@pytest.mark.parametrize("name", _builtin(FLOW_ESTIMATORS))
def test_flow_estimators(name: str) -> None:
    """Flow estimators are frozen: no trainable parameter, no gradient, eval mode kept."""
    torch.manual_seed(0)
    part = FLOW_ESTIMATORS.build({"name": name, "num_flow_updates": 1})
    frames, targets = torch.randn(2, 3, 20, 28), torch.randn(2, 3, 20, 28)
    flow = part(frames, targets)
    assert flow.shape == (2, 2, 20, 28) and flow.dtype == torch.float32
    assert flow.isfinite().all() and not flow.requires_grad
    assert not any(p.requires_grad for p in part.parameters())
    part.train()
    assert all(not m.training for m in part.modules() if m is not part)
    _same_after_rebuild(FLOW_ESTIMATORS, part, {}, lambda p: p(frames, targets))


@pytest.mark.parametrize("name", sorted(SET_CRITERIA))
def test_set_criteria(name: str) -> None:
    """Named finite scalar terms of ``(outputs, batch)``; gradients reach every floating output
    the criterion reads; the saved spec rebuilds the same terms."""
    preset = SET_CRITERIA[name]
    saved = load_file(str(FIXTURES / preset / "expected.safetensors"))
    batch = {k.split(".", 1)[1]: v for k, v in saved.items() if k.startswith(("input.", "target."))}
    torch.manual_seed(0)
    model = create_model(preset)
    spec = CRITERIA.spec_of(model.criterion)
    assert spec["name"] == name
    part = CRITERIA.build(spec)
    outputs = model.forward_batch(batch)
    for value in outputs.values():
        if isinstance(value, torch.Tensor) and value.requires_grad:
            value.retain_grad()
    terms = part(outputs, batch)
    assert terms and all(v.ndim == 0 and v.isfinite() for v in terms.values())
    sum(terms.values()).backward()
    reached = [k for k, v in outputs.items() if isinstance(v, torch.Tensor) and v.grad is not None]
    assert "masks" in reached and all(outputs[k].grad.isfinite().all() for k in reached)
    detached = {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in outputs.items()}
    again = CRITERIA.build(CRITERIA.spec_of(part))(detached, batch)
    assert {k: v.item() for k, v in again.items()} == {k: v.item() for k, v in terms.items()}


def test_every_builtin_criterion_has_a_tester() -> None:
    assert set(_builtin(CRITERIA)) == {"mask", "first_frame_mask", *SET_CRITERIA}
