"""The registered criteria of the query models, their specs and errors, and the conversion of
version-2 configs of the query architectures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import rvoslib.models  # noqa: F401  (registers every part)
from rvoslib.losses import (
    CRITERIA,
    HungarianMatcher,
    LoShCriterion,
    QuerySetCriterion,
    SOCCriterion,
    match_cost_matrix,
    query_targets,
)
from rvoslib.models.architectures.losh import LOSH_CRITERION
from rvoslib.models.architectures.mttr import MTTR_CRITERION
from rvoslib.models.architectures.query import plain_spec
from rvoslib.models.architectures.referformer import REFERFORMER_CRITERION
from rvoslib.models.architectures.soc import SOC_CRITERION
from rvoslib.models.legacy_query import convert_v2_query_config
from rvoslib.models.registry import LONG_SHORT_ATTENTIONS, VIDEO_OBJECT_CLUSTERS
from rvoslib.models.transformer.levels import check_levels

FIXTURES = Path(__file__).parent / "data" / "pre_refactor"


def _outputs(layers: int = 2, k: int = 2) -> dict:
    torch.manual_seed(0)
    return {"is_referred": torch.randn(layers, 1, 2, 4, k),
            "masks": torch.randn(layers, 1, 2, 4, 4, 4, requires_grad=True),
            "boxes": torch.rand(layers, 1, 2, 4, 4)}  # fmt: skip


def _batch() -> dict:
    masks = torch.zeros(1, 2, 8, 8)
    masks[..., 2:6, 2:6] = 1
    return {"masks": masks, "frames": torch.randn(1, 2, 3, 8, 8)}


def test_query_criteria_are_registered_and_unknown_names_list_them() -> None:
    assert {"set", "soc", "losh"} <= set(CRITERIA.names())
    with pytest.raises(KeyError, match=r"unknown criterion 'sett'.*losh, .*set, soc"):
        CRITERIA.build({"name": "sett"})


@pytest.mark.parametrize(
    "constant", [MTTR_CRITERION, REFERFORMER_CRITERION, SOC_CRITERION, LOSH_CRITERION]
)
def test_paper_criteria_build_and_save_their_spec(constant) -> None:
    spec = plain_spec(constant)
    criterion = CRITERIA.build(spec)
    saved = CRITERIA.spec_of(criterion)
    assert {key: saved[key] for key in spec} == spec
    assert json.loads(json.dumps(saved)) == saved
    k = 2 if spec["class_loss"] == "softmax" else 1
    outputs = _outputs(k=k)
    outputs.update(video_queries=torch.randn(2, 1, 4, 8), text_vector=torch.randn(1, 8))
    terms = criterion(outputs, _batch())
    assert set(terms) >= set(spec["weights"]) and all(t.isfinite() for t in terms.values())
    sum(terms.values()).backward()


def test_set_criterion_on_a_batch_equals_the_set_criterion_on_its_targets() -> None:
    criterion = CRITERIA.build(plain_spec(MTTR_CRITERION))
    outputs = _outputs()
    terms = criterion(outputs, _batch())
    direct = criterion.set_criterion(
        {k: outputs[k] for k in ("is_referred", "masks")}, query_targets(_batch())
    )
    for key, value in direct.items():
        torch.testing.assert_close(terms[key], value)


def test_aux_loss_supervises_only_the_last_layer() -> None:
    spec = {**plain_spec(MTTR_CRITERION), "aux_loss": False}
    last = CRITERIA.build(spec)
    outputs = _outputs()
    assert last.supervised(outputs)["masks"].shape[0] == 1
    expected = CRITERIA.build(plain_spec(MTTR_CRITERION))(
        {k: v[-1:] for k, v in outputs.items()}, _batch()
    )
    for key, value in last(outputs, _batch()).items():
        torch.testing.assert_close(value, expected[key])


def test_criterion_errors_name_the_valid_values() -> None:
    with pytest.raises(
        ValueError,
        match=r"unknown matcher key\(s\) \['cost'\]; valid: "
        r"\['class_weight', 'dice_weight', 'mask_focal_weight'",
    ):
        QuerySetCriterion({"dice": 1.0}, {"cost": 1.0})
    with pytest.raises(TypeError, match="matcher must be a dict of cost weights, got float"):
        QuerySetCriterion({"dice": 1.0}, 2.0)
    with pytest.raises(KeyError, match="unknown loss weights"):
        QuerySetCriterion({"dise": 1.0}, {"dice_weight": 1.0})
    with pytest.raises(ValueError, match="contrastive_weight must be a number >= 0, got -1"):
        SOCCriterion({"dice": 1.0}, {"dice_weight": 1.0}, contrastive_weight=-1)
    with pytest.raises(ValueError, match="intersection_cost_weight must be a number >= 0"):
        LoShCriterion({"dice": 1.0}, {"dice_weight": 1.0}, intersection_cost_weight=-1)
    with pytest.raises(ValueError, match=r"flow_loss must be one of \('l1', 'dice'\)"):
        LoShCriterion({"dice": 1.0}, {"dice_weight": 1.0}, flow_loss="l2")
    with pytest.raises(ValueError, match="needs a 'name' key"):
        LoShCriterion({"dice": 1.0}, {"dice_weight": 1.0}, flow_estimator={"x": 1})


def test_match_cost_matrix_is_the_matchers_cost_of_one_layer() -> None:
    outputs = _outputs()
    targets = query_targets(_batch())
    weights = {"class_weight": 1.0, "dice_weight": 2.0, "mask_focal_weight": 3.0}
    expected = HungarianMatcher(**weights).cost(outputs, targets)[0]
    actual = match_cost_matrix(outputs["is_referred"][0], outputs["masks"][0], targets, **weights)
    torch.testing.assert_close(actual, expected)


def test_check_levels_names_what_does_not_fit() -> None:
    level = torch.zeros(1, 2, 4, 8, 8)
    check_levels([level], [4], "in_channels")
    with pytest.raises(ValueError, match=r"levels must be a list of 2 maps \(in_channels=\[4, 6\]"):
        check_levels([level], [4, 6], "in_channels")
    with pytest.raises(ValueError, match=r"levels\[1\] must have the \(B, T\) of levels\[0\]"):
        check_levels([level, torch.zeros(2, 2, 4, 4, 4)], [4, 4], "visual_channels")


@pytest.mark.parametrize(
    ("registry", "name", "run"),
    [
        (VIDEO_OBJECT_CLUSTERS, "voc",
         lambda part: part(torch.randn(2, 1, 2, 3, 16), torch.randn(1, 16)).video_queries),
        (LONG_SHORT_ATTENTIONS, "long_short",
         lambda part: part(torch.randn(2, 1, 2, 3, 16), torch.randn(2, 1, 2, 3, 16))[0]),
    ],
)  # fmt: skip
def test_new_part_registries_build_run_and_round_trip(registry, name, run) -> None:
    torch.manual_seed(0)
    injected = {"dim": 16, "num_queries": 3}
    part = registry.build({"name": name, "num_heads": 2}, **injected).eval()
    rebuilt = registry.build(registry.spec_of(part), **injected).eval()
    rebuilt.load_state_dict(part.state_dict())
    torch.manual_seed(1)
    inputs_seed = torch.get_rng_state()
    first = run(part)
    torch.set_rng_state(inputs_seed)
    torch.testing.assert_close(run(rebuilt), first, rtol=0, atol=0)
    with pytest.raises(KeyError, match=f"unknown {registry.kind} 'nope'; .*{name}"):
        registry.build({"name": "nope"}, **injected)


@pytest.mark.parametrize("name", ["mttr-tiny", "losh-tiny", "referformer-tiny", "soc-tiny"])
def test_v2_configs_convert_to_one_criterion_spec(name: str) -> None:
    old = json.loads((FIXTURES / name / "config.json").read_text())
    new = convert_v2_query_config(old)
    assert old == json.loads((FIXTURES / name / "config.json").read_text())  # not modified
    for key in ("loss", "loss_weights", "no_object_weight", "matcher", "aux_loss",
                "contrastive_weight", "flow_weight", "intersection_weight"):  # fmt: skip
        assert key not in new
    criterion = new["criterion"]
    expected = {"mttr-tiny": "set", "losh-tiny": "losh", "referformer-tiny": "set",
                "soc-tiny": "soc"}[name]  # fmt: skip
    assert criterion["name"] == expected
    CRITERIA.build(criterion)
    if name == "soc-tiny":
        assert new["voc"]["name"] == "voc" and new["voc"]["num_heads"] == 4
    if name == "losh-tiny":
        assert new["cross_attention"] == {"name": "long_short", "num_heads": 4, "dropout": 0.0}
        assert criterion["intersection_cost_weight"] == 0.8
    assert convert_v2_query_config(new) == new  # already converted: unchanged


def test_v2_conversion_leaves_other_architectures_and_names_the_flow_estimator() -> None:
    other = {"architecture": "fusion", "loss": {"bce": 1.0}}
    assert convert_v2_query_config(other) == other
    old = {"architecture": "losh", "flow_estimator": {"num_flow_updates": 2},
           "cross_attention": None}  # fmt: skip
    new = convert_v2_query_config(old)
    assert new["criterion"]["flow_estimator"] == {"name": "raft", "num_flow_updates": 2}
    assert new["cross_attention"] is None and new["criterion"]["weights"]["dice"] == 5.0
