"""Box utilities and the Hungarian matcher, against loops, torchvision and brute force."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

from rvoslib.losses.boxes import (
    box_cxcywh_to_xyxy,
    box_xyxy_to_cxcywh,
    elementwise_generalized_box_iou,
    generalized_box_iou,
    masks_to_boxes,
)
from rvoslib.losses.matching import (
    HungarianMatcher,
    hungarian_assignment,
    match_cost_matrix,
    prepare_targets,
    referred_query_index,
)

# ----------------------------------------------------------------------------- boxes


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


def _loop_box(mask: torch.Tensor) -> list[float]:
    """Box of one (H, W) mask from its pixel coordinates, pixel-edge convention."""
    height, width = mask.shape
    ys, xs = torch.nonzero(mask > 0.5, as_tuple=True)
    if len(xs) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    x0, x1 = xs.min().item() / width, (xs.max().item() + 1) / width
    y0, y1 = ys.min().item() / height, (ys.max().item() + 1) / height
    return [(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0]


def test_masks_to_boxes_equals_loop_and_empty_gives_zeros() -> None:
    masks = (torch.rand(3, 4, 7, 9) > 0.85).float()
    masks[0, 1] = 0
    masks[2, 3] = 1
    boxes = masks_to_boxes(masks)
    assert boxes.shape == (3, 4, 4) and boxes.dtype == torch.float32
    for i, j in itertools.product(range(3), range(4)):
        torch.testing.assert_close(boxes[i, j], torch.tensor(_loop_box(masks[i, j])))
    assert boxes[0, 1].tolist() == [0.0, 0.0, 0.0, 0.0]
    torch.testing.assert_close(boxes[2, 3], torch.tensor([0.5, 0.5, 1.0, 1.0]))
    torch.testing.assert_close(masks_to_boxes(masks.bool()), boxes)


def test_box_conversions_round_trip() -> None:
    boxes = torch.rand(5, 3, 4)
    torch.testing.assert_close(box_xyxy_to_cxcywh(box_cxcywh_to_xyxy(boxes)), boxes)
    x0, y0, x1, y1 = box_cxcywh_to_xyxy(torch.tensor([0.5, 0.4, 0.2, 0.6])).tolist()
    assert [round(v, 6) for v in (x0, y0, x1, y1)] == [0.4, 0.1, 0.6, 0.7]


def _random_xyxy(*shape: int) -> torch.Tensor:
    corners = torch.rand(*shape, 2, 2)
    low, high = corners.min(-2).values, corners.max(-2).values + 0.01
    return torch.cat((low, high), -1)


def test_generalized_box_iou_equals_torchvision() -> None:
    boxes1, boxes2 = _random_xyxy(6), _random_xyxy(4)
    expected = torchvision.ops.generalized_box_iou(boxes1, boxes2)
    torch.testing.assert_close(generalized_box_iou(boxes1, boxes2), expected)
    batched = generalized_box_iou(torch.stack((boxes1, boxes1)), torch.stack((boxes2, boxes2)))
    torch.testing.assert_close(batched[1], expected)
    diagonal = elementwise_generalized_box_iou(boxes1[:4], boxes2)
    torch.testing.assert_close(diagonal, expected[:4].diagonal())


def test_generalized_box_iou_is_finite_for_degenerate_boxes() -> None:
    zero = torch.zeros(1, 4, requires_grad=True)
    giou = generalized_box_iou(zero, torch.zeros(1, 4))
    giou.sum().backward()
    assert torch.isfinite(giou).all() and torch.isfinite(zero.grad).all()


def test_box_errors() -> None:
    with pytest.raises(ValueError, match=r"boxes must be \(\.\.\., 4\), got \(2, 3\)"):
        box_cxcywh_to_xyxy(torch.zeros(2, 3))
    with pytest.raises(TypeError, match="boxes must be a torch.Tensor"):
        box_xyxy_to_cxcywh([0.0, 0.0, 1.0, 1.0])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"boxes1 and boxes2 must be .* got \(4\) and \(2, 4\)"):
        generalized_box_iou(torch.zeros(4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"boxes2 must be \(\.\.\., 4\), got \(2, 5\)"):
        elementwise_generalized_box_iou(torch.zeros(2, 4), torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"masks must be \(\.\.\., H, W\), got \(5\)"):
        masks_to_boxes(torch.zeros(5))
    with pytest.raises(TypeError, match="masks must be a torch.Tensor"):
        masks_to_boxes(None)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- matcher


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


def _giou_from_definition(box1: list[float], box2: list[float]) -> float:
    """GIoU of two cxcywh boxes from the definition (areas of intersection, union, hull)."""
    a = [box1[0] - box1[2] / 2, box1[1] - box1[3] / 2, box1[0] + box1[2] / 2, box1[1] + box1[3] / 2]
    b = [box2[0] - box2[2] / 2, box2[1] - box2[3] / 2, box2[0] + box2[2] / 2, box2[1] + box2[3] / 2]
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(
        0.0, min(a[3], b[3]) - max(a[1], b[1])
    )
    union = box1[2] * box1[3] + box2[2] * box2[3] - inter
    hull = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
    return inter / union - (hull - union) / hull


def _reference_cost(
    outputs: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    layer: int,
    clip: int,
    weights: tuple[float, ...],
    class_loss: str,
) -> torch.Tensor:
    """The (N, M) cost from the definitions, with explicit loops over queries/targets/frames."""
    class_w, dice_w, focal_w, l1_w, giou_w = weights
    alpha, gamma = 0.25, 2.0
    logits = outputs["is_referred"][layer, clip].double()
    frames, queries = logits.shape[:2]
    gt_masks = targets["masks"][clip].double().numpy()
    num_targets, _, height, width = gt_masks.shape
    up = F.interpolate(outputs["masks"][layer, clip], size=(height, width), mode="bilinear")
    probs = up.double().sigmoid().numpy()  # (T, N, H, W)
    cost = torch.zeros(queries, num_targets, dtype=torch.float64)
    valid_frames = [t for t in range(frames) if targets["frame_valid"][clip, t]]
    for n, m in itertools.product(range(queries), range(num_targets)):
        visible = [t for t in valid_frames if gt_masks[m, t].sum() > 0]
        class_sum = dice_sum = focal_sum = l1_sum = giou_sum = 0.0
        for t in valid_frames:
            label = bool(targets["referred"][clip, m]) and t in visible
            if class_loss == "softmax":
                e0, e1 = math.exp(logits[t, n, 0].item()), math.exp(logits[t, n, 1].item())
                class_sum += -(e0 if label else e1) / (e0 + e1)
            else:
                p = 1 / (1 + math.exp(-logits[t, n, 0].item()))
                pos = alpha * (1 - p) ** gamma * -math.log(p + 1e-8)
                neg = (1 - alpha) * p**gamma * -math.log(1 - p + 1e-8)
                class_sum += (pos - neg) if label else (neg - pos)
            prob, gt = probs[t, n], gt_masks[m, t]
            dice_sum += (2 * (prob * gt).sum() + 1) / (prob.sum() + gt.sum() + 1)
            p_t = np.where(gt > 0.5, prob, 1 - prob)
            alpha_t = np.where(gt > 0.5, alpha, 1 - alpha)
            focal_sum += (-alpha_t * (1 - p_t) ** gamma * np.log(p_t)).mean()
        for t in visible:
            pred_box = outputs["boxes"][layer, clip, t, n].tolist()
            gt_box = _loop_box(targets["masks"][clip, m, t])
            l1_sum += sum(abs(x - y) for x, y in zip(pred_box, gt_box))
            giou_sum += _giou_from_definition(pred_box, gt_box)
        n_valid, n_visible = max(len(valid_frames), 1), max(len(visible), 1)
        cost[n, m] = (
            class_w * class_sum / n_valid
            - dice_w * dice_sum / n_valid
            + focal_w * focal_sum / n_valid
            + l1_w * l1_sum / n_visible
            - giou_w * giou_sum / n_visible
        )
    return cost


def _brute_force_minimum(cost: torch.Tensor, real: list[int]) -> float:
    """Minimum over all injections of the real targets into distinct queries."""
    queries = cost.shape[0]
    return min(
        sum(cost[q, m].item() for q, m in zip(chosen, real))
        for chosen in itertools.permutations(range(queries), len(real))
    )


def _random_problem(rng: random.Random) -> tuple[dict, dict, tuple, str, int]:
    layers, batch, frames = rng.randint(1, 2), rng.randint(1, 2), rng.randint(1, 3)
    queries = rng.randint(1, 5)
    num_targets = rng.randint(1, min(3, queries))
    class_loss = rng.choice(["softmax", "focal"])
    weights = (
        rng.choice([0.0, 2.0]),
        rng.choice([0.0, 5.0]),
        rng.choice([0.0, 2.0]),
        rng.choice([0.0, 5.0]),
        rng.choice([0.0, 2.0]),
    )
    if not any(weights):
        weights = (1.0, *weights[1:])
    num_classes = 2 if class_loss == "softmax" else 1
    outputs = {
        "is_referred": torch.randn(layers, batch, frames, queries, num_classes) * 2,
        "masks": torch.randn(layers, batch, frames, queries, 3, 4) * 3,
        "boxes": torch.rand(layers, batch, frames, queries, 4) * 0.5 + 0.25,
    }
    masks = (torch.rand(batch, num_targets, frames, 6, 8) > 0.6).float()
    masks[torch.rand(batch, num_targets, frames) < 0.3] = 0  # absent in some frames
    target_valid = torch.rand(batch, num_targets) < 0.8
    referred = torch.zeros(batch, num_targets, dtype=torch.bool)
    referred[torch.arange(batch), torch.randint(num_targets, (batch,))] = True
    targets = {
        "masks": masks,
        "target_valid": target_valid,
        "referred": referred,
        "frame_valid": torch.rand(batch, frames) < 0.8,
    }
    return outputs, targets, weights, class_loss, queries


def test_matcher_equals_brute_force_on_random_problems() -> None:
    rng = random.Random(0)
    for _ in range(200):
        outputs, targets, weights, class_loss, queries = _random_problem(rng)
        matcher = HungarianMatcher(*weights, class_loss=class_loss)
        extra = None
        if rng.random() < 0.3:
            extra = torch.randn(outputs["masks"].shape[1], queries, 1)
        cost = matcher.cost(outputs, targets, extra)
        assignment = matcher(outputs, targets, extra)
        for layer, clip in itertools.product(range(cost.shape[0]), range(cost.shape[1])):
            expected = _reference_cost(outputs, targets, layer, clip, weights, class_loss)
            if extra is not None:
                expected = expected + extra[clip].double()
            real = [m for m in range(expected.shape[1]) if targets["target_valid"][clip, m]]
            torch.testing.assert_close(
                cost[layer, clip][:, real].double(), expected[:, real], atol=1e-4, rtol=1e-4
            )
            query_idx, target_idx = assignment[layer][clip]
            assert target_idx.tolist() == real
            assert len(set(query_idx.tolist())) == len(real)
            total = sum(expected[q, m].item() for q, m in zip(query_idx, target_idx))
            assert total == pytest.approx(_brute_force_minimum(expected, real), abs=1e-4)


def test_hungarian_assignment_equals_brute_force_with_padding() -> None:
    for seed in range(200):
        generator = torch.Generator().manual_seed(seed)
        queries = 1 + seed % 5
        num_targets = 1 + seed % 3
        cost = torch.randn(2, 2, queries, num_targets, generator=generator)
        valid = torch.rand(2, num_targets, generator=generator) < 0.7
        valid[:, 0] &= num_targets <= queries
        if (valid.sum(1) > queries).any():
            continue
        assignment = hungarian_assignment(cost, valid)
        assert assignment.shape == (2, 2, num_targets) and assignment.dtype == torch.long
        for layer, clip in itertools.product(range(2), range(2)):
            real = [m for m in range(num_targets) if valid[clip, m]]
            row = assignment[layer, clip]
            assert all(row[m] == -1 for m in range(num_targets) if m not in real)
            total = sum(cost[layer, clip, row[m], m].item() for m in real)
            minimum = _brute_force_minimum(cost[layer, clip], real) if real else 0.0
            assert total == pytest.approx(minimum, abs=1e-5)


def test_matcher_class_cost_of_non_referred_and_invisible_frames() -> None:
    # softmax: -p(referred) where the referred target is visible, -p(no object) elsewhere
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]]]])  # (B=1, T=2, N=1, K=2)
    masks = torch.zeros(1, 2, 2, 4, 4)
    masks[0, 0, 0, :2] = 1  # target 0 (referred): visible in frame 0 only
    masks[0, 1, :, 2:] = 1  # target 1: visible in both frames
    cost = match_cost_matrix(
        logits, torch.zeros(1, 2, 1, 4, 4), _targets(masks), class_weight=1.0, dice_weight=0.0
    )
    probs = logits.softmax(-1)[0, :, 0]  # (T, K)
    expected_referred = -(probs[0, 0] + probs[1, 1]) / 2
    expected_other = -(probs[0, 1] + probs[1, 1]) / 2
    torch.testing.assert_close(cost[0, 0], torch.stack((expected_referred, expected_other)))


def test_presets_and_uses_boxes() -> None:
    assert _paper("mttr").matcher.weights == (2.0, 5.0, 0.0, 0.0, 0.0)
    assert _paper("referformer").matcher.weights == (2.0, 5.0, 2.0, 5.0, 2.0)
    assert _paper("soc").matcher.weights == (2.0, 5.0, 0.0, 2.0, 2.0)
    assert not _paper("mttr").matcher.uses_boxes and _paper("soc").matcher.uses_boxes
    assert _paper("referformer").matcher.class_loss == "focal"
    assert "giou=2" in repr(_paper("soc").matcher)


def test_assign_agrees_with_forward_and_one_host_transfer(monkeypatch) -> None:
    outputs = {
        "is_referred": torch.randn(3, 2, 2, 5, 2),
        "masks": torch.randn(3, 2, 2, 5, 3, 4),
    }
    targets = _targets((torch.rand(2, 3, 2, 6, 8) > 0.5).float(), referred_index=1)
    targets["target_valid"][1, 2] = False
    matcher = _paper("mttr").matcher
    prepared = prepare_targets(targets, with_boxes=False)
    calls = {"cpu": 0, "item": 0, "tolist": 0}
    for name in calls:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    assignment = matcher.assign(outputs, prepared)
    monkeypatch.undo()
    assert calls == {"cpu": 1, "item": 0, "tolist": 0}
    assert assignment[:, 1, 2].tolist() == [-1, -1, -1]
    for layer, per_layer in enumerate(matcher(outputs, targets)):
        for clip, (query_idx, target_idx) in enumerate(per_layer):
            assert query_idx.dtype == target_idx.dtype == torch.long
            assert assignment[layer, clip, target_idx].tolist() == query_idx.tolist()


def test_non_finite_costs_still_give_a_matching() -> None:
    cost = torch.tensor([[[float("nan"), 0.0], [1.0, float("inf")], [0.5, 0.2]]])
    assignment = hungarian_assignment(cost, torch.tensor([[True, True]]))
    assert sorted(assignment[0].tolist()) != [-1, -1] and len(set(assignment[0].tolist())) == 2


def test_referred_query_index() -> None:
    assignment = torch.tensor([[[3, 1], [0, -1]], [[2, 4], [1, -1]]])  # (Ly=2, B=2, M=2)
    referred = torch.tensor([[False, True], [False, False]])
    index = referred_query_index(assignment, referred)
    assert index.tolist() == [[1, -1], [4, -1]]
    valid = torch.tensor([[True, False], [True, False]])
    assert referred_query_index(assignment, referred, valid).tolist() == [[-1, -1], [-1, -1]]


def test_prepare_targets_keeps_given_boxes_and_visibility() -> None:
    targets = _targets(torch.zeros(1, 1, 2, 4, 4))
    prepared = prepare_targets(targets)
    assert prepared["visible"].tolist() == [[[False, False]]]
    assert prepared["boxes"].abs().sum() == 0
    targets["boxes"] = torch.full((1, 1, 2, 4), 0.5)
    targets["visible"] = torch.ones(1, 1, 2, dtype=torch.bool)
    prepared = prepare_targets(targets)
    assert prepared["boxes"] is targets["boxes"] and prepared["visible"].all()
    assert "boxes" not in prepare_targets(_targets(torch.zeros(1, 1, 2, 4, 4)), with_boxes=False)


def _valid_inputs() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    outputs = {"is_referred": torch.zeros(1, 1, 2, 3, 2), "masks": torch.zeros(1, 1, 2, 3, 4, 4)}
    return outputs, _targets(torch.ones(1, 2, 2, 8, 8))


def test_matcher_errors() -> None:
    matcher = _paper("mttr").matcher
    outputs, targets = _valid_inputs()
    too_many = _targets(torch.ones(2, 4, 2, 8, 8))
    too_many["target_valid"][0, 3] = False  # clip 0 has 3 real targets: fine
    big = {"is_referred": torch.zeros(1, 2, 2, 3, 2), "masks": torch.zeros(1, 2, 2, 3, 4, 4)}
    with pytest.raises(ValueError, match="clip 1 has M=4 real targets but only N=3 queries"):
        matcher(big, too_many)
    with pytest.raises(KeyError, match=r"targets is missing \['referred'\]"):
        matcher(outputs, {k: v for k, v in targets.items() if k != "referred"})
    with pytest.raises(TypeError, match="targets must be a dict"):
        matcher(outputs, [targets])
    with pytest.raises(ValueError, match=r"targets\['masks'\] must be \(B, M, T, H, W\)"):
        matcher(outputs, {**targets, "masks": torch.ones(1, 2, 8, 8)})
    with pytest.raises(TypeError, match=r"targets\['frame_valid'\] must have an integer or bool"):
        matcher(outputs, {**targets, "frame_valid": torch.ones(1, 2)})
    with pytest.raises(ValueError, match=r"targets\['referred'\] must be \(1, 2\), got \(1, 3\)"):
        matcher(outputs, {**targets, "referred": torch.ones(1, 3, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"targets\['boxes'\] must be \(1, 2, 2, 4\)"):
        matcher(outputs, {**targets, "boxes": torch.ones(1, 2, 4)})
    with pytest.raises(KeyError, match="outputs is missing 'masks'"):
        matcher({"is_referred": outputs["is_referred"]}, targets)
    with pytest.raises(TypeError, match="outputs must be a dict"):
        matcher(None, targets)
    with pytest.raises(
        ValueError, match=r"outputs\['is_referred'\] must be .*K=2.*got \(1, 1, 2, 3, 1\)"
    ):
        matcher({**outputs, "is_referred": torch.zeros(1, 1, 2, 3, 1)}, targets)
    with pytest.raises(
        ValueError, match=r"outputs\['masks'\] must be \(Ly=1, B=1, T=2, N=3, h, w\)"
    ):
        matcher({**outputs, "masks": torch.zeros(1, 1, 2, 4, 4, 4)}, targets)
    with pytest.raises(ValueError, match=r"outputs\['masks'\] must be \(Ly, B, T, N, h, w\)"):
        matcher({**outputs, "masks": torch.zeros(1, 2, 3, 4, 4)}, targets)
    with pytest.raises(TypeError, match=r"outputs\['masks'\] must have a floating dtype"):
        matcher({**outputs, "masks": torch.zeros(1, 1, 2, 3, 4, 4, dtype=torch.long)}, targets)
    with pytest.raises(
        ValueError, match=r"extra_cost must broadcast to \(Ly, B, N, M\) = \(1, 1, 3, 2\)"
    ):
        matcher(outputs, targets, torch.zeros(1, 4, 2))
    focal = _paper("referformer").matcher
    focal_outputs = {**outputs, "is_referred": torch.zeros(1, 1, 2, 3, 1)}
    with pytest.raises(KeyError, match="outputs has no 'boxes'"):
        focal(focal_outputs, targets)
    with pytest.raises(ValueError, match=r"outputs\['boxes'\] must be \(Ly=1, B=1, T=2, N=3, 4\)"):
        focal({**focal_outputs, "boxes": torch.zeros(1, 1, 2, 2, 4)}, targets)


def test_matcher_init_and_function_errors() -> None:
    with pytest.raises(ValueError, match="dice_weight must be a number >= 0, got -1"):
        HungarianMatcher(dice_weight=-1)
    with pytest.raises(ValueError, match="at least one matching weight must be nonzero"):
        HungarianMatcher(0.0, 0.0)
    with pytest.raises(
        ValueError, match=r"class_loss must be one of \('softmax', 'focal'\), got 'ce'"
    ):
        HungarianMatcher(class_loss="ce")
    with pytest.raises(ValueError, match=r"class_loss must be one of"):
        match_cost_matrix(torch.zeros(1, 2, 3, 2), torch.zeros(1, 2, 3, 4, 4), {}, class_loss="x")
    outputs, targets = _valid_inputs()
    with pytest.raises(
        ValueError, match=r"is_referred must be \(B, T, N, K\), got \(1, 1, 2, 3, 2\)"
    ):
        match_cost_matrix(outputs["is_referred"], outputs["masks"][0], targets)
    with pytest.raises(ValueError, match=r"boxes must be \(B, T, N, 4\), got \(1, 2, 3\)"):
        match_cost_matrix(
            outputs["is_referred"][0], outputs["masks"][0], targets, torch.zeros(1, 2, 3)
        )
    with pytest.raises(
        ValueError, match=r"cost must be \(B, N, M\) or \(Ly, B, N, M\), got \(3, 2\)"
    ):
        hungarian_assignment(torch.zeros(3, 2), torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"target_valid must be \(1, 2\), got \(1, 3\)"):
        hungarian_assignment(torch.zeros(1, 3, 2), torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(
        ValueError, match=r"assignment must be \(\.\.\., B, M\) with \(B, M\) = \(1, 2\)"
    ):
        referred_query_index(
            torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 2, dtype=torch.bool)
        )
