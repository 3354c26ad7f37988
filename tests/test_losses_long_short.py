"""LoSh's long-short intersection loss against its definition, edge cases and matching cost."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rvoslib.losses.long_short import (
    LongShortIntersectionLoss,
    long_short_intersection_loss,
    long_short_intersection_ratio,
    long_short_match_cost,
)


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


def _direct_ratio(long_mask: torch.Tensor, short_mask: torch.Tensor) -> float:
    """(sum qL qS + 1) / (sum qL + 1), q = p [p > 0.5], with explicit loops over pixels."""
    inter = total = 0.0
    for x_long, x_short in zip(long_mask.flatten().tolist(), short_mask.flatten().tolist()):
        p_long, p_short = 1 / (1 + math.exp(-x_long)), 1 / (1 + math.exp(-x_short))
        q_long = p_long if p_long > 0.5 else 0.0
        q_short = p_short if p_short > 0.5 else 0.0
        inter += q_long * q_short
        total += q_long
    return (inter + 1) / (total + 1)


def test_equals_the_definition_on_random_inputs() -> None:
    long_logits, short_logits = torch.randn(4, 6, 5) * 2, torch.randn(4, 6, 5) * 2 + 0.5
    ratio = long_short_intersection_ratio(long_logits, short_logits)
    expected = [_direct_ratio(long_logits[i], short_logits[i]) for i in range(4)]
    torch.testing.assert_close(ratio, torch.tensor(expected))
    loss = long_short_intersection_loss(long_logits, short_logits)
    assert loss.item() == pytest.approx(1 - sum(expected) / 4, rel=1e-6)
    torch.testing.assert_close(LongShortIntersectionLoss()(long_logits, short_logits), loss)
    batched = long_short_intersection_ratio(
        long_logits.view(2, 2, 6, 5), short_logits.view(2, 2, 6, 5)
    )
    torch.testing.assert_close(batched.flatten(), ratio)


def test_long_mask_below_threshold_gives_ratio_one_and_loss_zero() -> None:
    long_logits = torch.full((3, 8, 8), -2.0)
    long_logits[1] = 0.0  # p = 0.5 exactly is below (the threshold is strict)
    short_logits = torch.randn(3, 8, 8) * 4
    ratio = long_short_intersection_ratio(long_logits, short_logits)
    assert ratio.tolist() == [1.0, 1.0, 1.0]
    assert long_short_intersection_loss(long_logits, short_logits).item() == 0.0


def test_short_mask_below_threshold_gives_loss_close_to_one() -> None:
    long_logits = torch.full((2, 16, 16), 10.0)
    short_logits = torch.full((2, 16, 16), -10.0)
    loss = long_short_intersection_loss(long_logits, short_logits)
    expected = 1 - 1 / (256 * torch.sigmoid(torch.tensor(10.0)).item() + 1)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert loss.item() > 0.99


def test_half_precision_gives_float32_and_gradients_flow() -> None:
    long_logits = (torch.randn(2, 6, 6) * 2).requires_grad_()
    short_logits = (torch.randn(2, 6, 6) * 2).requires_grad_()
    loss = long_short_intersection_loss(long_logits, short_logits)
    loss.backward()
    assert torch.isfinite(long_logits.grad).all() and short_logits.grad.abs().sum() > 0
    half = long_short_intersection_loss(long_logits.detach().bfloat16(), short_logits.bfloat16())
    assert half.dtype == torch.float32


def test_match_cost_averages_over_valid_frames() -> None:
    long_masks, short_masks = torch.randn(2, 2, 3, 4, 5, 5), torch.randn(2, 2, 3, 4, 5, 5)
    frame_valid = torch.tensor([[True, False, True], [False, False, False]])
    cost = long_short_match_cost(long_masks, short_masks, frame_valid, weight=0.8)
    assert cost.shape == (2, 2, 4, 1)
    for layer in range(2):
        for n in range(4):
            frames = [0, 2]
            mean = (
                sum(
                    _direct_ratio(long_masks[layer, 0, t, n], short_masks[layer, 0, t, n])
                    for t in frames
                )
                / 2
            )
            assert cost[layer, 0, n, 0].item() == pytest.approx(-0.8 * mean, rel=1e-5)
    assert cost[:, 1].abs().sum() == 0  # no valid frame: no cost
    everything = long_short_match_cost(long_masks, short_masks)
    torch.testing.assert_close(
        everything[..., 0], -0.8 * long_short_intersection_ratio(long_masks, short_masks).mean(-2)
    )


def test_match_cost_upsamples_before_thresholding_and_feeds_the_matcher() -> None:
    long_masks, short_masks = torch.randn(1, 2, 2, 3, 4, 4), torch.randn(1, 2, 2, 3, 4, 4)
    cost = long_short_match_cost(long_masks, short_masks, size=(8, 8))
    up = [
        F.interpolate(m.flatten(0, 3)[:, None], size=(8, 8), mode="bilinear")[:, 0]
        for m in (long_masks, short_masks)
    ]
    ratio = long_short_intersection_ratio(*up).view(1, 2, 2, 3)
    torch.testing.assert_close(cost[..., 0], -0.8 * ratio.mean(2))
    outputs = {"is_referred": torch.randn(1, 2, 2, 3, 2), "masks": long_masks}
    targets = {
        "masks": (torch.rand(2, 1, 2, 8, 8) > 0.5).float(),
        "target_valid": torch.ones(2, 1, dtype=torch.bool),
        "referred": torch.ones(2, 1, dtype=torch.bool),
        "frame_valid": torch.ones(2, 2, dtype=torch.bool),
    }
    matcher = _paper("mttr").matcher
    torch.testing.assert_close(
        matcher.cost(outputs, targets, cost), matcher.cost(outputs, targets) + cost
    )


def test_errors() -> None:
    with pytest.raises(
        ValueError,
        match=r"short_logits must have the shape of long_logits \(2, 4, 4\), got \(2, 4, 5\)",
    ):
        long_short_intersection_loss(torch.zeros(2, 4, 4), torch.zeros(2, 4, 5))
    with pytest.raises(TypeError, match="long_logits must be a torch.Tensor"):
        long_short_intersection_ratio([0.0], torch.zeros(1, 1))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="short_logits must have a floating dtype"):
        long_short_intersection_ratio(torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"long_logits must be \(\.\.\., H, W\), got \(4\)"):
        long_short_intersection_ratio(torch.zeros(4), torch.zeros(4))
    with pytest.raises(
        ValueError, match=r"long_masks must be \(\.\.\., B, T, N, h, w\), got \(2, 3, 4, 4\)"
    ):
        long_short_match_cost(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"frame_valid must be \(2, 3\), got \(2, 2\)"):
        long_short_match_cost(
            torch.zeros(2, 3, 1, 4, 4),
            torch.zeros(2, 3, 1, 4, 4),
            torch.ones(2, 2, dtype=torch.bool),
        )
