"""SetCriterion: hand-computed terms, empty clips, invariances, errors."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from rvoslib.losses.set_criterion import LOSS_KEYS, SetCriterion, gather_matched

ALPHA, GAMMA = 0.25, 2.0


def _paper(name: str):
    """The set criterion of a paper's criterion constant (its matcher: ``.matcher``)."""
    from rvoslib.losses import CRITERIA
    from rvoslib.models.architectures.mttr import MTTR_CRITERION
    from rvoslib.models.architectures.query import plain_spec
    from rvoslib.models.architectures.referformer import REFERFORMER_CRITERION
    from rvoslib.models.architectures.soc import SOC_CRITERION

    constants = {"mttr": MTTR_CRITERION, "referformer": REFERFORMER_CRITERION,
                 "soc": SOC_CRITERION}  # fmt: skip
    return CRITERIA.build(plain_spec(constants[name])).set_criterion


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _focal(x: float, target: float) -> float:
    """Sigmoid focal loss of one logit, from its definition."""
    p = _sigmoid(x)
    p_t = p if target else 1 - p
    alpha_t = ALPHA if target else 1 - ALPHA
    return -alpha_t * (1 - p_t) ** GAMMA * math.log(p_t)


def _dice(logits: list[list[float]], gt: list[list[float]]) -> float:
    probs = [_sigmoid(x) for row in logits for x in row]
    flat = [g for row in gt for g in row]
    inter = sum(p * g for p, g in zip(probs, flat))
    return 1 - (2 * inter + 1) / (sum(probs) + sum(flat) + 1)


def _mean_focal(logits: list[list[float]], gt: list[list[float]]) -> float:
    values = [_focal(x, g) for row_x, row_g in zip(logits, gt) for x, g in zip(row_x, row_g)]
    return sum(values) / len(values)


def _targets(masks: torch.Tensor, referred_index: int = 0) -> dict[str, torch.Tensor]:
    batch, num_targets, frames = masks.shape[:3]
    referred = torch.zeros(batch, num_targets, dtype=torch.bool)
    referred[:, referred_index] = True
    return {
        "masks": masks,
        "target_valid": torch.ones(batch, num_targets, dtype=torch.bool),
        "referred": referred,
        "frame_valid": torch.ones(batch, frames, dtype=torch.bool),
    }


def test_softmax_terms_equal_a_hand_computation() -> None:
    # T=2, N=3, M=2: target 0 is referred and visible in frame 0 only; target 1 is not referred
    gt = [
        [[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]],
        [[[0.0, 0.0], [1.0, 1.0]], [[0.0, 0.0], [1.0, 1.0]]],
    ]  # [target][frame] 2x2
    pred = [  # [frame][query] 2x2 mask logits
        [[[-4.0, -4.0], [4.0, 4.0]], [[0.5, -1.0], [0.2, -0.3]], [[4.0, -4.0], [-4.0, -4.0]]],
        [[[-4.0, -3.0], [4.0, 3.0]], [[0.1, 0.4], [-0.6, 0.3]], [[-4.0, -4.0], [-4.0, -4.0]]],
    ]
    logits = [  # [frame][query] (referred, no object)
        [[1.0, -1.0], [0.2, 0.3], [2.0, 0.0]],
        [[0.0, 1.0], [0.5, 0.5], [-1.0, 1.0]],
    ]
    outputs = {
        "is_referred": torch.tensor(logits)[None, None],  # (Ly=1, B=1, T=2, N=3, 2)
        "masks": torch.tensor(pred)[None, None],  # (1, 1, 2, 3, 2, 2)
    }
    targets = _targets(torch.tensor(gt)[None])  # (B=1, M=2, T=2, 2, 2)
    criterion = _paper("mttr")
    assert criterion.match(outputs, targets).tolist() == [[[2, 0]]]
    match = {0: 2, 1: 0}  # target -> query

    class_sum = 0.0
    for t, n in itertools.product(range(2), range(3)):
        label = 0 if (n == 2 and t == 0) else 1  # referred only where target 0 is visible
        weight = 1.0 if n == 2 else 0.1
        log_z = math.log(sum(math.exp(v) for v in logits[t][n]))
        class_sum += weight * (log_z - logits[t][n][label])
    expected_class = 2.0 * class_sum / 2  # 2 valid frames
    pairs = [(m, t) for m in range(2) for t in range(2)]
    expected_dice = 5.0 * sum(_dice(pred[t][match[m]], gt[m][t]) for m, t in pairs) / 4
    expected_focal = 2.0 * sum(_mean_focal(pred[t][match[m]], gt[m][t]) for m, t in pairs) / 4

    losses = criterion(outputs, targets)
    assert sorted(losses) == ["class", "dice", "mask_focal"]
    assert losses["class"].item() == pytest.approx(expected_class, rel=1e-5)
    assert losses["dice"].item() == pytest.approx(expected_dice, rel=1e-5)
    assert losses["mask_focal"].item() == pytest.approx(expected_focal, rel=1e-5)


