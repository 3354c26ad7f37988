"""Losses: values, exclusions, autocast, and property tests."""

from __future__ import annotations

import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st

from rvoslib import RVOSLoss, bce_loss, dice_loss, sigmoid_focal_loss


def test_focal_equals_torchvision() -> None:
    logits, targets = torch.randn(2, 3, 9, 11), (torch.rand(2, 3, 9, 11) > 0.6).float()
    for gamma, alpha in [(2.0, 0.25), (0.0, 0.5), (1.5, -1.0)]:
        expected = torchvision.ops.sigmoid_focal_loss(
            logits, targets, alpha, gamma, reduction="mean"
        )
        torch.testing.assert_close(
            sigmoid_focal_loss(logits, targets, gamma=gamma, alpha=alpha), expected
        )


def test_bce_equals_torch() -> None:
    logits, targets = torch.randn(4, 8, 8), (torch.rand(4, 8, 8) > 0.5).float()
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
    torch.testing.assert_close(bce_loss(logits, targets), expected)


def test_rvos_loss_is_the_weighted_sum() -> None:
    criterion = RVOSLoss()
    logits, masks = torch.randn(2, 3, 1, 16, 16), (torch.rand(2, 3, 16, 16) > 0.5).float()
    terms = criterion.terms(logits, masks)
    torch.testing.assert_close(terms.total, 0.3 * terms.bce + 0.6 * terms.dice + 0.1 * terms.focal)
    torch.testing.assert_close(terms.bce, bce_loss(logits[:, :, 0], masks))
    torch.testing.assert_close(criterion(logits[:, :, 0], masks), terms.total)


def test_masks_resized_nearest_to_logits() -> None:
    masks = torch.zeros(1, 1, 32, 32)
    masks[..., :16, :] = 1
    logits = torch.zeros(1, 1, 1, 8, 8)
    logits[..., :4, :] = 20.0
    logits[..., 4:, :] = -20.0
    assert RVOSLoss().terms(logits, masks).dice < 1e-3


def test_invalid_frames_and_void_pixels_are_excluded() -> None:
    criterion = RVOSLoss()
    logits, masks = torch.randn(1, 3, 1, 8, 8), (torch.rand(1, 3, 8, 8) > 0.5).float()
    valid = torch.tensor([[True, False, True]])
    void = torch.zeros(1, 3, 8, 8, dtype=torch.bool)
    void[..., :2, :] = True
    base = criterion.terms(logits, masks, valid, void)
    changed = logits.clone()
    changed[:, 1] = 50.0  # an invalid frame
    changed[..., :2, :] = -50.0  # void rows
    other = criterion.terms(changed, masks, valid, void)
    for a, b in zip(base, other):
        torch.testing.assert_close(a, b)


def test_loss_is_float32_under_autocast() -> None:
    logits = torch.randn(1, 2, 1, 8, 8).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = RVOSLoss()(logits, torch.ones(1, 2, 8, 8))
    assert loss.dtype == torch.float32


def test_loss_errors_name_shapes() -> None:
    criterion = RVOSLoss()
    with pytest.raises(ValueError, match=r"masks must be \(B, T, H', W'\) with B, T = \(2, 3\)"):
        criterion(torch.randn(2, 3, 1, 8, 8), torch.ones(2, 4, 8, 8))
    with pytest.raises(
        ValueError,
        match=r"logits must be \(B, T, 1, H, W\) or \(B, T, H, W\), got \(2, 3, 2, 8, 8\)",
    ):
        criterion(torch.randn(2, 3, 2, 8, 8), torch.ones(2, 3, 8, 8))
    with pytest.raises(
        ValueError, match=r"valid must be \(B, T\) = \(2, 3\), got \(2,\)|valid must be"
    ):
        criterion(
            torch.randn(2, 3, 8, 8), torch.ones(2, 3, 8, 8), valid=torch.ones(2, dtype=torch.bool)
        )
    with pytest.raises(
        ValueError, match=r"void must have the shape of masks \(2, 3, 8, 8\), got \(2, 3, 4, 4\)"
    ):
        criterion(torch.randn(2, 3, 8, 8), torch.ones(2, 3, 8, 8), void=torch.ones(2, 3, 4, 4))


shapes = st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(2, 12), st.integers(2, 12))


@settings(max_examples=40, deadline=None)
@given(shape=shapes, seed=st.integers(0, 10_000), scale=st.floats(0.01, 30.0))
def test_loss_range_and_finite_gradients(shape, seed, scale) -> None:
    generator = torch.Generator().manual_seed(seed)
    logits = (torch.randn(shape, generator=generator) * scale).requires_grad_()
    masks = (torch.rand(shape, generator=generator) > 0.5).float()
    terms = RVOSLoss().terms(logits, masks)
    assert 0.0 <= terms.dice.item() <= 1.0
    assert terms.bce.item() >= 0.0 and terms.focal.item() >= 0.0
    assert terms.focal.item() <= terms.bce.item() + 1e-6
    terms.total.backward()
    assert torch.isfinite(logits.grad).all()


@settings(max_examples=40, deadline=None)
@given(shape=shapes, seed=st.integers(0, 10_000))
def test_perfect_prediction_gives_zero_dice(shape, seed) -> None:
    masks = (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) > 0.5).float()
    logits = (masks * 2 - 1) * 60.0
    assert dice_loss(logits, masks).item() < 1e-6
    assert bce_loss(logits, masks).item() < 1e-6


def test_masks_of_any_dtype_and_the_void_label() -> None:
    torch.manual_seed(0)
    logits = torch.randn(1, 2, 1, 8, 8)
    binary = torch.rand(1, 2, 8, 8) > 0.5
    expected = RVOSLoss()(logits, binary.float())
    for masks in (binary, binary.to(torch.uint8), binary.long() * 2, binary.double() * 7):
        torch.testing.assert_close(RVOSLoss()(logits, masks), expected)
    with_void = binary.to(torch.uint8)
    with_void[0, 0, 0, :] = 255  # DAVIS void pixels: excluded like the void argument
    void = torch.zeros_like(binary)
    void[0, 0, 0, :] = True
    cleared = with_void.clone()
    cleared[0, 0, 0, :] = 0
    torch.testing.assert_close(
        RVOSLoss()(logits, with_void), RVOSLoss()(logits, cleared, void=void)
    )
    davis_2016 = binary.to(torch.uint8) * 255
    with pytest.raises(ValueError, match="masks hold only 0 and 255, the void label"):
        RVOSLoss()(logits, davis_2016)
    torch.testing.assert_close(RVOSLoss(void_label=None)(logits, davis_2016), expected)


def test_nonfinite_inputs_are_named() -> None:
    logits = torch.zeros(1, 1, 1, 4, 4)
    masks = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match="logits contain NaN or infinite values"):
        RVOSLoss()(logits * float("nan"), masks)
    with pytest.raises(ValueError, match="masks contain NaN or infinite values"):
        RVOSLoss()(logits, masks + float("inf"))
