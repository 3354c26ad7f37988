"""LoSh on MTTR: joint prediction, intersection loss and cost, cross-attention, flow consistency."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import rvoslib.models  # noqa: F401  (registers the built-in parts)
from rvoslib.losses import query_targets
from rvoslib.losses.flow import flow_consistency_loss
from rvoslib.losses.long_short import long_short_intersection_loss
from rvoslib.losses.matching import prepare_targets
from rvoslib.models import RVOSModel, TextFeatures
from rvoslib.models.architectures.losh import (
    LoShConfig,
    LoShModel,
    pair_text,
    referred_flow_loss,
)
from rvoslib.models.presets_query_mttr import losh_tiny
from rvoslib.models.transformer.long_short_attention import LongShortCrossAttention

CRITERION_KEYS = ("intersection_weight", "intersection_cost_weight", "flow_weight", "flow_loss",
                  "flow_estimator")  # fmt: skip


def _model(**changes) -> LoShModel:
    """losh-tiny with every addition on (the preset leaves flow off); criterion keywords among
    ``changes`` go into the criterion spec."""
    config = losh_tiny()
    criterion = {**config.criterion, "flow_weight": 1.0}
    criterion.update({key: changes.pop(key) for key in CRITERION_KEYS if key in changes})
    torch.manual_seed(0)
    return RVOSModel.from_config(config.replace(criterion=criterion, **changes))


def _batch(model: LoShModel, batch: int = 2, frames: int = 3, size: int = 64) -> dict:
    long = model.tokenize(["the red circle moving to the left", "a blue square next to a dog"])
    short = model.tokenize(["the red circle", "a blue square"])
    masks = torch.zeros(batch, frames, size, size)
    masks[..., 8:30, 10:40] = 1
    return {
        "frames": torch.randn(batch, frames, 3, size, size),
        "text_ids": long["input_ids"][:batch],
        "text_mask": long["attention_mask"][:batch],
        "short_text_ids": short["input_ids"][:batch],
        "short_text_mask": short["attention_mask"][:batch],
        "masks": masks,
        "valid": torch.ones(batch, frames, dtype=torch.bool),
        "flow_forward": torch.zeros(batch, frames - 1, 2, size, size),
        "flow_backward": torch.zeros(batch, frames - 1, 2, size, size),
    }


# ---------------------------------------------------------------------- text pairing
def test_pair_text_pads_the_shorter_expression() -> None:
    long = TextFeatures(torch.randn(2, 4), torch.randn(2, 3, 4), torch.ones(2, 3).bool())
    short = TextFeatures(torch.randn(2, 4), torch.randn(2, 5, 4), torch.ones(2, 5).bool())
    paired = pair_text(long, short)
    assert paired.tokens.shape == (4, 5, 4) and paired.sentence.shape == (4, 4)
    assert paired.mask[:2].tolist() == [[True] * 3 + [False] * 2] * 2
    assert torch.equal(paired.tokens[:2, 3:], torch.zeros(2, 2, 4))
    assert torch.equal(paired.tokens[2:], short.tokens)
    with pytest.raises(ValueError, match="same batch size and width"):
        pair_text(long, TextFeatures(torch.randn(1, 4), torch.randn(1, 2, 4), torch.ones(1, 2)))


# ---------------------------------------------------------------------- cross-attention
def test_cross_attention_starts_as_identity_and_mixes_the_branches() -> None:
    torch.manual_seed(0)
    long, short = torch.randn(2, 1, 3, 4, 8), torch.randn(2, 1, 3, 4, 8)  # (Ly, B, T, N, D)
    identity = LongShortCrossAttention(8, num_queries=4, num_heads=2)
    new_long, new_short = identity(long, short)
    assert torch.equal(new_long, long) and torch.equal(new_short, short)
    mixer = LongShortCrossAttention(8, num_queries=4, num_heads=2, gate_init=1.0).eval()
    new_long, new_short = mixer(long, short)
    assert new_long.shape == long.shape and new_short.shape == short.shape
    changed = short.clone()
    changed[:, :, 1] = torch.randn(2, 1, 4, 8)  # the short queries of frame 1 only
    other_long, _ = mixer(long, changed)
    assert not torch.allclose(other_long[:, :, 1], new_long[:, :, 1])  # long reads short
    torch.testing.assert_close(other_long[:, :, 0], new_long[:, :, 0])  # frames stay apart
    torch.testing.assert_close(other_long[:, :, 2], new_long[:, :, 2])
    changed_long = long.clone()
    changed_long[:, :, 2] = torch.randn(2, 1, 4, 8)
    assert not torch.allclose(mixer(changed_long, short)[1][:, :, 2], new_short[:, :, 2])


def test_cross_attention_errors() -> None:
    mixer = LongShortCrossAttention(8, num_queries=4, num_heads=2)
    with pytest.raises(ValueError, match="short must have the shape of long"):
        mixer(torch.randn(1, 4, 8), torch.randn(2, 4, 8))
    with pytest.raises(ValueError, match="N=4 queries"):
        mixer(torch.randn(1, 3, 8), torch.randn(1, 3, 8))
    with pytest.raises(ValueError, match=r"num_heads \(3\) must divide dim \(8\)"):
        LongShortCrossAttention(8, num_heads=3)


# ---------------------------------------------------------------------- the model
def test_losh_outputs_both_branches_and_all_terms() -> None:
    model = _model(cross_attention={"name": "long_short", "num_heads": 4, "gate_init": 0.5})
    batch = _batch(model)
    outputs = model.forward_batch(batch)
    for prefix in ("", "short_"):
        assert outputs[prefix + "is_referred"].shape == (2, 2, 3, 5, 2)
        assert outputs[prefix + "masks"].shape == (2, 2, 3, 5, 16, 16)
    assert outputs["logits"].shape == (2, 3, 1, 64, 64)
    terms = model.losses(outputs, batch)
    assert sorted(terms) == ["class", "dice", "flow", "intersection", "mask_focal"]
    sum(terms.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
    assert all(p.grad.isfinite().all() for p in model.parameters() if p.grad is not None)
    assert model.cross_attention.long_from_short.in_proj_weight.grad.abs().sum() > 0


def test_losh_terms_are_summed_over_both_branches() -> None:
    model = _model(intersection_weight=0.0, intersection_cost_weight=0.0, flow_weight=0.0)
    batch = _batch(model)
    outputs = model.forward_batch(batch)
    terms = model.losses(outputs, batch)
    assert sorted(terms) == ["class", "dice", "mask_focal"]
    targets = query_targets(batch)
    long = {k: outputs[k] for k in ("is_referred", "masks")}
    short = {k: outputs["short_" + k] for k in ("is_referred", "masks")}
    matcher = model.criterion.matcher
    cost = matcher.cost(long, targets) + matcher.cost(short, targets)
    assignment = cost.argmin(2)  # one target per clip: the Hungarian result is the argmin
    expected_long = model.criterion.set_criterion.terms(long, targets, assignment)
    expected_short = model.criterion.set_criterion.terms(short, targets, assignment)
    for key in terms:
        torch.testing.assert_close(terms[key], expected_long[key] + expected_short[key])


def test_losh_without_short_text_uses_the_long_text() -> None:
    model = _model(cross_attention=None).eval()
    batch = _batch(model)
    del batch["short_text_ids"], batch["short_text_mask"]
    with torch.no_grad():
        outputs = model.forward_batch(batch)
    torch.testing.assert_close(outputs["short_masks"], outputs["masks"])
    torch.testing.assert_close(outputs["short_is_referred"], outputs["is_referred"])


def test_losh_inference_is_the_long_branch() -> None:
    model = _model(cross_attention=None).eval()
    batch = _batch(model)
    with torch.no_grad():
        joint = model.forward_batch(batch)["logits"]
        alone = model(batch["frames"], batch["text_ids"], batch["text_mask"])
    torch.testing.assert_close(alone, joint, rtol=1e-5, atol=1e-5)


def test_losh_predict_uses_the_short_text_with_cross_attention() -> None:
    model = _model(cross_attention={"name": "long_short", "num_heads": 4, "gate_init": 1.0}).eval()
    batch = _batch(model)
    with_short = model.predict(batch)
    without = model.predict({k: v for k, v in batch.items() if not k.startswith("short_")})
    assert with_short.shape == (2, 3, 1, 64, 64)
    assert not torch.allclose(with_short, without)
    torch.testing.assert_close(without, model(batch["frames"], batch["text_ids"],
                                              batch["text_mask"]))  # fmt: skip


def test_losh_switches() -> None:
    full = _model()
    no_cross = _model(cross_attention=None)
    mttr_like = _model(joint_prediction=False)
    cross_params = sum(p.numel() for p in full.cross_attention.parameters())
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(full) - count(no_cross) == cross_params > 0
    assert no_cross.cross_attention is None and mttr_like.cross_attention is None
    batch = _batch(full)
    outputs = mttr_like.forward_batch(batch)
    assert "short_masks" not in outputs
    assert sorted(mttr_like.losses(outputs, batch)) == ["class", "dice", "flow", "mask_focal"]
    no_flow = _model(flow_weight=0.0, intersection_weight=0.0)
    assert sorted(no_flow.losses(no_flow.forward_batch(batch), batch)) == [
        "class", "dice", "mask_focal"]  # fmt: skip


def test_intersection_loss_matches_its_definition() -> None:
    model = _model(flow_weight=0.0)
    targets = query_targets(_batch(model, batch=1, frames=2))
    targets["frame_valid"][0, 1] = False  # only frame 0 counts
    targets = prepare_targets(targets, with_boxes=False)
    long, short = torch.randn(2, 1, 2, 5, 16, 16) * 3, torch.randn(2, 1, 2, 5, 16, 16) * 3
    assignment = torch.tensor([[[3]], [[1]]])  # (Ly, B, M): query 3 in layer 0, 1 in layer 1
    loss = model.criterion._intersection_loss(long, short, targets, assignment)
    expected = 0.0
    for layer, query in enumerate((3, 1)):
        up = [
            F.interpolate(m[layer, 0, 0, query][None, None], size=(64, 64), mode="bilinear")[0]
            for m in (long, short)
        ]
        expected += long_short_intersection_loss(up[0], up[1])
    torch.testing.assert_close(loss, expected)


def test_intersection_cost_changes_the_matching() -> None:
    """Two queries with the same class and Dice costs; only query 1's short mask covers its
    long mask. With the intersection cost query 1 is matched (intersection loss ~0)."""
    masks = torch.zeros(1, 1, 1, 8, 8)
    masks[..., :, :4] = 1  # the target: the left half
    batch = {"masks": masks[:, :, 0], "valid": torch.ones(1, 1, dtype=torch.bool),
             "frames": torch.zeros(1, 1, 3, 8, 8)}  # fmt: skip
    top, bottom = torch.full((8, 8), -20.0), torch.full((8, 8), -20.0)
    top[:4, :4], bottom[4:, :4] = 20.0, 20.0  # two halves of the target: same Dice
    long = torch.stack([top, top])[None, None, None]  # (Ly, B, T, N, h, w)
    short = torch.stack([bottom, top])[None, None, None]
    scores = torch.zeros(1, 1, 1, 2, 2)
    scores[..., 0, 0] = 0.05  # a slight class preference for query 0
    outputs = {"is_referred": scores, "masks": long, "short_is_referred": scores,
               "short_masks": short, "logits": torch.zeros(1, 1, 1, 8, 8)}  # fmt: skip
    with_cost = _model(flow_weight=0.0).losses(outputs, batch)["intersection"]
    without = _model(flow_weight=0.0, intersection_cost_weight=0.0).losses(outputs, batch)
    assert with_cost < 1e-3 and without["intersection"] > 0.5 * 0.8


# ---------------------------------------------------------------------- flow consistency
def test_referred_flow_loss_equals_a_loop_over_valid_pairs() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8)
    forward, backward = torch.randn(2, 2, 2, 16, 16), torch.randn(2, 2, 2, 16, 16)
    valid = torch.tensor([[True, False], [True, True]])
    loss = referred_flow_loss(logits, forward, backward, valid, kind="dice")
    resized = F.interpolate(logits, size=(16, 16), mode="bilinear")
    values = []
    for b, t in valid.nonzero().tolist():
        a, s = resized[b, t][None, None], resized[b, t + 1][None, None]
        fw, bw = forward[b, t][None], backward[b, t][None]
        values.append(flow_consistency_loss(a, s, fw, bw, "dice")
                      + flow_consistency_loss(s, a, bw, fw, "dice"))  # fmt: skip
    torch.testing.assert_close(loss, torch.stack(values).mean())


def test_referred_flow_loss_is_zero_for_a_mask_moving_with_the_flow() -> None:
    logits = torch.full((1, 2, 16, 16), -9.0)
    logits[0, 0, 4:8, 2:6] = 9.0
    logits[0, 1, 4:8, 5:9] = 9.0  # moved 3 pixels right
    forward, backward = torch.zeros(1, 1, 2, 16, 16), torch.zeros(1, 1, 2, 16, 16)
    forward[:, :, 0], backward[:, :, 0] = 3.0, -3.0
    assert referred_flow_loss(logits, forward, backward) < 1e-6
    assert referred_flow_loss(logits, torch.zeros_like(forward), torch.zeros_like(forward)) > 0.01


def test_referred_flow_loss_errors() -> None:
    flow = torch.zeros(1, 1, 2, 8, 8)
    with pytest.raises(ValueError, match=r"flow_forward must be \(1, 2, 2, H, W\)"):
        referred_flow_loss(torch.randn(1, 3, 8, 8), flow, flow)
    with pytest.raises(ValueError, match="kind must be one of"):
        referred_flow_loss(torch.randn(1, 2, 8, 8), flow, flow, kind="l2")


def test_losh_flow_term_uses_the_batch_flow() -> None:
    model = _model(intersection_weight=0.0).eval()
    batch = _batch(model)
    with torch.no_grad():
        outputs = model.forward_batch(batch)
        still = model.losses(outputs, batch)["flow"]
        moved = dict(batch, flow_forward=batch["flow_forward"] + 5.0,
                     flow_backward=batch["flow_backward"] - 5.0)  # fmt: skip
        shifted = model.losses(outputs, moved)["flow"]
    assert still.isfinite() and not torch.isclose(still, shifted)
    assert "_flow_estimator" not in model.criterion.__dict__  # no estimator was needed


def test_losh_flow_without_flow_or_estimator_is_an_error() -> None:
    model = _model(intersection_weight=0.0)
    batch = _batch(model)
    del batch["flow_forward"], batch["flow_backward"]
    with pytest.raises(KeyError, match="flow_forward"):
        model.losses(model.forward_batch(batch), batch)
    bad = dict(_batch(model), flow_forward=torch.zeros(2, 3, 2, 64, 64))
    with pytest.raises(ValueError, match=r"batch\['flow_forward'\] must be \(2, 2, 2, 64, 64\)"):
        model.losses(model.forward_batch(bad), bad)


def test_losh_flow_from_a_frozen_raft_is_not_saved(tmp_path) -> None:
    estimator = {"name": "raft", "num_flow_updates": 1}
    model = _model(intersection_weight=0.0, flow_estimator=estimator)
    batch = _batch(model, batch=1, frames=2, size=32)
    del batch["flow_forward"], batch["flow_backward"]
    terms = model.losses(model.forward_batch(batch), batch)
    assert terms["flow"].isfinite() and "_flow_estimator" in model.criterion.__dict__
    assert not any("raft" in key for key in model.state_dict())
    model.save_pretrained(tmp_path / "losh")
    loaded = RVOSModel.from_pretrained(tmp_path / "losh")
    assert isinstance(loaded, LoShModel) and loaded.config.criterion["flow_estimator"] == estimator


def test_losh_flow_estimator_unknown_name_lists_the_registered_ones() -> None:
    model = _model(intersection_weight=0.0, flow_estimator={"name": "pwc"})
    batch = _batch(model, batch=1, frames=2, size=32)
    del batch["flow_forward"], batch["flow_backward"]
    with pytest.raises(KeyError, match="unknown flow estimator 'pwc'.*raft"):
        model.losses(model.forward_batch(batch), batch)


# ---------------------------------------------------------------------- config
def test_losh_save_and_load_round_trip(tmp_path) -> None:
    attention = {"name": "long_short", "num_heads": 2, "gate_init": 0.3}
    model = _model(cross_attention=attention).eval()
    batch = _batch(model)
    model.save_pretrained(tmp_path / "losh")
    loaded = RVOSModel.from_pretrained(tmp_path / "losh").eval()
    assert loaded.config.cross_attention == attention
    assert loaded.config.criterion == model.config.criterion
    torch.testing.assert_close(loaded.predict(batch), model.predict(batch), rtol=0, atol=0)


def test_losh_config_errors() -> None:
    with pytest.raises(ValueError, match="intersection_weight must be a number >= 0, got -1"):
        _model(intersection_weight=-1)
    with pytest.raises(ValueError, match="flow_loss must be one of"):
        _model(flow_loss="l2")
    with pytest.raises(TypeError, match="cross_attention must be a LONG_SHORT_ATTENTIONS spec"):
        _model(cross_attention=3)
    with pytest.raises(KeyError, match="unknown long-short attention 'x'.*long_short"):
        _model(cross_attention={"name": "x"})
    with pytest.raises(ValueError, match=r"\['dim'\] are set by the builder"):
        _model(cross_attention={"name": "long_short", "dim": 8})
    with pytest.raises(TypeError, match="flow estimator spec must be a dict"):
        _model(flow_estimator=3)
    assert LoShConfig().cross_attention == {"name": "long_short", "num_heads": 8, "dropout": 0.0}
    assert LoShConfig().criterion["name"] == "losh"


def test_losh_synthetic_recipe_trains_and_validates_with_the_flow_term(tmp_path) -> None:
    """Training and validation batches both carry the exact flow when the recipe asks for it."""
    import json

    from rvoslib.cli import main
    from rvoslib.data import DataConfig, build_datasets

    data = DataConfig(flow=True, long_expressions=True, train_videos=2, val_videos=1,
                      num_frames=3, val_frames=4, size=32)  # fmt: skip
    train, val = build_datasets(data)
    assert train[0]["flow_forward"].shape == (2, 2, 32, 32)
    assert val[0]["flow_backward"].shape == (3, 2, 32, 32)
    out = tmp_path / "run"
    code = main([
        "train", "--config", "losh_synthetic", "--overrides", '{"criterion": {"flow_weight": 1.0}}',
        "--train-videos", "4", "--val-videos", "1", "--num-frames", "2", "--val-frames", "3",
        "--size", "32", "--batch-size", "2", "--epochs", "1", "--out", str(out),
        "--no-progress", "--overlays", "0", "--device", "cpu",
    ])  # fmt: skip
    assert code == 0
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert history[-1]["train_flow"] > 0 and "val_loss" in history[-1]
    # rvos eval scores without the loss, so its batches need no flow
    evaluation = ["eval", "--checkpoint", str(out / "best"), "--dataset", "synthetic",
                  "--long-expressions", "--val-videos", "1", "--val-frames", "3",
                  "--size", "32"]  # fmt: skip
    assert main(evaluation) == 0