def _giou(box1: list[float], box2: list[float]) -> float:
    a = [box1[0] - box1[2] / 2, box1[1] - box1[3] / 2, box1[0] + box1[2] / 2, box1[1] + box1[3] / 2]
    b = [box2[0] - box2[2] / 2, box2[1] - box2[3] / 2, box2[0] + box2[2] / 2, box2[1] + box2[3] / 2]
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(
        0.0, min(a[3], b[3]) - max(a[1], b[1])
    )
    union = box1[2] * box1[3] + box2[2] * box2[3] - inter
    hull = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
    return inter / union - (hull - union) / hull


def test_focal_and_box_terms_equal_a_hand_computation_per_layer() -> None:
    # Ly=2, T=2, N=2, M=1; the target is visible in frame 0 only; layer l matches query l
    gt = [[[1.0, 1.0, 0.0, 0.0]] * 2 + [[0.0] * 4] * 2, [[0.0] * 4] * 4]  # [frame] 4x4
    gt_box = [0.25, 0.25, 0.5, 0.5]
    good = [[3.0, 3.0, -3.0, -3.0]] * 2 + [[-3.0] * 4] * 2
    bad = [[-2.0, 1.0, 2.0, -1.0]] * 4
    pred = [  # [layer][frame][query]
        [[good, bad], [[[-3.0] * 4] * 4, bad]],
        [[bad, good], [bad, [[-3.0] * 4] * 4]],
    ]
    logits = [[[[0.5], [-1.0]], [[0.3], [0.8]]], [[[-0.2], [1.5]], [[0.1], [-0.4]]]]
    boxes = [
        [
            [[0.3, 0.2, 0.4, 0.5], [0.6, 0.6, 0.3, 0.3]],
            [[0.5, 0.5, 0.2, 0.2], [0.1, 0.9, 0.1, 0.1]],
        ],
        [
            [[0.7, 0.7, 0.2, 0.2], [0.2, 0.3, 0.6, 0.4]],
            [[0.4, 0.4, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9]],
        ],
    ]
    outputs = {
        "is_referred": torch.tensor(logits)[:, None],  # (2, 1, 2, 2, 1)
        "masks": torch.tensor(pred)[:, None],  # (2, 1, 2, 2, 4, 4)
        "boxes": torch.tensor(boxes)[:, None],  # (2, 1, 2, 2, 4)
    }
    targets = _targets(torch.tensor(gt)[None, None])  # (1, 1, 2, 4, 4)
    criterion = _paper("referformer")
    assert criterion.match(outputs, targets).tolist() == [[[0]], [[1]]]

    expected = dict.fromkeys(LOSS_KEYS, 0.0)
    for layer in range(2):
        q = layer
        expected["class"] += sum(
            _focal(logits[layer][t][n][0], 1.0 if (n == q and t == 0) else 0.0)
            for t in range(2)
            for n in range(2)
        )  # / 1 visible (target, frame) pair
        expected["dice"] += sum(_dice(pred[layer][t][q], gt[t]) for t in range(2)) / 2
        expected["mask_focal"] += sum(_mean_focal(pred[layer][t][q], gt[t]) for t in range(2)) / 2
        box = boxes[layer][0][q]  # frame 0 only: the target is invisible in frame 1
        expected["box_l1"] += sum(abs(x - y) for x, y in zip(box, gt_box))
        expected["giou"] += 1 - _giou(box, gt_box)
    weights = {"class": 2.0, "box_l1": 5.0, "giou": 2.0, "mask_focal": 2.0, "dice": 5.0}
    losses = criterion(outputs, targets)
    assert sorted(losses) == sorted(weights)
    for key, weight in weights.items():
        assert losses[key].item() == pytest.approx(weight * expected[key], rel=1e-5), key


def _random_outputs(
    layers: int, batch: int, frames: int, queries: int, num_classes: int, grad: bool = True
) -> dict[str, torch.Tensor]:
    outputs = {
        "is_referred": torch.randn(layers, batch, frames, queries, num_classes),
        "masks": torch.randn(layers, batch, frames, queries, 4, 4),
        "boxes": torch.rand(layers, batch, frames, queries, 4),
    }
    return {key: value.requires_grad_(grad) for key, value in outputs.items()}


@pytest.mark.parametrize("preset", ["mttr", "referformer", "soc"])
def test_nothing_visible_gives_finite_losses_and_gradients(preset: str) -> None:
    criterion = _paper(preset)
    num_classes = 2 if preset == "mttr" else 1
    masks = torch.zeros(2, 1, 3, 8, 8)
    masks[0, 0, 1, 2:5, 2:5] = 1  # clip 0 visible in one frame; clip 1 never
    cases = [_targets(masks), _targets(torch.zeros(2, 1, 3, 8, 8))]
    no_frames = _targets(masks)
    no_frames["frame_valid"][:] = False
    no_targets = _targets(torch.zeros(2, 2, 3, 8, 8))
    no_targets["target_valid"][:] = False
    no_targets["referred"][:] = False
    for targets in [*cases, no_frames, no_targets]:
        outputs = _random_outputs(2, 2, 3, 4, num_classes)
        if not criterion.uses_boxes:
            del outputs["boxes"]
        losses = criterion(outputs, targets)
        total = sum(losses.values())
        assert all(torch.isfinite(value) for value in losses.values()), losses
        total.backward()
        for value in outputs.values():
            assert value.grad is not None and torch.isfinite(value.grad).all()


def test_losses_are_invariant_to_the_order_of_the_queries() -> None:
    criterion = _paper("soc")
    outputs = _random_outputs(2, 2, 3, 5, 1, grad=False)
    masks = (torch.rand(2, 3, 3, 8, 8) > 0.5).float()
    targets = _targets(masks, referred_index=1)
    targets["target_valid"][1, 2] = False
    targets["frame_valid"][0, 1] = False
    permutation = torch.tensor([3, 0, 4, 2, 1])
    permuted = {key: value[:, :, :, permutation] for key, value in outputs.items()}
    losses, other = criterion(outputs, targets), criterion(permuted, targets)
    for key in losses:
        torch.testing.assert_close(losses[key], other[key])


def test_layers_are_summed_and_invalid_frames_ignored() -> None:
    criterion = _paper("mttr")
    one = _random_outputs(1, 1, 3, 4, 2, grad=False)
    two = {key: torch.cat((value, value)) for key, value in one.items()}
    targets = _targets((torch.rand(1, 2, 3, 8, 8) > 0.5).float())
    targets["frame_valid"][0, 2] = False
    single, double = criterion(one, targets), criterion(two, targets)
    for key in single:
        torch.testing.assert_close(double[key], 2 * single[key])
    changed = {key: value.clone() for key, value in one.items()}
    changed["masks"][:, :, 2] = 9.0  # the invalid frame
    changed["is_referred"][:, :, 2] = -9.0
    for key, value in criterion(changed, targets).items():
        torch.testing.assert_close(value, single[key])


def test_bfloat16_outputs_give_float32_losses() -> None:
    criterion = _paper("referformer")
    outputs = {key: value.bfloat16() for key, value in _random_outputs(1, 1, 2, 3, 1).items()}
    masks = torch.zeros(1, 1, 2, 8, 8)
    masks[..., 1:4, 2:6] = 1
    for value in criterion(outputs, _targets(masks)).values():
        assert value.dtype == torch.float32 and torch.isfinite(value)


def test_terms_with_a_given_assignment_and_zero_weights_omitted() -> None:
    criterion = SetCriterion(_paper("mttr").matcher, {"class": 1.0, "dice": 0.0})
    outputs = _random_outputs(1, 1, 2, 3, 2, grad=False)
    targets = _targets((torch.rand(1, 1, 2, 8, 8) > 0.5).float())
    assignment = torch.tensor([[[2]]])
    losses = criterion.terms(outputs, targets, assignment)
    assert list(losses) == ["class"]
    other = criterion.terms(outputs, targets, torch.tensor([[[1]]]))
    assert not torch.allclose(losses["class"], other["class"])
    assert "weights={'class': 1.0}" in repr(criterion)


def test_gather_matched_equals_indexing() -> None:
    values = torch.randn(2, 3, 4, 5, 6, 7)
    assignment = torch.tensor([[[4, 0], [1, -1], [2, 3]], [[0, 1], [3, 2], [-1, 4]]])
    gathered = gather_matched(values, assignment)
    assert gathered.shape == (2, 3, 4, 2, 6, 7)
    for layer, clip, m in itertools.product(range(2), range(3), range(2)):
        query = max(int(assignment[layer, clip, m]), 0)
        torch.testing.assert_close(gathered[layer, clip, :, m], values[layer, clip, :, query])


def test_criterion_errors() -> None:
    matcher = _paper("mttr").matcher
    with pytest.raises(TypeError, match="matcher must be a HungarianMatcher, got dict"):
        SetCriterion({}, {"dice": 1.0})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="weights must be a dict, got list"):
        SetCriterion(matcher, [1.0])  # type: ignore[arg-type]
    with pytest.raises(KeyError, match=r"unknown loss weights \['bce'\]; valid keys are"):
        SetCriterion(matcher, {"bce": 1.0})
    with pytest.raises(ValueError, match=r"weights\['dice'\] must be a number >= 0, got -2"):
        SetCriterion(matcher, {"dice": -2})
    with pytest.raises(ValueError, match="class_loss='focal' differs from the matcher's 'softmax'"):
        SetCriterion(matcher, {"dice": 1.0}, class_loss="focal")
    with pytest.raises(ValueError, match=r"class_loss must be one of \('softmax', 'focal'\)"):
        SetCriterion(matcher, {"dice": 1.0}, class_loss="ce")
    with pytest.raises(ValueError, match=r"no_object_weight must be in \[0, 1\], got 2"):
        SetCriterion(matcher, {"dice": 1.0}, no_object_weight=2)
    criterion = SetCriterion(matcher, {"dice": 1.0, "giou": 1.0})
    outputs = _random_outputs(1, 1, 2, 3, 2, grad=False)
    targets = _targets(torch.ones(1, 1, 2, 8, 8))
    with pytest.raises(KeyError, match="outputs has no 'boxes'"):
        criterion({"is_referred": outputs["is_referred"], "masks": outputs["masks"]}, targets)
    with pytest.raises(ValueError, match=r"assignment must be \(1, 1, 1\), got \(1, 1\)"):
        criterion.terms(outputs, targets, torch.zeros(1, 1, dtype=torch.long))
    with pytest.raises(TypeError, match="assignment must have an integer or bool dtype"):
        criterion.terms(outputs, targets, torch.zeros(1, 1, 1))
    with pytest.raises(ValueError, match=r"values must be \(Ly, B, T, N, \.\.\.\) with \(Ly, B\)"):
        gather_matched(torch.zeros(2, 1, 3, 4), torch.zeros(1, 1, 1, dtype=torch.long))
